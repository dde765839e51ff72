//! purest on PURISTA's MQTT 5 layout, checked against real PURISTA traffic
//! (`tests/data/purista-mqtt-traffic.jsonl`: PURISTA 3.2.4 services and its MQTT bridge on
//! Mosquitto, every publish as a tap received it, with its properties and body): a command and an
//! event exactly as PURISTA published them are answered and delivered; what purest publishes
//! carries PURISTA's topics and properties; a message larger than the broker takes is refused at
//! the sender, naming the limit; and a start against a broker that is absent fails within its
//! bound, naming the broker.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, Received, broker, receive};
use purest_bridge_tests::mosquitto_broker::OwnMosquitto;
use purest_core::prelude::*;
use purest_core::{Envelope, Message};
use purest_mqtt::{MqttBridge, MqttConfig, MqttSection};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{Value, json};

/// The capture's message number `seq`.
fn captured(seq: u64) -> Value {
    include_str!("data/purista-mqtt-traffic.jsonl")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .find(|message| message["seq"] == seq)
        .expect("the message is in the capture")
}

/// A captured message's properties, for publishing it again; `instance` replaces the captured
/// sender's instance id.
fn properties_of(message: &Value, instance: &str) -> PublishProperties {
    let properties = &message["properties"];
    let user = properties["userProperties"]
        .as_object()
        .expect("user properties")
        .iter()
        .map(|(key, value)| {
            let value = if key == "senderInstanceId" {
                instance
            } else {
                value.as_str().unwrap_or_default()
            };
            (key.clone(), value.to_owned())
        })
        .collect();
    PublishProperties {
        content_type: properties["contentType"].as_str().map(str::to_owned),
        message_expiry_interval: properties["messageExpiryInterval"].as_u64().map(|s| s as u32),
        correlation_data: properties["correlationData"]["utf8"].as_str().map(|c| Bytes::from(c.to_owned())),
        user_properties: user,
        ..Default::default()
    }
}

fn user_properties(received: &Received) -> BTreeMap<String, String> {
    received.properties.iter().flat_map(|p| p.user_properties.iter().cloned()).collect()
}

#[derive(Clone, serde::Deserialize, schemars::JsonSchema, garde::Validate)]
struct Text {
    #[garde(length(min = 1))]
    text: String,
}

#[derive(serde::Serialize, schemars::JsonSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct Echoed {
    #[garde(skip)]
    text: String,
    #[garde(skip)]
    handled_by: String,
}

async fn echo(Payload(input): Payload<Text>) -> Result<Echoed, HandledError> {
    Ok(Echoed {
        text: input.text,
        handled_by: "purest".into(),
    })
}

async fn connect(url: &str) -> MqttBridge {
    MqttBridge::connect(common::config(url)).await.expect("connect")
}

