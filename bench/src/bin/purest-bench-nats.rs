//! NATS figures, each side in its own process (see `bench/nats-side-by-side.sh`):
//!
//! - `serve` / `drive`: purest command round trip over NATS (`ServiceB.ping`, validated), 1 and
//!   C calls in flight;
//! - `raw-serve` / `raw-drive`: the same bytes over plain async-nats request/reply, no purest —
//!   the baseline;
//! - `durable`: events emitted with JetStream acks and handled by a durable subscription (on a
//!   second connection) with acks, end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use purest::Envelope;
use purest::nats::NatsBridge;
use purest::prelude::*;
use purest_bench::{Ping, Pong, Tick, TickCounter, command_services, percentile, subscriber_services};

#[derive(Parser)]
#[command(about = "purest over NATS: round trips, the raw async-nats baseline, durable events")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// NATS server.
    #[arg(long, global = true, default_value = "nats://127.0.0.1:4222")]
    url: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve `ServiceB.ping` until stopped.
    Serve,
    /// Call `ServiceB.ping` and print the figures.
    Drive(Load),
    /// Answer the same subject with plain async-nats.
    RawServe,
    /// Send the same command bytes with plain async-nats.
    RawDrive(Load),
    /// Durable events end to end.
    Durable {
        /// Events to emit.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Emits in flight.
        #[arg(long, default_value_t = 64)]
        in_flight: u64,
    },
}

#[derive(clap::Args)]
struct Load {
    /// Calls per run.
    #[arg(long, default_value_t = 20_000)]
    n: u64,
    /// Calls in flight for the concurrent run.
    #[arg(long, default_value_t = 100)]
    concurrency: u64,
    /// Runs per figure (median shown).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Only the concurrent run (for profiling).
    #[arg(long)]
    concurrent_only: bool,
}

const SUBJECT: &str = "purista.command.empty.empty.empty.bench.1.drive.empty.empty.service_b.1.ping";

/// Runs `calls` calls of `call` with `in_flight` at once; returns ops/s and sorted latencies (ns).
/// The calls run in a task of the runtime, as a service's calls would, not on the main thread.
async fn drive<F, Fut>(calls: u64, in_flight: u64, call: F) -> (f64, Vec<u64>)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers = (0..in_flight).map(|_| {
        let (call, next) = (call.clone(), next.clone());
        async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return latencies;
                }
                let t = Instant::now();
                call(i).await;
                latencies.push(t.elapsed().as_nanos() as u64);
            }
        }
    });
    let workers: Vec<_> = workers.collect();
    let mut latencies: Vec<u64> = tokio::spawn(futures::future::join_all(workers))
        .await
        .expect("the load ran")
        .into_iter()
        .flatten()
        .collect();
    let ops = calls as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (ops, latencies)
}

async fn report<F, Fut>(label: &str, load: &Load, call: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    drive(load.n.min(2_000), load.concurrency, call.clone()).await;
    let levels = if load.concurrent_only {
        vec![load.concurrency]
    } else {
        vec![1, load.concurrency]
    };
    for in_flight in levels {
        let mut runs = Vec::new();
        for _ in 0..load.repeat {
            runs.push(drive(load.n, in_flight, call.clone()).await);
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ops, latencies) = &runs[runs.len() / 2];
        println!(
            "{label}  in-flight={in_flight:>3}  calls={}  ops/s={ops:.0}  p50={:.1}us  p99={:.1}us  (runs ops/s: {})",
            load.n,
            percentile(latencies, 50.0) as f64 / 1000.0,
            percentile(latencies, 99.0) as f64 / 1000.0,
            runs.iter().map(|r| format!("{:.0}", r.0)).collect::<Vec<_>>().join(", ")
        );
    }
}

