//! The NATS bridge for purest: commands over request/reply (queue groups share the load between
//! instances); events published through JetStream, so an emit returns once the event is stored,
//! and delivered to best-effort subscriptions as plain NATS messages and to durable ones through
//! JetStream consumers — all on PURISTA's subject scheme, so PURISTA and purest services can share
//! one NATS server.
//!
//! ```no_run
//! use purest_core::prelude::*;
//! use purest_nats::{NatsBridge, NatsConfig};
//! # async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
//! # async fn run() -> purest_core::Result<()> {
//! let bridge = NatsBridge::connect(NatsConfig::from_url("nats://127.0.0.1:4222")?).await?;
//! let app = Host::new().bridge(bridge).service(Service::new("health", "1").command(Command::new("ping", ping))).start().await?;
//! assert_eq!(app.client().invoke::<String>("health/1/ping", ()).await?, "pong");
//! app.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
mod durable;
pub mod subject;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use purest_core::bridge::{CommandEndpoint, Delivery, Registration, SubscriptionEndpoint, SubscriptionRoute};
use purest_core::{Address, Bridge, Envelope, Error, HandledError, Message};
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, ENV_KEYS, NatsConfig, NatsSection};
pub use durable::EVENT_STREAM;
use subject::{command_subject, queue_group, subject_of, subscription_queue_group, subscription_subject};

/// How long the first connection may take unless configured otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters of what the bridge saw go wrong on the wire.
#[derive(Debug, Default)]
pub struct NatsStats {
    /// Messages that were not envelopes (bad JSON, wrong shape), rejected and logged.
    pub malformed: AtomicU64,
    /// Messages dead-lettered by durable subscriptions.
    pub dead_lettered: AtomicU64,
    /// Durable deliveries scheduled again after a failure.
    pub retried: AtomicU64,
}

/// A purest [`Bridge`] over NATS.
#[derive(Clone)]
pub struct NatsBridge {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    ack_wait: Duration,
    /// Copies of the event stream when this bridge creates it.
    stream_replicas: usize,
    /// Set once the event stream is known to exist. Checked before the first event: while a live
    /// subscriber listens on an event's subject, a publish to a missing stream is not refused
    /// (the subscriber counts as a responder) but times out.
    stream_found: Arc<tokio::sync::OnceCell<()>>,
    stats: Arc<NatsStats>,
}

