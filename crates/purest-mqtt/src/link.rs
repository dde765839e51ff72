//! The publishing connection and its upkeep. A [`Link`] holds the current [`Publisher`]: one
//! connection that publishes every command, response and event of the bridge, and takes the
//! responses addressed to this bridge's instance. A supervisor task polls it, hands each PUBACK
//! to the publish that waits for it, and after a loss answers every waiting publish and invoke
//! with 503 at once and connects again (a fresh client: nothing is replayed).
//!
//! rumqttc gives a publish its packet id only when it sends it, in the order of its request
//! queue; so each publish queues its waiter in the same order (under one lock), and the
//! supervisor pairs the n-th waiter with the n-th packet id it sees go out. The request queue
//! holds 1,024; a publish that finds it full waits within its deadline, then fails with 503.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use purest_core::Error;
use purest_core::replies::{self, PendingReplies};
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::connect::{self, MAX_BACKOFF, Session};
use crate::layout;

/// Invokes one bridge waits for at once; more wait (within their deadline) for a slot.
pub(crate) const MAX_PENDING_INVOKES: usize = 16_384;

/// Publishes queued in rumqttc's request channel at most; more wait (within their deadline).
const REQUEST_CAPACITY: usize = 1024;

/// Who hears of a publish's PUBACK.
pub(crate) enum Waiter {
    /// Nobody (a response).
    Nobody,
    /// An emit, whatever the reason.
    Emit(oneshot::Sender<PubAckReason>),
    /// An invoke, through its pending reply (by correlation id), only if the broker refused the
    /// command: a command that went out needs no second wake-up of its caller.
    Invoke(Box<str>),
}

/// Publishes waiting for their packet id, then for their PUBACK.
#[derive(Default)]
struct Waiters {
    /// In the order they were queued.
    unsent: VecDeque<Waiter>,
    /// Sent, by packet id.
    sent: HashMap<u16, Waiter>,
    /// False once the connection is lost: nothing more is queued on it.
    open: bool,
}

/// One live publishing connection.
pub(crate) struct Publisher {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    /// The largest packet the broker accepts (its ConnAck's maximum packet size), and ours.
    pub max_packet: u32,
}

/// Why a publish did not go out.
#[derive(Debug)]
pub(crate) enum NotSent {
    /// The message is larger than the broker (or this bridge's `max_packet_size`) accepts.
    TooLarge { size: usize, max: u32 },
    /// The connection is gone.
    Lost,
    /// The request queue stayed full until the deadline.
    Busy,
}

