//! [`Host`]: registers services, starts them on a bridge, and shuts them down gracefully — the
//! core of an app, without configuration files or gateways. Apps use `purest::App`, which builds
//! on it and adds both; bridge crates and tests use `Host` directly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::bridge::{Bridge, Registration};
use crate::context::{Client, StateMap};
use crate::correlation::{self, Correlations};
use crate::envelope::{Address, Envelope};
use crate::error::{BuildError, Error, HandledError};
use crate::id::Id;
use crate::layer::Layer;
use crate::memory::MemoryBridge;
use crate::name::Name;
use crate::presence;
use crate::runtime::ServiceInstance;
use crate::service::Service;

/// How long shutdown waits for handlers in flight unless set otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A set of services and where they run.
///
/// ```
/// use purest_core::prelude::*;
/// async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = Host::new().service(Service::new("health", "1").command(Command::new("ping", ping))).start().await?;
/// assert_eq!(app.client().invoke::<String>(("health", "1", "ping"), ()).await?, "pong");
/// assert!(app.shutdown().await, "drained in time");
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
pub struct Host {
    services: Vec<Service>,
    bridge: Option<Arc<dyn Bridge>>,
    /// A bridge URL from the configuration, connected when the app starts.
    bridge_url: Option<String>,
    connectors: Vec<(&'static str, Connector)>,
    state: StateMap,
    /// Events this app receives for its waiters ([`Host::awaits`]).
    awaited: Vec<Name>,
    layers: Vec<Arc<dyn Layer>>,
    drain_timeout: Duration,
    selected: Option<(Vec<String>, &'static str)>,
}

/// Connects a bridge from its URL (`nats://…`); registered per URL scheme with
/// [`Host::connector`].
pub type Connector = Arc<dyn Fn(String) -> BoxFuture<'static, Result<Arc<dyn Bridge>, Error>> + Send + Sync>;

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// An app without services, on the in-memory bridge unless configured otherwise.
    pub fn new() -> Self {
        Self {
            services: Vec::new(),
            bridge: None,
            bridge_url: None,
            connectors: Vec::new(),
            state: StateMap::default(),
            awaited: Vec::new(),
            layers: Vec::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            selected: None,
        }
    }

    /// Adds a service.
    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Runs on this bridge.
    pub fn bridge(self, bridge: impl Bridge) -> Self {
        self.shared_bridge(Arc::new(bridge))
    }

    /// Runs on this (shared) bridge.
    pub fn shared_bridge(mut self, bridge: Arc<dyn Bridge>) -> Self {
        self.bridge = Some(bridge);
        self
    }

    /// Lets `PUREST_BRIDGE` name a bridge of this URL scheme (`"nats"` for `nats://…`); the facade
    /// crate `purest` registers the bridges it was built with.
    pub fn connector<F, Fut>(mut self, scheme: &'static str, connect: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Arc<dyn Bridge>, Error>> + Send + 'static,
    {
        self.connectors.retain(|(known, _)| *known != scheme);
        self.connectors.push((scheme, Arc::new(move |url| Box::pin(connect(url)))));
        self
    }

    /// Receives `event` on this instance for [`Client::wait_for_event`] and
    /// [`Context::wait_for_event`](crate::Context::wait_for_event): the events a dispatched
    /// command causes, matched by correlation id. Declare every event the app waits for; an
    /// event that arrives before its waiter is kept for it.
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// async fn invite(ctx: Context, Payload(email): Payload<String>) -> Result<(), HandledError> {
    ///     ctx.emit("customerInvited", email).await
    /// }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let app = Host::new()
    ///     .service(Service::new("customers", "1").command(Command::new("invite", invite)))
    ///     .awaits("customerInvited")
    ///     .awaits("invitationRejected")
    ///     .start()
    ///     .await?;
    /// let client = app.client();
    /// let conversation = client.dispatch("customers/1/invite", "ann@example.com").await?;
    /// let event = client
    ///     .wait_for_event(&conversation, &["customerInvited", "invitationRejected"], std::time::Duration::from_secs(5))
    ///     .await?;
    /// assert_eq!(event.event_name.as_deref(), Some("customerInvited"));
    /// app.shutdown().await;
    /// # Ok::<_, purest_core::Error>(()) }).unwrap();
    /// ```
    pub fn awaits(mut self, event: &str) -> Self {
        let name = Name::new(event);
        if !self.awaited.contains(&name) {
            self.awaited.push(name);
        }
        self
    }

    /// Shares `value` with every service's handlers (a service's own state wins).
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Adds a [layer](crate::layer) around every command and subscription of every service
    /// (outside the services' own layers).
    pub fn layer(mut self, layer: impl Layer) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// How long shutdown waits for handlers in flight (default 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Runs only these services of the registered ones (by `name` or `name/version`).
    pub fn only<S: Into<String>>(mut self, services: impl IntoIterator<Item = S>) -> Self {
        self.selected = Some((services.into_iter().map(Into::into).collect(), "Host::only"));
        self
    }

    /// Changes the registered service named `name` (`name` or `name/version`), e.g. to apply
    /// settings from configuration; an unknown name is an error listing the registered ones.
    pub fn update_service(mut self, name: &str, change: impl FnOnce(Service) -> Result<Service, BuildError>) -> Result<Self, BuildError> {
        let Some(index) = self.services.iter().position(|s| &*s.name == name || s.id() == name) else {
            return Err(BuildError::UnknownService {
                name: name.to_owned(),
                source_name: "the configuration".to_owned(),
                known: self.services.iter().map(Service::id).collect::<Vec<_>>().join(", "),
            });
        };
        let service = self.services.remove(index);
        self.services.insert(index, change(service)?);
        Ok(self)
    }

    /// The registered services.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Applies a topology read through `lookup`: `PUREST_BRIDGE` (`memory`, the default, or a URL
    /// whose scheme has a [connector](Host::connector)) and `PUREST_SERVICES` (comma-separated
    /// service names; default all; `none` runs no service, for a process that only serves HTTP).
    ///
    /// ```
    /// use purest_core::prelude::*;
    /// let app = Host::new().service(Service::new("user", "1")).service(Service::new("email", "1"));
    /// let err = app.configure(|key| (key == "PUREST_SERVICES").then(|| "user,mail".to_owned())).err().unwrap();
    /// assert!(err.to_string().contains("unknown service \"mail\" in PUREST_SERVICES"));
    /// ```
    pub fn configure(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        if let Some(url) = lookup("PUREST_BRIDGE") {
            let url = url.trim();
            let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
            if url.is_empty() || url == "memory" {
                self.bridge = Some(Arc::new(MemoryBridge::new()));
            } else if self.connectors.iter().any(|(known, _)| *known == scheme) {
                self.bridge_url = Some(url.to_owned());
            } else {
                let accepted = self
                    .connectors
                    .iter()
                    .map(|(scheme, _)| format!(", `{scheme}://…`"))
                    .collect::<String>();
                return Err(BuildError::UnsupportedBridge(url.to_owned(), accepted));
            }
        }
        if let Some(list) = lookup("PUREST_SERVICES") {
            let names: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if names == ["none"] && !self.services.iter().any(|s| &*s.name == "none") {
                // A process that runs no service: e.g. an HTTP gateway reaching them over the bridge.
                self.selected = Some((Vec::new(), "PUREST_SERVICES"));
            } else if !names.is_empty() {
                self.selected = Some((names, "PUREST_SERVICES"));
            }
        }
        self.selected_services()?;
        Ok(self)
    }

    fn selected_services(&self) -> Result<Vec<&Service>, BuildError> {
        for (i, service) in self.services.iter().enumerate() {
            if self.services[..i]
                .iter()
                .any(|s| s.name == service.name && s.version == service.version)
            {
                return Err(BuildError::DuplicateService(service.id()));
            }
        }
        let Some((names, source)) = &self.selected else {
            return Ok(self.services.iter().collect());
        };
        for name in names {
            if !self.services.iter().any(|s| *s.name == **name || s.id() == *name) {
                return Err(BuildError::UnknownService {
                    name: name.clone(),
                    source_name: (*source).to_owned(),
                    known: self.services.iter().map(Service::id).collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(self
            .services
            .iter()
            .filter(|s| names.iter().any(|n| *s.name == **n || s.id() == *n))
            .collect())
    }

    /// Checks every service and starts them on the bridge.
    pub async fn start(self) -> Result<RunningApp, Error> {
        let bridge = match (&self.bridge_url, &self.bridge) {
            (Some(url), _) => {
                let scheme = url.split_once("://").map_or(url.as_str(), |(scheme, _)| scheme);
                let (_, connect) = self
                    .connectors
                    .iter()
                    .find(|(known, _)| *known == scheme)
                    .expect("checked by configure");
                connect(url.clone()).await?
            }
            (None, Some(bridge)) => bridge.clone(),
            (None, None) => Arc::new(MemoryBridge::new()),
        };
        let services = self.selected_services()?;
        for service in &services {
            service.check()?;
        }
        let correlations = Arc::new(Correlations::new(
            correlation::DEFAULT_CAPACITY,
            2 * crate::context::DEFAULT_TIMEOUT,
            self.awaited.clone(),
        ));
        let mut state = self.state.clone();
        state.insert(correlations.clone());
        let waiting = correlation::listen(&bridge, &correlations).await?;
        // The services and the app's clients send and receive through the metered bridge (the
        // bridge itself without a metrics backend); the core's own listeners do not count.
        let plain = bridge;
        let bridge = crate::metrics::Metered::wrap(plain.clone());
        let mut instances = Vec::with_capacity(services.len());
        for service in services {
            match ServiceInstance::start(service, bridge.clone(), &state, &self.layers).await {
                Ok(instance) => {
                    let list = |names: Vec<&str>| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
                    tracing::info!(
                        instance = %instance.id,
                        bridge = bridge.name(),
                        "service {} started (commands: {}; subscriptions: {})",
                        instance.service_id,
                        list(service.commands.iter().map(|c| &*c.name).collect()),
                        list(service.subscriptions.iter().map(|s| &*s.name).collect()),
                    );
                    instances.push(instance);
                }
                Err(error) => {
                    for instance in instances {
                        instance.stop().await;
                    }
                    return Err(error);
                }
            }
        }
        let cards: Vec<_> = instances.iter().map(|instance| instance.card.clone()).collect();
        let presence = match presence::answer_discovery(&plain, cards).await {
            Ok(registration) => registration,
            Err(error) => {
                tracing::warn!(%error, "this app will not answer `purest ps`: the presence subscription failed");
                None
            }
        };
        Ok(RunningApp {
            bridge,
            presence,
            correlations,
            waiting,
            instances,
            catalog: self.services.into(),
            drain_timeout: self.drain_timeout,
        })
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: call it before the app announces that it is up, so a signal
/// that arrives in between stops it gracefully instead of killing it. Must be called inside a
/// Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::error!(%error, "cannot listen for {name}");
                None
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "SIGINT (Ctrl-C)");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {}
                _ = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}

/// Services running on a bridge.
pub struct RunningApp {
    bridge: Arc<dyn Bridge>,
    /// Answers `infoServiceDiscover` (see [`crate::presence`]).
    presence: Option<Box<dyn Registration>>,
    /// The conversations of dispatched commands, and the subscriptions that feed them.
    correlations: Arc<Correlations>,
    waiting: Vec<Box<dyn Registration>>,
    instances: Vec<ServiceInstance>,
    catalog: Arc<[Service]>,
    drain_timeout: Duration,
}

impl RunningApp {
    /// A client that invokes commands and emits events from outside any service.
    pub fn client(&self) -> Client {
        // A non-empty target: PURISTA drops success events re-published for an empty one.
        let mut sender = Address::new("purest-client", "1", "client");
        sender.instance_id = Some(Id::random().to_string().into());
        Client::new(self.bridge.clone(), sender).with_correlations(self.correlations.clone())
    }

    /// The bridge the services run on.
    pub fn bridge(&self) -> &Arc<dyn Bridge> {
        &self.bridge
    }

    /// Every service the app knows, also those running in other processes (not selected by
    /// `PUREST_SERVICES`): what a gateway serves and a spec describes.
    pub fn catalog(&self) -> &Arc<[Service]> {
        &self.catalog
    }

    /// The ids (`name/version`) of the services running in this process.
    pub fn running_services(&self) -> impl Iterator<Item = &str> {
        self.instances.iter().map(|instance| instance.service_id.as_str())
    }

    /// Whether the app can take work: `Err` with the reason while the bridge is not connected.
    /// (Every service of a `RunningApp` has started: a service that fails to start fails
    /// [`Host::start`].)
    pub fn readiness(&self) -> Result<(), String> {
        if self.bridge.is_ready() {
            Ok(())
        } else {
            Err(format!("the {} bridge is not connected", self.bridge.name()))
        }
    }

    /// Sends a command that arrives as JSON bytes (as a wire bridge receives it) and returns the
    /// response envelope; bytes that are not an envelope get a 400 naming the problem.
    pub async fn invoke_json(&self, bytes: &[u8], timeout: Duration) -> Result<Envelope, HandledError> {
        let envelope = Envelope::from_json(bytes).map_err(|e| HandledError::bad_request(e.to_string()))?;
        self.bridge.invoke(envelope, timeout).await
    }

    /// Stops taking new work, lets handlers in flight finish (and durable messages be acked),
    /// bounded by the drain timeout. Returns whether everything finished in time.
    pub async fn shutdown(self) -> bool {
        if let Some(presence) = self.presence {
            presence.close().await;
        }
        for registration in self.waiting {
            registration.close().await;
        }
        let stops = futures::future::join_all(self.instances.into_iter().map(ServiceInstance::stop));
        match tokio::time::timeout(self.drain_timeout, stops).await {
            Ok(_) => {
                tracing::info!("all services stopped");
                true
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.drain_timeout, "handlers still running after the drain timeout; stopping anyway");
                false
            }
        }
    }
}

/// The whole number a bridge setting's variable holds, `None` when it is not set; the error
/// names the variable and its value.
///
/// ```
/// use purest_core::host::variable_number;
/// let lookup = |key: &str| (key == "PUREST_X_PREFETCH").then(|| " 64".to_owned());
/// assert_eq!(variable_number(&lookup, "PUREST_X_PREFETCH"), Ok(Some(64)));
/// assert_eq!(variable_number(&lookup, "PUREST_X_OTHER"), Ok(None));
/// assert!(variable_number(&|_: &str| Some("lots".to_owned()), "PUREST_X_PREFETCH").unwrap_err().contains("PUREST_X_PREFETCH"));
/// ```
pub fn variable_number(lookup: &impl Fn(&str) -> Option<String>, variable: &str) -> Result<Option<u64>, String> {
    lookup(variable)
        .map(|value| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{variable}={value:?} is not a whole number"))
        })
        .transpose()
}

/// `value` of the setting `<section> <key>` if it lies in `low..=high`, else an error naming the
/// setting and the range to write.
///
/// ```
/// use purest_core::host::setting_in_range;
/// assert_eq!(setting_in_range("mqtt", "prefetch", 64, 1, 65_535), Ok(64));
/// assert_eq!(setting_in_range("mqtt", "prefetch", 0, 1, 65_535).unwrap_err(), "mqtt prefetch = 0 is out of range; write 1 to 65535");
/// ```
pub fn setting_in_range(section: &str, key: &str, value: u64, low: u64, high: u64) -> Result<u64, String> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{section} {key} = {value} is out of range; write {low} to {high}"))
    }
}

/// A bridge URL with any password replaced by `***`, for errors and logs.
///
/// ```
/// use purest_core::host::url_without_password;
/// assert_eq!(url_without_password("amqp://ann:s3cret@h:5672/%2f"), "amqp://ann:***@h:5672/%2f");
/// assert_eq!(url_without_password("mqtt://h:1883"), "mqtt://h:1883");
/// ```
pub fn url_without_password(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if scheme < at => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
