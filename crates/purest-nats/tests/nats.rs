//! The NATS bridge against the real nats-server on 127.0.0.1:4222 (set `PUREST_NATS_URL` to use
//! another). Without a server these tests skip, unless `PUREST_REQUIRE_BROKERS=1` (CI), where they
//! fail. Every test uses its own service names, so tests can share the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_core::prelude::*;
use purest_nats::NatsBridge;
use serde_json::json;

fn url() -> String {
    std::env::var("PUREST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A connected bridge, or `None` (skip) when no server runs and brokers are not required.
async fn bridge() -> Option<NatsBridge> {
    let reachable = tokio::net::TcpStream::connect(url().trim_start_matches("nats://")).await.is_ok();
    if !reachable {
        if std::env::var("PUREST_REQUIRE_BROKERS").as_deref() == Ok("1") {
            panic!("NATS is not reachable at {} and PUREST_REQUIRE_BROKERS=1", url());
        }
        eprintln!("skipping: NATS is not reachable at {}", url());
        return None;
    }
    Some(NatsBridge::connect_url(&url()).await.expect("connect to NATS"))
}

/// A service name no other test (or earlier run) uses.
fn unique(base: &str) -> String {
    format!("{base}{}", &Id::random().to_string()[..8])
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct Greeting {
    #[garde(length(min = 1))]
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Seen {
    text: String,
    principal: Option<String>,
    tenant: Option<String>,
    trace: String,
    copies: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct Copies {
    #[garde(range(min = 1, max = 3))]
    copies: u32,
}

async fn greet(ctx: Context, Payload(g): Payload<Greeting>, Params(p): Params<Copies>) -> Result<Seen, HandledError> {
    if g.name == "taken" {
        return Err(HandledError::conflict("name taken").with_data(json!({"name": "taken"})));
    }
    Ok(Seen {
        text: format!("hello {}", g.name),
        principal: ctx.principal_id().map(str::to_owned),
        tenant: ctx.tenant_id().map(str::to_owned),
        trace: ctx.trace_id().to_string(),
        copies: p.copies,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_payload_params_principal_tenant_trace_and_errors() {
    let Some(bridge) = bridge().await else { return };
    let name = unique("greeter");
    let app = App::new()
        .bridge(bridge)
        .service(Service::new(&name, "1").command(Command::new("greet", greet)))
        .start()
        .await
        .unwrap();
    let trace = Id::random();
    let client = app.client().with_principal("user-42").with_tenant("tenant-7").with_trace_id(trace);
    let target = format!("{name}/1/greet");
    let seen: Seen = client
        .call(target.clone())
        .params(Copies { copies: 2 })
        .invoke(Greeting { name: "ann".into() })
        .await
        .unwrap();
    assert_eq!(
        seen,
        Seen {
            text: "hello ann".into(),
            principal: Some("user-42".into()),
            tenant: Some("tenant-7".into()),
            trace: trace.to_string(),
            copies: 2
        }
    );

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
    assert_eq!(err.status, 400);
    assert!(err.message.contains("/name") || err.message.contains("/copies"), "{err}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_503_at_once_and_a_deadline_is_504() {
    let Some(bridge) = bridge().await else { return };
    let name = unique("slow");
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, HandledError>(1u32)
    };
    let app = App::new()
        .bridge(bridge)
        .service(Service::new(&name, "1").command(Command::new("slow", slow)))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let err = app.client().invoke::<u32>(format!("{name}/1/nothing"), ()).await.unwrap_err();
    assert_eq!(err.status, 503, "{err}");
    assert!(err.message.contains("nothing"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no responders is known at once: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let err = app
        .client()
        .call(format!("{name}/1/slow"))
        .timeout(Duration::from_millis(300))
        .invoke::<u32>(())
        .await
        .unwrap_err();
    assert_eq!(err.status, 504, "{err}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_two_connections_share_the_load() {
    let Some(first_bridge) = bridge().await else { return };
    let second_bridge = bridge().await.unwrap();
    let name = unique("calc");
    let which = |ctx: Context, Payload(n): Payload<u64>| async move {
        Ok::<_, HandledError>((ctx.address().instance_id.as_deref().unwrap_or_default().to_owned(), n))
    };
    let service = || Service::new(&name, "1").command(Command::new("which", which));
    let first = App::new().bridge(first_bridge).service(service()).start().await.unwrap();
    let second = App::new().bridge(second_bridge).service(service()).start().await.unwrap();
    let client = first.client();
    let target = format!("{name}/1/which");
    let calls = (0..1000u64).map(|n| {
        let (client, target) = (client.clone(), target.clone());
        async move { client.invoke::<(String, u64)>(target, n).await.unwrap() }
    });
    let answers = futures::future::join_all(calls).await;
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for (n, (instance, echoed)) in answers.into_iter().enumerate() {
        assert_eq!(echoed, n as u64);
        *per_instance.entry(instance).or_default() += 1;
    }
    println!("1000 calls over NATS, per instance: {per_instance:?}");
    assert_eq!(per_instance.len(), 2, "both instances used: {per_instance:?}");
    assert_eq!(per_instance.values().sum::<usize>(), 1000, "each call handled exactly once");
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

fn count(log: &Log, label: &str) -> usize {
    log.lock().unwrap().iter().filter(|(l, _)| l == label).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fan_out_to_every_service_once_and_to_every_instance_when_asked() {
    let Some(bridge) = bridge().await else { return };
    let other = bridge.clone();
    let event = unique("tick");
    let log: Log = Default::default();
    let mut app = App::new().bridge(bridge);
    for label in ["a", "b", "c"] {
        app = app.service(Service::new(&unique(label), "1").subscription(Subscription::new("on", recorder(&log, label)).on_event(&event)));
    }
    let watcher = unique("watch");
    let app = app
        .service(
            Service::new(&watcher, "1").subscription(
                Subscription::new("all", recorder(&log, "instance1"))
                    .on_event(&event)
                    .every_instance(),
            ),
        )
        .start()
        .await
        .unwrap();
    let second = App::new()
        .bridge(other)
        .service(
            Service::new(&watcher, "1").subscription(
                Subscription::new("all", recorder(&log, "instance2"))
                    .on_event(&event)
                    .every_instance(),
            ),
        )
        .start()
        .await
        .unwrap();
    for n in 0..50u64 {
        app.client().emit(Name::new(&event), n).await.unwrap();
    }
    wait_until("250 deliveries", || log.lock().unwrap().len() >= 250).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for label in ["a", "b", "c", "instance1", "instance2"] {
        assert_eq!(count(&log, label), 50, "{label} received each event exactly once");
    }
    app.shutdown().await;
    second.shutdown().await;
}

/// Removes a test's durable consumer, so the shared server keeps no interest in its events.
async fn forget_consumer(bridge: &NatsBridge, service: &str, subscription: &str) {
    let jetstream = async_nats::jetstream::new(bridge.client().clone());
    if let Ok(stream) = jetstream.get_stream(purest_nats::EVENT_STREAM).await {
        let _ = stream.delete_consumer(&format!("purest_{service}_1_{subscription}")).await;
        let _ = stream
            .delete_consumer(&format!("purest_{service}_1_{subscription}__command_success_response"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_events_wait_while_the_subscriber_is_down() {
    let Some(bridge) = bridge().await else { return };
    let (service, event) = (unique("mailer"), unique("mail"));
    let log: Log = Default::default();
    let durable = || Service::new(&service, "1").subscription(Subscription::new("send", recorder(&log, "sent")).on_event(&event).durable());
    let emitter = App::new().bridge(bridge.clone()).start().await.unwrap();
    let consumer = App::new().bridge(bridge.clone()).service(durable()).start().await.unwrap();
    emitter.client().emit(Name::new(&event), 0u64).await.unwrap();
    wait_until("the first event", || count(&log, "sent") == 1).await;
    consumer.shutdown().await;
    for n in 1..=20u64 {
        emitter.client().emit(Name::new(&event), n).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&log, "sent"), 1, "nothing is delivered while the subscriber is down");
    let consumer = App::new().bridge(bridge.clone()).service(durable()).start().await.unwrap();
    wait_until("the events sent while down", || count(&log, "sent") >= 21).await;
    let mut got: Vec<u64> = log.lock().unwrap().iter().map(|(_, n)| *n).collect();
    got.sort();
    got.dedup();
    assert_eq!(got, (0..=20).collect::<Vec<_>>(), "every event arrived");
    consumer.shutdown().await;
    emitter.shutdown().await;
    forget_consumer(&bridge, &service, "send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_durable_handler_is_retried_with_growing_delays_then_dead_lettered() {
    let Some(bridge) = bridge().await else { return };
    let (service, event, dlq) = (unique("failing"), unique("job"), unique("dlq"));
    let attempts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let times = attempts.clone();
    let always_fails = move |Payload(_): Payload<u64>| {
        let times = times.clone();
        async move {
            times.lock().unwrap().push(Instant::now());
            Err::<(), _>(std::io::Error::other("downstream is down"))
        }
    };
    let letters = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = letters.clone();
    let record_letter = move |Payload(letter): Payload<serde_json::Value>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(letter);
            Ok::<_, HandledError>(())
        }
    };
    let retry = Retry::exponential(3).backoff(Duration::from_millis(200)).dead_letter(&dlq);
    let app = App::new()
        .bridge(bridge.clone())
        .service(Service::new(&service, "1").subscription(Subscription::new("work", always_fails).on_event(&event).durable().retry(retry)))
        .service(Service::new(&unique("ops"), "1").subscription(Subscription::new("letters", record_letter).on_event(&dlq)))
        .start()
        .await
        .unwrap();
    app.client().with_tenant("t-1").emit(Name::new(&event), 7u64).await.unwrap();
    wait_until("the dead letter", || !letters.lock().unwrap().is_empty()).await;
    let letter = letters.lock().unwrap()[0].clone();
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["subscription"], format!("{service}/1/work"));
    assert!(letter["reason"].as_str().unwrap().contains("downstream is down"), "{letter}");
    assert_eq!(letter["message"]["payload"], 7);
    assert_eq!(letter["message"]["tenantId"], "t-1");
    let times = attempts.lock().unwrap().clone();
    assert_eq!(times.len(), 3, "ran exactly max_attempts times");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(200) && gaps[1] >= Duration::from_millis(400),
        "delays grow: {gaps:?}"
    );
    assert_eq!(bridge.stats().dead_lettered.load(std::sync::atomic::Ordering::Relaxed), 1);
    app.shutdown().await;
    forget_consumer(&bridge, &service, "work").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_rejected_counted_and_dead_lettered_and_service_keeps_answering() {
    let Some(bridge) = bridge().await else { return };
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
    let letters = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = letters.clone();
    let record_letter = move |Payload(letter): Payload<serde_json::Value>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(letter);
            Ok::<_, HandledError>(())
        }
    };
    let app = App::new()
        .bridge(bridge.clone())
        .service(
            Service::new(&name, "1").command(Command::new("greet", greet)).subscription(
                Subscription::new("orders", on_order)
                    .on_event(&event)
                    .durable()
                    .retry(Retry::exponential(3).dead_letter(&dlq)),
            ),
        )
        .service(Service::new(&unique("ops"), "1").subscription(Subscription::new("letters", record_letter).on_event(&dlq)))
        .start()
        .await
        .unwrap();
    let client = bridge.client();
    let command_subject = format!(
        "purista.command.empty.empty.empty.test.1.test.empty.empty.{}.1.greet",
        purest_nats::subject::snake_case(&name)
    );
    let envelope_with = |payload: serde_json::Value| {
        json!({"messageType": "command", "id": Id::random(), "timestamp": 1, "correlationId": Id::random(),
            "sender": {"serviceName": "test", "serviceVersion": "1", "serviceTarget": "test"},
            "receiver": {"serviceName": name, "serviceVersion": "1", "serviceTarget": "greet"},
            "payload": {"payload": payload, "parameter": {"copies": 1}}})
        .to_string()
    };
    let big = format!("{{\"junk\": \"{}\"}}", "x".repeat(10 * 1024 * 1024));
    let cases: Vec<(&str, String)> = vec![
        ("not JSON", "this is not json".to_owned()),
        ("JSON that is not an envelope", "{\"hello\": 1}".to_owned()),
        ("a payload failing the schema", envelope_with(json!({"name": ""}))),
        ("a 10 MB body", big.clone()),
    ];
    for (what, body) in &cases {
        match client.request(command_subject.clone(), body.clone().into()).await {
            Ok(reply) => {
                let reply =
                    purest_core::Envelope::from_json(&reply.payload).unwrap_or_else(|e| panic!("{what}: reply is not an envelope: {e}"));
                let purest_core::Message::Error { error, .. } = reply.message else {
                    panic!("{what}: expected an error reply")
                };
                assert_eq!(error.status, 400, "{what}: {error}");
            }
            // The server refuses a body over its max_payload before any handler sees it.
            Err(e) if *what == "a 10 MB body" => println!("{what}: refused by the server ({e})"),
            Err(e) => panic!("{what}: no reply: {e}"),
        }
    }
    let seen: Seen = app
        .client()
        .call(format!("{name}/1/greet"))
        .params(Copies { copies: 1 })
        .invoke(Greeting { name: "still".into() })
        .await
        .unwrap();
    assert_eq!(seen.text, "hello still", "the service keeps answering");

    let event_subject = format!(
        "purista.custom_message.empty.empty.empty.x.1.x.{}.empty.empty.empty.empty",
        purest_nats::subject::snake_case(&event)
    );
    client.publish(event_subject.clone(), "not json at all".into()).await.unwrap();
    let bad_payload = json!({"messageType": "customMessage", "id": Id::random(), "timestamp": 1, "eventName": event,
        "sender": {"serviceName": "x", "serviceVersion": "1", "serviceTarget": "x"}, "payload": {"name": 5}});
    client.publish(event_subject, bad_payload.to_string().into()).await.unwrap();
    wait_until("two dead letters", || letters.lock().unwrap().len() >= 2).await;
    let letters = letters.lock().unwrap().clone();
    assert!(
        letters.iter().all(|l| l["attempts"] == 1),
        "malformed messages are dead-lettered at once: {letters:?}"
    );
    assert!(
        letters
            .iter()
            .any(|l| l["reason"].as_str().unwrap().contains("not a purest/PURISTA envelope")),
        "{letters:?}"
    );
    assert!(
        letters.iter().any(|l| l["reason"].as_str().unwrap().contains("/name")),
        "{letters:?}"
    );
    assert_eq!(*handled.lock().unwrap(), 0);
    let malformed = bridge.stats().malformed.load(std::sync::atomic::Ordering::Relaxed);
    println!("malformed messages counted: {malformed}");
    assert!(malformed >= 3, "{malformed}");
    app.shutdown().await;
    forget_consumer(&bridge, &name, "orders").await;
}
