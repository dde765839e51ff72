//! The [`EventStore`] trait every store implements, and the checks and refusals they share.

use futures::future::BoxFuture;
use purest_core::HandledError;
use serde_json::json;
use tokio::sync::watch;

use crate::event::{Appended, Direction, Expected, NewEvent, RecordedEvent, Snapshot};

/// Where events are kept: streams with versions, and one global order across them.
///
/// Object safe, so an app holds an `Arc<dyn EventStore>` and picks the in-memory store or
/// PostgreSQL by configuration. Every implementation keeps these promises:
///
/// - **Optimistic concurrency.** An append whose [`Expected`] the stream does not meet is refused
///   with 409 naming the stream, the expected and the actual version; of several writers
///   expecting the same version, exactly one succeeds. An append is all or nothing.
/// - **Versions** of a stream run 1, 2, 3, … without gaps.
/// - **Event ids** are unique in the store: an append holding an id the store has is refused
///   with 409 (a relay publishes an event under its id, and consumers deduplicate by it).
/// - **Global order without holes for readers.** [`EventStore::read_all`] returns events in
///   rising `position`, and once a reader has seen position `p`, no event with a position below
///   `p` appears later: a reader that keeps its last position as a checkpoint never skips an
///   event.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it meets `expected`; all or none.
    fn append<'a>(&'a self, stream: &'a str, expected: Expected, events: Vec<NewEvent>) -> BoxFuture<'a, Result<Appended, HandledError>>;

    /// At most `limit` events of `stream`, from version `from` (inclusive) in `direction`;
    /// `Backward` from `u64::MAX` starts at the newest. A stream with no events reads empty.
    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, HandledError>>;

    /// At most `limit` events with a global position above `after` (0 for the start), oldest
    /// first. See the trait's docs for the order promise.
    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, HandledError>>;

    /// As [`EventStore::read_all`], only the streams of `category` (`customer` reads
    /// `customer-1`, `customer-2`, …).
    fn read_category<'a>(&'a self, category: &'a str, after: u64, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>, HandledError>>;

    /// The version of `stream`'s last event; 0 when it has none.
    fn stream_version<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<u64, HandledError>>;

    /// The newest snapshot of `stream`, if one was kept.
    fn read_snapshot<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Option<Snapshot>, HandledError>>;

    /// Keeps `snapshot` as its stream's newest, unless a newer one is kept already.
    fn write_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<(), HandledError>>;

    /// How many events a reader at `after` has still to read (of `category`, or all): a
    /// projection's lag.
    fn count_after<'a>(&'a self, after: u64, category: Option<&'a str>) -> BoxFuture<'a, Result<u64, HandledError>>;

    /// A wake-up that changes when events may have been appended, so readers need not poll
    /// often; `None` when the store has none. A hint only: it can come before the events are
    /// readable, or be lost (a reconnect), so readers still poll now and then.
    fn watch_appends(&self) -> Option<watch::Receiver<()>>;
}

/// The longest stream name accepted.
pub const MAX_STREAM_NAME: usize = 200;

/// Refuses (400) a stream name that is empty, too long or holds control characters, and an
/// append of no events or of an event without a type.
pub fn check_append(stream: &str, events: &[NewEvent]) -> Result<(), HandledError> {
    check_stream_name(stream)?;
    if events.is_empty() {
        return Err(HandledError::bad_request(format!("an append to stream {stream} holds no events")));
    }
    if let Some(untyped) = events.iter().position(|event| event.event_type.trim().is_empty()) {
        return Err(HandledError::bad_request(format!(
            "event {} of the append to stream {stream} has no type; give every event a type name",
            untyped + 1
        )));
    }
    Ok(())
}

/// Refuses (400) a stream name that is empty, longer than [`MAX_STREAM_NAME`] bytes or holds
/// control characters.
pub fn check_stream_name(stream: &str) -> Result<(), HandledError> {
    if stream.is_empty() || stream.len() > MAX_STREAM_NAME || stream.chars().any(char::is_control) {
        return Err(HandledError::bad_request(format!(
            "{stream:?} is not a stream name; write 1 to {MAX_STREAM_NAME} bytes without control characters, such as customer-42"
        )));
    }
    Ok(())
}

/// The 409 for an append whose expectation the stream does not meet.
pub fn version_conflict(stream: &str, expected: Expected, actual: u64) -> HandledError {
    let actual_text = match actual {
        0 => "no events".to_owned(),
        version => format!("version {version}"),
    };
    HandledError::conflict(format!(
        "stream {stream} is at {actual_text}, not at {expected} as the append expected; read it again and retry"
    ))
    .with_data(json!({
        "stream": stream,
        "expected": match expected {
            Expected::Any => serde_json::Value::Null,
            Expected::NoStream => json!(0),
            Expected::Version(version) => json!(version),
        },
        "actual": actual,
    }))
}

/// The 409 for an append of an event whose id the store holds already.
pub fn duplicate_event(stream: &str, id: &purest_core::Id) -> HandledError {
    HandledError::conflict(format!("the append to stream {stream} holds event {id}, which the store has already; an event is appended once, so give a new event a new id"))
        .with_data(json!({"stream": stream, "eventId": id.to_string()}))
}

/// The first version a read in `direction` from `from` starts at, for a stream at `current`.
pub(crate) fn clamp_start(from: u64, direction: Direction, current: u64) -> u64 {
    match direction {
        Direction::Forward => from.max(1),
        Direction::Backward => from.min(current),
    }
}
