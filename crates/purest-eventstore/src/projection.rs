//! Projections: read models kept up to date from the store's global order. Each runs in a task
//! of its own: it catches up from its checkpoint, then follows new events, woken by the store
//! ([`EventStore::watch_appends`]) and polling as the backstop. A projection that fails on an
//! event stops there, visibly ([`ProjectionState::Failed`]), rather than skip it; one that cannot
//! reach its database retries until it can.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use purest_core::HandledError;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::event::RecordedEvent;
use crate::store::EventStore;

/// A read model kept anywhere (a search index, a cache, another database), fed at least once:
/// after a crash, the events since its last checkpoint are applied again, so `apply` must
/// tolerate seeing an event twice. A read model in the event store's own PostgreSQL can have each
/// event exactly once instead: see [`PgProjection`](crate::PgProjection).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use purest_eventstore::{EventStore, Expected, MemoryCheckpoints, MemoryEventStore, NewEvent, Projection, Projections, RecordedEvent};
/// use purest_core::HandledError;
///
/// #[derive(Default)]
/// struct Signups(Mutex<Vec<String>>);
///
/// impl Projection for Signups {
///     fn name(&self) -> &str { "signups" }
///     async fn apply(&self, events: &[RecordedEvent]) -> Result<(), HandledError> {
///         let mut emails = self.0.lock().unwrap();
///         for event in events {
///             // An event seen again after a crash must not be counted twice.
///             let email = event.payload_as::<serde_json::Value>()?["email"].to_string();
///             if !emails.contains(&email) { emails.push(email) }
///         }
///         Ok(())
///     }
///     async fn reset(&self) -> Result<(), HandledError> {
///         self.0.lock().unwrap().clear();
///         Ok(())
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryEventStore::new();
/// let signups = Arc::new(Signups::default());
/// let running = Projections::new(Arc::new(store.clone()))
///     .add(signups.clone(), Arc::new(MemoryCheckpoints::default()))
///     .start();
/// let event = NewEvent::new("signedUp", &serde_json::json!({"email": "ann@example.com"})).unwrap();
/// let appended = store.append("user-1", Expected::NoStream, vec![event]).await.unwrap();
/// running.caught_up("signups", appended.first_position).await.unwrap();
/// assert_eq!(signups.0.lock().unwrap().len(), 1);
/// running.stop().await;
/// # });
/// ```
pub trait Projection: Send + Sync + 'static {
    /// The name its checkpoint is kept under; unique among the store's readers.
    fn name(&self) -> &str;

    /// Only the streams of this category (`customer`), or every event (`None`, the default).
    fn category(&self) -> Option<&str> {
        None
    }

    /// Applies events, oldest first.
    fn apply(&self, events: &[RecordedEvent]) -> impl Future<Output = Result<(), HandledError>> + Send;

    /// Empties the read model, before a rebuild applies every event again.
    fn reset(&self) -> impl Future<Output = Result<(), HandledError>> + Send;
}

impl<P: Projection> Projection for Arc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn category(&self) -> Option<&str> {
        (**self).category()
    }
    fn apply(&self, events: &[RecordedEvent]) -> impl Future<Output = Result<(), HandledError>> + Send {
        (**self).apply(events)
    }
    fn reset(&self) -> impl Future<Output = Result<(), HandledError>> + Send {
        (**self).reset()
    }
}

/// Where a reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The position of the last event applied; 0 before the first.
    pub position: u64,
    /// Whether a rebuild was asked for (by [`RunningProjections::rebuild`] or the CLI) and has
    /// not happened yet.
    pub rebuild_requested: bool,
}