/// The command envelope purest sends for `ping`, and the response it gets, as bytes.
fn sample_bytes() -> (Bytes, Bytes) {
    let mut command = Envelope::new(
        Address::named("bench", "1", "drive"),
        purest::Message::Command {
            payload: Body::typed(Ping { seq: 1 }),
            parameter: Body::empty_object(),
        },
    );
    command.receiver = Some(Arc::new(Address::named("ServiceB", "1", "ping")));
    command.correlation_id = Some(Id::random());
    let mut response = Envelope::new(
        Address::named("ServiceB", "1", "ping"),
        purest::Message::Success {
            payload: Body::typed(Pong { seq: 1, ok: true }),
        },
    );
    response.receiver = command.receiver.clone();
    response.correlation_id = command.correlation_id.clone();
    (command.to_json().unwrap().into(), response.to_json().unwrap().into())
}

#[tokio::main]
async fn main() -> purest::Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Serve => {
            let bridge = NatsBridge::connect_url(&args.url).await?;
            let b = command_services(true)
                .into_iter()
                .find(|s| s.name() == "ServiceB")
                .expect("ServiceB");
            let app = App::new().bridge(bridge).service(b).start().await?;
            println!("ready");
            purest::host::shutdown_signal().await;
            app.shutdown().await;
        }
        Mode::Drive(load) => {
            let app = App::new().bridge(NatsBridge::connect_url(&args.url).await?).start().await?;
            let client = app.client();
            report("purest over NATS ", &load, move |seq| {
                let client = client.clone();
                async move {
                    let pong: Pong = client.invoke(("ServiceB", "1", "ping"), Ping { seq }).await.expect("ping");
                    assert_eq!(pong.seq, seq);
                }
            })
            .await;
            app.shutdown().await;
        }
        Mode::RawServe => {
            let client = async_nats::connect(&args.url).await.map_err(|e| Error::msg(e.to_string()))?;
            let (_, response) = sample_bytes();
            let mut requests = client
                .queue_subscribe(
                    purest::nats::subject::command_subject(&Address::named("ServiceB", "1", "ping")),
                    "RAW".into(),
                )
                .await
                .map_err(|e| Error::msg(e.to_string()))?;
            client.flush().await.map_err(|e| Error::msg(e.to_string()))?;
            println!("ready");
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = client.publish(reply, response.clone()).await;
                }
            }
        }
        Mode::RawDrive(load) => {
            let client = async_nats::connect(&args.url).await.map_err(|e| Error::msg(e.to_string()))?;
            let (command, _) = sample_bytes();
            report("raw async-nats    ", &load, move |_| {
                let (client, command) = (client.clone(), command.clone());
                async move {
                    client.request(SUBJECT, command).await.expect("raw request");
                }
            })
            .await;
        }
        Mode::Durable { events, in_flight } => {
            let counter = TickCounter::default();
            let mut subscriber = App::new().bridge(NatsBridge::connect_url(&args.url).await?);
            for service in subscriber_services(1, &counter) {
                let sub = service.subscriptions()[0].clone().durable().concurrency(256);
                subscriber = subscriber.service(Service::new(service.name(), "1").state(counter.clone()).subscription(sub));
            }
            let subscriber = subscriber.start().await?;
            let emitter = App::new().bridge(NatsBridge::connect_url(&args.url).await?).start().await?;
            let client = emitter.client();
            let run = Id::random().as_u128().unwrap_or_default() as u64;
            counter.reset(run, events as usize);
            let started = Instant::now();
            drive(events, in_flight, move |seq| {
                let client = client.clone();
                async move { client.emit("bench.tick", Tick { seq, run }).await.expect("emit") }
            })
            .await;
            let emitted = started.elapsed();
            counter.wait().await;
            let total = started.elapsed();
            println!(
                "durable events over JetStream  events={events}  emits in flight={in_flight}  end-to-end events/s={:.0}  emit-side (acked) events/s={:.0}",
                events as f64 / total.as_secs_f64(),
                events as f64 / emitted.as_secs_f64()
            );
            emitter.shutdown().await;
            subscriber.shutdown().await;
        }
    }
    Ok(())
}
