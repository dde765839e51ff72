//! Subscriptions: reading an event stream, three ways.
//!
//! - [`Durable`]: a consumer group per subscription; entries are acknowledged once settled,
//!   claimed from consumers that left them idle, kept fresh while their handler runs.
//! - [`Shared`]: a best-effort consumer group (`NOACK`): a service's instances share the events,
//!   nothing is kept pending.
//! - [`EveryInstance`]: a best-effort reader without a group, from where the stream stood when
//!   it subscribed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use purest_core::bridge::{Delivery, Malformed, Settlement, SubscriptionEndpoint, SubscriptionRoute, keep_alive};
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use crate::consumer::Source;
use crate::link::BLOCK;
use crate::{RedisBridge, scripts};

/// One stream entry as read.
#[derive(Debug)]
pub(crate) struct Entry {
    id: String,
    /// The `m` field: the envelope's JSON. `None` when the entry has no such field.
    payload: Option<Bytes>,
    /// The delivery count (1 for an entry read for the first time).
    attempt: u32,
}

impl Entry {
    /// The delivery handed to the core: the decoded message, or why the entry is not one.
    fn delivery(&self, attempt: u32) -> Delivery {
        match &self.payload {
            Some(bytes) => Delivery::decode_bytes(bytes.clone(), attempt),
            None => Delivery {
                message: Err(Malformed::new("the stream entry has no m field (the envelope's JSON)", b"")),
                attempt,
            },
        }
    }
}

/// A stream that is full of entries durable groups still need.
pub(crate) struct Full {
    pub length: i64,
    pub holder: String,
}

/// What the emit script answered.
pub(crate) fn emit_outcome(reply: Value) -> Result<(), Full> {
    let Value::Array(fields) = reply else { return Ok(()) };
    match fields.as_slice() {
        [Value::BulkString(status), length, holder] if status.as_slice() == b"full" => Err(Full {
            length: match length {
                Value::Int(n) => *n,
                _ => 0,
            },
            holder: match holder {
                Value::BulkString(name) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            },
        }),
        _ => Ok(()),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// The `m` field of an entry's field-value list.
fn payload_of(fields: Value) -> Option<Bytes> {
    let Value::Array(fields) = fields else { return None };
    let mut fields = fields.into_iter();
    while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
        if matches!(&field, Value::BulkString(name) if name.as_slice() == b"m") {
            return match value {
                Value::BulkString(bytes) => Some(Bytes::from(bytes)),
                _ => None,
            };
        }
    }
    None
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream (`nil` when nothing came).
fn read_entries(reply: Value) -> Vec<Entry> {
    let streams = match reply {
        Value::Array(streams) => streams,
        Value::Map(streams) => streams.into_iter().flat_map(|(key, entries)| [key, entries]).collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut items = streams.into_iter();
    while let Some(stream) = items.next() {
        // RESP2: [[key, entries], …]; RESP3 flattened above to key, entries, ….
        let entries = match stream {
            Value::Array(mut pair) if pair.len() == 2 => pair.pop().unwrap_or(Value::Nil),
            _ => items.next().unwrap_or(Value::Nil),
        };
        let Value::Array(entries) = entries else { continue };
        for entry in entries {
            let Value::Array(mut entry) = entry else { continue };
            if entry.len() != 2 {
                continue;
            }
            let fields = entry.pop().unwrap_or(Value::Nil);
            let Some(id) = text(&entry[0]) else { continue };
            out.push(Entry {
                id,
                payload: payload_of(fields),
                attempt: 1,
            });
        }
    }
    out
}

/// The entries the claim script took, and how many pending entries it found trimmed away.
fn claimed_entries(reply: Value) -> (Vec<Entry>, i64) {
    let Value::Array(mut parts) = reply else { return (Vec::new(), 0) };
    let deleted = match parts.pop() {
        Some(Value::Int(n)) => n,
        _ => 0,
    };
    let Some(Value::Array(claimed)) = parts.pop() else {
        return (Vec::new(), deleted);
    };
    let entries = claimed
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut entry) = entry else { return None };
            if entry.len() != 3 {
                return None;
            }
            let fields = entry.pop()?;
            let attempt = match entry[1] {
                Value::Int(n) => u32::try_from(n).unwrap_or(u32::MAX),
                _ => 1,
            };
            Some(Entry {
                id: text(&entry[0])?,
                payload: payload_of(fields),
                attempt,
            })
        })
        .collect();
    (entries, deleted)
}

