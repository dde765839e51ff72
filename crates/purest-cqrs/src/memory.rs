//! The in-memory datastore: tables of the deployment's own type next to a
//! [`MemoryEventStore`], changed by units of work that commit atomically.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use futures::future::BoxFuture;
use purest_core::HandledError;
use purest_eventstore::{
    Appended, Checkpoint, Checkpoints, EventStore, Expected, MemoryEventStore, NewEvent, check_append, version_conflict,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::datastore::{Datastore, Unit};

/// A [`Datastore`] in the process's memory: tables of type `T` (a struct of the deployment's
/// maps), a [`MemoryEventStore`] and readers' checkpoints. Clones share them.
///
/// Units of work take turns: one at a time changes the tables, so a unit's checks (a uniqueness
/// check in a `write`) hold until it commits. A unit works on a copy of the tables, made at its
/// first change and swapped in at the commit together with its events; readers see the tables
/// before or after a unit, never half of one. Make `T`'s collections cheap to copy (persistent
/// maps such as the `imbl` crate's) when they grow large: a unit copies them once.
///
/// ```
/// use purest_cqrs::{MemoryDatastore, Unit};
/// use purest_eventstore::{EventStore, Expected, NewEvent};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let datastore: MemoryDatastore<Vec<String>> = MemoryDatastore::default();
/// let mut unit = datastore.begin().await.unwrap();
/// unit.tables_mut().push("ann@example.com".into());
/// let invited = NewEvent::new("customerInvited", &serde_json::json!({"email": "ann@example.com"})).unwrap();
/// unit.append("customer-ann", Expected::NoStream, vec![invited]).await.unwrap();
/// assert!(datastore.read().is_empty(), "nothing is visible before the commit");
/// unit.commit().await.unwrap();
/// assert_eq!(*datastore.read(), ["ann@example.com"]);
/// assert_eq!(datastore.event_store().len(), 1);
///
/// // A unit dropped without a commit leaves no trace.
/// let mut unit = datastore.begin().await.unwrap();
/// unit.tables_mut().clear();
/// drop(unit);
/// assert_eq!(datastore.read().len(), 1);
/// # });
/// ```
pub struct MemoryDatastore<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for MemoryDatastore<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T> {
    events: MemoryEventStore,
    committed: RwLock<Committed<T>>,
    /// Held by the unit of work that may change the tables.
    turn: Arc<Mutex<()>>,
}

struct Committed<T> {
    tables: Arc<T>,
    checkpoints: HashMap<String, Checkpoint>,
}

impl<T: Clone + Default + Send + Sync + 'static> Default for MemoryDatastore<T> {
    fn default() -> Self {
        Self::new(MemoryEventStore::new(), T::default())
    }
}

impl<T: Clone + Send + Sync + 'static> MemoryDatastore<T> {
    /// A datastore of `tables` whose units append to `events`.
    pub fn new(events: MemoryEventStore, tables: T) -> Self {
        Self {
            shared: Arc::new(Shared {
                events,
                committed: RwLock::new(Committed {
                    tables: Arc::new(tables),
                    checkpoints: HashMap::new(),
                }),
                turn: Arc::new(Mutex::new(())),
            }),
        }
    }

    /// The committed tables (a cheap handle: later commits do not change what it shows).
    pub fn read(&self) -> Arc<T> {
        self.committed().tables.clone()
    }

    /// The event store its units append to.
    pub fn event_store(&self) -> &MemoryEventStore {
        &self.shared.events
    }

    /// Opens a unit of work, waiting for the one before it to end.
    pub async fn begin(&self) -> Result<MemoryUnit<T>, HandledError> {
        let turn = self.shared.turn.clone().lock_owned().await;
        Ok(MemoryUnit {
            _turn: turn,
            base: self.read(),
            working: None,
            shared: self.shared.clone(),
            appends: Vec::new(),
            store_length: None,
            checkpoints: Vec::new(),
        })
    }

    fn committed(&self) -> std::sync::RwLockReadGuard<'_, Committed<T>> {
        self.shared.committed.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Shared<T> {
    fn write(&self) -> RwLockWriteGuard<'_, Committed<T>> {
        self.committed.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A unit of work on a [`MemoryDatastore`]: its tables through [`MemoryUnit::tables`] and
/// [`MemoryUnit::tables_mut`], its appends and checkpoint moves kept until the commit.
pub struct MemoryUnit<T> {
    _turn: OwnedMutexGuard<()>,
    base: Arc<T>,
    /// The unit's copy of the tables, made at its first change.
    working: Option<T>,
    shared: Arc<Shared<T>>,
    appends: Vec<(String, Expected, Vec<NewEvent>)>,
    /// How many events the store held at the unit's first append: units take turns, so only an
    /// append from outside the datastore can change it, which outdates the unit's versions.
    store_length: Option<usize>,
    checkpoints: Vec<(String, CheckpointChange)>,
}

enum CheckpointChange {
    Advance { from: u64, to: u64 },
    Restart,
}

impl<T: Clone + Send + Sync + 'static> MemoryUnit<T> {
    /// The tables as this unit sees them (with its own changes).
    pub fn tables(&self) -> &T {
        self.working.as_ref().unwrap_or(&self.base)
    }

    /// The tables, to change: the changes become visible with the commit.
    pub fn tables_mut(&mut self) -> &mut T {
        let base = &self.base;
        self.working.get_or_insert_with(|| T::clone(base))
    }

    /// The stream's version as this unit sees it: the store's, plus what the unit appended.
    fn version_of(&self, stream: &str) -> u64 {
        let stored = self.shared.events.stream_version(stream).now_or_never_ready().unwrap_or_default();
        let pending: usize = self
            .appends
            .iter()
            .filter(|(s, _, _)| s == stream)
            .map(|(_, _, events)| events.len())
            .sum();
        stored + pending as u64
    }

    /// The checkpoint of `name` as this unit sees it.
    fn checkpoint_of(&self, name: &str) -> Checkpoint {
        let mut checkpoint = self
            .shared
            .committed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .checkpoints
            .get(name)
            .copied()
            .unwrap_or_default();
        for (changed, change) in &self.checkpoints {
            if changed == name {
                checkpoint = match change {
                    CheckpointChange::Advance { to, .. } => Checkpoint {
                        position: *to,
                        rebuild_requested: false,
                    },
                    CheckpointChange::Restart => Checkpoint::default(),
                };
            }
        }
        checkpoint
    }
}

