//! The [`Bridge`] trait: the only way services talk. A bridge moves envelopes; the runtime turns
//! them into handler calls. Every implementation keeps the semantics of docs/ARCHITECTURE.md §5.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use futures::future::BoxFuture;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::Body;
use crate::envelope::{Address, Envelope, Message};
use crate::error::{Error, HandledError};
use crate::name::Name;

/// Runs one command for a bridge: takes a `command` envelope, always answers with a
/// `commandSuccessResponse` or `commandErrorResponse` envelope.
pub trait CommandEndpoint: Send + Sync + 'static {
    /// Handles one command.
    fn handle(self: Arc<Self>, command: Envelope) -> BoxFuture<'static, Envelope>;
}

/// Runs a command that reached a bridge as bytes: decodes it and hands it to `endpoint`. Bytes
/// that are not a command are answered with a 400 from `address` (and logged); the flag says
/// whether they were malformed, for the bridge's counter.
pub async fn answer_command_bytes(endpoint: &Arc<dyn CommandEndpoint>, address: &Arc<Address>, bytes: bytes::Bytes) -> (Envelope, bool) {
    let length = bytes.len();
    match Envelope::from_bytes(bytes) {
        Ok(command) if matches!(command.message, Message::Command { .. }) => (endpoint.clone().handle(command).await, false),
        Ok(other) => (
            error_response(
                address,
                HandledError::bad_request(format!("expected a command, got {}", other.message_type())),
            ),
            false,
        ),
        Err(e) => {
            tracing::warn!(command = %address, error = %e, bytes = length, "malformed command refused");
            (error_response(address, HandledError::bad_request(e.to_string())), true)
        }
    }
}

/// The JSON of an envelope a bridge sends; one that cannot be serialized is logged and answered
/// with a 500 (its caller learns nothing of the detail).
pub fn outgoing_json(envelope: &Envelope) -> Result<Vec<u8>, HandledError> {
    envelope.to_json().map_err(|e| {
        tracing::error!(error = %e, message_type = envelope.message_type(), "message could not be serialized");
        HandledError::internal("message could not be serialized")
    })
}

/// A `commandErrorResponse` from `sender`, for a command whose proper response cannot be made.
pub fn error_response(sender: &Arc<Address>, error: HandledError) -> Envelope {
    Envelope::new(
        sender.clone(),
        Message::Error {
            error: Box::new(error),
            is_handled_error: true,
        },
    )
}

/// A response and its JSON; a response that cannot be serialized is replaced by a 500 from
/// `sender` (both logged). `None` only if that cannot be serialized either.
pub fn encoded_response(response: Envelope, sender: &Arc<Address>) -> Option<(Envelope, Vec<u8>)> {
    match response.to_json() {
        Ok(bytes) => Some((response, bytes)),
        Err(e) => {
            tracing::error!(command = %sender, error = %e, "the response could not be serialized; the caller gets 500");
            let refusal = error_response(sender, HandledError::internal("message could not be serialized"));
            refusal.to_json().ok().map(|bytes| (refusal, bytes))
        }
    }
}

/// Runs one subscription for a bridge: takes a [`Delivery`], runs the handler, and answers how
/// the bridge settles the message. Retry policy, backoff and dead-lettering live here, in the
/// core, once for every bridge; a bridge only carries the [`Settlement`] out.
pub trait SubscriptionEndpoint: Send + Sync + 'static {
    /// Handles one delivery and says what becomes of it.
    fn deliver(self: Arc<Self>, delivery: Delivery) -> BoxFuture<'static, Settlement>;
}

/// One message a bridge hands to a subscription.
#[derive(Debug)]
pub struct Delivery {
    /// The decoded message, or why the bytes from the wire are not one (the core dead-letters
    /// those on durable subscriptions).
    pub message: Result<Arc<Envelope>, Malformed>,
    /// 1 for the first delivery. Taken from the broker where it keeps a count (JetStream's
    /// delivery count, RabbitMQ's `x-delivery-count`, Redis' pending-entry count), so attempts
    /// are counted across consumer crashes.
    pub attempt: u32,
}

impl Delivery {
    /// A first delivery of a decoded message.
    pub fn new(message: Arc<Envelope>) -> Self {
        Self {
            message: Ok(message),
            attempt: 1,
        }
    }

    /// The delivery of the bytes a bridge received, decoded here, with the broker's attempt count.
    pub fn decode(bytes: &[u8], attempt: u32) -> Self {
        Self {
            message: Envelope::from_json(bytes).map(Arc::new).map_err(|e| Malformed::new(e, bytes)),
            attempt: attempt.max(1),
        }
    }

