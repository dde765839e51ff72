//! The in-memory event store: for tests and for a monolith that keeps its events as long as it
//! runs. One lock orders every append, so positions are given in the order appends finish and a
//! reader can never see a hole.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use purest_core::{HandledError, Id};
use tokio::sync::watch;

use crate::event::{Appended, Direction, Expected, NewEvent, RecordedEvent, Snapshot};
use crate::store::{EventStore, check_append, check_stream_name, clamp_start, duplicate_event, version_conflict};
use crate::types::EventTypes;

/// An [`EventStore`] in the process's memory. Clones share the events.
///
/// ```
/// use purest_eventstore::{EventStore, Expected, MemoryEventStore, NewEvent};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryEventStore::new();
/// let first = NewEvent::new("opened", &serde_json::json!({"owner": "ann"})).unwrap();
/// store.append("account-1", Expected::NoStream, vec![first]).await.unwrap();
/// let stale = NewEvent::new("opened", &serde_json::json!({"owner": "bob"})).unwrap();
/// let refused = store.append("account-1", Expected::NoStream, vec![stale]).await.unwrap_err();
/// assert_eq!(refused.status, 409);
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryEventStore {
    inner: Arc<RwLock<Log>>,
    types: Option<Arc<EventTypes>>,
    appended: Arc<watch::Sender<()>>,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            types: None,
            appended: Arc::new(watch::Sender::new(())),
        }
    }
}

/// Every event in global order (position = index + 1), each stream's events, and the newest
/// snapshot of each stream that has one.
#[derive(Default)]
struct Log {
    events: Vec<RecordedEvent>,
    streams: HashMap<Arc<str>, Stream>,
    ids: HashSet<Id>,
    snapshots: HashMap<Arc<str>, Snapshot>,
}

impl Log {
    fn version_of(&self, stream: &str) -> u64 {
        self.streams.get(stream).map_or(0, |s| s.events.len() as u64)
    }

    /// Refuses an event whose id the store holds, or that `fresh` (the ids of this append so
    /// far) holds; adds the append's ids to `fresh`.
    fn check_ids(&self, stream: &str, events: &[NewEvent], fresh: &mut HashSet<Id>) -> Result<(), HandledError> {
        for event in events {
            if self.ids.contains(&event.id) || !fresh.insert(event.id.clone()) {
                return Err(duplicate_event(stream, &event.id));
            }
        }
        Ok(())
    }

    /// Records checked events after the stream's version `current`.
    fn record(&mut self, stream: &str, current: u64, events: Vec<NewEvent>) -> Appended {
        let Log {
            events: all, streams, ids, ..
        } = self;
        let name: Arc<str> = streams
            .get_key_value(stream)
            .map_or_else(|| Arc::from(stream), |(name, _)| name.clone());
        let entry = streams.entry(name.clone()).or_default();
        let first_position = all.len() as u64 + 1;
        let recorded_at = purest_core::envelope::now_millis();
        for (offset, event) in events.into_iter().enumerate() {
            ids.insert(event.id.clone());
            entry.events.push(all.len());
            all.push(RecordedEvent {
                id: event.id,
                stream: name.clone(),
                version: current + offset as u64 + 1,
                position: all.len() as u64 + 1,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at,
            });
        }
        Appended {
            version: entry.events.len() as u64,
            first_position,
        }
    }
}

#[derive(Default)]
struct Stream {
    /// Indexes into the log, by version − 1.
    events: Vec<usize>,
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store, checking appends against `types` and upcasting what it reads (see
    /// [`EventTypes`]). Clones made before share the events, not the types.
    pub fn with_types(mut self, types: EventTypes) -> Self {
        self.types = Some(Arc::new(types));
        self
    }

    /// How many events the store holds.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn append_now(&self, stream: &str, expected: Expected, events: Vec<NewEvent>) -> Result<Appended, HandledError> {
        self.check(stream, &events)?;
        let mut log = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let current = log.version_of(stream);
        if !expected.admits(current) {
            return Err(version_conflict(stream, expected, current));
        }
        let mut fresh = HashSet::with_capacity(events.len());
        log.check_ids(stream, &events, &mut fresh)?;
        let appended = log.record(stream, current, events);
        drop(log);
        self.appended.send_replace(());
        Ok(appended)
    }

