//! The builders users write: [`Service`], [`Command`], [`Subscription`].

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use crate::bridge::{DEFAULT_QUEUE_CAPACITY, EventFilter, Retry};
use crate::context::{MessageInfo, StateMap};
use crate::error::{BuildError, HandledError};
use crate::handler::{Accepts, ErasedHandler, Handler, HandlerTypes, Matches, Signature, TypedHandler};
use crate::hooks::{Guard, GuardInput, TransformInput, TransformOutput};
use crate::layer::Layer;
use crate::name::Name;
use crate::reference::{CommandRef, EventRef};
use crate::route::{HttpRoute, Method, WebsocketEvent};

/// Adds `.layer(..)` and the four hook setters (each adds one layer) to a builder that has a
/// `layers: Vec<Arc<dyn Layer>>` field.
macro_rules! layer_setters {
    () => {
        /// Adds a [layer](crate::layer) around the handlers: it runs inside the layers added before
        /// it (and the service's and app's), outside those added after it.
        pub fn layer(mut self, layer: impl Layer) -> Self {
            self.layers.push(Arc::new(layer));
            self
        }

        /// Adds a transform of the raw (JSON) payload and parameters, run before validation (a
        /// [`TransformInput`] layer). Setting one makes in-process calls go through JSON.
        pub fn transform_input(
            self,
            transform: impl Fn(&MessageInfo, Value, Value) -> Result<(Value, Value), HandledError> + Send + Sync + 'static,
        ) -> Self {
            self.layer(TransformInput::new(transform))
        }

        /// Adds a guard run before validation and the handler (a [`Guard`] layer); an `Err`
        /// refuses the message with its status (401, 403, …) and the handler never runs.
        pub fn before_guard<F, Fut>(self, name: &str, guard: F) -> Self
        where
            F: Fn(GuardInput) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<(), HandledError>> + Send + 'static,
        {
            self.layer(Guard::before(name, guard))
        }

        /// Adds a guard run on the (validated) output (a [`Guard`] layer); an `Err` replaces the
        /// response with it.
        pub fn after_guard<F, Fut>(self, name: &str, guard: F) -> Self
        where
            F: Fn(GuardInput) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<(), HandledError>> + Send + 'static,
        {
            self.layer(Guard::after(name, guard))
        }

        /// Adds a transform of the output (as JSON) on its way out (a [`TransformOutput`] layer).
        pub fn transform_output(
            self,
            transform: impl Fn(&MessageInfo, Value) -> Result<Value, HandledError> + Send + Sync + 'static,
        ) -> Self {
            self.layer(TransformOutput::new(transform))
        }
    };
}

/// Adds the declared-links setters and getters to a builder that has a `links: Links` field.
macro_rules! link_methods {
    () => {
        /// Declares that the handler invokes `target` (`service/version/command`): for the
        /// topology graph (`purest graph`); calls work without it.
        pub fn invokes(mut self, target: &str) -> Self {
            self.links.invokes.push(Name::new(target));
            self
        }

        /// Declares that the handler may emit `event_name` with `ctx.emit`: for the topology graph
        /// and the AsyncAPI description; emits work without it.
        pub fn may_emit(mut self, event_name: &str) -> Self {
            self.links.may_emit.push(Name::new(event_name));
            self
        }

        /// The declared links (see [`Self::invokes`], [`Self::may_emit`]).
        pub fn links(&self) -> &Links {
            &self.links
        }
    };
}

/// What a handler is declared to reach: commands it invokes, events it may emit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// `service/version/command` targets.
    pub invokes: Vec<Name>,
    /// Event names.
    pub may_emit: Vec<Name>,
}

/// A named request/response function of a service, addressed as `service/version/command`.
///
/// ```
/// use purest_core::prelude::*;
/// async fn ping(Payload(n): Payload<u64>) -> Result<u64, HandledError> { Ok(n + 1) }
/// let command = Command::new("ping", ping).description("adds one").success_event("pinged");
/// assert_eq!(command.name(), "ping");
/// assert!(command.signature().payload.is_some());
/// ```
#[derive(Clone)]
pub struct Command {
    pub(crate) name: Name,
    pub(crate) description: String,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) signature: Signature,
    pub(crate) success_event: Option<Name>,
    pub(crate) layers: Vec<Arc<dyn Layer>>,
    pub(crate) http: Option<HttpRoute>,
    pub(crate) links: Links,
    pub(crate) concurrency: Option<usize>,
    /// The service and version of the [`CommandRef`] the command was made from, checked
    /// against the service it is registered in.
    pub(crate) reference: Option<(&'static str, &'static str)>,
}