/// Where checkpoints of [`Projection`]s are kept: [`MemoryCheckpoints`], or the event store's
/// PostgreSQL ([`PgEventStore`](crate::PgEventStore) implements this).
pub trait Checkpoints: Send + Sync + 'static {
    /// The checkpoint of `name`; a new one at 0 if it has none. `category` is what the reader
    /// reads (`None`: every event), kept for reports of its lag.
    fn load<'a>(&'a self, name: &'a str, category: Option<&'a str>) -> BoxFuture<'a, Result<Checkpoint, HandledError>>;

    /// Moves `name` from `from` to `to`; `false` (and no change) when it is not at `from` any
    /// more or a rebuild was asked for: another reader moved it, or it must start over.
    fn advance<'a>(&'a self, name: &'a str, from: u64, to: u64) -> BoxFuture<'a, Result<bool, HandledError>>;

    /// Asks the reader of `name` to start over.
    fn request_rebuild<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), HandledError>>;

    /// Puts `name` back to 0 and clears its rebuild request.
    fn restart<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), HandledError>>;
}

/// [`Checkpoints`] in the process's memory: every start is a rebuild.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    checkpoints: Mutex<std::collections::HashMap<String, Checkpoint>>,
}

impl MemoryCheckpoints {
    fn with<T>(&self, name: &str, change: impl FnOnce(&mut Checkpoint) -> T) -> T {
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        change(checkpoints.entry(name.to_owned()).or_default())
    }
}

impl Checkpoints for MemoryCheckpoints {
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

/// What a projection is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionState {
    /// Reading its checkpoint.
    Starting,
    /// Applying events it has not seen.
    CatchingUp,
    /// Caught up, waiting for new events.
    Live,
    /// Another instance runs it (a leased projection); this one takes over if that one stops.
    StandingBy,
    /// Emptying its read model to apply everything again.
    Rebuilding,
    /// Its database cannot be reached; it retries.
    Retrying(String),
    /// Stopped at an event it cannot apply; it stays stopped until rebuilt or restarted.
    Failed(String),
}

/// A projection's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    /// Its name.
    pub name: String,
    /// What it is doing.
    pub state: ProjectionState,
    /// The position of the last event it applied.
    pub position: u64,
    /// How many events it has still to apply (its lag).
    pub behind: u64,
}

/// What a projection runner drives: a read model together with where its checkpoint lives.
/// [`Projections::add`], [`Projections::add_in_postgres`](crate::Projections::add_in_postgres)
/// and [`Projections::add_leased`](crate::Projections::add_leased) make one for you; implement it
/// for a read model that moves its checkpoint in a unit of work of its own, so that its changes
/// and the checkpoint commit together (purest-cqrs's projectors do), and add it with
/// [`Projections::add_sink`].
pub trait Sink: Send + Sync + 'static {
    /// The name its checkpoint is kept under.
    fn name(&self) -> &str;
    /// Only the streams of this category, or every event (`None`).
    fn category(&self) -> Option<&str>;
    /// Where the checkpoint stands (made at 0 if it is new).
    fn checkpoint(&self) -> BoxFuture<'_, Result<Checkpoint, HandledError>>;
    /// Applies `events` and moves the checkpoint from `from` to the last one's position.
    fn commit<'a>(&'a self, events: &'a [RecordedEvent], from: u64) -> BoxFuture<'a, Result<Committed, HandledError>>;
    /// Empties the read model and puts the checkpoint back to 0.
    fn rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>>;
    /// Asks for a rebuild (the runner, in whichever process, does it).
    fn request_rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>>;
}

/// How a [`Sink::commit`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Applied; the checkpoint is at the last event.
    Done,
    /// The checkpoint was not at `from` (another reader moved it) or a rebuild was asked for:
    /// nothing was applied; the runner reads the checkpoint again.
    Moved,
    /// Another instance holds the projection: the runner stands by.
    Busy,
}

/// A [`Projection`] with its [`Checkpoints`]: applied first, checkpoint moved after.
struct AtLeastOnce<P> {
    projection: P,
    checkpoints: Arc<dyn Checkpoints>,
}

