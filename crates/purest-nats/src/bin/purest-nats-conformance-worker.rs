//! A durable subscriber in a process of its own, for the crash cases of the conformance suite:
//! it appends the number of every event it handles to a file, one per line, and prints `ready`
//! once its subscription is in place. It runs until SIGTERM (graceful) or SIGKILL (the test).
//!
//! Environment: `PUREST_BRIDGE` (a `nats://` URL), `WORKER_SERVICE`, `WORKER_EVENT`, `WORKER_OUT`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_core::prelude::*;
use purest_nats::NatsBridge;

async fn record(State(out): State<Arc<Mutex<std::fs::File>>>, Payload(seq): Payload<u64>) -> Result<(), Error> {
    // Slow enough that a kill lands in the middle of the stream.
    tokio::time::sleep(Duration::from_millis(1)).await;
    writeln!(out.lock().expect("output lock"), "{seq}")?;
    Ok(())
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let bridge = NatsBridge::connect_url(&env("PUREST_BRIDGE")).await?;
    let out = std::fs::OpenOptions::new().create(true).append(true).open(env("WORKER_OUT"))?;
    let service = Service::new(&env("WORKER_SERVICE"), "1")
        .state(Arc::new(Mutex::new(out)))
        .subscription(
            Subscription::new("record", record)
                .on_event(&env("WORKER_EVENT"))
                .durable()
                .concurrency(16),
        );
    let app = App::new().bridge(bridge).service(service).start().await?;
    println!("ready");
    purest_core::app::shutdown_signal().await;
    app.shutdown().await;
    Ok(())
}
