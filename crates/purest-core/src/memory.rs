//! The in-memory bridge: services in one process, no serialization. Typed payloads are handed
//! over as they are; commands run inline in the caller's task (like a function call) unless they
//! outlive their deadline; events go to one queue per subscribing service.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use smallvec::SmallVec;
use tokio_util::sync::CancellationToken;

use crate::bridge::{Bridge, CommandEndpoint, Delivery, EventFilter, Registration, Settlement, SubscriptionEndpoint, SubscriptionRoute};
use crate::envelope::{Address, Envelope, Message};
use crate::error::{Error, HandledError};
use crate::name::Name;
use crate::places::{NoPlace, Places};

/// Counters of one subscription (one consumer group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Handler runs, retries included.
    pub attempts: u64,
    /// Messages acknowledged after success.
    pub acked: u64,
    /// Failed runs that were scheduled again.
    pub retried: u64,
    /// Messages given up and published as dead letters.
    pub dead_lettered: u64,
    /// Failed runs of best-effort subscriptions (logged, not retried).
    pub failed: u64,
    /// Best-effort messages that found no running instance.
    pub unconsumed: u64,
    /// Emits refused because the queue stayed full for their whole deadline (they got 503).
    pub refused: u64,
    /// Messages waiting in the queue now.
    pub queued: u64,
    /// Messages held now: queued, being handled, or waiting for a retry.
    pub held: u64,
    /// The most messages held at once so far; never above `capacity`.
    pub high_water: u64,
    /// The bound of `held` ([`Subscription::queue_capacity`](crate::Subscription::queue_capacity)).
    pub capacity: u64,
}

#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    failed: AtomicU64,
    unconsumed: AtomicU64,
    refused: AtomicU64,
    high_water: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The in-memory bridge. Cheap to clone; clones share one set of routes.
///
/// ```
/// use purest_core::prelude::*;
/// # async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let bridge = MemoryBridge::new();
/// let app = Host::new().bridge(bridge.clone()).service(Service::new("s", "1").command(Command::new("ping", ping))).start().await?;
/// assert_eq!(app.client().invoke::<String>("s/1/ping", ()).await?, "pong");
/// app.shutdown().await;
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryBridge {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells this bridge's tables apart in the per-thread cache.
    id: u64,
    /// The served commands; replaced (never changed in place) on every (un)registration.
    commands: RwLock<Arc<CommandTable>>,
    /// Bumped after every replacement of `commands`.
    commands_version: AtomicU64,
    groups: RwLock<Groups>,
    /// How many groups sit in `Groups::unnamed`; read on every invoke without taking the lock.
    unnamed_groups: AtomicUsize,
    /// Handlers finishing in the background after their caller's deadline.
    abandoned: Arc<AtomicUsize>,
}

/// Handlers that may run on past their caller's deadline at once, per bridge.
pub const MAX_ABANDONED: usize = 1024;

impl Default for Inner {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            commands: RwLock::default(),
            commands_version: AtomicU64::new(0),
            groups: RwLock::default(),
            unnamed_groups: AtomicUsize::new(0),
            abandoned: Arc::default(),
        }
    }
}

type CommandTable = hashbrown::HashMap<CommandKey, CommandGroup>;

thread_local! {
    /// Per thread, the command tables of the bridges it invoked last, with their versions: an
    /// invoke reads its table here instead of taking the bridge's lock, which would make every
    /// call of every thread write to one shared lock word.
    static COMMAND_TABLES: RefCell<Vec<(u64, u64, Arc<CommandTable>)>> = const { RefCell::new(Vec::new()) };
}

/// Bridges whose tables one thread keeps at once.
const CACHED_TABLES: usize = 4;

impl Inner {
    /// The endpoint that should handle a command for `receiver` now, if any.
    fn endpoint_for(&self, receiver: &Address) -> Option<Arc<dyn CommandEndpoint>> {
        let version = self.commands_version.load(Ordering::Acquire);
        let key = CommandRef(&receiver.service_name, &receiver.service_version, &receiver.service_target);
        COMMAND_TABLES.with_borrow_mut(|tables| {
            let slot = match tables.iter().position(|(id, ..)| *id == self.id) {
                Some(slot) => slot,
                None => {
                    if tables.len() == CACHED_TABLES {
                        tables.remove(0);
                    }
                    tables.push((self.id, u64::MAX, Arc::default()));
                    tables.len() - 1
                }
            };
            if tables[slot].1 != version {
                tables[slot] = (self.id, version, self.commands.read().expect("routes lock").clone());
            }
            tables[slot].2.get(&key).and_then(CommandGroup::pick)
        })
    }

