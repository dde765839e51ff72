//! Presence: which services, instances, commands and subscriptions are alive on a bridge.
//!
//! Every running service instance announces itself with PURISTA's info messages, so PURISTA
//! tools and services see purest ones and the other way round:
//!
//! | `messageType` | when |
//! |---|---|
//! | `infoServiceInit` | the instance starts registering its commands and subscriptions |
//! | `infoServiceFunctionAdded` | once per command and subscription, with its schemas |
//! | `infoServiceReady` | everything is registered: the instance takes work |
//! | `infoServiceDrain` | shutdown began: no new work, work in flight finishes |
//! | `infoServiceShutdown` | the instance has stopped |
//!
//! Announcements are best effort (a failed one is logged, never fails the app) and not stored:
//! a tool that starts later would miss them. So every [`Host`](crate::Host) also answers purest's
//! own `infoServiceDiscover` (PURISTA ignores it) by announcing its running instances again; this
//! is what [`Presence::discover`] and `purest ps` send.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use purest_core::prelude::*;
//! use purest_core::presence::{Presence, State};
//! use purest_core::Bridge;
//!
//! async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let bridge: Arc<dyn Bridge> = Arc::new(MemoryBridge::new());
//! let app = Host::new()
//!     .shared_bridge(bridge.clone())
//!     .service(Service::new("health", "1").command(Command::new("ping", ping)))
//!     .start()
//!     .await?;
//! let mut presence = Presence::watch(bridge).await?;
//! presence.discover().await?;
//! let health = loop {
//!     let instance = presence.next().await.expect("the bridge delivers");
//!     if instance.state == State::Ready { break instance; }
//! };
//! assert_eq!((health.service.as_str(), health.commands[0].name.as_str()), ("health", "ping"));
//! presence.close().await;
//! app.shutdown().await;
//! # Ok::<_, purest_core::Error>(()) }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::bridge::{Bridge, Delivery, EventFilter, Registration, Retry, Settlement, SubscriptionEndpoint, SubscriptionRoute};
use crate::envelope::{Address, CONTENT_ENCODING_UTF8, CONTENT_TYPE_JSON, Envelope, Message};
use crate::error::Error;
use crate::id::Id;
use crate::name::Name;
use crate::service::Service;

/// The `messageType`s of the info messages purest sends and reads.
pub mod info {
    /// An instance starts registering.
    pub const SERVICE_INIT: &str = "infoServiceInit";
    /// An instance takes work.
    pub const SERVICE_READY: &str = "infoServiceReady";
    /// An instance cannot take work for now (sent by PURISTA; purest reads it).
    pub const SERVICE_NOT_READY: &str = "infoServiceNotReady";
    /// One command or subscription of an instance, with its metadata.
    pub const FUNCTION_ADDED: &str = "infoServiceFunctionAdded";
    /// An instance is draining before it stops.
    pub const SERVICE_DRAIN: &str = "infoServiceDrain";
    /// An instance has stopped.
    pub const SERVICE_SHUTDOWN: &str = "infoServiceShutdown";
    /// purest's own: every host announces its running instances again.
    pub const DISCOVER: &str = "infoServiceDiscover";
    /// What a presence watcher listens to.
    pub const WATCHED: [&str; 6] = [
        SERVICE_INIT,
        FUNCTION_ADDED,
        SERVICE_READY,
        SERVICE_NOT_READY,
        SERVICE_DRAIN,
        SERVICE_SHUTDOWN,
    ];
}

/// How long one announcement may wait for the bridge.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);

/// Info messages a watcher holds before the bridge has to wait for it.
const WATCH_BUFFER: usize = 1024;

/// What an instance is doing, as its last info message said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Registering its commands and subscriptions.
    Starting,
    /// Taking work.
    Ready,
    /// Not taking work for now.
    NotReady,
    /// Finishing its work before it stops.
    Draining,
    /// Stopped.
    Stopped,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::NotReady => "not ready",
            State::Draining => "draining",
            State::Stopped => "stopped",
        })
    }
}

/// One command or subscription an instance announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    /// The command's or subscription's name.
    pub name: String,
    /// `METHOD /api/v1/path` for a command exposed over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The event a command emits on success, or the one a subscription listens to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Whether a subscription is durable.
    #[serde(default)]
    pub durable: bool,
}

