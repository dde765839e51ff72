//! Durable subscriptions on JetStream: one stream holds every event (custom messages and success
//! responses that name an event); each durable subscription is a durable pull consumer filtered to
//! its subject. The core settles each delivery; this module carries the settlement out: ack,
//! redeliver after a delay (`Nak`), or terminate once the core has dead-lettered it (`Term`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use async_nats::jetstream::{AckKind, Context};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use purest_core::Error;
use purest_core::bridge::{Delivery, Settlement, SubscriptionEndpoint, SubscriptionRoute, keep_alive};
use tokio_util::sync::CancellationToken;

use crate::NatsBridge;
use crate::subject::{PREFIX, subscription_subject};

/// The stream holding purest's (and PURISTA's) events.
pub const EVENT_STREAM: &str = "PURISTA_EVENTS";

/// How long JetStream waits for an ack before it redelivers, unless configured (a handler that
/// is still working must finish within this).
pub(crate) const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// How long one pull request stays open; also how long a stopping subscriber keeps handing back
/// what the server still sends it.
const PULL_EXPIRY: Duration = Duration::from_secs(1);

/// The event stream, created with `replicas` copies (one per server of a cluster, at most) if it
/// does not exist yet; an existing stream keeps the replicas it has.
pub(crate) async fn event_stream(jetstream: &Context, replicas: usize) -> Result<async_nats::jetstream::stream::Stream, Error> {
    if let Ok(stream) = jetstream.get_stream(EVENT_STREAM).await {
        let existing = stream.cached_info().config.num_replicas;
        if existing < replicas {
            tracing::warn!(
                stream = EVENT_STREAM,
                existing,
                configured = replicas,
                "the event stream exists with fewer replicas than configured; it keeps its own"
            );
        }
        return Ok(stream);
    }
    let config = StreamConfig {
        name: EVENT_STREAM.to_owned(),
        subjects: EVENT_TYPES.iter().map(|kind| format!("{PREFIX}.{kind}.>")).collect(),
        // Kept while any durable consumer still needs them.
        retention: RetentionPolicy::Interest,
        storage: StorageType::File,
        // Each durable consumer inherits the stream's replicas.
        num_replicas: replicas,
        ..Default::default()
    };
    match jetstream.create_stream(config).await {
        Ok(stream) => Ok(stream),
        // Another process created it at the same moment.
        Err(create) => jetstream
            .get_stream(EVENT_STREAM)
            .await
            .map_err(|_| Error::msg(format!("JetStream stream {EVENT_STREAM} is unavailable: {create}"))),
    }
}

/// The message types (subject tokens) that carry events and are kept in the stream. Commands
/// must never be: a stream capturing a request would answer it with its own acknowledgement.
const EVENT_TYPES: [&str; 2] = ["custom_message", "command_success_response"];

