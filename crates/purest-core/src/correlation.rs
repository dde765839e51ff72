//! Waiting for the event a dispatched command causes: the microlithic "dispatch, then wait for the
//! first correlated event of a list". A command sent with [`Client::dispatch`] or
//! [`Context::dispatch`](crate::Context::dispatch) gets a correlation id; the events its handler
//! emits carry it (and so do the events that follow from them). The app subscribes, on every
//! instance, to the events it declared it waits for ([`Host::awaits`](crate::Host::awaits)), and
//! keeps each dispatched conversation's events in a slot until a [`wait_for_event`] takes them: an
//! event that arrives before its waiter is kept, so dispatching and then waiting never races.
//!
//! [`Client::dispatch`]: crate::Client::dispatch
//! [`wait_for_event`]: crate::Client::wait_for_event

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bridge::{Bridge, Delivery, EventFilter, Registration, Retry, Settlement, SubscriptionEndpoint, SubscriptionRoute};
use crate::envelope::{Address, Envelope};
use crate::error::{Error, HandledError};
use crate::id::Id;
use crate::name::Name;

/// Conversations one app follows at once, unless set otherwise.
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Events kept per conversation for a waiter still to come; older ones make room.
const EVENTS_PER_SLOT: usize = 16;
/// Waiters per conversation.
const WAITERS_PER_SLOT: usize = 64;

/// What the app keeps of a conversation.
struct Slot {
    events: VecDeque<Arc<Envelope>>,
    waiters: Vec<Waiter>,
    /// The dispatch failed (nobody serves the command, its deadline passed, it answered an
    /// error): every wait gets this.
    failure: Option<HandledError>,
    /// Forgotten after this, waited for or not.
    expires: Instant,
    /// A wait on it has ended (answered, failed or timed out): the first to make room when the
    /// table is full.
    settled: bool,
}

impl Slot {
    /// Whether no waiter is waiting on it (a waiter that gave up has dropped its end).
    fn idle(&self) -> bool {
        self.waiters.iter().all(|waiter| waiter.send.is_closed())
    }
}

struct Waiter {
    names: Vec<Name>,
    send: oneshot::Sender<Result<Arc<Envelope>, HandledError>>,
}

/// The conversations an app follows: bounded in number, each forgotten after its time to live.
pub struct Correlations {
    slots: Mutex<HashMap<Id, Slot>>,
    capacity: usize,
    ttl: Duration,
    /// The event names this app receives for its waiters.
    awaited: Vec<Name>,
}

impl Correlations {
    /// Room for `capacity` conversations, each kept for `ttl`, for waits on `awaited` events.
    pub fn new(capacity: usize, ttl: Duration, awaited: Vec<Name>) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            capacity,
            ttl,
            awaited,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts following `id`; 503 when the app follows as many conversations as it may.
    pub(crate) fn open(&self, id: &Id) -> Result<(), HandledError> {
        let mut slots = self.lock();
        self.slot(&mut slots, id).map(|_| ())
    }

    /// The slot of `id`, made if need be. A full table makes room: expired conversations go
    /// first, then settled ones nobody waits on, then the oldest quarter of those nobody waits
    /// on; a waiter on one of those that comes later follows it from then on. Only a table of
    /// conversations that all have waiters refuses (503).
    fn slot<'s>(&self, slots: &'s mut HashMap<Id, Slot>, id: &Id) -> Result<&'s mut Slot, HandledError> {
        let now = Instant::now();
        if !slots.contains_key(id) && slots.len() >= self.capacity {
            slots.retain(|_, slot| slot.expires > now && !(slot.settled && slot.idle()));
            if slots.len() >= self.capacity {
                let mut idle: Vec<(Instant, Id)> = slots
                    .iter()
                    .filter(|(_, slot)| slot.idle())
                    .map(|(id, slot)| (slot.expires, id.clone()))
                    .collect();
                idle.sort_unstable();
                for (_, id) in idle.iter().take(self.capacity.div_ceil(4)) {
                    slots.remove(id);
                }
            }
            if slots.len() >= self.capacity {
                return Err(HandledError::unavailable(format!(
                    "{} conversations of this app have waiters already; retry when some have ended",
                    self.capacity
                )));
            }
        }
        Ok(slots.entry(id.clone()).or_insert_with(|| Slot {
            events: VecDeque::new(),
            waiters: Vec::new(),
            failure: None,
            expires: now + self.ttl,
            settled: false,
        }))
    }

    /// Marks `id` settled: a wait on it has ended.
    fn settle(&self, id: &Id) {
        if let Some(slot) = self.lock().get_mut(id) {
            slot.settled = true;
        }
    }

    /// Records that the dispatch of `id` failed, for its waiters now and later.
    pub(crate) fn fail(&self, id: &Id, error: HandledError) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(id) {
            for waiter in slot.waiters.drain(..) {
                let _ = waiter.send.send(Err(error.clone()));
            }
            slot.failure = Some(error);
        }
    }

    /// Hands an event to the first waiter of its conversation that waits for its name, or keeps
    /// it for one to come. Events of conversations this app does not follow are dropped.
    pub(crate) fn deliver(&self, event: Arc<Envelope>) {
        let (Some(id), Some(name)) = (&event.correlation_id, &event.event_name) else {
            return;
        };
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(id) else { return };
        slot.waiters.retain(|waiter| !waiter.send.is_closed());
        if let Some(at) = slot.waiters.iter().position(|waiter| waiter.names.contains(name)) {
            let waiter = slot.waiters.swap_remove(at);
            if waiter.send.send(Ok(event.clone())).is_ok() {
                return;
            }
        }
        if slot.events.len() == EVENTS_PER_SLOT {
            slot.events.pop_front();
        }
        slot.events.push_back(event);
    }

    /// The first event of `names` in conversation `id`: one that came already, or the next to
    /// come within `timeout` (then 504). A failed dispatch answers with its error.
    pub(crate) async fn wait(&self, id: &Id, names: &[&str], timeout: Duration) -> Result<Arc<Envelope>, HandledError> {
        if let Some(undeclared) = names.iter().find(|name| !self.awaited.iter().any(|awaited| &**awaited == **name)) {
            return Err(HandledError::internal(format!(
                "this app does not receive {undeclared} events for waiters; declare it with Host::awaits(\"{undeclared}\") (or Service::awaits)"
            )));
        }
        let receive = {
            let mut slots = self.lock();
            let slot = self.slot(&mut slots, id)?;
            if let Some(failure) = &slot.failure {
                slot.settled = true;
                return Err(failure.clone());
            }
            if let Some(at) = slot
                .events
                .iter()
                .position(|event| event.event_name.as_deref().is_some_and(|name| names.contains(&name)))
            {
                slot.settled = true;
                return Ok(slot.events.remove(at).expect("the position is in range"));
            }
            slot.waiters.retain(|waiter| !waiter.send.is_closed());
            if slot.waiters.len() >= WAITERS_PER_SLOT {
                return Err(HandledError::unavailable(format!(
                    "{WAITERS_PER_SLOT} waiters wait on conversation {id} already"
                )));
            }
            let (send, receive) = oneshot::channel();
            slot.waiters.push(Waiter {
                names: names.iter().map(|name| Name::new(name)).collect(),
                send,
            });
            receive
        };
        let answer = tokio::time::timeout(timeout, receive).await;
        self.settle(id);
        match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(HandledError::unavailable("the app is shutting down")),
            Err(_) => Err(HandledError::timeout(format!(
                "no {} event of conversation {id} came within {} ms",
                names.join(" or "),
                timeout.as_millis()
            ))),
        }
    }
}