impl Command {
    /// A command named `name` run by `handler`, an async fn of extractors.
    pub fn new<H: Handler<Args>, Args: 'static>(name: &str, handler: H) -> Self {
        let (handler, signature) = TypedHandler::erase(handler);
        Self {
            name: Name::new(name),
            description: String::new(),
            handler,
            signature,
            success_event: None,
            layers: Vec::new(),
            http: None,
            links: Links::default(),
            concurrency: None,
            reference: None,
        }
    }

    /// The command `reference` names, run by `handler`, with the reference's success event.
    ///
    /// Compiles only when the handler fits the reference `CommandRef<I, O, P>`: it takes
    /// `Payload<I>` (or no payload when `I` is `()`), `Params<P>` (or none when `P` is `()`)
    /// and returns `Result<O, _>`. [`Service::check`] (run by `Host::start`) refuses the command
    /// in a service other than the reference's.
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)]
    /// struct NewUser { name: String }
    /// const REGISTERED: EventRef<String> = EventRef::new("userRegistered");
    /// const REGISTER: CommandRef<NewUser, String> = CommandRef::new("user", "1", "register").success_event(REGISTERED);
    ///
    /// async fn register(ctx: Context, Payload(user): Payload<NewUser>) -> Result<String, HandledError> {
    ///     Ok(format!("{} by {:?}", user.name, ctx.principal_id()))
    /// }
    /// let command = Command::of(REGISTER, register);
    /// assert_eq!((command.name(), command.get_success_event()), ("register", Some("userRegistered")));
    /// assert!(Service::new("user", "1").command(command.clone()).check().is_ok());
    /// let elsewhere = Service::new("account", "1").command(command).check().unwrap_err();
    /// assert!(elsewhere.to_string().contains("register it in service user/1"), "{elsewhere}");
    /// ```
    ///
    /// A handler taking another payload does not compile:
    ///
    /// ```compile_fail,E0277
    /// # use purest_core::prelude::*;
    /// # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] struct NewUser { name: String }
    /// const REGISTER: CommandRef<NewUser, String> = CommandRef::new("user", "1", "register");
    /// async fn register(Payload(name): Payload<String>) -> Result<String, HandledError> { Ok(name) }
    /// let command = Command::of(REGISTER, register); // takes a String, the reference a NewUser
    /// ```
    ///
    /// nor does one returning another output:
    ///
    /// ```compile_fail,E0271
    /// # use purest_core::prelude::*;
    /// # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] struct NewUser { name: String }
    /// const REGISTER: CommandRef<NewUser, String> = CommandRef::new("user", "1", "register");
    /// async fn register(Payload(user): Payload<NewUser>) -> Result<usize, HandledError> { Ok(user.name.len()) }
    /// let command = Command::of(REGISTER, register); // answers a usize, the reference a String
    /// ```
    ///
    /// nor one missing the reference's parameters:
    ///
    /// ```compile_fail,E0277
    /// # use purest_core::prelude::*;
    /// # #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)] #[garde(allow_unvalidated)] struct GetUser { id: String }
    /// const GET_USER: CommandRef<(), String, GetUser> = CommandRef::new("user", "1", "getUser");
    /// async fn get_user() -> Result<String, HandledError> { Ok("ann".into()) }
    /// let command = Command::of(GET_USER, get_user); // takes no Params<GetUser>
    /// ```
    pub fn of<I, O, P, H, Args>(reference: CommandRef<I, O, P>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: HandlerTypes<Output = O> + 'static,
        Args::Payload: Matches<I>,
        Args::Params: Matches<P>,
    {
        let mut command = Self::new(reference.command(), handler);
        command.name = Name::from_static(reference.command());
        command.success_event = reference.get_success_event().map(|event| Name::from_static(event.name()));
        command.reference = Some((reference.service(), reference.version()));
        command
    }

    /// Serves the command over HTTP at `METHOD /api/v{serviceVersion}/{path}` when the app has an
    /// HTTP gateway. `{name}` segments of `path` and the query string become the parameters; the
    /// JSON body (for POST, PUT and PATCH) the payload. Callers must authenticate unless the
    /// command is marked [`Command::public`].
    pub fn http(mut self, method: Method, path: &str) -> Self {
        let route = self.route_mut();
        route.method = method;
        route.path = path.trim_matches('/').to_owned();
        self
    }

    /// At most `limit` calls run at once in one instance; as many again wait their turn, and
    /// further calls are refused at once with 503 (no limit by default). The same as adding a
    /// [`ConcurrencyLimit`](crate::layers::ConcurrencyLimit) layer first; use that layer for
    /// another number of waiting calls.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit.max(1));
        self
    }

    /// Lets callers reach the command over HTTP without credentials.
    pub fn public(mut self) -> Self {
        self.route_mut().public = true;
        self
    }

    /// Documents an error status the command answers with on purpose (`409`, "email already
    /// registered"), for the API description; `202` documents a resolver's
    /// [accepted](crate::HandledError::accepted) answer.
    pub fn http_error(mut self, status: u16, meaning: &str) -> Self {
        self.route_mut().errors.push((status, meaning.to_owned()));
        self
    }

    /// The HTTP metadata, created on first use; it is served only once [`Command::http`] gave it a
    /// path, so the setters can come in any order.
    fn route_mut(&mut self) -> &mut HttpRoute {
        self.http.get_or_insert_with(|| HttpRoute {
            method: Method::POST,
            path: String::new(),
            public: false,
            errors: Vec::new(),
        })
    }

    /// Describes the command (for specs and humans).
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Makes every successful response also an event of this name.
    pub fn success_event(mut self, event_name: &str) -> Self {
        self.success_event = Some(Name::new(event_name));
        self
    }

    layer_setters!();
    link_methods!();

    /// The command's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the handler takes and returns.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The description.
    pub fn get_description(&self) -> &str {
        &self.description
    }

    /// The success event, if any.
    pub fn get_success_event(&self) -> Option<&str> {
        self.success_event.as_deref()
    }

    /// Where the command is served over HTTP, if it is (a route set by [`Command::http`]).
    pub fn get_http(&self) -> Option<&HttpRoute> {
        self.http.as_ref().filter(|route| !route.path.is_empty())
    }
}