/// PURISTA's command `ping/1/echo` (capture message 27), published as its caller published it
/// from our raw client's instance, is answered as PURISTA's `ping` answered it (message 28): one
/// success response that is the `pingEchoed` event, on the caller's instance topic, with the
/// command's correlation data, PURISTA's user properties and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purista_command_is_answered_as_purista_answers() {
    let Some(url) = broker() else { return };
    let app = Host::new()
        .bridge(connect(&url).await)
        .service(Service::new("ping", "1").command(Command::new("echo", echo).success_event("pingEchoed")))
        .start()
        .await
        .unwrap();
    let raw = RawClient::connect(&url).await;
    let command = captured(27);
    let mut body = command["body"].clone();
    body["sender"]["instanceId"] = json!(raw.instance);
    let mut topic: Vec<String> = command["topic"].as_str().unwrap().split('/').map(str::to_owned).collect();
    topic[4] = raw.instance.clone();
    let correlation = command["properties"]["correlationData"]["utf8"].as_str().unwrap();
    raw.publish_with(
        &topic.join("/"),
        properties_of(&command, &raw.instance),
        body.to_string().into_bytes(),
    )
    .await
    .unwrap();

    let reply = receive(&raw, |r| r.correlation.as_deref() == Some(correlation.as_bytes())).await;
    let tokens: Vec<&str> = reply.topic.split('/').collect();
    let expected = captured(28);
    let expected_tokens: Vec<&str> = expected["topic"].as_str().unwrap().split('/').collect();
    assert_eq!(tokens.len(), 13, "{}", reply.topic);
    assert_eq!(tokens[..4], expected_tokens[..4], "{}", reply.topic);
    assert_eq!(tokens[5..9], expected_tokens[5..9], "sender and event: {}", reply.topic);
    assert_eq!(tokens[9], raw.instance, "to the caller's instance: {}", reply.topic);
    assert_eq!(tokens[10..], expected_tokens[10..], "{}", reply.topic);
    let properties = user_properties(&reply);
    for key in [
        "messageType",
        "senderServiceName",
        "senderServiceVersion",
        "senderServiceTarget",
        "receiverServiceName",
        "receiverServiceVersion",
        "receiverServiceTarget",
        "eventName",
    ] {
        assert_eq!(
            properties.get(key).map(String::as_str),
            expected["properties"]["userProperties"][key].as_str(),
            "{key}"
        );
    }
    assert_eq!(properties["receiverInstanceId"], raw.instance);
    let reply_properties = reply.properties.as_ref().unwrap();
    assert_eq!(reply_properties.content_type.as_deref(), Some("application/json"));
    assert!(reply_properties.message_expiry_interval.is_some());

    let response = Envelope::from_json(&reply.payload).expect("an envelope");
    assert!(matches!(response.message, Message::Success { .. }), "{response:?}");
    assert_eq!(response.correlation_id.map(|id| id.to_string()).as_deref(), Some(correlation));
    assert_eq!(response.event_name.as_deref(), Some("pingEchoed"));
    let body: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["payload"]["text"], expected["body"]["payload"]["text"]);
    assert_eq!(body["receiver"]["serviceName"], "wirecapClient");
    app.shutdown().await;
}

/// An event's payload, principal and tenant as a subscription saw them.
type Seen = (Value, Option<String>, Option<String>);

/// PURISTA's custom event (capture message 20) reaches a purest subscription with its payload,
/// principal and tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purista_event_is_delivered() {
    let Some(url) = broker() else { return };
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = seen.clone();
    let record = move |ctx: Context, Payload(payload): Payload<Value>| {
        let sink = sink.clone();
        async move {
            let info = ctx.message();
            sink.lock().unwrap().push((
                payload,
                info.principal_id.as_ref().map(|p| p.to_string()),
                info.tenant_id.as_ref().map(|t| t.to_string()),
            ));
            Ok::<_, HandledError>(())
        }
    };
    let service = format!("audit{}", &Id::random().to_string()[..8]);
    let app = Host::new()
        .bridge(connect(&url).await)
        .service(Service::new(&service, "1").subscription(Subscription::new("onSomethingHappened", record).on_event("somethingHappened")))
        .start()
        .await
        .unwrap();
    let raw = RawClient::connect(&url).await;
    let event = captured(20);
    raw.publish_with(
        event["topic"].as_str().unwrap(),
        properties_of(&event, "84378535693b415c27bd9d95452d0817"),
        event["body"].to_string().into_bytes(),
    )
    .await
    .unwrap();
    purest_bridge_tests::wait_until("the event", Duration::from_secs(15), || !seen.lock().unwrap().is_empty()).await;
    let (payload, principal, tenant) = seen.lock().unwrap()[0].clone();
    assert_eq!(payload, json!({"what": "a thing", "at": 1764633600000u64}));
    assert_eq!((principal.as_deref(), tenant.as_deref()), (Some("user-42"), Some("tenantSeven")));
    app.shutdown().await;
}