impl NatsBridge {
    /// Connects (retrying in the background while the server is unreachable).
    pub async fn connect(config: NatsConfig) -> Result<Self, Error> {
        if config.servers.is_empty() {
            return Err(ConfigError::from_message("no NATS server given").into());
        }
        let stream_replicas = config.checked_stream_replicas()?;
        let servers: Vec<async_nats::ServerAddr> = config
            .servers
            .iter()
            .map(|s| s.parse().map_err(|e| ConfigError::from_message(&format!("server {s:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        let shown = config.servers.join(",");
        let client = config.options().await?.event_callback(move |event| {
            let shown = shown.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => tracing::warn!(servers = %shown, "NATS connection lost; reconnecting"),
                    async_nats::Event::Connected => tracing::info!(servers = %shown, "NATS connected"),
                    async_nats::Event::ClientError(error) => {
                        tracing::warn!(servers = %shown, %error, "cannot reach NATS; retrying with backoff")
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        });
        let client = client
            .connect(servers)
            .await
            .map_err(|e| Error::msg(format!("cannot connect to NATS: {e}")))?;
        // The client retries in the background with backoff; the start waits for it, bounded.
        let deadline = config.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let connected = tokio::time::timeout(deadline, async {
            while client.connection_state() != async_nats::connection::State::Connected {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if connected.is_err() {
            return Err(Error::msg(format!(
                "cannot connect to NATS at {} within {deadline:?}; is nats-server running there? \
                 (set by PUREST_BRIDGE; PUREST_NATS_CONNECT_TIMEOUT_MS waits longer)",
                config.servers.join(",")
            )));
        }
        let jetstream = async_nats::jetstream::new(client.clone());
        let ack_wait = config.ack_wait.unwrap_or(durable::DEFAULT_ACK_WAIT);
        Ok(Self {
            client,
            jetstream,
            ack_wait,
            stream_replicas,
            stream_found: Arc::default(),
            stats: Arc::default(),
        })
    }

    /// Connects to a `nats://` URL, with settings from the environment (see
    /// [`NatsConfig::from_url_and_env`]).
    pub async fn connect_url(url: &str) -> Result<Self, Error> {
        Self::connect(NatsConfig::from_url_and_env(url)?).await
    }

    /// The underlying client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Waits until the server has processed this connection's subscriptions, so that a message
    /// published from any connection after a registration returns reaches it. The server handles
    /// one connection's operations in order, so a message this connection sends to itself and
    /// gets back proves that every earlier subscription is in place.
    async fn registered(&self, address: &Address) -> Result<(), Error> {
        let unconfirmed = |e: &dyn std::fmt::Display| Error::msg(format!("NATS did not confirm the subscription of {address}: {e}"));
        let inbox = self.client.new_inbox();
        let mut echo = self.client.subscribe(inbox.clone()).await.map_err(|e| unconfirmed(&e))?;
        self.client.publish(inbox, Bytes::new()).await.map_err(|e| unconfirmed(&e))?;
        let confirmed = tokio::time::timeout(Duration::from_secs(10), echo.next()).await;
        let _ = echo.unsubscribe().await;
        match confirmed {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(unconfirmed(&"the connection closed")),
            Err(_) => Err(unconfirmed(&"no answer within 10 s")),
        }
    }

    /// Publishes an event into the JetStream event stream and waits for the server's ack, so an
    /// `Ok` means the event is stored (or, with no durable subscriber interested, delivered to the
    /// live ones). The stream is created on first use, and again if it was deleted meanwhile.
    async fn store_event(&self, subject: String, headers: Option<HeaderMap>, bytes: Bytes) -> Result<(), Error> {
        use async_nats::jetstream::context::PublishErrorKind;
        if self.client.connection_state() == async_nats::connection::State::Disconnected {
            return Err(Error::msg("NATS is unavailable (reconnecting)"));
        }
        self.stream_found
            .get_or_try_init(|| async { durable::event_stream(&self.jetstream, self.stream_replicas).await.map(drop) })
            .await?;
        for first in [true, false] {
            let published = match &headers {
                Some(headers) => {
                    self.jetstream
                        .publish_with_headers(subject.clone(), headers.clone(), bytes.clone())
                        .await
                }
                None => self.jetstream.publish(subject.clone(), bytes.clone()).await,
            };
            let stored = match published {
                Ok(ack) => ack.await.map(drop),
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => return Ok(()),
                Err(e) if first && e.kind() == PublishErrorKind::StreamNotFound => {
                    durable::event_stream(&self.jetstream, self.stream_replicas).await?;
                }
                Err(e) => return Err(Error::msg(format!("the event was not stored: {e}"))),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Publishes an info message on core NATS (no stream stores presence) and flushes it, so
    /// that the last ones (`infoServiceShutdown`) leave before the connection closes.
    async fn announce(&self, subject: String, headers: Option<HeaderMap>, bytes: Bytes) -> Result<(), HandledError> {
        let published = match headers {
            Some(headers) => self.client.publish_with_headers(subject, headers, bytes).await,
            None => self.client.publish(subject, bytes).await,
        }
        .map_err(|e| e.to_string());
        let flushed = match published {
            Ok(()) => self.client.flush().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        flushed.map_err(|e| {
            tracing::debug!(error = %e, "publishing an info message failed");
            HandledError::unavailable("NATS is unavailable; the info message was not published")
        })
    }

    /// What went wrong on the wire so far.
    pub fn stats(&self) -> &NatsStats {
        &self.stats
    }
}

/// The exact principal, tenant and event name, and the W3C `traceparent`, in headers, so that
/// tools and PURISTA (which reads trace context from headers) see them without parsing the body;
/// the subject carries them only snake-cased. `None` when there is nothing to add: a message
/// without headers takes the server's faster path.
fn headers_of(envelope: &Envelope) -> Option<HeaderMap> {
    use async_nats::HeaderName;
    const PRINCIPAL_ID: HeaderName = HeaderName::from_static("principalId");
    const TENANT_ID: HeaderName = HeaderName::from_static("tenantId");
    const EVENT_NAME: HeaderName = HeaderName::from_static("eventName");
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    let traceparent = envelope.otp.as_deref().and_then(traceparent_of);
    if envelope.principal_id.is_none() && envelope.tenant_id.is_none() && envelope.event_name.is_none() && traceparent.is_none() {
        return None;
    }
    let mut headers = HeaderMap::new();
    for (key, value) in [
        (PRINCIPAL_ID, &envelope.principal_id),
        (TENANT_ID, &envelope.tenant_id),
        (EVENT_NAME, &envelope.event_name),
    ] {
        if let Some(value) = value {
            headers.insert(key, value.as_str());
        }
    }
    if let Some(traceparent) = traceparent {
        headers.insert(TRACEPARENT, traceparent);
    }
    Some(headers)
}

/// The `traceparent` inside PURISTA's `otp` (a JSON string holding `{"traceparent": …}`).
fn traceparent_of(otp: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(otp)
        .ok()?
        .get("traceparent")?
        .as_str()
        .map(str::to_owned)
}

fn encode(envelope: &Envelope) -> Result<Bytes, HandledError> {
    envelope.to_json().map(Bytes::from).map_err(|e| {
        tracing::error!(error = %e, message_type = envelope.message_type(), "message could not be serialized");
        HandledError::internal("message could not be serialized")
    })
}

/// A `commandErrorResponse` from `sender` when no proper response can be made.
fn error_response(sender: &Arc<Address>, error: HandledError) -> Envelope {
    Envelope::new(
        sender.clone(),
        Message::Error {
            error: Box::new(error),
            is_handled_error: true,
        },
    )
}

impl Bridge for NatsBridge {
    fn name(&self) -> &str {
        "nats"
    }

    fn invoke(&self, command: Envelope, timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>> {
        Box::pin(async move {
            let receiver = command
                .receiver
                .clone()
                .ok_or_else(|| HandledError::bad_request("a command needs a receiver"))?;
            if self.client.connection_state() == async_nats::connection::State::Disconnected {
                // Known at once: waiting for the deadline would only delay the same answer.
                return Err(HandledError::unavailable(format!(
                    "NATS is unavailable (reconnecting); {receiver} could not be reached"
                )));
            }
            let mut request = async_nats::Request::new().payload(encode(&command)?).timeout(Some(timeout));
            if let Some(headers) = headers_of(&command) {
                request = request.headers(headers);
            }
            match self.client.send_request(subject_of(&command), request).await {
                Ok(reply) => Envelope::from_json(&reply.payload).map_err(|e| {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(command = %receiver, error = %e, "the response is not an envelope");
                    HandledError::internal(format!("{receiver} answered with something that is not a response"))
                }),
                Err(e) => Err(match e.kind() {
                    RequestErrorKind::NoResponders => HandledError::unavailable(format!("no running instance serves command {receiver}")),
                    RequestErrorKind::TimedOut => HandledError::timeout(format!("{receiver} did not answer within {timeout:?}")),
                    RequestErrorKind::MaxPayloadExceeded => {
                        HandledError::new(413, format!("the command to {receiver} is larger than the NATS server accepts"))
                    }
                    _ => {
                        tracing::warn!(command = %receiver, error = %e, "NATS request failed");
                        HandledError::unavailable(format!("NATS is unavailable; {receiver} could not be reached"))
                    }
                }),
            }
        })
    }

    fn emit(&self, event: Envelope, timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            let bytes = encode(&event)?;
            if matches!(event.message, Message::Info { .. }) {
                // Presence is live-only, as PURISTA sends it: core NATS, not the event stream.
                return tokio::time::timeout(timeout, self.announce(subject_of(&event), headers_of(&event), bytes))
                    .await
                    .unwrap_or_else(|_| Err(HandledError::unavailable("NATS is unavailable; the info message was not published")));
            }
            let stored = tokio::time::timeout(timeout, self.store_event(subject_of(&event), headers_of(&event), bytes)).await;
            stored
                .map_err(|_| Error::msg(format!("no ack from JetStream within {timeout:?}")))
                .flatten()
                .map_err(|e| {
                    tracing::warn!(error = %e, "publishing an event failed");
                    HandledError::unavailable("NATS is unavailable; the event was not published")
                })
        })
    }

    fn serve_command(
        &self,
        address: Arc<Address>,
        endpoint: Arc<dyn CommandEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            let subscriber = self
                .client
                .queue_subscribe(command_subject(&address), queue_group(&address))
                .await
                .map_err(|e| Error::msg(format!("cannot subscribe to commands of {address}: {e}")))?;
            self.registered(&address).await?;
            let stop = CancellationToken::new();
            let worker = tokio::spawn(serve_commands(self.clone(), subscriber, address, endpoint, stop.clone()));
            Ok(Box::new(Worker {
                stop,
                workers: vec![worker],
            }) as Box<dyn Registration>)
        })
    }

    fn subscribe(
        &self,
        route: SubscriptionRoute,
        endpoint: Arc<dyn SubscriptionEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            let stop = CancellationToken::new();
            let workers = if route.durable {
                let consumers = durable::consumers(&self.jetstream, &route, self.ack_wait, self.stream_replicas).await?;
                consumers
                    .into_iter()
                    .map(|consumer| {
                        tokio::spawn(durable::consume(
                            self.clone(),
                            consumer,
                            route.clone(),
                            endpoint.clone(),
                            stop.clone(),
                        ))
                    })
                    .collect()
            } else {
                let subject = subscription_subject(&route.filter);
                let subscriber = if route.every_instance {
                    self.client.subscribe(subject).await
                } else {
                    let group = subscription_queue_group(&route.address, &subject);
                    self.client.queue_subscribe(subject, group).await
                }
                .map_err(|e| Error::msg(format!("cannot subscribe for {}: {e}", route.address)))?;
                self.registered(&route.address).await?;
                vec![tokio::spawn(consume_best_effort(
                    self.clone(),
                    subscriber,
                    route,
                    endpoint,
                    stop.clone(),
                ))]
            };
            Ok(Box::new(Worker { stop, workers }) as Box<dyn Registration>)
        })
    }

    fn is_ready(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Takes commands off the queue group until stopped; each runs in its own task.
async fn serve_commands(
    bridge: NatsBridge,
    mut subscriber: async_nats::Subscriber,
    address: Arc<Address>,
    endpoint: Arc<dyn CommandEndpoint>,
    stop: CancellationToken,
) {
    // Commands are answered in this task, many at once: no task per message, so no hand-over
    // between threads on the hot path.
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = stop.cancelled() => break,
            message = subscriber.next(), if running.len() < COMMANDS_IN_FLIGHT => match message {
                Some(message) => running.push(answer(&bridge, message, &address, &endpoint)),
                None => break,
            },
        }
    }
    let _ = subscriber.unsubscribe().await;
    while running.next().await.is_some() {}
}

/// Commands one instance answers at once, per command.
const COMMANDS_IN_FLIGHT: usize = 1024;

/// Runs one command from the wire and replies; a success that declares an event is also
/// published for subscriptions.
async fn answer(bridge: &NatsBridge, message: async_nats::Message, address: &Arc<Address>, endpoint: &Arc<dyn CommandEndpoint>) {
    let Some(reply) = message.reply.clone() else {
        tracing::warn!(command = %address, "a command without a reply subject was ignored");
        return;
    };
    let response = match Envelope::from_json(&message.payload) {
        Ok(command) if matches!(command.message, Message::Command { .. }) => endpoint.clone().handle(command).await,
        Ok(other) => error_response(
            address,
            HandledError::bad_request(format!("expected a command, got {}", other.message_type())),
        ),
        Err(e) => {
            bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(command = %address, error = %e, bytes = message.payload.len(), "malformed command rejected");
            error_response(address, HandledError::bad_request(e.to_string()))
        }
    };
    let bytes = match encode(&response) {
        Ok(bytes) => bytes,
        Err(error) => match encode(&error_response(address, error)) {
            Ok(bytes) => bytes,
            Err(_) => return,
        },
    };
    // A success that is an event is stored before the caller hears of it: a caller that saw the
    // success can count on the event, even if this process dies right after answering.
    let is_event = response.event_name.is_some() && matches!(response.message, Message::Success { .. });
    if is_event
        && let Err(e) = bridge
            .store_event(subject_of(&response), headers_of(&response), bytes.clone())
            .await
    {
        tracing::warn!(command = %address, error = %e, "the success event could not be stored; the caller gets 503");
        let refusal = error_response(address, HandledError::unavailable("the result could not be recorded; try again"));
        if let Ok(refusal) = encode(&refusal)
            && let Err(e) = bridge.client.publish(reply, refusal).await
        {
            tracing::warn!(command = %address, error = %e, "the response could not be sent");
        }
        return;
    }
    if let Err(e) = bridge.client.publish(reply, bytes).await {
        tracing::warn!(command = %address, error = %e, "the response could not be sent");
    }
}

/// A best-effort subscription on core NATS: up to `concurrency` handlers at once; the core logs
/// failures and does not retry them.
async fn consume_best_effort(
    bridge: NatsBridge,
    mut subscriber: async_nats::Subscriber,
    route: SubscriptionRoute,
    endpoint: Arc<dyn SubscriptionEndpoint>,
    stop: CancellationToken,
) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(_) = running.next(), if !running.is_empty() => {}
            _ = stop.cancelled() => break,
            message = subscriber.next(), if running.len() < route.concurrency => match message {
                Some(message) => {
                    let delivery = Delivery::decode(&message.payload, 1);
                    if delivery.message.is_err() {
                        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    running.push(endpoint.clone().deliver(delivery));
                }
                None => break,
            },
        }
    }
    let _ = subscriber.unsubscribe().await;
    while running.next().await.is_some() {}
}

/// Running consumer tasks; closing stops intake and waits for handlers in flight.
struct Worker {
    stop: CancellationToken,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Registration for Worker {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.stop.cancel();
            futures::future::join_all(self.workers).await;
        })
    }
}
