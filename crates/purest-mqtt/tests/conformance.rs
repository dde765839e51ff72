//! The bridge conformance suite (`purest-bridge-tests`) against the real Mosquitto on
//! 127.0.0.1:1883 (or `PUREST_MQTT_URL`), and, for the restart and crash cases, Mosquitto brokers
//! of the cases' own on free ports. Without a broker the cases skip, unless
//! `PUREST_REQUIRE_BROKERS=1` (CI), where they fail.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use purest_bridge_tests::mosquitto_broker::OwnMosquitto;
use purest_bridge_tests::{Features, Harness, OwnBroker, Wire};
use purest_core::Bridge;
use purest_mqtt::MqttBridge;

async fn connect(url: String) -> Arc<dyn Bridge> {
    Arc::new(MqttBridge::connect(common::config(&url)).await.expect("connect to the MQTT broker")) as Arc<dyn Bridge>
}

impl Wire for common::RawClient {
    fn command(&self, service: &str, version: &str, command: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        let topic = format!(
            "purista/command/none/none/{}/test/1/test/none/none/{}/{}/{}",
            self.instance,
            purest_core::topic::snake_case(service),
            purest_core::topic::snake_case(version),
            purest_core::topic::snake_case(command)
        );
        Box::pin(async move {
            let correlation = purest_core::Id::random().to_string();
            let mut replies = self.replies.lock().await;
            self.publish(&topic, Some(Bytes::from(correlation.clone())), bytes).await?;
            let wait = async {
                while let Some(reply) = replies.recv().await {
                    if reply.correlation.as_deref() == Some(correlation.as_bytes()) {
                        return Ok(reply.payload.to_vec());
                    }
                }
                Err("the raw client's connection closed".to_owned())
            };
            tokio::time::timeout(Duration::from_secs(15), wait)
                .await
                .unwrap_or_else(|_| Err("no reply within 15 s".to_owned()))
        })
    }

    fn event(&self, event_name: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let topic = format!(
            "purista/custom_message/none/none/none/x/1/x/{}/none/none/none/none",
            purest_core::topic::snake_case(event_name)
        );
        Box::pin(async move { self.publish(&topic, None, bytes).await })
    }
}

async fn harness() -> Option<Harness> {
    let url = common::broker()?;
    let features = Features::default()
        .lacks(
            "broker_counts_attempts",
            "MQTT marks a delivery sent again (DUP) but does not count them: after a crash it is attempt 2, however many crashes came before",
        )
        .lacks(
            "redelivery_timeout",
            "MQTT has no ack deadline: an unacknowledged delivery stays with its subscriber until its connection ends",
        )
        .lacks(
            "bounded_queues",
            "the broker queues for each session (Mosquitto: max_queued_messages, 1,000 by default, beyond which it drops QoS 1 messages without telling the publisher)",
        )
        .lacks(
            "per_key_ordering",
            "a subscription's deliveries run concurrently (up to its concurrency)",
        );
    let harness = Harness::new("mqtt", move || connect(url.clone()))
        .with_features(features)
        .with_own_broker(
            || OwnMosquitto::start().map(|broker| Box::new(broker) as Box<dyn OwnBroker>),
            connect,
        )
        .with_wire(common::RawClient::connect(&common::url()).await);
    Some(harness)
}

purest_bridge_tests::conformance_suite!(harness);
