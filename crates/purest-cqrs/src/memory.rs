//! The in-memory datastore: tables of the deployment's own type next to a
//! [`MemoryEventStore`], changed by units of work that commit atomically.

use std::sync::{Arc, RwLock, RwLockWriteGuard};

use purest_core::HandledError;
use purest_eventstore::{
    Appended, Checkpoints, EventStore, Expected, MemoryCheckpoints, MemoryEventStore, NewEvent, check_append, version_conflict,
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
    /// The tables as committed; units swap theirs in under its write lock.
    tables: RwLock<Arc<T>>,
    /// Changed by units under the tables' write lock, so that a unit's checkpoint moves and its
    /// tables show together.
    checkpoints: Arc<MemoryCheckpoints>,
    /// Held by the unit of work that may change the tables.
    turn: Arc<Mutex<()>>,
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
                tables: RwLock::new(Arc::new(tables)),
                checkpoints: Arc::default(),
                turn: Arc::new(Mutex::new(())),
            }),
        }
    }

    /// The committed tables (a cheap handle: later commits do not change what it shows).
    pub fn read(&self) -> Arc<T> {
        self.shared.tables.read().unwrap_or_else(|e| e.into_inner()).clone()
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
}

impl<T> Shared<T> {
    fn write(&self) -> RwLockWriteGuard<'_, Arc<T>> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
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

impl CheckpointChange {
    /// The position a checkpoint is at after the change.
    fn position(&self) -> u64 {
        match self {
            CheckpointChange::Advance { to, .. } => *to,
            CheckpointChange::Restart => 0,
        }
    }
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

    /// Whether reader `name` is at `from` as this unit sees it, with no rebuild asked for.
    fn checkpoint_at(&self, name: &str, from: u64) -> bool {
        match self.checkpoints.iter().rev().find(|(changed, _)| changed == name) {
            Some((_, change)) => change.position() == from,
            None => {
                let stored = self.shared.checkpoints.load(name, None).now_or_never_ready().unwrap_or_default();
                stored.position == from && !stored.rebuild_requested
            }
        }
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
        if !self.checkpoint_at(name, from) {
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
        let mut tables = self.shared.write();
        if let Some(length) = self.store_length
            && self.shared.events.len() != length
        {
            // Events were appended from outside the datastore since this unit read versions.
            let (stream, expected, _) = &self.appends[0];
            let actual = self.shared.events.stream_version(stream).now_or_never_ready()?;
            return Err(version_conflict(stream, *expected, actual));
        }
        if !self.appends.is_empty() {
            self.shared.events.append_many(self.appends)?;
        }
        if let Some(working) = self.working {
            *tables = Arc::new(working);
        }
        for (name, change) in self.checkpoints {
            let checkpoints = &self.shared.checkpoints;
            match change {
                // Refused (and a no-op) only when a rebuild was asked for meanwhile: the rebuild
                // empties the read model anyway.
                CheckpointChange::Advance { from, to } => drop(checkpoints.advance(&name, from, to).now_or_never_ready()?),
                CheckpointChange::Restart => checkpoints.restart(&name).now_or_never_ready()?,
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
        self.shared.checkpoints.clone()
    }
}
