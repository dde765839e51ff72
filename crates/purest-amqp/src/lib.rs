//! The RabbitMQ (AMQP 0.9.1) bridge for purest, on PURISTA's layout (see [`layout`]), so
//! PURISTA and purest services can share one broker.
//!
//! - **Commands** go to the headers exchange `mandatory`, with a per-message TTL of the caller's
//!   deadline: a command nobody serves comes back (`basic.return`) and the caller gets 503 at
//!   once; an instance takes each command off the shared queue (prefetch bounded) and answers on
//!   the caller's reply queue.
//! - **Events** wait for the broker's publisher confirm: an emit that returns `Ok` is on the
//!   broker (and, for durable subscriptions, in their quorum queues on disk). A success response
//!   that names an event is published once, confirmed, and reaches both the caller and the
//!   event's subscribers.
//! - **Durable subscriptions** are quorum queues with manual acks (see `durable`); best-effort
//!   ones are transient queues that go with their consumers.
//! - **Reconnection** is the bridge's own: invokes waiting on a lost connection fail with 503 at
//!   once, and every queue and consumer is set up again on the new connection.
//!
//! ```no_run
//! use purest_core::prelude::*;
//! use purest_amqp::{AmqpBridge, AmqpConfig};
//! # async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
//! # async fn run() -> purest_core::Result<()> {
//! let bridge = AmqpBridge::connect(AmqpConfig::from_url("amqp://guest:guest@127.0.0.1:5672/%2f")?).await?;
//! let app = Host::new().bridge(bridge).service(Service::new("health", "1").command(Command::new("ping", ping))).start().await?;
//! assert_eq!(app.client().invoke::<String>("health/1/ping", ()).await?, "pong");
//! app.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
mod durable;
pub mod layout;
mod link;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FusedFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Confirmation, Consumer, PublisherConfirm};
use purest_core::bridge::{
    CommandEndpoint, Delivery, Registration, SubscriptionEndpoint, SubscriptionRoute, answer_command_bytes, encoded_response,
    error_response, outgoing_json,
};
use purest_core::replies::DurableNames;
use purest_core::{Address, Bridge, Envelope, Error, HandledError, Message};
use tokio_util::sync::CancellationToken;

pub use config::{
    AmqpConfig, AmqpSection, ConfigError, DEFAULT_CONFIRM_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EXCHANGE, DEFAULT_PREFETCH, ENV_KEYS,
};
use layout::{command_binding, command_queue, headers, properties, short, subscription_binding, subscription_queue};
use link::{Link, Session};

/// Counters of what the bridge saw go wrong on the wire.
#[derive(Debug, Default)]
pub struct AmqpStats {
    /// Messages that were not envelopes (bad JSON, wrong shape), refused and logged.
    pub malformed: AtomicU64,
    /// Commands the broker returned: no queue was bound for them.
    pub unroutable: AtomicU64,
    /// Messages durable subscriptions dropped after the core dead-lettered them.
    pub dead_lettered: AtomicU64,
    /// Durable deliveries sent through a retry delay queue.
    pub retried: AtomicU64,
}

/// A purest [`Bridge`] over RabbitMQ.
#[derive(Clone)]
pub struct AmqpBridge {
    link: Arc<Link>,
    stats: Arc<AmqpStats>,
    /// The durable queues this bridge consumes, each with its one filter.
    durable_names: DurableNames,
}

impl AmqpBridge {
    /// Connects, retrying within the configured connect timeout (30 s unless set).
    pub async fn connect(config: AmqpConfig) -> Result<Self, Error> {
        Ok(Self {
            link: Link::connect(config).await?,
            stats: Arc::default(),
            durable_names: DurableNames::default(),
        })
    }

    /// Connects to an `amqp://` URL, with settings from the environment (see
    /// [`AmqpConfig::from_url_and_env`]).
    pub async fn connect_url(url: &str) -> Result<Self, Error> {
        Self::connect(AmqpConfig::from_url_and_env(url)?).await
    }

