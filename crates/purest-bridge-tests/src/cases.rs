//! The cases. Each takes a [`Harness`], asserts one promise of DESIGN.md §5 and prints its counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_core::prelude::*;
use serde_json::json;

use crate::{Counts, Harness, unique, wait_until};

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
    let client = app.client().with_principal("user-42").with_tenant("tenant-7").with_trace_id(trace);
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

/// §5.2: no handler → 503 at once; past the deadline → 504 within the deadline plus a margin.
pub async fn deadline_and_no_handler(harness: &Harness) {
    let name = unique("slow");
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok::<_, HandledError>(1u32)
    };
    let app = harness
        .app(vec![Service::new(&name, "1").command(Command::new("slow", slow))])
        .await;
    let started = Instant::now();
    let err = app.client().invoke::<u32>(format!("{name}/1/nothing"), ()).await.unwrap_err();
    let no_handler = started.elapsed();
    assert_eq!(err.status, 503, "{err}");
    assert!(err.message.contains("nothing"), "{err}");
    assert!(no_handler < Duration::from_secs(1), "503 must come at once, took {no_handler:?}");
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
        deadline < Duration::from_millis(1000),
        "504 must come near the deadline, took {deadline:?}"
    );
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
    wait_until("the events emitted while down", Duration::from_secs(15), || {
        seen(&log, "sent").len() >= EVENTS as usize
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
    let letters: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = letters.clone();
    let record_letter = move |Payload(letter): Payload<serde_json::Value>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(letter);
            Ok::<_, HandledError>(())
        }
    };
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
    let done = finished.clone();
    let slow_command = move || {
        let done = done.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            done.lock().unwrap().push("command");
            Ok::<_, HandledError>(1u32)
        }
    };
    let done = finished.clone();
    let slow_subscription = move |Payload(_): Payload<u64>| {
        let done = done.clone();
        async move {
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
    tokio::time::sleep(Duration::from_millis(150)).await;
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
