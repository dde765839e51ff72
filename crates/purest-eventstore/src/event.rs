//! Events as they are appended ([`NewEvent`]) and as they are read back ([`RecordedEvent`]).

use std::sync::Arc;

use purest_core::{HandledError, Id};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Where an event came from, stored with it: what a reader needs to follow a chain of cause and
/// effect, and to keep a tenant's events apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The conversation the event belongs to (the command's correlation id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The message that caused it (the command's or the triggering event's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The trace it was recorded in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Who caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Whose data it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// An event to append.
///
/// ```
/// use purest_eventstore::NewEvent;
/// #[derive(serde::Serialize)]
/// struct Invited { email: String }
/// let event = NewEvent::new("customerInvited", &Invited { email: "ann@example.com".into() }).unwrap();
/// assert_eq!((event.event_type.as_str(), event.schema_version), ("customerInvited", 1));
/// assert_eq!(event.payload.get(), r#"{"email":"ann@example.com"}"#);
/// ```
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Unique; an append of an event whose id the stream holds already is refused.
    pub id: Id,
    /// The type name readers dispatch on (`customerInvited`).
    pub event_type: String,
    /// The version of the payload's schema (1 unless set).
    pub schema_version: u32,
    /// The payload, as JSON.
    pub payload: Arc<RawValue>,
    /// Where it came from.
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event of `event_type` with `payload` serialized, a fresh id, schema version 1 and no
    /// metadata.
    pub fn new<T: Serialize + ?Sized>(event_type: &str, payload: &T) -> Result<Self, HandledError> {
        let payload = serde_json::value::to_raw_value(payload)
            .map_err(|e| HandledError::bad_request(format!("the payload of a {event_type} event is not JSON: {e}")))?;
        Ok(Self {
            id: Id::random(),
            event_type: event_type.to_owned(),
            schema_version: 1,
            payload: Arc::from(payload),
            metadata: Metadata::default(),
        })
    }

    /// Sets the schema version.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Sets the metadata.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as the store keeps it.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    /// Its id.
    pub id: Id,
    /// The stream it belongs to (`customer-42`).
    pub stream: Arc<str>,
    /// Its place in the stream: 1 for the first event.
    pub version: u64,
    /// Its place in the store's global order, rising in the order readers see events (see
    /// [`EventStore::read_all`](crate::EventStore::read_all)). The in-memory store counts 1, 2,
    /// 3, …; PostgreSQL's positions rise with gaps between them.
    pub position: u64,
    /// Its type name.
    pub event_type: String,
    /// The version of its payload's schema.
    pub schema_version: u32,
    /// Its payload, as JSON.
    pub payload: Arc<RawValue>,
    /// Where it came from.
    pub metadata: Metadata,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub recorded_at: u64,
}

impl RecordedEvent {
    /// The payload as a `T`; a 500 naming the event when it does not fit (a reader's type that
    /// disagrees with what was written is a bug, not bad input).
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandledError> {
        serde_json::from_str(self.payload.get()).map_err(|e| {
            tracing::error!(stream = %self.stream, version = self.version, event_type = %self.event_type, error = %e, "an event's payload does not fit the type read");
            HandledError::internal(format!(
                "event {} of stream {} ({} v{}) cannot be read as {}",
                self.version,
                self.stream,
                self.event_type,
                self.schema_version,
                std::any::type_name::<T>()
            ))
        })
    }

    /// The stream's category: what comes before its first `-` (`customer` for `customer-42`).
    pub fn category(&self) -> &str {
        category_of(&self.stream)
    }
}

/// The category of a stream name: what comes before its first `-`, or the whole name.
///
/// ```
/// assert_eq!(purest_eventstore::category_of("customer-42"), "customer");
/// assert_eq!(purest_eventstore::category_of("customer-42-b"), "customer");
/// assert_eq!(purest_eventstore::category_of("settings"), "settings");
/// ```
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(category, _)| category)
}

/// What an append expects the stream to hold: the check of optimistic concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Whatever the stream holds (no check).
    Any,
    /// The stream has no events yet.
    NoStream,
    /// The stream's last event has this version.
    Version(u64),
}

impl Expected {
    /// Whether a stream whose last version is `current` (0: no events) meets the expectation.
    pub fn admits(self, current: u64) -> bool {
        match self {
            Expected::Any => true,
            Expected::NoStream => current == 0,
            Expected::Version(version) => current == version,
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Any => f.write_str("any version"),
            Expected::NoStream => f.write_str("no events"),
            Expected::Version(version) => write!(f, "version {version}"),
        }
    }
}

/// What an append recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append: the version of its last new event.
    pub version: u64,
    /// The global position of the first new event.
    pub first_position: u64,
}

/// Which way a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first, from the given version up.
    Forward,
    /// Newest first, from the given version down.
    Backward,
}

/// A stream's state as of one of its versions, kept so that a load can start there instead of at
/// the first event. A snapshot is a cache: losing one costs time, never data.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The stream it sums up.
    pub stream: Arc<str>,
    /// The version of the last event it includes.
    pub version: u64,
    /// The version of the state's own shape: a load ignores a snapshot of another shape and
    /// replays the events instead.
    pub state_version: u32,
    /// The state, as JSON.
    pub state: Arc<RawValue>,
}
