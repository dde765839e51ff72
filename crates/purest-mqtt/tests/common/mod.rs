//! What the MQTT tests share: the broker's URL, the skip-or-fail rule, the bridge settings of
//! the tests, and a raw rumqttc client to put bytes on PURISTA's topics and watch them.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use purest_mqtt::{MqttConfig, MqttSection};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{Mutex, mpsc};

/// The shared broker (`PUREST_MQTT_URL`, default the local Mosquitto).
pub fn url() -> String {
    std::env::var("PUREST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

/// The shared broker's URL; `None` (the test skips) when it is down, unless
/// `PUREST_REQUIRE_BROKERS=1`, where that fails the test.
pub fn broker() -> Option<String> {
    let url = url();
    let host = url.trim_start_matches("mqtt://").to_owned();
    if std::net::TcpStream::connect(&host).is_err() {
        assert_ne!(
            std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
            Ok("1"),
            "the MQTT broker is not reachable at {host}"
        );
        eprintln!("skipping: the MQTT broker is not reachable at {host}");
        return None;
    }
    Some(url)
}

/// The tests' bridge settings: durable sessions the cases leave behind expire after 5 minutes.
pub fn config(url: &str) -> MqttConfig {
    let section = MqttSection {
        session_expiry_s: Some(300),
        ..Default::default()
    };
    MqttConfig::from_url_and_section(url, &section).expect("an mqtt:// URL")
}

/// Waits (at most 15 s) for a message on `client`'s subscriptions that `wanted` accepts.
pub async fn receive(client: &RawClient, wanted: impl Fn(&Received) -> bool) -> Received {
    let mut replies = client.replies.lock().await;
    let wait = async {
        while let Some(received) = replies.recv().await {
            if wanted(&received) {
                return received;
            }
        }
        panic!("the raw client's connection closed")
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("the message within 15 s")
}

/// A message the raw client received.
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    pub correlation: Option<Bytes>,
    pub properties: Option<PublishProperties>,
}

/// A plain rumqttc client, as a PURISTA service or a device would be: it publishes QoS 1 with
/// PURISTA's properties and takes what comes to its subscriptions (its own instance topic).
pub struct RawClient {
    client: AsyncClient,
    /// The topic token of its instance: responses to its commands come there.
    pub instance: String,
    pub replies: Mutex<mpsc::Receiver<Received>>,
}

impl RawClient {
    /// Connects to `url`, subscribed to its instance topic.
    pub async fn connect(url: &str) -> Self {
        Self::subscribed(url, &[]).await
    }

    /// Connects to `url`, subscribed to its instance topic and `filters`.
    pub async fn subscribed(url: &str, filters: &[&str]) -> Self {
        let address = url.trim_start_matches("mqtt://");
        let (host, port) = address.rsplit_once(':').expect("host:port");
        // Letters only: the token is its own snake case, as a PURISTA instance id's token is.
        let instance: String = purest_core::Id::random().to_string()[..12]
            .chars()
            .map(|c| char::from(b'a' + c.to_digit(16).unwrap_or(0) as u8))
            .collect();
        let mut options = MqttOptions::new(instance.clone(), host, port.parse().expect("a port"));
        options
            .set_max_packet_size(Some(64 * 1024 * 1024))
            .set_keep_alive(Duration::from_secs(10));
        let (client, mut events) = AsyncClient::new(options, 64);
        client
            .subscribe(format!("purista/+/+/+/+/+/+/+/+/{instance}/+/+/+"), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await.expect("subscribe");
        }
        let (send, replies) = mpsc::channel(1024);
        let (subscribed, mut acked) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let received = Received {
                            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                            payload: publish.payload,
                            correlation: publish.properties.as_ref().and_then(|p| p.correlation_data.clone()),
                            properties: publish.properties,
                        };
                        let _ = send.try_send(received);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed.try_send(());
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if send.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        for _ in 0..=filters.len() {
            tokio::time::timeout(Duration::from_secs(10), acked.recv())
                .await
                .expect("the broker grants the raw client's subscriptions");
        }
        RawClient {
            client,
            instance,
            replies: Mutex::new(replies),
        }
    }

    /// Publishes `bytes` on `topic`, QoS 1, JSON, with `correlation` as correlation data.
    pub async fn publish(&self, topic: &str, correlation: Option<Bytes>, bytes: Vec<u8>) -> Result<(), String> {
        let properties = PublishProperties {
            content_type: Some("application/json".into()),
            correlation_data: correlation,
            message_expiry_interval: Some(30),
            ..Default::default()
        };
        self.publish_with(topic, properties, bytes).await
    }

    /// Publishes `bytes` on `topic`, QoS 1, with `properties`.
    pub async fn publish_with(&self, topic: &str, properties: PublishProperties, bytes: Vec<u8>) -> Result<(), String> {
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, bytes, properties)
            .await
            .map_err(|e| e.to_string())
    }
}
