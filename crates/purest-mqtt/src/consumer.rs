//! A registration's own connection: one subscription (a command, or a subscription's filter),
//! its deliveries run in the connection's own task, at most `concurrency` at once. Subscribed
//! again on every ConnAck, session present or not: Mosquitto has been seen to forget a shared
//! subscription across a restart of its own although it reported the session present.
//!
//! - **Commands** are acknowledged as they arrive (rumqttc writes the acks with the next write):
//!   at most `concurrency` run, as many wait for a turn, and one beyond that is answered 503 at
//!   once. Their responses go out on the same connection, so a command is read, run and answered
//!   in one task, as a hand-written client would.
//! - **Subscriptions** acknowledge each delivery by hand once the core has settled it; the
//!   receive maximum bounds those taken ahead, and those beyond `concurrency` wait their turn.
//!
//! A delivery from a connection since lost is not acknowledged: the broker sends it again (a
//! kept session) or has dropped it (a session that ended with its connection).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use purest_core::Error;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnAck, DisconnectReasonCode, Packet, Publish, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, StateError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::connect::{self, MAX_BACKOFF, Session};

/// What a registration subscribes to and how.
pub(crate) struct Plan {
    /// `service/version/function`, for errors and logs.
    pub owner: String,
    pub session: Session,
    /// The one topic filter.
    pub filter: String,
    /// Deliveries handled at once; the rest of those taken ahead wait for a turn.
    pub concurrency: usize,
    /// For deliveries acked as they arrive (commands): answers one that arrives while every turn
    /// is taken and as many wait already (503), instead of running it.
    pub refuse: Option<Handle>,
}

/// One delivery as it came: what its handler needs.
pub(crate) struct Incoming {
    pub topic: Bytes,
    pub payload: Bytes,
    pub correlation: Option<Bytes>,
    /// The broker sent it before (a session resumed after a crash).
    pub redelivered: bool,
}

/// Publishes on the connection a delivery came on (a command's response).
#[derive(Clone)]
pub(crate) struct Replies {
    client: AsyncClient,
    /// The largest packet the broker accepts, and this bridge's limit.
    pub max_packet: u32,
}

/// A publish not sent, given back.
pub(crate) struct Unsent {
    pub topic: String,
    pub payload: Bytes,
    pub properties: PublishProperties,
}

impl Replies {
    /// Queues a QoS 1 publish without waiting; gives it back when the request queue is full or
    /// the connection gone.
    pub fn try_publish(&self, unsent: Unsent) -> Result<(), Box<Unsent>> {
        let Unsent {
            topic,
            payload,
            properties,
        } = unsent;
        match self
            .client
            .try_publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties)
        {
            Ok(()) => Ok(()),
            Err(rumqttc::v5::ClientError::TryRequest(rumqttc::v5::Request::Publish(publish))) => Err(Box::new(Unsent {
                topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                payload: publish.payload,
                properties: publish.properties.unwrap_or_default(),
            })),
            // rumqttc gives every refused publish back.
            Err(_) => Ok(()),
        }
    }
}

/// Runs one delivery: `true` to acknowledge it, `false` to leave it with the broker (a durable
/// delivery whose retry was cut short by a stop).
pub(crate) type Handle = std::sync::Arc<dyn Fn(Incoming, Replies, CancellationToken) -> BoxFuture<'static, bool> + Send + Sync>;

/// A running registration's connection.
pub(crate) struct Consumer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    /// Connects, subscribes, and returns once the broker granted the subscription.
    pub async fn start(config: &MqttConfig, plan: Plan, handle: Handle) -> Result<Self, Error> {
        let options = connect::options(config, &plan.session)?;
        // Room for an ack and a response per delivery taken ahead, and the subscription.
        let capacity = 2 * usize::from(plan.session.in_flight) + 64;
        let (client, events, connack) = connect::open_first(config, &options, capacity).await?;
        let _ = client.try_subscribe(plan.filter.clone(), QoS::AtLeastOnce);
        let (granted, on_grant) = oneshot::channel();
        let stop = CancellationToken::new();
        let run = Run {
            max_packet: config.max_packet_size,
            options,
            capacity,
            plan,
            handle,
            stop: stop.clone(),
            granted: Some(granted),
            running: FuturesUnordered::new(),
            waiting: VecDeque::new(),
            retries: CancellationToken::new(),
        };
        let task = tokio::spawn(run.consume(client, events, connack));
        match tokio::time::timeout(config.connect_timeout, on_grant).await {
            Ok(Ok(Ok(()))) => Ok(Self { stop, task }),
            Ok(Ok(Err(refused))) => {
                stop.cancel();
                Err(refused)
            }
            Ok(Err(_)) => Err(Error::msg("the MQTT subscription ended before the broker granted it")),
            Err(_) => {
                stop.cancel();
                Err(Error::msg(format!(
                    "the MQTT broker did not grant the subscription within {:?}",
                    config.connect_timeout
                )))
            }
        }
    }

    /// Stops taking deliveries, lets those running finish and acks them, then disconnects.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A delivery done: the connection it came on, its packet id, and whether to ack it.