    /// What went wrong on the wire so far.
    pub fn stats(&self) -> &AmqpStats {
        &self.stats
    }

    fn config(&self) -> &AmqpConfig {
        &self.link.config
    }

    /// The current session, or the 503 that says there is none.
    fn session_or_503(&self, what: impl std::fmt::Display) -> Result<Arc<Session>, HandledError> {
        self.link
            .session()
            .ok_or_else(|| HandledError::unavailable(format!("RabbitMQ is unavailable (reconnecting); {what}")))
    }

    /// Publishes on the confirming channel and waits (at most `within`) for the broker's answer.
    async fn publish_confirmed(
        &self,
        session: &Session,
        bytes: &[u8],
        properties: lapin::BasicProperties,
        within: Duration,
    ) -> Result<Confirmation, String> {
        let confirm = session
            .confirmed
            .basic_publish(
                session.exchange.clone(),
                "".into(),
                BasicPublishOptions::default(),
                bytes,
                properties,
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut confirm = Box::pin(confirm.fuse());
        match tokio::time::timeout(within, &mut confirm).await {
            Ok(confirmed) => confirmed.map_err(|e| e.to_string()),
            Err(_) => {
                finish_later(confirm);
                Err(format!("no publisher confirm within {within:?}"))
            }
        }
    }

    /// Sets up (or, after a reconnection, again) a queue with its binding and consumer.
    async fn consume(&self, session: &Arc<Session>, plan: &QueuePlan) -> Result<Consuming, Error> {
        let failed = |what: &str, e: lapin::Error| Error::msg(format!("RabbitMQ: cannot {what} for {}: {e}", plan.owner));
        let channel = session.connection.create_channel().await.map_err(|e| failed("open a channel", e))?;
        channel
            .basic_qos(plan.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| failed("set the prefetch", e))?;
        let (name, options, arguments) = match &plan.queue {
            QueueKind::Command(name) => (
                short(name.clone())?,
                QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
            QueueKind::Transient(name) => (
                short(name.clone().unwrap_or_default())?,
                QueueDeclareOptions {
                    auto_delete: true,
                    exclusive: name.is_none(),
                    ..Default::default()
                },
                FieldTable::default(),
            ),
            QueueKind::Durable(name, _) => (
                short(name.clone())?,
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                durable::quorum_arguments(),
            ),
        };
        let queue = channel
            .queue_declare(name, options, arguments)
            .await
            .map_err(|e| failed("declare its queue (declared elsewhere with other settings?)", e))?;
        let queue = queue.name().clone();
        if let QueueKind::Durable(_, retry) = &plan.queue {
            durable::declare_delay_queues(&channel, queue.as_str(), retry).await?;
        }
        channel
            .queue_bind(
                queue.clone(),
                session.exchange.clone(),
                "".into(),
                QueueBindOptions::default(),
                plan.binding.clone(),
            )
            .await
            .map_err(|e| failed("bind its queue", e))?;
        let consumer = channel
            .basic_consume(queue.clone(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| failed("consume its queue", e))?;
        Ok(Consuming {
            session: session.clone(),
            channel,
            consumer,
            queue,
        })
    }

    /// Sets up `plan` on the current session, then spawns `work` to run on it and, after every
    /// reconnection, on the next one, until the registration closes.
    async fn register<W>(&self, plan: QueuePlan, work: W) -> Result<Box<dyn Registration>, Error>
    where
        W: Fn(AmqpBridge, Consuming, CancellationToken) -> BoxFuture<'static, Ended> + Send + Sync + 'static,
    {
        let session = self
            .link
            .session()
            .ok_or_else(|| Error::msg(format!("RabbitMQ is unavailable (reconnecting); {} cannot start", plan.owner)))?;
        let first = self.consume(&session, &plan).await?;
        let stop = CancellationToken::new();
        let worker = tokio::spawn(keep_consuming(self.clone(), plan, first, stop.clone(), work));
        Ok(Box::new(Worker { stop, worker }))
    }
}

/// Lets a publisher confirm that is still on its way finish in a task of its own: lapin keeps
/// every confirm dropped unfinished until `wait_for_confirms`, which this bridge never calls.
fn finish_later(confirm: std::pin::Pin<Box<futures::future::Fuse<PublisherConfirm>>>) {
    if !confirm.is_terminated() {
        tokio::spawn(async move {
            let _ = confirm.await;
        });
    }
}

/// What a registration consumes.
struct QueuePlan {
    /// `service/version/function`, for errors and logs.
    owner: String,
    queue: QueueKind,
    binding: FieldTable,
    prefetch: u16,
}

enum QueueKind {
    /// A command's shared queue, deleted with its last consumer.
    Command(String),
    /// A best-effort subscription's queue: named and shared, or broker-named for this instance.
    Transient(Option<String>),
    /// A durable subscription's quorum queue, with its retry policy.
    Durable(String, purest_core::Retry),
}

/// A queue being consumed on one session.
struct Consuming {
    session: Arc<Session>,
    channel: Channel,
    consumer: Consumer,
    queue: ShortString,
}

/// Why consuming on a session ended.
enum Ended {
    /// The registration closed.
    Stopped,
    /// The session was lost: set up again on the next.
    Lost,
}

/// Runs `work` on `first`, then on each new session after a loss, until `stop`.
async fn keep_consuming<W>(bridge: AmqpBridge, plan: QueuePlan, first: Consuming, stop: CancellationToken, work: W)
where
    W: Fn(AmqpBridge, Consuming, CancellationToken) -> BoxFuture<'static, Ended> + Send + Sync + 'static,
{
    let mut sessions = bridge.link.sessions();
    let mut current = Some(first);
    loop {
        let consuming = match current.take() {
            Some(consuming) => consuming,
            None => {
                let next = sessions.borrow_and_update().clone().filter(|s| s.is_open());
                let set_up = match next {
                    Some(session) => bridge.consume(&session, &plan).await.map_err(Some),
                    None => Err(None),
                };
                match set_up {
                    Ok(consuming) => consuming,
                    Err(failed) => {
                        // Connected, yet refused (a queue redeclared elsewhere with other
                        // settings, a permission): worth a warning; not connected: expected.
                        if let Some(e) = failed {
                            tracing::warn!(owner = %plan.owner, error = %e, "cannot consume again; retrying every second");
                        }
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = sessions.changed() => {}
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
        };
        match work(bridge.clone(), consuming, stop.clone()).await {
            Ended::Stopped => return,
            Ended::Lost => tracing::info!(owner = %plan.owner, "consumer lost; consuming again once RabbitMQ is back"),
        }
    }
}

/// When the deliveries of a queue are acknowledged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AckWhen {
    /// As they are taken, all taken at once acknowledged together (`multiple`): commands, which
    /// are handled at most once.
    Taken,
    /// By the handler, once it has settled the delivery.
    Settled,
}

/// Consumes until stopped or lost, running up to `limit` deliveries at once through `handle`;
/// on stop, cancels the consumer first (no new deliveries; a command queue without consumers
/// goes), lets the running ones finish and settle, then closes the channel (what it still held
/// unacked goes back to the queue).
async fn drive<F>(consuming: Consuming, stop: CancellationToken, limit: usize, ack: AckWhen, mut handle: F) -> Ended
where
    F: FnMut(AmqpDelivery) -> BoxFuture<'static, ()>,
{
    let Consuming { channel, mut consumer, .. } = consuming;
    let mut running = FuturesUnordered::new();
    // Taken deliveries are acknowledged in order, one `multiple` ack at a time: an ack for an
    // earlier tag arriving after a later one would name a tag the broker no longer knows, and
    // the broker would close the channel.
    let mut unacked: Option<lapin::Acker> = None;
    let mut acking: std::pin::Pin<Box<futures::future::Fuse<BoxFuture<'static, ()>>>> = Box::pin(futures::future::Fuse::terminated());
    let ended = 'consuming: loop {
        if acking.is_terminated()
            && let Some(acker) = unacked.take()
        {
            acking.set(ack_up_to(acker).fuse());
        }
        tokio::select! {
            biased;
            () = &mut acking, if !acking.is_terminated() => {}
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = stop.cancelled() => break Ended::Stopped,
            next = consumer.next(), if running.len() < limit => {
                let mut next = next;
                // Whatever else has arrived is taken now too, and acknowledged with it.
                loop {
                    match next {
                        Some(Ok(delivery)) => {
                            if ack == AckWhen::Taken {
                                unacked = Some(delivery.acker.clone());
                            }
                            running.push(handle(delivery));
                        }
                        Some(Err(_)) | None => break 'consuming Ended::Lost,
                    }
                    if running.len() >= limit {
                        break;
                    }
                    match consumer.next().now_or_never() {
                        Some(more) => next = more,
                        None => break,
                    }
                }
            }
        }
    };
    // (A finished `Fuse` never completes again: awaited only while it runs.)
    if !acking.is_terminated() {
        acking.await;
    }
    if let Some(acker) = unacked {
        ack_up_to(acker).await;
    }
    if matches!(ended, Ended::Stopped) {
        let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
    }
    while running.next().await.is_some() {}
    if matches!(ended, Ended::Stopped) {
        let _ = channel.close(200, "purest stops consuming".into()).await;
    }
    ended
}

/// Acknowledges `acker`'s delivery and every earlier one of its channel.
fn ack_up_to(acker: lapin::Acker) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let _ = acker.ack(BasicAckOptions { multiple: true }).await;
    })
}

/// A running registration; closing stops intake and waits for handlers in flight.
struct Worker {
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

impl Registration for Worker {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let _ = self.worker.await;
        })
    }
}

