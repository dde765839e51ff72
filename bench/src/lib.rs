//! The services the benchmarks measure, shaped like `../shared/peer-bench/purista/bench.mjs` so the
//! figures compare: service `ServiceB` answers `ping`; service `ServiceA` drives it (`drive`) and
//! emits ticks (`emitTicks`); services `ServiceC0..` each subscribe to `bench.tick`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

pub mod load;
pub mod telemetry;

use purest::prelude::*;
use tokio::sync::Notify;

/// Input of `ping`: a sequence number (validated: at most 10^9).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
pub struct Ping {
    /// Sequence number.
    #[garde(range(max = 1_000_000_000))]
    pub seq: u64,
}

/// Output of `ping`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct Pong {
    /// The sequence number asked for.
    pub seq: u64,
    /// Always true.
    pub ok: bool,
}

/// Input of `drive`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
pub struct Drive {
    /// Calls to make.
    #[garde(range(min = 1))]
    pub calls: u64,
    /// Calls in flight at once.
    #[garde(range(min = 1))]
    pub in_flight: u64,
}

/// Output of `drive`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct Driven {
    /// Wall time of all calls, seconds.
    pub elapsed_secs: f64,
    /// Latency of each call, nanoseconds.
    pub latencies_ns: Vec<u64>,
}

/// An event of the fan-out benchmark.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct Tick {
    /// Sequence number.
    pub seq: u64,
    /// Which run it belongs to.
    pub run: u64,
}

/// Input of `emitTicks`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct EmitTicks {
    /// Events to emit.
    pub count: u64,
    /// Run id stamped on each.
    pub run: u64,
}

async fn ping(Payload(p): Payload<Ping>) -> Result<Pong, HandledError> {
    Ok(Pong { seq: p.seq, ok: true })
}

async fn drive(ctx: Context, Payload(d): Payload<Drive>) -> Result<Driven, HandledError> {
    let next = AtomicU64::new(0);
    // Each worker keeps the calls it made as (index, latency); merged once all are done.
    let worker = || async {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= d.calls {
                return Ok::<_, HandledError>(mine);
            }
            let started = Instant::now();
            let pong: Pong = ctx.invoke(("ServiceB", "1", "ping"), Ping { seq: i }).await?;
            mine.push((i, started.elapsed().as_nanos() as u64));
            if pong.seq != i {
                return Err(HandledError::internal(format!("bad answer {} != {i}", pong.seq)));
            }
        }
    };
    let started = Instant::now();
    let results = futures::future::join_all((0..d.in_flight.min(d.calls)).map(|_| worker())).await;
    let elapsed_secs = started.elapsed().as_secs_f64();
    let mut latencies_ns = vec![0; d.calls as usize];
    for result in results {
        for (i, took) in result? {
            latencies_ns[i as usize] = took;
        }
    }
    Ok(Driven {
        elapsed_secs,
        latencies_ns,
    })
}

