//! What a handler knows about the message it handles, and how it reaches other services:
//! [`Context`] inside a handler, [`Client`] from outside any service.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::body::Body;
use crate::bridge::Bridge;
use crate::correlation::Correlations;
use crate::envelope::{Address, Envelope, Message};
use crate::error::HandledError;
use crate::id::Id;
use crate::name::Name;
use crate::reference::{IntoEvent, PayloadFor, TargetParams, TargetTypes};

/// The deadline of an invoke unless the call sets its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The metadata of the message being handled (everything but its payload).
#[derive(Debug, Clone)]
pub struct MessageInfo {
    /// Message id.
    pub id: Id,
    /// Epoch milliseconds.
    pub timestamp: u64,
    /// `command`, `customMessage`, `commandSuccessResponse`, …
    pub message_type: &'static str,
    /// Who sent it.
    pub sender: Arc<Address>,
    /// Who it was sent to.
    pub receiver: Option<Arc<Address>>,
    /// The trace id; one is created when the message arrived without.
    pub trace_id: Id,
    /// The command's correlation id.
    pub correlation_id: Option<Id>,
    /// The principal on whose behalf it runs.
    pub principal_id: Option<Name>,
    /// The tenant.
    pub tenant_id: Option<Name>,
    /// The event name, for events.
    pub event_name: Option<Name>,
    /// OpenTelemetry propagation (`{"traceparent": …}` as a JSON string).
    pub otp: Option<Box<str>>,
}

impl MessageInfo {
    /// Splits an envelope into its metadata and its message.
    pub fn split(envelope: Envelope) -> (MessageInfo, Message) {
        let message_type = static_message_type(&envelope.message);
        let info = MessageInfo {
            id: envelope.id,
            timestamp: envelope.timestamp,
            message_type,
            sender: envelope.sender,
            receiver: envelope.receiver,
            trace_id: envelope.trace_id.unwrap_or_else(Id::random),
            correlation_id: envelope.correlation_id,
            principal_id: envelope.principal_id,
            tenant_id: envelope.tenant_id,
            event_name: envelope.event_name,
            otp: envelope.otp,
        };
        (info, envelope.message)
    }

    /// The metadata of an event delivered to a subscription (shared between subscribers).
    pub fn of_event(envelope: &Envelope) -> MessageInfo {
        MessageInfo {
            id: envelope.id.clone(),
            timestamp: envelope.timestamp,
            message_type: static_message_type(&envelope.message),
            sender: envelope.sender.clone(),
            receiver: envelope.receiver.clone(),
            trace_id: envelope.trace_id.clone().unwrap_or_else(Id::random),
            correlation_id: envelope.correlation_id.clone(),
            principal_id: envelope.principal_id.clone(),
            tenant_id: envelope.tenant_id.clone(),
            event_name: envelope.event_name.clone(),
            otp: envelope.otp.clone(),
        }
    }
}

/// The message type as a `'static` name (every `info*` type is `"info"`).
fn static_message_type(message: &Message) -> &'static str {
    match message {
        Message::Command { .. } => "command",
        Message::Success { .. } => "commandSuccessResponse",
        Message::Error { .. } => "commandErrorResponse",
        Message::Custom { .. } => "customMessage",
        Message::Info { .. } => "info",
    }
}

/// Values shared with handlers through the [`State`](crate::State) extractor, by type.
#[derive(Clone, Default)]
pub struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl StateMap {
    /// Adds or replaces the value of type `T`.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.get_ref::<T>().cloned()
    }

    /// The value of type `T`, borrowed (no clone), if one was added.
    pub fn get_ref<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>())
    }

    /// Adds every value of `other` that this map lacks.
    pub fn merge_missing(&mut self, other: &StateMap) {
        for (key, value) in &other.0 {
            self.0.entry(*key).or_insert_with(|| value.clone());
        }
    }
}

