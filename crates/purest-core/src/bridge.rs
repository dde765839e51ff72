//! The [`Bridge`] trait: the only way services talk. A bridge moves envelopes; the runtime turns
//! them into handler calls. Every implementation keeps the semantics of DESIGN.md §5.

use std::sync::Arc;
use std::time::Duration;

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

/// Runs one subscription for a bridge. `Ok` means the message may be acknowledged; `Err` says
/// why the handler failed, for retry and dead-lettering.
pub trait SubscriptionEndpoint: Send + Sync + 'static {
    /// Handles one delivery.
    fn handle(self: Arc<Self>, event: Arc<Envelope>) -> BoxFuture<'static, Result<(), DeliveryFailure>>;
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The error, for logs and the dead letter.
    pub reason: String,
    /// Retrying cannot help (the message fails validation or a guard): dead-letter it now.
    pub permanent: bool,
}

/// Which messages a subscription wants. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
            // Subscriptions see events and command outcomes, never the commands themselves.
            && !matches!(envelope.message, Message::Command { .. } | Message::Info { .. })
    }

    /// Whether the filter selects anything more specific than "everything".
    pub fn is_specific(&self) -> bool {
        *self != EventFilter::default()
    }
}

/// How often and how patiently a failing durable subscription is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound of one delay.
    pub max_backoff: Duration,
    /// Event name under which exhausted messages are published.
    pub dead_letter: Name,
}

/// The event name dead letters are published under unless a subscription names its own.
pub const DEFAULT_DEAD_LETTER: &str = "purest.deadLetter";

impl Retry {
    /// `attempts` attempts in all, with delays 100 ms, 200 ms, 400 ms, … (at most 30 s), then
    /// dead-lettered under [`DEFAULT_DEAD_LETTER`].
    ///
    /// ```
    /// use purest_core::Retry;
    /// use std::time::Duration;
    /// let retry = Retry::exponential(4).backoff(Duration::from_millis(10)).dead_letter("email.dlq");
    /// assert_eq!(retry.delay_after(1), Duration::from_millis(10));
    /// assert_eq!(retry.delay_after(3), Duration::from_millis(40));
    /// ```
    pub fn exponential(attempts: u32) -> Self {
        Self {
            max_attempts: attempts.max(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
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

    /// Sets the dead-letter event name.
    pub fn dead_letter(mut self, event_name: &str) -> Self {
        self.dead_letter = Name::new(event_name);
        self
    }

    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
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
    /// How many times the handler ran.
    pub attempts: u32,
    /// The original message, as JSON.
    pub message: Value,
}

impl DeadLetter {
    /// The event announcing that `route` gave up on `original` after `attempts` attempts.
    pub fn envelope(route: &SubscriptionRoute, original: &Envelope, reason: String, attempts: u32) -> Envelope {
        let address = &route.address;
        let letter = DeadLetter {
            subscription: format!("{}/{}/{}", address.service_name, address.service_version, address.service_target),
            reason,
            attempts,
            message: serde_json::to_value(original).unwrap_or(Value::Null),
        };
        let mut envelope = Envelope::new(
            address.clone(),
            Message::Custom {
                payload: Body::typed(letter),
            },
        );
        envelope.event_name = Some(route.retry.dead_letter.clone());
        envelope.trace_id = original.trace_id;
        envelope.principal_id = original.principal_id.clone();
        envelope.tenant_id = original.tenant_id.clone();
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
}

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

    /// Publishes an event (a `customMessage`) to every matching subscription.
    fn emit(&self, event: Envelope) -> BoxFuture<'_, Result<(), HandledError>>;

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
