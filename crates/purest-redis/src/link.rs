//! The bridge's connections to Redis. One multiplexed connection carries every short operation
//! (queueing commands and responses, batched by the [`Pusher`]; appending events, acknowledging,
//! claiming, leases); each
//! blocking reader (`BLMPOP`, `XREADGROUP … BLOCK`) gets a connection of its own, because Redis
//! answers a connection's commands in order and a blocked read would hold the others back.
//!
//! The link's own blocking reader takes the responses to this instance's invokes from its reply
//! list; it is also the link's health: while it cannot reach Redis the bridge is not ready, and
//! invokes and emits fail at once with 503 instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use purest_core::replies::PendingReplies;
use purest_core::{Error, Id};
use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use tokio_util::sync::CancellationToken;

use crate::config::RedisConfig;
use crate::layout;
use crate::pusher::Pusher;

/// How long one blocking read waits for something to arrive before it asks again: also how long
/// a closing reader may take to notice.
pub(crate) const BLOCK: Duration = Duration::from_secs(1);

/// Invokes waiting for responses at once, per bridge.
const PENDING_INVOKES: usize = 16 * 1024;

/// Responses taken from the reply list at once.
const REPLIES_AT_ONCE: usize = 512;

/// How long a reply list outlives the last response queued to it: an instance that is gone for
/// longer leaves nothing behind.
pub(crate) const REPLY_LIST_TTL: Duration = Duration::from_secs(60);

/// The connections of one bridge.
pub(crate) struct Link {
    pub config: RedisConfig,
    client: redis::Client,
    /// The short operations' connection (reconnects by itself after an I/O error).
    pub shared: ConnectionManager,
    /// This bridge's instance id: responses to its invokes go to its reply list.
    pub instance: String,
    /// Invokes waiting for their responses, by correlation id.
    pub pending: PendingReplies<Bytes>,
    /// Pushes commands and responses onto their lists, batched.
    pub pusher: Pusher,
    /// Whether the reply reader is connected.
    ready: AtomicBool,
    stop: CancellationToken,
}

impl Link {
    /// Connects (retrying within the connect timeout) and starts the reply reader.
    pub async fn connect(config: RedisConfig) -> Result<Arc<Self>, Error> {
        let client = config.client().map_err(|e| Error::msg(e.to_string()))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            .set_response_timeout(Some(config.op_timeout))
            // One attempt per call while Redis is away: the caller fails fast, the next call tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        let shared = loop {
            match client.get_connection_manager_with_config(manager.clone()).await {
                Ok(shared) => break shared,
                Err(e) if started.elapsed() + backoff < config.connect_timeout => {
                    tracing::debug!(redis = %config.shown(), error = %e, "Redis is not reachable yet; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(Error::msg(format!(
                        "cannot connect to Redis at {} within {:?}: {e}; is it running, and are the URL and credentials right?",
                        config.shown(),
                        config.connect_timeout
                    )));
                }
            }
        };
        let replies = Self::blocking_connection(&client, &config)
            .await
            .map_err(|e| Error::msg(format!("cannot open a second connection to Redis at {}: {e}", config.shown())))?;
        let link = Arc::new(Self {
            instance: Id::random().to_string(),
            client,
            pusher: Pusher::start(shared.clone(), config.op_timeout),
            shared,
            pending: PendingReplies::new(PENDING_INVOKES),
            ready: AtomicBool::new(true),
            stop: CancellationToken::new(),
            config,
        });
        tokio::spawn(read_replies(Arc::downgrade(&link), replies, link.stop.clone()));
        Ok(link)
    }

    /// Whether Redis is reachable.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A connection of its own for a blocking reader.
    pub async fn reader(&self) -> redis::RedisResult<MultiplexedConnection> {
        Self::blocking_connection(&self.client, &self.config).await
    }

    async fn blocking_connection(client: &redis::Client, config: &RedisConfig) -> redis::RedisResult<MultiplexedConnection> {
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            // A blocked read answers after BLOCK; longer than that, the connection is dead.
            .set_response_timeout(Some(BLOCK + config.op_timeout));
        client.get_multiplexed_async_connection_with_config(&settings).await
    }

    /// The short operations' connection.
    pub fn shared(&self) -> ConnectionManager {
        self.shared.clone()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Takes the responses from this instance's reply list and hands each to its invoke, until the
/// link is dropped. While Redis is unreachable the link is not ready and waiting invokes fail.
async fn read_replies(weak: std::sync::Weak<Link>, mut connection: MultiplexedConnection, stop: CancellationToken) {
    let Some(key) = weak
        .upgrade()
        .map(|link| layout::reply_key(&link.config.key_prefix, &link.instance))
    else {
        return;
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut read = redis::cmd("BLMPOP");
        read.arg(BLOCK.as_secs_f64())
            .arg(1)
            .arg(&key)
            .arg("LEFT")
            .arg("COUNT")
            .arg(REPLIES_AT_ONCE);
        let read = read.query_async::<Option<(String, Vec<Vec<u8>>)>>(&mut connection);
        let outcome = tokio::select! {
            outcome = read => outcome,
            () = stop.cancelled() => return,
        };
        let Some(link) = weak.upgrade() else { return };
        match outcome {
            Ok(taken) => {
                backoff = Duration::from_millis(50);
                for frame in taken.map(|(_, frames)| frames).unwrap_or_default() {
                    let delivered = layout::decode_reply(Bytes::from(frame))
                        .is_some_and(|(correlation, payload)| link.pending.deliver(&correlation, payload));
                    if !delivered {
                        // Its invoke gave up (a 504) or it is no frame: nobody waits for it.
                        tracing::debug!("a response nobody waits for was dropped");
                    }
                }
            }
            Err(e) => {
                if link.ready.swap(false, Ordering::AcqRel) {
                    tracing::warn!(redis = %link.config.shown(), error = %e, "lost the connection to Redis; reconnecting");
                }
                // The responses of invokes in flight may be lost with it: they fail now.
                link.pending.fail_all();
                let (client, config) = (link.client.clone(), link.config.clone());
                drop(link);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    if let Ok(reconnected) = Link::blocking_connection(&client, &config).await {
                        connection = reconnected;
                        break;
                    }
                }
                let Some(link) = weak.upgrade() else { return };
                link.ready.store(true, Ordering::Release);
                tracing::info!(redis = %link.config.shown(), "reconnected to Redis");
                purest_core::metrics::reconnected("redis");
            }
        }
    }
}
