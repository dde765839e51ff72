//! Events and subscriptions on the in-memory bridge: fan-out, filters, success events, durable
//! delivery, retries and dead letters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_core::prelude::*;
use purest_core::testing::TestApp;
use serde_json::json;

type Seen = Arc<Mutex<Vec<(String, u64)>>>;

type Handled = std::pin::Pin<Box<dyn Future<Output = Result<(), HandledError>> + Send>>;

/// A subscription handler recording `(label, payload)`.
fn recorder(seen: &Seen, label: &str) -> impl Fn(Payload<u64>) -> Handled + Clone + Send + Sync + 'static {
    let (seen, label) = (seen.clone(), label.to_owned());
    move |Payload(n): Payload<u64>| {
        let (seen, label) = (seen.clone(), label.clone());
        Box::pin(async move {
            seen.lock().unwrap().push((label, n));
            Ok(())
        })
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn count(seen: &Seen, label: &str) -> usize {
    seen.lock().unwrap().iter().filter(|(l, _)| l == label).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_every_subscribing_service_once() {
    let seen: Seen = Default::default();
    let mut test = TestApp::new();
    for name in ["a", "b", "c"] {
        test = test.service(Service::new(name, "1").subscription(Subscription::new("on", recorder(&seen, name)).on_event("tick")));
    }
    let app = test.start().await;
    for n in 0..100u64 {
        app.client().emit("tick", n).await.unwrap();
    }
    wait_until("300 deliveries", || seen.lock().unwrap().len() >= 300).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for name in ["a", "b", "c"] {
        let mut got: Vec<u64> = seen.lock().unwrap().iter().filter(|(l, _)| l == name).map(|(_, n)| *n).collect();
        got.sort();
        assert_eq!(got, (0..100).collect::<Vec<_>>(), "service {name} got every event exactly once");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_subscriptions_unless_every_instance_is_asked_for() {
    let seen: Seen = Default::default();
    let service = |label: &str| {
        Service::new("worker", "1")
            .subscription(Subscription::new("shared", recorder(&seen, "shared")).on_event("job"))
            .subscription(Subscription::new("all", recorder(&seen, label)).on_event("job").every_instance())
    };
    let bridge = MemoryBridge::new();
    let first = Host::new()
        .bridge(bridge.clone())
        .service(service("instance1"))
        .start()
        .await
        .unwrap();
    let second = Host::new()
        .bridge(bridge.clone())
        .service(service("instance2"))
        .start()
        .await
        .unwrap();
    for n in 0..200u64 {
        first.client().emit("job", n).await.unwrap();
    }
    wait_until("600 deliveries", || seen.lock().unwrap().len() >= 600).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(count(&seen, "shared"), 200, "one instance of the service handles each event");
    assert_eq!(
        count(&seen, "instance1"),
        200,
        "every-instance subscriptions see every event on each instance"
    );
    assert_eq!(count(&seen, "instance2"), 200);
    first.shutdown().await;
    second.shutdown().await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Order {
    id: u64,
    total: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_events_filters_and_subscription_outputs() {
    async fn place(Payload(order): Payload<Order>) -> Result<Order, HandledError> {
        Ok(order)
    }
    async fn invoice(Payload(order): Payload<Order>) -> Result<u64, HandledError> {
        Ok(order.total * 2)
    }
    let seen: Seen = Default::default();
    let tenant_seen = seen.clone();
    let by_tenant = move |ctx: Context, Payload(order): Payload<Order>| {
        let seen = tenant_seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push((format!("tenant:{}", ctx.tenant_id().unwrap_or("-")), order.id));
            Ok::<_, HandledError>(())
        }
    };
    let app = TestApp::new()
        .service(Service::new("shop", "1").command(Command::new("place", place).success_event("orderPlaced")))
        .service(Service::new("billing", "1").subscription(Subscription::new("invoice", invoice).on_event("orderPlaced").emits("invoiced")))
        .service(
            Service::new("audit", "1")
                .subscription(Subscription::new("acme", by_tenant).on_event("orderPlaced").tenant("acme"))
                .subscription(Subscription::new("fromShop", recorder(&seen, "fromShop")).from_command("billing", "1", "invoice")),
        )
        .start()
        .await;
    let invoiced = app.record("invoiced");
    let client = app.client();
    client
        .clone()
        .with_tenant("acme")
        .invoke::<Order>("shop/1/place", Order { id: 1, total: 10 })
        .await
        .unwrap();
    client
        .clone()
        .with_tenant("other")
        .invoke::<Order>("shop/1/place", Order { id: 2, total: 20 })
        .await
        .unwrap();
    let mut totals = invoiced.wait_for(2, Duration::from_secs(5)).await;
    totals.sort_by_key(|v| v.as_u64());
    assert_eq!(
        totals,
        [json!(20), json!(40)],
        "the subscription's output is emitted as its own event"
    );
    wait_until("audit", || count(&seen, "fromShop") == 2 && count(&seen, "tenant:acme") == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| l.starts_with("tenant:"))
            .collect::<Vec<_>>(),
        [&("tenant:acme".to_owned(), 1)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_events_wait_for_a_consumer_that_is_down() {
    let seen: Seen = Default::default();
    let service =
        || Service::new("mailer", "1").subscription(Subscription::new("send", recorder(&seen, "sent")).on_event("mail").durable());
    let bridge = MemoryBridge::new();
    let emitter = Host::new().bridge(bridge.clone()).start().await.unwrap();
    let consumer = Host::new().bridge(bridge.clone()).service(service()).start().await.unwrap();
    emitter.client().emit("mail", 1u64).await.unwrap();
    wait_until("first mail", || count(&seen, "sent") == 1).await;
    consumer.shutdown().await;
    for n in 2..=50u64 {
        emitter.client().emit("mail", n).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(count(&seen, "sent"), 1, "nothing is delivered while the consumer is down");
    assert_eq!(bridge.subscription_stats()["mailer/1/send"].queued, 49);
    let consumer = Host::new().bridge(bridge.clone()).service(service()).start().await.unwrap();
    wait_until("all mails", || count(&seen, "sent") == 50).await;
    let mut got: Vec<u64> = seen.lock().unwrap().iter().map(|(_, n)| *n).collect();
    got.sort();
    assert_eq!(got, (1..=50).collect::<Vec<_>>());
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_durable_handler_is_retried_with_growing_delays_then_dead_lettered() {
    let attempts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let log = attempts.clone();
    let always_fails = move |Payload(_): Payload<u64>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(Instant::now());
            Err::<(), _>(std::io::Error::other("smtp down"))
        }
    };
    let retry = Retry::exponential(4)
        .backoff(Duration::from_millis(40))
        .jitter(false)
        .dead_letter("mail.dlq");
    let app = TestApp::new()
        .service(Service::new("mailer", "1").subscription(Subscription::new("send", always_fails).on_event("mail").durable().retry(retry)))
        .start()
        .await;
    let dead = app.record("mail.dlq");
    app.client().with_tenant("t1").emit("mail", 7u64).await.unwrap();
    let letters = dead.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1, "dead-lettered once");
    let letter: DeadLetter = serde_json::from_value(letters[0].clone()).unwrap();
    assert_eq!(letter.attempts, 4);
    assert_eq!(letter.subscription, "mailer/1/send");
    assert_eq!(letter.event_name.as_deref(), Some("mail"));
    assert!(letter.reason.contains("smtp down"), "{letter:?}");
    assert_eq!(letter.message["payload"], json!(7));
    assert_eq!(letter.message["tenantId"], json!("t1"));

    let times = attempts.lock().unwrap().clone();
    assert_eq!(times.len(), 4, "ran exactly max_attempts times");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(40) && gaps[1] >= Duration::from_millis(80) && gaps[2] >= Duration::from_millis(160),
        "{gaps:?}"
    );
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "delays grow: {gaps:?}");

    let stats = app.subscription_stats("mailer/1/send");
    assert_eq!(
        (stats.attempts, stats.retried, stats.dead_lettered, stats.acked),
        (4, 3, 1, 0),
        "{stats:?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_message_failing_validation_is_dead_lettered_at_once() {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let typed = move |Payload(_): Payload<Order>| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandledError>(())
        }
    };
    let app = TestApp::new()
        .service(Service::new("bill", "1").subscription(Subscription::new("on", typed).on_event("order").durable()))
        .start()
        .await;
    let dead = app.record(purest_core::bridge::DEFAULT_DEAD_LETTER);
    app.client().emit("order", json!({"id": "not a number"})).await.unwrap();
    let letters = dead.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(letters[0]["attempts"], 1, "retrying a message that fails its schema cannot help");
    assert!(letters[0]["reason"].as_str().unwrap().contains("/id"), "{}", letters[0]);
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    app.client().emit("order", Order { id: 1, total: 2 }).await.unwrap();
    wait_until("valid order handled", || handled.load(Ordering::SeqCst) == 1).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_failures_are_counted_and_not_retried() {
    async fn fails(Payload(_): Payload<u64>) -> Result<(), HandledError> {
        Err(HandledError::unprocessable("no"))
    }
    let app = TestApp::new()
        .service(Service::new("s", "1").subscription(Subscription::new("f", fails).on_event("e")))
        .start()
        .await;
    app.client().emit("e", 1u64).await.unwrap();
    wait_until("failure counted", || app.subscription_stats("s/1/f").failed == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = app.subscription_stats("s/1/f");
    assert_eq!((stats.attempts, stats.retried, stats.dead_lettered), (1, 0, 0));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_subscription_is_retried_and_the_consumer_keeps_running() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let panics_first = move |Payload(n): Payload<u64>| {
        let counter = counter.clone();
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("first delivery of {n} blows up");
            }
            Ok::<_, HandledError>(())
        }
    };
    let retry = Retry::exponential(3).backoff(Duration::from_millis(10));
    let app = TestApp::new()
        .service(Service::new("p", "1").subscription(Subscription::new("s", panics_first).on_event("e").durable().retry(retry)))
        .start()
        .await;
    app.client().emit("e", 1u64).await.unwrap();
    wait_until("acked after the panic", || app.subscription_stats("p/1/s").acked == 1).await;
    app.client().emit("e", 2u64).await.unwrap();
    wait_until("next event handled", || app.subscription_stats("p/1/s").acked == 2).await;
    let stats = app.subscription_stats("p/1/s");
    assert_eq!((stats.attempts, stats.retried, stats.dead_lettered), (3, 1, 0), "{stats:?}");
    app.shutdown().await;
}

type Correlations = Arc<Mutex<Vec<(&'static str, Option<Id>)>>>;

async fn place(ctx: Context, State(seen): State<Correlations>) -> Result<(), HandledError> {
    seen.lock().unwrap().push(("command", ctx.correlation_id()));
    ctx.emit("placed", 1u64).await
}

async fn on_placed(ctx: Context, State(seen): State<Correlations>) -> Result<(), HandledError> {
    seen.lock().unwrap().push(("placed", ctx.correlation_id()));
    ctx.emit("billed", 2u64).await
}

async fn on_billed(ctx: Context, State(seen): State<Correlations>) -> Result<(), HandledError> {
    seen.lock().unwrap().push(("billed", ctx.correlation_id()));
    Ok(())
}

/// A command's correlation id travels with the events its handler emits, and on with the events
/// their subscribers emit: one conversation, one id. An event emitted from outside any handler
/// has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_correlation_id_of_what_caused_them() {
    let seen = Correlations::default();
    let service = Service::new("orders", "1")
        .state(seen.clone())
        .command(Command::new("place", place))
        .subscription(Subscription::new("bill", on_placed).on_event("placed"))
        .subscription(Subscription::new("record", on_billed).on_event("billed"));
    let app = TestApp::new().service(service).start().await;
    app.client().invoke::<()>("orders/1/place", ()).await.unwrap();
    wait_until("the chain to finish", || seen.lock().unwrap().len() == 3).await;
    let chain = seen.lock().unwrap().clone();
    let command_id = chain[0].1.clone().expect("a command has a correlation id");
    assert_eq!(
        chain,
        [
            ("command", Some(command_id.clone())),
            ("placed", Some(command_id.clone())),
            ("billed", Some(command_id))
        ]
    );

    app.client().emit("billed", 3u64).await.unwrap();
    wait_until("the outside event", || seen.lock().unwrap().len() == 4).await;
    assert_eq!(seen.lock().unwrap()[3], ("billed", None));
    app.shutdown().await;
}
