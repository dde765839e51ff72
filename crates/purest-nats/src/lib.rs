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
mod refusal;
pub mod subject;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use purest_core::bridge::{
    CommandEndpoint, Delivery, Registration, SubscriptionEndpoint, SubscriptionRoute, answer_command_bytes, encoded_response,
    error_response, outgoing_json,
};
use purest_core::{Address, Bridge, Envelope, Error, HandledError, Message};
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, ENV_KEYS, HeaderSet, NatsConfig, NatsSection};
pub use durable::EVENT_STREAM;
use refusal::{Kind, Refusal, Refusals};
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
    /// Which headers messages carry.
    header_set: HeaderSet,
    /// Publishes and subscriptions the server refused (permissions violations).
    refusals: Refusals,
    /// This connection's NATS user (or `token`/`creds`), to name in permission errors.
    identity: Arc<str>,
    /// The permission pattern of this connection's reply inboxes (`"_INBOX.<user>.>"`).
    inboxes: Arc<str>,
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
        let refusals = Refusals::default();
        let identity: Arc<str> = match (&config.user, &config.token, &config.creds_file) {
            (Some(user), _, _) => format!("NATS user {user:?}").into(),
            (None, Some(_), _) => "the NATS token this service connects with".into(),
            (None, None, Some(creds)) => format!("the NATS user of {}", creds.display()).into(),
            (None, None, None) => "this service's NATS user (it connects without credentials)".into(),
        };
        let recorder = (refusals.clone(), identity.clone());
        // Set while the connection is lost: the next `Connected` is a reconnection.
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = config.options().await?.event_callback(move |event| {
            let shown = shown.clone();
            let (refusals, identity) = recorder.clone();
            let lost = lost.clone();
            async move {
                match event {
                    async_nats::Event::ServerError(async_nats::ServerError::Other(error)) => match Refusal::parse(&error) {
                        Some((kind, subject, queue)) => {
                            tracing::error!(servers = %shown, %error, "NATS refused {identity} a {}", match kind {
                                Kind::Publish => "publish; grant it publish permission on that subject",
                                Kind::Subscribe => "subscription; grant it subscribe permission on that subject (and queue group)",
                            });
                            refusals.record(kind, subject, queue);
                        }
                        None => tracing::warn!(servers = %shown, %error, "NATS server error"),
                    },
                    async_nats::Event::Disconnected => {
                        lost.store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(servers = %shown, "NATS connection lost; reconnecting")
                    }
                    async_nats::Event::Connected => {
                        if lost.swap(false, std::sync::atomic::Ordering::Relaxed) {
                            purest_core::metrics::reconnected("nats");
                        }
                        tracing::info!(servers = %shown, "NATS connected")
                    }
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
            header_set: config.headers,
            refusals,
            identity,
            inboxes: format!("\"{}.>\"", config.inbox_prefix().as_deref().unwrap_or("_INBOX")).into(),
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
    ///
    /// A subscription the user has no permission for is not refused to the subscriber: the
    /// server sends a `-ERR` line (to the event callback, in a task of its own) and the echo
    /// still comes back. So the refusals recorded since `watch` began are checked for `subject`
    /// after the echo, and, if none is there yet, after a second echo: the `-ERR` came before the
    /// first echo, and the callback has had a whole round trip to record it.
    async fn registered(&self, address: &Address, subject: &str, mut watch: refusal::Watch) -> Result<(), Error> {
        let mine = |r: &Refusal| r.kind == Kind::Subscribe && *r.subject == *subject;
        for _ in 0..2 {
            self.echo(address, &mut watch).await?;
            if let Some(refusal) = watch.find(mine) {
                return Err(self.refused_subscription(address, &refusal, "its own subject"));
            }
        }
        Ok(())
    }

    /// A message to this connection's own inbox and back: a round trip through the server.
    async fn echo(&self, address: &Address, watch: &mut refusal::Watch) -> Result<(), Error> {
        let unconfirmed = |e: &dyn std::fmt::Display| Error::msg(format!("NATS did not confirm the subscription of {address}: {e}"));
        let inbox = self.client.new_inbox();
        let mut echo = self.client.subscribe(inbox.clone()).await.map_err(|e| unconfirmed(&e))?;
        self.client
            .publish(inbox.clone(), Bytes::new())
            .await
            .map_err(|e| unconfirmed(&e))?;
        let confirmed = tokio::select! {
            echoed = tokio::time::timeout(Duration::from_secs(10), echo.next()) => echoed,
            refusal = watch.refused(|r| *r.subject == *inbox) => {
                return Err(self.refused_subscription(address, &refusal, "its reply inbox"));
            }
        };
        let _ = echo.unsubscribe().await;
        match confirmed {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(unconfirmed(&"the connection closed")),
            Err(_) => Err(unconfirmed(&"no answer within 10 s")),
        }
    }

    /// The start error for a subscription (or, on the reply inbox, a publish) the server refused.
    fn refused_subscription(&self, address: &Address, refusal: &Refusal, what: &str) -> Error {
        let (action, permission) = match refusal.kind {
            Kind::Subscribe => ("subscription to", "subscribe"),
            Kind::Publish => ("publish to", "publish"),
        };
        let pattern = if refusal.subject.starts_with("_INBOX.") {
            self.inboxes.to_string()
        } else {
            refusal.permission()
        };
        Error::msg(format!(
            "NATS refused {} the {action} {} that {address} needs ({what}): permissions violation; \
             grant it {permission} permission on {pattern} in the nats-server configuration",
            self.identity, refusal.subject,
        ))
    }

    /// Runs `operation` until it ends or the server refuses this connection something that
    /// `matches` (see [`refusal`]); refusals are looked for from before the operation starts, every
    /// [`refusal::CHECK_EVERY`] while it waits.
    async fn guarded<T>(&self, operation: impl Future<Output = T>, matches: impl Fn(&Refusal) -> bool) -> Result<T, Refusal> {
        let mark = self.refusals.mark();
        let mut operation = std::pin::pin!(operation);
        let first = tokio::time::Instant::now() + refusal::CHECK_EVERY;
        let mut checks = tokio::time::interval_at(first, refusal::CHECK_EVERY);
        loop {
            tokio::select! {
                biased;
                done = &mut operation => return Ok(done),
                _ = checks.tick() => {
                    if let Some(refusal) = self.refusals.since(mark, |r| matches(r) || is_inbox_refusal(r)) {
                        return Err(refusal);
                    }
                }
            }
        }
    }

    /// The error for a refusal met by an operation guarded with [`NatsBridge::guarded`]: a
    /// refused publish, or the refused subscription to the reply inbox.
    fn refused(&self, refusal: &Refusal, what: &str) -> HandledError {
        match refusal.kind {
            Kind::Publish => HandledError::forbidden(format!(
                "NATS refused to publish to {}: permissions violation; grant {} publish permission on {} \
                 (or a pattern covering it) to {what}",
                refusal.subject,
                self.identity,
                refusal.permission()
            )),
            Kind::Subscribe => HandledError::forbidden(format!(
                "NATS refused {} the subscription to {}, where replies arrive: permissions violation; \
                 grant it subscribe permission on {} to {what}",
                self.identity, refusal.subject, self.inboxes
            )),
        }
    }

    /// [`NatsBridge::store_unguarded`], failing at once if the server refuses the event's
    /// publish or the event stream's API.
    async fn store_event(&self, subject: String, headers: Option<HeaderMap>, bytes: Bytes) -> Result<(), NotStored> {
        let published = self.guarded(self.store_unguarded(&subject, headers, bytes), |r| {
            r.kind == Kind::Publish
                && (*r.subject == *subject
                    || r.subject
                        .strip_prefix("$JS.API.STREAM.")
                        .is_some_and(|api| api.ends_with(EVENT_STREAM)))
        });
        match published.await {
            Ok(stored) => stored.map_err(NotStored::Failed),
            Err(refusal) => {
                let what = if *refusal.subject == *subject {
                    format!("emit events on {subject}")
                } else {
                    format!("use the JetStream event stream {EVENT_STREAM}")
                };
                Err(NotStored::Refused(self.refused(&refusal, &what)))
            }
        }
    }

    /// Publishes an event into the JetStream event stream and waits for the server's ack, so an
    /// `Ok` means the event is stored (or, with no durable subscriber interested, delivered to the
    /// live ones). The stream is created on first use, and again if it was deleted meanwhile.
    async fn store_unguarded(&self, subject: &str, headers: Option<HeaderMap>, bytes: Bytes) -> Result<(), Error> {
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
                        .publish_with_headers(subject.to_owned(), headers.clone(), bytes.clone())
                        .await
                }
                None => self.jetstream.publish(subject.to_owned(), bytes.clone()).await,
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

/// Why an event was not stored.
enum NotStored {
    /// The server refused the publish (permissions): the caller is told what to grant.
    Refused(HandledError),
    /// Anything else (unreachable, no ack in time): logged, the caller gets a 503.
    Failed(Error),
}

/// A refused subscription to a reply inbox: async-nats subscribes `_INBOX.<id>.*` on the first
/// request, so without that permission no request of this connection gets its reply.
fn is_inbox_refusal(refusal: &Refusal) -> bool {
    refusal.kind == Kind::Subscribe && refusal.subject.starts_with("_INBOX.")
}

/// The headers a message carries (see [`HeaderSet`]), so that tools and PURISTA (which reads
/// trace context from headers) see the routing without parsing the body; the subject carries it
/// only snake-cased. `None` when there is nothing to add: a message without headers takes the
/// server's faster path.
fn headers_of(envelope: &Envelope, set: HeaderSet) -> Option<HeaderMap> {
    use async_nats::HeaderName;
    const MESSAGE_TYPE: HeaderName = HeaderName::from_static("messageType");
    const SENDER_SERVICE_NAME: HeaderName = HeaderName::from_static("senderServiceName");
    const SENDER_SERVICE_VERSION: HeaderName = HeaderName::from_static("senderServiceVersion");
    const SENDER_SERVICE_TARGET: HeaderName = HeaderName::from_static("senderServiceTarget");
    const SENDER_INSTANCE_ID: HeaderName = HeaderName::from_static("senderInstanceId");
    const RECEIVER_SERVICE_NAME: HeaderName = HeaderName::from_static("receiverServiceName");
    const RECEIVER_SERVICE_VERSION: HeaderName = HeaderName::from_static("receiverServiceVersion");
    const RECEIVER_SERVICE_TARGET: HeaderName = HeaderName::from_static("receiverServiceTarget");
    const RECEIVER_INSTANCE_ID: HeaderName = HeaderName::from_static("receiverInstanceId");
    const PRINCIPAL_ID: HeaderName = HeaderName::from_static("principalId");
    const TENANT_ID: HeaderName = HeaderName::from_static("tenantId");
    const EVENT_NAME: HeaderName = HeaderName::from_static("eventName");
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    let traceparent = envelope.traceparent();
    let mut headers = HeaderMap::new();
    if set == HeaderSet::Full {
        let sender = &envelope.sender;
        headers.insert(MESSAGE_TYPE, envelope.message_type());
        headers.insert(SENDER_SERVICE_NAME, &*sender.service_name);
        headers.insert(SENDER_SERVICE_VERSION, &*sender.service_version);
        headers.insert(SENDER_SERVICE_TARGET, &*sender.service_target);
        if let Some(instance) = &sender.instance_id {
            headers.insert(SENDER_INSTANCE_ID, &**instance);
        }
        if let Some(receiver) = &envelope.receiver {
            headers.insert(RECEIVER_SERVICE_NAME, &*receiver.service_name);
            headers.insert(RECEIVER_SERVICE_VERSION, &*receiver.service_version);
            headers.insert(RECEIVER_SERVICE_TARGET, &*receiver.service_target);
            if let Some(instance) = &receiver.instance_id {
                headers.insert(RECEIVER_INSTANCE_ID, &**instance);
            }
        }
    } else if envelope.principal_id.is_none() && envelope.tenant_id.is_none() && envelope.event_name.is_none() && traceparent.is_none() {
        return None;
    }
    for (key, value) in [
        (EVENT_NAME, &envelope.event_name),
        (PRINCIPAL_ID, &envelope.principal_id),
        (TENANT_ID, &envelope.tenant_id),
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
            // The deadline is kept here, not by the client: the same timer also looks for a
            // refusal of the publish, which gets no reply (see `refusal`).
            let mut request = async_nats::Request::new()
                .payload(Bytes::from(outgoing_json(&command)?))
                .timeout(None);
            if let Some(headers) = headers_of(&command, self.header_set) {
                request = request.headers(headers);
            }
            // A `Subject` clones without copying: one for the request, one to match refusals with.
            let subject = async_nats::Subject::from(subject_of(&command));
            let mark = self.refusals.mark();
            let deadline = tokio::time::Instant::now() + timeout;
            let next_check = |now: tokio::time::Instant| (now + refusal::CHECK_EVERY).min(deadline);
            let check = tokio::time::sleep_until(next_check(tokio::time::Instant::now()));
            let (mut reply, mut check) = (
                std::pin::pin!(self.client.send_request(subject.clone(), request)),
                std::pin::pin!(check),
            );
            let replied = loop {
                tokio::select! {
                    biased;
                    replied = &mut reply => break replied,
                    () = &mut check => {
                        let refused = |r: &Refusal| (r.kind == Kind::Publish && *r.subject == *subject) || is_inbox_refusal(r);
                        if let Some(refusal) = self.refusals.since(mark, refused) {
                            return Err(self.refused(&refusal, &format!("invoke {receiver}")));
                        }
                        let now = tokio::time::Instant::now();
                        if now >= deadline {
                            return Err(HandledError::timeout(format!("{receiver} did not answer within {timeout:?}")));
                        }
                        check.as_mut().reset(next_check(now));
                    }
                }
            };
            match replied {
                Ok(reply) => Envelope::from_bytes(reply.payload).map_err(|e| {
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
            let bytes = Bytes::from(outgoing_json(&event)?);
            if matches!(event.message, Message::Info { .. }) {
                // Presence is live-only, as PURISTA sends it: core NATS, not the event stream.
                return tokio::time::timeout(
                    timeout,
                    self.announce(subject_of(&event), headers_of(&event, self.header_set), bytes),
                )
                .await
                .unwrap_or_else(|_| Err(HandledError::unavailable("NATS is unavailable; the info message was not published")));
            }
            let stored = tokio::time::timeout(
                timeout,
                self.store_event(subject_of(&event), headers_of(&event, self.header_set), bytes),
            )
            .await
            .unwrap_or_else(|_| Err(NotStored::Failed(Error::msg(format!("no ack from JetStream within {timeout:?}")))));
            stored.map_err(|e| match e {
                NotStored::Refused(refused) => refused,
                NotStored::Failed(e) => {
                    tracing::warn!(error = %e, "publishing an event failed");
                    HandledError::unavailable("NATS is unavailable; the event was not published")
                }
            })
        })
    }

    fn serve_command(
        &self,
        address: Arc<Address>,
        endpoint: Arc<dyn CommandEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            let subject = command_subject(&address);
            let watch = self.refusals.watch();
            let subscriber = self
                .client
                .queue_subscribe(subject.clone(), queue_group(&address))
                .await
                .map_err(|e| Error::msg(format!("cannot subscribe to commands of {address}: {e}")))?;
            self.registered(&address, &subject, watch).await?;
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
                // The JetStream API calls of this subscription (the stream's and its consumers'),
                // refused, fail the start at once instead of after the API's timeout.
                let created = self.guarded(
                    durable::consumers(&self.jetstream, &route, self.ack_wait, self.stream_replicas),
                    |r| r.kind == Kind::Publish && r.subject.strip_prefix("$JS.API.").is_some_and(|api| api.contains(EVENT_STREAM)),
                );
                let consumers = match created.await {
                    Ok(consumers) => consumers?,
                    Err(refusal) => {
                        let what = format!("set up the durable subscription {}", route.address);
                        return Err(self.refused(&refusal, &what).into());
                    }
                };
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
                let watch = self.refusals.watch();
                let subscriber = if route.every_instance {
                    self.client.subscribe(subject.clone()).await
                } else {
                    let group = subscription_queue_group(&route.address, &subject);
                    self.client.queue_subscribe(subject.clone(), group).await
                }
                .map_err(|e| Error::msg(format!("cannot subscribe for {}: {e}", route.address)))?;
                self.registered(&route.address, &subject, watch).await?;
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
    let (response, malformed) = answer_command_bytes(endpoint, address, message.payload).await;
    if malformed {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    let Some((response, bytes)) = encoded_response(response, address) else {
        return;
    };
    let bytes = Bytes::from(bytes);
    // A success that is an event is stored before the caller hears of it: a caller that saw the
    // success can count on the event, even if this process dies right after answering.
    let is_event = response.event_name.is_some() && matches!(response.message, Message::Success { .. });
    // Boxed: storing an event is a large future, and every command's future (moved into the
    // set of running ones) would otherwise carry its size.
    if is_event
        && let Err(e) = Box::pin(bridge.store_event(subject_of(&response), headers_of(&response, bridge.header_set), bytes.clone())).await
    {
        match e {
            NotStored::Refused(refused) => {
                tracing::error!(command = %address, error = %refused.message, "the success event was refused; the caller gets 503")
            }
            NotStored::Failed(e) => {
                tracing::warn!(command = %address, error = %e, "the success event could not be stored; the caller gets 503")
            }
        }
        let refusal = error_response(address, HandledError::unavailable("the result could not be recorded; try again"));
        if let Ok(bytes) = outgoing_json(&refusal).map(Bytes::from) {
            reply_with(bridge, address, reply, &refusal, bytes).await;
        }
        return;
    }
    reply_with(bridge, address, reply, &response, bytes).await;
}

/// Publishes a response to the caller's reply subject, with PURISTA's headers when the bridge
/// sends the full set (the minimal set puts none on replies).
async fn reply_with(bridge: &NatsBridge, address: &Address, reply: async_nats::Subject, response: &Envelope, bytes: Bytes) {
    let published = match bridge.header_set {
        HeaderSet::Full => match headers_of(response, HeaderSet::Full) {
            Some(headers) => bridge.client.publish_with_headers(reply, headers, bytes).await,
            None => bridge.client.publish(reply, bytes).await,
        },
        HeaderSet::Minimal => bridge.client.publish(reply, bytes).await,
    };
    if let Err(e) = published {
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
                    let delivery = Delivery::decode_bytes(message.payload, 1);
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
