//! The topology read from a description: who emits which event, who consumes it, who invokes
//! whom — the edges `purest graph` draws and `purest asyncapi` describes.

use std::collections::BTreeMap;

use serde_json::Value;

/// A command or subscription.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Handler {
    /// `service`.
    pub service: String,
    /// `version`.
    pub version: String,
    /// The command's or subscription's name.
    pub name: String,
    /// Whether it is a subscription.
    pub subscription: bool,
}

impl Handler {
    /// `service/version/name`.
    pub fn address(&self) -> String {
        format!("{}/{}/{}", self.service, self.version, self.name)
    }

    /// An identifier safe for Mermaid, DOT and AsyncAPI keys.
    pub fn id(&self) -> String {
        sanitize(&format!("{}_v{}_{}", self.service, self.version, self.name))
    }
}

/// Letters, digits and `_` only.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// How an event leaves a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emission {
    /// A command's success event.
    Success,
    /// A subscription's output.
    Output,
    /// Declared with `may_emit`.
    Declared,
    /// A durable subscription's dead letters.
    DeadLetter,
}

/// Everything the graph and the AsyncAPI document need.
#[derive(Debug, Default)]
pub struct Topology {
    /// Commands and subscriptions with their description entry.
    pub handlers: Vec<(Handler, Value)>,
    /// (producer, event, how).
    pub emits: Vec<(Handler, String, Emission)>,
    /// (event, consumer).
    pub consumes: Vec<(String, Handler)>,
    /// (caller, `service/version/command`).
    pub invokes: Vec<(Handler, String)>,
    /// The payload schema known for each event (the producer's output, else a consumer's input).
    pub event_schemas: BTreeMap<String, Value>,
}

impl Topology {
    /// Reads a description.
    pub fn of(description: &Value) -> Self {
        let mut topology = Topology::default();
        let empty = Vec::new();
        for service in description["services"].as_array().unwrap_or(&empty) {
            let (name, version) = (text(&service["name"]), text(&service["version"]));
            for (kind, subscription) in [("commands", false), ("subscriptions", true)] {
                for entry in service[kind].as_array().unwrap_or(&empty) {
                    let handler = Handler {
                        service: name.clone(),
                        version: version.clone(),
                        name: text(&entry["name"]),
                        subscription,
                    };
                    topology.read(&handler, entry);
                    topology.handlers.push((handler, entry.clone()));
                }
            }
        }
        topology
    }

    fn read(&mut self, handler: &Handler, entry: &Value) {
        let mut emit = |event: &Value, how: Emission, schema: &Value| {
            if let Some(event) = event.as_str() {
                self.emits.push((handler.clone(), event.to_owned(), how));
                if !schema.is_null() {
                    self.event_schemas.insert(event.to_owned(), schema.clone());
                }
            }
        };
        emit(&entry["successEvent"], Emission::Success, &entry["output"]);
        emit(&entry["emits"], Emission::Output, &Value::Null);
        emit(&entry["deadLetter"], Emission::DeadLetter, &Value::Null);
        for event in entry["mayEmit"].as_array().into_iter().flatten() {
            emit(event, Emission::Declared, &Value::Null);
        }
        for target in entry["invokes"].as_array().into_iter().flatten() {
            self.invokes.push((handler.clone(), text(target)));
        }
        if let Some(event) = entry["filter"]["eventName"].as_str() {
            self.consumes.push((event.to_owned(), handler.clone()));
            if !entry["payload"].is_null() {
                self.event_schemas
                    .entry(event.to_owned())
                    .or_insert_with(|| entry["payload"].clone());
            }
        }
    }

    /// Every event name, sorted.
    pub fn events(&self) -> Vec<String> {
        let mut events: Vec<String> = self
            .emits
            .iter()
            .map(|(_, event, _)| event.clone())
            .chain(self.consumes.iter().map(|(event, _)| event.clone()))
            .collect();
        events.sort();
        events.dedup();
        events
    }

    /// The handler at `service/version/command`, if the description has it.
    pub fn find(&self, address: &str) -> Option<&Handler> {
        self.handlers
            .iter()
            .map(|(h, _)| h)
            .find(|h| !h.subscription && h.address() == address)
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}