/// A running copy of a service, as its info messages describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// The service's name.
    pub service: String,
    /// The service's version.
    pub version: String,
    /// The instance's id.
    pub instance_id: String,
    /// What it is doing.
    pub state: State,
    /// Its commands, by name.
    pub commands: Vec<Function>,
    /// Its subscriptions, by name.
    pub subscriptions: Vec<Function>,
}

impl Instance {
    /// Moves to `state` unless the instance is already further along: info messages of different
    /// types may arrive out of order, and an instance never comes back from draining (a restart
    /// is a new instance).
    fn advance(&mut self, state: State) {
        let stage = |state: State| match state {
            State::Starting => 0,
            State::Ready | State::NotReady => 1,
            State::Draining => 2,
            State::Stopped => 3,
        };
        if stage(state) >= stage(self.state) {
            self.state = state;
        }
    }
}

/// What one service instance announces about itself: built once at start, sent again whenever
/// a tool asks.
pub(crate) struct Card {
    service: Address,
    /// Each command's and subscription's `infoServiceFunctionAdded` payload, by name.
    added: Vec<(Name, Value)>,
    /// The `infoServiceReady` payload: every function at once, so that a reader needs nothing
    /// else (messages of different types may arrive out of order).
    ready: Value,
}

impl Card {
    pub(crate) fn new(service: &Service, instance_id: &Name) -> Self {
        let address = Address {
            service_name: service.name.clone(),
            service_version: service.version.clone(),
            service_target: Name::new(""),
            instance_id: Some(instance_id.clone()),
        };
        let schema = |s: Option<&crate::handler::TypeSchema>| s.map_or(Value::Null, |s| s.json.clone());
        let mut added = Vec::with_capacity(service.commands.len() + service.subscriptions.len());
        let mut commands = Vec::with_capacity(service.commands.len());
        for command in &service.commands {
            let signature = &command.signature;
            let function = Function {
                name: command.name.to_string(),
                http: command
                    .http
                    .as_ref()
                    .map(|route| format!("{} /api/v{}/{}", route.method.as_str(), service.version, route.path)),
                event: command.success_event.as_deref().map(str::to_owned),
                durable: false,
            };
            let mut payload = json!({
                // PURISTA's shape: its HTTP server can add routes of remote services from it.
                "expose": {
                    "contentTypeRequest": CONTENT_TYPE_JSON,
                    "contentEncodingRequest": CONTENT_ENCODING_UTF8,
                    "contentTypeResponse": CONTENT_TYPE_JSON,
                    "contentEncodingResponse": CONTENT_ENCODING_UTF8,
                    "inputPayload": schema(signature.payload.as_ref()),
                    "parameter": schema(signature.params.as_ref()),
                    "outputPayload": if signature.output_is_unit { Value::Null } else { schema(signature.output.as_ref()) },
                    "deprecated": false,
                },
                "kind": "command",
            });
            merge(&mut payload, &function);
            added.push((command.name.clone(), payload));
            commands.push(function);
        }
        let mut subscriptions = Vec::with_capacity(service.subscriptions.len());
        for subscription in &service.subscriptions {
            let function = Function {
                name: subscription.name.to_string(),
                http: None,
                event: subscription.filter.event_name.as_deref().map(str::to_owned),
                durable: subscription.durable,
            };
            let mut payload = json!({"kind": "subscription"});
            merge(&mut payload, &function);
            added.push((subscription.name.clone(), payload));
            subscriptions.push(function);
        }
        Card {
            service: address,
            added,
            ready: json!({"commands": commands, "subscriptions": subscriptions}),
        }
    }

    fn message(&self, message_type: &str, target: Option<&Name>, payload: Option<&Value>) -> Envelope {
        let mut sender = self.service.clone();
        if let Some(target) = target {
            sender.service_target = target.clone();
        }
        Envelope::new(
            sender,
            Message::Info {
                message_type: message_type.into(),
                payload: payload.map(|p| Box::new(p.clone())),
            },
        )
    }

    /// Sends one info message about the whole instance.
    pub(crate) async fn announce(&self, bridge: &dyn Bridge, message_type: &str) {
        send(bridge, self.message(message_type, None, None)).await;
    }

    /// Sends one `infoServiceFunctionAdded` per command and subscription (what PURISTA reads),
    /// then `infoServiceReady` listing them all.
    pub(crate) async fn announce_functions(&self, bridge: &dyn Bridge) {
        for (name, payload) in &self.added {
            send(bridge, self.message(info::FUNCTION_ADDED, Some(name), Some(payload))).await;
        }
        self.announce_ready(bridge).await;
    }

