//! The event types a service knows: each with its current schema version, the JSON Schema its
//! payload must meet, and upcasters that lift payloads written at older versions. A store given
//! these checks every append against them and hands readers every event at its current version.

use std::collections::HashMap;
use std::sync::Arc;

use purest_core::HandledError;
use purest_core::validation::{Schema, invalid};
use schemars::JsonSchema;
use serde_json::Value;

use crate::event::{NewEvent, RecordedEvent};

/// Lifts a payload from one schema version to the next.
type Upcaster = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// The event types a service reads and writes.
///
/// ```
/// use purest_eventstore::{EventStore, EventTypes, Expected, MemoryEventStore, NewEvent};
/// use serde_json::json;
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// struct Invited { email: String, name: String }
///
/// // Version 1 had one `fullName`; version 2 splits nothing but renames it.
/// let types = EventTypes::new().register::<Invited>("customerInvited", 2).upcaster("customerInvited", 1, |mut v1| {
///     let name = v1["fullName"].take();
///     Ok(json!({ "email": v1["email"], "name": name }))
/// });
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // An event as an earlier release wrote it, to a store that did not check it.
/// let unchecked = MemoryEventStore::new();
/// let old = NewEvent::new("customerInvited", &json!({"email": "ann@example.com", "fullName": "Ann"})).unwrap();
/// unchecked.append("customer-1", Expected::NoStream, vec![old]).await.unwrap();
///
/// let store = unchecked.clone().with_types(types);
/// let read = store.read_stream("customer-1", 1, purest_eventstore::Direction::Forward, 10).await.unwrap();
/// assert_eq!(read[0].schema_version, 2);
/// assert_eq!(read[0].payload_as::<Invited>().unwrap().name, "Ann");
///
/// // A new event must be at the current version and meet its schema.
/// let bad = NewEvent::new("customerInvited", &json!({"email": 7})).unwrap().schema_version(2);
/// let refused = store.append("customer-2", Expected::Any, vec![bad]).await.unwrap_err();
/// assert_eq!(refused.status, 400);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct EventTypes {
    types: HashMap<String, EventType>,
}

#[derive(Clone)]
struct EventType {
    current: u32,
    schema: Option<Schema>,
    /// By the version they lift from.
    upcasters: HashMap<u32, Upcaster>,
}

impl EventTypes {
    /// No types.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the event type `name`, whose payload is a `T` at schema version `version`.
    ///
    /// # Panics
    ///
    /// When `name` is declared already, `version` is 0 or `T`'s schema does not compile: mistakes
    /// in the program, found when it starts.
    pub fn register<T: JsonSchema>(self, name: &str, version: u32) -> Self {
        let schema = Schema::compile(Schema::json_of::<T>(), &format!("the payload of event type {name}"))
            .unwrap_or_else(|e| panic!("event type {name}: {e}"));
        self.declare(name, version, Some(schema))
    }

    /// Declares the event type `name` at schema version `version`, with payloads of any shape.
    ///
    /// # Panics
    ///
    /// As [`EventTypes::register`].
    pub fn register_any(self, name: &str, version: u32) -> Self {
        self.declare(name, version, None)
    }

    fn declare(mut self, name: &str, version: u32, schema: Option<Schema>) -> Self {
        assert!(version > 0, "event type {name}: schema versions start at 1");
        let declared = EventType {
            current: version,
            schema,
            upcasters: HashMap::new(),
        };
        assert!(
            self.types.insert(name.to_owned(), declared).is_none(),
            "event type {name} is declared twice"
        );
        self
    }

    /// Adds the upcaster that lifts a `name` payload from schema version `from` to `from + 1`.
    /// Reading an event written at version 1 of a type now at 3 runs the upcasters from 1 and 2.
    ///
    /// # Panics
    ///
    /// When `name` is not declared, `from` is not below its current version, or an upcaster from
    /// `from` is there already.
    pub fn upcaster(mut self, name: &str, from: u32, lift: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static) -> Self {
        let declared = self
            .types
            .get_mut(name)
            .unwrap_or_else(|| panic!("event type {name} needs declaring (EventTypes::register) before its upcasters"));
        assert!(
            from >= 1 && from < declared.current,
            "event type {name} is at version {}: an upcaster lifts from 1 to {}, not from {from}",
            declared.current,
            declared.current - 1
        );
        assert!(
            declared.upcasters.insert(from, Arc::new(lift)).is_none(),
            "event type {name} has two upcasters from version {from}"
        );
        self
    }

