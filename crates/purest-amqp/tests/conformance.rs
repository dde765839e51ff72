//! The bridge conformance suite (`purest-bridge-tests`) against the real RabbitMQ on
//! 127.0.0.1:5672 (or `PUREST_AMQP_URL`), and, for the restart and crash cases, RabbitMQ nodes of
//! the cases' own on free ports. Without a broker the cases skip, unless
//! `PUREST_REQUIRE_BROKERS=1` (CI), where they fail.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{text, url};
use futures::StreamExt;
use futures::future::BoxFuture;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use purest_amqp::{AmqpBridge, AmqpConfig};
use purest_bridge_tests::rabbitmq_node::OwnNode;
use purest_bridge_tests::{Features, Harness, OwnBroker, Wire};
use purest_core::{Bridge, Id};

async fn connect(url: String) -> Arc<dyn Bridge> {
    let config = AmqpConfig::from_url(&url).expect("an amqp:// URL");
    Arc::new(AmqpBridge::connect(config).await.expect("connect to RabbitMQ")) as Arc<dyn Bridge>
}

/// Raw bytes on PURISTA's exchange, with the headers a PURISTA service would send.
struct AmqpWire {
    _connection: Connection,
    channel: Channel,
    reply_queue: String,
    replies: tokio::sync::Mutex<lapin::Consumer>,
}

impl AmqpWire {
    async fn connect(url: &str) -> Self {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        // Responses reach it by a `replyTo` header binding, as PURISTA binds its reply queues.
        let (reply_queue, replies) = common::tap(&channel, &common::binding(&[("replyTo", "")])).await;
        AmqpWire {
            _connection: connection,
            channel,
            reply_queue,
            replies: tokio::sync::Mutex::new(replies),
        }
    }

    async fn publish(&self, headers: FieldTable, properties: BasicProperties, bytes: Vec<u8>) -> Result<(), String> {
        let confirm = self
            .channel
            .basic_publish(
                "purista".into(),
                "".into(),
                BasicPublishOptions::default(),
                &bytes,
                properties.with_headers(headers),
            )
            .await
            .map_err(|e| e.to_string())?;
        match confirm.await.map_err(|e| e.to_string())? {
            lapin::Confirmation::Nack(_) => Err("nacked".to_owned()),
            _ => Ok(()),
        }
    }
}

impl Wire for AmqpWire {
    fn command(&self, service: &str, version: &str, command: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        let mut headers = FieldTable::default();
        headers.insert("messageType".into(), text("command"));
        headers.insert("receiverServiceName".into(), text(service));
        headers.insert("receiverServiceVersion".into(), text(version));
        headers.insert("receiverServiceTarget".into(), text(command));
        Box::pin(async move {
            let correlation = Id::random().to_string();
            let properties = BasicProperties::default()
                .with_reply_to(self.reply_queue.clone().into())
                .with_correlation_id(correlation.clone().into());
            let mut replies = self.replies.lock().await;
            self.publish(headers, properties, bytes).await?;
            let wait = async {
                while let Some(Ok(reply)) = replies.next().await {
                    if reply.properties.correlation_id().as_ref().map(|id| id.as_str()) == Some(correlation.as_str()) {
                        return Ok(reply.data);
                    }
                }
                Err("the reply queue closed".to_owned())
            };
            tokio::time::timeout(Duration::from_secs(15), wait)
                .await
                .unwrap_or_else(|_| Err("no reply within 15 s".to_owned()))
        })
    }

    fn event(&self, event_name: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let mut headers = FieldTable::default();
        headers.insert("messageType".into(), text("customMessage"));
        headers.insert("eventName".into(), text(event_name));
        Box::pin(self.publish(headers, BasicProperties::default().with_delivery_mode(2), bytes))
    }
}

/// Deletes the durable queues of `service` on the shared broker (found with `rabbitmqctl`,
/// since AMQP cannot list queues).
async fn remove_queues_of(service: String) {
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "--quiet", "--no-table-headers", "name"])
        .output();
    let Ok(listed) = listed else { return };
    let prefix = format!("purista.sub.{service}.");
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return;
    }
    let Ok(connection) = Connection::connect(&url(), ConnectionProperties::default()).await else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for name in names {
            let _ = channel.queue_delete(name.into(), QueueDeleteOptions::default()).await;
        }
    }
    let _ = connection.close(200, "cleaned up".into()).await;
}

async fn harness() -> Option<Harness> {
    common::broker()?;
    let features = Features {
        broker_counts_attempts: true,
        ..Features::default()
    }
    .lacks(
        "redelivery_timeout",
        "RabbitMQ has no ack deadline to keep alive: an unacked delivery stays with its consumer until the consumer's channel closes (or the broker's consumer_timeout, 30 min by default, closes it)",
    )
    .lacks(
        "bounded_queues",
        "RabbitMQ keeps the queues; a durable queue holds what its subscriber has not taken, bounded by the broker's disk and memory alarms, not per subscription",
    )
    .lacks(
        "per_key_ordering",
        "a subscription's deliveries run concurrently (up to its concurrency)",
    );
    let harness = Harness::new("amqp", || connect(url()))
        .with_features(features)
        .with_own_broker(|| OwnNode::start().map(|node| Box::new(node) as Box<dyn OwnBroker>), connect)
        .with_wire(AmqpWire::connect(&url()).await)
        .with_cleanup(remove_queues_of);
    Some(harness)
}

purest_bridge_tests::conformance_suite!(harness);