    /// Sends `infoServiceReady` listing every command and subscription.
    pub(crate) async fn announce_ready(&self, bridge: &dyn Bridge) {
        send(bridge, self.message(info::SERVICE_READY, None, Some(&self.ready))).await;
    }
}

/// Adds a function's fields to an `infoServiceFunctionAdded` payload.
fn merge(payload: &mut Value, function: &Function) {
    if let (Some(payload), Ok(Value::Object(fields))) = (payload.as_object_mut(), serde_json::to_value(function)) {
        payload.extend(fields.into_iter().filter(|(key, _)| key != "name"));
    }
}

async fn send(bridge: &dyn Bridge, message: Envelope) {
    // Presence must never hold up a start or a shutdown: nothing is sent while disconnected.
    if !bridge.is_ready() {
        return;
    }
    if let Err(error) = bridge.emit(message, ANNOUNCE_TIMEOUT).await {
        tracing::debug!(%error, "a presence announcement was not sent");
    }
}

/// A route on `bridge` for one kind of info message, to every instance of `who`, best effort.
fn info_route(who: &Address, message_type: &str) -> SubscriptionRoute {
    SubscriptionRoute {
        address: Arc::new(Address {
            service_target: Name::new(message_type),
            ..who.clone()
        }),
        filter: EventFilter {
            message_type: Some(Name::new(message_type)),
            ..EventFilter::default()
        },
        durable: false,
        every_instance: true,
        retry: Retry::default(),
        concurrency: 1,
        queue_capacity: 16,
    }
}

/// A host's answer to `infoServiceDiscover`: its instances announce themselves again.
struct DiscoverResponder {
    bridge: Arc<dyn Bridge>,
    cards: Vec<Arc<Card>>,
}

impl SubscriptionEndpoint for DiscoverResponder {
    fn deliver(self: Arc<Self>, _delivery: Delivery) -> BoxFuture<'static, Settlement> {
        Box::pin(async move {
            for card in &self.cards {
                card.announce_ready(&*self.bridge).await;
            }
            Settlement::Ack
        })
    }
}

/// Subscribes a host's instances to `infoServiceDiscover` (a host without any needs not).
pub(crate) async fn answer_discovery(bridge: &Arc<dyn Bridge>, cards: Vec<Arc<Card>>) -> Result<Option<Box<dyn Registration>>, Error> {
    if cards.is_empty() {
        return Ok(None);
    }
    let host = Address {
        service_name: Name::new("purest-host"),
        service_version: Name::new("1"),
        service_target: Name::new(""),
        instance_id: Some(Id::random().to_string().into()),
    };
    let responder = Arc::new(DiscoverResponder {
        bridge: bridge.clone(),
        cards,
    });
    bridge.subscribe(info_route(&host, info::DISCOVER), responder).await.map(Some)
}

/// Hands each info message to the watcher's channel; a full channel makes the bridge wait.
struct Forward(mpsc::Sender<Arc<Envelope>>);

impl SubscriptionEndpoint for Forward {
    fn deliver(self: Arc<Self>, delivery: Delivery) -> BoxFuture<'static, Settlement> {
        Box::pin(async move {
            if let Ok(message) = delivery.message {
                let _ = self.0.send(message).await;
            }
            Settlement::Ack
        })
    }
}

/// Watches the info messages on a bridge and keeps the instances they describe.
pub struct Presence {
    bridge: Arc<dyn Bridge>,
    me: Address,
    registrations: Vec<Box<dyn Registration>>,
    messages: mpsc::Receiver<Arc<Envelope>>,
    instances: BTreeMap<(String, String, String), Instance>,
}

impl Presence {
    /// Starts listening to every info message on `bridge`.
    pub async fn watch(bridge: Arc<dyn Bridge>) -> Result<Self, Error> {
        let me = Address {
            service_name: Name::new("purest-presence"),
            service_version: Name::new("1"),
            service_target: Name::new(""),
            instance_id: Some(Id::random().to_string().into()),
        };
        let (tx, messages) = mpsc::channel(WATCH_BUFFER);
        let forward = Arc::new(Forward(tx));
        let mut registrations = Vec::with_capacity(info::WATCHED.len());
        for message_type in info::WATCHED {
            match bridge.subscribe(info_route(&me, message_type), forward.clone()).await {
                Ok(registration) => registrations.push(registration),
                Err(error) => {
                    for registration in registrations {
                        registration.close().await;
                    }
                    return Err(error);
                }
            }
        }
        Ok(Presence {
            bridge,
            me,
            registrations,
            messages,
            instances: BTreeMap::new(),
        })
    }