/// What purest publishes has PURISTA's shape: a command on its 13-level topic with the caller's
/// instance token, PURISTA's user properties in PURISTA's order, the correlation id as
/// correlation data and the deadline as expiry; an event with a 30-day expiry and no
/// correlation data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purest_publishes_in_purista_shape() {
    let Some(url) = broker() else { return };
    let service = format!("shape{}", &Id::random().to_string()[..8]);
    let event = format!("shaped{}", &Id::random().to_string()[..8]);
    let tap = RawClient::subscribed(&url, &["purista/#"]).await;
    let bridge = connect(&url).await;
    let instance = bridge.instance_id().to_owned();
    let app = Host::new()
        .bridge(bridge)
        .service(Service::new(&service, "1").command(Command::new("echo", echo)))
        .start()
        .await
        .unwrap();
    let answer: Value = app
        .client()
        .with_tenant("tenantSeven")
        .call(format!("{service}/1/echo"))
        .timeout(Duration::from_millis(2500))
        .invoke(json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(answer["text"], "hi");
    app.client().emit(Name::new(&event), json!({"n": 1})).await.unwrap();

    let snake = purest_core::topic::snake_case(&service);
    let command = receive(&tap, |r| {
        r.topic.starts_with("purista/command/") && r.topic.ends_with(&format!("/{snake}/1/echo"))
    })
    .await;
    let tokens: Vec<&str> = command.topic.split('/').collect();
    assert_eq!(tokens.len(), 13, "{}", command.topic);
    assert_eq!((tokens[2], tokens[3]), ("none", "tenant_seven"));
    assert_eq!(tokens[4], purest_core::topic::snake_case(&instance), "the caller's instance token");
    let keys: Vec<String> = command
        .properties
        .iter()
        .flat_map(|p| p.user_properties.iter().map(|(k, _)| k.clone()))
        .collect();
    assert_eq!(
        keys[..8],
        [
            "messageType",
            "senderServiceName",
            "senderServiceVersion",
            "senderServiceTarget",
            "senderInstanceId",
            "receiverServiceName",
            "receiverServiceVersion",
            "receiverServiceTarget"
        ]
    );
    let properties = command.properties.as_ref().unwrap();
    assert_eq!(properties.message_expiry_interval, Some(3), "2.5 s rounded up");
    let body: Value = serde_json::from_slice(&command.payload).unwrap();
    assert_eq!(
        properties.correlation_data.as_deref(),
        body["correlationId"].as_str().map(str::as_bytes)
    );
    let response = receive(&tap, |r| r.topic.starts_with("purista/command_success_response/none/tenant_seven/")).await;
    assert_eq!(
        response.topic.split('/').nth(9),
        Some(tokens[4]),
        "to the caller: {}",
        response.topic
    );
    assert_eq!(response.correlation, properties.correlation_data);

    let snake_event = purest_core::topic::snake_case(&event);
    let emitted = receive(&tap, |r| {
        r.topic.starts_with("purista/custom_message/") && r.topic.contains(&snake_event)
    })
    .await;
    let properties = emitted.properties.as_ref().unwrap();
    assert_eq!(properties.message_expiry_interval, Some(30 * 24 * 3600));
    assert!(properties.correlation_data.is_none());
    assert_eq!(user_properties(&emitted)["eventName"], event);
    app.shutdown().await;
}

/// A message larger than the broker's maximum packet size is refused at the sender with 413
/// naming the limit — before it is sent, so the connection stays up — and so is one larger than
/// this bridge's own `max_packet_size`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_at_the_sender() {
    let Some(mut broker) = OwnMosquitto::start_with("max_packet_size 20000") else {
        return;
    };
    let app = Host::new().bridge(connect(&broker.url()).await).start().await.unwrap();
    let big = "x".repeat(30_000);
    let refused = app.client().emit(Name::new("large"), json!({"blob": big})).await.unwrap_err();
    assert_eq!(refused.status, 413, "{refused}");
    assert!(refused.message.contains("20000"), "names the limit: {refused}");
    app.client()
        .emit(Name::new("small"), json!({"n": 1}))
        .await
        .expect("the connection is still up");
    let refused = app
        .client()
        .call("nobody/1/big")
        .invoke::<Value>(json!({"blob": big}))
        .await
        .unwrap_err();
    assert_eq!(refused.status, 413, "{refused}");
    app.shutdown().await;
    broker.kill();

    let Some(url) = common::broker() else { return };
    let section = MqttSection {
        max_packet_size: Some(4096),
        ..Default::default()
    };
    let bridge = MqttBridge::connect(MqttConfig::from_url_and_section(&url, &section).unwrap())
        .await
        .unwrap();
    let app = Host::new().bridge(bridge).start().await.unwrap();
    let refused = app
        .client()
        .emit(Name::new("large"), json!({"blob": "y".repeat(5000)}))
        .await
        .unwrap_err();
    assert_eq!(refused.status, 413, "{refused}");
    assert!(refused.message.contains("4096"), "{refused}");
    app.shutdown().await;
}