impl<P: Projection> Sink for AtLeastOnce<P> {
    fn name(&self) -> &str {
        self.projection.name()
    }
    fn category(&self) -> Option<&str> {
        self.projection.category()
    }
    fn checkpoint(&self) -> BoxFuture<'_, Result<Checkpoint, HandledError>> {
        self.checkpoints.load(self.projection.name(), self.projection.category())
    }
    fn commit<'a>(&'a self, events: &'a [RecordedEvent], from: u64) -> BoxFuture<'a, Result<Committed, HandledError>> {
        Box::pin(async move {
            let Some(last) = events.last() else { return Ok(Committed::Done) };
            self.projection.apply(events).await?;
            let moved = self.checkpoints.advance(self.projection.name(), from, last.position).await?;
            Ok(if moved { Committed::Done } else { Committed::Moved })
        })
    }
    fn rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            // Reset first: a crash in between leaves the request standing, and the next start
            // resets again.
            self.projection.reset().await?;
            self.checkpoints.restart(self.projection.name()).await
        })
    }
    fn request_rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        self.checkpoints.request_rebuild(self.projection.name())
    }
}

/// Projections to run over one store.
pub struct Projections {
    store: Arc<dyn EventStore>,
    sinks: Vec<Arc<dyn Sink>>,
    batch: usize,
    poll: Duration,
}

