//! purest on PURISTA's AMQP layout, checked against real PURISTA traffic
//! (`tests/data/purista-amqp-traffic.jsonl`: PURISTA 3.2.4 services and its AMQP bridge on
//! RabbitMQ, every delivery to a tap queue with its properties and body): a command exactly as a PURISTA 3.2.4 caller
//! published it is answered in the shape PURISTA's responder gave it; what purest publishes
//! carries PURISTA's properties and headers; malformed input is refused and counted; and a start
//! against a broker that is absent or silent fails within its bound, naming the broker.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{binding, broker, table, tap};
use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection, ConnectionProperties, Consumer};
use purest_amqp::{AmqpBridge, AmqpConfig};
use purest_core::prelude::*;
use purest_core::{Envelope, Message};
use serde_json::{Value, json};

/// A message's headers as name → text.
fn headers_of(properties: &BasicProperties) -> BTreeMap<String, String> {
    properties
        .headers()
        .as_ref()
        .map(|headers| {
            headers
                .inner()
                .iter()
                .filter_map(|(key, value)| match value {
                    AMQPValue::LongString(value) => Some((key.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Which properties a message has set, by name.
fn properties_set(properties: &BasicProperties) -> Vec<&'static str> {
    let mut set = Vec::new();
    for (name, present) in [
        ("contentType", properties.content_type().is_some()),
        ("contentEncoding", properties.content_encoding().is_some()),
        ("deliveryMode", properties.delivery_mode().is_some()),
        ("correlationId", properties.correlation_id().is_some()),
        ("replyTo", properties.reply_to().is_some()),
        ("messageId", properties.message_id().is_some()),
        ("timestamp", properties.timestamp().is_some()),
        ("type", properties.kind().is_some()),
    ] {
        if present {
            set.push(name);
        }
    }
    set
}

/// The capture's deliveries.
fn capture() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/purista-amqp-traffic.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

async fn next(consumer: &mut Consumer, what: &str) -> lapin::message::Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
        .expect("the tap is open")
        .expect("a delivery")
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
struct Echo {
    #[garde(length(min = 1))]
    text: String,
}

async fn echo(Payload(input): Payload<Echo>) -> Result<Value, HandledError> {
    Ok(json!({"text": input.text, "handledBy": "purest"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purista_command_from_the_capture_is_answered_in_puristas_shape() {
    let Some(url) = broker() else { return };
    let deliveries = capture();
    let command = deliveries
        .iter()
        .find(|d| {
            d["properties"]["type"] == "command"
                && d["body"]["receiver"]["serviceTarget"] == "echo"
                && d["body"]["payload"]["payload"]["text"].is_string()
        })
        .expect("a captured command to ping/1/echo");
    let correlation = command["properties"]["correlationId"].as_str().unwrap();
    let purista_response = deliveries
        .iter()
        .find(|d| d["properties"]["type"] == "commandSuccessResponse" && d["properties"]["correlationId"] == correlation)
        .expect("PURISTA's response to it");

    // The captured service is `ping`; here it gets a name of its own on the shared broker.
    let service = purest_bridge_tests::unique("ping");
    let event = purest_bridge_tests::unique("pingEchoed");
    let bridge = AmqpBridge::connect(AmqpConfig::from_url(&url).unwrap()).await.expect("connect");
    let app = Host::new()
        .bridge(bridge)
        .service(Service::new(&service, "1").command(Command::new("echo", echo).success_event(&event)))
        .start()
        .await
        .expect("start");

    let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let (reply_queue, mut replies) = tap(&channel, &binding(&[("replyTo", "")])).await;
    let (_, mut subscribers) = tap(&channel, &binding(&[("eventName", &event)])).await;

    let mut body = command["body"].clone();
    body["receiver"]["serviceName"] = json!(service);
    let mut headers: BTreeMap<String, String> = serde_json::from_value(command["properties"]["headers"].clone()).unwrap();
    headers.insert("receiverServiceName".into(), service.clone());
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_correlation_id(correlation.into())
        .with_reply_to(reply_queue.clone().into())
        .with_message_id(command["properties"]["messageId"].as_str().unwrap().into())
        .with_timestamp(command["properties"]["timestamp"].as_u64().unwrap())
        .with_type("command".into())
        .with_headers(table(&headers));
    channel
        .basic_publish(
            "purista".into(),
            "".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&body).unwrap(),
            properties,
        )
        .await
        .unwrap();

    let reply = next(&mut replies, "response").await;
    let ours = headers_of(&reply.properties);
    let theirs: BTreeMap<String, String> = serde_json::from_value(purista_response["properties"]["headers"].clone()).unwrap();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "the response carries the headers PURISTA's responder set"
    );
    assert_eq!(ours["replyTo"], reply_queue);
    assert_eq!(ours["messageType"], "commandSuccessResponse");
    assert_eq!(
        ours["receiverServiceInstanceId"],
        command["body"]["sender"]["instanceId"].as_str().unwrap()
    );
    assert_eq!(ours["eventName"], event);
    assert_eq!(ours["traceparent"].len(), 55, "{ours:?}");
    assert_eq!(
        properties_set(&reply.properties),
        [
            "contentType",
            "contentEncoding",
            "deliveryMode",
            "correlationId",
            "messageId",
            "timestamp",
            "type"
        ],
        "PURISTA's properties: a correlation id, no reply_to"
    );
    assert_eq!(reply.properties.correlation_id().as_ref().map(|c| c.as_str()), Some(correlation));
    let response: Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(response["correlationId"], correlation);
    assert_eq!(
        response["receiver"], command["body"]["sender"],
        "answered to the caller, instance included"
    );
    assert_eq!(response["payload"]["text"], purista_response["body"]["payload"]["text"]);
    Envelope::from_json(&reply.data).expect("an envelope purest reads back");

    // The one publish also reached the event's subscribers.
    let event_copy = next(&mut subscribers, "success event").await;
    assert_eq!(event_copy.data, reply.data);

    let _ = connection.close(200, "done".into()).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_events_carry_puristas_properties_and_headers() {
    let Some(url) = broker() else { return };
    let service = purest_bridge_tests::unique("UserService");
    let event = purest_bridge_tests::unique("userSignedUp");
    let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let (_, mut commands) = tap(&channel, &binding(&[("messageType", "command"), ("receiverServiceName", &service)])).await;
    let (_, mut events) = tap(&channel, &binding(&[("eventName", &event)])).await;

    let bridge = AmqpBridge::connect(AmqpConfig::from_url(&url).unwrap()).await.expect("connect");
    let app = Host::new()
        .bridge(bridge)
        .service(
            Service::new(&service, "1.0.0").command(Command::new("signUp", |Payload(name): Payload<String>| async move {
                Ok::<_, HandledError>(json!({ "name": name }))
            })),
        )
        .start()
        .await
        .expect("start");
    let client = app.client().with_principal("user-42").with_tenant("tenantSeven");
    let _: Value = client.invoke(format!("{service}/1.0.0/signUp"), "ann").await.expect("a round trip");
    client.emit(Name::new(&event), json!({"what": "a thing"})).await.expect("an emit");

    let command = next(&mut commands, "command").await;
    assert_eq!(
        properties_set(&command.properties),
        [
            "contentType",
            "contentEncoding",
            "deliveryMode",
            "correlationId",
            "replyTo",
            "messageId",
            "timestamp",
            "type"
        ]
    );
    assert!(command.properties.reply_to().as_ref().unwrap().as_str().starts_with("amq.gen-"));
    let headers = headers_of(&command.properties);
    for (key, value) in [
        ("messageType", "command"),
        ("receiverServiceName", service.as_str()),
        ("receiverServiceVersion", "1.0.0"),
        ("receiverServiceTarget", "signUp"),
        ("principalId", "user-42"),
        ("tenantId", "tenantSeven"),
    ] {
        assert_eq!(headers.get(key).map(String::as_str), Some(value), "{key} in {headers:?}");
    }
    let body = Envelope::from_json(&command.data).unwrap();
    assert_eq!(
        command.properties.correlation_id().as_ref().map(|c| c.as_str().to_owned()),
        body.correlation_id.map(|id| id.to_string()),
        "the property and the body agree"
    );

    let custom = next(&mut events, "event").await;
    assert_eq!(
        properties_set(&custom.properties),
        ["contentType", "contentEncoding", "deliveryMode", "messageId", "timestamp", "type"]
    );
    let headers = headers_of(&custom.properties);
    assert_eq!(headers["messageType"], "customMessage");
    assert_eq!(headers["eventName"], event);
    assert_eq!(headers["tenantId"], "tenantSeven");
    assert!(matches!(Envelope::from_json(&custom.data).unwrap().message, Message::Custom { .. }));
    let _ = connection.close(200, "done".into()).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_are_answered_400_and_counted() {
    let Some(url) = broker() else { return };
    let service = purest_bridge_tests::unique("sturdy");
    let bridge = AmqpBridge::connect(AmqpConfig::from_url(&url).unwrap()).await.expect("connect");
    let app = Host::new()
        .shared_bridge(std::sync::Arc::new(bridge.clone()))
        .service(Service::new(&service, "1").command(Command::new("echo", echo)))
        .start()
        .await
        .expect("start");
    let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let (reply_queue, mut replies) = tap(&channel, &binding(&[("replyTo", "")])).await;
    let headers = binding(&[
        ("messageType", "command"),
        ("receiverServiceName", &service),
        ("receiverServiceVersion", "1"),
        ("receiverServiceTarget", "echo"),
    ]);
    for junk in [&b"not json"[..], b"{\"hello\": 1}", &vec![b'x'; 10 * 1024 * 1024]] {
        let properties = BasicProperties::default()
            .with_reply_to(reply_queue.clone().into())
            .with_correlation_id("c-1".into())
            .with_headers(table(&headers));
        channel
            .basic_publish("purista".into(), "".into(), BasicPublishOptions::default(), junk, properties)
            .await
            .unwrap();
        let reply = next(&mut replies, "refusal").await;
        let Message::Error { error, .. } = Envelope::from_json(&reply.data).expect("an envelope").message else {
            panic!("an error response")
        };
        assert_eq!(error.status, 400, "{error}");
    }
    // Without a reply queue there is nobody to answer: dropped, counted.
    channel
        .basic_publish(
            "purista".into(),
            "".into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_headers(table(&headers)),
        )
        .await
        .unwrap();
    let stats = bridge.stats();
    purest_bridge_tests::wait_until("4 malformed commands counted", Duration::from_secs(10), || {
        stats.malformed.load(std::sync::atomic::Ordering::Relaxed) >= 4
    })
    .await;
    let still: Value = app
        .client()
        .invoke(format!("{service}/1/echo"), json!({"text": "still"}))
        .await
        .unwrap();
    assert_eq!(still["text"], "still", "the service keeps answering");
    let _ = connection.close(200, "done".into()).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_start_without_a_broker_fails_within_its_bound_naming_the_broker() {
    // Nobody listens: refused at once, retried until the bound.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = AmqpConfig::from_url(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).unwrap();
    config.connect_timeout = Duration::from_millis(1500);
    let started = std::time::Instant::now();
    let err = AmqpBridge::connect(config.clone())
        .await
        .err()
        .expect("no broker, no bridge")
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    assert!(
        err.contains(&format!(
            "cannot connect to RabbitMQ at amqp://guest@127.0.0.1:{port}/%2f within 1.5s"
        )),
        "{err}"
    );
    assert!(!err.contains("guest:guest"), "no password in errors: {err}");

    // Something listens but never speaks AMQP: the handshake is bounded too.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut config = AmqpConfig::from_url(&format!("amqp://127.0.0.1:{port}/%2f")).unwrap();
    config.connect_timeout = Duration::from_millis(1500);
    let started = std::time::Instant::now();
    let err = AmqpBridge::connect(config).await.err().expect("a silent broker").to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    assert!(err.contains("cannot connect to RabbitMQ"), "{err}");
    held.abort();
}
