//! Redis figures, each side in its own process (see `bench/redis-side-by-side.sh`):
//!
//! - `serve` / `drive`: purest command round trip over Redis (`ServiceB.ping`, validated), 1 and
//!   C calls in flight;
//! - `raw-serve` / `raw-drive`: the same bytes in the same keys with plain redis-rs, no purest —
//!   the baseline: the caller pushes the command frame on the command's list (`RPUSH`), the server
//!   takes frames with `BLMPOP` on a connection of its own and pushes the prepared response frame
//!   on the caller's reply list (`RPUSH` + `PEXPIRE`, one round trip), the caller takes its
//!   responses with `BLMPOP` and matches them by correlation id;
//! - `durable`: events appended to a stream and read by a durable subscription's consumer group,
//!   acknowledged after the handler, end to end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use purest::prelude::*;
use purest::redis::layout::{self, CommandFrame};
use purest::redis::{RedisBridge, RedisConfig, RedisSection};
use purest::{Address, Envelope};
use purest_bench::load::{Load, report};
use purest_bench::{Ping, Pong, command_services};
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;

#[derive(Parser)]
#[command(about = "purest over Redis: round trips, the raw redis-rs baseline, durable events")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// The Redis server.
    #[arg(long, global = true, default_value = "redis://127.0.0.1:6379")]
    url: String,
    /// The key prefix (the script gives each sitting its own).
    #[arg(long, global = true, default_value = "purest-bench")]
    prefix: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve `ServiceB.ping` until stopped.
    Serve,
    /// Call `ServiceB.ping` and print the figures.
    Drive(Load),
    /// Answer the same command list with plain redis-rs.
    RawServe,
    /// Send the same command frames with plain redis-rs.
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

async fn bridge(url: &str, prefix: &str) -> Result<RedisBridge, Error> {
    let section = RedisSection {
        key_prefix: Some(prefix.to_owned()),
        ..Default::default()
    };
    RedisBridge::connect(RedisConfig::from_url_and_section(url, &section)?).await
}

async fn connection(url: &str) -> Result<MultiplexedConnection, Error> {
    let client = redis::Client::open(url).map_err(|e| Error::msg(e.to_string()))?;
    let settings = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&settings)
        .await
        .map_err(|e| Error::msg(e.to_string()))
}

/// The bench's command and response bytes as purest sends them between `caller` and ServiceB.
fn ping_messages(caller: &str) -> (Bytes, Bytes) {
    let (command, response) = purest_bench::ping_envelopes();
    let mut command = Envelope::from_bytes(command).expect("the bench command");
    let mut response = Envelope::from_bytes(response).expect("the bench response");
    command.sender = Arc::new(Address {
        instance_id: Some(Name::new(caller)),
        ..(*command.sender).clone()
    });
    response.receiver = Some(command.sender.clone());
    let bytes = |envelope: &Envelope| Bytes::from(envelope.to_json().expect("JSON"));
    (bytes(&command), bytes(&response))
}

/// `BLMPOP` of up to 256 frames from `key`, waiting at most 1 s.
async fn take(connection: &mut MultiplexedConnection, key: &str) -> redis::RedisResult<Vec<Vec<u8>>> {
    let taken: Option<(String, Vec<Vec<u8>>)> = redis::cmd("BLMPOP")
        .arg(1)
        .arg(1)
        .arg(key)
        .arg("LEFT")
        .arg("COUNT")
        .arg(256)
        .query_async(connection)
        .await?;
    Ok(taken.map(|(_, frames)| frames).unwrap_or_default())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[tokio::main]
async fn main() -> purest::Result<()> {
    let args = Args::parse();
    let failed = |e: redis::RedisError| Error::msg(e.to_string());
    let service_b = Address::new("ServiceB", "1", "ping");
    match args.mode {
        Mode::Serve => {
            let b = command_services(true)
                .into_iter()
                .find(|s| s.name() == "ServiceB")
                .expect("ServiceB");
            let app = App::new().bridge(bridge(&args.url, &args.prefix).await?).service(b).start().await?;
            println!("ready");
            purest::host::shutdown_signal().await;
            app.shutdown().await;
        }
        Mode::Drive(load) => {
            let app = App::new().bridge(bridge(&args.url, &args.prefix).await?).start().await?;
            let client = app.client();
            report("purest over Redis", &load, move |seq| {
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
            let queue = layout::command_key(&args.prefix, &service_b);
            let mut reader = connection(&args.url).await?;
            let writer = connection(&args.url).await?;
            println!("ready");
            // Made once per caller: the baseline sends prepared bytes.
            let mut prepared: HashMap<String, Bytes> = HashMap::new();
            loop {
                let frames = take(&mut reader, &queue).await.map_err(failed)?;
                let mut replies = FuturesUnordered::new();
                for frame in frames {
                    let Some(frame) = CommandFrame::decode(Bytes::from(frame)) else {
                        continue;
                    };
                    let response = prepared
                        .entry(frame.reply_to.clone())
                        .or_insert_with(|| ping_messages(&frame.reply_to).1)
                        .clone();
                    let key = layout::reply_key(&args.prefix, &frame.reply_to);
                    let mut writer = writer.clone();
                    replies.push(async move {
                        redis::pipe()
                            .rpush(&key, layout::encode_reply(&frame.correlation, &response))
                            .ignore()
                            .pexpire(&key, 60_000)
                            .ignore()
                            .query_async::<()>(&mut writer)
                            .await
                    });
                }
                while let Some(sent) = replies.next().await {
                    sent.map_err(failed)?;
                }
            }
        }
        Mode::RawDrive(load) => {
            let instance = Id::random().to_string();
            let (queue, replies) = (
                layout::command_key(&args.prefix, &service_b),
                layout::reply_key(&args.prefix, &instance),
            );
            type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;
            let waiting: Waiting = Arc::default();
            let dispatch = waiting.clone();
            let mut reader = connection(&args.url).await?;
            tokio::spawn(async move {
                while let Ok(frames) = take(&mut reader, &replies).await {
                    for frame in frames {
                        if let Some((id, _)) = layout::decode_reply(Bytes::from(frame))
                            && let Some(done) = dispatch.lock().unwrap().remove(&id)
                        {
                            let _ = done.send(());
                        }
                    }
                }
            });
            let writer = connection(&args.url).await?;
            let (command, _) = ping_messages(&instance);
            report("raw redis-rs        ", &load, move |seq| {
                let (mut writer, waiting, command, queue, instance) =
                    (writer.clone(), waiting.clone(), command.clone(), queue.clone(), instance.clone());
                async move {
                    let id = seq.to_string();
                    let (done, answered) = oneshot::channel();
                    waiting.lock().unwrap().insert(id.clone(), done);
                    let frame = CommandFrame {
                        deadline_ms: now_ms() + 30_000,
                        reply_to: instance,
                        correlation: id,
                        payload: command,
                    };
                    redis::cmd("RPUSH")
                        .arg(&queue)
                        .arg(frame.encode())
                        .query_async::<()>(&mut writer)
                        .await
                        .expect("raw push");
                    answered.await.expect("raw reply");
                }
            })
            .await;
        }
        Mode::Durable { events, in_flight } => {
            let (subscriber, emitter) = (bridge(&args.url, &args.prefix).await?, bridge(&args.url, &args.prefix).await?);
            purest_bench::durable_events(
                "durable events over Redis (consumer group, XACK after the handler)",
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