    /// The current schema version of `name`, if it is declared.
    pub fn current_version(&self, name: &str) -> Option<u32> {
        self.types.get(name).map(|declared| declared.current)
    }

    /// Refuses (400) an event of an undeclared type, at another than its type's current version,
    /// or whose payload fails the type's schema.
    pub fn check(&self, event: &NewEvent) -> Result<(), HandledError> {
        let name = &event.event_type;
        let declared = self.types.get(name).ok_or_else(|| {
            HandledError::bad_request(format!(
                "event type {name} is not declared; declare it with EventTypes::register before appending one"
            ))
        })?;
        if event.schema_version != declared.current {
            return Err(HandledError::bad_request(format!(
                "a new {name} event must be written at schema version {}, not {}",
                declared.current, event.schema_version
            )));
        }
        if let Some(schema) = &declared.schema {
            let payload: Value = serde_json::from_str(event.payload.get())
                .map_err(|e| HandledError::bad_request(format!("the payload of a {name} event is not JSON: {e}")))?;
            schema
                .check(&payload)
                .map_err(|violations| invalid(&format!("payload of a {name} event"), violations))?;
        }
        Ok(())
    }

    /// `event` at its type's current schema version, upcast if it was written at an older one.
    /// An event of an undeclared type or a version newer than declared, or one an upcaster
    /// refuses, is an error naming the stream, version, type and schema version: a reader must
    /// stop there rather than skip it.
    pub fn upcast(&self, mut event: RecordedEvent) -> Result<RecordedEvent, HandledError> {
        let unreadable = |event: &RecordedEvent, why: String| {
            tracing::error!(stream = %event.stream, version = event.version, event_type = %event.event_type,
                schema_version = event.schema_version, reason = %why, "an event cannot be read");
            HandledError::internal(format!(
                "event {} of stream {} ({} at schema version {}) cannot be read: {why}",
                event.version, event.stream, event.event_type, event.schema_version
            ))
        };
        let Some(declared) = self.types.get(&event.event_type) else {
            return Err(unreadable(
                &event,
                "its type is not declared here; declare it with EventTypes::register".to_owned(),
            ));
        };
        if event.schema_version > declared.current {
            let why = format!(
                "this service knows that type up to version {}; run a release that knows the newer one",
                declared.current
            );
            return Err(unreadable(&event, why));
        }
        if event.schema_version == declared.current {
            return Ok(event);
        }
        let mut payload: Value =
            serde_json::from_str(event.payload.get()).map_err(|e| unreadable(&event, format!("its payload is not JSON: {e}")))?;
        for from in event.schema_version..declared.current {
            let lift = declared
                .upcasters
                .get(&from)
                .ok_or_else(|| unreadable(&event, format!("no upcaster lifts version {from} to {}", from + 1)))?;
            payload = lift(payload).map_err(|why| unreadable(&event, format!("the upcaster from version {from} refused it: {why}")))?;
        }
        let raw = serde_json::value::to_raw_value(&payload).map_err(|e| unreadable(&event, e.to_string()))?;
        event.payload = Arc::from(raw);
        event.schema_version = declared.current;
        Ok(event)
    }

    /// [`EventTypes::upcast`] for each event read.
    pub fn upcast_all(&self, events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, HandledError> {
        events.into_iter().map(|event| self.upcast(event)).collect()
    }
}

impl std::fmt::Debug for EventTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<(&String, u32)> = self.types.iter().map(|(name, t)| (name, t.current)).collect();
        names.sort();
        f.debug_struct("EventTypes").field("types", &names).finish()
    }
}