    /// Replaces the command table with a changed copy.
    fn change_commands(&self, change: impl FnOnce(&mut CommandTable)) {
        let mut commands = self.commands.write().expect("routes lock");
        let mut table = CommandTable::clone(&commands);
        change(&mut table);
        *commands = Arc::new(table);
        self.commands_version.fetch_add(1, Ordering::Release);
    }
}

/// Service, version and command of a served command.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CommandKey(Name, Name, Name);

/// Looks a command up by the receiver's names without cloning them; hashes like [`CommandKey`].
#[derive(Hash)]
struct CommandRef<'a>(&'a str, &'a str, &'a str);

impl hashbrown::Equivalent<CommandKey> for CommandRef<'_> {
    fn equivalent(&self, key: &CommandKey) -> bool {
        *key.0 == *self.0 && *key.1 == *self.1 && *key.2 == *self.2
    }
}

fn command_key(address: &Address) -> CommandKey {
    CommandKey(
        address.service_name.clone(),
        address.service_version.clone(),
        address.service_target.clone(),
    )
}

/// The instances serving one command. Weak: a table a thread still caches must not keep a
/// stopped instance (and its state) alive; the registration holds the endpoint.
#[derive(Default)]
struct CommandGroup {
    instances: Vec<(Name, Weak<dyn CommandEndpoint>)>,
    next: Arc<AtomicUsize>,
}

impl Clone for CommandGroup {
    fn clone(&self) -> Self {
        Self {
            instances: self.instances.clone(),
            next: self.next.clone(),
        }
    }
}

impl CommandGroup {
    /// The next instance in turn (no shared counter to bump when there is only one).
    fn pick(&self) -> Option<Arc<dyn CommandEndpoint>> {
        let turn = match self.instances.len() {
            0 => return None,
            1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        self.instances[turn].1.upgrade()
    }
}

/// Consumer groups, indexed by event name (most subscriptions have one) with the rest apart.
#[derive(Default)]
struct Groups {
    by_key: HashMap<GroupKey, Arc<ConsumerGroup>>,
    by_event: HashMap<Name, Vec<Arc<ConsumerGroup>>>,
    unnamed: Vec<Arc<ConsumerGroup>>,
    /// Subscriptions to info messages, by `messageType`: kept apart so that they cost events
    /// and commands nothing.
    by_info: HashMap<Name, Vec<Arc<ConsumerGroup>>>,
}

/// The info `messageType` a filter asks for, if it asks for one.
fn info_type(filter: &EventFilter) -> Option<&Name> {
    filter.message_type.as_ref().filter(|kind| kind.starts_with("info"))
}

/// Service, version, subscription, the instance for every-instance subscriptions, and the
/// filter: two best-effort subscriptions under one address with different filters are two
/// groups (the WebSocket gateway listens to many event names under one address).
type GroupKey = (Name, Name, Name, Option<Name>, EventFilter);

/// A message in a subscription's queue.
struct Queued {
    envelope: Arc<Envelope>,
    attempt: u32,
}

/// The groups one event goes to; most events go to one or two.
type Targets = SmallVec<[Arc<ConsumerGroup>; 4]>;

/// The queue of one subscription shared by the instances consuming it.
///
/// It holds at most `capacity` messages — queued, being handled, or waiting for a retry — counted
/// by `places`: a message takes a place when it is offered and gives it back once settled for
/// good (acked or rejected). A retry keeps its place, so putting it back never overfills the
/// channel.
struct ConsumerGroup {
    key: GroupKey,
    route: SubscriptionRoute,
    tx: async_channel::Sender<Queued>,
    rx: async_channel::Receiver<Queued>,
    places: Places,
    consumers: AtomicUsize,
    counters: Counters,
}

impl ConsumerGroup {
    fn name(&self) -> String {
        self.route.name()
    }

