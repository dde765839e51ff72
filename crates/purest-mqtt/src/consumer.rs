//! A registration's own connection: one subscription (a command, or a subscription's filter),
//! deliveries acknowledged by hand after they are handled, at most `in_flight` at once (the
//! receive maximum: the broker sends no more before an ack). Subscribed again on every ConnAck,
//! session present or not: Mosquitto has been seen to forget a shared subscription across a
//! restart of its own although it reported the session present.
//!
//! Each delivery runs in a task of its own; its ack goes back to the connection it came on (a
//! delivery from a connection since lost is not acked: the broker sends it again, or, for a
//! session that was not kept, has dropped it).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use purest_core::Error;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, StateError};
use tokio::sync::{mpsc, oneshot};
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
}

/// One delivery as it came: what its handler needs.
pub(crate) struct Incoming {
    pub topic: Bytes,
    pub payload: Bytes,
    pub correlation: Option<Bytes>,
    /// The broker sent it before (a session resumed after a crash).
    pub redelivered: bool,
}

/// Runs one delivery: `true` to acknowledge it, `false` to leave it with the broker (a durable
/// delivery whose retry was cut short by a stop).
pub(crate) type Handle = Arc<dyn Fn(Incoming, CancellationToken) -> BoxFuture<'static, bool> + Send + Sync>;

