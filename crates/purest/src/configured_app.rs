//! [`App`]: the core [`purest_core::App`] with the bridges of this build registered, so that
//! `PUREST_BRIDGE` can choose any of them without a code change.

use std::sync::Arc;
use std::time::Duration;

use purest_core::{Bridge, BuildError, Error, RunningApp, Service};

use crate::config::{ServiceSection, Settings};

/// A set of services and where they run. Like [`purest_core::App`], plus `PUREST_BRIDGE` accepts
/// every bridge this build of `purest` includes (`nats://host:port` with the default `nats`
/// feature).
///
/// ```
/// use purest::prelude::*;
/// let err = App::new().configure(|key| (key == "PUREST_BRIDGE").then(|| "kafka://x".to_owned())).err().unwrap();
/// assert!(err.to_string().contains("`nats://…`"), "{err}");
/// ```
pub struct App {
    core: purest_core::App,
    /// Code-side gateway settings (authenticators, CORS, …) applied before the environment's.
    #[cfg(feature = "http")]
    customize_gateway: Option<Box<dyn FnOnce(purest_http::Gateway) -> purest_http::Gateway + Send>>,
}

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
        App {
            core: app,
            #[cfg(feature = "http")]
            customize_gateway: None,
        }
    }

    fn map(self, change: impl FnOnce(purest_core::App) -> purest_core::App) -> Self {
        App {
            core: change(self.core),
            ..self
        }
    }

    fn try_map(self, change: impl FnOnce(purest_core::App) -> Result<purest_core::App, BuildError>) -> Result<Self, BuildError> {
        Ok(App {
            core: change(self.core)?,
            ..self
        })
    }

    /// Adds a service.
    pub fn service(self, service: Service) -> Self {
        self.map(|app| app.service(service))
    }

    /// Runs on this bridge.
    pub fn bridge(self, bridge: impl Bridge) -> Self {
        self.map(|app| app.bridge(bridge))
    }

    /// Runs on this (shared) bridge.
    pub fn shared_bridge(self, bridge: Arc<dyn Bridge>) -> Self {
        self.map(|app| app.shared_bridge(bridge))
    }

    /// Shares `value` with every service's handlers.
    pub fn state<T: Clone + Send + Sync + 'static>(self, value: T) -> Self {
        self.map(|app| app.state(value))
    }

    /// How long shutdown waits for handlers in flight.
    pub fn drain_timeout(self, timeout: Duration) -> Self {
        self.map(|app| app.drain_timeout(timeout))
    }

    /// Runs only these services (by `name` or `name/version`).
    pub fn only<S: Into<String>>(self, services: impl IntoIterator<Item = S>) -> Self {
        self.map(|app| app.only(services))
    }

    /// The registered services.
    pub fn services(&self) -> &[Service] {
        self.core.services()
    }

    /// Applies the configuration: `purest.toml` (or the file `PUREST_CONFIG` names) and the
    /// environment, which wins (see [`crate::config`]).
    pub fn configure_from_env(self) -> Result<Self, BuildError> {
        crate::describe::answer_if_asked(self.services());
        let settings = Settings::load()?;
        self.configure_with(&settings)
    }

    /// Applies `settings`: the topology, and per-service concurrency, durability and retries.
    pub fn configure_with(self, settings: &Settings) -> Result<Self, BuildError> {
        let mut app = self.try_map(|app| app.configure(|key| settings.lookup(key)))?;
        for (name, section) in &settings.service {
            app = app.try_map(|core| core.update_service(name, |service| apply_service_settings(service, section)))?;
        }
        Ok(app)
    }

    /// Applies a topology read through `lookup`.
    pub fn configure(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        self.try_map(|app| app.configure(lookup))
    }

    /// Connects the bridge, checks every service and starts them.
    pub async fn start(self) -> Result<RunningApp, Error> {
        self.core.start().await
    }

    /// Adjusts the HTTP gateway `run` starts (authenticators, CORS, limits), before the
    /// environment's settings (`PUREST_HTTP_*`) are added.
    #[cfg(feature = "http")]
    pub fn http(mut self, customize: impl FnOnce(purest_http::Gateway) -> purest_http::Gateway + Send + 'static) -> Self {
        self.customize_gateway = Some(Box::new(customize));
        self
    }

    /// Applies the environment (`PUREST_BRIDGE`, `PUREST_SERVICES`, `PUREST_HTTP…`), starts the
    /// services and the HTTP gateway, and runs until SIGINT or SIGTERM; then the gateway stops
    /// taking requests, requests and handlers in flight finish, and it returns.
    pub async fn run(self) -> Result<(), Error> {
        crate::describe::answer_if_asked(self.services());
        let settings = Settings::load()?;
        let app = self.configure_with(&settings)?;
        #[cfg(feature = "http")]
        let http = crate::http_config::HttpSettings::read(app.services(), &|key| settings.lookup(key))?;
        #[cfg(feature = "http")]
        let customize = app.customize_gateway;
        let running = app.core.start().await?;
        #[cfg(feature = "http")]
        let gateway = match http {
            Some(settings) => {
                let gateway = purest_http::Gateway::new(&running);
                let gateway = match customize {
                    Some(customize) => customize(gateway),
                    None => gateway,
                };
                match crate::http_config::serve(settings, gateway).await {
                    Ok(server) => Some(server),
                    Err(error) => {
                        running.shutdown().await;
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        purest_core::app::shutdown_signal().await;
        tracing::info!("shutdown requested; draining");
        #[cfg(feature = "http")]
        if let Some(server) = gateway {
            server.stop().await;
        }
        running.shutdown().await;
        Ok(())
    }

    /// The core app, for what this wrapper does not forward.
    pub fn into_core(self) -> purest_core::App {
        self.core
    }
}

/// Per-service settings from configuration: a service-wide concurrency for every command and
/// subscription, then each named subscription's own settings.
fn apply_service_settings(mut service: Service, section: &ServiceSection) -> Result<Service, BuildError> {
    if let Some(limit) = section.concurrency {
        let commands: Vec<String> = service.commands().iter().map(|c| c.name().to_owned()).collect();
        for name in commands {
            service = service.update_command(&name, |c| c.concurrency(limit))?;
        }
        let subscriptions: Vec<String> = service.subscriptions().iter().map(|s| s.name().to_owned()).collect();
        for name in subscriptions {
            service = service.update_subscription(&name, |s| s.concurrency(limit))?;
        }
    }
    for (name, settings) in &section.subscriptions {
        service = service.update_subscription(name, |mut subscription| {
            if let Some(limit) = settings.concurrency {
                subscription = subscription.concurrency(limit);
            }
            if let Some(durable) = settings.durable {
                subscription = subscription.with_durability(durable);
            }
            if let Some(retry) = &settings.retry {
                let retry = retry.apply(subscription.get_retry());
                subscription = subscription.retry(retry);
            }
            subscription
        })?;
    }
    Ok(service)
}
