//! What only NATS has: raw bytes published straight onto its subjects. The semantics every bridge
//! keeps are in `conformance.rs`. Against the real nats-server on 127.0.0.1:4222 (or
//! `PUREST_NATS_URL`); without one these tests skip, unless `PUREST_REQUIRE_BROKERS=1` (CI).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_bridge_tests::cases::{Copies, Greeting, Seen, greet};
use purest_bridge_tests::{unique, wait_until};
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
            Err(e) if *what == "a 10 MB body" => {
                purest_bridge_tests::report(&format!("[nats] malformed, {what}: refused by the server ({e})"))
            }
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
    wait_until("two dead letters", Duration::from_secs(15), || letters.lock().unwrap().len() >= 2).await;
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
    purest_bridge_tests::report(&format!(
        "[nats] malformed: 4 commands and 2 events sent, {malformed} counted as malformed, 2 dead-lettered, 0 handled"
    ));
    assert!(malformed >= 3, "{malformed}");
    app.shutdown().await;
    forget_consumer(&bridge, &name, "orders").await;
}
