//! The bridge conformance suite (`purest-bridge-tests`) against the real nats-server on
//! 127.0.0.1:4222 (or `PUREST_NATS_URL`), and, for the restart and crash cases, nats-servers of
//! the cases' own on free ports. Without a server the cases skip, unless
//! `PUREST_REQUIRE_BROKERS=1` (CI), where they fail.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

use purest_bridge_tests::nats_server::OwnServer;
use purest_bridge_tests::{Features, Harness, OwnBroker, Wire};
use purest_core::Bridge;
use purest_nats::subject::snake_case;
use purest_nats::{EVENT_STREAM, NatsBridge, NatsConfig};

fn url() -> String {
    std::env::var("PUREST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Short, so that the case of a handler outliving it runs in seconds.
const ACK_WAIT: Duration = Duration::from_millis(1000);

async fn connect(url: String) -> Arc<dyn Bridge> {
    let mut config = NatsConfig::from_url(&url).expect("a nats:// URL");
    config.ack_wait = Some(ACK_WAIT);
    Arc::new(NatsBridge::connect(config).await.expect("connect to NATS")) as Arc<dyn Bridge>
}

/// Raw bytes on PURISTA's subjects.
struct NatsWire(async_nats::Client);

impl Wire for NatsWire {
    fn command(&self, service: &str, version: &str, command: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        let subject = format!(
            "purista.command.empty.empty.empty.test.1.test.empty.empty.{}.{}.{}",
            snake_case(service),
            snake_case(version),
            snake_case(command)
        );
        Box::pin(async move {
            self.0
                .request(subject, bytes.into())
                .await
                .map(|reply| reply.payload.to_vec())
                .map_err(|e| e.to_string())
        })
    }

    fn event(&self, event_name: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let subject = format!(
            "purista.custom_message.empty.empty.empty.x.1.x.{}.empty.empty.empty.empty",
            snake_case(event_name)
        );
        Box::pin(async move {
            // Through JetStream, so the event is stored before the case goes on.
            let jetstream = async_nats::jetstream::new(self.0.clone());
            let ack = jetstream.publish(subject, bytes.into()).await.map_err(|e| e.to_string())?;
            ack.await.map(drop).map_err(|e| e.to_string())
        })
    }
}

async fn harness() -> Option<Harness> {
    if tokio::net::TcpStream::connect(url().trim_start_matches("nats://")).await.is_err() {
        assert_ne!(
            std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
            Ok("1"),
            "NATS is not reachable at {}",
            url()
        );
        eprintln!("skipping: NATS is not reachable at {}", url());
        return None;
    }
    let wire = async_nats::connect(url()).await.expect("connect to NATS");
    let features = Features {
        broker_counts_attempts: true,
        redelivery_timeout: Some(ACK_WAIT),
        ..Features::default()
    }
    .lacks(
        "bounded_queues",
        "JetStream keeps events on the server, bounded by the stream's limits, not per subscription",
    )
    .lacks(
        "per_key_ordering",
        "a subscription's deliveries run concurrently (up to its concurrency)",
    );
    let harness = Harness::new("nats", || connect(url()))
        .with_features(features)
        .with_own_broker(|| OwnServer::start().map(|server| Box::new(server) as Box<dyn OwnBroker>), connect)
        .with_wire(NatsWire(wire))
        .with_cleanup(|service| async move {
            // Durable consumers outlive the case on the shared server; remove them.
            let client = async_nats::connect(url()).await.expect("connect to NATS");
            let jetstream = async_nats::jetstream::new(client);
            if let Ok(stream) = jetstream.get_stream(EVENT_STREAM).await {
                let names: Vec<String> = stream.consumer_names().filter_map(|n| async move { n.ok() }).collect().await;
                for name in names.into_iter().filter(|n| n.starts_with(&format!("purest_{service}_"))) {
                    let _ = stream.delete_consumer(&name).await;
                }
            }
        });
    Some(harness)
}

purest_bridge_tests::conformance_suite!(harness);
