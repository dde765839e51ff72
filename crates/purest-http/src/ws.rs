//! The WebSocket gateway at `/ws`: text frames `{event, data, params?, id?}`.
//!
//! - `event` names a command with an HTTP route: `user.registerNewUser` (its only or highest
//!   version) or `user/1/registerNewUser`. The reply is `{event: "<event>.result", data, id}` or
//!   `{event: "<event>.error", data: <problem>, id}`; `data` is the payload (the parameters when the
//!   command takes no payload), `params` the parameters. A command whose result is not ready by
//!   its deadline (a resolver's 202) answers `{event: "<event>.accepted", data: {detail,
//!   location}, id}`.
//! - `{event: "subscribe", data: {events: [...]}}` pushes those events as `{event: <name>, data:
//!   <payload>}`. Only events a service declared with `.websocket_event(..)` (signed-in clients)
//!   or `.public_websocket_event(..)` (anyone) can be subscribed to; an event with a principal or
//!   tenant reaches only clients of that principal and tenant. `unsubscribe` stops them. A
//!   connection holds at most [`DEFAULT_SUBSCRIPTIONS`] event names unless configured.
//! - Credentials are read from the upgrade request: its headers, as for HTTP, or — for browsers,
//!   whose `WebSocket` cannot set headers — a bearer token offered as the subprotocol
//!   `purest.bearer.<token>` next to `purest` (the protocol the server selects). Commands need
//!   credentials unless public.
//! - Frames from a client may be as large as the gateway's body limit.
//! - Frames for a client wait in a bounded buffer. Replies wait for room (and at most 64 commands
//!   run per connection, so a client that sends without reading is slowed by TCP); events are
//!   kept for a client up to a backlog of 1024 per event name, and a client that falls further
//!   behind is closed with 1008 (policy violation) and the reason. A frame that cannot be written
//!   for 10 s drops the connection. Bad frames get an `error` frame; the connection stays open.
//! - One bridge subscription per event name serves every connection listening to it; it is
//!   closed when the last listener leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use purest_core::bridge::{DEFAULT_QUEUE_CAPACITY, Delivery, Registration, Settlement, SubscriptionEndpoint, SubscriptionRoute};
use purest_core::{Address, Envelope, EventFilter, HandledError, Id, Message, Name, Retry};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::auth::Identity;
use crate::gateway::Shared;
use crate::problem::Problem;
use crate::rest::Endpoint;

/// Frames waiting to be written to one client.
pub const DEFAULT_SEND_BUFFER: usize = 256;
/// Event names one connection may subscribe to at once, unless configured.
pub const DEFAULT_SUBSCRIPTIONS: usize = 64;
/// The subprotocol the gateway speaks; a browser offering a token must offer it too.
pub const SUBPROTOCOL: &str = "purest";
/// The subprotocol prefix carrying a bearer token: `purest.bearer.<token>`.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "purest.bearer.";
/// How long one frame may take to leave before the client counts as gone.
const SEND_DEADLINE: Duration = Duration::from_secs(10);
/// Commands one connection runs at once; further frames wait (TCP pushes back on the client).
const COMMANDS_PER_CONNECTION: usize = 64;
/// Events kept per event name for connections that fall behind, before they count as too slow.
const EVENT_BACKLOG: usize = 1024;

/// How the WebSocket route is set up.
pub(crate) struct WsSettings {
    /// Frames that may wait for one client.
    pub send_buffer: usize,
    /// Event names one connection may subscribe to at once.
    pub max_subscriptions: usize,
    /// The events clients may subscribe to, and whether each is public.
    pub events: HashMap<String, bool>,
}

/// What the WebSocket route shares.
pub(crate) struct WsState {
    pub shared: Arc<Shared>,
    /// Commands by `service.command` (highest version) and `service/version/command`.
    commands: HashMap<String, Arc<Endpoint>>,
    hub: Arc<EventHub>,
    settings: WsSettings,
}

