//! The Redis bridge for purest: messaging for teams that run Redis already, with no other broker.
//! Keys are laid out as [`layout`] describes.
//!
//! - **Commands** wait in a list per command, taken (`BLMPOP`) by the instances serving it, each
//!   at most `prefetch` at once. An instance holds a lease on the command (a sorted set scored by
//!   lease end, renewed every few seconds, withdrawn when it stops). The invoke queues the command
//!   and, in the same round trip, counts live leases and reads the backlog's length; it takes
//!   the command back out (`LREM`) when nobody serves it (503 at once) or the backlog is over its
//!   bound (503 naming it), else the caller waits for the response until its deadline (504).
//!   Leases are scored by the hosts' clocks, which must agree within a few seconds. A command
//!   past its deadline is dropped unrun. The response goes to
//!   the caller's reply list, matched by correlation id. A command is taken once: an instance that
//!   dies while running it leaves that caller a 504 (commands are at most once, as on NATS). The
//!   last instance of a command to stop answers what still waits with 503.
//! - **Events** are appended to a stream per event name (info messages: per type). Each
//!   subscribing service reads it through a consumer group, so its instances share the events;
//!   a best-effort subscription for every instance reads the stream without a group.
//! - **Durable subscriptions** acknowledge (`XACK`) only after the handler settled the delivery.
//!   An entry a consumer took and did not acknowledge stays pending; once it has been idle for
//!   `claim_idle_ms` (its consumer died), another consumer of the group claims it (`XAUTOCLAIM`).
//!   A running handler keeps its entry fresh, so a long handler is never handed to a second
//!   consumer. The attempt number is the entry's delivery count, kept by Redis across crashes;
//!   a retry waits in the consumer, then takes the entry again with the count raised. Dead
//!   letters are published by the core, then the entry is acknowledged.
//! - **Trimming** never drops what a durable group still needs: a stream keeps each durable
//!   group's oldest pending entry and everything after the last entry it was given, plus the
//!   last minute for best-effort readers. A stream holding `max_len` entries that durable groups
//!   still need takes no more: an emit waits within its deadline, then fails with 503 naming the
//!   subscription that holds the stream back.
//! - **Connections**: one multiplexed connection for short operations; one per blocking reader
//!   (each command, each subscription, and the reply list). While Redis is unreachable the
//!   bridge is not ready; invokes and emits fail at once with 503, invokes waiting for a
//!   response fail too, and every reader reconnects and sets up again.
//!
//! Needs Redis 7.0 or later (`BLMPOP`, `LMPOP`, `PEXPIRE … NX`/`GT`).
//!
//! Not supported: subscriptions that name no event (filters on the sender or message type
//! alone) are refused at start, saying so; Redis Cluster (the keys carry hash tags, but the
//! bridge speaks to one server).
//!
//! ```no_run
//! use purest_core::prelude::*;
//! use purest_redis::{RedisBridge, RedisConfig};
//! # async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
//! # async fn run() -> purest_core::Result<()> {
//! let bridge = RedisBridge::connect(RedisConfig::from_url("redis://127.0.0.1:6379")?).await?;
//! let app = Host::new().bridge(bridge).service(Service::new("health", "1").command(Command::new("ping", ping))).start().await?;
//! assert_eq!(app.client().invoke::<String>("health/1/ping", ()).await?, "pong");
//! app.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod commands;
mod config;
mod consumer;
pub mod layout;
mod link;
mod pusher;
mod scripts;
mod streams;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use purest_core::bridge::{CommandEndpoint, Registration, SubscriptionEndpoint, SubscriptionRoute, outgoing_json};
use purest_core::replies::DurableNames;
use purest_core::{Address, Bridge, Envelope, Error, HandledError, Message};

use bytes::Bytes;
pub use config::{
    ConfigError, DEFAULT_CLAIM_IDLE, DEFAULT_COMMAND_BACKLOG, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_MAX_LEN,
    DEFAULT_OP_TIMEOUT, DEFAULT_PREFETCH, ENV_KEYS, NUMBER_KEYS, RedisConfig, RedisSection,
};
use layout::CommandFrame;
use link::Link;
use pusher::{Push, Pushed};