/// What every handler of one command or subscription on one instance shares.
pub struct Endpoint {
    pub(crate) bridge: Arc<dyn Bridge>,
    /// This command or subscription, with the instance id.
    pub(crate) address: Arc<Address>,
    pub(crate) state: Arc<StateMap>,
    pub(crate) default_timeout: Duration,
}

impl Endpoint {
    pub(crate) fn new(bridge: Arc<dyn Bridge>, address: impl Into<Arc<Address>>, state: Arc<StateMap>) -> Self {
        Self {
            bridge,
            address: address.into(),
            state,
            default_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A command address: a [`CommandRef`](crate::CommandRef) (which also fixes the payload, output
/// and parameters types), `("user", "1", "getUser")`, `"user/1/getUser"` or an [`Address`].
///
/// References and literals cost no name copies per call; `"user/1/getUser"` is split per call
/// and refused with 400 when it is not `service/version/command`. For names known only at run time pass `String`s or build an
/// [`Address`] once and reuse its `Arc`.
pub trait IntoTarget {
    /// The address, or why the text is not one.
    fn into_target(self) -> Result<Arc<Address>, HandledError>;
}

impl<S: Into<Name>, V: Into<Name>, C: Into<Name>> IntoTarget for (S, V, C) {
    fn into_target(self) -> Result<Arc<Address>, HandledError> {
        Ok(Address::named(self.0, self.1, self.2).shared())
    }
}

fn split_target(text: &str) -> Result<(&str, &str, &str), HandledError> {
    match text.split('/').collect::<Vec<_>>()[..] {
        [service, version, command] if !service.is_empty() && !version.is_empty() && !command.is_empty() => Ok((service, version, command)),
        _ => Err(HandledError::bad_request(format!(
            "{text:?} is not a command address; write \"service/version/command\""
        ))),
    }
}

impl IntoTarget for &'static str {
    fn into_target(self) -> Result<Arc<Address>, HandledError> {
        split_target(self)?.into_target()
    }
}

impl IntoTarget for String {
    fn into_target(self) -> Result<Arc<Address>, HandledError> {
        let (service, version, command) = split_target(&self)?;
        Ok(Address::new(service, version, command).shared())
    }
}

impl IntoTarget for Address {
    fn into_target(self) -> Result<Arc<Address>, HandledError> {
        Ok(Arc::new(self))
    }
}

impl IntoTarget for Arc<Address> {
    fn into_target(self) -> Result<Arc<Address>, HandledError> {
        Ok(self)
    }
}

/// Something that sends messages: stamps them with sender, principal, tenant and trace.
trait Origin: Send + Sync {
    fn bridge(&self) -> &Arc<dyn Bridge>;
    fn default_timeout(&self) -> Duration;
    fn envelope(&self, message: Message) -> Envelope;
    /// The conversation the origin's events belong to: a handler's is that of the message it
    /// handles, so a chain of commands and events shares one correlation id.
    fn correlation_id(&self) -> Option<Id> {
        None
    }
}

/// A handler's view of the message it handles, and its way to other services.
///
/// ```
/// use purest_core::prelude::*;
///
/// async fn whoami(ctx: Context) -> Result<String, HandledError> {
///     Ok(ctx.principal_id().unwrap_or("anonymous").to_owned())
/// }
/// # let _ = Command::new("whoami", whoami);
/// ```
#[derive(Clone)]
pub struct Context {
    endpoint: Arc<Endpoint>,
    message: Arc<MessageInfo>,
}

impl Context {
    pub(crate) fn new(endpoint: Arc<Endpoint>, message: Arc<MessageInfo>) -> Self {
        Self { endpoint, message }
    }

    /// The metadata of the message being handled.
    pub fn message(&self) -> &MessageInfo {
        &self.message
    }

    /// The principal (authenticated user) on whose behalf this runs.
    pub fn principal_id(&self) -> Option<&str> {
        self.message.principal_id.as_deref()
    }

    /// The tenant.
    pub fn tenant_id(&self) -> Option<&str> {
        self.message.tenant_id.as_deref()
    }

    /// The trace id, shared by everything this message causes.
    pub fn trace_id(&self) -> Id {
        self.message.trace_id.clone()
    }

    /// The correlation id of the message being handled: a command's, or an event's — an event
    /// carries the correlation id of the message its emitter was handling, so everything that
    /// follows from one command shares it.
    pub fn correlation_id(&self) -> Option<Id> {
        self.message.correlation_id.clone()
    }

    /// This command or subscription: service, version, name and instance id.
    pub fn address(&self) -> &Address {
        &self.endpoint.address
    }

    /// Shared state of type `T` added with `Service::state` or `Host::state`.
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.endpoint.state.get::<T>()
    }

    /// Shared state of type `T`, borrowed: no clone, for extractors and hot paths.
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// #[derive(Clone)]
    /// struct Limits { max_items: usize }
    /// async fn limited(ctx: Context, Payload(items): Payload<Vec<String>>) -> Result<usize, HandledError> {
    ///     let max = ctx.state_ref::<Limits>().map_or(10, |limits| limits.max_items);
    ///     Ok(items.len().min(max))
    /// }
    /// # let _ = Command::new("limited", limited);
    /// ```
    pub fn state_ref<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.endpoint.state.get_ref::<T>()
    }

    /// Starts an invoke with parameters or its own deadline (see [`Call`]); plain invokes are
    /// [`Invoke::invoke`]. Principal, tenant and trace id go along.
    pub fn call<T: IntoTarget>(&self, target: T) -> Call<'_, T> {
        Call::new(self, target.into_target())
    }

