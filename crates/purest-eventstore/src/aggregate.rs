//! Loading a stream's state: its events applied in order to an [`Aggregate`], starting from the
//! stream's snapshot when the aggregate keeps them.

use std::sync::Arc;

use purest_core::HandledError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{Direction, RecordedEvent, Snapshot};
use crate::store::EventStore;

/// How many events a load reads at a time.
const PAGE: usize = 512;

/// State rebuilt from the events of one stream.
///
/// ```
/// use purest_eventstore::{Aggregate, EventStore, Expected, MemoryEventStore, NewEvent, RecordedEvent, load};
/// use purest_core::HandledError;
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Account { balance: i64 }
///
/// impl Aggregate for Account {
///     const SNAPSHOT_EVERY: u64 = 100;
///     fn apply(&mut self, event: &RecordedEvent) -> Result<(), HandledError> {
///         let amount: i64 = event.payload_as()?;
///         match event.event_type.as_str() {
///             "deposited" => self.balance += amount,
///             "withdrawn" => self.balance -= amount,
///             _ => {}
///         }
///         Ok(())
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryEventStore::new();
/// let events = vec![NewEvent::new("deposited", &50).unwrap(), NewEvent::new("withdrawn", &20).unwrap()];
/// store.append("account-7", Expected::NoStream, events).await.unwrap();
/// let account = load::<Account>(&store, "account-7").await.unwrap();
/// assert_eq!((account.state.balance, account.version), (30, 2));
/// # });
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The version of the state's shape. Raise it when the state changes shape: snapshots of
    /// another version are ignored (and replaced) instead of misread.
    const STATE_VERSION: u32 = 1;

    /// After how many events replayed past its last snapshot a load keeps a new snapshot; 0 (the
    /// default) keeps none.
    const SNAPSHOT_EVERY: u64 = 0;

    /// Changes the state by one event, in stream order.
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), HandledError>;
}

/// A stream's state and the version it is at: the version to expect when appending what a
/// decision on this state produces.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The version of the stream's last event applied; 0 for a stream with none.
    pub version: u64,
    /// How many events the load applied (not counting those the snapshot covered).
    pub replayed: u64,
}

/// Loads `stream` into `A`: from its snapshot if `A` keeps them and one of `A`'s state version
/// is there, then every later event. When more than [`Aggregate::SNAPSHOT_EVERY`] events were
/// applied, keeps a new snapshot (a failure to keep it is logged, not returned: the load
/// succeeded).
pub async fn load<A: Aggregate>(store: &dyn EventStore, stream: &str) -> Result<Loaded<A>, HandledError> {
    let mut loaded = Loaded {
        state: A::default(),
        version: 0,
        replayed: 0,
    };
    if A::SNAPSHOT_EVERY > 0
        && let Some(snapshot) = store.read_snapshot(stream).await?
        && snapshot.state_version == A::STATE_VERSION
    {
        match serde_json::from_str(snapshot.state.get()) {
            Ok(state) => {
                loaded.state = state;
                loaded.version = snapshot.version;
            }
            Err(e) => tracing::warn!(stream, error = %e, "a snapshot does not fit its state type; replaying the stream instead"),
        }
    }
    loop {
        let events = store.read_stream(stream, loaded.version + 1, Direction::Forward, PAGE).await?;
        for event in &events {
            loaded.state.apply(event)?;
            loaded.version = event.version;
            loaded.replayed += 1;
        }
        if events.len() < PAGE {
            break;
        }
    }
    if A::SNAPSHOT_EVERY > 0 && loaded.replayed >= A::SNAPSHOT_EVERY {
        keep_snapshot(store, stream, &loaded).await;
    }
    Ok(loaded)
}

async fn keep_snapshot<A: Aggregate>(store: &dyn EventStore, stream: &str, loaded: &Loaded<A>) {
    let state = match serde_json::value::to_raw_value(&loaded.state) {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(stream, error = %e, "a state could not be written as a snapshot");
            return;
        }
    };
    let snapshot = Snapshot {
        stream: Arc::from(stream),
        version: loaded.version,
        state_version: A::STATE_VERSION,
        state: Arc::from(state),
    };
    if let Err(e) = store.write_snapshot(snapshot).await {
        tracing::warn!(stream, error = %e, "a snapshot could not be kept; the next load replays more");
    }
}
