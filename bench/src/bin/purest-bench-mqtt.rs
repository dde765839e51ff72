//! MQTT figures, each side in its own process (see `bench/mqtt-side-by-side.sh`):
//!
//! - `serve` / `drive`: purest command round trip over MQTT 5 (`ServiceB.ping`, validated), 1
//!   and C calls in flight;
//! - `raw-serve` / `raw-drive`: the same bytes on the same topics with the same properties (the
//!   shared command subscription, responses to the caller's instance topic, PURISTA's user
//!   properties, correlation data), QoS 1 both ways, with plain rumqttc, no purest — the baseline;
//! - `durable`: events emitted (each waiting for its PUBACK) to a durable subscription on a
//!   persistent session, acknowledged after the handler, end to end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use purest::mqtt::{MqttBridge, MqttConfig};
use purest::prelude::*;
use purest::{Address, Envelope};
use purest_bench::load::{Load, report};
use purest_bench::{Ping, Pong, command_services};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::oneshot;

#[derive(Parser)]
#[command(about = "purest over MQTT 5: round trips, the raw rumqttc baseline, durable events")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// The MQTT broker.
    #[arg(long, global = true, default_value = "mqtt://127.0.0.1:1883")]
    url: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve `ServiceB.ping` until stopped.
    Serve,
    /// Call `ServiceB.ping` and print the figures.
    Drive(Load),
    /// Answer the same subscription with plain rumqttc.
    RawServe,
    /// Send the same command bytes with plain rumqttc.
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

async fn bridge(url: &str) -> Result<MqttBridge, Error> {
    MqttBridge::connect(MqttConfig::from_url(url)?).await
}

/// A plain client on the broker at `url` (host:port from the URL), its event loop returned.
fn raw_client(url: &str, id: &str) -> (AsyncClient, rumqttc::v5::EventLoop) {
    let address = url.trim_start_matches("mqtt://");
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "1883"));
    let mut options = MqttOptions::new(id, host, port.parse().unwrap_or(1883));
    options.set_max_packet_size(Some(1024 * 1024));
    // As purest sets it: without it a lone publish waits for the last one's TCP ack.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    AsyncClient::new(options, 1024)
}

/// The bench's command and response as purest sends them between `caller` (an instance id)
/// and ServiceB: bytes, topic and properties (without correlation data).
fn ping_messages(caller: &str) -> [(Bytes, String, PublishProperties); 2] {
    let (command, response) = purest_bench::ping_envelopes();
    let mut command = Envelope::from_bytes(command).expect("the bench command");
    let mut response = Envelope::from_bytes(response).expect("the bench response");
    command.sender = std::sync::Arc::new(Address {
        instance_id: Some(Name::new(caller)),
        ..(*command.sender).clone()
    });
    response.receiver = Some(command.sender.clone());
    [(command, Some(30)), (response, None)].map(|(envelope, expiry)| {
        let bytes = Bytes::from(envelope.to_json().expect("JSON"));
        let properties = purest::mqtt::layout::properties(&envelope, None, expiry);
        (bytes, purest::mqtt::layout::topic_of(&envelope), properties)
    })
}

#[tokio::main]
async fn main() -> purest::Result<()> {
    let args = Args::parse();
    let failed = |e: rumqttc::v5::ClientError| Error::msg(e.to_string());
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
            report("purest over MQTT", &load, move |seq| {
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
            let (client, mut events) = raw_client(&args.url, &format!("raw-serve-{}", Id::random()));
            client
                .subscribe(
                    "$share/sharedpurista/purista/command/+/+/+/+/+/+/+/+/service_b/1/ping",
                    QoS::AtLeastOnce,
                )
                .await
                .map_err(failed)?;
            println!("ready");
            // Made once per caller: the baseline sends prepared bytes.
            let mut prepared: Option<(String, (Bytes, String, PublishProperties))> = None;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(command))) => {
                        let Some(correlation) = command.properties.as_ref().and_then(|p| p.correlation_data.clone()) else {
                            continue;
                        };
                        // The caller's instance is the command's `senderInstanceId`.
                        let caller = command
                            .properties
                            .iter()
                            .flat_map(|p| &p.user_properties)
                            .find(|(key, _)| key == "senderInstanceId")
                            .map(|(_, value)| value.clone())
                            .unwrap_or_default();
                        if prepared.as_ref().is_none_or(|(known, _)| *known != caller) {
                            let [_, response] = ping_messages(&caller);
                            prepared = Some((caller, response));
                        }
                        let Some((_, (response, topic, properties))) = &prepared else {
                            continue;
                        };
                        let (response, topic, mut properties) = (response.clone(), topic.clone(), properties.clone());
                        properties.correlation_data = Some(correlation);
                        client
                            .publish_bytes_with_properties(topic, QoS::AtLeastOnce, false, response, properties)
                            .await
                            .map_err(failed)?;
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Error::msg(e.to_string())),
                }
            }
        }
        Mode::RawDrive(load) => {
            let instance = Id::random().to_string();
            let (client, mut events) = raw_client(&args.url, &instance);
            client
                .subscribe(
                    purest::topic::instance_filter(&instance, &purest::topic::Style::MQTT),
                    QoS::AtLeastOnce,
                )
                .await
                .map_err(failed)?;
            type Waiting = Arc<Mutex<HashMap<Bytes, oneshot::Sender<()>>>>;
            let waiting: Waiting = Arc::default();
            let dispatch = waiting.clone();
            tokio::spawn(async move {
                while let Ok(event) = events.poll().await {
                    if let Event::Incoming(Packet::Publish(reply)) = event
                        && let Some(id) = reply.properties.and_then(|p| p.correlation_data)
                        && let Some(done) = dispatch.lock().unwrap().remove(&id)
                    {
                        let _ = done.send(());
                    }
                }
            });
            let [(command, topic, properties), _] = ping_messages(&instance);
            report("raw rumqttc         ", &load, move |seq| {
                let (client, waiting, command, topic) = (client.clone(), waiting.clone(), command.clone(), topic.clone());
                let mut properties = properties.clone();
                async move {
                    let id = Bytes::from(seq.to_string());
                    let (done, answered) = oneshot::channel();
                    waiting.lock().unwrap().insert(id.clone(), done);
                    properties.correlation_data = Some(id);
                    client
                        .publish_bytes_with_properties(topic, QoS::AtLeastOnce, false, command, properties)
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
                "durable events over MQTT (persistent session)",
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