    /// Emits an event; every subscription on it receives it. `event` is an [`EventRef<T>`](crate::EventRef),
    /// whose payload must be a `T`, or a name (`"newUserRegistered"`), which takes any payload.
    /// The event carries the correlation id of the message being handled, so the commands and
    /// events that follow from one request share it.
    pub async fn emit<E, X>(&self, event: E, payload: X) -> Result<(), HandledError>
    where
        E: IntoEvent<X>,
        X: Serialize + Send + Sync + 'static,
    {
        emit(self, event.into_event_name(), Body::typed(payload)).await
    }

    pub(crate) async fn emit_body(&self, event_name: Name, payload: Body) -> Result<(), HandledError> {
        emit(self, event_name, payload).await
    }

    /// [`Client::dispatch`] from a handler: principal, tenant and trace go along.
    pub async fn dispatch<T: IntoTarget, X: Serialize + Send + Sync + 'static>(&self, target: T, payload: X) -> Result<Id, HandledError> {
        dispatch(
            self,
            self.state_ref::<Arc<Correlations>>(),
            target.into_target(),
            Body::typed(payload),
        )
    }

    /// [`Client::wait_for_event`] from a handler.
    pub async fn wait_for_event(&self, correlation_id: &Id, events: &[&str], timeout: Duration) -> Result<Arc<Envelope>, HandledError> {
        wait_for_event(self.state_ref::<Arc<Correlations>>(), correlation_id, events, timeout).await
    }
}

impl Origin for Context {
    fn bridge(&self) -> &Arc<dyn Bridge> {
        &self.endpoint.bridge
    }
    fn default_timeout(&self) -> Duration {
        self.endpoint.default_timeout
    }
    fn envelope(&self, message: Message) -> Envelope {
        let mut envelope = Envelope::new(self.endpoint.address.clone(), message);
        envelope.trace_id = Some(self.message.trace_id.clone());
        envelope.principal_id = self.message.principal_id.clone();
        envelope.tenant_id = self.message.tenant_id.clone();
        envelope.otp = self.message.otp.clone();
        envelope
    }
    fn correlation_id(&self) -> Option<Id> {
        self.message.correlation_id.clone()
    }
}

