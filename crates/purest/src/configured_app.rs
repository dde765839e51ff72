//! [`App`]: the core [`purest_core::App`] with the bridges of this build registered, so that
//! `PUREST_BRIDGE` can choose any of them without a code change.

use std::sync::Arc;
use std::time::Duration;

use purest_core::{Bridge, BuildError, Error, RunningApp, Service};

/// A set of services and where they run. Like [`purest_core::App`], plus `PUREST_BRIDGE` accepts
/// every bridge this build of `purest` includes (`nats://host:port` with the default `nats`
/// feature).
///
/// ```
/// use purest::prelude::*;
/// let err = App::new().configure(|key| (key == "PUREST_BRIDGE").then(|| "kafka://x".to_owned())).err().unwrap();
/// assert!(err.to_string().contains("`nats://…`"), "{err}");
/// ```
pub struct App(purest_core::App);

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// An app without services, on the in-memory bridge unless configured otherwise.
    pub fn new() -> Self {
        let app = purest_core::App::new();
        #[cfg(feature = "nats")]
        let app = app.connector("nats", |url| async move {
            Ok(Arc::new(purest_nats::NatsBridge::connect_url(&url).await?) as Arc<dyn Bridge>)
        });
        App(app)
    }

    /// Adds a service.
    pub fn service(self, service: Service) -> Self {
        App(self.0.service(service))
    }

    /// Runs on this bridge.
    pub fn bridge(self, bridge: impl Bridge) -> Self {
        App(self.0.bridge(bridge))
    }

    /// Runs on this (shared) bridge.
    pub fn shared_bridge(self, bridge: Arc<dyn Bridge>) -> Self {
        App(self.0.shared_bridge(bridge))
    }

    /// Shares `value` with every service's handlers.
    pub fn state<T: Clone + Send + Sync + 'static>(self, value: T) -> Self {
        App(self.0.state(value))
    }

    /// How long shutdown waits for handlers in flight.
    pub fn drain_timeout(self, timeout: Duration) -> Self {
        App(self.0.drain_timeout(timeout))
    }

    /// Runs only these services (by `name` or `name/version`).
    pub fn only<S: Into<String>>(self, services: impl IntoIterator<Item = S>) -> Self {
        App(self.0.only(services))
    }

    /// The registered services.
    pub fn services(&self) -> &[Service] {
        self.0.services()
    }

    /// Applies `PUREST_BRIDGE` and `PUREST_SERVICES` from the environment.
    pub fn configure_from_env(self) -> Result<Self, BuildError> {
        self.0.configure_from_env().map(App)
    }

    /// Applies a topology read through `lookup`.
    pub fn configure(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        self.0.configure(lookup).map(App)
    }

    /// Connects the bridge, checks every service and starts them.
    pub async fn start(self) -> Result<RunningApp, Error> {
        self.0.start().await
    }

    /// Applies the environment, starts, and runs until SIGINT or SIGTERM, then drains.
    pub async fn run(self) -> Result<(), Error> {
        self.0.run().await
    }

    /// The core app, for what this wrapper does not forward.
    pub fn into_core(self) -> purest_core::App {
        self.0
    }
}
