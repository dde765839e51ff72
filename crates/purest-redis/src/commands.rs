//! One instance serving one command: it holds a lease on the command while it runs (so invokes
//! know someone serves it), takes waiting commands from the command's list as it has room, runs
//! them, and queues each response on its caller's reply list.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use purest_core::bridge::{CommandEndpoint, answer_command_bytes, encoded_response, error_response};
use purest_core::{Address, HandledError, Message};
use redis::aio::MultiplexedConnection;

use crate::consumer::Source;
use crate::layout::{self, CommandFrame};
use crate::link::BLOCK;
use crate::{RedisBridge, now_ms};

/// How long an instance's lease on a command lasts unless renewed: an instance that died stops
/// counting as serving after at most this long (callers get 504 meanwhile, then 503).
pub(crate) const LEASE: Duration = Duration::from_secs(10);

/// How long a command list outlives the last lease renewal of the instances serving it.
pub(crate) const ABANDONED_QUEUE_TTL: Duration = Duration::from_secs(600);

/// Reads and answers one command's queue.
pub(crate) struct CommandSource {
    bridge: RedisBridge,
    address: Arc<Address>,
    endpoint: Arc<dyn CommandEndpoint>,
    queue: Arc<str>,
    leases: Arc<str>,
    /// The name this instance's lease is held under.
    holder: Arc<str>,
}

impl CommandSource {
    pub fn new(bridge: RedisBridge, address: Arc<Address>, endpoint: Arc<dyn CommandEndpoint>) -> Self {
        let prefix = bridge.prefix();
        Self {
            queue: layout::command_key(prefix, &address).into(),
            leases: layout::serving_key(prefix, &address).into(),
            holder: bridge.consumer_name().into(),
            bridge,
            address,
            endpoint,
        }
    }

    /// Takes or renews this instance's lease (scored by this host's clock), dropping expired
    /// ones; the set outlives the longest lease in it, and the command list outlives it by
    /// [`ABANDONED_QUEUE_TTL`] (what waits there once every instance is gone goes then).
    fn renew_lease(&self) -> BoxFuture<'static, redis::RedisResult<()>> {
        let (now, lease) = (now_ms(), LEASE.as_millis() as u64);
        let mut renew = redis::pipe();
        renew
            .cmd("ZREMRANGEBYSCORE")
            .arg(&*self.leases)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZADD")
            .arg(&*self.leases)
            .arg(now + lease)
            .arg(&*self.holder)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&*self.leases)
            .arg(2 * lease)
            .arg("NX")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&*self.leases)
            .arg(2 * lease)
            .arg("GT")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&*self.queue)
            .arg(ABANDONED_QUEUE_TTL.as_millis() as u64)
            .ignore();
        let mut connection = self.bridge.link.shared();
        Box::pin(async move { renew.query_async(&mut connection).await })
    }
}

impl Source for CommandSource {
    type Item = Vec<u8>;

