//! RabbitMQ figures, each side in its own process (see `bench/amqp-side-by-side.sh`):
//!
//! - `serve` / `drive`: purest command round trip over RabbitMQ (`ServiceB.ping`, validated), 1
//!   and C calls in flight;
//! - `raw-serve` / `raw-drive`: the same bytes on the same layout (headers exchange, command
//!   queue, a reply queue bound on `replyTo`) with plain lapin, no purest, no publisher confirms,
//!   no acks — the baseline;
//! - `durable`: events emitted with publisher confirms into a quorum queue and handled by a
//!   durable subscription (on a second connection) with acks, end to end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use purest::amqp::{AmqpBridge, AmqpConfig};
use purest::prelude::*;
use purest_bench::load::{Load, report};
use purest_bench::{Ping, Pong, command_services};
use tokio::sync::oneshot;

#[derive(Parser)]
#[command(about = "purest over RabbitMQ: round trips, the raw lapin baseline, durable events")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// RabbitMQ.
    #[arg(long, global = true, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve `ServiceB.ping` until stopped.
    Serve,
    /// Call `ServiceB.ping` and print the figures.
    Drive(Load),
    /// Answer the same queue with plain lapin.
    RawServe,
    /// Send the same command bytes with plain lapin.
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

fn failed(e: impl std::fmt::Display) -> Error {
    Error::msg(e.to_string())
}

async fn bridge(url: &str) -> Result<AmqpBridge, Error> {
    AmqpBridge::connect(AmqpConfig::from_url(url)?).await
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}

fn headers(pairs: &[(&str, &str)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert((*key).into(), text(value));
    }
    table
}

/// A channel on a new connection, with the `purista` exchange declared.
async fn channel(url: &str) -> Result<(Connection, Channel), Error> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await.map_err(failed)?;
    let channel = connection.create_channel().await.map_err(failed)?;
    channel
        .exchange_declare(
            "purista".into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    Ok((connection, channel))
}

/// Declares a queue (broker-named when `name` is empty), binds it on `binding` and consumes it
/// without acks.
async fn consume(channel: &Channel, name: &str, binding: FieldTable) -> Result<(ShortString, lapin::Consumer), Error> {
    let queue = channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                exclusive: name.is_empty(),
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    let queue = queue.name().clone();
    channel
        .queue_bind(queue.clone(), "purista".into(), "".into(), QueueBindOptions::default(), binding)
        .await
        .map_err(failed)?;
    let consumer = channel
        .basic_consume(
            queue.clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    Ok((queue, consumer))
}

#[tokio::main]
async fn main() -> purest::Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Serve => {
            let b = command_services(true)
                .into_iter()
                .find(|s| s.name() == "ServiceB")
                .expect("ServiceB");
            let app = App::new().bridge(bridge(&args.url).await?).service(b).start().await?;
            println!("ready");
            purest::host::shutdown_signal().await;
            app.shutdown().await;
        }
        Mode::Drive(load) => {
            let app = App::new().bridge(bridge(&args.url).await?).start().await?;
            let client = app.client();
            report("purest over RabbitMQ", &load, move |seq| {
                let client = client.clone();
                async move {
                    let pong: Pong = client.invoke(("ServiceB", "1", "ping"), Ping { seq }).await.expect("ping");
                    assert_eq!(pong.seq, seq);
                }
            })
            .await;
            app.shutdown().await;
        }
        Mode::RawServe => {
            let (_connection, channel) = channel(&args.url).await?;
            let binding = headers(&[
                ("x-match", "all"),
                ("messageType", "command"),
                ("receiverServiceName", "ServiceB"),
                ("receiverServiceVersion", "1"),
                ("receiverServiceTarget", "ping"),
            ]);
            let (_, mut commands) = consume(&channel, "purista.cmd.ServiceB.1.ping", binding).await?;
            let (_, response) = purest_bench::ping_envelopes();
            println!("ready");
            while let Some(Ok(command)) = commands.next().await {
                let (Some(reply_to), Some(correlation)) = (command.properties.reply_to(), command.properties.correlation_id()) else {
                    continue;
                };
                let properties = BasicProperties::default()
                    .with_correlation_id(correlation.clone())
                    .with_headers(headers(&[("replyTo", reply_to.as_str())]));
                let _ = channel
                    .basic_publish("purista".into(), "".into(), BasicPublishOptions::default(), &response, properties)
                    .await;
            }
        }
        Mode::RawDrive(load) => {
            let (_connection, channel) = channel(&args.url).await?;
            let (queue, mut replies) = consume(&channel, "", FieldTable::default()).await?;
            channel
                .queue_bind(
                    queue.clone(),
                    "purista".into(),
                    "".into(),
                    QueueBindOptions::default(),
                    headers(&[("x-match", "all"), ("replyTo", queue.as_str())]),
                )
                .await
                .map_err(failed)?;
            type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;
            let waiting: Waiting = Arc::default();
            let dispatch = waiting.clone();
            tokio::spawn(async move {
                while let Some(Ok(reply)) = replies.next().await {
                    if let Some(id) = reply.properties.correlation_id()
                        && let Some(done) = dispatch.lock().unwrap().remove(id.as_str())
                    {
                        let _ = done.send(());
                    }
                }
            });
            let (command, _) = purest_bench::ping_envelopes();
            let command_headers = headers(&[
                ("messageType", "command"),
                ("receiverServiceName", "ServiceB"),
                ("receiverServiceVersion", "1"),
                ("receiverServiceTarget", "ping"),
            ]);
            report("raw lapin           ", &load, move |seq| {
                let (channel, waiting, command, command_headers, queue) = (
                    channel.clone(),
                    waiting.clone(),
                    command.clone(),
                    command_headers.clone(),
                    queue.clone(),
                );
                async move {
                    let id = seq.to_string();
                    let (done, answered) = oneshot::channel();
                    waiting.lock().unwrap().insert(id.clone(), done);
                    let properties = BasicProperties::default()
                        .with_reply_to(queue)
                        .with_correlation_id(id.into())
                        .with_headers(command_headers);
                    channel
                        .basic_publish("purista".into(), "".into(), BasicPublishOptions::default(), &command, properties)
                        .await
                        .expect("raw publish");
                    answered.await.expect("raw reply");
                }
            })
            .await;
        }
        Mode::Durable { events, in_flight } => {
            let (subscriber, emitter) = (bridge(&args.url).await?, bridge(&args.url).await?);
            purest_bench::durable_events(
                "durable events over RabbitMQ (quorum queue)",
                subscriber,
                emitter,
                events,
                in_flight,
            )
            .await?;
        }
    }
    Ok(())
}