/// How long best-effort readers may lag behind a stream before its old entries are trimmed.
pub const BEST_EFFORT_RETENTION: Duration = Duration::from_secs(60);

/// Appends to a stream between two trims of it.
const TRIM_EVERY: u64 = 1000;

/// Counters of what the bridge saw go wrong on the wire.
#[derive(Debug, Default)]
pub struct RedisStats {
    /// Messages that were not envelopes (bad JSON, wrong shape, broken frames), refused and logged.
    pub malformed: AtomicU64,
    /// Commands dropped unrun because their caller's deadline had passed.
    pub expired: AtomicU64,
    /// Durable deliveries acknowledged after the core dead-lettered them.
    pub dead_lettered: AtomicU64,
    /// Durable deliveries run again after a delay.
    pub retried: AtomicU64,
    /// Durable deliveries claimed from a consumer that had left them idle.
    pub claimed: AtomicU64,
    /// Pending durable entries found trimmed away (by hand: the bridge's trimming keeps them).
    pub lost_to_trimming: AtomicU64,
    /// Emits refused because a stream was full of entries durable groups still need.
    pub refused_full: AtomicU64,
}

/// A purest [`Bridge`] over Redis.
#[derive(Clone)]
pub struct RedisBridge {
    link: Arc<Link>,
    stats: Arc<RedisStats>,
    /// Names of this bridge's consumers in consumer groups are `<instance>-<n>`.
    consumers: Arc<AtomicU64>,
    /// The durable consumer groups this bridge reads, each with its one filter.
    durable_names: DurableNames,
    /// Keys of the commands lately invoked, by receiver.
    command_keys: Arc<Mutex<KeysByReceiver>>,
}

impl RedisBridge {
    /// Connects, retrying within the configured connect timeout (30 s unless set).
    pub async fn connect(config: RedisConfig) -> Result<Self, Error> {
        Ok(Self {
            link: Link::connect(config).await?,
            stats: Arc::default(),
            consumers: Arc::default(),
            durable_names: DurableNames::default(),
            command_keys: Arc::default(),
        })
    }

    /// Connects to a `redis://` URL, with settings from the environment (see
    /// [`RedisConfig::from_url_and_env`]).
    pub async fn connect_url(url: &str) -> Result<Self, Error> {
        Self::connect(RedisConfig::from_url_and_env(url)?).await
    }

    /// What went wrong on the wire so far.
    pub fn stats(&self) -> &RedisStats {
        &self.stats
    }

    /// This bridge's instance id: its reply list's name.
    pub fn instance_id(&self) -> &str {
        &self.link.instance
    }

    fn config(&self) -> &RedisConfig {
        &self.link.config
    }

    fn prefix(&self) -> &str {
        &self.link.config.key_prefix
    }

    /// A consumer name of its own for a registration.
    fn consumer_name(&self) -> String {
        format!("{}-{}", self.link.instance, self.consumers.fetch_add(1, Ordering::Relaxed))
    }

    /// The 503 for an operation tried while Redis is unreachable.
    fn unavailable(&self, what: impl std::fmt::Display) -> HandledError {
        HandledError::unavailable(format!("Redis is unavailable (reconnecting); {what}"))
    }

