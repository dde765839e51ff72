//! Backpressure on the in-memory bridge: a subscription's queue is bounded; a full queue makes
//! emitters wait within their deadline and then answers 503 naming the subscription; nothing
//! accepted is lost. Time is tokio's paused clock: the delays are logical, the tests fast.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_core::prelude::*;
use purest_core::testing::TestApp;
use tokio::sync::Notify;

/// An event of about 1 KB.
#[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Blob {
    n: u64,
    data: String,
}

#[tokio::test(start_paused = true)]
async fn a_flooded_slow_subscriber_holds_at_most_its_capacity_and_loses_nothing() {
    const CAPACITY: usize = 64;
    let handled = Arc::new(Mutex::new(Vec::<u64>::new()));
    let log = handled.clone();
    let slow = move |Payload(blob): Payload<Blob>| {
        let log = log.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            log.lock().unwrap().push(blob.n);
            Ok::<_, HandledError>(())
        }
    };
    let app = TestApp::new()
        .service(
            Service::new("sink", "1").subscription(
                Subscription::new("slow", slow)
                    .on_event("blob")
                    .durable()
                    .concurrency(1)
                    .queue_capacity(CAPACITY),
            ),
        )
        .start()
        .await;

    // 20 emitters, 100 events each, each emit willing to wait 50 ms for room: far more than a
    // subscriber handling 100 events/s (one at a time, 10 ms each) can take in that time.
    let client = app.client().with_timeout(Duration::from_millis(50));
    let emitters: Vec<_> = (0..20u64)
        .map(|emitter| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..100 {
                    let n = emitter * 100 + i;
                    let blob = Blob { n, data: "x".repeat(1000) };
                    outcomes.push((n, client.emit("blob", blob).await));
                }
                outcomes
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refusals = Vec::new();
    for emitter in emitters {
        for (n, outcome) in emitter.await.unwrap() {
            match outcome {
                Ok(()) => accepted.push(n),
                Err(refusal) => refusals.push(refusal),
            }
        }
    }
    assert!(
        !refusals.is_empty(),
        "a flood beyond the capacity must be refused, not queued without end"
    );
    for refusal in &refusals {
        assert_eq!(refusal.status, 503, "{refusal}");
        assert!(
            refusal.message.contains("sink/1/slow is full"),
            "names the full subscription: {refusal}"
        );
    }

    // Everything accepted is handled exactly once; nothing refused is.
    let handled_all = || handled.lock().unwrap().len() >= accepted.len();
    while !handled_all() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seen = handled.lock().unwrap().clone();
    seen.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(seen, accepted, "every accepted event handled once, no refused one");

    let stats = app.subscription_stats("sink/1/slow");
    assert_eq!(stats.capacity, CAPACITY as u64);
    assert_eq!(
        stats.high_water, CAPACITY as u64,
        "the queue filled up, and never beyond: {stats:?}"
    );
    assert_eq!(stats.refused, refusals.len() as u64);
    assert_eq!((stats.held, stats.queued), (0, 0), "every place given back: {stats:?}");
    assert_eq!(
        accepted.len() + refusals.len(),
        2000,
        "{} accepted, {} refused",
        accepted.len(),
        refusals.len()
    );
    app.shutdown().await;
}

type Handled = std::pin::Pin<Box<dyn Future<Output = Result<(), HandledError>> + Send>>;

/// A subscription handler that finishes only when its gate is opened, once per message.
fn gated() -> (Arc<Notify>, impl Fn(Payload<u64>) -> Handled + Clone + Send + Sync + 'static) {
    let gate = Arc::new(Notify::new());
    let opened = gate.clone();
    let blocked = move |Payload(_): Payload<u64>| -> Handled {
        let opened = opened.clone();
        Box::pin(async move {
            opened.notified().await;
            Ok(())
        })
    };
    (gate, blocked)
}

#[tokio::test(start_paused = true)]
async fn an_emit_waits_for_room_within_its_deadline() {
    let (gate, blocked) = gated();
    let app = TestApp::new()
        .service(Service::new("s", "1").subscription(Subscription::new("one", blocked).on_event("e").concurrency(1).queue_capacity(2)))
        .start()
        .await;
    let client = app.client().with_timeout(Duration::from_secs(5));
    client.emit("e", 1u64).await.unwrap();
    client.emit("e", 2u64).await.unwrap();
    // Full (one running, one queued): the third waits, and gets in once the first is done.
    let third = tokio::spawn({
        let client = client.clone();
        async move { client.emit("e", 3u64).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!third.is_finished(), "a full queue makes the emitter wait");
    gate.notify_one();
    third.await.unwrap().expect("room freed within the deadline");
    gate.notify_one();
    gate.notify_one();
    app.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_command_whose_success_event_finds_no_room_answers_503_after_its_deadline() {
    async fn make(Payload(n): Payload<u64>) -> Result<u64, HandledError> {
        Ok(n)
    }
    let (gate, blocked) = gated();
    let app = TestApp::new()
        .service(Service::new("maker", "1").command(Command::new("make", make).success_event("made")))
        .service(Service::new("s", "1").subscription(Subscription::new("one", blocked).on_event("made").concurrency(1).queue_capacity(1)))
        .start()
        .await;
    let client = app.client().with_timeout(Duration::from_millis(200));
    assert_eq!(client.invoke::<u64>("maker/1/make", 1u64).await.unwrap(), 1);
    let refused = client.invoke::<u64>("maker/1/make", 2u64).await.unwrap_err();
    assert_eq!(refused.status, 503, "{refused}");
    assert!(refused.message.contains("could not be recorded"), "{refused}");
    gate.notify_one();
    app.shutdown().await;
}

#[tokio::test]
async fn retry_on_a_best_effort_subscription_fails_at_start_and_says_to_add_durable() {
    async fn noop(Payload(_): Payload<u64>) -> Result<(), HandledError> {
        Ok(())
    }
    let service = Service::new("mail", "1").subscription(Subscription::new("send", noop).on_event("e").retry(Retry::exponential(3)));
    let error = Host::new().service(service).start().await.err().expect("refused");
    let text = error.to_string();
    assert!(text.contains("`send`") && text.contains("add .durable()"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_transient_handler_errors_are_retried() {
    let runs = Arc::new(Mutex::new(Vec::<u16>::new()));
    let log = runs.clone();
    let fails_with = move |Payload(status): Payload<u16>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(status);
            Err::<(), _>(HandledError::new(status, "refused"))
        }
    };
    let retry = Retry::exponential(3).backoff(Duration::from_millis(1));
    let app = TestApp::new()
        .service(Service::new("s", "1").subscription(Subscription::new("f", fails_with).on_event("e").durable().retry(retry)))
        .start()
        .await;
    let dead = app.record(purest_core::bridge::DEFAULT_DEAD_LETTER);
    for status in [409u16, 503, 429, 400] {
        app.client().emit("e", status).await.unwrap();
    }
    let letters = dead.wait_for(4, Duration::from_secs(10)).await;
    let attempts: HashSet<(u64, u64)> = letters
        .iter()
        .map(|l| (l["message"]["payload"].as_u64().unwrap(), l["attempts"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        attempts,
        HashSet::from([(409, 1), (503, 3), (429, 3), (400, 1)]),
        "4xx: at once; 5xx and 429: retried"
    );
    app.shutdown().await;
}