impl Bridge for AmqpBridge {
    fn name(&self) -> &str {
        "amqp"
    }

    fn invoke(&self, mut command: Envelope, timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>> {
        Box::pin(async move {
            let receiver = command
                .receiver
                .clone()
                .ok_or_else(|| HandledError::bad_request("a command needs a receiver"))?;
            let session = self.session_or_503(format_args!("{receiver} could not be reached"))?;
            let deadline = tokio::time::Instant::now() + timeout;
            let pending = self.link.pending.expect(&mut command, deadline, &receiver).await?;
            let correlation_id = pending.correlation_id().to_owned();
            let bytes = outgoing_json(&command)?;
            let correlation = ShortString::try_new(correlation_id.clone())
                .map_err(|_| HandledError::bad_request("the correlation id is longer than AMQP's 255 bytes"))?;
            let properties = properties(&command, headers(&command, None))
                .with_reply_to(session.reply_queue.clone())
                .with_correlation_id(correlation)
                // A command still queued after its caller gave up is dropped, not handled.
                .with_expiration(timeout.as_millis().max(1).to_string().into());
            let published = session
                .confirmed
                .basic_publish(
                    session.exchange.clone(),
                    "".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &bytes,
                    properties,
                )
                .await;
            let confirm = match published {
                Ok(confirm) => confirm,
                Err(e) => {
                    tracing::warn!(command = %receiver, error = %e, "publishing a command failed");
                    return Err(HandledError::unavailable(format!(
                        "RabbitMQ is unavailable; {receiver} could not be reached"
                    )));
                }
            };
            let mut confirm = Box::pin(confirm.fuse());
            let mut pending = pending;
            let answer = loop {
                tokio::select! {
                    biased;
                    reply = &mut pending.receive => break match reply {
                        Ok(reply) => Envelope::from_bytes(reply).map_err(|e| {
                            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(command = %receiver, error = %e, "the response is not an envelope");
                            HandledError::internal(format!("{receiver} answered with something that is not a response"))
                        }),
                        Err(_) => Err(HandledError::unavailable(format!(
                            "the connection to RabbitMQ was lost while waiting for {receiver}"
                        ))),
                    },
                    confirmed = &mut confirm, if !confirm.is_terminated() => match confirmed {
                        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {}
                        Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                            self.stats.unroutable.fetch_add(1, Ordering::Relaxed);
                            break Err(HandledError::unavailable(format!("no running instance serves command {receiver}")));
                        }
                        Ok(Confirmation::Nack(None)) => {
                            break Err(HandledError::unavailable(format!("RabbitMQ refused the command to {receiver}")));
                        }
                        Err(e) => {
                            tracing::warn!(command = %receiver, error = %e, "no publisher confirm for a command");
                            break Err(HandledError::unavailable(format!("RabbitMQ is unavailable; {receiver} could not be reached")));
                        }
                    },
                    () = tokio::time::sleep_until(deadline) => {
                        break Err(HandledError::timeout(format!("{receiver} did not answer within {timeout:?}")));
                    }
                }
            };
            finish_later(confirm);
            answer
        })
    }