impl Publisher {
    /// Queues a QoS 1 publish, waiting for room in the request queue until `until`; `waiter`
    /// hears of its PUBACK.
    pub async fn publish(
        &self,
        topic: String,
        payload: Bytes,
        properties: PublishProperties,
        waiter: Waiter,
        until: tokio::time::Instant,
    ) -> Result<(), NotSent> {
        // Sizes are checked here: rumqttc drops the whole connection on an oversized publish.
        let rough =
            payload.len() + topic.len() + 512 + properties.user_properties.iter().map(|(k, v)| k.len() + v.len() + 5).sum::<usize>();
        if rough > self.max_packet as usize {
            let mut packet = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.clone(), Some(properties.clone()));
            packet.pkid = 1;
            let size = packet.size();
            if size > self.max_packet as usize {
                return Err(NotSent::TooLarge {
                    size,
                    max: self.max_packet,
                });
            }
        }
        let (mut topic, mut payload, mut properties) = (topic, payload, properties);
        let mut waiter = Some(waiter);
        loop {
            {
                // Waiter and publish are queued under one lock, so both queues keep one order.
                let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                if !waiters.open {
                    return Err(NotSent::Lost);
                }
                match self
                    .client
                    .try_publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties)
                {
                    Ok(()) => {
                        waiters.unsent.push_back(waiter.take().unwrap_or(Waiter::Nobody));
                        return Ok(());
                    }
                    Err(rumqttc::v5::ClientError::TryRequest(rumqttc::v5::Request::Publish(publish))) => {
                        topic = String::from_utf8_lossy(&publish.topic).into_owned();
                        payload = publish.payload;
                        properties = publish.properties.unwrap_or_default();
                    }
                    Err(_) => return Err(NotSent::Lost),
                }
            }
            // The request queue is full: the broker is slow to take what is queued.
            if tokio::time::Instant::now() >= until {
                return Err(NotSent::Busy);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// What an invoke hears: the response, or the broker's refusal of the command.
pub(crate) type Reply = Result<Bytes, PubAckReason>;

/// The size of a publish that would be larger than `max` bytes, else `None`. Checked before
/// sending: rumqttc drops the whole connection on an oversized publish.
pub(crate) fn oversize(topic: &str, payload: &Bytes, properties: &PublishProperties, max: u32) -> Option<usize> {
    let rough = payload.len() + topic.len() + 512 + properties.user_properties.iter().map(|(k, v)| k.len() + v.len() + 5).sum::<usize>();
    if rough <= max as usize {
        return None;
    }
    let mut packet = Publish::new(topic, QoS::AtLeastOnce, payload.clone(), Some(properties.clone()));
    packet.pkid = 1;
    Some(packet.size()).filter(|size| *size > max as usize)
}

/// Responses awaited, by correlation id.
pub(crate) type Pending = PendingReplies<Reply>;

/// The publishing connection, kept up by a supervisor task for as long as a [`Link`] is held.
pub(crate) struct Link {
    pub config: MqttConfig,
    /// This bridge's instance id: its responses come on its instance topic.
    pub instance: purest_core::Name,
    publishers: watch::Receiver<Option<Arc<Publisher>>>,
    /// Invokes waiting for their responses.
    pub pending: Arc<Pending>,
    /// Cancelled when the last handle goes: the supervisor disconnects and ends.
    closing: CancellationToken,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.closing.cancel();
    }
}

impl Link {
    /// Connects (retrying within the configured connect timeout) and starts the supervisor.
    pub async fn connect(config: MqttConfig) -> Result<Arc<Self>, Error> {
        let instance = purest_core::Id::random().to_string();
        let session = Session {
            client_id: format!("{}-{instance}", config.client_id_prefix),
            durable: false,
            in_flight: u16::MAX,
            manual_acks: false,
        };
        let options = connect::options(&config, &session)?;
        let (client, events, connack) = connect::open_first(&config, &options, REQUEST_CAPACITY).await?;
        let publisher = start(&config, &instance, client, &connack);
        let (publish, publishers) = watch::channel(Some(publisher.clone()));
        let pending = Arc::new(Pending::new(MAX_PENDING_INVOKES));
        let closing = CancellationToken::new();
        tokio::spawn(supervise(
            config.clone(),
            instance.clone(),
            options,
            publish,
            (publisher, events),
            pending.clone(),
            closing.clone(),
        ));
        Ok(Arc::new(Self {
            config,
            instance: purest_core::Name::new(&instance),
            publishers,
            pending,
            closing,
        }))
    }

