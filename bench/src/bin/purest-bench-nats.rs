//! NATS figures, each side in its own process (see `bench/nats-side-by-side.sh`):
//!
//! - `serve` / `drive`: purest command round trip over NATS (`ServiceB.ping`, validated), 1 and
//!   C calls in flight;
//! - `raw-serve` / `raw-drive`: the same bytes over plain async-nats request/reply, no purest —
//!   the baseline;
//! - `durable`: events emitted with JetStream acks and handled by a durable subscription (on a
//!   second connection) with acks, end to end.

use clap::{Parser, Subcommand};
use futures::StreamExt;
use purest::nats::NatsBridge;
use purest::prelude::*;
use purest_bench::load::{Load, report};
use purest_bench::telemetry::{BenchTelemetry, TelemetryMode};
use purest_bench::{Ping, Pong, command_services};

#[derive(Parser)]
#[command(about = "purest over NATS: round trips, the raw async-nats baseline, durable events")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// NATS server.
    #[arg(long, global = true, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// Telemetry on during the run (in `serve` and `drive`), to measure its cost.
    #[arg(long, global = true, value_enum, default_value = "off")]
    telemetry: TelemetryMode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve `ServiceB.ping` until stopped.
    Serve,
    /// Call `ServiceB.ping` and print the figures.
    Drive(Load),
    /// Answer the same subject with plain async-nats.
    RawServe,
    /// Send the same command bytes with plain async-nats.
    RawDrive(Load),
    /// Durable events end to end.
    Durable {
        /// Events to emit.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Emits in flight.
        #[arg(long, default_value_t = 64)]
        in_flight: u64,
    },
}

const SUBJECT: &str = "purista.command.empty.empty.empty.bench.1.drive.empty.empty.service_b.1.ping";

#[tokio::main]
async fn main() -> purest::Result<()> {
    let args = Args::parse();
    let telemetry = BenchTelemetry::start(args.telemetry, false);
    match args.mode {
        Mode::Serve => {
            let bridge = NatsBridge::connect_url(&args.url).await?;
            let b = command_services(true)
                .into_iter()
                .find(|s| s.name() == "ServiceB")
                .expect("ServiceB");
            let app = App::new().bridge(bridge).service(b).start().await?;
            println!("ready");
            purest::host::shutdown_signal().await;
            app.shutdown().await;
            println!("{}", telemetry.finish());
        }
        Mode::Drive(load) => {
            let app = App::new().bridge(NatsBridge::connect_url(&args.url).await?).start().await?;
            let client = app.client();
            report("purest over NATS ", &load, move |seq| {
                let client = client.clone();
                async move {
                    let pong: Pong = client.invoke(("ServiceB", "1", "ping"), Ping { seq }).await.expect("ping");
                    assert_eq!(pong.seq, seq);
                }
            })
            .await;
            app.shutdown().await;
            println!("# telemetry {:?}: {}", args.telemetry, telemetry.finish());
        }
        Mode::RawServe => {
            let client = async_nats::connect(&args.url).await.map_err(|e| Error::msg(e.to_string()))?;
            let (_, response) = purest_bench::ping_envelopes();
            let mut requests = client
                .queue_subscribe(
                    purest::nats::subject::command_subject(&Address::named("ServiceB", "1", "ping")),
                    "RAW".into(),
                )
                .await
                .map_err(|e| Error::msg(e.to_string()))?;
            client.flush().await.map_err(|e| Error::msg(e.to_string()))?;
            println!("ready");
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = client.publish(reply, response.clone()).await;
                }
            }
        }
        Mode::RawDrive(load) => {
            let client = async_nats::connect(&args.url).await.map_err(|e| Error::msg(e.to_string()))?;
            let (command, _) = purest_bench::ping_envelopes();
            report("raw async-nats    ", &load, move |_| {
                let (client, command) = (client.clone(), command.clone());
                async move {
                    client.request(SUBJECT, command).await.expect("raw request");
                }
            })
            .await;
        }
        Mode::Durable { events, in_flight } => {
            let (subscriber, emitter) = (NatsBridge::connect_url(&args.url).await?, NatsBridge::connect_url(&args.url).await?);
            purest_bench::durable_events("durable events over JetStream", subscriber, emitter, events, in_flight).await?;
        }
    }
    Ok(())
}