impl WsState {
    pub fn new(shared: Arc<Shared>, endpoints: &[Arc<Endpoint>], settings: WsSettings) -> Self {
        let mut commands: HashMap<String, Arc<Endpoint>> = HashMap::new();
        for endpoint in endpoints {
            let address = &endpoint.receiver;
            commands.insert(address.to_string(), endpoint.clone());
            let short = format!("{}.{}", address.service_name, address.service_target);
            let newer = match commands.get(&short) {
                Some(existing) => version_order(&address.service_version) > version_order(&existing.receiver.service_version),
                None => true,
            };
            if newer {
                commands.insert(short, endpoint.clone());
            }
        }
        let hub = Arc::new(EventHub {
            bridge: shared.bridge.clone(),
            address: Arc::new(Address {
                instance_id: Some(Name::new(&Id::random().to_string())),
                ..Address::new("purest-http", "1", "websocket")
            }),
            channels: std::sync::Mutex::new(HashMap::new()),
        });
        Self {
            shared,
            commands,
            hub,
            settings,
        }
    }
}

/// Numeric versions compare as numbers (`10` after `9`), others as text.
fn version_order(version: &str) -> (u64, String) {
    (version.parse().unwrap_or(0), version.to_owned())
}

/// Upgrades `/ws` after checking the credentials of the upgrade request.
pub(crate) async fn upgrade(
    State(state): State<Arc<WsState>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    headers: HeaderMap,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return Problem::new(
                rejection.status(),
                format!("/ws takes WebSocket connections only: {}", rejection.body_text()),
            )
            .into_response();
        }
    };
    let headers = match credentials_from_subprotocol(headers) {
        Ok(headers) => headers,
        Err(detail) => return Problem::new(StatusCode::BAD_REQUEST, detail).into_response(),
    };
    let identity = match state.shared.authenticate(&headers, true).await {
        Ok(identity) => identity,
        Err(problem) => return problem.into_response(),
    };
    let limit = state.shared.body_limit;
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| connection(state, socket, identity))
}

/// A bearer token offered as the subprotocol `purest.bearer.<token>` becomes the request's
/// `Authorization` header, so every authenticator reads it as from any other client. An error
/// says what is wrong with the offer.
fn credentials_from_subprotocol(mut headers: HeaderMap) -> Result<HeaderMap, &'static str> {
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|protocol| protocol.trim().to_owned())
        .collect();
    let mut tokens = offered
        .iter()
        .filter_map(|protocol| protocol.strip_prefix(BEARER_SUBPROTOCOL_PREFIX));
    let Some(token) = tokens.next() else {
        return Ok(headers);
    };
    if tokens.next().is_some() || headers.contains_key(header::AUTHORIZATION) {
        return Err("give credentials once: one purest.bearer.<token> subprotocol, or an Authorization header");
    }
    if !offered.iter().any(|protocol| protocol == SUBPROTOCOL) {
        // The server must select a protocol the client offered, and never echoes the token.
        return Err("a client offering purest.bearer.<token> must also offer the subprotocol \"purest\"");
    }
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return Err("the token in purest.bearer.<token> is not a valid header value");
    };
    headers.insert(header::AUTHORIZATION, value);
    Ok(headers)
}

/// A frame from the client.
#[derive(Deserialize)]
struct Incoming {
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
}

/// Something for the writer: a frame, or the end.
enum Outgoing {
    Frame(String),
    Close(u16, String),
}

/// The outbound side of one connection: a bounded buffer, and the alarm that closes a client
/// found too slow.
#[derive(Clone)]
struct Outbox {
    frames: mpsc::Sender<Outgoing>,
    too_slow: Arc<tokio::sync::Notify>,
}

impl Outbox {
    /// Queues a frame, waiting for room; `false` once the connection is closing.
    async fn push(&self, frame: Value) -> bool {
        self.frames.send(Outgoing::Frame(frame.to_string())).await.is_ok()
    }
}