/// Reaches services from outside any of them (a `main`, a test, a gateway).
///
/// ```
/// # use purest_core::prelude::*;
/// # async fn hello(Payload(name): Payload<String>) -> Result<String, HandledError> { Ok(format!("hello {name}")) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = Host::new().service(Service::new("greeter", "1").command(Command::new("hello", hello))).start().await?;
/// let client = app.client().with_principal("user-1");
/// let text: String = client.invoke("greeter/1/hello", "ann".to_owned()).await?;
/// assert_eq!(text, "hello ann");
/// app.shutdown().await;
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Client {
    bridge: Arc<dyn Bridge>,
    sender: Arc<Address>,
    principal_id: Option<Name>,
    tenant_id: Option<Name>,
    trace_id: Option<Id>,
    timeout: Duration,
    correlations: Option<Arc<Correlations>>,
}

impl Client {
    /// A client sending as `sender` over `bridge`.
    pub fn new(bridge: Arc<dyn Bridge>, sender: impl Into<Arc<Address>>) -> Self {
        Self {
            bridge,
            sender: sender.into(),
            principal_id: None,
            tenant_id: None,
            trace_id: None,
            timeout: DEFAULT_TIMEOUT,
            correlations: None,
        }
    }

    /// Follows dispatched conversations in `correlations` (what [`RunningApp::client`](crate::RunningApp::client) sets).
    pub(crate) fn with_correlations(mut self, correlations: Arc<Correlations>) -> Self {
        self.correlations = Some(correlations);
        self
    }

    /// Sends a command without waiting for its answer and returns the conversation's
    /// correlation id, for [`Client::wait_for_event`]. If the command fails (nobody serves it,
    /// its deadline passes, it answers an error), the waiters get that error.
    pub async fn dispatch<T: IntoTarget, X: Serialize + Send + Sync + 'static>(&self, target: T, payload: X) -> Result<Id, HandledError> {
        dispatch(self, self.correlations.as_ref(), target.into_target(), Body::typed(payload))
    }

    /// The first event named in `events` that the conversation `correlation_id` causes: one
    /// that came already, or the next within `timeout` (else 504). The app must receive those
    /// events ([`Host::awaits`](crate::Host::awaits)). A conversation this app did not dispatch
    /// is followed from the first wait on it: its earlier events are not seen.
    pub async fn wait_for_event(&self, correlation_id: &Id, events: &[&str], timeout: Duration) -> Result<Arc<Envelope>, HandledError> {
        wait_for_event(self.correlations.as_ref(), correlation_id, events, timeout).await
    }

    /// Sends as this principal.
    pub fn with_principal(mut self, principal_id: &str) -> Self {
        self.principal_id = Some(Name::new(principal_id));
        self
    }

    /// Sends for this tenant.
    pub fn with_tenant(mut self, tenant_id: &str) -> Self {
        self.tenant_id = Some(Name::new(tenant_id));
        self
    }

    /// Sends with this trace id (else each message starts a new trace).
    pub fn with_trace_id(mut self, trace_id: Id) -> Self {
        self.trace_id = Some(trace_id);
        self
    }

    /// The default deadline of this client's invokes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bridge this client sends on.
    pub fn bridge(&self) -> &Arc<dyn Bridge> {
        &self.bridge
    }

    /// Starts an invoke with parameters or its own deadline (see [`Call`]); plain invokes are
    /// [`Invoke::invoke`].
    pub fn call<T: IntoTarget>(&self, target: T) -> Call<'_, T> {
        Call::new(self, target.into_target())
    }

    /// Emits an event: an [`EventRef<T>`](crate::EventRef) with a `T`, or a name with any payload.
    pub async fn emit<E, X>(&self, event: E, payload: X) -> Result<(), HandledError>
    where
        E: IntoEvent<X>,
        X: Serialize + Send + Sync + 'static,
    {
        emit(self, event.into_event_name(), Body::typed(payload)).await
    }
}

impl Origin for Client {
    fn bridge(&self) -> &Arc<dyn Bridge> {
        &self.bridge
    }
    fn default_timeout(&self) -> Duration {
        self.timeout
    }
    fn envelope(&self, message: Message) -> Envelope {
        let mut envelope = Envelope::new(self.sender.clone(), message);
        envelope.trace_id = Some(self.trace_id.clone().unwrap_or_else(Id::random));
        envelope.principal_id = self.principal_id.clone();
        envelope.tenant_id = self.tenant_id.clone();
        envelope
    }
}