/// A function run for every matching event.
///
/// ```
/// use purest_core::prelude::*;
/// use std::time::Duration;
/// async fn welcome(Payload(email): Payload<String>) -> Result<(), HandledError> { Ok(()) }
/// let sub = Subscription::new("sendWelcomeMail", welcome)
///     .on_event("newUserRegistered")
///     .durable()
///     .retry(Retry::exponential(5).backoff(Duration::from_millis(50)).dead_letter("email.dlq"));
/// assert_eq!(sub.name(), "sendWelcomeMail");
/// ```
#[derive(Clone)]
pub struct Subscription {
    pub(crate) name: Name,
    pub(crate) description: String,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) signature: Signature,
    pub(crate) filter: EventFilter,
    pub(crate) durable: bool,
    pub(crate) every_instance: bool,
    pub(crate) retry: Retry,
    pub(crate) emits: Option<Name>,
    pub(crate) links: Links,
    pub(crate) concurrency: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) layers: Vec<Arc<dyn Layer>>,
    /// Whether `.retry(..)` was called: a best-effort subscription must not have it.
    pub(crate) retry_set: bool,
}

impl Subscription {
    link_methods!();
    layer_setters!();

    /// A subscription named `name` run by `handler`. Give it at least one filter.
    pub fn new<H: Handler<Args>, Args: 'static>(name: &str, handler: H) -> Self {
        let (handler, signature) = TypedHandler::erase(handler);
        Self {
            name: Name::new(name),
            description: String::new(),
            handler,
            signature,
            filter: EventFilter::default(),
            durable: false,
            every_instance: false,
            retry: Retry::default(),
            emits: None,
            links: Links::default(),
            concurrency: 64,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            layers: Vec::new(),
            retry_set: false,
        }
    }

    /// A subscription named `name` to the event `event`, run by `handler`.
    ///
    /// Compiles only when the handler takes the event's payload type `T` (`Payload<T>`) or no
    /// payload at all.
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// const USER_REGISTERED: EventRef<String> = EventRef::new("userRegistered");
    /// async fn welcome(Payload(email): Payload<String>) -> Result<(), HandledError> { Ok(()) }
    /// let sub = Subscription::on(USER_REGISTERED, "sendWelcomeMail", welcome).durable();
    /// assert_eq!(sub.filter().event_name.as_deref(), Some("userRegistered"));
    /// ```
    ///
    /// ```compile_fail,E0277
    /// # use purest_core::prelude::*;
    /// const USER_REGISTERED: EventRef<String> = EventRef::new("userRegistered");
    /// async fn welcome(Payload(id): Payload<u64>) -> Result<(), HandledError> { Ok(()) }
    /// let sub = Subscription::on(USER_REGISTERED, "sendWelcomeMail", welcome); // u64, not String
    /// ```
    pub fn on<T, H, Args>(event: EventRef<T>, name: &str, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: HandlerTypes + 'static,
        Args::Payload: Accepts<T>,
    {
        let mut subscription = Self::new(name, handler);
        subscription.filter.event_name = Some(Name::from_static(event.name()));
        subscription
    }

    /// Describes the subscription.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Receives events of this name (emitted ones, and success responses of commands declaring it).
    pub fn on_event(mut self, event_name: &str) -> Self {
        self.filter.event_name = Some(Name::new(event_name));
        self
    }

    /// Receives only messages sent by this service and version.
    pub fn from_service(mut self, service: &str, version: &str) -> Self {
        self.filter.sender_service = Some(Name::new(service));
        self.filter.sender_version = Some(Name::new(version));
        self
    }

    /// Receives only messages sent by this command of a service.
    pub fn from_command(mut self, service: &str, version: &str, command: &str) -> Self {
        self = self.from_service(service, version);
        self.filter.sender_target = Some(Name::new(command));
        self
    }

    /// Receives only messages of this type (`customMessage`, `commandSuccessResponse`, `commandErrorResponse`).
    pub fn message_type(mut self, message_type: &str) -> Self {
        self.filter.message_type = Some(Name::new(message_type));
        self
    }

    /// Receives only messages of this principal.
    pub fn principal(mut self, principal_id: &str) -> Self {
        self.filter.principal_id = Some(Name::new(principal_id));
        self
    }

    /// Receives only messages of this tenant.
    pub fn tenant(mut self, tenant_id: &str) -> Self {
        self.filter.tenant_id = Some(Name::new(tenant_id));
        self
    }

    /// At-least-once: messages wait while no instance runs, are acked only after the handler
    /// succeeds, and failures are retried and then dead-lettered.
    pub fn durable(self) -> Self {
        self.with_durability(true)
    }

    /// Durable (`true`, see [`Subscription::durable`]) or best effort (`false`); for settings
    /// that come from configuration.
    pub fn with_durability(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Retry policy. Only durable subscriptions retry: on a best-effort one, starting the
    /// service fails and says to add [`Subscription::durable`].
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self.retry_set = true;
        self
    }

    /// Delivers every message to every running instance, not to one instance of the service.
    pub fn every_instance(mut self) -> Self {
        self.every_instance = true;
        self
    }

    /// Emits the handler's output as an event of this name.
    pub fn emits(mut self, event_name: &str) -> Self {
        self.emits = Some(Name::new(event_name));
        self
    }

    /// Deliveries one instance handles at once (default 64).
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// Messages the in-memory bridge holds for this subscription at most — queued, running and
    /// waiting for a retry together (default [`DEFAULT_QUEUE_CAPACITY`]). When it is full,
    /// emitters wait within their deadline, then get 503 naming the subscription. Brokers keep
    /// their own bounds (a NATS stream's limits).
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.queue_capacity = messages.max(1);
        self
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the handler takes and returns.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The filter.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// The retry policy.
    pub fn get_retry(&self) -> &Retry {
        &self.retry
    }

    /// The description.
    pub fn get_description(&self) -> &str {
        &self.description
    }

    /// Whether delivery is at-least-once.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// The event the output is emitted as, if any.
    pub fn get_emits(&self) -> Option<&str> {
        self.emits.as_deref()
    }
}

