//! The bridge conformance suite (`purest-bridge-tests`) against the real nats-server on
//! 127.0.0.1:4222 (or `PUREST_NATS_URL`). Without a server the cases skip, unless
//! `PUREST_REQUIRE_BROKERS=1` (CI), where they fail.

use std::sync::Arc;

use futures::StreamExt;

use purest_bridge_tests::Harness;
use purest_core::Bridge;
use purest_nats::{EVENT_STREAM, NatsBridge};

fn url() -> String {
    std::env::var("PUREST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
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
    let harness = Harness::new("nats", || async {
        Arc::new(NatsBridge::connect_url(&url()).await.expect("connect to NATS")) as Arc<dyn Bridge>
    })
    .with_cleanup(|service| async move {
        // Durable consumers outlive the case on the shared server; remove them.
        let bridge = NatsBridge::connect_url(&url()).await.expect("connect to NATS");
        let jetstream = async_nats::jetstream::new(bridge.client().clone());
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