/// Runs a future the in-memory store answers at once.
trait ReadyNow: std::future::Future + Sized {
    fn now_or_never_ready(self) -> Self::Output {
        futures::FutureExt::now_or_never(self).expect("the in-memory store answers at once")
    }
}

impl<F: std::future::Future> ReadyNow for F {}

impl<T: Clone + Send + Sync + 'static> Unit for MemoryUnit<T> {
    async fn append(&mut self, stream: &str, expected: Expected, events: Vec<NewEvent>) -> Result<Appended, HandledError> {
        check_append(stream, &events)?;
        let current = self.version_of(stream);
        if !expected.admits(current) {
            return Err(version_conflict(stream, expected, current));
        }
        let store_length = *self.store_length.get_or_insert_with(|| self.shared.events.len());
        let pending: usize = self.appends.iter().map(|(_, _, events)| events.len()).sum();
        let appended = Appended {
            version: current + events.len() as u64,
            first_position: (store_length + pending) as u64 + 1,
        };
        // Committed expecting exactly the version seen now, so the commit cannot append after an
        // event it did not see.
        self.appends.push((stream.to_owned(), Expected::Version(current), events));
        Ok(appended)
    }

    async fn advance(&mut self, name: &str, from: u64, to: u64) -> Result<bool, HandledError> {
        let checkpoint = self.checkpoint_of(name);
        if checkpoint.position != from || checkpoint.rebuild_requested {
            return Ok(false);
        }
        self.checkpoints.push((name.to_owned(), CheckpointChange::Advance { from, to }));
        Ok(true)
    }

    async fn restart(&mut self, name: &str) -> Result<(), HandledError> {
        self.checkpoints.push((name.to_owned(), CheckpointChange::Restart));
        Ok(())
    }

    async fn commit(self) -> Result<(), HandledError> {
        let mut committed = self.shared.write();
        if let Some(length) = self.store_length
            && self.shared.events.len() != length
        {
            // Events were appended from outside the datastore since this unit read versions.
            let (stream, expected, _) = &self.appends[0];
            let actual = self.shared.events.stream_version(stream).now_or_never_ready()?;
            return Err(version_conflict(stream, *expected, actual));
        }
        if !self.appends.is_empty() {
            let appends = self.appends.into_iter().map(|(stream, _, events)| (stream, Expected::Any, events));
            // The versions were checked when appended, and nothing was appended since.
            self.shared.events.append_many(appends.collect())?;
        }
        if let Some(tables) = self.working {
            committed.tables = Arc::new(tables);
        }
        for (name, change) in self.checkpoints {
            let checkpoint = committed.checkpoints.entry(name).or_default();
            match change {
                // A rebuild asked for meanwhile stays asked for.
                CheckpointChange::Advance { from, to } if checkpoint.position == from => checkpoint.position = to,
                CheckpointChange::Advance { .. } => {}
                CheckpointChange::Restart => *checkpoint = Checkpoint::default(),
            }
        }
        Ok(())
    }
}

impl<T: Clone + Send + Sync + 'static> Datastore for MemoryDatastore<T> {
    type Unit = MemoryUnit<T>;

    async fn begin(&self) -> Result<Self::Unit, HandledError> {
        MemoryDatastore::begin(self).await
    }

    fn events(&self) -> Arc<dyn EventStore> {
        Arc::new(self.shared.events.clone())
    }

    fn checkpoints(&self) -> Arc<dyn Checkpoints> {
        Arc::new(MemoryDatastoreCheckpoints(self.shared.clone()))
    }
}

/// The checkpoints of a [`MemoryDatastore`], outside a unit.
struct MemoryDatastoreCheckpoints<T>(Arc<Shared<T>>);

impl<T: Send + Sync + 'static> MemoryDatastoreCheckpoints<T> {
    fn with<R>(&self, name: &str, change: impl FnOnce(&mut Checkpoint) -> R) -> R {
        change(self.0.write().checkpoints.entry(name.to_owned()).or_default())
    }
}

impl<T: Send + Sync + 'static> Checkpoints for MemoryDatastoreCheckpoints<T> {
    fn load<'a>(&'a self, name: &'a str, _category: Option<&'a str>) -> BoxFuture<'a, Result<Checkpoint, HandledError>> {
        Box::pin(std::future::ready(Ok(self.with(name, |c| *c))))
    }
    fn advance<'a>(&'a self, name: &'a str, from: u64, to: u64) -> BoxFuture<'a, Result<bool, HandledError>> {
        let moved = self.with(name, |c| {
            let free = c.position == from && !c.rebuild_requested;
            if free {
                c.position = to;
            }
            free
        });
        Box::pin(std::future::ready(Ok(moved)))
    }
    fn request_rebuild<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), HandledError>> {
        self.with(name, |c| c.rebuild_requested = true);
        Box::pin(std::future::ready(Ok(())))
    }
    fn restart<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), HandledError>> {
        self.with(name, |c| *c = Checkpoint::default());
        Box::pin(std::future::ready(Ok(())))
    }
}
