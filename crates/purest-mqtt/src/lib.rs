//! The MQTT 5 bridge for purest, on PURISTA's layout (see [`layout`]), so PURISTA and purest
//! services can share one broker (Mosquitto, EMQX, HiveMQ, …).
//!
//! - **Commands** are QoS 1 publishes on the command's topic, expiring at the caller's deadline;
//!   the instances of a service share them through `$share/sharedpurista/…`. The broker's PUBACK
//!   says when nobody subscribes (reason "no matching subscribers"): the caller gets 503 at
//!   once. Responses go to the caller's instance topic and are matched by `correlationData`.
//! - **Events** wait for the broker's PUBACK: an emit that returns `Ok` is with the broker, and
//!   queued in the sessions of durable subscribers that are away.
//! - **Durable subscriptions** are persistent sessions (clean start off, a session expiry),
//!   acknowledged only after the handler settled the delivery: a subscriber that crashed gets
//!   what it had not acknowledged again when it comes back. Retries wait in the subscriber, the
//!   delivery unacknowledged; dead letters are published by the core.
//! - **Connections**: one publishes invokes and emits (and takes the responses); each command and
//!   subscription consumes on one of its own, so a slow subscription never holds commands back,
//!   and a command is answered on the connection it came on. After a loss, invokes and emits
//!   waiting on it fail with 503 at once; every connection is opened and subscribed again.
//!
//! ```no_run
//! use purest_core::prelude::*;
//! use purest_mqtt::{MqttBridge, MqttConfig};
//! # async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
//! # async fn run() -> purest_core::Result<()> {
//! let bridge = MqttBridge::connect(MqttConfig::from_url("mqtt://127.0.0.1:1883")?).await?;
//! let app = Host::new().bridge(bridge).service(Service::new("health", "1").command(Command::new("ping", ping))).start().await?;
//! assert_eq!(app.client().invoke::<String>("health/1/ping", ()).await?, "pong");
//! app.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
mod connect;
mod consumer;
pub mod layout;
mod link;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use purest_core::bridge::{
    CommandEndpoint, Delivery, Registration, Settlement, SubscriptionEndpoint, SubscriptionRoute, answer_command_bytes, encoded_response,
    error_response, outgoing_json,
};
use purest_core::replies::DurableNames;
use purest_core::{Address, Bridge, Envelope, Error, HandledError, Message};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use tokio_util::sync::CancellationToken;

pub use config::{
    ConfigError, DEFAULT_ACK_TIMEOUT, DEFAULT_CLIENT_ID_PREFIX, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_PREFETCH, DEFAULT_SESSION_EXPIRY, ENV_KEYS, MqttConfig, MqttSection, NUMBER_KEYS,
};
use connect::Session;
use consumer::{Consumer, Incoming, Plan, Replies, Unsent};
use link::{Link, NotSent, Publisher, Waiter};

/// Counters of what the bridge saw go wrong on the wire.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Messages that were not envelopes (bad JSON, wrong shape), refused and logged.
    pub malformed: AtomicU64,
    /// Commands the broker had no subscriber for.
    pub unroutable: AtomicU64,
    /// Durable deliveries dropped after the core dead-lettered them.
    pub dead_lettered: AtomicU64,
    /// Durable deliveries run again after a delay.
    pub retried: AtomicU64,
}

/// Senders rewritten to this bridge's instance, by the original.
type Senders = Mutex<Vec<(Arc<Address>, Arc<Address>)>>;

/// A purest [`Bridge`] over an MQTT 5 broker.
#[derive(Clone)]
pub struct MqttBridge {
    link: Arc<Link>,
    stats: Arc<MqttStats>,
    /// Client ids of this bridge's non-durable consumers are `<prefix>-<instance>-<n>`.
    consumers: Arc<AtomicU64>,
    /// The durable sessions this bridge consumes, each with its one filter.
    durable_names: DurableNames,
    /// Senders lately rewritten to this bridge's instance, by the original: a caller sends
    /// from few addresses, and a kept `Arc` keeps its topic tokens cached.
    senders: Arc<Senders>,
}