    /// Asks every running purest host to announce its instances again.
    pub async fn discover(&self) -> Result<(), Error> {
        let ask = Envelope::new(
            self.me.clone(),
            Message::Info {
                message_type: info::DISCOVER.into(),
                payload: None,
            },
        );
        self.bridge.emit(ask, ANNOUNCE_TIMEOUT).await.map_err(|e| {
            Error::msg(format!(
                "cannot ask for announcements on the {} bridge: {}",
                self.bridge.name(),
                e.message
            ))
        })
    }

    /// Waits for the next info message, applies it and returns the instance it concerns (as it
    /// is now); `None` once the bridge has stopped delivering.
    pub async fn next(&mut self) -> Option<Instance> {
        loop {
            let message = self.messages.recv().await?;
            if let Some(instance) = self.apply(&message) {
                return Some(instance.clone());
            }
        }
    }

    /// Applies an info message; `None` for one that names no instance.
    fn apply(&mut self, message: &Envelope) -> Option<&Instance> {
        let Message::Info { message_type, payload } = &message.message else {
            return None;
        };
        let sender = &message.sender;
        let instance_id = sender.instance_id.as_deref().or(message.instance_id.as_deref())?;
        let key = (
            sender.service_name.to_string(),
            sender.service_version.to_string(),
            instance_id.to_owned(),
        );
        let instance = self.instances.entry(key).or_insert_with(|| Instance {
            service: sender.service_name.to_string(),
            version: sender.service_version.to_string(),
            instance_id: instance_id.to_owned(),
            state: State::Starting,
            commands: Vec::new(),
            subscriptions: Vec::new(),
        });
        let payload = payload.as_deref().unwrap_or(&Value::Null);
        match &**message_type {
            info::SERVICE_INIT => instance.advance(State::Starting),
            info::SERVICE_READY => {
                instance.advance(State::Ready);
                // purest lists every function here; PURISTA sends no payload.
                for (key, list) in [("commands", &mut instance.commands), ("subscriptions", &mut instance.subscriptions)] {
                    if let Some(Ok(functions)) = payload.get(key).map(Vec::<Function>::deserialize) {
                        *list = functions;
                    }
                }
            }
            info::SERVICE_NOT_READY => instance.advance(State::NotReady),
            info::SERVICE_DRAIN => instance.advance(State::Draining),
            info::SERVICE_SHUTDOWN => instance.advance(State::Stopped),
            info::FUNCTION_ADDED => {
                let text = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_owned);
                let function = Function {
                    name: sender.service_target.to_string(),
                    http: text("http"),
                    event: text("event"),
                    durable: payload.get("durable").and_then(Value::as_bool).unwrap_or(false),
                };
                // PURISTA sends this for commands only, without a `kind`.
                let list = match payload.get("kind").and_then(Value::as_str) {
                    Some("subscription") => &mut instance.subscriptions,
                    _ => &mut instance.commands,
                };
                match list.iter_mut().find(|known| known.name == function.name) {
                    Some(known) => *known = function,
                    None => {
                        list.push(function);
                        list.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                }
            }
            _ => {}
        }
        Some(instance)
    }

    /// Every instance heard of so far, by service, version and id.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    /// Stops listening.
    pub async fn close(self) {
        for registration in self.registrations {
            registration.close().await;
        }
    }

    /// The instances on `bridge` that answer within `wait`: listens, asks every host to announce
    /// itself, collects the answers for `wait`, and returns the instances not stopped.
    pub async fn list(bridge: Arc<dyn Bridge>, wait: Duration) -> Result<Vec<Instance>, Error> {
        let mut presence = Presence::watch(bridge).await?;
        if let Err(error) = presence.discover().await {
            presence.close().await;
            return Err(error);
        }
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, presence.next()).await {}
        let live = presence
            .instances()
            .filter(|instance| instance.state != State::Stopped)
            .cloned()
            .collect();
        presence.close().await;
        Ok(live)
    }
}