    /// [`Delivery::decode`] of a buffer the bridge owns: the payload stays a slice of it.
    pub fn decode_bytes(bytes: bytes::Bytes, attempt: u32) -> Self {
        Self {
            message: Envelope::from_bytes(bytes.clone())
                .map(Arc::new)
                .map_err(|e| Malformed::new(e, &bytes)),
            attempt: attempt.max(1),
        }
    }
}

/// Bytes from the wire that are not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Why they could not be decoded.
    pub reason: String,
    /// The bytes as text (lossy), at most [`Malformed::KEPT`] bytes, for the dead letter.
    pub raw: String,
}

impl Malformed {
    /// How much of the raw bytes a dead letter keeps.
    pub const KEPT: usize = 64 * 1024;

    /// Records why `bytes` could not be decoded.
    pub fn new(reason: impl std::fmt::Display, bytes: &[u8]) -> Self {
        Self {
            reason: reason.to_string(),
            raw: String::from_utf8_lossy(&bytes[..bytes.len().min(Self::KEPT)]).into_owned(),
        }
    }
}

/// What a bridge does with a delivery once the core has handled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done with it: acknowledge (handled, or not meant for this subscription).
    Ack,
    /// Deliver it again after this delay (the attempt count goes up by one).
    Retry(Duration),
    /// Drop it for good: the core has published its dead letter (durable subscriptions) or logged
    /// the failure (best effort). Brokers that keep a message until told (JetStream's `Term`)
    /// forget it now.
    Reject,
}

/// Runs `work`, calling `ping` every `every` while it is not finished: how a bridge keeps a
/// delivery alive while its handler runs longer than the broker's redelivery timeout
/// (JetStream's in-progress ack), so it is not handed to a second consumer meanwhile.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let pings = AtomicU32::new(0);
/// let done = purest_core::bridge::keep_alive(
///     async { tokio::time::sleep(Duration::from_secs(10)).await; "done" },
///     Duration::from_secs(3),
///     || async { pings.fetch_add(1, Ordering::Relaxed); },
/// ).await;
/// assert_eq!((done, pings.load(Ordering::Relaxed)), ("done", 3));
/// # });
/// ```
pub async fn keep_alive<T, P: Future<Output = ()>>(work: impl Future<Output = T>, every: Duration, mut ping: impl FnMut() -> P) -> T {
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return done,
            _ = ticks.tick() => ping().await,
        }
    }
}

/// Which messages a subscription wants. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    /// The event name (`eventName`).
    pub event_name: Option<Name>,
    /// The sending service.
    pub sender_service: Option<Name>,
    /// The sending service's version.
    pub sender_version: Option<Name>,
    /// The sending command (`serviceTarget`).
    pub sender_target: Option<Name>,
    /// The message type (`customMessage`, `commandSuccessResponse`, …).
    pub message_type: Option<Name>,
    /// The principal.
    pub principal_id: Option<Name>,
    /// The tenant.
    pub tenant_id: Option<Name>,
}

impl EventFilter {
    /// Whether `envelope` passes every set field.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        fn eq(want: &Option<Name>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|want| have == Some(want))
        }
        eq(&self.event_name, envelope.event_name.as_deref())
            && eq(&self.sender_service, Some(&envelope.sender.service_name))
            && eq(&self.sender_version, Some(&envelope.sender.service_version))
            && eq(&self.sender_target, Some(&envelope.sender.service_target))
            && eq(&self.message_type, Some(envelope.message_type()))
            && eq(&self.principal_id, envelope.principal_id.as_deref())
            && eq(&self.tenant_id, envelope.tenant_id.as_deref())
            // Subscriptions see events and command outcomes, never the commands themselves, and
            // info messages only when they ask for one by its type.
            && match &envelope.message {
                Message::Command { .. } => false,
                Message::Info { .. } => self.message_type.is_some(),
                _ => true,
            }
    }

    /// Whether the filter selects anything more specific than "everything".
    pub fn is_specific(&self) -> bool {
        *self != EventFilter::default()
    }
}

/// `eventName=a, senderServiceName=b`: the set fields in their wire names; `any` when none is.
impl std::fmt::Display for EventFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields = [
            ("eventName", &self.event_name),
            ("senderServiceName", &self.sender_service),
            ("senderServiceVersion", &self.sender_version),
            ("senderServiceTarget", &self.sender_target),
            ("messageType", &self.message_type),
            ("principalId", &self.principal_id),
            ("tenantId", &self.tenant_id),
        ];
        let mut set = fields
            .iter()
            .filter_map(|(key, value)| value.as_ref().map(|value| (key, value)))
            .peekable();
        if set.peek().is_none() {
            return f.write_str("any");
        }
        for (i, (key, value)) in set.enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// How often and how patiently a failing durable subscription is retried, and where it gives up.