/// JetStream names allow letters, digits, `-` and `_`.
fn consumer_name(route: &SubscriptionRoute, kind: &str) -> String {
    let address = &route.address;
    let mut name = format!(
        "purest_{}_{}_{}",
        address.service_name, address.service_version, address.service_target
    );
    if route.every_instance {
        name.push('_');
        name.push_str(address.instance_id.as_deref().unwrap_or_default());
    }
    if kind != EVENT_TYPES[0] {
        name.push_str("__");
        name.push_str(kind);
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The durable consumers of a subscription, created on first use and found again after a
/// restart: one per event message type it can match (a consumer of the NATS 2.9 the machines run
/// filters on one subject only).
pub(crate) async fn consumers(
    jetstream: &Context,
    route: &SubscriptionRoute,
    ack_wait: Duration,
    stream_replicas: usize,
) -> Result<Vec<PullConsumer>, Error> {
    let stream = event_stream(jetstream, stream_replicas).await?;
    let filter = subscription_subject(&route.filter);
    let kinds: Vec<&str> = match filter.split('.').nth(1) {
        Some("*") => EVENT_TYPES.to_vec(),
        Some(kind) if EVENT_TYPES.contains(&kind) => vec![kind],
        _ => {
            return Err(Error::msg(format!(
                "durable subscription {} filters on a message type that is not an event; durable subscriptions take customMessage or commandSuccessResponse",
                route.address
            )));
        }
    };
    let mut consumers = Vec::new();
    for kind in kinds {
        let name = consumer_name(route, kind);
        let config = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("purest subscription {}", route.address)),
            filter_subject: config_subject(&filter, kind),
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            // Unlimited: the core counts attempts (from the delivery count) and dead-letters; a
            // dead letter that could not be published is delivered again, never dropped.
            max_deliver: -1,
            deliver_policy: DeliverPolicy::New,
            max_ack_pending: route.concurrency.max(1) as i64 * 4,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| Error::msg(format!("JetStream consumer {name} for {} is unavailable: {e}", route.address)))?;
        // An existing consumer keeps its filter: another subscription under this name (here or
        // in another process), or this one with a changed filter.
        let existing = &consumer.cached_info().config.filter_subject;
        if *existing != config_subject(&filter, kind) {
            return Err(route.filter_conflict(format_args!("JetStream consumer {name} filters on {existing}")));
        }
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// The subscription's subject with its message type token set to `kind`.
fn config_subject(filter: &str, kind: &str) -> String {
    let mut tokens: Vec<&str> = filter.split('.').collect();
    tokens[1] = kind;
    tokens.join(".")
}

/// Pulls, handles and settles messages until stopped; handlers in flight finish and are acked.
pub(crate) async fn consume(
    bridge: NatsBridge,
    consumer: PullConsumer,
    route: SubscriptionRoute,
    endpoint: Arc<dyn SubscriptionEndpoint>,
    stop: CancellationToken,
) {
    let pulling = consumer
        .stream()
        .expires(PULL_EXPIRY)
        .heartbeat(PULL_EXPIRY / 4)
        .max_messages_per_batch(route.concurrency.max(1))
        .messages()
        .await;
    let mut messages = match pulling {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(subscription = %route.address, error = %e, "cannot pull from JetStream");
            return;
        }
    };
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = stop.cancelled() => break,
            next = messages.next(), if running.len() < route.concurrency => match next {
                Some(Ok(message)) => running.push(deliver(&bridge, &route, &endpoint, message)),
                Some(Err(e)) => {
                    tracing::warn!(subscription = %route.address, error = %e, "JetStream pull failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                None => break,
            },
        }
    }
    // Stopping: the handlers in flight finish and settle. Messages the server still sends to the
    // pull request until it expires are handed back (for the next consumer, after the request
    // has expired), not left to wait for the ack timeout.
    let drain_until = tokio::time::Instant::now() + PULL_EXPIRY + Duration::from_millis(250);
    let mut pulling = true;
    while pulling || !running.is_empty() {
        tokio::select! {
            Some(()) = running.next(), if !running.is_empty() => {}
            next = tokio::time::timeout_at(drain_until, messages.next()), if pulling => match next {
                Ok(Some(Ok(message))) => {
                    // Handed back once, after this pull request has expired: a Nak without a
                    // delay would come straight back to the same request, again and again, each
                    // time counting as a delivery.
                    let _ = message.ack_with(AckKind::Nak(Some(drain_until - tokio::time::Instant::now() + PULL_EXPIRY))).await;
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => pulling = false,
            },
        }
    }
}

/// One delivery: the core handles it and says how to settle it; while the handler runs, the
/// delivery is kept alive (in-progress acks every half ack wait), so a slow handler is not
/// redelivered to a second consumer meanwhile.
async fn deliver(
    bridge: &NatsBridge,
    route: &SubscriptionRoute,
    endpoint: &Arc<dyn SubscriptionEndpoint>,
    message: async_nats::jetstream::Message,
) {
    let attempt = message.info().map(|info| info.delivered.max(1) as u32).unwrap_or(1);
    let delivery = Delivery::decode_bytes(message.payload.clone(), attempt);
    if delivery.message.is_err() {
        bridge.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
    let handling = endpoint.clone().deliver(delivery);
    let settlement = keep_alive(handling, bridge.ack_wait / 2, || async {
        if let Err(e) = message.ack_with(AckKind::Progress).await {
            tracing::warn!(subscription = %route.address, error = %e, "keeping a delivery alive failed; it may be delivered again");
        }
    })
    .await;
    let settled = match settlement {
        Settlement::Ack => message.ack().await,
        Settlement::Retry(delay) => {
            bridge.stats.retried.fetch_add(1, Ordering::Relaxed);
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
        Settlement::Reject => {
            bridge.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            message.ack_with(AckKind::Term).await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(subscription = %route.address, error = %e, "acknowledging to JetStream failed; the message may be delivered again");
    }
}
