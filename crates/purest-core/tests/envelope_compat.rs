//! Every message PURISTA put on the wire (captured in `data/`) parses into `Envelope` and
//! serializes back to equal JSON.

use purest_core::{Envelope, Message};
use serde_json::Value;

const CAPTURED: &str = include_str!("data/purista-envelopes-captured.txt");

/// The capture is `## messageType` headings, each followed by one pretty-printed JSON message.
fn captured_messages() -> Vec<(String, String)> {
    let mut messages = Vec::new();
    let mut sections = CAPTURED.split("\n## ").skip(1);
    for section in sections.by_ref() {
        let (heading, body) = section.split_once('\n').expect("heading line");
        messages.push((heading.trim().to_owned(), body.trim().to_owned()));
    }
    messages
}

#[test]
fn captured_purista_messages_round_trip() {
    let messages = captured_messages();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (heading, json) in &messages {
        let original: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{heading}: capture is not JSON: {e}"));
        let envelope = Envelope::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{heading} does not parse: {e}"));
        assert_eq!(envelope.message_type(), heading, "message type");
        let back: Value = serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
        assert_eq!(back, original, "{heading} does not round-trip");
        *seen.entry(heading.clone()).or_default() += 1;
    }
    for kind in ["command", "commandSuccessResponse", "commandErrorResponse", "customMessage"] {
        assert!(seen.get(kind).copied().unwrap_or(0) >= 1, "the capture has no {kind}: {seen:?}");
    }
    println!("round-tripped {} captured PURISTA messages: {seen:?}", messages.len());
}

#[test]
fn captured_fields_land_where_expected() {
    let (_, json) = captured_messages().into_iter().find(|(h, _)| h == "commandErrorResponse").unwrap();
    let envelope = Envelope::from_json(json.as_bytes()).unwrap();
    let Message::Error { error, is_handled_error } = &envelope.message else {
        panic!("not an error")
    };
    assert!(is_handled_error);
    assert_eq!(error.status, 409);
    assert_eq!(error.message, "name already taken");
    assert_eq!(error.data, Some(serde_json::json!({"name": "taken"})));
    assert_eq!(envelope.principal_id.as_deref(), Some("user-42"));
    assert_eq!(envelope.tenant_id.as_deref(), Some("tenant-7"));
    assert_eq!(envelope.receiver.as_ref().unwrap().service_name.as_ref(), "Client");
    assert_eq!(envelope.id.to_string(), "b7b60d207ef3bc0685b032995c88ff4f");
    assert_eq!(envelope.timestamp, 1795377195122);

    let (_, json) = captured_messages().into_iter().find(|(h, _)| h == "command").unwrap();
    let envelope = Envelope::from_json(json.as_bytes()).unwrap();
    let Message::Command { payload, parameter } = &envelope.message else {
        panic!("not a command")
    };
    assert_eq!(payload.to_value().unwrap(), serde_json::json!({"name": "alice"}));
    assert_eq!(parameter.to_value().unwrap(), serde_json::json!({"dryRun": false}));
}