    /// Appends `bytes` to `stream`; while the stream is full of entries durable groups still
    /// need, waits (until `deadline`) for them to be acknowledged, then fails with 503.
    async fn append(&self, stream: &str, bytes: &[u8], deadline: tokio::time::Instant, what: &str) -> Result<(), HandledError> {
        let mut call = scripts::evalsha(&scripts::EMIT, &[stream]);
        call.arg(bytes)
            .arg(self.config().max_len)
            .arg(TRIM_EVERY)
            .arg(BEST_EFFORT_RETENTION.as_millis() as u64);
        let mut wait = Duration::from_millis(20);
        loop {
            let mut connection = self.link.shared();
            let outcome = tokio::time::timeout_at(deadline, scripts::eval::<redis::Value>(&mut connection, &scripts::EMIT, &call)).await;
            let reply = match outcome {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    tracing::warn!(stream, error = %e, "Redis did not take {what}");
                    return Err(HandledError::unavailable(format!("Redis did not take {what}; try again")));
                }
                Err(_) => return Err(HandledError::unavailable(format!("Redis did not take {what} in time; try again"))),
            };
            let full = match streams::emit_outcome(reply) {
                Ok(()) => return Ok(()),
                Err(full) => full,
            };
            if tokio::time::Instant::now() + wait < deadline {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
                continue;
            }
            self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(stream, length = full.length, holder = %full.holder, "a stream is full; {what} was refused");
            return Err(HandledError::unavailable(format!(
                "{what} was not published: its stream holds {} entries (redis max_len) that durable subscription {} has not acknowledged yet; try again later, start that subscription (or remove its consumer group if it is gone for good), or raise max_len",
                full.length, full.holder
            )));
        }
    }

    /// Queues a response frame on the reply list of `reply_to` (which outlives its last
    /// response by a minute, so a caller that is gone leaves nothing behind).
    async fn reply(&self, reply_to: &str, correlation: &str, bytes: &[u8]) -> redis::RedisResult<()> {
        let push = Push {
            list: layout::reply_key(self.prefix(), reply_to),
            frame: layout::encode_reply(correlation, bytes).into(),
            leases: None,
            ttl: Some(link::REPLY_LIST_TTL),
        };
        self.link.pusher.push(push).await.map(|_| ())
    }

    /// The command list and lease set of `receiver`, from a small cache: a caller calls few
    /// commands, and the keys are the same every time.
    fn keys_of(&self, receiver: &Arc<Address>) -> Arc<CommandKeys> {
        const KEPT: usize = 64;
        let mut cache = self.command_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, keys)) = cache
            .iter()
            .find(|(address, _)| Arc::ptr_eq(address, receiver) || **address == **receiver)
        {
            return keys.clone();
        }
        let keys = Arc::new(CommandKeys {
            queue: layout::command_key(self.prefix(), receiver),
            leases: layout::serving_key(self.prefix(), receiver),
        });
        if cache.len() == KEPT {
            cache.remove(0);
        }
        cache.push((receiver.clone(), keys.clone()));
        keys
    }

    /// Queues a command frame, in one round trip with the check that an instance serves the
    /// command and with the backlog's length (the instances serving it keep the list's time to
    /// live). When nobody serves it or the backlog is over its
    /// bound, the frame is taken back out (`LREM`); if an instance took it first, it runs, and
    /// the caller waits for its answer as usual.
    async fn queue_command(&self, keys: &CommandKeys, frame: Bytes) -> redis::RedisResult<Queued> {
        let push = Push {
            list: keys.queue.clone(),
            frame: frame.clone(),
            leases: Some(keys.leases.clone()),
            ttl: None,
        };
        let pushed = self.link.pusher.push(push).await?;
        let refusal = match pushed {
            Pushed { serving: 0, .. } => Queued::NoInstance,
            Pushed { position, .. } if position > self.config().command_backlog => Queued::BacklogFull,
            _ => return Ok(Queued::Yes),
        };
        let removed: u64 = redis::cmd("LREM")
            .arg(&keys.queue)
            .arg(1)
            .arg(&frame[..])
            .query_async(&mut self.link.shared())
            .await?;
        Ok(if removed == 1 { refusal } else { Queued::Yes })
    }
}

/// The keys of the commands lately invoked, by receiver.
type KeysByReceiver = Vec<(Arc<Address>, Arc<CommandKeys>)>;

/// The keys of one command.
struct CommandKeys {
    queue: String,
    leases: String,
}

/// Whether a command was queued for an instance, or why not.
enum Queued {
    Yes,
    NoInstance,
    BacklogFull,
}