    /// The current publisher, if connected.
    pub fn publisher(&self) -> Option<Arc<Publisher>> {
        self.publishers.borrow().clone()
    }
}

/// A publisher on a connection just opened, its response subscription queued.
fn start(config: &MqttConfig, instance: &str, client: AsyncClient, connack: &rumqttc::v5::mqttbytes::v5::ConnAck) -> Arc<Publisher> {
    let _ = client.try_subscribe(layout::response_subscription(instance), QoS::AtLeastOnce);
    let broker_max = connack.properties.as_ref().and_then(|p| p.max_packet_size).unwrap_or(u32::MAX);
    Arc::new(Publisher {
        client,
        waiters: Arc::new(Mutex::new(Waiters {
            open: true,
            ..Waiters::default()
        })),
        max_packet: broker_max.min(config.max_packet_size),
    })
}

/// Polls the connection until it is lost, then connects again; repeats until the link is dropped.
async fn supervise(
    config: MqttConfig,
    instance: String,
    options: rumqttc::v5::MqttOptions,
    publish: watch::Sender<Option<Arc<Publisher>>>,
    first: (Arc<Publisher>, EventLoop),
    pending: Arc<Pending>,
    closing: CancellationToken,
) {
    let (mut publisher, mut events) = first;
    loop {
        let error = tokio::select! {
            _ = closing.cancelled() => break,
            error = poll(&mut events, &publisher, &pending) => error,
        };
        // The connection is gone: nobody will answer what waits on it.
        publish.send_replace(None);
        {
            let mut waiters = publisher.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.open = false;
            waiters.unsent.clear();
            waiters.sent.clear();
        }
        pending.fail_all();
        tracing::warn!(broker = %config.shown(), %error, "MQTT connection lost; reconnecting");
        let mut backoff = Duration::from_millis(100);
        loop {
            let opened = tokio::select! {
                _ = closing.cancelled() => return,
                opened = connect::open(&options, REQUEST_CAPACITY, backoff.max(Duration::from_secs(1))) => opened,
            };
            match opened {
                Ok((client, next, connack)) => {
                    tracing::info!(broker = %config.shown(), "MQTT connected again");
                    purest_core::metrics::reconnected("mqtt");
                    publisher = start(&config, &instance, client, &connack);
                    events = next;
                    publish.send_replace(Some(publisher.clone()));
                    break;
                }
                Err(refused) => {
                    tracing::debug!(error = %refused.reason, "reconnecting to the MQTT broker failed; retrying");
                    tokio::select! {
                        _ = closing.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    if let Some(publisher) = publish.send_replace(None) {
        let _ = publisher.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), async { while events.poll().await.is_ok() {} }).await;
    }
}

/// Hands PUBACKs to their publishes and responses to their invokes until the connection fails;
/// returns why.
async fn poll(events: &mut EventLoop, publisher: &Publisher, pending: &Pending) -> String {
    loop {
        match events.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(packet_id))) => {
                let mut waiters = publisher.waiters.lock().unwrap_or_else(|e| e.into_inner());
                match waiters.unsent.pop_front() {
                    Some(Waiter::Nobody) | None => {}
                    Some(waiter) => {
                        waiters.sent.insert(packet_id, waiter);
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let waiter = publisher.waiters.lock().unwrap_or_else(|e| e.into_inner()).sent.remove(&ack.pkid);
                match waiter {
                    Some(Waiter::Emit(waiter)) => {
                        let _ = waiter.send(ack.reason);
                    }
                    Some(Waiter::Invoke(key)) if ack.reason != PubAckReason::Success => {
                        pending.deliver(&key, Err(ack.reason));
                    }
                    _ => {}
                }
            }
            Ok(Event::Incoming(Packet::Publish(response))) => hand_over(response, pending),
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|code| !matches!(code, rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)))
                {
                    tracing::error!(codes = ?ack.return_codes, "the broker refused the response subscription; invokes will time out");
                }
            }
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
    }
}

/// Hands a response to the invoke waiting for it: matched by `correlationData`, or by the body's
/// `correlationId` (PURISTA matches by the body).
fn hand_over(response: Publish, pending: &Pending) {
    let key = response
        .properties
        .as_ref()
        .and_then(|p| p.correlation_data.as_ref())
        .and_then(|data| std::str::from_utf8(data).ok().map(str::to_owned))
        .or_else(|| replies::correlation_id_in_body(&response.payload));
    let Some(key) = key else {
        tracing::warn!("a response without a correlation id was dropped");
        return;
    };
    if !pending.deliver(&key, Ok(response.payload)) {
        tracing::debug!(correlation_id = %key, "a response came after its invoke gave up");
    }
}