    fn read(&self, mut connection: MultiplexedConnection, room: usize) -> BoxFuture<'static, redis::RedisResult<Vec<Vec<u8>>>> {
        let mut read = redis::cmd("BLMPOP");
        read.arg(BLOCK.as_secs_f64())
            .arg(1)
            .arg(&*self.queue)
            .arg("LEFT")
            .arg("COUNT")
            .arg(room);
        Box::pin(async move {
            let taken: Option<(String, Vec<Vec<u8>>)> = read.query_async(&mut connection).await?;
            Ok(taken.map(|(_, frames)| frames).unwrap_or_default())
        })
    }

    fn handle(&self, frame: Vec<u8>) -> BoxFuture<'static, ()> {
        Box::pin(answer(self.bridge.clone(), self.address.clone(), self.endpoint.clone(), frame))
    }

    fn tick_every(&self) -> Duration {
        LEASE / 3
    }

    fn tick(&self, _room: usize) -> BoxFuture<'static, Vec<Vec<u8>>> {
        let renew = self.renew_lease();
        let address = self.address.clone();
        Box::pin(async move {
            if let Err(e) = renew.await {
                tracing::warn!(command = %address, error = %e, "the lease on a command could not be renewed");
            }
            Vec::new()
        })
    }

    fn prepare(&self) -> BoxFuture<'static, redis::RedisResult<()>> {
        self.renew_lease()
    }

    fn closing(&self) -> BoxFuture<'static, ()> {
        let (bridge, address) = (self.bridge.clone(), self.address.clone());
        let (queue, leases, holder) = (self.queue.clone(), self.leases.clone(), self.holder.clone());
        Box::pin(async move {
            let mut connection = bridge.link.shared();
            // Withdrawn first: from now on invokes hear at once that nobody serves the command.
            let withdrawn: redis::RedisResult<()> = redis::cmd("ZREM").arg(&*leases).arg(&*holder).query_async(&mut connection).await;
            if let Err(e) = withdrawn {
                tracing::warn!(command = %address, error = %e, "the lease on a command could not be withdrawn; it runs out within 10 s");
                return;
            }
            // The last instance to leave answers what still waits: nobody else will take it.
            let serving: redis::RedisResult<u64> = redis::cmd("ZCOUNT")
                .arg(&*leases)
                .arg(now_ms())
                .arg("+inf")
                .query_async(&mut connection)
                .await;
            if !matches!(serving, Ok(0)) {
                return;
            }
            let left: redis::RedisResult<Option<(String, Vec<Vec<u8>>)>> = redis::cmd("LMPOP")
                .arg(1)
                .arg(&*queue)
                .arg("LEFT")
                .arg("COUNT")
                .arg(bridge.config().command_backlog)
                .query_async(&mut connection)
                .await;
            let frames = left.ok().flatten().map(|(_, frames)| frames).unwrap_or_default();
            let refusal = HandledError::unavailable(format!("no running instance serves command {address}"));
            let refusal = encoded_response(error_response(&address, refusal), &address).map(|(_, bytes)| bytes);
            for frame in frames.into_iter().filter_map(|frame| CommandFrame::decode(Bytes::from(frame))) {
                if let Some(refusal) = &refusal
                    && let Err(e) = bridge.reply(&frame.reply_to, &frame.correlation, refusal).await
                {
                    tracing::warn!(command = %address, error = %e, "a waiting caller could not be told that the command stopped");
                }
            }
        })
    }

    fn closed(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Runs one queued command and queues its response for the caller.
async fn answer(bridge: RedisBridge, address: Arc<Address>, endpoint: Arc<dyn CommandEndpoint>, frame: Vec<u8>) {
    let Some(frame) = CommandFrame::decode(Bytes::from(frame)) else {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(command = %address, "a queued command is not a frame (no deadline, reply list and correlation id); dropped");
        return;
    };
    let left = frame.deadline_ms.saturating_sub(now_ms());
    if left == 0 {
        bridge.stats.expired.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(command = %address, "a command past its deadline was dropped unrun");
        return;
    }
    let (response, malformed) = answer_command_bytes(&endpoint, &address, frame.payload).await;
    if malformed {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    let Some((response, mut bytes)) = encoded_response(response, &address) else {
        return;
    };
    // A success that is an event is in its stream before the caller hears of it.
    if response.event_name.is_some()
        && matches!(response.message, Message::Success { .. })
        && let Some(stream) = layout::stream_of(bridge.prefix(), &response)
    {
        let until = tokio::time::Instant::now() + Duration::from_millis(left).max(bridge.config().op_timeout);
        if let Err(e) = bridge.append(&stream, &bytes, until, "the success event").await {
            tracing::warn!(command = %address, error = %e, "the success event was not recorded; the caller gets 503");
            let refusal = error_response(&address, HandledError::unavailable("the result could not be recorded; try again"));
            match encoded_response(refusal, &address) {
                Some((_, refused)) => bytes = refused,
                None => return,
            }
        }
    }
    if let Err(e) = bridge.reply(&frame.reply_to, &frame.correlation, &bytes).await {
        tracing::warn!(command = %address, error = %e, "the response could not be queued for its caller");
    }
}