/// Milliseconds since the Unix epoch, for command deadlines.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Bridge for RedisBridge {
    fn name(&self) -> &str {
        "redis"
    }

    fn invoke(&self, mut command: Envelope, timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>> {
        Box::pin(async move {
            let receiver = command
                .receiver
                .clone()
                .ok_or_else(|| HandledError::bad_request("a command needs a receiver"))?;
            if !self.link.is_ready() {
                return Err(self.unavailable(format_args!("{receiver} could not be reached")));
            }
            let deadline = tokio::time::Instant::now() + timeout;
            let mut pending = self.link.pending.expect(&mut command, deadline, &receiver).await?;
            let frame = CommandFrame {
                deadline_ms: now_ms() + timeout.as_millis() as u64,
                reply_to: self.link.instance.clone(),
                correlation: pending.correlation_id().to_owned(),
                payload: outgoing_json(&command)?.into(),
            };
            let keys = self.keys_of(&receiver);
            let frame = Bytes::from(frame.encode());
            // One timer for both steps: queueing, then the response.
            let exchange = async {
                match self.queue_command(&keys, frame).await {
                    Ok(Queued::Yes) => {}
                    Ok(Queued::NoInstance) => {
                        return Err(HandledError::unavailable(format!("no running instance serves command {receiver}")));
                    }
                    Ok(Queued::BacklogFull) => {
                        return Err(HandledError::unavailable(format!(
                            "{receiver} is busy ({} commands wait for an instance already); try again later",
                            self.config().command_backlog
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(command = %receiver, error = %e, "Redis did not take a command");
                        return Err(HandledError::unavailable(format!(
                            "Redis did not take the command to {receiver}; try again"
                        )));
                    }
                }
                let reply = (&mut pending.receive)
                    .await
                    .map_err(|_| HandledError::unavailable(format!("the connection to Redis was lost while waiting for {receiver}")))?;
                Envelope::from_bytes(reply).map_err(|e| {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(command = %receiver, error = %e, "the response is not an envelope");
                    HandledError::internal(format!("{receiver} answered with something that is not a response"))
                })
            };
            tokio::time::timeout_at(deadline, exchange)
                .await
                .unwrap_or_else(|_| Err(HandledError::timeout(format!("{receiver} did not answer within {timeout:?}"))))
        })
    }

    fn emit(&self, event: Envelope, timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            let what = if matches!(event.message, Message::Info { .. }) {
                "the info message"
            } else {
                "the event"
            };
            if !self.link.is_ready() {
                return Err(self.unavailable(format_args!("{what} was not published")));
            }
            let Some(stream) = layout::stream_of(self.prefix(), &event) else {
                tracing::debug!("a message with no event name reaches no subscription on Redis");
                return Ok(());
            };
            let bytes = outgoing_json(&event)?;
            self.append(&stream, &bytes, tokio::time::Instant::now() + timeout, what).await
        })
    }

    fn serve_command(
        &self,
        address: Arc<Address>,
        endpoint: Arc<dyn CommandEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            let owner = address.to_string();
            let source = commands::CommandSource::new(self.clone(), address, endpoint);
            let consumer = consumer::Consumer::start(&self.link, source, self.config().prefetch)
                .await
                .map_err(|e| Error::msg(format!("{owner} cannot start on Redis: {e}")))?;
            Ok(Box::new(consumer) as Box<dyn Registration>)
        })
    }

    fn subscribe(
        &self,
        route: SubscriptionRoute,
        endpoint: Arc<dyn SubscriptionEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        Box::pin(async move {
            let stream = layout::stream_for(self.prefix(), &route).map_err(Error::msg)?;
            let owner = route.name();
            let group = layout::group_of(&route);
            // Claimed for the registration's life: a durable group carries one filter.
            let claim = match (&group, route.durable) {
                (Some(group), true) => Some(self.durable_names.claim(group, &route)?),
                _ => None,
            };
            let cannot = |e: redis::RedisError| Error::msg(format!("subscription {owner} cannot start on Redis: {e}"));
            let concurrency = route.concurrency.max(1);
            let route = Arc::new(route);
            let registered: Box<dyn Registration> = match group {
                Some(group) if route.durable => {
                    let source = streams::Durable::new(self.clone(), route, endpoint, stream, group);
                    Box::new(consumer::Consumer::start(&self.link, source, concurrency).await.map_err(cannot)?)
                }
                Some(group) => {
                    let source = streams::Shared::new(self.clone(), endpoint, stream, group);
                    Box::new(consumer::Consumer::start(&self.link, source, concurrency).await.map_err(cannot)?)
                }
                None => {
                    let source = streams::EveryInstance::new(self.clone(), endpoint, stream).await.map_err(cannot)?;
                    Box::new(consumer::Consumer::start(&self.link, source, concurrency).await.map_err(cannot)?)
                }
            };
            Ok(match claim {
                Some(claim) => claim.holding(registered),
                None => registered,
            })
        })
    }

    fn is_ready(&self) -> bool {
        self.link.is_ready()
    }
}