/// A running registration's connection.
pub(crate) struct Consumer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    /// Connects, subscribes, and returns once the broker granted the subscription.
    pub async fn start(config: &MqttConfig, plan: Plan, handle: Handle) -> Result<Self, Error> {
        let options = connect::options(config, &plan.session)?;
        let capacity = usize::from(plan.session.in_flight) + 64;
        let (client, events, _) = connect::open_first(config, &options, capacity).await?;
        let _ = client.try_subscribe(plan.filter.clone(), QoS::AtLeastOnce);
        let (granted, on_grant) = oneshot::channel();
        let stop = CancellationToken::new();
        let (done, finished) = mpsc::channel::<Done>(usize::from(plan.session.in_flight.max(1)) * 2);
        let turns = Arc::new(tokio::sync::Semaphore::new(plan.concurrency.max(1)));
        let run = Run {
            done,
            options,
            capacity,
            plan,
            handle,
            stop: stop.clone(),
            granted: Some(granted),
            turns,
        };
        let task = tokio::spawn(run.consume(client, events, finished));
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

/// What a delivery's task reports when done: the connection it came on, its packet id, and
/// whether to ack it.
type Done = (u64, u16, bool);

struct Run {
    /// Where deliveries' tasks report (bounded: twice the deliveries in flight).
    done: mpsc::Sender<Done>,
    options: rumqttc::v5::MqttOptions,
    capacity: usize,
    plan: Plan,
    handle: Handle,
    stop: CancellationToken,
    /// Told once the first subscription is granted (or refused).
    granted: Option<oneshot::Sender<Result<(), Error>>>,
    /// Turns to run a handler: the plan's concurrency.
    turns: Arc<tokio::sync::Semaphore>,
}

/// Why polling a connection ended.
enum Ended {
    Stopped,
    Lost(String),
    /// Another client connected with this durable session's id.
    TakenOver,
}

impl Run {
    async fn consume(mut self, mut client: AsyncClient, mut events: EventLoop, mut finished: mpsc::Receiver<Done>) {
        // Retries waiting in running tasks end on stop; the deliveries stay with the broker.
        let retries = CancellationToken::new();
        let mut running = 0usize;
        let mut connection = 0u64;
        loop {
            let ended = self
                .poll(&client, &mut events, connection, &mut finished, &mut running, &retries)
                .await;
            match ended {
                Ended::Stopped => break,
                Ended::TakenOver => {
                    tracing::error!(
                        owner = %self.plan.owner,
                        client_id = %self.plan.session.client_id,
                        "another process took this durable subscription's MQTT session over; this instance stops consuming it. Give each instance its own client_id_prefix (PUREST_MQTT_CLIENT_ID_PREFIX)"
                    );
                    self.stop.cancelled().await;
                    break;
                }
                Ended::Lost(error) => {
                    tracing::info!(owner = %self.plan.owner, %error, "MQTT consumer lost; consuming again once the broker is back");
                }
            }
            // Reconnect, still collecting what finishes meanwhile (acks to a lost connection go nowhere).
            let mut backoff = Duration::from_millis(100);
            loop {
                let opened = tokio::select! {
                    _ = self.stop.cancelled() => None,
                    opened = connect::open(&self.options, self.capacity, backoff.max(Duration::from_secs(1))) => Some(opened),
                    Some(_) = finished.recv() => { running -= 1; continue }
                };
                match opened {
                    None => {
                        retries.cancel();
                        while running > 0 && finished.recv().await.is_some() {
                            running -= 1;
                        }
                        return;
                    }
                    Some(Ok((next_client, next_events, _))) => {
                        let _ = next_client.try_subscribe(self.plan.filter.clone(), QoS::AtLeastOnce);
                        (client, events, connection) = (next_client, next_events, connection + 1);
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
                                Some(_) = finished.recv() => running -= 1,
                            }
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        self.drain(&client, &mut events, connection, &mut finished, running, &retries).await;
    }

    /// Polls one connection until it fails or the registration stops.
    #[allow(clippy::too_many_arguments)]
    async fn poll(
        &mut self,
        client: &AsyncClient,
        events: &mut EventLoop,
        connection: u64,
        finished: &mut mpsc::Receiver<Done>,
        running: &mut usize,
        retries: &CancellationToken,
    ) -> Ended {
        // Acked as they arrive (commands): the bound is a turn taken before the next read, so
        // what the broker sends waits in the socket, not in tasks.
        let gated = !self.plan.session.manual_acks;
        let mut turn: Option<tokio::sync::OwnedSemaphorePermit> = None;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Ended::Stopped,
                Some((from, packet_id, ack)) = finished.recv() => {
                    *running -= 1;
                    if ack && from == connection && self.plan.session.manual_acks {
                        let _ = client.try_ack(&ack_of(packet_id));
                    }
                }
                taken = self.turns.clone().acquire_owned(), if gated && turn.is_none() => turn = taken.ok(),
                event = events.poll(), if !gated || turn.is_some() => match event {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        *running += 1;
                        self.spawn(publish, connection, retries.clone(), turn.take());
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let refused = ack.return_codes.iter().find(|code| !matches!(code, SubscribeReasonCode::Success(_)));
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

    /// Runs a delivery in a task of its own, on `turn` or, without one, once it gets one.
    fn spawn(&self, publish: Publish, connection: u64, retries: CancellationToken, turn: Option<tokio::sync::OwnedSemaphorePermit>) {
        let done = self.done.clone();
        let packet_id = publish.pkid;
        let incoming = Incoming {
            topic: publish.topic,
            payload: publish.payload,
            correlation: publish.properties.and_then(|p| p.correlation_data),
            redelivered: publish.dup,
        };
        let (handle, turns) = (self.handle.clone(), self.turns.clone());
        tokio::spawn(async move {
            let turn = match turn {
                Some(turn) => Ok(turn),
                None => turns.acquire_owned().await,
            };
            let ack = match turn {
                Ok(_turn) => handle(incoming, retries).await,
                Err(_) => false,
            };
            let _ = done.send((connection, packet_id, ack)).await;
        });
    }

    /// After a stop: a command or best-effort subscription unsubscribes first (the broker sends
    /// the next ones to other instances) and handles what arrives until the broker confirms; a
    /// durable one keeps its subscription in its session and leaves new deliveries with the
    /// broker. Then what runs finishes and is acked, and the connection closes.
    async fn drain(
        &mut self,
        client: &AsyncClient,
        events: &mut EventLoop,
        connection: u64,
        finished: &mut mpsc::Receiver<Done>,
        mut running: usize,
        retries: &CancellationToken,
    ) {
        retries.cancel();
        let limit = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut unsubscribed = self.plan.session.durable || client.try_unsubscribe(self.plan.filter.clone()).is_err();
        while !(unsubscribed && running == 0) {
            tokio::select! {
                () = tokio::time::sleep_until(limit) => break,
                Some((from, packet_id, ack)) = finished.recv(), if running > 0 => {
                    running -= 1;
                    if ack && from == connection && self.plan.session.manual_acks {
                        let _ = client.try_ack(&ack_of(packet_id));
                    }
                }
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::UnsubAck(_))) => unsubscribed = true,
                    Ok(Event::Incoming(Packet::Publish(publish))) if !unsubscribed => {
                        // Taken before the broker stopped sending: handled, not lost.
                        running += 1;
                        self.spawn(publish, connection, retries.clone(), None);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while events.poll().await.is_ok() {} }).await;
    }
}

/// The packet a manual ack is made from: rumqttc needs only the QoS and the packet id.
fn ack_of(packet_id: u16) -> Publish {
    let mut publish = Publish::new("", QoS::AtLeastOnce, Bytes::new(), None);
    publish.pkid = packet_id;
    publish
}