/// When a tracing backend is installed (see [`crate::trace_context`]): the span of sending a
/// message now — `client` for a command, `producer` for an event — and the `otp` that makes the
/// receiver's span its child. `None` also inside a handler whose message is not recorded (its
/// `otp`, `inherited`, travels on).
fn sending_span(
    kind: &'static str,
    destination: &dyn std::fmt::Display,
    inherited: Option<&str>,
) -> Option<(tracing::Span, Option<Box<str>>)> {
    let propagation = crate::trace_context::propagation()?;
    if inherited.is_some() && !crate::trace_context::records(inherited) {
        return None;
    }
    // A trace starting here that the sampler leaves out: its context, and no span.
    if inherited.is_none()
        && tracing::Span::current().is_none()
        && let Some(unrecorded) = propagation.start_trace()
    {
        return Some((tracing::Span::none(), Some(crate::trace_context::otp_of(&unrecorded.to_string()))));
    }
    let span = tracing::info_span!("send", otel.name = %format_args!("{destination} send"), otel.kind = kind,
        messaging.system = "purest", messaging.operation.type = "send", messaging.destination.name = %destination);
    let otp = span
        .in_scope(|| propagation.current_traceparent())
        .map(|traceparent| crate::trace_context::otp_of(&traceparent));
    Some((span, otp))
}

/// Opens the conversation, then hands the command to a task that records its failure for the
/// waiters. The tasks are as many as the open conversations at most, which are bounded.
fn dispatch(
    origin: &dyn Origin,
    correlations: Option<&Arc<Correlations>>,
    target: Result<Arc<Address>, HandledError>,
    payload: Body,
) -> Result<Id, HandledError> {
    let correlations = correlations.cloned().ok_or_else(not_following)?;
    let target = target?;
    let id = Id::random();
    correlations.open(&id)?;
    let mut envelope = origin.envelope(Message::Command {
        payload,
        parameter: Body::empty_object(),
    });
    envelope.correlation_id = Some(id.clone());
    let traced = sending_span("client", &target, envelope.otp.as_deref());
    if let Some((_, Some(otp))) = &traced {
        envelope.otp = Some(otp.clone());
    }
    envelope.receiver = Some(target);
    let (bridge, timeout, conversation) = (origin.bridge().clone(), origin.default_timeout(), id.clone());
    let invoke = async move {
        match bridge.invoke(envelope, timeout).await {
            Ok(response) => {
                if let Message::Error { error, .. } = response.message {
                    correlations.fail(&conversation, *error);
                }
            }
            Err(error) => correlations.fail(&conversation, error),
        }
    };
    match traced {
        Some((span, _)) => tokio::spawn(invoke.instrument(span)),
        None => tokio::spawn(invoke),
    };
    Ok(id)
}

async fn wait_for_event(
    correlations: Option<&Arc<Correlations>>,
    correlation_id: &Id,
    events: &[&str],
    timeout: Duration,
) -> Result<Arc<Envelope>, HandledError> {
    correlations.ok_or_else(not_following)?.wait(correlation_id, events, timeout).await
}

fn not_following() -> HandledError {
    HandledError::internal("this client follows no conversations; use the client of a running app (RunningApp::client)")
}

async fn emit(origin: &dyn Origin, event_name: Name, payload: Body) -> Result<(), HandledError> {
    let mut envelope = origin.envelope(Message::Custom { payload });
    let traced = sending_span("producer", &event_name, envelope.otp.as_deref());
    envelope.event_name = Some(event_name);
    envelope.correlation_id = origin.correlation_id();
    match traced {
        Some((span, otp)) => {
            envelope.otp = otp.or(envelope.otp);
            origin.bridge().emit(envelope, origin.default_timeout()).instrument(span).await
        }
        None => origin.bridge().emit(envelope, origin.default_timeout()).await,
    }
}