async fn connection(state: Arc<WsState>, socket: WebSocket, identity: Option<Identity>) {
    let (mut sink, mut stream) = socket.split();
    let (frames, mut queued) = mpsc::channel::<Outgoing>(state.settings.send_buffer);
    let too_slow = Arc::new(tokio::sync::Notify::new());
    let writer_done = Arc::new(tokio::sync::Notify::new());
    let outbox = Outbox {
        frames: frames.clone(),
        too_slow: too_slow.clone(),
    };
    // The writer: frames in order; a close as soon as the client is found too slow.
    let done = writer_done.clone();
    let writer = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                _ = too_slow.notified() => Outgoing::Close(1008, format!("too slow: fell more than {EVENT_BACKLOG} events behind")),
                next = queued.recv() => match next { Some(next) => next, None => break },
            };
            let (message, last) = match next {
                Outgoing::Frame(text) => (WsMessage::Text(text.into()), false),
                Outgoing::Close(code, reason) => (
                    WsMessage::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                    true,
                ),
            };
            match tokio::time::timeout(SEND_DEADLINE, sink.send(message)).await {
                Ok(Ok(())) if !last => {}
                _ => break,
            }
        }
        let _ = sink.close().await;
        // The connection is over for the reader too, also if the client never answers the close.
        done.notify_one();
    });

    let mut subscriptions: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = writer_done.notified() => break,
            frame = stream.next(), if running.len() < COMMANDS_PER_CONNECTION => {
                let text = match frame {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Binary(_))) => {
                        outbox.push(error_frame("error", None, Problem::new(StatusCode::BAD_REQUEST, "binary frames are not supported; send JSON text frames {event, data, params?, id?}"))).await;
                        continue;
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue, // ping/pong: answered by the library
                };
                let incoming: Incoming = match serde_json::from_str(text.as_str()) {
                    Ok(incoming) => incoming,
                    Err(e) => {
                        outbox.push(error_frame("error", None, Problem::new(StatusCode::BAD_REQUEST, format!("not a frame {{event, data, params?, id?}}: {e}")))).await;
                        continue;
                    }
                };
                match incoming.event.as_str() {
                    "subscribe" | "unsubscribe" => {
                        let subscribe = incoming.event == "subscribe";
                        let reply = change_subscriptions(&state, &outbox, identity.as_ref(), &mut subscriptions, subscribe, &incoming.data).await;
                        outbox.push(reply_frame(&incoming.event, incoming.id, reply)).await;
                    }
                    _ => running.push(command(state.clone(), outbox.clone(), identity.clone(), incoming)),
                }
            }
        }
    }
    while running.next().await.is_some() {}
    for (_, forwarder) in subscriptions {
        forwarder.abort();
    }
    drop(outbox);
    drop(frames);
    let _ = writer.await;
}

fn reply_frame(event: &str, id: Option<Value>, reply: Result<Value, Problem>) -> Value {
    match reply {
        Ok(data) => {
            let mut frame = json!({"event": format!("{event}.result"), "data": data});
            if let Some(id) = id {
                frame["id"] = id;
            }
            frame
        }
        Err(problem) => error_frame(&format!("{event}.error"), id, problem),
    }
}

fn error_frame(event: &str, id: Option<Value>, problem: Problem) -> Value {
    let mut frame = json!({"event": event, "data": problem.body()});
    if let Some(id) = id {
        frame["id"] = id;
    }
    frame
}

/// How a command frame that did not succeed is answered.
enum Answer {
    /// Taken, its result to be read later (202).
    Accepted(HandledError),
    Problem(Problem),
}

impl From<Problem> for Answer {
    fn from(problem: Problem) -> Self {
        Answer::Problem(problem)
    }
}

impl From<HandledError> for Answer {
    fn from(error: HandledError) -> Self {
        match error.status {
            202 => Answer::Accepted(error),
            _ => Answer::Problem(Problem::from(error)),
        }
    }
}

/// Runs one command frame and queues its reply.
async fn command(state: Arc<WsState>, outbox: Outbox, identity: Option<Identity>, incoming: Incoming) {
    let Incoming { event, data, params, id } = incoming;
    let trace_id = Id::random();
    let reply: Result<Value, Answer> = async {
        let endpoint = state.commands.get(&event).ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                format!("unknown event {event:?}: name a command as `service.command` or `service/version/command`, or use subscribe/unsubscribe"),
            )
        })?;
        if identity.is_none() && !endpoint.route.public {
            return Err(Problem::new(StatusCode::UNAUTHORIZED, "authentication required: connect with credentials").into());
        }
        let (payload, params) = if endpoint.takes_payload { (data, params) } else { (Value::Null, params.or(Some(data))) };
        let params = match params {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(params) => params,
        };
        let client = state.shared.client(identity.as_ref(), trace_id.clone());
        client
            .call(endpoint.receiver.clone())
            .params(params)
            .invoke::<Value>(payload)
            .await
            .map_err(Answer::from)
    }
    .await;
    let frame = match reply {
        Err(Answer::Accepted(later)) => {
            let mut frame = json!({"event": format!("{event}.accepted"), "data": {"detail": later.message, "location": later.location()}});
            if let Some(id) = id {
                frame["id"] = id;
            }
            frame
        }
        Err(Answer::Problem(problem)) => reply_frame(&event, id, Err(problem.with_trace(trace_id))),
        Ok(data) => reply_frame(&event, id, Ok(data)),
    };
    outbox.push(frame).await;
}