impl MqttBridge {
    /// Connects, retrying within the configured connect timeout (30 s unless set).
    pub async fn connect(config: MqttConfig) -> Result<Self, Error> {
        Ok(Self {
            link: Link::connect(config).await?,
            stats: Arc::default(),
            consumers: Arc::default(),
            durable_names: DurableNames::default(),
            senders: Arc::default(),
        })
    }

    /// Connects to an `mqtt://` URL, with settings from the environment (see
    /// [`MqttConfig::from_url_and_env`]).
    pub async fn connect_url(url: &str) -> Result<Self, Error> {
        Self::connect(MqttConfig::from_url_and_env(url)?).await
    }

    /// What went wrong on the wire so far.
    pub fn stats(&self) -> &MqttStats {
        &self.stats
    }

    /// This bridge's instance id: the topic token its responses are addressed to.
    pub fn instance_id(&self) -> &str {
        &self.link.instance
    }

    fn config(&self) -> &MqttConfig {
        &self.link.config
    }

    /// The current publisher, or the 503 that says there is none.
    fn publisher_or_503(&self, what: impl std::fmt::Display) -> Result<Arc<Publisher>, HandledError> {
        self.link
            .publisher()
            .ok_or_else(|| HandledError::unavailable(format!("the MQTT broker is unavailable (reconnecting); {what}")))
    }

    /// `sender` with this bridge's instance id.
    fn as_this_instance(&self, sender: &Arc<Address>) -> Arc<Address> {
        const KEPT: usize = 16;
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, rewritten)) = senders.iter().find(|(original, _)| Arc::ptr_eq(original, sender)) {
            return rewritten.clone();
        }
        let rewritten = Arc::new(Address {
            instance_id: Some(self.link.instance.clone()),
            ..(**sender).clone()
        });
        if senders.len() == KEPT {
            senders.remove(0);
        }
        senders.push((sender.clone(), rewritten.clone()));
        rewritten
    }

    /// A session of its own for a consumer that keeps nothing while away; `manual_acks` to
    /// acknowledge deliveries once handled rather than as they arrive.
    fn fresh_session(&self, in_flight: u16, manual_acks: bool) -> Session {
        let n = self.consumers.fetch_add(1, Ordering::Relaxed);
        Session {
            client_id: format!("{}-{}-{n}", self.config().client_id_prefix, self.link.instance),
            durable: false,
            in_flight,
            manual_acks,
        }
    }

    /// Publishes `envelope`'s bytes on `topic` and waits (at most `within`) for the PUBACK.
    async fn publish_acked(
        &self,
        publisher: &Publisher,
        topic: String,
        payload: Bytes,
        properties: rumqttc::v5::mqttbytes::v5::PublishProperties,
        within: Duration,
        what: &str,
    ) -> Result<PubAckReason, HandledError> {
        let until = tokio::time::Instant::now() + within;
        let (send, acked) = tokio::sync::oneshot::channel();
        publisher
            .publish(topic, payload, properties, Waiter::Emit(send), until)
            .await
            .map_err(|e| not_sent(e, what))?;
        match tokio::time::timeout_at(until, acked).await {
            Ok(Ok(reason)) => Ok(reason),
            Ok(Err(_)) => Err(HandledError::unavailable(format!(
                "the connection to the MQTT broker was lost; {what} may not have been published"
            ))),
            Err(_) => Err(HandledError::unavailable(format!(
                "the MQTT broker did not acknowledge {what} within {within:?}"
            ))),
        }
    }

    /// Starts a consumer for a registration.
    async fn consume(&self, plan: Plan, handle: consumer::Handle) -> Result<Box<dyn Registration>, Error> {
        let owner = plan.owner.clone();
        let consumer = Consumer::start(self.config(), plan, handle)
            .await
            .map_err(|e| Error::msg(format!("{owner} cannot start on MQTT: {e}")))?;
        Ok(Box::new(Running(consumer)))
    }
}

/// A registration: its consumer.
struct Running(Consumer);

impl Registration for Running {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.0.close())
    }
}