type Done = (u64, u16, bool);

/// A connection's client and what it was opened with.
struct Connection {
    client: AsyncClient,
    /// Counts connections: a delivery is acked only on the one it came on.
    number: u64,
    replies: Replies,
}

struct Run {
    /// This bridge's packet size limit.
    max_packet: u32,
    options: rumqttc::v5::MqttOptions,
    capacity: usize,
    plan: Plan,
    handle: Handle,
    stop: CancellationToken,
    /// Told once the first subscription is granted (or refused).
    granted: Option<oneshot::Sender<Result<(), Error>>>,
    /// Deliveries being handled.
    running: FuturesUnordered<BoxFuture<'static, Done>>,
    /// Deliveries taken while every turn was taken, waiting for one.
    waiting: VecDeque<(Publish, u64)>,
    /// Retries waiting in running deliveries end on stop; the deliveries stay with the broker.
    retries: CancellationToken,
}

/// Why polling a connection ended.
enum Ended {
    Stopped,
    Lost(String),
    /// Another client connected with this durable session's id.
    TakenOver,
}

impl Run {
    fn connection(&self, client: AsyncClient, number: u64, connack: &ConnAck) -> Connection {
        let broker_max = connack.properties.as_ref().and_then(|p| p.max_packet_size).unwrap_or(u32::MAX);
        let replies = Replies {
            client: client.clone(),
            max_packet: broker_max.min(self.max_packet),
        };
        Connection { client, number, replies }
    }