impl Projections {
    /// No projections yet, over `store`: batches of 500 events, a poll every second.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            sinks: Vec::new(),
            batch: 500,
            poll: Duration::from_secs(1),
        }
    }

    /// Adds a projection whose checkpoint `checkpoints` keeps (at least once).
    pub fn add(mut self, projection: impl Projection, checkpoints: Arc<dyn Checkpoints>) -> Self {
        self.sinks.push(Arc::new(AtLeastOnce { projection, checkpoints }));
        self
    }

    /// Adds a projection that keeps its own checkpoint (see [`Sink`]).
    pub fn add_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// How many events a projection applies at a time (and commits with one checkpoint).
    pub fn batch(mut self, events: usize) -> Self {
        self.batch = events.max(1);
        self
    }

    /// How often an idle projection looks for events nobody woke it for (lost notifications,
    /// a rebuild asked for from another process).
    pub fn poll_every(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// Starts each projection in a task of its own.
    ///
    /// # Panics
    ///
    /// When two projections share a name, or outside a Tokio runtime.
    pub fn start(self) -> RunningProjections {
        let mut names = std::collections::HashSet::new();
        for sink in &self.sinks {
            assert!(names.insert(sink.name().to_owned()), "two projections are named {}", sink.name());
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let entries = self
            .sinks
            .into_iter()
            .map(|sink| {
                let entry = Arc::new(Entry {
                    sink,
                    progress: watch::Sender::new(Progress {
                        state: ProjectionState::Starting,
                        position: 0,
                        rebuilds: 0,
                    }),
                    kick: Notify::new(),
                });
                let runner = Runner {
                    entry: entry.clone(),
                    store: self.store.clone(),
                    batch: self.batch,
                    poll: self.poll,
                    stopped: stopped.clone(),
                };
                tasks.spawn(runner.run());
                entry
            })
            .collect();
        RunningProjections {
            store: self.store,
            entries,
            stop,
            tasks,
        }
    }
}

/// Each projection's state, position and lag.
pub(crate) async fn status_of(store: &dyn EventStore, entries: &[Arc<Entry>]) -> Result<Vec<ProjectionStatus>, HandledError> {
    let mut statuses = Vec::with_capacity(entries.len());
    for entry in entries {
        let progress = entry.progress.borrow().clone();
        let behind = store.count_after(progress.position, entry.sink.category()).await?;
        statuses.push(ProjectionStatus {
            name: entry.sink.name().to_owned(),
            state: progress.state,
            position: progress.position,
            behind,
        });
    }
    Ok(statuses)
}

pub(crate) struct Entry {
    sink: Arc<dyn Sink>,
    progress: watch::Sender<Progress>,
    /// Wakes the runner to read its checkpoint again (a rebuild was asked for).
    kick: Notify,
}

#[derive(Debug, Clone)]
struct Progress {
    state: ProjectionState,
    position: u64,
    /// Rebuilds done since the start.
    rebuilds: u64,
}

/// Projections at work; [`RunningProjections::stop`] ends them.
pub struct RunningProjections {
    store: Arc<dyn EventStore>,
    entries: Vec<Arc<Entry>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningProjections {
    /// Every projection's state, position and lag.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, HandledError> {
        status_of(&*self.store, &self.entries).await
    }

    /// What `/readyz` reports of these projections (see [`crate::ProjectionsReadiness`]).
    pub fn readiness(&self) -> crate::ProjectionsReadiness {
        crate::ProjectionsReadiness {
            store: self.store.clone(),
            entries: self.entries.clone(),
        }
    }

    /// Empties `name`'s read model and has it apply every event again, from position 0.
    /// Returns once the read model is empty and the projection has started over (wait for
    /// [`RunningProjections::caught_up`] to see it done), or with the error that stopped it.
    pub async fn rebuild(&self, name: &str) -> Result<(), HandledError> {
        let entry = self.entry(name)?;
        let mut progress = entry.progress.subscribe();
        let before = progress.borrow_and_update().rebuilds;
        entry.sink.request_rebuild().await?;
        entry.kick.notify_one();
        let done = progress
            .wait_for(|p| p.rebuilds > before || matches!(p.state, ProjectionState::Failed(_)))
            .await
            .map_err(|_| HandledError::unavailable(format!("projection {name} has stopped")))?;
        match &done.state {
            ProjectionState::Failed(error) if done.rebuilds == before => {
                Err(HandledError::internal(format!("projection {name} could not be rebuilt: {error}")))
            }
            _ => Ok(()),
        }
    }

    /// Waits until `name` has applied every event up to `position`, or failed (its error).
    pub async fn caught_up(&self, name: &str, position: u64) -> Result<(), HandledError> {
        let mut progress = self.entry(name)?.progress.subscribe();
        let reached = progress
            .wait_for(|p| p.position >= position || matches!(p.state, ProjectionState::Failed(_)))
            .await
            .map_err(|_| HandledError::unavailable(format!("projection {name} has stopped")))?;
        match &reached.state {
            ProjectionState::Failed(error) if reached.position < position => Err(HandledError::internal(format!(
                "projection {name} failed at position {}: {error}",
                reached.position
            ))),
            _ => Ok(()),
        }
    }

    fn entry(&self, name: &str) -> Result<&Arc<Entry>, HandledError> {
        self.entries
            .iter()
            .find(|entry| entry.sink.name() == name)
            .ok_or_else(|| HandledError::not_found(format!("no projection is named {name}")))
    }

    /// Stops every projection after the batch it is applying.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One projection's loop.
struct Runner {
    entry: Arc<Entry>,
    store: Arc<dyn EventStore>,
    batch: usize,
    poll: Duration,
    stopped: watch::Receiver<bool>,
}

/// When an idle projection looks again after a wake-up that found nothing new.
const RECHECKS: [Duration; 7] = [
    Duration::from_millis(2),
    Duration::from_millis(10),
    Duration::from_millis(30),
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// The longest wait between retries against a database that cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Runner {
    async fn run(mut self) {
        let mut appended = self.store.watch_appends();
        let mut backoff = Duration::from_millis(50);
        let mut checkpoint: Option<Checkpoint> = None;
        let mut recheck = RECHECKS[RECHECKS.len()..].iter().copied();
        while !*self.stopped.borrow() {
            let step = self.step(&mut checkpoint).await;
            match step {
                Ok(Step::Applied) => {
                    backoff = Duration::from_millis(50);
                    recheck = RECHECKS[RECHECKS.len()..].iter().copied();
                }
                Ok(Step::Idle) => {
                    backoff = Duration::from_millis(50);
                    self.set(ProjectionState::Live, checkpoint.map(|c| c.position));
                    // After a wake-up that found nothing, look again soon: the events it was
                    // for can become readable a moment later (PostgreSQL's visibility rule).
                    let timeout = match recheck.next() {
                        Some(soon) => soon.min(self.poll),
                        None => self.poll,
                    };
                    let woken = self.wait(appended.as_mut(), timeout).await;
                    if woken {
                        recheck = RECHECKS.iter().copied();
                    } else {
                        // Polled: look at the checkpoint too (a rebuild asked from elsewhere).
                        checkpoint = None;
                    }
                }
                Ok(Step::StandingBy) => {
                    self.set(ProjectionState::StandingBy, None);
                    self.wait(None, self.poll).await;
                }
                Err(error) if error.status == 503 => {
                    tracing::warn!(projection = self.entry.sink.name(), error = %error, "a projection cannot reach its database; retrying");
                    self.set(ProjectionState::Retrying(error.message), None);
                    checkpoint = None;
                    self.wait(None, backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => {
                    tracing::error!(projection = self.entry.sink.name(), error = %error, "a projection stopped at an event it cannot apply");
                    self.set(ProjectionState::Failed(error.message), None);
                    // Stays stopped until kicked (a rebuild) or stopped.
                    tokio::select! {
                        () = self.entry.kick.notified() => checkpoint = None,
                        _ = self.stopped.wait_for(|stop| *stop) => {}
                    }
                }
            }
        }
    }

    /// Applies the next batch, or finds there is none.
    async fn step(&mut self, checkpoint: &mut Option<Checkpoint>) -> Result<Step, HandledError> {
        let sink = self.entry.sink.clone();
        let current = match *checkpoint {
            Some(current) => current,
            None => {
                let mut loaded = sink.checkpoint().await?;
                if loaded.rebuild_requested {
                    self.set(ProjectionState::Rebuilding, None);
                    tracing::info!(projection = sink.name(), "rebuilding a projection from the first event");
                    sink.rebuild().await?;
                    loaded = Checkpoint::default();
                    // One change, so that whoever sees the rebuild done sees position 0 with it.
                    self.entry.progress.send_modify(|progress| {
                        progress.rebuilds += 1;
                        progress.position = 0;
                        progress.state = ProjectionState::CatchingUp;
                    });
                } else {
                    self.set(ProjectionState::CatchingUp, Some(loaded.position));
                }
                *checkpoint = Some(loaded);
                loaded
            }
        };
        let events = match sink.category() {
            Some(category) => self.store.read_category(category, current.position, self.batch).await?,
            None => self.store.read_all(current.position, self.batch).await?,
        };
        let Some(last) = events.last().map(|event| event.position) else {
            return Ok(Step::Idle);
        };
        match sink.commit(&events, current.position).await? {
            Committed::Done => {
                *checkpoint = Some(Checkpoint {
                    position: last,
                    rebuild_requested: false,
                });
                self.set(ProjectionState::CatchingUp, Some(last));
                Ok(Step::Applied)
            }
            Committed::Moved => {
                *checkpoint = None;
                Ok(Step::Applied)
            }
            Committed::Busy => {
                *checkpoint = None;
                Ok(Step::StandingBy)
            }
        }
    }

    /// Waits for a wake-up, a kick, the stop or `timeout`; `true` when something woke it.
    async fn wait(&mut self, appended: Option<&mut watch::Receiver<()>>, timeout: Duration) -> bool {
        let appended = async {
            let woken = match appended {
                Some(appended) => appended.changed().await.is_ok(),
                None => false,
            };
            if !woken {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = appended => true,
            () = self.entry.kick.notified() => false,
            _ = self.stopped.wait_for(|stop| *stop) => true,
            () = tokio::time::sleep(timeout) => false,
        }
    }

    fn set(&self, state: ProjectionState, position: Option<u64>) {
        self.entry.progress.send_modify(|progress| {
            progress.state = state;
            if let Some(position) = position {
                progress.position = position;
            }
        });
    }
}

enum Step {
    Applied,
    Idle,
    /// Another instance runs the projection.
    StandingBy,
}