/// `XREADGROUP` of up to `room` new entries, waiting at most [`BLOCK`].
fn read_group(
    mut connection: MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
    room: usize,
    no_ack: bool,
) -> BoxFuture<'static, redis::RedisResult<Vec<Entry>>> {
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(room)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64);
    if no_ack {
        read.arg("NOACK");
    }
    read.arg("STREAMS").arg(stream).arg(">");
    Box::pin(async move { Ok(read_entries(read.query_async(&mut connection).await?)) })
}

/// Creates `group` on `stream` (and the stream) unless it exists, reading from new entries on.
fn create_group(bridge: &RedisBridge, stream: &str, group: &str) -> BoxFuture<'static, redis::RedisResult<()>> {
    let mut create = redis::cmd("XGROUP");
    create.arg("CREATE").arg(stream).arg(group).arg("$").arg("MKSTREAM");
    let mut connection = bridge.link.shared();
    Box::pin(async move {
        match create.query_async::<()>(&mut connection).await {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            outcome => outcome,
        }
    })
}

/// Removes `consumer` from `group` if it holds no pending entries (they stay for another).
fn forget_consumer(bridge: &RedisBridge, stream: &str, group: &str, consumer: &str) -> BoxFuture<'static, ()> {
    let mut pending = redis::cmd("XPENDING");
    pending.arg(stream).arg(group).arg("-").arg("+").arg(1).arg(consumer);
    let mut forget = redis::cmd("XGROUP");
    forget.arg("DELCONSUMER").arg(stream).arg(group).arg(consumer);
    let mut connection = bridge.link.shared();
    Box::pin(async move {
        if let Ok(Value::Array(held)) = pending.query_async::<Value>(&mut connection).await
            && held.is_empty()
        {
            let _ = forget.query_async::<()>(&mut connection).await;
        }
    })
}

/// A durable subscription's consumer in its group.
pub(crate) struct Durable {
    bridge: RedisBridge,
    route: Arc<SubscriptionRoute>,
    endpoint: Arc<dyn SubscriptionEndpoint>,
    stream: Arc<str>,
    group: Arc<str>,
    consumer: Arc<str>,
    /// Entries being handled here, so a claim does not start one a second time.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Cancelled on close: deliveries waiting to be retried are left pending for the next consumer.
    retries: CancellationToken,
}

impl Durable {
    pub fn new(
        bridge: RedisBridge,
        route: Arc<SubscriptionRoute>,
        endpoint: Arc<dyn SubscriptionEndpoint>,
        stream: String,
        group: String,
    ) -> Self {
        Self {
            consumer: bridge.consumer_name().into(),
            bridge,
            route,
            endpoint,
            stream: stream.into(),
            group: group.into(),
            in_flight: Arc::default(),
            retries: CancellationToken::new(),
        }
    }

    /// The consumers left idle this long holding nothing are removed from the group.
    fn forget_after(&self) -> Duration {
        (self.bridge.config().claim_idle * 10).max(Duration::from_secs(60))
    }
}

impl Source for Durable {
    type Item = Entry;

    fn read(&self, connection: MultiplexedConnection, room: usize) -> BoxFuture<'static, redis::RedisResult<Vec<Entry>>> {
        read_group(connection, &self.stream, &self.group, &self.consumer, room, false)
    }

    fn handle(&self, entry: Entry) -> BoxFuture<'static, ()> {
        let fresh = self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(entry.id.clone());
        if !fresh {
            return Box::pin(async {});
        }
        Box::pin(settle(
            DurableDelivery {
                bridge: self.bridge.clone(),
                route: self.route.clone(),
                stream: self.stream.clone(),
                group: self.group.clone(),
                consumer: self.consumer.clone(),
                in_flight: self.in_flight.clone(),
                retries: self.retries.clone(),
            },
            self.endpoint.clone(),
            entry,
        ))
    }

    fn tick_every(&self) -> Duration {
        (self.bridge.config().claim_idle / 2).max(Duration::from_millis(50))
    }

    fn tick(&self, room: usize) -> BoxFuture<'static, Vec<Entry>> {
        if room == 0 {
            return Box::pin(async { Vec::new() });
        }
        let config = self.bridge.config();
        let mut call = scripts::evalsha(&scripts::CLAIM, &[&self.stream]);
        call.arg(&*self.group)
            .arg(&*self.consumer)
            .arg(config.claim_idle.as_millis() as u64)
            .arg(room)
            .arg(self.forget_after().as_millis() as u64);
        let (bridge, name, in_flight) = (self.bridge.clone(), self.route.name(), self.in_flight.clone());
        Box::pin(async move {
            let reply = match scripts::eval::<Value>(&mut bridge.link.shared(), &scripts::CLAIM, &call).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(subscription = %name, error = %e, "could not look for deliveries to claim");
                    return Vec::new();
                }
            };
            let (mut entries, deleted) = claimed_entries(reply);
            if deleted > 0 {
                bridge.stats.lost_to_trimming.fetch_add(deleted as u64, Ordering::Relaxed);
                tracing::error!(subscription = %name, deleted, "pending deliveries were trimmed from the stream before they were handled; they are lost");
            }
            let held = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|entry| !held.contains(&entry.id));
            if !entries.is_empty() {
                bridge.stats.claimed.fetch_add(entries.len() as u64, Ordering::Relaxed);
                tracing::info!(subscription = %name, claimed = entries.len(), "claimed deliveries another consumer had left idle");
            }
            entries
        })
    }

    fn prepare(&self) -> BoxFuture<'static, redis::RedisResult<()>> {
        create_group(&self.bridge, &self.stream, &self.group)
    }

    fn closing(&self) -> BoxFuture<'static, ()> {
        self.retries.cancel();
        Box::pin(async {})
    }

    fn closed(&self) -> BoxFuture<'static, ()> {
        forget_consumer(&self.bridge, &self.stream, &self.group, &self.consumer)
    }
}