    async fn consume(mut self, client: AsyncClient, mut events: EventLoop, connack: ConnAck) {
        let mut connection = self.connection(client, 0, &connack);
        loop {
            match self.poll(&connection, &mut events).await {
                Ended::Stopped => break,
                Ended::TakenOver => {
                    tracing::error!(
                        owner = %self.plan.owner,
                        client_id = %self.plan.session.client_id,
                        "another process took this durable subscription's MQTT session over; this instance stops consuming it. Give each instance its own client_id_prefix (PUREST_MQTT_CLIENT_ID_PREFIX)"
                    );
                    self.finish_running(None).await;
                    self.stop.cancelled().await;
                    return;
                }
                Ended::Lost(error) => {
                    tracing::info!(owner = %self.plan.owner, %error, "MQTT consumer lost; consuming again once the broker is back");
                }
            }
            // Taken on the lost connection: the broker sends them again (a kept session) or has
            // dropped them; commands, acked as they came, go unanswered (their callers get 504).
            self.waiting.clear();
            let mut backoff = Duration::from_millis(100);
            loop {
                // What runs keeps running meanwhile; its acks go nowhere.
                let opened = tokio::select! {
                    _ = self.stop.cancelled() => None,
                    opened = connect::open(&self.options, self.capacity, backoff.max(Duration::from_secs(1))) => Some(opened),
                    Some(_) = self.running.next(), if !self.running.is_empty() => continue,
                };
                match opened {
                    None => {
                        self.finish_running(None).await;
                        return;
                    }
                    Some(Ok((client, next_events, connack))) => {
                        let _ = client.try_subscribe(self.plan.filter.clone(), QoS::AtLeastOnce);
                        connection = self.connection(client, connection.number + 1, &connack);
                        events = next_events;
                        break;
                    }
                    Some(Err(refused)) => {
                        tracing::debug!(owner = %self.plan.owner, error = %refused.reason, "reconnecting to the MQTT broker failed; retrying");
                        let pause = tokio::time::sleep(backoff);
                        tokio::pin!(pause);
                        loop {
                            tokio::select! {
                                () = &mut pause => break,
                                _ = self.stop.cancelled() => break,
                                Some(_) = self.running.next(), if !self.running.is_empty() => {}
                            }
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        self.drain(&connection, &mut events).await;
    }

    /// Polls one connection until it fails or the registration stops.
    async fn poll(&mut self, connection: &Connection, events: &mut EventLoop) -> Ended {
        // Acked as they arrive, commands are not held back by the broker: as many as run may
        // wait for a turn, and one beyond that is refused at once. The connection is polled all
        // the while, so its pings, acks and responses keep going out.
        let refusing = !self.plan.session.manual_acks;
        loop {
            let limit = self.plan.concurrency.max(1);
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ended::Stopped,
                Some(done) = self.running.next(), if !self.running.is_empty() => {
                    self.settle(connection, done);
                    if self.running.len() < limit
                        && let Some((publish, number)) = self.waiting.pop_front()
                    {
                        self.start(publish, number, connection);
                    }
                }
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if self.running.len() < limit {
                            self.start(publish, connection.number, connection);
                        } else if !refusing || self.waiting.len() < limit {
                            // Hand-acked deliveries are bounded by the receive maximum.
                            self.waiting.push_back((publish, connection.number));
                        } else {
                            self.refuse(publish, connection);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => self.granted(&ack.return_codes),
                    Ok(_) => {}
                    Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                        reason_code: DisconnectReasonCode::SessionTakenOver,
                        ..
                    })) if self.plan.session.durable => return Ended::TakenOver,
                    Err(e) => return Ended::Lost(e.to_string()),
                },
            }
        }
    }

    /// Tells `start` how the first subscription went; later refusals are logged.
    fn granted(&mut self, codes: &[SubscribeReasonCode]) {
        let refused = codes.iter().find(|code| !matches!(code, SubscribeReasonCode::Success(_)));
        let outcome = match refused {
            None => Ok(()),
            Some(code) => Err(Error::msg(format!(
                "the MQTT broker refused the subscription {} of {} ({code:?}); does it allow shared subscriptions and this user to subscribe there?",
                self.plan.filter, self.plan.owner
            ))),
        };
        match self.granted.take() {
            Some(granted) => {
                let _ = granted.send(outcome);
            }
            None => {
                if let Err(e) = outcome {
                    tracing::error!(owner = %self.plan.owner, error = %e, "subscribing again failed");
                }
            }
        }
    }

    /// Starts handling a delivery that came on connection `number`.
    fn start(&mut self, publish: Publish, number: u64, connection: &Connection) {
        let handle = self.handle.clone();
        self.run(&handle, publish, number, connection);
    }

    /// Answers a delivery there is no room for with the plan's refusal.
    fn refuse(&mut self, publish: Publish, connection: &Connection) {
        if let Some(refuse) = self.plan.refuse.clone() {
            self.run(&refuse, publish, connection.number, connection);
        }
    }

    /// Runs `handle` on a delivery among those running.
    fn run(&mut self, handle: &Handle, publish: Publish, number: u64, connection: &Connection) {
        let packet_id = publish.pkid;
        let incoming = Incoming {
            topic: publish.topic,
            payload: publish.payload,
            correlation: publish.properties.and_then(|p| p.correlation_data),
            redelivered: publish.dup,
        };
        let work = handle(incoming, connection.replies.clone(), self.retries.clone());
        self.running.push(Box::pin(async move { (number, packet_id, work.await) }));
    }

    /// Acknowledges a hand-acked delivery that is done, on the connection it came on.
    fn settle(&self, connection: &Connection, (number, packet_id, ack): Done) {
        if ack && number == connection.number && self.plan.session.manual_acks {
            let mut publish = Publish::new("", QoS::AtLeastOnce, Bytes::new(), None);
            publish.pkid = packet_id;
            let _ = connection.client.try_ack(&publish);
        }
    }

    /// Lets what runs finish (retries cut short), acking on `connection` if given.
    async fn finish_running(&mut self, connection: Option<&Connection>) {
        self.retries.cancel();
        while let Some(done) = self.running.next().await {
            if let Some(connection) = connection {
                self.settle(connection, done);
            }
        }
    }

    /// After a stop: a command or best-effort subscription unsubscribes first (the broker sends
    /// the next ones to other instances) and handles what arrives until the broker confirms; a
    /// durable one keeps its subscription in its session and leaves new deliveries with the
    /// broker. Then what runs finishes and is acked, and the connection closes.
    async fn drain(&mut self, connection: &Connection, events: &mut EventLoop) {
        self.retries.cancel();
        self.waiting.clear();
        let limit = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut unsubscribed = self.plan.session.durable || connection.client.try_unsubscribe(self.plan.filter.clone()).is_err();
        while !(unsubscribed && self.running.is_empty()) {
            tokio::select! {
                () = tokio::time::sleep_until(limit) => break,
                Some(done) = self.running.next(), if !self.running.is_empty() => self.settle(connection, done),
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::UnsubAck(_))) => unsubscribed = true,
                    // Taken before the broker stopped sending: handled, not lost.
                    Ok(Event::Incoming(Packet::Publish(publish))) if !unsubscribed => self.start(publish, connection.number, connection),
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
        let _ = connection.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while events.poll().await.is_ok() {} }).await;
    }
}