    fn capacity(&self) -> usize {
        self.places.capacity()
    }

    /// Whether `envelope` is for this group now: it matches, and a best-effort group has a consumer.
    fn wants(&self, envelope: &Envelope) -> bool {
        if !self.route.filter.matches(envelope) {
            return false;
        }
        if !self.route.durable && self.consumers.load(Ordering::Acquire) == 0 {
            bump(&self.counters.unconsumed);
            return false;
        }
        true
    }

    /// Queues a message whose place is already taken.
    fn enqueue(&self, queued: Queued) {
        self.counters.high_water.fetch_max(self.places.taken() as u64, Ordering::Relaxed);
        if self.tx.try_send(queued).is_err() {
            // The group is gone (its last consumer left); nobody will settle the message.
            self.release();
        }
    }

    /// Gives a settled message's place back.
    fn release(&self) {
        self.places.give_back();
    }

    /// Waits for a place until `deadline`; 503 naming the subscription when none frees up.
    async fn take_place(&self, deadline: tokio::time::Instant) -> Result<(), HandledError> {
        self.places.take(deadline).await.map_err(|why| {
            bump(&self.counters.refused);
            let waiting = match why {
                NoPlace::Timeout => "",
                NoPlace::TooManyWaiting => " and as many emitters wait already",
            };
            HandledError::unavailable(format!(
                "subscription {} is full ({} messages held{waiting}); the event was not published, try again later",
                self.name(),
                self.capacity()
            ))
        })
    }

    fn stats(&self) -> SubscriptionStats {
        let c = &self.counters;
        SubscriptionStats {
            attempts: c.attempts.load(Ordering::Relaxed),
            acked: c.acked.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            unconsumed: c.unconsumed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            queued: self.rx.len() as u64,
            held: self.places.taken() as u64,
            high_water: c.high_water.load(Ordering::Relaxed),
            capacity: self.capacity() as u64,
        }
    }
}

impl Inner {
    /// Offers an event to every matching subscription, all or none: a place is taken in each
    /// queue before any gets it. `Err` hands back what is needed to wait for places.
    fn try_route(&self, envelope: Envelope) -> Result<(), (Arc<Envelope>, Targets)> {
        let targets: Targets = {
            let groups = self.groups.read().expect("routes lock");
            if let Message::Info { message_type, .. } = &envelope.message {
                let Some(listeners) = groups.by_info.get(&**message_type) else {
                    return Ok(());
                };
                listeners.iter().filter(|group| group.wants(&envelope)).cloned().collect()
            } else {
                let named = envelope.event_name.as_ref().and_then(|name| groups.by_event.get(name));
                if named.is_none() && groups.unnamed.is_empty() {
                    return Ok(());
                }
                named
                    .into_iter()
                    .flatten()
                    .chain(&groups.unnamed)
                    .filter(|group| group.wants(&envelope))
                    .cloned()
                    .collect()
            }
        };
        if targets.is_empty() {
            return Ok(());
        }
        let envelope = Arc::new(envelope);
        let taken = targets.iter().take_while(|group| group.places.try_take()).count();
        if taken < targets.len() {
            targets[..taken].iter().for_each(|group| group.release());
            return Err((envelope, targets));
        }
        deliver_to(&targets, &envelope);
        Ok(())
    }

    /// Lets a handler whose caller stopped waiting finish in the background, so it is not cut
    /// off halfway; at most [`MAX_ABANDONED`] at once, past that it is stopped.
    fn abandon(&self, late: BoxFuture<'static, Envelope>, command: Arc<Address>) {
        let abandoned = self.abandoned.clone();
        if abandoned.fetch_add(1, Ordering::AcqRel) >= MAX_ABANDONED {
            abandoned.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%command, "too many handlers still running past their deadline; this one is stopped");
            return;
        }
        tokio::spawn(async move {
            late.await;
            abandoned.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(%command, "late answer discarded");
        });
    }

    fn has_unnamed_subscriptions(&self) -> bool {
        self.unnamed_groups.load(Ordering::Acquire) > 0
    }
}