/// Invokes a command and waits for its typed result (deadline 30 s unless set otherwise), from
/// a handler ([`Context`]: principal, tenant and trace id go along) or from outside any service
/// ([`Client`]). In the prelude.
///
/// The target is a [`CommandRef<I, O, P>`](crate::CommandRef), which takes exactly an `I` and
/// answers an `O` (no type annotation needed), or a string address (`"user/1/getUser"`, a
/// `(service, version, command)` tuple, an [`Address`]), which takes any serializable payload
/// and answers whatever `O` the caller names: `invoke::<User>("user/1/getUser", ())`.
///
/// ```
/// use purest_core::prelude::*;
/// #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)]
/// struct Total { sum: u64 }
/// const ADD: CommandRef<Vec<u64>, Total> = CommandRef::new("calc", "1", "add");
///
/// async fn add(Payload(terms): Payload<Vec<u64>>) -> Result<Total, HandledError> {
///     Ok(Total { sum: terms.iter().sum() })
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = Host::new().service(Service::new("calc", "1").command(Command::of(ADD, add))).start().await?;
/// let client = app.client();
/// assert_eq!(client.invoke(ADD, vec![1, 2]).await?.sum, 3);
/// assert_eq!(client.invoke::<Total>("calc/1/add", [3, 4]).await?.sum, 7);
/// app.shutdown().await;
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
///
/// The trait's parameters are the target's and the payload's types; they are inferred. The
/// method's one type parameter is the output, as before: `invoke::<O>(target, payload)`.
pub trait Invoke<T, X> {
    /// Sends `payload` to the command `target` and waits for the typed result, the handler's
    /// `HandledError`, 503 when nobody serves the command, or 504 past the deadline.
    fn invoke<O>(&self, target: T, payload: X) -> impl Future<Output = Result<O, HandledError>> + Send + '_
    where
        T: TargetTypes<X, O>,
        X: Serialize + Send + Sync + 'static,
        O: DeserializeOwned + Clone + Send + Sync + 'static;
}

impl<T, X> Invoke<T, X> for Context {
    fn invoke<O>(&self, target: T, payload: X) -> impl Future<Output = Result<O, HandledError>> + Send + '_
    where
        T: TargetTypes<X, O>,
        X: Serialize + Send + Sync + 'static,
        O: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.call(target).invoke(payload)
    }
}

impl<T, X> Invoke<T, X> for Client {
    fn invoke<O>(&self, target: T, payload: X) -> impl Future<Output = Result<O, HandledError>> + Send + '_
    where
        T: TargetTypes<X, O>,
        X: Serialize + Send + Sync + 'static,
        O: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.call(target).invoke(payload)
    }
}

/// An invoke being prepared: parameters and deadline, then [`Call::invoke`]. `T` is the
/// target's type: a [`CommandRef`](crate::CommandRef) fixes the parameters', payload's and
/// output's types; a string address leaves them to the caller.
///
/// ```
/// # use purest_core::prelude::*;
/// # use std::time::Duration;
/// async fn caller(ctx: Context) -> Result<bool, HandledError> {
///     ctx.call("user/1/getUser").params(serde_json::json!({"verbose": true})).timeout(Duration::from_secs(2))
///         .invoke::<serde_json::Value>("u-1".to_owned()).await?;
///     Ok(true)
/// }
/// # let _ = Command::new("caller", caller);
/// ```
///
/// With a reference, parameters of another type do not compile:
///
/// ```compile_fail,E0308
/// # use purest_core::prelude::*;
/// # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] struct GetUser { id: String }
/// # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] struct User { id: String }
/// const GET_USER: CommandRef<(), User, GetUser> = CommandRef::new("user", "1", "getUser");
/// async fn caller(ctx: Context) -> Result<User, HandledError> {
///     ctx.call(GET_USER).params("u-1".to_owned()).invoke(()).await // a String, not a GetUser
/// }
/// ```
pub struct Call<'a, T = Arc<Address>> {
    origin: &'a dyn Origin,
    target: Result<Arc<Address>, HandledError>,
    params: Body,
    timeout: Duration,
    kind: PhantomData<fn() -> T>,
}

