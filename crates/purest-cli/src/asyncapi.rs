//! `purest asyncapi`: an AsyncAPI 3.0 document of an app — a channel per event name with its
//! payload schema, operations for who sends and who receives it, and each command as a
//! request/reply operation.

use serde_json::{Map, Value, json};

use crate::topology::{Emission, Topology, sanitize};

/// The AsyncAPI 3.0 document of `topology`.
pub fn document(topology: &Topology, title: &str, version: &str) -> Value {
    let mut components = purest_http::openapi::Components::default();
    let mut channels = Map::new();
    let mut messages = Map::new();
    let mut operations = Map::new();

    for event in topology.events() {
        let id = format!("event_{}", sanitize(&event));
        let payload = topology
            .event_schemas
            .get(&event)
            .map_or_else(|| json!({}), |schema| components.schema(schema));
        messages.insert(
            id.clone(),
            json!({"name": event, "contentType": "application/json", "payload": payload}),
        );
        channels.insert(
            id.clone(),
            json!({
                "address": event,
                "description": format!("events named `{event}`"),
                "messages": {id.clone(): {"$ref": format!("#/components/messages/{id}")}},
            }),
        );
    }
    for (producer, event, how) in &topology.emits {
        let channel = format!("event_{}", sanitize(event));
        let what = match how {
            Emission::Success => "its successful responses",
            Emission::Output => "its output",
            Emission::Declared => "events",
            Emission::DeadLetter => "messages it gave up on",
        };
        operations.insert(
            format!("{}_sends_{}", producer.id(), sanitize(event)),
            json!({
                "action": "send",
                "summary": format!("{} sends {what} as `{event}`", producer.address()),
                "channel": {"$ref": format!("#/channels/{channel}")},
            }),
        );
    }
    for (event, consumer) in &topology.consumes {
        let channel = format!("event_{}", sanitize(event));
        operations.insert(
            consumer.id(),
            json!({
                "action": "receive",
                "summary": format!("subscription {} receives `{event}`", consumer.address()),
                "channel": {"$ref": format!("#/channels/{channel}")},
            }),
        );
    }
    for (handler, entry) in topology.handlers.iter().filter(|(h, _)| !h.subscription) {
        let id = handler.id();
        let (request, reply) = (format!("{id}_request"), format!("{id}_reply"));
        let mut request_payload = Map::new();
        for (field, key) in [("payload", "payload"), ("parameter", "params")] {
            if !entry[key].is_null() {
                request_payload.insert(field.into(), components.schema(&entry[key]));
            }
        }
        let request_schema = json!({"type": "object", "properties": request_payload});
        let reply_schema = if entry["output"].is_null() {
            json!({})
        } else {
            components.schema(&entry["output"])
        };
        messages.insert(
            request.clone(),
            json!({"name": format!("{} command", handler.address()), "contentType": "application/json", "payload": request_schema}),
        );
        messages.insert(
            reply.clone(),
            json!({"name": format!("{} response", handler.address()), "contentType": "application/json", "payload": reply_schema}),
        );
        for (channel, message) in [(&request, &request), (&reply, &reply)] {
            channels.insert(
                channel.clone(),
                json!({"messages": {message.clone(): {"$ref": format!("#/components/messages/{message}")}}}),
            );
        }
        channels[&request]["address"] = json!(handler.address());
        channels[&reply]["address"] = Value::Null;
        channels[&request]["description"] = json!(entry["description"].as_str().filter(|d| !d.is_empty()).unwrap_or("a command"));
        operations.insert(
            id.clone(),
            json!({
                "action": "receive",
                "summary": format!("command {}", handler.address()),
                "channel": {"$ref": format!("#/channels/{request}")},
                "messages": [{"$ref": format!("#/channels/{request}/messages/{request}")}],
                "reply": {
                    "channel": {"$ref": format!("#/channels/{reply}")},
                    "messages": [{"$ref": format!("#/channels/{reply}/messages/{reply}")}],
                },
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components.into_schemas()},
    })
}
