//! For bridges that route responses themselves (RabbitMQ's reply queues, MQTT's instance topics):
//! the invokes waiting for their responses, by correlation id, in a bounded table; and the
//! durable subscription names a bridge consumes, each with its one filter.
//!
//! ```
//! use std::time::Duration;
//! use purest_core::replies::PendingReplies;
//! use purest_core::{Address, Body, Envelope, Message};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let pending: PendingReplies<&str> = PendingReplies::new(2);
//! let mut command = Envelope::new(Address::named("client", "1", "cli"),
//!     Message::Command { payload: Body::empty_object(), parameter: Body::empty_object() });
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
//! let mut reply = pending.expect(&mut command, deadline, "svc/1/cmd").await.unwrap();
//! assert!(pending.deliver(reply.correlation_id(), "the response"));
//! assert_eq!((&mut reply.receive).await.unwrap(), "the response");
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::bridge::{EventFilter, Registration, SubscriptionRoute};
use crate::envelope::Envelope;
use crate::error::{Error, HandledError};
use crate::id::Id;

type Waiting<R> = Mutex<HashMap<Box<str>, oneshot::Sender<R>>>;

/// Invokes waiting for their responses, by correlation id; at most `capacity` at once.
pub struct PendingReplies<R> {
    waiting: Arc<Waiting<R>>,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl<R> PendingReplies<R> {
    /// A table for at most `capacity` invokes at once.
    pub fn new(capacity: usize) -> Self {
        Self {
            waiting: Arc::default(),
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Takes a slot (waiting for one until `deadline`, then 503 naming `receiver`) and waits for
    /// the response to `command` by its correlation id — given one if it has none, or a fresh
    /// one if that id is awaited already (a caller reusing an id).
    pub async fn expect(
        &self,
        command: &mut Envelope,
        deadline: tokio::time::Instant,
        receiver: impl std::fmt::Display,
    ) -> Result<PendingReply<R>, HandledError> {
        let slot = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                HandledError::unavailable(format!(
                    "{} invokes are waiting for responses already; {receiver} was not called",
                    self.capacity
                ))
            })?
            .map_err(|_| HandledError::unavailable("the bridge is closing"))?;
        let mut key: Box<str> = command.correlation_id.get_or_insert_with(Id::random).to_string().into();
        let (send, receive) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.contains_key(&key) {
            let fresh = Id::random();
            key = fresh.to_string().into();
            command.correlation_id = Some(fresh);
        }
        waiting.insert(key.clone(), send);
        Ok(PendingReply {
            waiting: self.waiting.clone(),
            key,
            receive,
            _slot: slot,
        })
    }

    /// Hands `reply` to the invoke waiting for `correlation_id`; false if none waits (it gave up).
    pub fn deliver(&self, correlation_id: &str, reply: R) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(correlation_id);
        waiting.is_some_and(|waiting| waiting.send(reply).is_ok())
    }

    /// Forgets every waiting invoke (their `receive` fails): the connection they wait on is gone.
    pub fn fail_all(&self) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A response being waited for; dropping it forgets the wait and frees its slot.
pub struct PendingReply<R> {
    waiting: Arc<Waiting<R>>,
    key: Box<str>,
    /// Where the response arrives; fails when the bridge forgets every wait.
    pub receive: oneshot::Receiver<R>,
    _slot: OwnedSemaphorePermit,
}

impl<R> PendingReply<R> {
    /// The correlation id the response will carry.
    pub fn correlation_id(&self) -> &str {
        &self.key
    }
}

impl<R> Drop for PendingReply<R> {
    fn drop(&mut self) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

/// The `correlationId` of a response's body: PURISTA matches responses by it, so a bridge falls
/// back on it for a response without the transport's correlation property.
pub fn correlation_id_in_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Correlated {
        correlation_id: Option<String>,
    }
    serde_json::from_slice::<Correlated>(body).ok()?.correlation_id
}

/// The durable subscription names (queues, sessions) a bridge consumes, each with its one filter:
/// the broker keeps a durable subscription's position under its name, so a second filter under
/// the same name is refused rather than mixed in.
#[derive(Default, Clone)]
pub struct DurableNames {
    claimed: Arc<Mutex<HashMap<String, (EventFilter, usize)>>>,
}

impl DurableNames {
    /// Claims `name` for `route`'s filter; refused (naming both filters) if it is claimed with
    /// another. The claim lasts as long as the returned registration wrapper holds it.
    pub fn claim(&self, name: &str, route: &SubscriptionRoute) -> Result<NameClaim, Error> {
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        match claimed.get_mut(name) {
            Some((existing, _)) if *existing != route.filter => {
                return Err(route.filter_conflict(format_args!("{name} is consumed with {existing}")));
            }
            Some((_, users)) => *users += 1,
            None => {
                claimed.insert(name.to_owned(), (route.filter.clone(), 1));
            }
        }
        Ok(NameClaim {
            names: self.clone(),
            name: name.to_owned(),
        })
    }
}

/// A claimed durable name; released when dropped.
pub struct NameClaim {
    names: DurableNames,
    name: String,
}

impl NameClaim {
    /// `registration`, releasing this claim once it has closed.
    pub fn holding(self, registration: Box<dyn Registration>) -> Box<dyn Registration> {
        Box::new(Claimed {
            registration,
            _claim: self,
        })
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        let mut claimed = self.names.claimed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, users)) = claimed.get_mut(&self.name) {
            *users -= 1;
            if *users == 0 {
                claimed.remove(&self.name);
            }
        }
    }
}

struct Claimed {
    registration: Box<dyn Registration>,
    _claim: NameClaim,
}

impl Registration for Claimed {
    fn close(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
        let Claimed { registration, _claim } = *self;
        Box::pin(async move {
            registration.close().await;
            drop(_claim);
        })
    }
}
