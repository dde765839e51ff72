//! Durable subscriptions on RabbitMQ: a quorum queue per subscription (replicated, fsynced before
//! the publisher's confirm), consumed with manual acks and a prefetch of the subscription's
//! concurrency. The core settles each delivery; this module carries the settlement out.
//!
//! - **Attempts** come from the broker: a quorum queue counts the deliveries of a message that
//!   went back to it (a consumer died, a channel closed) in `x-delivery-count`, so a crash counts.
//! - **Retry after a delay**: RabbitMQ cannot hold a message back for a while, so the message is
//!   copied into a delay queue `<queue>.retry.<ms>ms` — a durable queue whose messages expire after
//!   at most `<ms>` and are then dead-lettered, by name through the default exchange, back to the
//!   subscription's queue — and the original is acked once the copy is confirmed. The copy
//!   carries `x-purest-attempts`, the attempts so far. There is one delay queue per distinct delay
//!   of the retry policy (`Retry::delay_after`), and each copy expires after its own jittered
//!   delay; a broker expires messages only at a queue's head, so a copy may wait up to its queue's
//!   delay, never longer.
//! - **Dead letters** are published by the core; the message is then rejected (dropped).

use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation};
use purest_core::Error;
use purest_core::bridge::{Retry, Settlement};

use crate::layout::{header, header_number, retry_queue, short};
use crate::link::Session;

/// The attempt number of a delivery from a durable subscription's queue (1 for the first).
pub(crate) fn attempt_of(properties: &BasicProperties) -> u32 {
    let before_delay = header_number(properties, header::ATTEMPTS).unwrap_or(0);
    let redelivered = header_number(properties, header::DELIVERY_COUNT).unwrap_or(0);
    u32::try_from(before_delay + redelivered + 1).unwrap_or(u32::MAX)
}

/// The arguments of a durable subscription's queue.
pub(crate) fn quorum_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    arguments
}

/// The distinct delays of a retry policy, in milliseconds, shortest first.
pub(crate) fn delays(retry: &Retry) -> Vec<u64> {
    let mut delays: Vec<u64> = (1..retry.max_attempts)
        .map(|attempt| retry.delay_after(attempt).as_millis().max(1) as u64)
        .collect();
    delays.dedup();
    delays
}

/// Declares the delay queues of `queue` for `retry`'s delays.
pub(crate) async fn declare_delay_queues(channel: &Channel, queue: &str, retry: &Retry) -> Result<(), Error> {
    for millis in delays(retry) {
        let name = short(retry_queue(queue, millis))?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis as i64));
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from("")));
        arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(LongString::from(queue)));
        channel
            .queue_declare(
                name.clone(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .map_err(|e| Error::msg(format!("cannot declare the retry delay queue {name}: {e}")))?;
    }
    Ok(())
}

/// Carries a durable delivery's settlement out. `attempt` is the delivery's attempt number.
pub(crate) async fn settle(
    session: &Session,
    queue: &str,
    retry: &Retry,
    delivery: AmqpDelivery,
    body: &[u8],
    attempt: u32,
    settlement: Settlement,
) -> Result<(), lapin::Error> {
    match settlement {
        Settlement::Ack => delivery.acker.ack(BasicAckOptions::default()).await.map(drop),
        Settlement::Reject => delivery.acker.reject(BasicRejectOptions { requeue: false }).await.map(drop),
        Settlement::Retry(delay) => {
            let bucket = delays(retry)
                .into_iter()
                .find(|bucket| u128::from(*bucket) >= delay.as_millis())
                .or_else(|| delays(retry).last().copied())
                .unwrap_or(1);
            match delay_copy(
                session,
                queue,
                bucket,
                &delivery.properties,
                body,
                attempt,
                delay.as_millis().max(1) as u64,
            )
            .await
            {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await.map(drop),
                Err(e) => {
                    // Back to the queue at once, counted as a delivery: better early than lost.
                    tracing::warn!(%queue, error = %e, "the retry could not be scheduled; the message goes back to its queue");
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await
                        .map(drop)
                }
            }
        }
    }
}

/// Publishes a copy of a delivery (`original`, `body`) to the delay queue for `bucket` ms, expiring after `delay_ms`,
/// and waits for the broker's confirm.
async fn delay_copy(
    session: &Session,
    queue: &str,
    bucket: u64,
    original: &BasicProperties,
    body: &[u8],
    attempt: u32,
    delay_ms: u64,
) -> Result<(), String> {
    let mut headers = FieldTable::default();
    if let Some(original) = original.headers() {
        for (key, value) in original.inner() {
            // The broker's bookkeeping of the original's life is not the copy's.
            let key_text = key.as_str();
            if key_text == header::DELIVERY_COUNT
                || key_text.starts_with("x-death")
                || key_text.starts_with("x-first-death")
                || key_text.starts_with("x-last-death")
            {
                continue;
            }
            headers.insert(key.clone(), value.clone());
        }
    }
    headers.insert(header::ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    let properties = original
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_expiration(delay_ms.min(bucket).to_string().into());
    let target = short(retry_queue(queue, bucket)).map_err(|e| e.to_string())?;
    let confirm = session
        .confirmed
        .basic_publish(
            "".into(),
            target,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?;
    match confirm.await.map_err(|e| e.to_string())? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err("the delay queue is missing".to_owned()),
        Confirmation::Nack(_) => Err("the broker refused the copy".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn attempts_add_the_delays_and_the_redeliveries() {
        let mut headers = FieldTable::default();
        assert_eq!(attempt_of(&BasicProperties::default().with_headers(headers.clone())), 1);
        headers.insert(header::DELIVERY_COUNT.into(), AMQPValue::LongLongInt(1));
        assert_eq!(attempt_of(&BasicProperties::default().with_headers(headers.clone())), 2);
        headers.insert(header::ATTEMPTS.into(), AMQPValue::LongLongInt(2));
        assert_eq!(attempt_of(&BasicProperties::default().with_headers(headers)), 4);
    }

    #[test]
    fn one_delay_queue_per_distinct_delay() {
        let retry = Retry::exponential(6)
            .backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(300));
        assert_eq!(delays(&retry), [100, 200, 300]);
        assert!(delays(&Retry::exponential(1)).is_empty());
    }
}