/// What settling one durable delivery needs.
struct DurableDelivery {
    bridge: RedisBridge,
    route: Arc<SubscriptionRoute>,
    stream: Arc<str>,
    group: Arc<str>,
    consumer: Arc<str>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    retries: CancellationToken,
}

impl DurableDelivery {
    /// `XCLAIM` of the entry by this consumer: resets its idle time, so no other consumer claims
    /// it; with `count`, also sets its delivery count (a retry is a delivery).
    async fn reclaim(&self, id: &str, count: Option<u32>) {
        let mut claim = redis::cmd("XCLAIM");
        claim.arg(&*self.stream).arg(&*self.group).arg(&*self.consumer).arg(0).arg(id);
        if let Some(count) = count {
            claim.arg("RETRYCOUNT").arg(count);
        }
        claim.arg("JUSTID");
        if let Err(e) = claim.query_async::<()>(&mut self.bridge.link.shared()).await {
            tracing::debug!(subscription = %self.route.name(), error = %e, "a delivery could not be kept fresh");
        }
    }
}

/// Handles one durable entry: the core settles it; it is acknowledged once acked or
/// dead-lettered, retried here after the delay, and kept fresh all along.
async fn settle(delivery: DurableDelivery, endpoint: Arc<dyn SubscriptionEndpoint>, entry: Entry) {
    let keep_fresh = (delivery.bridge.config().claim_idle / 3).max(Duration::from_millis(20));
    let mut attempt = entry.attempt.max(1);
    let settled = keep_alive(
        async {
            loop {
                let handed = entry.delivery(attempt);
                if handed.message.is_err() {
                    delivery.bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
                match endpoint.clone().deliver(handed).await {
                    Settlement::Ack => return true,
                    Settlement::Reject => {
                        delivery.bridge.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    Settlement::Retry(delay) => {
                        delivery.bridge.stats.retried.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            // Closing: left pending, for the next consumer of the group.
                            () = delivery.retries.cancelled() => return false,
                        }
                        attempt += 1;
                        delivery.reclaim(&entry.id, Some(attempt)).await;
                    }
                }
            }
        },
        keep_fresh,
        || delivery.reclaim(&entry.id, None),
    )
    .await;
    if settled {
        let mut ack = redis::cmd("XACK");
        ack.arg(&*delivery.stream).arg(&*delivery.group).arg(&entry.id);
        if let Err(e) = ack.query_async::<()>(&mut delivery.bridge.link.shared()).await {
            tracing::warn!(subscription = %delivery.route.name(), error = %e, "a settled delivery could not be acknowledged; it will be delivered again");
        }
    }
    delivery.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&entry.id);
}

/// Hands a best-effort delivery to the core (which logs a failure; nothing is retried).
fn deliver_once(bridge: &RedisBridge, endpoint: &Arc<dyn SubscriptionEndpoint>, entry: Entry) -> BoxFuture<'static, ()> {
    let handed = entry.delivery(1);
    if handed.message.is_err() {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    let endpoint = endpoint.clone();
    Box::pin(async move {
        endpoint.deliver(handed).await;
    })
}