/// Waits (until `deadline`) for a place in each of `targets`, then queues the event in all; on a
/// timeout the places taken so far are given back and nothing is queued.
async fn route_when_free(envelope: Arc<Envelope>, targets: Targets, deadline: tokio::time::Instant) -> Result<(), HandledError> {
    for (i, group) in targets.iter().enumerate() {
        if let Err(full) = group.take_place(deadline).await {
            targets[..i].iter().for_each(|group| group.release());
            return Err(full);
        }
    }
    deliver_to(&targets, &envelope);
    Ok(())
}

fn deliver_to(targets: &[Arc<ConsumerGroup>], envelope: &Arc<Envelope>) {
    for group in targets {
        group.enqueue(Queued {
            envelope: envelope.clone(),
            attempt: 1,
        });
    }
}

/// Routes an event: at once when every queue has room, else waiting at most `timeout`.
fn route(inner: &Inner, event: Envelope, timeout: Duration) -> BoxFuture<'static, Result<(), HandledError>> {
    match inner.try_route(event) {
        Ok(()) => Box::pin(std::future::ready(Ok(()))),
        Err((envelope, targets)) => Box::pin(route_when_free(envelope, targets, tokio::time::Instant::now() + timeout)),
    }
}

impl MemoryBridge {
    /// A new, empty bridge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters of every subscription, by `service/version/subscription`.
    pub fn subscription_stats(&self) -> HashMap<String, SubscriptionStats> {
        let groups = self.inner.groups.read().expect("routes lock");
        let mut stats = HashMap::new();
        for group in groups.by_key.values() {
            let entry: &mut SubscriptionStats = stats.entry(group.name()).or_default();
            let more = group.stats();
            entry.attempts += more.attempts;
            entry.acked += more.acked;
            entry.retried += more.retried;
            entry.dead_lettered += more.dead_lettered;
            entry.failed += more.failed;
            entry.unconsumed += more.unconsumed;
            entry.refused += more.refused;
            entry.queued += more.queued;
            entry.held += more.held;
            entry.high_water = entry.high_water.max(more.high_water);
            entry.capacity += more.capacity;
        }
        stats
    }
}

/// An invoke in flight: polls the handler inline, in the caller's task. The deadline timer is
/// only created if the handler does not finish in its first poll; past the deadline the handler
/// finishes in the background and its late answer is discarded. Written out by hand (not an
/// `async` block) because it is created for every call and should be small.
struct Invoke<'a> {
    inner: &'a Inner,
    handling: Option<BoxFuture<'static, Envelope>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    receiver: Arc<Address>,
    /// A success event waiting for room in a full subscription queue, and the response that
    /// follows once it is queued (as on a broker, the caller hears of a success only after its
    /// event is recorded).
    recording: Option<(BoxFuture<'static, Result<(), HandledError>>, Envelope)>,
}

impl Future for Invoke<'_> {
    type Output = Result<Envelope, HandledError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some((recording, _)) = this.recording.as_mut() {
            let recorded = ready!(recording.as_mut().poll(cx));
            let (_, response) = this.recording.take().expect("checked above");
            return Poll::Ready(recorded.map(|()| response).map_err(|full| {
                tracing::warn!(command = %this.receiver, %full, "the success event could not be queued; the caller gets 503");
                HandledError::unavailable("the result could not be recorded; try again")
            }));
        }
        let Some(handling) = this.handling.as_mut() else {
            return Poll::Ready(Err(HandledError::internal("invoke polled after completion")));
        };
        if let Poll::Ready(response) = handling.as_mut().poll(cx) {
            this.handling = None;
            let is_event = response.event_name.is_some() && matches!(response.message, Message::Success { .. });
            if (is_event || this.inner.has_unnamed_subscriptions())
                && let Err((event, targets)) = this.inner.try_route(response.clone())
            {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.recording = Some((Box::pin(route_when_free(event, targets, deadline)), response));
                return self.poll(cx);
            }
            return Poll::Ready(Ok(response));
        }
        let timeout = this.timeout;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let command = this.receiver.clone();
        if let Some(late) = this.handling.take() {
            this.inner.abandon(late, command);
        }
        Poll::Ready(Err(HandledError::timeout(format!(
            "{} did not answer within {timeout:?}",
            this.receiver
        ))))
    }
}