/// A start against a port nobody listens on fails within the connect timeout, naming the
/// broker and what to check.
#[tokio::test]
async fn an_absent_broker_fails_the_start_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let section = MqttSection {
        connect_timeout_ms: Some(1500),
        ..Default::default()
    };
    let config = MqttConfig::from_url_and_section(&format!("mqtt://127.0.0.1:{port}"), &section).unwrap();
    let started = std::time::Instant::now();
    let error = MqttBridge::connect(config).await.err().expect("no broker, no bridge").to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(
        error.contains(&format!("127.0.0.1:{port}")) && error.contains("mosquitto"),
        "{error}"
    );
}

/// `mqtts://` with the CA named by `tls_ca`: a Mosquitto of the test's own with a TLS listener
/// (a certificate for localhost, signed by a CA made for the test) carries a round trip; without
/// the CA the start fails, naming the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("purest-mqtt-tls-{}", Id::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = purest_bridge_tests::tls::make_certificates(&dir);
    if !made {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listener = format!(
        "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    let Some(_broker) = OwnMosquitto::start_with(&listener) else {
        return;
    };
    let url = format!("mqtts://localhost:{port}");
    let with_ca = MqttSection {
        tls_ca: Some(dir.join("ca.pem")),
        connect_timeout_ms: Some(10_000),
        ..Default::default()
    };
    let bridge = MqttBridge::connect(MqttConfig::from_url_and_section(&url, &with_ca).unwrap())
        .await
        .expect("a TLS connection trusting the test's CA");
    let app = Host::new()
        .bridge(bridge)
        .service(Service::new("secure", "1").command(Command::new("echo", echo)))
        .start()
        .await
        .unwrap();
    let answer: Value = app.client().invoke("secure/1/echo", json!({"text": "over TLS"})).await.unwrap();
    assert_eq!(answer["text"], "over TLS");
    app.shutdown().await;

    let without_ca = MqttSection {
        connect_timeout_ms: Some(1500),
        ..Default::default()
    };
    let error = MqttBridge::connect(MqttConfig::from_url_and_section(&url, &without_ca).unwrap())
        .await
        .err()
        .expect("a certificate nobody trusts is refused")
        .to_string();
    assert!(error.contains(&format!("mqtts://localhost:{port}")), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A command whose every turn is taken keeps reading: what arrives waits for a turn while as many
/// wait as run (`prefetch`), and beyond that is refused at once with 503 naming the command —
/// bounded, and never left where a dropped connection would lose it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_command_refuses_beyond_its_waiting_room() {
    let Some(broker) = OwnMosquitto::start() else { return };
    let section = MqttSection {
        prefetch: Some(1),
        ..Default::default()
    };
    let config = MqttConfig::from_url_and_section(&broker.url(), &section).unwrap();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = {
        let (release, started) = (release.clone(), started.clone());
        move |Payload(n): Payload<u64>| {
            let (release, started) = (release.clone(), started.clone());
            async move {
                started.add_permits(1);
                release.acquire().await.expect("open").forget();
                Ok::<_, HandledError>(n)
            }
        }
    };
    let app = Host::new()
        .bridge(MqttBridge::connect(config).await.unwrap())
        .service(Service::new("busy", "1").command(Command::new("slow", slow)))
        .start()
        .await
        .unwrap();
    let call = |n: u64| {
        let client = app.client();
        tokio::spawn(async move { client.call("busy/1/slow").timeout(Duration::from_secs(30)).invoke::<u64>(n).await })
    };
    let first = call(0);
    started.acquire().await.unwrap().forget();
    let mut others: Vec<_> = (1..4).map(call).collect();
    // One of the three waits for the turn; the other two are refused.
    let mut refused = Vec::new();
    while refused.len() < 2 {
        let (outcome, _, rest) = futures::future::select_all(others).await;
        others = rest;
        let refusal = outcome.unwrap().expect_err("refused while the only turn is taken");
        assert_eq!(refusal.status, 503, "{refusal}");
        assert!(refusal.message.contains("busy/1/slow is busy"), "{refusal}");
        refused.push(refusal);
    }
    release.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), 0);
    let waited = others
        .pop()
        .expect("one left")
        .await
        .unwrap()
        .expect("the waiting command is answered");
    assert!((1..4).contains(&waited));
    app.shutdown().await;
}