///
/// What is retried: a handler that fails with an unhandled error (any `Err` that is not a
/// [`HandledError`]), or with a [`HandledError`] of status 5xx, 408 or 429, or whose `.emits`
/// event cannot be published — faults that may pass. What is dead-lettered at once: a message
/// that cannot be decoded, fails validation, is refused by a guard or an extractor, or that the
/// handler answers with any other 4xx — the same message would fail the same way again.
///
/// The delay after attempt `n` is `backoff · 2ⁿ⁻¹`, at most `max_backoff`; with jitter (the
/// default) each delay is drawn uniformly from its upper half, so instances that failed together
/// do not retry together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound of one delay.
    pub max_backoff: Duration,
    /// Whether delays are drawn from `[delay / 2, delay]` instead of being exact.
    pub jitter: bool,
    /// Event name under which exhausted messages are published.
    pub dead_letter: Name,
}

/// The event name dead letters are published under unless a subscription names its own.
pub const DEFAULT_DEAD_LETTER: &str = "purest.deadLetter";

impl Retry {
    /// `attempts` attempts in all, with delays of about 100 ms, 200 ms, 400 ms, … (at most 30 s),
    /// then dead-lettered under [`DEFAULT_DEAD_LETTER`].
    ///
    /// ```
    /// use purest_core::Retry;
    /// use std::time::Duration;
    /// let retry = Retry::exponential(4).backoff(Duration::from_millis(10)).dead_letter("email.dlq");
    /// assert_eq!(retry.delay_after(1), Duration::from_millis(10));
    /// assert_eq!(retry.delay_after(3), Duration::from_millis(40));
    /// let drawn = retry.next_delay(3);
    /// assert!(drawn >= Duration::from_millis(20) && drawn <= Duration::from_millis(40));
    /// ```
    pub fn exponential(attempts: u32) -> Self {
        Self {
            max_attempts: attempts.max(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            jitter: true,
            dead_letter: DEFAULT_DEAD_LETTER.into(),
        }
    }

    /// Sets the first delay.
    pub fn backoff(mut self, initial: Duration) -> Self {
        self.initial_backoff = initial;
        self
    }

    /// Sets the longest delay.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Exact delays (`false`) or jittered ones (`true`, the default).
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Sets the dead-letter event name.
    pub fn dead_letter(mut self, event_name: &str) -> Self {
        self.dead_letter = Name::new(event_name);
        self
    }

    /// The longest delay after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// The delay to wait after failed attempt `attempt`: [`Retry::delay_after`], jittered unless
    /// switched off.
    pub fn next_delay(&self, attempt: u32) -> Duration {
        let longest = self.delay_after(attempt);
        if !self.jitter {
            return longest;
        }
        let half = longest / 2;
        half + Duration::from_nanos(fastrand::u64(0..=(longest - half).as_nanos().min(u128::from(u64::MAX)) as u64))
    }

    /// Whether a failure with this status may pass on another attempt (see the type's docs).
    pub fn is_transient(status: u16) -> bool {
        status >= 500 || status == 408 || status == 429
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::exponential(5)
    }
}

/// The payload of a dead letter: a message a durable subscription could not handle, published
/// under the subscription's dead-letter event name (see [`Retry::dead_letter`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// `service/version/subscription` that gave up.
    pub subscription: String,
    /// The last failure.
    pub reason: String,
    /// How many times the message was delivered.
    pub attempts: u32,
    /// The original message's event name, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The original message, as JSON; for bytes that were not a message, the bytes as a string.
    pub message: Value,
}

impl DeadLetter {
    /// The event announcing that `route` gave up on a message after `attempts` deliveries.
    pub(crate) fn envelope(route: &SubscriptionRoute, original: Result<&Envelope, &Malformed>, reason: String, attempts: u32) -> Envelope {
        let address = &route.address;
        let letter = DeadLetter {
            subscription: format!("{}/{}/{}", address.service_name, address.service_version, address.service_target),
            reason,
            attempts,
            event_name: original.ok().and_then(|e| e.event_name.as_deref().map(str::to_owned)),
            message: match original {
                Ok(original) => serde_json::to_value(original).unwrap_or(Value::Null),
                Err(malformed) => Value::String(malformed.raw.clone()),
            },
        };
        let mut envelope = Envelope::new(
            address.clone(),
            Message::Custom {
                payload: Body::typed(letter),
            },
        );
        envelope.event_name = Some(route.retry.dead_letter.clone());
        if let Ok(original) = original {
            envelope.trace_id = original.trace_id.clone();
            // The dead letter continues the original's trace: giving up shows on it.
            envelope.otp = original.otp.clone();
            envelope.principal_id = original.principal_id.clone();
            envelope.tenant_id = original.tenant_id.clone();
        }
        envelope
    }
}