/// Why `what` was not published, for its caller.
fn not_sent(why: NotSent, what: &str) -> HandledError {
    match why {
        NotSent::TooLarge { size, max } => HandledError::new(
            413,
            format!("{what} is {size} bytes, above the {max} the MQTT broker (or max_packet_size) accepts; send less"),
        ),
        NotSent::Lost => HandledError::unavailable(format!("the MQTT broker is unavailable; {what} was not sent")),
        NotSent::Busy => HandledError::unavailable(format!(
            "{what} was not sent: the connection to the MQTT broker has 1,024 messages queued already; try again later"
        )),
    }
}

impl Bridge for MqttBridge {
    fn name(&self) -> &str {
        "mqtt"
    }

    fn invoke(&self, mut command: Envelope, timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>> {
        Box::pin(async move {
            let receiver = command
                .receiver
                .clone()
                .ok_or_else(|| HandledError::bad_request("a command needs a receiver"))?;
            let publisher = self.publisher_or_503(format_args!("{receiver} could not be reached"))?;
            let deadline = tokio::time::Instant::now() + timeout;
            // The response comes to the instance topic of the command's sender: this bridge's.
            if command.sender.instance_id.as_deref() != Some(&*self.link.instance) {
                command.sender = self.as_this_instance(&command.sender);
            }
            let mut pending = self.link.pending.expect(&mut command, deadline, &receiver).await?;
            let correlation_id: Box<str> = pending.correlation_id().into();
            let bytes = outgoing_json(&command)?;
            let properties = layout::properties(
                &command,
                Some(Bytes::copy_from_slice(correlation_id.as_bytes())),
                Some(layout::expiry_of(timeout)),
            );
            publisher
                .publish(
                    layout::topic_of(&command),
                    Bytes::from(bytes),
                    properties,
                    Waiter::Invoke(correlation_id),
                    deadline,
                )
                .await
                .map_err(|e| not_sent(e, &format!("the command to {receiver}")))?;
            let reply = match tokio::time::timeout_at(deadline, &mut pending.receive).await {
                Ok(reply) => reply,
                Err(_) => return Err(HandledError::timeout(format!("{receiver} did not answer within {timeout:?}"))),
            };
            match reply {
                Ok(Ok(reply)) => Envelope::from_bytes(reply).map_err(|e| {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(command = %receiver, error = %e, "the response is not an envelope");
                    HandledError::internal(format!("{receiver} answered with something that is not a response"))
                }),
                Ok(Err(PubAckReason::NoMatchingSubscribers)) => {
                    self.stats.unroutable.fetch_add(1, Ordering::Relaxed);
                    Err(HandledError::unavailable(format!("no running instance serves command {receiver}")))
                }
                Ok(Err(other)) => {
                    tracing::warn!(command = %receiver, reason = ?other, "the MQTT broker refused a command");
                    Err(HandledError::unavailable(format!(
                        "the MQTT broker refused the command to {receiver}"
                    )))
                }
                Err(_) => Err(HandledError::unavailable(format!(
                    "the connection to the MQTT broker was lost while waiting for {receiver}"
                ))),
            }
        })
    }

    fn emit(&self, event: Envelope, timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            let what = if matches!(event.message, Message::Info { .. }) {
                "the info message"
            } else {
                "the event"
            };
            let publisher = self.publisher_or_503(format_args!("{what} was not published"))?;
            let bytes = outgoing_json(&event)?;
            let properties = layout::properties(&event, None, None);
            let within = timeout.min(self.config().ack_timeout);
            match self
                .publish_acked(&publisher, layout::topic_of(&event), Bytes::from(bytes), properties, within, what)
                .await?
            {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                other => {
                    tracing::warn!(reason = ?other, "the MQTT broker refused {what}");
                    Err(HandledError::unavailable(format!("the MQTT broker refused {what} ({other:?})")))
                }
            }
        })
    }

    fn serve_command(
        &self,
        address: Arc<Address>,
        endpoint: Arc<dyn CommandEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            let prefetch = self.config().prefetch;
            let mut plan = Plan {
                owner: address.to_string(),
                // Acked as they arrive, in one write with what arrived with them: a command is
                // handled at most once either way (its session ends with its connection).
                session: self.fresh_session(prefetch, false),
                filter: layout::command_subscription(&address),
                concurrency: usize::from(prefetch),
                refuse: None,
            };
            let bridge = self.clone();
            let refusal = format!("{address} is busy ({prefetch} commands running and as many waiting); try again later");
            let refuse: consumer::Handle = {
                let (bridge, address) = (bridge.clone(), address.clone());
                Arc::new(move |incoming, replies, _| {
                    let (bridge, address) = (bridge.clone(), address.clone());
                    let refusal = HandledError::unavailable(refusal.clone());
                    Box::pin(async move {
                        send_refusal(&bridge, &address, &incoming, &replies, refusal).await;
                        true
                    })
                })
            };
            plan.refuse = Some(refuse);
            let handle: consumer::Handle = Arc::new(move |incoming, replies, _| {
                let (bridge, address, endpoint) = (bridge.clone(), address.clone(), endpoint.clone());
                Box::pin(async move {
                    answer(bridge, incoming, replies, address, endpoint).await;
                    true
                })
            });
            self.consume(plan, handle).await
        })
    }

    fn subscribe(
        &self,
        route: SubscriptionRoute,
        endpoint: Arc<dyn SubscriptionEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            // Deliveries taken ahead of the handlers: a subscription's concurrency, and for a durable
            // one at least the prefetch (Mosquitto 2.0.11 was seen to crawl, some 16 deliveries a
            // second, sending what it queued for a resumed session within a receive maximum of 16).
            let concurrency = route.concurrency.max(1);
            let ahead = if route.durable {
                concurrency.max(usize::from(self.config().prefetch))
            } else {
                concurrency
            };
            let in_flight = u16::try_from(ahead).unwrap_or(u16::MAX);
            let session = if route.durable {
                Session {
                    client_id: layout::durable_client_id(&self.config().client_id_prefix, &route),
                    durable: true,
                    in_flight,
                    manual_acks: true,
                }
            } else {
                self.fresh_session(in_flight, true)
            };
            // Claimed for the registration's life: a session name carries one filter.
            let claim = match route.durable {
                true => Some(self.durable_names.claim(&session.client_id, &route)?),
                false => None,
            };
            let plan = Plan {
                owner: route.address.to_string(),
                session,
                filter: layout::subscription_filter(&route),
                concurrency,
                refuse: None,
            };
            let (bridge, route) = (self.clone(), Arc::new(route));
            let handle: consumer::Handle =
                Arc::new(move |incoming, _, retries| Box::pin(deliver(bridge.clone(), route.clone(), endpoint.clone(), incoming, retries)));
            let registered = self.consume(plan, handle).await?;
            Ok(match claim {
                Some(claim) => claim.holding(registered),
                None => registered,
            })
        })
    }

    fn is_ready(&self) -> bool {
        self.link.publisher().is_some()
    }
}