/// A best-effort subscription's consumer in the group its service's instances share.
pub(crate) struct Shared {
    bridge: RedisBridge,
    endpoint: Arc<dyn SubscriptionEndpoint>,
    stream: Arc<str>,
    group: Arc<str>,
    consumer: Arc<str>,
}

impl Shared {
    pub fn new(bridge: RedisBridge, endpoint: Arc<dyn SubscriptionEndpoint>, stream: String, group: String) -> Self {
        Self {
            consumer: bridge.consumer_name().into(),
            bridge,
            endpoint,
            stream: stream.into(),
            group: group.into(),
        }
    }
}

impl Source for Shared {
    type Item = Entry;

    fn read(&self, connection: MultiplexedConnection, room: usize) -> BoxFuture<'static, redis::RedisResult<Vec<Entry>>> {
        read_group(connection, &self.stream, &self.group, &self.consumer, room, true)
    }

    fn handle(&self, entry: Entry) -> BoxFuture<'static, ()> {
        deliver_once(&self.bridge, &self.endpoint, entry)
    }

    fn tick_every(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn tick(&self, _room: usize) -> BoxFuture<'static, Vec<Entry>> {
        Box::pin(async { Vec::new() })
    }

    fn prepare(&self) -> BoxFuture<'static, redis::RedisResult<()>> {
        create_group(&self.bridge, &self.stream, &self.group)
    }

    fn closing(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn closed(&self) -> BoxFuture<'static, ()> {
        forget_consumer(&self.bridge, &self.stream, &self.group, &self.consumer)
    }
}

/// A best-effort subscription of every instance: reads the stream itself, from the entry that
/// was last when it subscribed.
pub(crate) struct EveryInstance {
    bridge: RedisBridge,
    endpoint: Arc<dyn SubscriptionEndpoint>,
    stream: Arc<str>,
    last: String,
}

impl EveryInstance {
    /// Starts after the stream's current last entry (or at its start, when it has none yet).
    pub async fn new(bridge: RedisBridge, endpoint: Arc<dyn SubscriptionEndpoint>, stream: String) -> redis::RedisResult<Self> {
        let newest: Value = redis::cmd("XREVRANGE")
            .arg(&stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut bridge.link.shared())
            .await?;
        let last = match newest {
            Value::Array(entries) => entries
                .first()
                .and_then(|entry| match entry {
                    Value::Array(entry) => entry.first().and_then(text),
                    _ => None,
                })
                .unwrap_or_else(|| "0-0".to_owned()),
            _ => "0-0".to_owned(),
        };
        Ok(Self {
            bridge,
            endpoint,
            stream: stream.into(),
            last,
        })
    }
}

impl Source for EveryInstance {
    type Item = Entry;

    fn read(&self, mut connection: MultiplexedConnection, room: usize) -> BoxFuture<'static, redis::RedisResult<Vec<Entry>>> {
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(room)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&*self.stream)
            .arg(&self.last);
        Box::pin(async move { Ok(read_entries(read.query_async(&mut connection).await?)) })
    }

    fn advance(&mut self, entries: &[Entry]) {
        if let Some(last) = entries.last() {
            self.last.clone_from(&last.id);
        }
    }

    fn handle(&self, entry: Entry) -> BoxFuture<'static, ()> {
        deliver_once(&self.bridge, &self.endpoint, entry)
    }

    fn tick_every(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn tick(&self, _room: usize) -> BoxFuture<'static, Vec<Entry>> {
        Box::pin(async { Vec::new() })
    }

    fn prepare(&self) -> BoxFuture<'static, redis::RedisResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn closing(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn closed(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn replies_are_read_into_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("p:event:{x}"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("m"), bulk("{}")])]),
                Value::Array(vec![bulk("1-1"), Value::Array(vec![bulk("other"), bulk("x")])]),
            ]),
        ])]);
        let entries = read_entries(reply);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].id.as_str(), entries[0].payload.as_deref()), ("1-0", Some(&b"{}"[..])));
        assert!(entries[1].payload.is_none() && entries[1].delivery(1).message.is_err());
        assert!(read_entries(Value::Nil).is_empty());
        let claimed = Value::Array(vec![
            Value::Array(vec![Value::Array(vec![
                bulk("2-0"),
                Value::Int(3),
                Value::Array(vec![bulk("m"), bulk("{}")]),
            ])]),
            Value::Int(1),
        ]);
        let (entries, deleted) = claimed_entries(claimed);
        assert_eq!((entries[0].id.as_str(), entries[0].attempt, deleted), ("2-0", 3, 1));
    }
}