    /// Appends to several streams at once: every append, or none of them (the first refusal is
    /// returned). For a unit of work that commits events of more than one stream.
    ///
    /// ```
    /// use purest_eventstore::{EventStore, Expected, MemoryEventStore, NewEvent};
    /// let store = MemoryEventStore::new();
    /// let event = |kind: &str| NewEvent::new(kind, &serde_json::json!({})).unwrap();
    /// store.append_many(vec![("order-1".into(), Expected::NoStream, vec![event("placed")])]).unwrap();
    /// let refused = store.append_many(vec![
    ///     ("stock-1".into(), Expected::NoStream, vec![event("reserved")]),
    ///     ("order-1".into(), Expected::NoStream, vec![event("placed")]), // order-1 has an event
    /// ]);
    /// assert_eq!(refused.unwrap_err().status, 409);
    /// assert_eq!(store.len(), 1, "neither append happened");
    /// ```
    pub fn append_many(&self, appends: Vec<(String, Expected, Vec<NewEvent>)>) -> Result<Vec<Appended>, HandledError> {
        for (stream, _, events) in &appends {
            self.check(stream, events)?;
        }
        let mut log = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh = HashSet::new();
        let mut planned: HashMap<&str, u64> = HashMap::new();
        for (stream, expected, events) in &appends {
            let current = *planned.entry(stream.as_str()).or_insert_with(|| log.version_of(stream));
            if !expected.admits(current) {
                return Err(version_conflict(stream, *expected, current));
            }
            log.check_ids(stream, events, &mut fresh)?;
            planned.insert(stream.as_str(), current + events.len() as u64);
        }
        drop(planned);
        let recorded = appends
            .into_iter()
            .map(|(stream, _, events)| {
                let current = log.version_of(&stream);
                log.record(&stream, current, events)
            })
            .collect();
        drop(log);
        self.appended.send_replace(());
        Ok(recorded)
    }

    /// Refuses what no store takes, and what the store's event types refuse.
    fn check(&self, stream: &str, events: &[NewEvent]) -> Result<(), HandledError> {
        check_append(stream, events)?;
        if let Some(types) = &self.types {
            events.iter().try_for_each(|event| types.check(event))?;
        }
        Ok(())
    }

    fn read_stream_now(&self, stream: &str, from: u64, direction: Direction, limit: usize) -> Result<Vec<RecordedEvent>, HandledError> {
        check_stream_name(stream)?;
        let log = self.read();
        let Some(entry) = log.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let start = clamp_start(from, direction, entry.events.len() as u64);
        let picked: Vec<usize> = match direction {
            Direction::Forward => entry.events.iter().skip(start as usize - 1).take(limit).copied().collect(),
            Direction::Backward => entry.events[..start as usize].iter().rev().take(limit).copied().collect(),
        };
        self.upcast(picked.into_iter().map(|index| log.events[index].clone()).collect())
    }

    fn upcast(&self, events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, HandledError> {
        match &self.types {
            Some(types) => types.upcast_all(events),
            None => Ok(events),
        }
    }

    fn read_all_now(&self, after: u64, limit: usize, category: Option<&str>) -> Result<Vec<RecordedEvent>, HandledError> {
        let log = self.read();
        let from = usize::try_from(after).unwrap_or(usize::MAX).min(log.events.len());
        let picked = log.events[from..]
            .iter()
            .filter(|event| category.is_none_or(|category| event.category() == category))
            .take(limit)
            .cloned()
            .collect();
        drop(log);
        self.upcast(picked)
    }
}

impl EventStore for MemoryEventStore {
    fn append<'a>(&'a self, stream: &'a str, expected: Expected, events: Vec<NewEvent>) -> BoxFuture<'a, Result<Appended, HandledError>> {
        Box::pin(std::future::ready(self.append_now(stream, expected, events)))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, HandledError>> {
        Box::pin(std::future::ready(self.read_stream_now(stream, from, direction, limit)))
    }

    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, HandledError>> {
        Box::pin(std::future::ready(self.read_all_now(after, limit, None)))
    }

    fn read_category<'a>(&'a self, category: &'a str, after: u64, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>, HandledError>> {
        Box::pin(std::future::ready(self.read_all_now(after, limit, Some(category))))
    }

    fn stream_version<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<u64, HandledError>> {
        let version = check_stream_name(stream).map(|()| self.read().streams.get(stream).map_or(0, |s| s.events.len() as u64));
        Box::pin(std::future::ready(version))
    }

    fn count_after<'a>(&'a self, after: u64, category: Option<&'a str>) -> BoxFuture<'a, Result<u64, HandledError>> {
        let log = self.read();
        let from = usize::try_from(after).unwrap_or(usize::MAX).min(log.events.len());
        let behind = log.events[from..]
            .iter()
            .filter(|event| category.is_none_or(|category| event.category() == category))
            .count();
        Box::pin(std::future::ready(Ok(behind as u64)))
    }

    fn watch_appends(&self) -> Option<watch::Receiver<()>> {
        Some(self.appended.subscribe())
    }

    fn read_snapshot<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Option<Snapshot>, HandledError>> {
        Box::pin(std::future::ready(Ok(self.read().snapshots.get(stream).cloned())))
    }

    fn write_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<(), HandledError>> {
        let written = check_stream_name(&snapshot.stream).map(|()| {
            let mut log = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let newer_kept = log
                .snapshots
                .get(&snapshot.stream)
                .is_some_and(|kept| kept.version > snapshot.version);
            if !newer_kept {
                log.snapshots.insert(snapshot.stream.clone(), snapshot);
            }
        });
        Box::pin(std::future::ready(written))
    }
}
