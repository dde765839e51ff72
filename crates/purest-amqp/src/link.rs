//! The connection to RabbitMQ and its upkeep. A [`Link`] holds the current [`Session`] (a
//! connection with its publishing channels and reply queue) and replaces it after the broker is
//! lost: a supervisor task reconnects with backoff, and every registration, which waits for
//! sessions on [`Link::sessions`], sets its queue and consumer up again on the new one. lapin's own
//! recovery is not used: with it, the first connection to a broker that is down has been seen to
//! hang, and the bridge must know when a connection is gone to fail invokes at once.
//!
//! Invokes wait for their responses in a bounded table of pending replies keyed by correlation
//! id; a lost session answers every one of them with 503 at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use purest_core::Error;
use purest_core::replies::{self, PendingReplies};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::AmqpConfig;
use crate::layout::{self, short};

/// Invokes one bridge waits for at once; more wait (within their deadline) for a slot.
pub(crate) const MAX_PENDING_INVOKES: usize = 16_384;

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One live connection and what every message path needs on it.
pub(crate) struct Session {
    pub connection: Connection,
    /// Commands, events and success events: publisher confirms on.
    pub confirmed: Channel,
    /// Responses: no confirms (nothing to wait for, nothing to keep per message).
    pub plain: Channel,
    /// This connection's reply queue.
    pub reply_queue: ShortString,
    /// The exchange every message goes through.
    pub exchange: ShortString,
}

impl Session {
    /// Whether the connection and its publishing channels are usable.
    pub fn is_open(&self) -> bool {
        self.connection.status().connected() && self.confirmed.status().connected() && self.plain.status().connected()
    }
}

/// Responses awaited, by correlation id.
type Pending = PendingReplies<Reply>;

/// A response as it came off the reply queue.
pub(crate) type Reply = Bytes;

/// The connection, kept up by a supervisor task for as long as a [`Link`] is held.
pub(crate) struct Link {
    pub config: AmqpConfig,
    sessions: watch::Receiver<Option<Arc<Session>>>,
    /// Invokes waiting for their responses.
    pub pending: Arc<Pending>,
    /// Cancelled when the last handle goes: the supervisor closes the connection and ends.
    closing: CancellationToken,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.closing.cancel();
    }
}

impl Link {
    /// Connects (retrying within the configured connect timeout) and starts the supervisor.
    pub async fn connect(config: AmqpConfig) -> Result<Arc<Self>, Error> {
        let pending = Arc::new(Pending::new(MAX_PENDING_INVOKES));
        let first = connect_within(&config, config.connect_timeout).await?;
        let session = open_session(&config, first).await?;
        let (publish, sessions) = watch::channel(Some(session.0));
        let closing = CancellationToken::new();
        tokio::spawn(supervise(config.clone(), publish, session.1, pending.clone(), closing.clone()));
        Ok(Arc::new(Self {
            config,
            sessions,
            pending,
            closing,
        }))
    }

    /// The current session, if connected.
    pub fn session(&self) -> Option<Arc<Session>> {
        self.sessions.borrow().clone().filter(|session| session.is_open())
    }

    /// Sessions as they come and go: registrations wait here for the next one.
    pub fn sessions(&self) -> watch::Receiver<Option<Arc<Session>>> {
        self.sessions.clone()
    }
}

fn properties(config: &AmqpConfig) -> ConnectionProperties {
    ConnectionProperties::default().with_connection_name(config.name.as_deref().unwrap_or("purest").into())
}