impl<'a, T> Call<'a, T> {
    fn new(origin: &'a dyn Origin, target: Result<Arc<Address>, HandledError>) -> Self {
        let timeout = origin.default_timeout();
        Self {
            origin,
            target,
            params: Body::empty_object(),
            timeout,
            kind: PhantomData,
        }
    }

    /// Sets the command's parameters: a `P` for a [`CommandRef<_, _, P>`](crate::CommandRef),
    /// anything serializable for a string address.
    pub fn params<Q>(mut self, params: Q) -> Self
    where
        T: TargetParams<Q>,
        Q: Serialize + Send + Sync + 'static,
    {
        self.params = Body::typed(params);
        self
    }

    /// Sets the parameters as a [`Body`] (JSON text, a JSON value, or a typed value) — for code
    /// that forwards what it received, like the HTTP gateway.
    pub fn params_body(mut self, params: Body) -> Self {
        self.params = params;
        self
    }

    /// Sets this call's deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the command and waits for the typed result, the handler's `HandledError`, 503 when
    /// nobody serves the command, or 504 past the deadline. The payload is an `I` for a
    /// [`CommandRef<I, O, _>`](crate::CommandRef), which also fixes `O`; anything serializable
    /// for a string address.
    pub fn invoke<O>(self, payload: impl PayloadFor<T, O>) -> impl Future<Output = Result<O, HandledError>> + Send + 'a
    where
        O: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let request = self.send(Body::typed(payload));
        async move { typed_response(request.await?) }
    }

    /// Builds the command and hands it to the bridge now, so the future that stays behind (one
    /// per call) holds only the bridge's.
    fn send(self, payload: Body) -> BoxFuture<'a, Result<Envelope, HandledError>> {
        match self.target {
            Ok(target) => {
                let mut envelope = self.origin.envelope(Message::Command {
                    payload,
                    parameter: self.params,
                });
                envelope.correlation_id = Some(Id::random());
                let traced = sending_span("client", &target, envelope.otp.as_deref());
                envelope.receiver = Some(target);
                match traced {
                    Some((span, otp)) => {
                        envelope.otp = otp.or(envelope.otp);
                        Box::pin(self.origin.bridge().invoke(envelope, self.timeout).instrument(span))
                    }
                    None => self.origin.bridge().invoke(envelope, self.timeout),
                }
            }
            Err(refusal) => Box::pin(std::future::ready(Err(refusal))),
        }
    }
}

impl<'a> Call<'a, Arc<Address>> {
    /// [`Call::invoke`] of a [`Body`], answered by the output as a [`Body`]: for code that
    /// forwards bytes, like the HTTP gateway, which hands a request's JSON text to the handler
    /// (deserialized straight into its payload type) and writes its typed output as the response,
    /// with no [`serde_json::Value`] in between.
    pub fn invoke_body(self, payload: Body) -> impl Future<Output = Result<Body, HandledError>> + Send + 'a {
        let request = self.send(payload);
        async move { output_of(request.await?.message) }
    }
}

/// A command's output, or the error it answered with.
fn output_of(response: Message) -> Result<Body, HandledError> {
    match response {
        Message::Success { payload } => Ok(payload),
        Message::Error { error, .. } => Err(*error),
        other => Err(HandledError::internal(format!(
            "unexpected {} in response to a command",
            other.message_type()
        ))),
    }
}

fn typed_response<O: DeserializeOwned + Clone + Send + Sync + 'static>(response: Envelope) -> Result<O, HandledError> {
    output_of(response.message)?.into_typed::<O>().map_err(|e| {
        tracing::error!(command = %response.sender, error = %e, expected = std::any::type_name::<O>(), "response does not fit the expected type");
        HandledError::generic_internal().with_trace_id(response.trace_id)
    })
}