impl Bridge for MemoryBridge {
    fn name(&self) -> &str {
        "memory"
    }

    fn invoke(&self, command: Envelope, timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>> {
        // Routing and the handler's synchronous start happen here, so the boxed future that
        // remains holds little more than the running handler.
        let Some(receiver) = command.receiver.clone() else {
            return Box::pin(std::future::ready(Err(HandledError::bad_request("a command needs a receiver"))));
        };
        let Some(endpoint) = self.inner.endpoint_for(&receiver) else {
            let refusal = HandledError::unavailable(format!("no running instance serves command {receiver}"));
            return Box::pin(std::future::ready(Err(refusal)));
        };
        let handling = endpoint.handle(command);
        Box::pin(Invoke {
            inner: &self.inner,
            handling: Some(handling),
            deadline: None,
            timeout,
            receiver,
            recording: None,
        })
    }

    fn emit(&self, event: Envelope, timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>> {
        route(&self.inner, event, timeout)
    }

    fn serve_command(
        &self,
        address: Arc<Address>,
        endpoint: Arc<dyn CommandEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        let instance = address.instance_id.clone().unwrap_or_else(|| "".into());
        let key = command_key(&address);
        self.inner.change_commands(|table| {
            table
                .entry(key.clone())
                .or_default()
                .instances
                .push((instance.clone(), Arc::downgrade(&endpoint)));
        });
        let registration: Box<dyn Registration> = Box::new(CommandRegistration {
            inner: Arc::downgrade(&self.inner),
            key,
            instance,
            _endpoint: endpoint,
        });
        Box::pin(std::future::ready(Ok(registration)))
    }

    fn subscribe(
        &self,
        route: SubscriptionRoute,
        endpoint: Arc<dyn SubscriptionEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        let address = &route.address;
        let instance = route
            .every_instance
            .then(|| address.instance_id.clone().unwrap_or_else(|| "".into()));
        let key: GroupKey = (
            address.service_name.clone(),
            address.service_version.clone(),
            address.service_target.clone(),
            instance,
            route.filter.clone(),
        );
        let group = {
            let mut groups = self.inner.groups.write().expect("routes lock");
            if route.durable
                && let Some(other) = groups.by_key.values().find(|group| {
                    group.route.durable && group.key.0 == key.0 && group.key.1 == key.1 && group.key.2 == key.2 && group.key.4 != key.4
                })
            {
                return Box::pin(std::future::ready(Err(route.filter_conflict(&other.route.filter))));
            }
            match groups.by_key.get(&key) {
                Some(group) => group.clone(),
                None => {
                    let (tx, rx) = async_channel::bounded(route.queue_capacity);
                    let group = Arc::new(ConsumerGroup {
                        key: key.clone(),
                        places: Places::new(route.queue_capacity),
                        route: route.clone(),
                        tx,
                        rx,
                        consumers: AtomicUsize::new(0),
                        counters: Counters::default(),
                    });
                    groups.by_key.insert(key, group.clone());
                    match (info_type(&route.filter), &route.filter.event_name) {
                        (Some(kind), _) => groups.by_info.entry(kind.clone()).or_default().push(group.clone()),
                        (None, Some(name)) => groups.by_event.entry(name.clone()).or_default().push(group.clone()),
                        (None, None) => {
                            groups.unnamed.push(group.clone());
                            self.inner.unnamed_groups.store(groups.unnamed.len(), Ordering::Release);
                        }
                    }
                    group
                }
            }
        };
        group.consumers.fetch_add(1, Ordering::AcqRel);
        let stop = CancellationToken::new();
        let worker = tokio::spawn(consume(group.clone(), endpoint, route.concurrency, stop.clone()));
        let registration: Box<dyn Registration> = Box::new(SubscriptionRegistration {
            inner: Arc::downgrade(&self.inner),
            group,
            stop,
            worker,
        });
        Box::pin(std::future::ready(Ok(registration)))
    }
}

/// One instance consuming a group's queue: up to `concurrency` handlers at once, polled in this
/// task (no task per message); retries wait here for their delay (each keeps its place in the
/// queue, so there are never more than the queue's capacity).
async fn consume(group: Arc<ConsumerGroup>, endpoint: Arc<dyn SubscriptionEndpoint>, concurrency: usize, stop: CancellationToken) {
    let mut running = FuturesUnordered::new();
    let mut retries = FuturesUnordered::new();
    let start = |queued: Queued| {
        bump(&group.counters.attempts);
        let delivery = Delivery {
            message: Ok(queued.envelope.clone()),
            attempt: queued.attempt,
        };
        endpoint.clone().deliver(delivery).map(move |settlement| (queued, settlement))
    };
    let settle = |(queued, settlement): (Queued, Settlement), retries: &mut FuturesUnordered<_>| match settlement {
        Settlement::Ack => {
            bump(&group.counters.acked);
            group.release();
        }
        Settlement::Reject => {
            bump(if group.route.durable {
                &group.counters.dead_lettered
            } else {
                &group.counters.failed
            });
            group.release();
        }
        Settlement::Retry(delay) => {
            bump(&group.counters.retried);
            retries.push(Due {
                at: Box::pin(tokio::time::sleep(delay)),
                queued: Some(queued),
            });
        }
    };
    let requeue = |queued: Queued| {
        group.enqueue(Queued {
            envelope: queued.envelope,
            attempt: queued.attempt + 1,
        })
    };
    loop {
        tokio::select! {
            biased;
            Some(done) = running.next(), if !running.is_empty() => settle(done, &mut retries),
            Some(due) = retries.next(), if !retries.is_empty() => requeue(due),
            _ = stop.cancelled() => break,
            received = group.rx.recv(), if running.len() < concurrency => match received {
                Ok(queued) => running.push(start(queued)),
                Err(_) => break,
            },
        }
    }
    while let Some(done) = running.next().await {
        settle(done, &mut retries);
    }
    // Retries not yet due go back to the queue at once, for the next consumer.
    for due in retries {
        if let Some(queued) = due.queued {
            requeue(queued);
        }
    }
}

/// A message waiting for its retry delay.
struct Due {
    at: Pin<Box<tokio::time::Sleep>>,
    queued: Option<Queued>,
}

impl Future for Due {
    type Output = Queued;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Queued> {
        ready!(self.at.as_mut().poll(cx));
        Poll::Ready(self.queued.take().expect("a retry is due once"))
    }
}

struct CommandRegistration {
    inner: Weak<Inner>,
    key: CommandKey,
    instance: Name,
    /// The one strong reference the bridge keeps to the endpoint.
    _endpoint: Arc<dyn CommandEndpoint>,
}

impl Registration for CommandRegistration {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        if let Some(inner) = self.inner.upgrade() {
            inner.change_commands(|table| {
                if let Some(group) = table.get_mut(&self.key) {
                    group.instances.retain(|(id, _)| *id != self.instance);
                    if group.instances.is_empty() {
                        table.remove(&self.key);
                    }
                }
            });
        }
        Box::pin(std::future::ready(()))
    }
}

struct SubscriptionRegistration {
    inner: Weak<Inner>,
    group: Arc<ConsumerGroup>,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

impl Registration for SubscriptionRegistration {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let _ = self.worker.await;
            let remaining = self.group.consumers.fetch_sub(1, Ordering::AcqRel) - 1;
            // A durable group keeps its queue for the next consumer; a group tied to one instance
            // or without durability has nobody left to deliver to.
            let forget = remaining == 0 && (!self.group.route.durable || self.group.key.3.is_some());
            if let (true, Some(inner)) = (forget, self.inner.upgrade()) {
                let mut groups = inner.groups.write().expect("routes lock");
                groups.by_key.remove(&self.group.key);
                let same = |g: &Arc<ConsumerGroup>| !Arc::ptr_eq(g, &self.group);
                groups.unnamed.retain(same);
                inner.unnamed_groups.store(groups.unnamed.len(), Ordering::Release);
                let groups = &mut *groups;
                for (index, name) in [
                    (&mut groups.by_event, self.group.route.filter.event_name.as_ref()),
                    (&mut groups.by_info, info_type(&self.group.route.filter)),
                ] {
                    if let Some(name) = name
                        && let Some(list) = index.get_mut(name)
                    {
                        list.retain(same);
                        if list.is_empty() {
                            index.remove(name);
                        }
                    }
                }
            }
        })
    }
}