/// A named, versioned group of commands and subscriptions; stateless (state lives in stores
/// reached through [`State`](crate::State)).
///
/// ```
/// use purest_core::prelude::*;
/// async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
/// let service = Service::new("health", "1").description("liveness").command(Command::new("ping", ping));
/// assert!(service.check().is_ok());
/// let twice = Service::new("health", "1").command(Command::new("ping", ping)).command(Command::new("ping", ping));
/// assert!(twice.check().unwrap_err().to_string().contains("twice"));
/// ```
#[derive(Clone)]
pub struct Service {
    pub(crate) name: Name,
    pub(crate) version: Name,
    pub(crate) description: String,
    pub(crate) commands: Vec<Command>,
    pub(crate) subscriptions: Vec<Subscription>,
    pub(crate) layers: Vec<Arc<dyn Layer>>,
    pub(crate) state: StateMap,
    pub(crate) validate_input: bool,
    pub(crate) validate_output: bool,
    pub(crate) websocket_events: Vec<WebsocketEvent>,
}

impl Service {
    /// A service `name`, version `version` (e.g. `"user"`, `"1"`).
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: Name::new(name),
            version: Name::new(version),
            description: String::new(),
            commands: Vec::new(),
            subscriptions: Vec::new(),
            layers: Vec::new(),
            state: StateMap::default(),
            validate_input: true,
            validate_output: true,
            websocket_events: Vec::new(),
        }
    }

    /// Describes the service.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Adds a command.
    pub fn command(mut self, command: Command) -> Self {
        self.commands.push(command);
        self
    }

    /// Adds a subscription.
    pub fn subscription(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }

    /// Lets WebSocket clients of the HTTP gateway subscribe to the event `event_name`; they must
    /// have connected with credentials. An event with a principal or tenant reaches only clients
    /// of that principal and tenant. Events not declared (dead letters included) are never pushed.
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// let service = Service::new("user", "1")
    ///     .websocket_event("newUserRegistered")
    ///     .public_websocket_event("userCountChanged");
    /// assert_eq!(service.websocket_events().len(), 2);
    /// assert!(service.websocket_events()[1].public);
    /// ```
    pub fn websocket_event(self, event_name: &str) -> Self {
        self.declare_websocket_event(event_name, false)
    }

    /// Like [`Service::websocket_event`], for any client, also one without credentials.
    pub fn public_websocket_event(self, event_name: &str) -> Self {
        self.declare_websocket_event(event_name, true)
    }

    fn declare_websocket_event(mut self, event_name: &str, public: bool) -> Self {
        self.websocket_events.push(WebsocketEvent {
            event_name: Name::new(event_name),
            public,
        });
        self
    }

    /// Changes the command named `name` (settings from configuration); an error names the
    /// commands there are when none has that name.
    pub fn update_command(mut self, name: &str, change: impl FnOnce(Command) -> Command) -> Result<Self, BuildError> {
        let Some(index) = self.commands.iter().position(|c| &*c.name == name) else {
            return Err(BuildError::InvalidSetting {
                key: format!("command {name:?} of service {}", self.id()),
                problem: "there is no such command".into(),
                accepted: self.commands.iter().map(|c| c.name.to_string()).collect::<Vec<_>>().join(", "),
            });
        };
        let command = self.commands.remove(index);
        self.commands.insert(index, change(command));
        Ok(self)
    }

    /// Changes the subscription named `name` (settings from configuration); an error names the
    /// subscriptions there are when none has that name.
    pub fn update_subscription(mut self, name: &str, change: impl FnOnce(Subscription) -> Subscription) -> Result<Self, BuildError> {
        let Some(index) = self.subscriptions.iter().position(|s| &*s.name == name) else {
            return Err(BuildError::UnknownSubscription {
                service: self.id(),
                name: name.to_owned(),
                known: self.subscriptions.iter().map(|s| s.name.to_string()).collect::<Vec<_>>().join(", "),
            });
        };
        let subscription = self.subscriptions.remove(index);
        self.subscriptions.insert(index, change(subscription));
        Ok(self)
    }

    /// Shares `value` with this service's handlers (the [`State`](crate::State) extractor).
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Whether outputs are checked against their schema before they leave (default on).
    pub fn validate_output(mut self, on: bool) -> Self {
        self.validate_output = on;
        self
    }

    /// Whether payloads and parameters are checked before handlers run (default on). Switch it
    /// off only for services whose every caller is trusted code in the same process.
    pub fn validate_input(mut self, on: bool) -> Self {
        self.validate_input = on;
        self
    }

    layer_setters!();

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The description.
    pub fn get_description(&self) -> &str {
        &self.description
    }

    /// The commands.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// The subscriptions.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// The events WebSocket clients may subscribe to.
    pub fn websocket_events(&self) -> &[WebsocketEvent] {
        &self.websocket_events
    }

    /// `name/version`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.name, self.version)
    }

    /// Finds mistakes: bad names, duplicate commands or subscriptions, subscriptions without a
    /// filter, subscriptions returning a value without an event to emit it under, addresses and
    /// event names given as strings that cannot work (`.invokes("user/1")`, `.on_event("")`,
    /// `.success_event("new user")`, …), and commands made with [`Command::of`] registered in a
    /// service other than their reference's. Each error names the item and what to write.
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// async fn register() -> Result<(), HandledError> { Ok(()) }
    /// let service = Service::new("user", "1").command(Command::new("register", register).invokes("email/send"));
    /// assert_eq!(
    ///     service.check().unwrap_err().to_string(),
    ///     "command `register` of service user/1, .invokes(\"email/send\"): \"email/send\" is not a command address; \
    ///      write \"service/version/command\", e.g. .invokes(\"user/1/getUser\")"
    /// );
    /// ```
    pub fn check(&self) -> Result<(), BuildError> {
        check_name("service", &self.name)?;
        check_name("service version", &self.version)?;
        for (i, command) in self.commands.iter().enumerate() {
            check_name("command", &command.name)?;
            if let Some(first) = self.commands[..i].iter().find(|c| c.name == command.name) {
                return Err(BuildError::DuplicateCommand {
                    service: self.id(),
                    command: command.name.to_string(),
                    first: first.signature.handler.to_owned(),
                    second: command.signature.handler.to_owned(),
                });
            }
        }
        for (i, sub) in self.subscriptions.iter().enumerate() {
            check_name("subscription", &sub.name)?;
            if let Some(first) = self.subscriptions[..i].iter().find(|s| s.name == sub.name) {
                return Err(BuildError::DuplicateSubscription {
                    service: self.id(),
                    subscription: sub.name.to_string(),
                    first: first.signature.handler.to_owned(),
                    second: sub.signature.handler.to_owned(),
                });
            }
            if sub.retry_set && !sub.durable {
                return Err(BuildError::RetryWithoutDurable {
                    service: self.id(),
                    subscription: sub.name.to_string(),
                });
            }
            if !sub.filter.is_specific() {
                return Err(BuildError::UnfilteredSubscription(sub.name.to_string()));
            }
            if sub.emits.is_none() && !sub.signature.output_is_unit {
                let output = sub.signature.output.as_ref().map(|o| o.rust_type).unwrap_or("?");
                return Err(BuildError::OutputWithoutEvent {
                    subscription: sub.name.to_string(),
                    output: output.to_owned(),
                });
            }
        }
        self.check_references()
    }

    /// The addresses and event names given to the builders as strings, and the services of
    /// [`CommandRef`]s: checked once here rather than failing at the first message.
    fn check_references(&self) -> Result<(), BuildError> {
        let id = self.id();
        for command in &self.commands {
            let at = |call: String| format!("command `{}` of service {id}, {call}", command.name);
            if let Some((service, version)) = command.reference
                && (*self.name != *service || *self.version != *version)
            {
                return Err(BuildError::InvalidReference {
                    item: at(format!("made with Command::of({service}/{version}/{})", command.name)),
                    problem: format!("the reference names service {service}/{version}, but the command is registered in service {id}"),
                    fix: format!(
                        "register it in service {service}/{version} (Service::new({service:?}, {version:?})) or fix the reference"
                    ),
                });
            }
            if let Some(event) = &command.success_event {
                check_event_name(event, || at(format!(".success_event({event:?})")))?;
            }
            if command.http.as_ref().is_some_and(|route| route.path.is_empty()) {
                return Err(BuildError::InvalidReference {
                    item: at(".public() or .http_error(..)".into()),
                    problem: "they describe an HTTP route, but the command has no .http(method, path), so it is not served over HTTP"
                        .into(),
                    fix: "add .http(Method::POST, \"path\") to serve it, or remove them".into(),
                });
            }
            check_links(&command.links, at)?;
        }
        for sub in &self.subscriptions {
            let at = |call: String| format!("subscription `{}` of service {id}, {call}", sub.name);
            let filter = &sub.filter;
            if let Some(event) = &filter.event_name {
                check_event_name(event, || at(format!("its event {event:?} (.on_event or Subscription::on)")))?;
            }
            for (what, name) in [
                ("service", &filter.sender_service),
                ("service version", &filter.sender_version),
                ("command", &filter.sender_target),
            ] {
                if let Some(name) = name
                    && let Err(BuildError::InvalidName { why, .. }) = check_name(what, name)
                {
                    return Err(BuildError::InvalidReference {
                        item: at(format!("the sender's {what} {name:?} (.from_service / .from_command)")),
                        problem: why.into(),
                        fix: "give the sender's service name, version and command name separately, e.g. .from_command(\"user\", \"1\", \"registerNewUser\")".into(),
                    });
                }
            }
            if let Some(event) = &sub.emits {
                check_event_name(event, || at(format!(".emits({event:?})")))?;
            }
            let dead_letter = &sub.retry.dead_letter;
            check_event_name(dead_letter, || at(format!("Retry::dead_letter({dead_letter:?})")))?;
            check_links(&sub.links, at)?;
        }
        for (i, event) in self.websocket_events.iter().enumerate() {
            let name = &event.event_name;
            let at = || format!("service {id}, .websocket_event({name:?})");
            check_event_name(name, at)?;
            if self.websocket_events[..i].iter().any(|other| other.event_name == *name) {
                return Err(BuildError::InvalidReference {
                    item: at(),
                    problem: "the event is declared twice".into(),
                    fix: "declare it once, with .websocket_event (signed-in clients) or .public_websocket_event (anyone)".into(),
                });
            }
        }
        Ok(())
    }
}