async fn emit_ticks(ctx: Context, Payload(e): Payload<EmitTicks>) -> Result<f64, HandledError> {
    let started = Instant::now();
    for seq in 0..e.count {
        ctx.emit("bench.tick", Tick { seq, run: e.run }).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Counts deliveries of the current run and wakes the benchmark when all arrived.
#[derive(Clone, Default)]
pub struct TickCounter {
    inner: Arc<CounterInner>,
}

#[derive(Default)]
struct CounterInner {
    run: AtomicU64,
    delivered: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
}

impl TickCounter {
    /// Starts counting run `run`, which is done after `target` deliveries.
    pub fn reset(&self, run: u64, target: usize) {
        self.inner.delivered.store(0, Ordering::SeqCst);
        self.inner.target.store(target, Ordering::SeqCst);
        self.inner.run.store(run, Ordering::SeqCst);
    }

    /// Waits until the run is complete.
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.done.notified();
            if self.inner.delivered.load(Ordering::SeqCst) >= self.inner.target.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Deliveries so far.
    pub fn delivered(&self) -> usize {
        self.inner.delivered.load(Ordering::SeqCst)
    }

    fn record(&self, tick: &Tick) {
        if tick.run != self.inner.run.load(Ordering::Relaxed) {
            return;
        }
        let n = self.inner.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.inner.target.load(Ordering::Relaxed) {
            self.inner.done.notify_waiters();
        }
    }
}

async fn on_tick(State(counter): State<TickCounter>, Payload(tick): Payload<Tick>) -> Result<(), HandledError> {
    counter.record(&tick);
    Ok(())
}

/// `ServiceA` and `ServiceB`, validating (as PURISTA does with zod) or not.
pub fn command_services(validate: bool) -> Vec<Service> {
    let b = Service::new("ServiceB", "1")
        .description("callee")
        .command(Command::new("ping", ping));
    let a = Service::new("ServiceA", "1")
        .description("caller")
        .command(Command::new("drive", drive))
        .command(Command::new("emitTicks", emit_ticks));
    [a, b]
        .into_iter()
        .map(|s| s.validate_input(validate).validate_output(validate))
        .collect()
}

/// `subscribers` services each subscribing to `bench.tick`, counting into `counter`.
pub fn subscriber_services(subscribers: usize, counter: &TickCounter) -> Vec<Service> {
    (0..subscribers)
        .map(|k| {
            Service::new(&format!("ServiceC{k}"), "1")
                .state(counter.clone())
                .subscription(Subscription::new("onTick", on_tick).on_event("bench.tick").concurrency(1))
        })
        .collect()
}

/// The value at percentile `p` of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The command envelope purest sends for `ping`, and the response it gets, as bytes.
pub fn ping_envelopes() -> (bytes::Bytes, bytes::Bytes) {
    let mut command = purest::Envelope::new(
        Address::named("bench", "1", "drive"),
        purest::Message::Command {
            payload: Body::typed(Ping { seq: 1 }),
            parameter: Body::empty_object(),
        },
    );
    command.receiver = Some(Arc::new(Address::named("ServiceB", "1", "ping")));
    command.correlation_id = Some(Id::random());
    let mut response = purest::Envelope::new(
        Address::named("ServiceB", "1", "ping"),
        purest::Message::Success {
            payload: Body::typed(Pong { seq: 1, ok: true }),
        },
    );
    response.receiver = command.receiver.clone();
    response.correlation_id = command.correlation_id.clone();
    (command.to_json().unwrap().into(), response.to_json().unwrap().into())
}

/// Durable events end to end: `events` emitted (`in_flight` at once, each waiting for the bridge's
/// acknowledgement) on `emitter`, handled by a durable subscription (concurrency 256) on
/// `subscriber`; prints the rate end to end and on the emit side after `label`.
pub async fn durable_events(
    label: &str,
    subscriber: impl purest::Bridge,
    emitter: impl purest::Bridge,
    events: u64,
    in_flight: u64,
) -> purest::Result<()> {
    let counter = TickCounter::default();
    let mut app = App::new().bridge(subscriber);
    for service in subscriber_services(1, &counter) {
        let sub = service.subscriptions()[0].clone().durable().concurrency(256);
        app = app.service(Service::new(service.name(), "1").state(counter.clone()).subscription(sub));
    }
    let subscriber = app.start().await?;
    let emitter = App::new().bridge(emitter).start().await?;
    let client = emitter.client();
    let run = Id::random().as_u128().unwrap_or_default() as u64;
    counter.reset(run, events as usize);
    let started = Instant::now();
    load::drive(events, in_flight, move |seq| {
        let client = client.clone();
        async move { client.emit("bench.tick", Tick { seq, run }).await.expect("emit") }
    })
    .await;
    let emitted = started.elapsed();
    counter.wait().await;
    let total = started.elapsed();
    println!(
        "{label}  events={events}  emits in flight={in_flight}  end-to-end events/s={:.0}  emit-side (acknowledged) events/s={:.0}",
        events as f64 / total.as_secs_f64(),
        events as f64 / emitted.as_secs_f64()
    );
    emitter.shutdown().await;
    subscriber.shutdown().await;
    Ok(())
}