/// `{events: [...]}`: starts (or stops) forwarding those events to this connection.
async fn change_subscriptions(
    state: &WsState,
    outbox: &Outbox,
    identity: Option<&Identity>,
    subscriptions: &mut HashMap<String, tokio::task::JoinHandle<()>>,
    subscribe: bool,
    data: &Value,
) -> Result<Value, Problem> {
    let names: Vec<String> = data
        .get("events")
        .and_then(Value::as_array)
        .map(|events| events.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
        .filter(|names: &Vec<String>| !names.is_empty())
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "expected data {events: [\"eventName\", …]}"))?;
    if !subscribe {
        for name in &names {
            if let Some(forwarder) = subscriptions.remove(name) {
                forwarder.abort();
            }
        }
        return Ok(current(subscriptions));
    }
    // Every name is checked before any is subscribed to: a refused request changes nothing.
    let mut new: Vec<&String> = Vec::new();
    for name in &names {
        match state.settings.events.get(name) {
            None => {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    format!("event {name:?} cannot be subscribed to: only events a service declares with .websocket_event(..) are pushed"),
                ));
            }
            Some(false) if identity.is_none() => {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    format!("event {name:?} is for signed-in clients: connect with credentials"),
                ));
            }
            Some(_) if !subscriptions.contains_key(name) && !new.contains(&name) => new.push(name),
            Some(_) => {}
        }
    }
    let max = state.settings.max_subscriptions;
    if subscriptions.len() + new.len() > max {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("a connection subscribes to at most {max} events; unsubscribe from some first"),
        ));
    }
    for name in new {
        let listener = state.hub.clone().listen(name).await.map_err(|e| {
            tracing::warn!(event = %name, error = %e, "cannot subscribe to events for a WebSocket client");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "events cannot be subscribed to right now")
        })?;
        let forwarder = tokio::spawn(forward(listener, outbox.clone(), identity.cloned()));
        subscriptions.insert(name.clone(), forwarder);
    }
    Ok(current(subscriptions))
}

/// `{events: [...]}`: the names a connection listens to, sorted.
fn current(subscriptions: &HashMap<String, tokio::task::JoinHandle<()>>) -> Value {
    let mut names: Vec<&String> = subscriptions.keys().collect();
    names.sort();
    json!({ "events": names })
}