    fn emit(&self, event: Envelope, timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            let what = if matches!(event.message, Message::Info { .. }) {
                "the info message"
            } else {
                "the event"
            };
            let session = self.session_or_503(format_args!("{what} was not published"))?;
            let bytes = outgoing_json(&event)?;
            let properties = properties(&event, headers(&event, None));
            let within = timeout.min(self.config().confirm_timeout);
            match self.publish_confirmed(&session, &bytes, properties, within).await {
                Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => Ok(()),
                Ok(Confirmation::Nack(_)) => Err(HandledError::unavailable(format!(
                    "RabbitMQ refused {what} (a queue is full or the broker is short of resources)"
                ))),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing {what} failed");
                    Err(HandledError::unavailable(format!(
                        "RabbitMQ is unavailable; {what} was not published"
                    )))
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
            let plan = QueuePlan {
                owner: address.to_string(),
                queue: QueueKind::Command(command_queue(&address)),
                binding: command_binding(&address),
                prefetch: self.config().prefetch,
            };
            let limit = usize::from(self.config().prefetch);
            self.register(plan, move |bridge, consuming, stop| {
                let (address, endpoint) = (address.clone(), endpoint.clone());
                let session = consuming.session.clone();
                Box::pin(drive(consuming, stop, limit, AckWhen::Taken, move |delivery| {
                    Box::pin(answer(bridge.clone(), session.clone(), delivery, address.clone(), endpoint.clone()))
                }))
            })
            .await
        })
    }

    fn subscribe(
        &self,
        route: SubscriptionRoute,
        endpoint: Arc<dyn SubscriptionEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            let name = subscription_queue(&route);
            let queue = match (&name, route.durable) {
                (Some(name), true) => QueueKind::Durable(name.clone(), route.retry.clone()),
                _ => QueueKind::Transient(name.clone()),
            };
            // Claimed for the registration's life: a durable queue carries one filter.
            let claim = match (&name, route.durable) {
                (Some(name), true) => Some(self.durable_names.claim(name, &route)?),
                _ => None,
            };
            let plan = QueuePlan {
                owner: route.address.to_string(),
                queue,
                binding: subscription_binding(&route.filter),
                prefetch: u16::try_from(route.concurrency.max(1)).unwrap_or(u16::MAX),
            };
            let limit = route.concurrency.max(1);
            let route = Arc::new(route);
            let registered = self
                .register(plan, move |bridge, consuming, stop| {
                    let (route, endpoint) = (route.clone(), endpoint.clone());
                    let (session, queue) = (consuming.session.clone(), consuming.queue.clone());
                    Box::pin(drive(consuming, stop, limit, AckWhen::Settled, move |delivery| {
                        Box::pin(deliver(
                            bridge.clone(),
                            session.clone(),
                            queue.clone(),
                            route.clone(),
                            endpoint.clone(),
                            delivery,
                        ))
                    }))
                })
                .await?;
            Ok(match claim {
                Some(claim) => claim.holding(registered),
                None => registered,
            })
        })
    }

    fn is_ready(&self) -> bool {
        self.link.session().is_some()
    }
}

