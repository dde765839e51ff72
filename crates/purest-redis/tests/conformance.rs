//! The bridge conformance suite (`purest-bridge-tests`) against the real Redis on 127.0.0.1:6379
//! (or `PUREST_REDIS_URL`), under a key prefix of each case's own, and, for the restart
//! and crash cases, `redis-server`s of the cases' own on free ports (append-only file, fsynced
//! on every write). Without a server the cases skip, unless `PUREST_REQUIRE_BROKERS=1` (CI),
//! where they fail.

mod common;

use std::sync::Arc;

use futures::future::BoxFuture;
use purest_bridge_tests::redis_server::OwnRedis;
use purest_bridge_tests::{Features, Harness, OwnBroker, Wire};
use purest_core::Bridge;
use purest_redis::RedisBridge;

async fn connect(url: String, prefix: String) -> Arc<dyn Bridge> {
    Arc::new(RedisBridge::connect(common::config(&url, &prefix)).await.expect("connect to Redis")) as Arc<dyn Bridge>
}

impl Wire for common::RawClient {
    fn command(&self, service: &str, version: &str, command: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        let (service, version, command) = (service.to_owned(), version.to_owned(), command.to_owned());
        Box::pin(async move { common::RawClient::command(self, &service, &version, &command, bytes).await })
    }

    fn event(&self, event_name: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let event_name = event_name.to_owned();
        Box::pin(async move { common::RawClient::event(self, &event_name, bytes).await })
    }
}

async fn harness() -> Option<Harness> {
    let url = common::server()?;
    let prefix = common::unique_prefix();
    let features = Features {
        broker_counts_attempts: true,
        redelivery_timeout: Some(common::CLAIM_IDLE),
        ..Features::default()
    }
    .lacks(
        "bounded_queues",
        "Redis holds the backlog: each event stream is bounded by max_len (emits beyond it wait, then get 503 naming the durable subscription that holds it back), not by each subscription's queue_capacity",
    )
    .lacks(
        "per_key_ordering",
        "a subscription's deliveries run concurrently (up to its concurrency)",
    );
    let cleanup = Arc::new(common::RawClient::connect(&url, &prefix).await);
    let shared = {
        let (url, prefix) = (url.clone(), prefix.clone());
        move || connect(url.clone(), prefix.clone())
    };
    let harness = Harness::new("redis", shared)
        .with_features(features)
        .with_own_broker(
            || OwnRedis::start().map(|server| Box::new(server) as Box<dyn OwnBroker>),
            |url| connect(url, "purest".to_owned()),
        )
        .with_cleanup(move |_service| {
            let cleanup = cleanup.clone();
            async move { cleanup.delete_all().await }
        })
        .with_wire(common::RawClient::connect(&url, &prefix).await);
    Some(harness)
}

purest_bridge_tests::conformance_suite!(harness);
