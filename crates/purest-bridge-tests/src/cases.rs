//! The cases. Each takes a [`Harness`], asserts one promise of docs/ARCHITECTURE.md §5 and prints its counts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_core::prelude::*;
use purest_core::{Envelope, Message};
use serde_json::json;

use crate::worker::{Worker, lines};
use crate::{Counts, Harness, report, unique, wait_for_count, wait_until};

/// Payload of [`greet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct Greeting {
    /// Who to greet; not empty.
    #[garde(length(min = 1))]
    pub name: String,
}

/// Parameters of [`greet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct Copies {
    /// 1 to 3.
    #[garde(range(min = 1, max = 3))]
    pub copies: u32,
}

/// Output of [`greet`]: what the handler saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct Seen {
    /// `hello <name>`.
    pub text: String,
    /// The parameter.
    pub copies: u32,
    /// The principal of the call.
    pub principal: Option<String>,
    /// The tenant of the call.
    pub tenant: Option<String>,
    /// The trace id of the call.
    pub trace: String,
}

/// A command that reports what it received; `taken` is refused with a 409.
pub async fn greet(ctx: Context, Payload(g): Payload<Greeting>, Params(p): Params<Copies>) -> Result<Seen, HandledError> {
    if g.name == "taken" {
        return Err(HandledError::conflict("name taken").with_data(json!({"name": "taken"})));
    }
    Ok(Seen {
        text: format!("hello {}", g.name),
        copies: p.copies,
        principal: ctx.principal_id().map(str::to_owned),
        tenant: ctx.tenant_id().map(str::to_owned),
        trace: ctx.trace_id().to_string(),
    })
}

/// §5.1: payload, parameters, principal, tenant and trace id arrive intact; a `HandledError`
/// comes back with status, message and data; invalid input is a 400.
pub async fn round_trip(harness: &Harness) {
    let name = unique("greeter");
    let app = harness
        .app(vec![Service::new(&name, "1").command(Command::new("greet", greet))])
        .await;
    let trace = Id::random();
    let client = app
        .client()
        .with_principal("user-42")
        .with_tenant("tenant-7")
        .with_trace_id(trace.clone());
    let target = format!("{name}/1/greet");
    let seen: Seen = client
        .call(target.clone())
        .params(Copies { copies: 2 })
        .invoke(Greeting { name: "ann".into() })
        .await
        .unwrap();
    let expected = Seen {
        text: "hello ann".into(),
        copies: 2,
        principal: Some("user-42".into()),
        tenant: Some("tenant-7".into()),
        trace: trace.to_string(),
    };
    assert_eq!(seen, expected);
    let err = client
        .call(target.clone())
        .params(Copies { copies: 1 })
        .invoke::<Seen>(Greeting { name: "taken".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.message.as_str(), err.data.clone()),
        (409, "name taken", Some(json!({"name": "taken"})))
    );
    let err = client
        .call(target)
        .params(Copies { copies: 9 })
        .invoke::<Seen>(Greeting { name: "".into() })
        .await
        .unwrap_err();
    assert_eq!(err.status, 400, "{err}");
    harness.report(
        "round trip",
        &Counts {
            sent: 3,
            handled: 3,
            ..Default::default()
        },
    );
    app.shutdown().await;
}

/// §5.2: no handler → 503 as soon as the bridge can tell (not a 504 at the deadline); past the
/// deadline → 504 while the handler still runs (the caller does not wait for it).
pub async fn deadline_and_no_handler(harness: &Harness) {
    let name = unique("slow");
    let release = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = {
        let (release, finished) = (release.clone(), finished.clone());
        move || {
            let (release, finished) = (release.clone(), finished.clone());
            async move {
                release.notified().await;
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, HandledError>(1u32)
            }
        }
    };
    let app = harness
        .app(vec![Service::new(&name, "1").command(Command::new("slow", slow))])
        .await;
    let started = Instant::now();
    // A deadline far away: a bridge that cannot tell "nobody serves this" would answer 504 there.
    let err = app
        .client()
        .call(format!("{name}/1/nothing"))
        .timeout(Duration::from_secs(30))
        .invoke::<u32>(())
        .await
        .unwrap_err();
    let no_handler = started.elapsed();
    assert_eq!(err.status, 503, "{err}");
    assert!(err.message.contains("nothing"), "{err}");
    let started = Instant::now();
    let err = app
        .client()
        .call(format!("{name}/1/slow"))
        .timeout(Duration::from_millis(300))
        .invoke::<u32>(())
        .await
        .unwrap_err();
    let deadline = started.elapsed();
    assert_eq!(err.status, 504, "{err}");
    assert!(
        !finished.load(std::sync::atomic::Ordering::SeqCst),
        "the 504 came while the handler was still running"
    );
    release.notify_one();
    harness.report(
        "deadline and no handler",
        &Counts {
            sent: 2,
            handled: 2,
            detail: Some(format!("503 after {no_handler:?}, 504 after {deadline:?} (deadline 300ms)")),
            ..Default::default()
        },
    );
    app.shutdown().await;
}

/// §5.3: two instances of a service on two connections share its commands; 1,000 calls, each
/// handled exactly once, both instances used.
pub async fn load_sharing(harness: &Harness) {
    let name = unique("calc");
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let service = || {
        let handled = handled.clone();
        let which = move |ctx: Context, Payload(n): Payload<u64>| {
            let handled = handled.clone();
            async move {
                handled.lock().unwrap().push(n);
                Ok::<_, HandledError>(ctx.address().instance_id.as_deref().unwrap_or_default().to_owned())
            }
        };
        Service::new(&name, "1").command(Command::new("which", which))
    };
    let first = harness.app(vec![service()]).await;
    let second = harness.app(vec![service()]).await;
    let client = first.client();
    let target = format!("{name}/1/which");
    let calls = (0..1000u64).map(|n| {
        let (client, target) = (client.clone(), target.clone());
        async move { client.invoke::<String>(target, n).await.unwrap() }
    });
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for instance in futures::future::join_all(calls).await {
        *per_instance.entry(instance).or_default() += 1;
    }
    let counts = Counts {
        detail: Some(format!("per instance {:?}", per_instance.values().collect::<Vec<_>>())),
        ..Counts::of(1000, &handled.lock().unwrap())
    };
    harness.report("load sharing", &counts);
    assert_eq!((counts.handled, counts.duplicates, counts.lost), (1000, 0, 0));
    assert_eq!(per_instance.len(), 2, "both instances are used: {per_instance:?}");
    first.shutdown().await;
    second.shutdown().await;
}

type Log = Arc<Mutex<Vec<(String, u64)>>>;
type Letters = Arc<Mutex<Vec<serde_json::Value>>>;