/// Runs one command from the wire and answers it on the caller's reply queue. The command was
/// acked as it was taken (see [`AckWhen::Taken`]): a command is handled at most once, and one
/// that an instance was sent but never took (it died first) goes back to the queue for another.
async fn answer(
    bridge: AmqpBridge,
    session: Arc<Session>,
    delivery: AmqpDelivery,
    address: Arc<Address>,
    endpoint: Arc<dyn CommandEndpoint>,
) {
    let Some(reply_to) = delivery.properties.reply_to().clone() else {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(command = %address, "a command without a reply queue (reply_to) was ignored");
        return;
    };
    let correlation = delivery.properties.correlation_id().clone();
    let (response, malformed) = answer_command_bytes(&endpoint, &address, Bytes::from(delivery.data)).await;
    if malformed {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    let Some((response, bytes)) = encoded_response(response, &address) else {
        return;
    };
    let with_properties = |envelope: &Envelope| {
        let properties = properties(envelope, headers(envelope, Some(reply_to.as_str())));
        match &correlation {
            Some(id) => properties.with_correlation_id(id.clone()),
            None => properties,
        }
    };
    // A success that is an event is confirmed before the caller hears of it: a caller that saw
    // the success can count on the event, even if this process dies right after answering.
    if response.event_name.is_some() && matches!(response.message, Message::Success { .. }) {
        let within = bridge.config().confirm_timeout;
        match bridge.publish_confirmed(&session, &bytes, with_properties(&response), within).await {
            Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => return,
            Ok(Confirmation::Nack(_)) => tracing::warn!(command = %address, "RabbitMQ refused the success event; the caller gets 503"),
            Err(e) => tracing::warn!(command = %address, error = %e, "the success event was not confirmed; the caller gets 503"),
        }
        let refusal = error_response(&address, HandledError::unavailable("the result could not be recorded; try again"));
        if let Ok(bytes) = outgoing_json(&refusal) {
            publish_plain(&session, &bytes, with_properties(&refusal), &address).await;
        }
        return;
    }
    publish_plain(&session, &bytes, with_properties(&response), &address).await;
}

/// Publishes a response without waiting for the broker.
async fn publish_plain(session: &Session, bytes: &[u8], properties: lapin::BasicProperties, address: &Address) {
    let published = session
        .plain
        .basic_publish(
            session.exchange.clone(),
            "".into(),
            BasicPublishOptions::default(),
            bytes,
            properties,
        )
        .await;
    if let Err(e) = published {
        tracing::warn!(command = %address, error = %e, "the response could not be sent");
    }
}

/// One subscription delivery: the core handles it and says how to settle it.
async fn deliver(
    bridge: AmqpBridge,
    session: Arc<Session>,
    queue: ShortString,
    route: Arc<SubscriptionRoute>,
    endpoint: Arc<dyn SubscriptionEndpoint>,
    mut delivery: AmqpDelivery,
) {
    let attempt = if route.durable {
        durable::attempt_of(&delivery.properties)
    } else {
        1
    };
    let body = Bytes::from(std::mem::take(&mut delivery.data));
    let handed = Delivery::decode_bytes(body.clone(), attempt);
    if handed.message.is_err() {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    let settlement = endpoint.deliver(handed).await;
    match settlement {
        purest_core::bridge::Settlement::Retry(_) => bridge.stats.retried.fetch_add(1, Ordering::Relaxed),
        purest_core::bridge::Settlement::Reject if route.durable => bridge.stats.dead_lettered.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    let settled = if route.durable {
        durable::settle(&session, queue.as_str(), &route.retry, delivery, &body, attempt, settlement).await
    } else {
        delivery.acker.ack(BasicAckOptions::default()).await.map(drop)
    };
    if let Err(e) = settled {
        tracing::warn!(subscription = %route.address, error = %e, "settling a delivery with RabbitMQ failed; it may be delivered again");
    }
}