/// Refuses an event name that is empty or holds whitespace; `item` says where it was given.
fn check_event_name(name: &str, item: impl FnOnce() -> String) -> Result<(), BuildError> {
    let problem = if name.is_empty() {
        "the event name is empty"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "the event name contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(BuildError::InvalidReference {
        item: item(),
        problem: problem.into(),
        fix: "write a non-empty event name without whitespace, e.g. \"newUserRegistered\", or use an EventRef".into(),
    })
}

/// Refuses declared links that cannot be addresses or event names.
fn check_links(links: &Links, at: impl Fn(String) -> String) -> Result<(), BuildError> {
    for target in &links.invokes {
        let parts: Vec<&str> = target.split('/').collect();
        let problem = if parts.len() != 3 || parts.iter().any(|part| part.is_empty()) {
            format!("{target:?} is not a command address")
        } else if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            format!("{target:?} contains whitespace or control characters")
        } else {
            continue;
        };
        return Err(BuildError::InvalidReference {
            item: at(format!(".invokes({target:?})")),
            problem,
            fix: "write \"service/version/command\", e.g. .invokes(\"user/1/getUser\")".into(),
        });
    }
    for event in &links.may_emit {
        check_event_name(event, || at(format!(".may_emit({event:?})")))?;
    }
    Ok(())
}

fn check_name(what: &'static str, name: &str) -> Result<(), BuildError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains '/', which separates service, version and command"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(BuildError::InvalidName {
        what,
        name: name.to_owned(),
        why,
    })
}