/// Dead letters as they arrive, and the subscription handler that collects them.
fn letter_box() -> (
    Letters,
    impl Fn(Payload<serde_json::Value>) -> Handled + Clone + Send + Sync + 'static,
) {
    let letters = Letters::default();
    let sink = letters.clone();
    let collect = move |Payload(letter): Payload<serde_json::Value>| -> Handled {
        let sink = sink.clone();
        Box::pin(async move {
            sink.lock().unwrap().push(letter);
            Ok(())
        })
    };
    (letters, collect)
}
type Handled = std::pin::Pin<Box<dyn Future<Output = Result<(), HandledError>> + Send>>;

fn recorder(log: &Log, label: &str) -> impl Fn(Payload<u64>) -> Handled + Clone + Send + Sync + 'static {
    let (log, label) = (log.clone(), label.to_owned());
    move |Payload(n)| {
        let (log, label) = (log.clone(), label.clone());
        Box::pin(async move {
            log.lock().unwrap().push((label, n));
            Ok(())
        })
    }
}

fn seen(log: &Log, label: &str) -> Vec<u64> {
    log.lock().unwrap().iter().filter(|(l, _)| l == label).map(|(_, n)| *n).collect()
}

/// §5.4: an event reaches three subscribing services exactly once each, and a subscription marked
/// for every instance on each of two instances.
pub async fn fan_out(harness: &Harness) {
    const EVENTS: u64 = 100;
    let event = unique("tick");
    let log: Log = Default::default();
    let mut services: Vec<Service> = ["a", "b", "c"]
        .iter()
        .map(|l| Service::new(&unique(l), "1").subscription(Subscription::new("on", recorder(&log, l)).on_event(&event)))
        .collect();
    let watcher = unique("watch");
    let every = |label: &str| {
        Service::new(&watcher, "1").subscription(Subscription::new("all", recorder(&log, label)).on_event(&event).every_instance())
    };
    services.push(every("instance1"));
    let app = harness.app(services).await;
    let second = harness.app(vec![every("instance2")]).await;
    for n in 0..EVENTS {
        app.client().emit(Name::new(&event), n).await.unwrap();
    }
    let labels = ["a", "b", "c", "instance1", "instance2"];
    let progress = || {
        labels
            .iter()
            .map(|l| format!("{l}: {}", seen(&log, l).len()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while log.lock().unwrap().len() < 5 * EVENTS as usize {
        assert!(
            Instant::now() < deadline,
            "[{}] fan-out incomplete after 15 s: {} (instance2 got {:?})",
            harness.name(),
            progress(),
            seen(&log, "instance2")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for label in labels {
        let counts = Counts::of(EVENTS as usize, &seen(&log, label));
        harness.report(&format!("fan-out to {label}"), &counts);
        assert_eq!((counts.handled, counts.duplicates, counts.lost), (EVENTS as usize, 0, 0), "{label}");
    }
    app.shutdown().await;
    second.shutdown().await;
}

/// §5.5: events emitted while a durable subscriber is stopped are delivered after it starts.
pub async fn durable_while_down(harness: &Harness) {
    const EVENTS: u64 = 50;
    let (service, event) = (unique("mailer"), unique("mail"));
    let log: Log = Default::default();
    let durable = || Service::new(&service, "1").subscription(Subscription::new("send", recorder(&log, "sent")).on_event(&event).durable());
    let emitter = harness.app(vec![]).await;
    let consumer = harness.app(vec![durable()]).await;
    emitter.client().emit(Name::new(&event), 0u64).await.unwrap();
    wait_until("the first event", Duration::from_secs(15), || !seen(&log, "sent").is_empty()).await;
    consumer.shutdown().await;
    for n in 1..EVENTS {
        emitter.client().emit(Name::new(&event), n).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen(&log, "sent").len(), 1, "nothing is delivered while the subscriber is down");
    let consumer = harness.app(vec![durable()]).await;
    wait_for_count("the events emitted while down", Duration::from_secs(30), EVENTS as usize, || {
        seen(&log, "sent").len()
    })
    .await;
    let counts = Counts::of(EVENTS as usize, &seen(&log, "sent"));
    harness.report("durable while the subscriber is down", &counts);
    assert_eq!(counts.lost, 0);
    consumer.shutdown().await;
    emitter.shutdown().await;
    harness.cleanup(&service).await;
}

/// §5.5: a failing durable handler is retried with growing delays, then dead-lettered with the
/// reason and the attempt count.
pub async fn retry_then_dead_letter(harness: &Harness) {
    let (service, event, dlq) = (unique("failing"), unique("job"), unique("dlq"));
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let times = attempts.clone();
    let always_fails = move |Payload(_): Payload<u64>| {
        let times = times.clone();
        async move {
            times.lock().unwrap().push(Instant::now());
            Err::<(), _>(std::io::Error::other("downstream is down"))
        }
    };
    let (letters, record_letter) = letter_box();
    let retry = Retry::exponential(3).backoff(Duration::from_millis(150)).dead_letter(&dlq);
    let app = harness
        .app(vec![
            Service::new(&service, "1").subscription(Subscription::new("work", always_fails).on_event(&event).durable().retry(retry)),
            Service::new(&unique("ops"), "1").subscription(Subscription::new("letters", record_letter).on_event(&dlq)),
        ])
        .await;
    app.client().with_tenant("t-1").emit(Name::new(&event), 7u64).await.unwrap();
    wait_until("the dead letter", Duration::from_secs(15), || !letters.lock().unwrap().is_empty()).await;
    let letter = letters.lock().unwrap()[0].clone();
    let times = attempts.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    harness.report(
        "retry then dead letter",
        &Counts {
            sent: 1,
            handled: times.len(),
            detail: Some(format!("attempts {}, gaps {gaps:?}, dead letter {letter}", times.len())),
            ..Default::default()
        },
    );
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["subscription"], format!("{service}/1/work"));
    assert!(
        letter["reason"].as_str().unwrap_or_default().contains("downstream is down"),
        "{letter}"
    );
    assert_eq!(letter["message"]["payload"], 7);
    assert_eq!(letter["message"]["tenantId"], "t-1");
    assert_eq!(letter["eventName"], event.as_str(), "the original event name");
    assert_eq!(times.len(), 3, "ran exactly max_attempts times");
    // Jittered: each delay is drawn from the upper half of 150 ms, then 300 ms.
    assert!(
        gaps[0] >= Duration::from_millis(75) && gaps[1] >= Duration::from_millis(150),
        "delays grow: {gaps:?}"
    );
    app.shutdown().await;
    harness.cleanup(&service).await;
}

/// §5.8: shutdown finishes the handlers in flight (commands answered, durable messages acked)
/// before it disconnects, and takes no new work.
pub async fn graceful_shutdown(harness: &Harness) {
    let (name, event) = (unique("drain"), unique("work"));
    let finished: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (done, begun) = (finished.clone(), started.clone());
    let slow_command = move || {
        let (done, begun) = (done.clone(), begun.clone());
        async move {
            begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.lock().unwrap().push("command");
            Ok::<_, HandledError>(1u32)
        }
    };
    let (done, begun) = (finished.clone(), started.clone());
    let slow_subscription = move |Payload(_): Payload<u64>| {
        let (done, begun) = (done.clone(), begun.clone());
        async move {
            begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.lock().unwrap().push("subscription");
            Ok::<_, HandledError>(())
        }
    };
    let app = harness
        .app(vec![
            Service::new(&name, "1")
                .command(Command::new("slow", slow_command))
                .subscription(Subscription::new("slow", slow_subscription).on_event(&event).durable()),
        ])
        .await;
    let caller = harness.app(vec![]).await;
    caller.client().emit(Name::new(&event), 1u64).await.unwrap();
    let client = caller.client();
    let target = format!("{name}/1/slow");
    let in_flight = tokio::spawn(async move { client.invoke::<u32>(target, ()).await });
    // Both handlers are running: now shut down, in the middle of their work.
    wait_for_count("both handlers to start", Duration::from_secs(15), 2, || {
        started.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    assert!(app.shutdown().await, "drained within the timeout");
    let finished = finished.lock().unwrap().clone();
    harness.report(
        "graceful shutdown",
        &Counts {
            sent: 2,
            handled: finished.len(),
            detail: Some(format!("finished {finished:?}")),
            ..Default::default()
        },
    );
    assert!(finished.contains(&"command") && finished.contains(&"subscription"), "{finished:?}");
    assert_eq!(in_flight.await.unwrap().unwrap(), 1, "the call in flight got its answer");
    let err = caller.client().invoke::<u32>(format!("{name}/1/slow"), ()).await.unwrap_err();
    assert_eq!(err.status, 503, "no new work after shutdown: {err}");
    caller.shutdown().await;
    harness.cleanup(&name).await;
}

/// §5.4: two subscriptions of one service with different filters each get their own events
/// only — and each counts once, whatever the other does.
pub async fn two_filters_in_one_service(harness: &Harness) {
    const EVENTS: u64 = 50;
    let (service, first, second) = (unique("twofold"), unique("first"), unique("second"));
    let log: Log = Default::default();
    let app = harness
        .app(vec![
            Service::new(&service, "1")
                .subscription(Subscription::new("onFirst", recorder(&log, "first")).on_event(&first))
                .subscription(Subscription::new("onSecond", recorder(&log, "second")).on_event(&second)),
        ])
        .await;
    for n in 0..EVENTS {
        app.client().emit(Name::new(&first), n).await.unwrap();
        app.client().emit(Name::new(&second), n + EVENTS).await.unwrap();
    }
    wait_for_count("both subscriptions' events", Duration::from_secs(15), 2 * EVENTS as usize, || {
        log.lock().unwrap().len()
    })
    .await;
    let firsts = Counts::of(EVENTS as usize, &seen(&log, "first"));
    let seconds: Vec<u64> = seen(&log, "second").iter().map(|n| n - EVENTS).collect();
    let seconds = Counts::of(EVENTS as usize, &seconds);
    harness.report("two filters in one service, first", &firsts);
    harness.report("two filters in one service, second", &seconds);
    assert!(
        seen(&log, "first").iter().all(|n| *n < EVENTS),
        "the first filter only sees its events"
    );
    assert!(
        seen(&log, "second").iter().all(|n| *n >= EVENTS),
        "the second filter only sees its events"
    );
    assert_eq!((firsts.handled, firsts.lost, seconds.handled, seconds.lost), (50, 0, 50, 0));
    app.shutdown().await;
}

/// §5.4: a subscription is its address *and* its filter. Best-effort routes under one address
/// with different filters (the WebSocket gateway listens to many event names under one) each get
/// their own events, for every instance and shared alike; a durable name carries one filter, and
/// a second filter under it is refused with an error naming both.
pub async fn two_filters_under_one_address(harness: &Harness) {
    use purest_core::bridge::{DEFAULT_QUEUE_CAPACITY, Delivery, Settlement, SubscriptionEndpoint, SubscriptionRoute};

    /// Records each event's payload under a label.
    struct Record(Log, &'static str);
    impl SubscriptionEndpoint for Record {
        fn deliver(self: Arc<Self>, delivery: Delivery) -> futures::future::BoxFuture<'static, Settlement> {
            if let Ok(Message::Custom { payload }) = delivery.message.as_deref().map(|event| &event.message)
                && let Some(n) = payload.to_value().ok().and_then(|value| value.as_u64())
            {
                self.0.lock().unwrap().push((self.1.to_owned(), n));
            }
            Box::pin(std::future::ready(Settlement::Ack))
        }
    }

    const EVENTS: u64 = 20;
    let bridge = harness.connect().await;
    let address = Arc::new(purest_core::Address {
        instance_id: Some(Name::new(&unique("instance"))),
        ..purest_core::Address::new(&unique("listener"), "1", "events")
    });
    let (first, second) = (unique("first"), unique("second"));
    let durable_address = Arc::new(purest_core::Address::new(&address.service_name, "1", "durableEvents"));
    let route = |event: &str, every_instance: bool, durable: bool| SubscriptionRoute {
        address: if durable { durable_address.clone() } else { address.clone() },
        filter: purest_core::EventFilter {
            event_name: Some(Name::new(event)),
            ..Default::default()
        },
        durable,
        every_instance,
        retry: Retry::default(),
        concurrency: 1,
        queue_capacity: DEFAULT_QUEUE_CAPACITY,
    };
    let log: Log = Default::default();
    let mut registrations = Vec::new();
    for (event, every_instance, label) in [
        (&first, true, "first, every instance"),
        (&second, true, "second, every instance"),
        (&first, false, "first, shared"),
        (&second, false, "second, shared"),
    ] {
        let registration = bridge
            .subscribe(route(event, every_instance, false), Arc::new(Record(log.clone(), label)))
            .await
            .unwrap_or_else(|e| panic!("subscribing {label}: {e}"));
        registrations.push(registration);
    }
    let app = harness.app(vec![]).await;
    for n in 0..EVENTS {
        app.client().emit(Name::new(&first), n).await.unwrap();
        app.client().emit(Name::new(&second), n + EVENTS).await.unwrap();
    }
    wait_for_count("four routes' events", Duration::from_secs(15), 4 * EVENTS as usize, || {
        log.lock().unwrap().len()
    })
    .await;
    for (label, range) in [
        ("first, every instance", 0..EVENTS),
        ("second, every instance", EVENTS..2 * EVENTS),
        ("first, shared", 0..EVENTS),
        ("second, shared", EVENTS..2 * EVENTS),
    ] {
        let mut got = seen(&log, label);
        got.sort_unstable();
        assert_eq!(got, range.collect::<Vec<_>>(), "{label} gets exactly its own events");
    }
    report("two filters under one address: 4 best-effort routes got their own 20 events each");

    let durable = bridge
        .subscribe(route(&first, false, true), Arc::new(Record(log.clone(), "durable")))
        .await
        .expect("a durable subscription");
    let refused = match bridge
        .subscribe(route(&second, false, true), Arc::new(Record(log.clone(), "durable")))
        .await
    {
        Ok(_) => panic!("a second filter under one durable name is refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains("another filter") && refused.contains(&second),
        "the refusal names the conflict and the filter: {refused}"
    );
    report(&format!("two filters under one durable name: refused ({refused})"));
    durable.close().await;
    for registration in registrations {
        registration.close().await;
    }
    app.shutdown().await;
    harness.cleanup(&address.service_name).await;
}

/// §5.5: attempts are counted by the broker, across a consumer crash: a delivery whose consumer
/// was killed while handling it counts as an attempt, so the next consumer sees attempt 2.
pub async fn attempts_survive_a_consumer_crash(harness: &Harness) {
    const CASE: &str = "attempts survive a consumer crash";
    if !harness.supports(CASE, "broker_counts_attempts", harness.features().broker_counts_attempts) {
        return;
    }
    let Some((broker, connect_to)) = harness.own_broker(CASE) else {
        return;
    };
    let (service, event, dlq) = (unique("crashing"), unique("job"), unique("dlq"));
    let out = std::env::temp_dir().join(format!("purest-worker-{}.txt", Id::random()));
    let vars = [
        ("WORKER_SERVICE", service.clone()),
        ("WORKER_EVENT", event.clone()),
        ("WORKER_OUT", out.display().to_string()),
        ("WORKER_MODE", "hang".to_owned()),
    ];
    let worker = Worker::start(&broker.url(), &vars);
    let emitter = harness.app_on(connect_to(broker.url()).await, vec![]).await;
    emitter.client().emit(Name::new(&event), 7u64).await.unwrap();
    wait_for_count("the worker to start handling", Duration::from_secs(15), 1, || lines(&out).len()).await;
    worker.kill();

    // The next consumer of the same subscription fails every time: attempts 2 and 3 are its.
    let attempts: Arc<Mutex<Vec<u32>>> = Arc::default();
    let log = attempts.clone();
    let fails = move |ctx: Context, Payload(_): Payload<u64>| {
        let log = log.clone();
        async move {
            let _ = ctx;
            log.lock().unwrap().push(1);
            Err::<(), _>(std::io::Error::other("still failing"))
        }
    };
    let (letters, record_letter) = letter_box();
    let retry = Retry::exponential(3).backoff(Duration::from_millis(10)).dead_letter(&dlq);
    let next = harness
        .app_on(
            connect_to(broker.url()).await,
            vec![
                Service::new(&service, "1").subscription(Subscription::new("work", fails).on_event(&event).durable().retry(retry)),
                Service::new(&unique("ops"), "1").subscription(Subscription::new("letters", record_letter).on_event(&dlq)),
            ],
        )
        .await;
    wait_for_count("the dead letter", Duration::from_secs(60), 1, || letters.lock().unwrap().len()).await;
    let letter = letters.lock().unwrap()[0].clone();
    let runs = attempts.lock().unwrap().len();
    harness.report(
        CASE,
        &Counts {
            sent: 1,
            handled: runs + 1,
            detail: Some(format!(
                "1 run killed, {runs} after it, dead letter attempts {}",
                letter["attempts"]
            )),
            ..Default::default()
        },
    );
    assert_eq!(letter["attempts"], 3, "{letter}");
    assert_eq!(runs, 2, "the killed run counted as the first of 3 attempts");
    next.shutdown().await;
    emitter.shutdown().await;
    let _ = std::fs::remove_file(&out);
}

/// §5.5: a durable subscriber SIGKILLed in the middle of 10,000 events: once a subscriber runs
/// again, every event is handled (at least once); none is lost.
pub async fn kill_mid_stream(harness: &Harness) {
    const CASE: &str = "SIGKILL mid-stream";
    const EVENTS: u64 = 10_000;
    let Some((broker, connect_to)) = harness.own_broker(CASE) else {
        return;
    };
    let (service, event) = (unique("crashy"), unique("counted"));
    let out = std::env::temp_dir().join(format!("purest-worker-{}.txt", Id::random()));
    let vars = [
        ("WORKER_SERVICE", service.clone()),
        ("WORKER_EVENT", event.clone()),
        ("WORKER_OUT", out.display().to_string()),
    ];
    let first = Worker::start(&broker.url(), &vars);
    let publisher = harness.app_on(connect_to(broker.url()).await, vec![]).await;
    let client = publisher.client();
    let name = Name::new(&event);
    let publishing = tokio::spawn(async move {
        for seq in 0..EVENTS {
            client.emit(name.clone(), seq).await.unwrap();
        }
    });
    wait_for_count("the first worker's events", Duration::from_secs(60), 2_000, || lines(&out).len()).await;
    first.kill();
    let at_kill = lines(&out).len();
    assert!(at_kill < EVENTS as usize, "the kill must land in the middle of the stream");
    publishing.await.unwrap();

    let second = Worker::start(&broker.url(), &vars);
    let distinct = || lines(&out).iter().filter_map(|l| l.parse::<u64>().ok()).collect::<HashSet<u64>>();
    wait_for_count("every event after the restart", Duration::from_secs(120), EVENTS as usize, || {
        distinct().len()
    })
    .await;
    let seen: Vec<u64> = lines(&out).iter().filter_map(|l| l.parse().ok()).collect();
    let counts = Counts {
        detail: Some(format!("{at_kill} before the kill")),
        ..Counts::of(EVENTS as usize, &seen)
    };
    harness.report(CASE, &counts);
    assert_eq!(counts.lost, 0);
    second.stop();
    publisher.shutdown().await;
    let _ = std::fs::remove_file(&out);
}

/// How long a call may take to fail while the broker is down: well past the callers' deadline,
/// far below the default 30 s that a hang would show.
const OUTAGE_FAILS_WITHIN: Duration = Duration::from_secs(6);

/// Counts the reconnections bridges report (`purest_core::metrics::reconnected`), per bridge.
#[derive(Clone, Default)]
struct Reconnections(Arc<Mutex<HashMap<String, u64>>>);

static RECONNECTIONS: std::sync::LazyLock<Reconnections> = std::sync::LazyLock::new(|| {
    let counter = Reconnections::default();
    assert!(
        purest_core::metrics::install(counter.clone()),
        "the conformance suite counts reconnections with a metrics backend of its own"
    );
    counter
});

impl Reconnections {
    fn of(&self, bridge: &str) -> u64 {
        self.0.lock().unwrap().get(bridge).copied().unwrap_or(0)
    }
}

/// What the suite does not count.
struct Uncounted;

/// One bridge's reconnections.
struct BridgeReconnections(Reconnections, String);

impl purest_core::metrics::Metrics for Reconnections {
    fn handler(&self, _: &str, _: purest_core::metrics::HandlerKind, _: &str) -> Arc<dyn purest_core::metrics::HandlerMeter> {
        Arc::new(Uncounted)
    }
    fn bridge(&self, bridge: &str) -> Arc<dyn purest_core::metrics::BridgeMeter> {
        Arc::new(BridgeReconnections(self.clone(), bridge.to_owned()))
    }
}

impl purest_core::metrics::HandlerMeter for Uncounted {
    fn started(&self) {}
    fn finished(&self, _: purest_core::metrics::HandlerOutcome, _: Duration) {}
}

impl purest_core::metrics::BridgeMeter for BridgeReconnections {
    fn sent(&self, _: &'static str) {}
    fn received(&self, _: &'static str) {}
    fn reconnected(&self) {
        *(self.0).0.lock().unwrap().entry(self.1.clone()).or_default() += 1;
    }
}

/// §5.6: a broker restart in the middle of traffic: invokes during the outage fail fast (503 or
/// 504), emits are refused (503) rather than lost, and afterwards commands are answered and
/// durable events delivered again, none of the acknowledged ones lost; each bridge counts its
/// reconnection.
pub async fn broker_restart(harness: &Harness) {
    const CASE: &str = "broker restart";
    let Some((mut broker, connect_to)) = harness.own_broker(CASE) else {
        return;
    };
    let reconnections = RECONNECTIONS.clone();
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = handled.clone();
    let record = move |Payload(n): Payload<u64>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(n);
            Ok::<_, HandledError>(())
        }
    };
    let echo = |Payload(n): Payload<u64>| async move { Ok::<_, HandledError>(n) };
    let (service, event) = (unique("steady"), unique("tick"));
    let services = harness
        .app_on(
            connect_to(broker.url()).await,
            vec![
                Service::new(&service, "1")
                    .command(Command::new("echo", echo))
                    .subscription(Subscription::new("record", record).on_event(&event).durable()),
            ],
        )
        .await;
    let caller = harness.app_on(connect_to(broker.url()).await, vec![]).await;
    let client = caller.client().with_timeout(Duration::from_millis(500));
    let target = format!("{service}/1/echo");
    let tick = Name::new(&event);
    for n in 0..100u64 {
        assert_eq!(client.invoke::<u64>(target.clone(), n).await.unwrap(), n);
        client.emit(tick.clone(), n).await.unwrap();
    }
    assert!(caller.bridge().is_ready(), "connected");

    broker.kill();
    wait_until("the bridge to notice the lost connection", Duration::from_secs(10), || {
        !caller.bridge().is_ready()
    })
    .await;
    let started = Instant::now();
    let lost_emit = client.emit(tick.clone(), 999u64).await;
    assert_eq!(lost_emit.expect_err("an event cannot be stored without the broker").status, 503);
    // Fast means "not the default 30 s, not forever"; the bound is loose because the machine is
    // shared (the report prints what each took).
    assert!(
        started.elapsed() < OUTAGE_FAILS_WITHIN,
        "an emit during the outage must fail fast, took {:?}",
        started.elapsed()
    );
    let mut outage = Vec::new();
    for n in 0..10u64 {
        let started = Instant::now();
        let status = client
            .invoke::<u64>(target.clone(), n)
            .await
            .expect_err("no broker, no answer")
            .status;
        let took = started.elapsed();
        assert!(matches!(status, 503 | 504), "{status}");
        assert!(
            took < OUTAGE_FAILS_WITHIN,
            "an invoke during the outage must fail fast, took {took:?}"
        );
        outage.push(format!("{status} in {took:?}"));
    }

    broker.restart();
    let restarted = Instant::now();
    while client.invoke::<u64>(target.clone(), 1u64).await.is_err() {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "no successful invoke within 30 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = restarted.elapsed();
    assert!(caller.bridge().is_ready(), "the bridge reports the connection back");
    let bridge = caller.bridge().name().to_owned();
    // Both apps' bridges (the services' and the caller's) connected again.
    wait_until("both reconnections to be counted", Duration::from_secs(30), || {
        reconnections.of(&bridge) >= 2
    })
    .await;
    for n in 100..200u64 {
        assert_eq!(client.invoke::<u64>(target.clone(), n).await.unwrap(), n);
        client.emit(tick.clone(), n).await.unwrap();
    }
    let distinct = || handled.lock().unwrap().iter().copied().collect::<HashSet<u64>>();
    wait_for_count("durable events after the restart", Duration::from_secs(60), 200, || {
        distinct().len()
    })
    .await;
    let counts = Counts {
        detail: Some(format!(
            "invokes during the outage {outage:?}; first success {recovered:?} after the restart"
        )),
        ..Counts::of(200, &handled.lock().unwrap())
    };
    harness.report(CASE, &counts);
    assert_eq!(counts.lost, 0);
    caller.shutdown().await;
    services.shutdown().await;
}

/// Asserts that `name`'s `greet` command still answers after bad input.
async fn keeps_answering(app: &purest_core::RunningApp, name: &str) {
    let still: Seen = app
        .client()
        .call(format!("{name}/1/greet"))
        .params(Copies { copies: 1 })
        .invoke(Greeting { name: "still".into() })
        .await
        .unwrap();
    assert_eq!(still.text, "hello still", "the service keeps answering");
}

/// §5.7: bytes that are not a valid message — not JSON, JSON that is not an envelope, a payload
/// failing its schema — are refused with a 400 (commands) or dead-lettered at once (durable
/// events); the handler never sees them and the service keeps answering.
pub async fn malformed_input(harness: &Harness) {
    const CASE: &str = "malformed input";
    let Some(wire) = harness.wire(CASE) else { return };
    let (name, event, dlq) = (unique("sturdy"), unique("order"), unique("dlq"));
    let handled = Arc::new(Mutex::new(0u32));
    let counter = handled.clone();
    let on_order = move |Payload(_): Payload<Greeting>| {
        let counter = counter.clone();
        async move {
            *counter.lock().unwrap() += 1;
            Ok::<_, HandledError>(())
        }
    };
    let (letters, record_letter) = letter_box();
    let app = harness
        .app(vec![
            Service::new(&name, "1").command(Command::new("greet", greet)).subscription(
                Subscription::new("orders", on_order)
                    .on_event(&event)
                    .durable()
                    .retry(Retry::exponential(3).dead_letter(&dlq)),
            ),
            Service::new(&unique("ops"), "1").subscription(Subscription::new("letters", record_letter).on_event(&dlq)),
        ])
        .await;
    let command_with = |payload: serde_json::Value| {
        json!({"messageType": "command", "id": Id::random(), "timestamp": 1, "correlationId": Id::random(),
            "sender": {"serviceName": "test", "serviceVersion": "1", "serviceTarget": "test"},
            "receiver": {"serviceName": name, "serviceVersion": "1", "serviceTarget": "greet"},
            "payload": {"payload": payload, "parameter": {"copies": 1}}})
        .to_string()
    };
    let mut unwrapped: serde_json::Value = serde_json::from_str(&command_with(json!({"name": "ann"}))).unwrap();
    unwrapped["payload"] = json!({"name": "ann"});
    let mut misaddressed: serde_json::Value = serde_json::from_str(&command_with(json!({"name": "ann"}))).unwrap();
    misaddressed["receiver"]["serviceTarget"] = json!("anotherCommand");
    let cases = [
        ("not JSON", "this is not json".to_owned()),
        ("JSON that is not an envelope", "{\"hello\": 1}".to_owned()),
        ("a payload failing the schema", command_with(json!({"name": ""}))),
        ("a command payload without {payload, parameter}", unwrapped.to_string()),
        ("a receiver naming another command than the subject", misaddressed.to_string()),
    ];
    for (what, body) in &cases {
        let reply = wire
            .command(&name, "1", "greet", body.clone().into_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: no reply: {e}"));
        let reply = Envelope::from_json(&reply).unwrap_or_else(|e| panic!("{what}: the reply is not an envelope: {e}"));
        let Message::Error { error, .. } = reply.message else {
            panic!("{what}: expected an error reply")
        };
        assert_eq!(error.status, 400, "{what}: {error}");
    }
    keeps_answering(&app, &name).await;

    // Ids from PURISTA are plain strings (a client's `x-trace-id` passes through its gateway):
    // taken as they come and sent back unchanged.
    let mut foreign_ids: serde_json::Value = serde_json::from_str(&command_with(json!({"name": "ann"}))).unwrap();
    foreign_ids["id"] = json!("V1StGXR8_Z5jdHi6B-myT");
    foreign_ids["correlationId"] = json!("5b8e2c1a-7d3f-4e9b-a1c6-0f2d8e4b7a93");
    foreign_ids["traceId"] = json!("3f2c5e0a-9b1d-4c8e-a7f6-2d4b8c9e1f03");
    let reply = wire
        .command(&name, "1", "greet", foreign_ids.to_string().into_bytes())
        .await
        .expect("a reply to a command with UUID ids");
    let reply = Envelope::from_json(&reply).expect("an envelope");
    assert!(matches!(reply.message, Message::Success { .. }), "{reply:?}");
    assert_eq!(
        (
            reply.correlation_id.map(|id| id.to_string()),
            reply.trace_id.map(|id| id.to_string())
        ),
        (
            Some("5b8e2c1a-7d3f-4e9b-a1c6-0f2d8e4b7a93".to_owned()),
            Some("3f2c5e0a-9b1d-4c8e-a7f6-2d4b8c9e1f03".to_owned())
        )
    );

    wire.event(&event, b"not json at all".to_vec()).await.unwrap();
    let bad_payload = json!({"messageType": "customMessage", "id": Id::random(), "timestamp": 1, "eventName": event,
        "sender": {"serviceName": "x", "serviceVersion": "1", "serviceTarget": "x"}, "payload": {"name": 5}});
    wire.event(&event, bad_payload.to_string().into_bytes()).await.unwrap();
    wait_for_count("two dead letters", Duration::from_secs(15), 2, || letters.lock().unwrap().len()).await;
    let letters = letters.lock().unwrap().clone();
    harness.report(
        CASE,
        &Counts {
            sent: 7,
            handled: 0,
            detail: Some(format!(
                "5 commands answered 400, 2 events dead-lettered, handler ran {} times",
                handled.lock().unwrap()
            )),
            ..Default::default()
        },
    );
    assert!(letters.iter().all(|l| l["attempts"] == 1), "dead-lettered at once: {letters:?}");
    assert!(
        letters.iter().any(|l| l["message"] == "not json at all"),
        "the raw bytes are kept: {letters:?}"
    );
    assert!(
        letters.iter().any(|l| l["reason"].as_str().unwrap_or_default().contains("/name")),
        "{letters:?}"
    );
    assert_eq!(*handled.lock().unwrap(), 0);
    app.shutdown().await;
    harness.cleanup(&name).await;
}

/// §5.7: a 10 MB command is refused (by the bridge with a 400/413, or by the transport before any
/// handler sees it), and the service keeps answering.
pub async fn oversized_input(harness: &Harness) {
    const CASE: &str = "oversized input";
    let Some(wire) = harness.wire(CASE) else { return };
    let name = unique("sturdy");
    let app = harness
        .app(vec![Service::new(&name, "1").command(Command::new("greet", greet))])
        .await;
    let big = format!("{{\"junk\": \"{}\"}}", "x".repeat(10 * 1024 * 1024));
    let outcome = match wire.command(&name, "1", "greet", big.into_bytes()).await {
        Ok(reply) => {
            let reply = Envelope::from_json(&reply).expect("the reply is an envelope");
            let Message::Error { error, .. } = reply.message else {
                panic!("a 10 MB body of junk cannot succeed")
            };
            assert!(matches!(error.status, 400 | 413), "{error}");
            format!("answered {}", error.status)
        }
        Err(refused) => format!("refused by the transport ({refused})"),
    };
    keeps_answering(&app, &name).await;
    harness.report(
        CASE,
        &Counts {
            sent: 1,
            detail: Some(outcome),
            ..Default::default()
        },
    );
    app.shutdown().await;
}

/// §5.9: a slow subscriber flooded with events: its queue never holds more than its capacity,
/// emitters that find it full past their deadline get 503 naming it, and every accepted event is
/// handled exactly once.
pub async fn backpressure(harness: &Harness) {
    const CASE: &str = "backpressure";
    const CAPACITY: usize = 32;
    if !harness.supports(CASE, "bounded_queues", harness.features().bounded_queues) {
        return;
    }
    let (service, event) = (unique("sink"), unique("blob"));
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let log = handled.clone();
    let slow = move |Payload(n): Payload<u64>| {
        let log = log.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            log.lock().unwrap().push(n);
            Ok::<_, HandledError>(())
        }
    };
    let app = harness
        .app(vec![
            Service::new(&service, "1").subscription(
                Subscription::new("slow", slow)
                    .on_event(&event)
                    .durable()
                    .concurrency(1)
                    .queue_capacity(CAPACITY),
            ),
        ])
        .await;
    let client = app.client().with_timeout(Duration::from_millis(20));
    let emitters: Vec<_> = (0..8u64)
        .map(|emitter| {
            let (client, name) = (client.clone(), Name::new(&event));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..100 {
                    let n = emitter * 100 + i;
                    outcomes.push((n, client.emit(name.clone(), n).await));
                }
                outcomes
            })
        })
        .collect();
    let (mut accepted, mut refused) = (Vec::new(), 0usize);
    for emitter in emitters {
        for (n, outcome) in emitter.await.unwrap() {
            match outcome {
                Ok(()) => accepted.push(n),
                Err(refusal) => {
                    assert_eq!(refusal.status, 503, "{refusal}");
                    assert!(refusal.message.contains(&format!("{service}/1/slow is full")), "{refusal}");
                    refused += 1;
                }
            }
        }
    }
    wait_for_count("the accepted events", Duration::from_secs(30), accepted.len(), || {
        handled.lock().unwrap().len()
    })
    .await;
    // Counted against the accepted events: a refused event was never the bridge's to deliver.
    let handled = handled.lock().unwrap().clone();
    let mut counts = Counts::of(800, &handled);
    counts.lost -= refused;
    counts.detail = Some(format!(
        "capacity {CAPACITY}, {} accepted, {refused} refused with 503",
        accepted.len()
    ));
    harness.report(CASE, &counts);
    assert!(refused > 0, "a flood beyond the capacity must be refused, not queued without end");
    assert!(accepted.iter().all(|n| handled.contains(n)), "every accepted event is handled");
    assert_eq!((counts.handled, counts.duplicates, counts.lost), (accepted.len(), 0, 0));
    app.shutdown().await;
    harness.cleanup(&service).await;
}

/// §5.10: a durable handler running longer than the broker's redelivery timeout keeps its
/// delivery alive: it is not handed to a second consumer while it runs.
pub async fn long_handler_kept_alive(harness: &Harness) {
    const CASE: &str = "long handler kept alive";
    const EVENTS: u64 = 10;
    let Some(timeout) = harness.features().redelivery_timeout else {
        harness.not_supported(CASE, harness.features().why("redelivery_timeout"));
        return;
    };
    let (service, event) = (unique("patient"), unique("slowjob"));
    let log: Log = Default::default();
    let slow = |log: Log, label: &'static str| {
        move |Payload(n): Payload<u64>| {
            let log = log.clone();
            async move {
                tokio::time::sleep(timeout * 5 / 2).await;
                log.lock().unwrap().push((label.to_owned(), n));
                Ok::<_, HandledError>(())
            }
        }
    };
    let consumer =
        |label| Service::new(&service, "1").subscription(Subscription::new("slow", slow(log.clone(), label)).on_event(&event).durable());
    let first = harness.app(vec![consumer("a")]).await;
    let second = harness.app(vec![consumer("b")]).await;
    for n in 0..EVENTS {
        first.client().emit(Name::new(&event), n).await.unwrap();
    }
    wait_for_count("the slow events", Duration::from_secs(60), EVENTS as usize, || {
        log.lock().unwrap().len()
    })
    .await;
    // Redeliveries would arrive after another redelivery timeout; give them the chance.
    tokio::time::sleep(timeout * 3).await;
    let all: Vec<u64> = log.lock().unwrap().iter().map(|(_, n)| *n).collect();
    let counts = Counts {
        detail: Some(format!("handlers of {:?} each, redelivery timeout {timeout:?}", timeout * 5 / 2)),
        ..Counts::of(EVENTS as usize, &all)
    };
    harness.report(CASE, &counts);
    assert_eq!((counts.duplicates, counts.lost), (0, 0), "no delivery was handed out twice");
    first.shutdown().await;
    second.shutdown().await;
    harness.cleanup(&service).await;
}

/// Per-key ordering, where the bridge declares it: events of one key are handled in the order
/// sent.
pub async fn per_key_ordering(harness: &Harness) {
    const CASE: &str = "per-key ordering";
    if !harness.supports(CASE, "per_key_ordering", harness.features().per_key_ordering) {
        return;
    }
    let (service, event) = (unique("ordered"), unique("step"));
    let log: Log = Default::default();
    let app = harness
        .app(vec![
            Service::new(&service, "1").subscription(Subscription::new("steps", recorder(&log, "steps")).on_event(&event)),
        ])
        .await;
    for n in 0..200u64 {
        app.client().emit(Name::new(&event), n).await.unwrap();
    }
    wait_for_count("the ordered events", Duration::from_secs(15), 200, || log.lock().unwrap().len()).await;
    let order = seen(&log, "steps");
    harness.report(CASE, &Counts::of(200, &order));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {order:?}");
    app.shutdown().await;
}

/// Presence (`purest ps`): two instances of a service announce themselves with info messages; a
/// watcher that asks sees both ready with their commands and subscriptions, and sees one stop.
pub async fn presence(harness: &Harness) {
    use purest_core::presence::{Instance, Presence, State};
    let service = unique("present");
    let make = || {
        Service::new(&service, "1").command(Command::new("greet", greet)).subscription(
            Subscription::new("onGreeted", |_: Payload<serde_json::Value>| async { Ok::<_, HandledError>(()) }).on_event("greeted"),
        )
    };
    let mut watcher = Presence::watch(harness.connect().await).await.expect("watch info messages");
    let first = harness.app(vec![make()]).await;
    let second = harness.app(vec![make()]).await;
    watcher.discover().await.expect("ask for announcements");
    let ready = |instances: &[Instance]| {
        instances
            .iter()
            .filter(|i| {
                i.state == State::Ready
                    && i.commands.iter().any(|c| c.name == "greet")
                    && i.subscriptions.iter().any(|s| s.name == "onGreeted")
            })
            .count()
    };
    let ours = |watcher: &Presence| instances_of(watcher, &service);
    wait_for_presence(harness, &mut watcher, &service, "two ready instances", &|seen: &[Instance]| {
        ready(seen) == 2
    })
    .await;
    let subscription = &ours(&watcher)[0].subscriptions[0];
    assert_eq!(subscription.event.as_deref(), Some("greeted"));
    first.shutdown().await;
    wait_for_presence(
        harness,
        &mut watcher,
        &service,
        "one instance stopped, one ready",
        &|seen: &[Instance]| seen.iter().filter(|i| i.state == State::Stopped).count() == 1 && ready(seen) == 1,
    )
    .await;
    // A watcher that starts now hears only from the instance still running.
    let mut late = Presence::watch(harness.connect().await).await.expect("watch info messages");
    late.discover().await.expect("ask for announcements");
    wait_for_presence(
        harness,
        &mut late,
        &service,
        "the running instance to answer",
        &|seen: &[Instance]| ready(seen) == 1,
    )
    .await;
    assert_eq!(ours(&late).len(), 1, "{:?}", ours(&late));
    report(&format!(
        "[{}] presence: 2 instances ready with their functions, 1 seen stopping, 1 answering a later watcher",
        harness.name()
    ));
    late.close().await;
    second.shutdown().await;
    watcher.close().await;
}

fn instances_of(watcher: &purest_core::presence::Presence, service: &str) -> Vec<purest_core::presence::Instance> {
    watcher.instances().filter(|i| i.service == service).cloned().collect()
}

/// Takes info messages until `done` holds for `service`'s instances, failing after 15 s with
/// what was seen.
async fn wait_for_presence(
    harness: &Harness,
    watcher: &mut purest_core::presence::Presence,
    service: &str,
    what: &str,
    done: &dyn Fn(&[purest_core::presence::Instance]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(&instances_of(watcher, service)) {
        if !matches!(tokio::time::timeout_at(deadline, watcher.next()).await, Ok(Some(_))) {
            panic!(
                "[{}] timed out waiting for {what}; saw {:?}",
                harness.name(),
                instances_of(watcher, service)
            );
        }
    }
}

/// The names of the events [`invite`] emits, unique per run.
#[derive(Clone)]
struct InviteEvents {
    invited: String,
    rejected: String,
}

async fn invite(ctx: Context, State(events): State<InviteEvents>, Payload(email): Payload<String>) -> Result<(), HandledError> {
    let event = if email.starts_with("taken") {
        events.rejected
    } else {
        events.invited
    };
    ctx.emit(event, email).await
}

/// Microlithic CQRS across two apps on the bridge: one dispatches commands and waits for the
/// first correlated event of a list, the other serves them. Every conversation gets its own
/// event (invited or rejected, as decided); a command nobody serves fails its waiter with 503.
pub async fn dispatch_and_wait(harness: &Harness) {
    let service = unique("inviter");
    let events = InviteEvents {
        invited: unique("invited"),
        rejected: unique("rejected"),
    };
    let serving = harness
        .app(vec![
            Service::new(&service, "1")
                .state(events.clone())
                .command(Command::new("invite", invite)),
        ])
        .await;
    let dispatching = Host::new()
        .shared_bridge(harness.connect().await)
        .awaits(&events.invited)
        .awaits(&events.rejected)
        .start()
        .await
        .unwrap();
    let client = dispatching.client();
    let target = format!("{service}/1/invite");
    let mut conversations = Vec::new();
    for n in 0..20 {
        let email = if n % 4 == 0 {
            format!("taken{n}@example.com")
        } else {
            format!("user{n}@example.com")
        };
        conversations.push((client.dispatch(target.clone(), email.clone()).await.unwrap(), email));
    }
    let names = [events.invited.as_str(), events.rejected.as_str()];
    for (conversation, email) in &conversations {
        let event = client.wait_for_event(conversation, &names, Duration::from_secs(20)).await.unwrap();
        let expected = if email.starts_with("taken") {
            &events.rejected
        } else {
            &events.invited
        };
        assert_eq!(event.event_name.as_deref(), Some(expected.as_str()), "[{}] {email}", harness.name);
        assert_eq!(event.correlation_id.as_ref(), Some(conversation));
    }
    let nobody = client
        .dispatch(format!("{}/1/invite", unique("nobody")), "x@example.com")
        .await
        .unwrap();
    let refused = client.wait_for_event(&nobody, &names, Duration::from_secs(20)).await.unwrap_err();
    assert_eq!(refused.status, 503, "[{}] {refused}", harness.name);
    println!("[{}] dispatch and wait: 20 conversations answered by their own event", harness.name);
    dispatching.shutdown().await;
    serving.shutdown().await;
}

/// Where a traced message's `otp` was seen: by the command, and by the subscriber of the event
/// the command emitted.
#[derive(Clone, Default)]
struct SeenOtp(Arc<Mutex<Vec<Option<String>>>>);

#[derive(Clone)]
struct TracedEvent(String);

async fn traced_command(ctx: Context, State(event): State<TracedEvent>) -> Result<Option<String>, HandledError> {
    ctx.emit(event.0, ()).await?;
    Ok(ctx.message().otp.as_deref().map(str::to_owned))
}

async fn traced_subscriber(ctx: Context, State(seen): State<SeenOtp>) -> Result<(), HandledError> {
    seen.0.lock().unwrap().push(ctx.message().otp.as_deref().map(str::to_owned));
    Ok(())
}

/// The W3C trace context travels: a command's `otp` (holding `traceparent`) reaches its handler
/// unchanged, and the event that handler emits carries it on to a subscriber in another service.
pub async fn trace_context(harness: &Harness) {
    let service = unique("traced");
    let event = unique("tracedEvent");
    let seen = SeenOtp::default();
    let app = harness
        .app(vec![
            Service::new(&service, "1")
                .state(TracedEvent(event.clone()))
                .command(Command::new("run", traced_command)),
            Service::new(&unique("tracer"), "1")
                .state(seen.clone())
                .subscription(Subscription::new("record", traced_subscriber).on_event(&event)),
        ])
        .await;
    let otp = purest_core::trace_context::otp_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let mut command = Envelope::new(
        Arc::new(Address::new("caller", "1", "run")),
        Message::Command {
            payload: Body::json(serde_json::Value::Null),
            parameter: Body::empty_object(),
        },
    );
    command.receiver = Some(Arc::new(Address::new(&service, "1", "run")));
    command.correlation_id = Some(Id::random());
    command.otp = Some(otp.clone());
    let response = app.bridge().invoke(command, Duration::from_secs(20)).await.unwrap();
    let Message::Success { payload } = response.message else {
        panic!("[{}] the command failed: {:?}", harness.name, response.message);
    };
    let handled: Option<String> = payload.into_typed().unwrap();
    assert_eq!(
        handled.as_deref(),
        Some(&*otp),
        "[{}] the handler saw the sender's otp",
        harness.name
    );
    wait_until("the subscriber got the event", Duration::from_secs(20), || {
        !seen.0.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        seen.0.lock().unwrap()[0].as_deref(),
        Some(&*otp),
        "[{}] the emitted event carried the trace on",
        harness.name
    );
    println!(
        "[{}] trace context: traceparent carried to the handler and on to a subscriber",
        harness.name
    );
    app.shutdown().await;
}