/// Pushes each visible event to the client until it falls behind.
async fn forward(mut listener: Listener, outbox: Outbox, identity: Option<Identity>) {
    loop {
        match listener.events.recv().await {
            Ok(event) => {
                if !visible(&event, identity.as_ref()) {
                    continue;
                }
                let payload = match &event.message {
                    Message::Custom { payload } | Message::Success { payload } => payload.to_value().unwrap_or(Value::Null),
                    _ => continue,
                };
                let name = event.event_name.as_deref().unwrap_or_default();
                if !outbox.push(json!({"event": name, "data": payload})).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                outbox.too_slow.notify_one();
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Events without principal and tenant are for everyone; others only for their principal
/// (when set) within their tenant (when set).
fn visible(event: &Envelope, identity: Option<&Identity>) -> bool {
    let principal_ok = match (&event.principal_id, identity) {
        (None, _) => true,
        (Some(principal), Some(identity)) => **principal == *identity.principal_id,
        (Some(_), None) => false,
    };
    let tenant_ok = match (&event.tenant_id, identity) {
        (None, _) => true,
        (Some(tenant), Some(identity)) => identity.tenant_id.as_deref() == Some(&**tenant),
        (Some(_), None) => false,
    };
    principal_ok && tenant_ok
}

/// One bridge subscription per event name any client listens to, shared by all connections and
/// closed when the last one leaves. The map's lock is never held across a bridge round trip: a
/// name's first listener subscribes under that name's own lock.
struct EventHub {
    bridge: Arc<dyn purest_core::Bridge>,
    address: Arc<Address>,
    channels: std::sync::Mutex<HashMap<String, Arc<EventChannel>>>,
}

/// The listeners of one event name, and the bridge subscription feeding them.
struct EventChannel {
    sender: broadcast::Sender<Arc<Envelope>>,
    /// Changed under the hub's lock only.
    listeners: AtomicUsize,
    registration: tokio::sync::Mutex<Option<Box<dyn Registration>>>,
}

/// One connection listening to one event name; dropping it leaves the channel.
struct Listener {
    hub: Arc<EventHub>,
    name: String,
    channel: Arc<EventChannel>,
    events: broadcast::Receiver<Arc<Envelope>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.hub.leave(&self.name, &self.channel);
    }
}

impl EventHub {
    async fn listen(self: Arc<Self>, event_name: &str) -> Result<Listener, purest_core::Error> {
        let channel = {
            let mut channels = self.channels.lock().expect("event hub lock");
            let channel = channels.entry(event_name.to_owned()).or_insert_with(|| {
                Arc::new(EventChannel {
                    sender: broadcast::channel(EVENT_BACKLOG).0,
                    listeners: AtomicUsize::new(0),
                    registration: tokio::sync::Mutex::new(None),
                })
            });
            channel.listeners.fetch_add(1, Ordering::Relaxed);
            channel.clone()
        };
        // Built first, so that a failed subscription below leaves the channel again.
        let listener = Listener {
            hub: self.clone(),
            name: event_name.to_owned(),
            events: channel.sender.subscribe(),
            channel: channel.clone(),
        };
        let mut registration = channel.registration.lock().await;
        if registration.is_none() {
            let route = SubscriptionRoute {
                address: self.address.clone(),
                filter: EventFilter {
                    event_name: Some(Name::new(event_name)),
                    ..EventFilter::default()
                },
                durable: false,
                every_instance: true,
                retry: Retry::default(),
                concurrency: 1,
                queue_capacity: DEFAULT_QUEUE_CAPACITY,
            };
            *registration = Some(self.bridge.subscribe(route, Arc::new(Broadcast(channel.sender.clone()))).await?);
        }
        drop(registration);
        Ok(listener)
    }

    /// One listener of `channel` left; the last one closes its bridge subscription.
    fn leave(&self, event_name: &str, channel: &Arc<EventChannel>) {
        let last = {
            let mut channels = self.channels.lock().expect("event hub lock");
            let last = channel.listeners.fetch_sub(1, Ordering::Relaxed) == 1;
            if last && channels.get(event_name).is_some_and(|current| Arc::ptr_eq(current, channel)) {
                channels.remove(event_name);
            }
            last
        };
        if let (true, Ok(runtime)) = (last, tokio::runtime::Handle::try_current()) {
            let channel = channel.clone();
            runtime.spawn(async move {
                if let Some(registration) = channel.registration.lock().await.take() {
                    registration.close().await;
                }
            });
        }
    }
}

/// Hands each event to the connections listening for it.
struct Broadcast(broadcast::Sender<Arc<Envelope>>);

impl SubscriptionEndpoint for Broadcast {
    fn deliver(self: Arc<Self>, delivery: Delivery) -> BoxFuture<'static, Settlement> {
        // No listener left is not a failure: the event was best effort for WebSocket clients.
        if let Ok(event) = delivery.message {
            let _ = self.0.send(event);
        }
        Box::pin(std::future::ready(Settlement::Ack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(principal: Option<&str>, tenant: Option<&str>) -> Envelope {
        let mut envelope = Envelope::new(
            Address::new("s", "1", "c"),
            Message::Custom {
                payload: purest_core::Body::json(json!(1)),
            },
        );
        envelope.principal_id = principal.map(Name::new);
        envelope.tenant_id = tenant.map(Name::new);
        envelope
    }

    #[test]
    fn events_are_visible_to_their_principal_and_tenant_only() {
        let ann = Identity::new("ann").with_tenant("acme");
        let bob = Identity::new("bob").with_tenant("acme");
        assert!(visible(&event(None, None), None));
        assert!(visible(&event(None, Some("acme")), Some(&bob)));
        assert!(!visible(&event(None, Some("acme")), None));
        assert!(visible(&event(Some("ann"), Some("acme")), Some(&ann)));
        assert!(!visible(&event(Some("ann"), Some("acme")), Some(&bob)));
        assert!(!visible(&event(Some("ann"), Some("other")), Some(&ann)));
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert!(version_order("10") > version_order("9"));
    }
}