/// Feeds the awaited events to the conversations.
struct Collect(Arc<Correlations>);

impl SubscriptionEndpoint for Collect {
    fn deliver(self: Arc<Self>, delivery: Delivery) -> BoxFuture<'static, Settlement> {
        if let Ok(event) = delivery.message {
            self.0.deliver(event);
        }
        Box::pin(std::future::ready(Settlement::Ack))
    }
}

/// Subscribes this instance to every awaited event name (best effort, every instance: the
/// dispatching instance is the one that waits).
pub(crate) async fn listen(bridge: &Arc<dyn Bridge>, correlations: &Arc<Correlations>) -> Result<Vec<Box<dyn Registration>>, Error> {
    let instance = Some(Id::random().to_string().into());
    let mut registrations = Vec::with_capacity(correlations.awaited.len());
    for name in &correlations.awaited {
        let route = SubscriptionRoute {
            address: Arc::new(Address {
                service_name: Name::new("purest-correlations"),
                service_version: Name::new("1"),
                service_target: name.clone(),
                instance_id: instance.clone(),
            }),
            filter: EventFilter {
                event_name: Some(name.clone()),
                ..EventFilter::default()
            },
            durable: false,
            every_instance: true,
            retry: Retry::default(),
            concurrency: 64,
            queue_capacity: crate::bridge::DEFAULT_QUEUE_CAPACITY,
        };
        registrations.push(bridge.subscribe(route, Arc::new(Collect(correlations.clone()))).await?);
    }
    Ok(registrations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Message;
    use crate::{Body, Name};

    fn event(id: &Id, name: &str) -> Arc<Envelope> {
        let mut envelope = Envelope::new(
            Address::new("s", "1", "c").shared(),
            Message::Custom {
                payload: Body::json(serde_json::Value::Null),
            },
        );
        envelope.correlation_id = Some(id.clone());
        envelope.event_name = Some(Name::new(name));
        Arc::new(envelope)
    }

    /// Conversations whose waits ended, and then the oldest nobody waits on, make room for new
    /// ones: a full table refuses only when every conversation has a waiter.
    #[tokio::test]
    async fn a_full_table_makes_room_and_refuses_only_when_every_conversation_has_a_waiter() {
        let correlations = Arc::new(Correlations::new(4, Duration::from_secs(60), vec![Name::new("done")]));
        for _ in 0..100 {
            let id = Id::random();
            correlations.open(&id).unwrap();
            correlations.deliver(event(&id, "done"));
            correlations.wait(&id, &["done"], Duration::from_secs(1)).await.unwrap();
        }
        // Dispatched and never waited on: the oldest make room.
        let first = Id::random();
        correlations.open(&first).unwrap();
        for _ in 0..10 {
            correlations.open(&Id::random()).unwrap();
        }
        assert!(correlations.lock().len() <= 4);
        assert!(!correlations.lock().contains_key(&first), "the oldest idle conversation made room");

        // Four conversations with waiters fill it.
        let mut waiting = Vec::new();
        for _ in 0..4 {
            let id = Id::random();
            correlations.open(&id).unwrap();
            let correlations = correlations.clone();
            let (started, ready) = oneshot::channel();
            waiting.push(tokio::spawn(async move {
                let wait = correlations.wait(&id, &["done"], Duration::from_secs(30));
                let _ = started.send(());
                wait.await
            }));
            ready.await.unwrap();
            // The waiter registers at its first poll; let it.
            tokio::task::yield_now().await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while correlations.lock().values().filter(|slot| !slot.idle()).count() < 4 {
            assert!(Instant::now() < deadline, "the waiters registered");
            tokio::task::yield_now().await;
        }
        let refused = correlations.open(&Id::random()).unwrap_err();
        assert_eq!(refused.status, 503, "{refused}");
        for wait in waiting {
            wait.abort();
        }
    }
}