/// What a bridge needs to know to deliver a subscription's messages.
#[derive(Debug, Clone)]
pub struct SubscriptionRoute {
    /// Service, version and subscription name; `instance_id` is the subscribing instance.
    pub address: Arc<Address>,
    /// Which messages.
    pub filter: EventFilter,
    /// At-least-once: kept while no consumer runs, acked after success, retried, dead-lettered.
    pub durable: bool,
    /// Deliver to every instance instead of one instance per service.
    pub every_instance: bool,
    /// Retry policy of a durable subscription.
    pub retry: Retry,
    /// Deliveries handled at once by one instance.
    pub concurrency: usize,
    /// Messages a bridge that queues them itself (the in-memory bridge) holds for this
    /// subscription at most — queued, running and waiting for a retry together. A full queue
    /// makes emitters wait within their deadline, then answers 503 naming the subscription.
    pub queue_capacity: usize,
}

impl SubscriptionRoute {
    /// `service/version/subscription`, for logs and errors.
    pub fn name(&self) -> String {
        let address = &self.address;
        format!("{}/{}/{}", address.service_name, address.service_version, address.service_target)
    }

    /// The error for a durable subscription whose name is taken by one with another filter
    /// (`existing` describes it). A durable subscription is named by its address — the broker
    /// keeps its position under that name — so one name cannot carry two filters.
    pub fn filter_conflict(&self, existing: impl std::fmt::Display) -> Error {
        Error::msg(format!(
            "durable subscription {} is already registered with another filter ({existing}); this one asks for ({}). Give each durable subscription its own name; to change a durable subscription's filter, remove its consumer on the broker first",
            self.name(),
            self.filter
        ))
    }
}

/// Messages one subscription's queue holds unless set otherwise (see
/// [`SubscriptionRoute::queue_capacity`]).
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// A live registration; closing it stops new work and waits for work in flight.
pub trait Registration: Send + Sync {
    /// Stops taking new messages, lets in-flight ones finish (and be acknowledged).
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The transport between services.
///
/// Object safe and small, so apps hold an `Arc<dyn Bridge>` and swap implementations by
/// configuration. A new bridge implements this and passes the conformance suite.
pub trait Bridge: Send + Sync + 'static {
    /// A short name for logs (`memory`, `nats`).
    fn name(&self) -> &str;

    /// Sends a `command` envelope and waits at most `timeout` for its response envelope.
    /// No instance serving the command → 503 at once; deadline passed → 504.
    fn invoke(&self, command: Envelope, timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>>;

    /// Publishes an event (a `customMessage`) to every matching subscription. Where the bridge
    /// must wait (a full queue, a broker's ack) it waits at most `timeout`, then fails with 503
    /// naming what is full or unreachable.
    fn emit(&self, event: Envelope, timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>>;

    /// Starts serving the command at `address` (whose `instance_id` is the serving instance).
    fn serve_command(
        &self,
        address: Arc<Address>,
        endpoint: Arc<dyn CommandEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>>;

    /// Starts delivering matching messages to a subscription.
    fn subscribe(
        &self,
        route: SubscriptionRoute,
        endpoint: Arc<dyn SubscriptionEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>>;

    /// Whether the bridge is connected and able to carry messages.
    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;

    fn event(name: &'static str, tenant: Option<&'static str>) -> Envelope {
        let mut envelope = Envelope::new(
            Address::new("user", "1", "registerNewUser"),
            Message::Custom {
                payload: Body::empty_object(),
            },
        );
        envelope.event_name = Some(name.into());
        envelope.tenant_id = tenant.map(Into::into);
        envelope
    }

    #[test]
    fn filter_matches_every_set_field() {
        let filter = EventFilter {
            event_name: Some("a".into()),
            tenant_id: Some("t1".into()),
            ..Default::default()
        };
        assert!(filter.matches(&event("a", Some("t1"))));
        assert!(!filter.matches(&event("a", Some("t2"))));
        assert!(!filter.matches(&event("a", None)));
        assert!(!filter.matches(&event("b", Some("t1"))));
        let by_sender = EventFilter {
            sender_service: Some("user".into()),
            sender_target: Some("registerNewUser".into()),
            ..Default::default()
        };
        assert!(by_sender.matches(&event("whatever", None)));
        assert!(
            !EventFilter {
                sender_service: Some("email".into()),
                ..Default::default()
            }
            .matches(&event("a", None))
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let retry = Retry::exponential(10)
            .backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(500));
        let delays: Vec<u128> = (1..=5).map(|a| retry.delay_after(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(retry.delay_after(200), Duration::from_millis(500));
    }
}
