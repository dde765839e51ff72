//! PURISTA's routing headers on the wire (`headers = "full"`): a raw core-NATS subscriber on a
//! nats-server of the test's own sees the full set on a command, on its reply, on the success
//! event it emits and on a custom event, with the exact (not snake-cased) values.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use purest_bridge_tests::nats_server::OwnServer;
use purest_core::prelude::*;
use purest_core::{Address, Body, Envelope, Message};
use purest_nats::{HeaderSet, NatsBridge, NatsConfig};
use serde_json::{Value, json};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn sign_up(Payload(name): Payload<String>) -> Result<Value, HandledError> {
    Ok(json!({ "name": name }))
}

/// A message's headers as name → value.
fn headers(message: &async_nats::Message) -> BTreeMap<String, String> {
    message
        .headers
        .iter()
        .flat_map(|headers| headers.iter())
        .map(|(name, values)| (name.to_string(), values.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(",")))
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn a_raw_subscriber_sees_purista_headers_on_commands_replies_and_events() {
    let Some(server) = OwnServer::start() else { return };
    let raw = async_nats::connect(server.url()).await.expect("connect to NATS");
    let mut purista = raw.subscribe("purista.>").await.unwrap();
    let mut inboxes = raw.subscribe("_INBOX.>").await.unwrap();
    // Both subscriptions are in place once a message of this connection comes back.
    raw.publish("purista.probe", "".into()).await.unwrap();
    assert_eq!(purista.next().await.unwrap().subject.as_str(), "purista.probe");

    let mut config = NatsConfig::from_url(&server.url()).unwrap();
    config.headers = HeaderSet::Full;
    let bridge = NatsBridge::connect(config).await.expect("connect");
    let app = Host::new()
        .bridge(bridge)
        .service(Service::new("UserService", "1.0.0").command(Command::new("signUp", sign_up).success_event("userSignedUp")))
        .start()
        .await
        .expect("start");

    let caller = Arc::new(Address {
        instance_id: Some("callerInstance1".into()),
        ..Address::named("WebGateway", "2.0", "httpIn")
    });
    let mut command = Envelope::new(
        caller.clone(),
        Message::Command {
            payload: Body::json(json!("Grace")),
            parameter: Body::empty_object(),
        },
    );
    command.receiver = Some(Arc::new(Address::named("UserService", "1.0.0", "signUp")));
    command.principal_id = Some("user-42".into());
    command.tenant_id = Some("tenantA".into());
    command.otp = Some(json!({ "traceparent": TRACEPARENT }).to_string().into());
    let response = app.bridge().invoke(command, Duration::from_secs(30)).await.expect("signUp answers");
    let responder = response.sender.instance_id.clone().expect("the response names its instance");

    let mut custom = Envelope::new(
        caller.clone(),
        Message::Custom {
            payload: Body::json(json!({ "id": 7 })),
        },
    );
    custom.event_name = Some("userDeleted".into());
    custom.principal_id = Some("user-42".into());
    app.bridge()
        .emit(custom, Duration::from_secs(30))
        .await
        .expect("the event is stored");

    // The command, the success event and the custom event on PURISTA's subjects (info messages
    // of the service's presence pass by too); the reply on the inbox the command names.
    let (mut sent, mut event, mut emitted) = (None, None, None);
    while sent.is_none() || event.is_none() || emitted.is_none() {
        let message = purista.next().await.expect("the raw subscription delivers");
        let subject = message.subject.to_string();
        if subject.starts_with("purista.command.") {
            sent = Some(message);
        } else if subject.starts_with("purista.command_success_response.") {
            event = Some(message);
        } else if subject.starts_with("purista.custom_message.") {
            emitted = Some(message);
        }
    }
    let sent = sent.unwrap();
    let reply_subject = sent.reply.clone().expect("a request names its reply subject");
    let reply = loop {
        let message = inboxes.next().await.expect("the raw inbox subscription delivers");
        if message.subject == reply_subject {
            break message;
        }
    };

    assert_eq!(
        headers(&sent),
        expected(&[
            ("messageType", "command"),
            ("senderServiceName", "WebGateway"),
            ("senderServiceVersion", "2.0"),
            ("senderServiceTarget", "httpIn"),
            ("senderInstanceId", "callerInstance1"),
            ("receiverServiceName", "UserService"),
            ("receiverServiceVersion", "1.0.0"),
            ("receiverServiceTarget", "signUp"),
            ("principalId", "user-42"),
            ("tenantId", "tenantA"),
            ("traceparent", TRACEPARENT),
        ]),
        "on the command"
    );
    let from_user = [
        ("messageType", "commandSuccessResponse"),
        ("senderServiceName", "UserService"),
        ("senderServiceVersion", "1.0.0"),
        ("senderServiceTarget", "signUp"),
        ("senderInstanceId", &*responder),
        ("receiverServiceName", "WebGateway"),
        ("receiverServiceVersion", "2.0"),
        ("receiverServiceTarget", "httpIn"),
        ("receiverInstanceId", "callerInstance1"),
        ("eventName", "userSignedUp"),
        ("principalId", "user-42"),
        ("tenantId", "tenantA"),
        ("traceparent", TRACEPARENT),
    ];
    assert_eq!(headers(&reply), expected(&from_user), "on the reply");
    assert_eq!(headers(&event.unwrap()), expected(&from_user), "on the success event");
    assert_eq!(
        headers(&emitted.unwrap()),
        expected(&[
            ("messageType", "customMessage"),
            ("senderServiceName", "WebGateway"),
            ("senderServiceVersion", "2.0"),
            ("senderServiceTarget", "httpIn"),
            ("senderInstanceId", "callerInstance1"),
            ("eventName", "userDeleted"),
            ("principalId", "user-42"),
        ]),
        "on a custom event (no receiver, no tenant, no trace)"
    );
    app.shutdown().await;
}