/// Runs one command from the wire and publishes its response to the caller's instance topic:
/// on the connection the command came on, or, when that one's request queue is full, on the
/// publishing connection.
async fn answer(bridge: MqttBridge, incoming: Incoming, replies: Replies, address: Arc<Address>, endpoint: Arc<dyn CommandEndpoint>) {
    let (response, malformed) = answer_command_bytes(&endpoint, &address, incoming.payload.clone()).await;
    if malformed {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    let Some((response, bytes)) = encoded_response(response, &address) else {
        return;
    };
    let topic = reply_topic(&response, &incoming.topic);
    let properties = layout::properties(&response, incoming.correlation.clone(), None);
    // A success that is an event is acknowledged by the broker before the command is answered
    // otherwise: the event is with the broker even if this process dies right after.
    let is_event = response.event_name.is_some() && matches!(response.message, Message::Success { .. });
    let payload = Bytes::from(bytes);
    let refusal = if is_event {
        match bridge.link.publisher() {
            Some(publisher) => {
                let within = bridge.config().ack_timeout;
                match bridge
                    .publish_acked(&publisher, topic, payload, properties, within, "the success event")
                    .await
                {
                    Ok(PubAckReason::Success | PubAckReason::NoMatchingSubscribers) => return,
                    Ok(other) => {
                        tracing::warn!(command = %address, reason = ?other, "the MQTT broker refused the success event; the caller gets 503");
                        HandledError::unavailable("the result could not be recorded; try again")
                    }
                    Err(e) => {
                        tracing::warn!(command = %address, error = %e, "the success event was not acknowledged; the caller gets an error");
                        e
                    }
                }
            }
            None => HandledError::unavailable("the result could not be recorded; try again"),
        }
    } else {
        match link::oversize(&topic, &payload, &properties, replies.max_packet) {
            None => match replies.try_publish(Unsent {
                topic,
                payload,
                properties,
            }) {
                Ok(()) => return,
                Err(unsent) => return publish_response(&bridge, &address, *unsent).await,
            },
            Some(size) => {
                tracing::warn!(command = %address, size, max = replies.max_packet, "the response is larger than the MQTT broker accepts; the caller gets 413");
                not_sent(
                    NotSent::TooLarge {
                        size,
                        max: replies.max_packet,
                    },
                    "the response",
                )
            }
        }
    };
    send_refusal(&bridge, &address, &incoming, &replies, refusal).await;
}

/// Answers the command `incoming` with `error`, on its connection (or the publishing one).
async fn send_refusal(bridge: &MqttBridge, address: &Arc<Address>, incoming: &Incoming, replies: &Replies, error: HandledError) {
    let refusal = error_response(address, error);
    if let Ok(bytes) = outgoing_json(&refusal) {
        let properties = layout::properties(&refusal, incoming.correlation.clone(), None);
        let unsent = Unsent {
            topic: reply_topic(&refusal, &incoming.topic),
            payload: Bytes::from(bytes),
            properties,
        };
        if let Err(unsent) = replies.try_publish(unsent) {
            publish_response(bridge, address, *unsent).await;
        }
    }
}

/// Publishes a response on the publishing connection (the consumer's request queue was full).
async fn publish_response(
    bridge: &MqttBridge,
    address: &Address,
    Unsent {
        topic,
        payload,
        properties,
    }: Unsent,
) {
    let Some(publisher) = bridge.link.publisher() else {
        tracing::warn!(command = %address, "the MQTT broker is unavailable; the response was not sent");
        return;
    };
    let until = tokio::time::Instant::now() + bridge.config().ack_timeout;
    if let Err(e) = publisher.publish(topic, payload, properties, Waiter::Nobody, until).await {
        tracing::warn!(command = %address, error = ?e, "the response could not be sent");
    }
}

/// The topic of a response: its own (addressed to the command's sender instance), or, for a
/// command that names no sender instance (or is too malformed to read), addressed to the sender
/// its topic names.
fn reply_topic(response: &Envelope, command_topic: &[u8]) -> String {
    let topic = layout::topic_of(response);
    if response.receiver.as_ref().is_some_and(|receiver| receiver.instance_id.is_some()) {
        return topic;
    }
    let Ok(command_topic) = std::str::from_utf8(command_topic) else {
        return topic;
    };
    let sender: Vec<&str> = command_topic.split('/').skip(4).take(4).collect();
    if sender.len() != 4 {
        return topic;
    }
    let mut tokens: Vec<&str> = topic.split('/').take(9).collect();
    tokens.extend(sender);
    tokens.join("/")
}

/// One subscription delivery: the core handles it and says how to settle it; a retry waits here
/// (the delivery unacknowledged) and runs again.
async fn deliver(
    bridge: MqttBridge,
    route: Arc<SubscriptionRoute>,
    endpoint: Arc<dyn SubscriptionEndpoint>,
    incoming: Incoming,
    retries: CancellationToken,
) -> bool {
    // MQTT marks a delivery sent again (a session resumed after a crash) but does not count.
    let mut attempt = if route.durable && incoming.redelivered { 2 } else { 1 };
    loop {
        let delivery = Delivery::decode_bytes(incoming.payload.clone(), attempt);
        if delivery.message.is_err() && attempt == 1 {
            bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
        }
        match endpoint.clone().deliver(delivery).await {
            Settlement::Ack => return true,
            Settlement::Reject => {
                if route.durable {
                    bridge.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
            Settlement::Retry(delay) => {
                bridge.stats.retried.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    () = tokio::time::sleep(delay) => attempt += 1,
                    // Stopping: left unacknowledged, the broker keeps it for the next subscriber.
                    _ = retries.cancelled() => return false,
                }
            }
        }
    }
}