/// One connection attempt after another until one succeeds or `within` has passed.
async fn connect_within(config: &AmqpConfig, within: Duration) -> Result<Connection, Error> {
    let deadline = tokio::time::Instant::now() + within;
    let tls = config.tls()?;
    let mut backoff = Duration::from_millis(100);
    loop {
        let runtime = lapin::runtime::default_runtime().map_err(|e| Error::msg(format!("no runtime for lapin: {e}")))?;
        let attempt = Connection::connect_uri_with_config(config.uri.clone(), properties(config), tls.clone(), runtime);
        // Each attempt is bounded too: a broker that accepts TCP but never answers must not hang the start.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error = match tokio::time::timeout(left.max(Duration::from_millis(1)), attempt).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        if error.contains("ACCESS_REFUSED") || error.contains("NOT_ALLOWED") {
            return Err(Error::msg(format!(
                "RabbitMQ at {} refused the login or virtual host: {error}; check the user, password and vhost (PUREST_AMQP_USER, PUREST_AMQP_PASSWORD, the URL's path)",
                config.shown()
            )));
        }
        if tokio::time::Instant::now() + backoff >= deadline {
            return Err(Error::msg(format!(
                "cannot connect to RabbitMQ at {} within {within:?} ({error}); is rabbitmq-server running there? (set by PUREST_BRIDGE; PUREST_AMQP_CONNECT_TIMEOUT_MS waits longer)",
                config.shown()
            )));
        }
        tracing::warn!(broker = %config.shown(), %error, "cannot reach RabbitMQ; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Channels, the exchange, and the reply queue with its consumer on a new connection.
async fn open_session(config: &AmqpConfig, connection: Connection) -> Result<(Arc<Session>, lapin::Consumer), Error> {
    let failed = |what: &str, e: lapin::Error| Error::msg(format!("RabbitMQ at {}: cannot {what}: {e}", config.shown()));
    let confirmed = connection.create_channel().await.map_err(|e| failed("open a channel", e))?;
    confirmed
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| failed("turn on publisher confirms", e))?;
    let plain = connection.create_channel().await.map_err(|e| failed("open a channel", e))?;
    let exchange = short(config.exchange.clone())?;
    plain
        .exchange_declare(
            exchange.clone(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            failed(
                &format!(
                    "declare the headers exchange {:?} (does one of another type exist?)",
                    config.exchange
                ),
                e,
            )
        })?;
    let reply = plain
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| failed("declare a reply queue", e))?;
    let reply_queue = reply.name().clone();
    plain
        .queue_bind(
            reply_queue.clone(),
            exchange.clone(),
            "".into(),
            QueueBindOptions::default(),
            layout::reply_binding(reply_queue.as_str()),
        )
        .await
        .map_err(|e| failed("bind the reply queue", e))?;
    let consumer = plain
        .basic_consume(
            reply_queue.clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| failed("consume the reply queue", e))?;
    Ok((
        Arc::new(Session {
            connection,
            confirmed,
            plain,
            reply_queue,
            exchange,
        }),
        consumer,
    ))
}

/// Hands responses to their invokes until the session is lost, then reconnects; repeats until
/// the link is dropped.
async fn supervise(
    config: AmqpConfig,
    publish: watch::Sender<Option<Arc<Session>>>,
    mut replies: lapin::Consumer,
    pending: Arc<Pending>,
    closing: CancellationToken,
) {
    loop {
        let current = publish.borrow().clone();
        tokio::select! {
            _ = closing.cancelled() => break,
            () = dispatch(&mut replies, &pending) => {}
            // A channel closed by an error (the connection still up) is a lost session too.
            () = broken(current) => {}
        }
        // The session is gone: nobody will answer the invokes waiting on it.
        let lost = publish.send_replace(None);
        pending.fail_all();
        if let Some(lost) = lost {
            let _ = lost.connection.close(320, "purest reconnects".into()).await;
        }
        tracing::warn!(broker = %config.shown(), "RabbitMQ connection lost; reconnecting");
        let mut backoff = Duration::from_millis(100);
        loop {
            let reconnected = tokio::select! {
                _ = closing.cancelled() => return,
                connected = connect_within(&config, backoff.max(Duration::from_secs(1))) => connected,
            };
            let opened = match reconnected {
                Ok(connection) => open_session(&config, connection).await,
                Err(e) => Err(e),
            };
            match opened {
                Ok((session, consumer)) => {
                    tracing::info!(broker = %config.shown(), "RabbitMQ connected again");
                    purest_core::metrics::reconnected("amqp");
                    replies = consumer;
                    publish.send_replace(Some(session));
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reconnecting to RabbitMQ failed; retrying");
                    tokio::select! {
                        _ = closing.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    if let Some(session) = publish.send_replace(None) {
        let _ = session.connection.close(200, "purest stops".into()).await;
    }
}

/// Returns once `session`'s connection or one of its publishing channels is no longer usable.
async fn broken(session: Option<Arc<Session>>) {
    let mut check = tokio::time::interval(Duration::from_millis(500));
    while session.as_ref().is_some_and(|session| session.is_open()) {
        check.tick().await;
    }
}

/// Hands each response to the invoke waiting for it, until the reply consumer ends (the
/// connection or its channel is gone).
async fn dispatch(replies: &mut lapin::Consumer, pending: &Pending) {
    while let Some(Ok(delivery)) = replies.next().await {
        let key = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .or_else(|| replies::correlation_id_in_body(&delivery.data));
        let Some(key) = key else {
            tracing::warn!("a response without a correlation id was dropped");
            continue;
        };
        if !pending.deliver(&key, Bytes::from(delivery.data)) {
            tracing::debug!(correlation_id = %key, "a response came after its invoke gave up");
        }
    }
}
