//! [`App`]: services, the bridge they run on and the gateways in front of them, configured from
//! `purest.toml` and the environment. It builds on the core's [`Host`](purest_core::Host) and
//! registers every bridge this build includes, so `PUREST_BRIDGE` can choose any of them without
//! a code change.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use purest_core::readiness::ReadinessCheck;
use purest_core::{Bridge, BuildError, Client, Error, Host, Layer, RunningApp, Service};

use crate::config::{ServiceSection, Settings};

/// An app: its services, where they run, and the gateways in front of them.
///
/// Settings come from `purest.toml` and `PUREST_*` variables (see [`crate::config`]); `PUREST_BRIDGE`
/// accepts every bridge this build of `purest` includes (`nats://host:port` with the default `nats`
/// feature).
///
/// ```
/// use purest::prelude::*;
/// let err = App::new().configure(|key| (key == "PUREST_BRIDGE").then(|| "kafka://x".to_owned())).err().unwrap();
/// assert!(err.to_string().contains("`nats://…`"), "{err}");
/// ```
pub struct App {
    host: Host,
    /// Code-side gateway settings (authenticators, CORS, …) applied before the configuration's.
    #[cfg(feature = "http")]
    customize_gateway: Option<Box<dyn FnOnce(purest_http::Gateway) -> purest_http::Gateway + Send>>,
    companions: Vec<StartCompanion>,
}

type StartCompanion = Box<dyn FnOnce(Started) -> BoxFuture<'static, Result<Companion, Error>> + Send>;

/// What a companion learns when the app has started: the bridge, a client, and which services
/// run in this process.
#[derive(Clone)]
pub struct Started {
    /// The bridge the services run on.
    pub bridge: Arc<dyn Bridge>,
    /// A client of the app (it can dispatch and wait for events).
    pub client: Client,
    /// The ids (`name/version`) of the services running in this process.
    pub services: Vec<String>,
}

impl Started {
    /// Whether the service `name` (`name` or `name/version`) runs in this process.
    pub fn runs(&self, name: &str) -> bool {
        self.services
            .iter()
            .any(|id| id == name || id.split_once('/').is_some_and(|(service, _)| service == name))
    }
}

/// Work that runs beside the services (projections, an outbox relay), with how to stop it and
/// what it tells `/readyz`.
pub struct Companion {
    stop: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
    readiness: Vec<Arc<dyn ReadinessCheck>>,
}

impl Companion {
    /// Work stopped by `stop`.
    pub fn new<F, Fut>(stop: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Companion {
            stop: Box::new(move || Box::pin(stop())),
            readiness: Vec::new(),
        }
    }

    /// Adds `check` to what the gateway's `/readyz` reports (the event store, the projections
    /// and their lag).
    pub fn readiness(mut self, check: impl ReadinessCheck) -> Self {
        self.readiness.push(Arc::new(check));
        self
    }

    /// Nothing to run (the services it goes with do not run in this process).
    pub fn none() -> Self {
        Self::new(|| async {})
    }

    async fn stop(self) {
        (self.stop)().await
    }
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// An app without services, on the in-memory bridge unless configured otherwise.
    pub fn new() -> Self {
        // Until configured, bridges read their variables (`PUREST_NATS_*`) themselves.
        #[cfg(feature = "nats")]
        let host = Host::new().connector("nats", |url| async move {
            Ok(Arc::new(purest_nats::NatsBridge::connect_url(&url).await?) as Arc<dyn Bridge>)
        });
        #[cfg(not(feature = "nats"))]
        let host = Host::new();
        #[cfg(feature = "amqp")]
        let host = amqp_connectors(host, |url| async move { purest_amqp::AmqpConfig::from_url_and_env(&url) });
        #[cfg(feature = "mqtt")]
        let host = mqtt_connectors(host, |url| async move { purest_mqtt::MqttConfig::from_url_and_env(&url) });
        #[cfg(feature = "redis")]
        let host = redis_connectors(host, |url| async move { purest_redis::RedisConfig::from_url_and_env(&url) });
        App {
            host,
            #[cfg(feature = "http")]
            customize_gateway: None,
            companions: Vec::new(),
        }
    }

    /// Starts work beside the services when [`App::run`] has started them (after the bridge is
    /// connected, before the gateway serves), and stops it after the gateway stopped, before the
    /// services do. `start` learns which services run in this process, to start only the work
    /// that belongs to them. An error stops the app from starting.
    ///
    /// ```
    /// use purest::prelude::*;
    /// use purest::{Companion, Started};
    /// let app = App::new().service(Service::new("orders", "1")).companion(|started: Started| async move {
    ///     if !started.runs("orders") {
    ///         return Ok(Companion::none());
    ///     }
    ///     let task = tokio::spawn(async { /* relay events, keep a projection, … */ });
    ///     Ok(Companion::new(move || async move { task.abort(); }))
    /// });
    /// # drop(app);
    /// ```
    pub fn companion<F, Fut>(mut self, start: F) -> Self
    where
        F: FnOnce(Started) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Companion, Error>> + Send + 'static,
    {
        self.companions.push(Box::new(move |started| Box::pin(start(started))));
        self
    }

    fn map(self, change: impl FnOnce(Host) -> Host) -> Self {
        App {
            host: change(self.host),
            ..self
        }
    }

    fn try_map(self, change: impl FnOnce(Host) -> Result<Host, BuildError>) -> Result<Self, BuildError> {
        Ok(App {
            host: change(self.host)?,
            ..self
        })
    }

    /// Adds a service.
    pub fn service(self, service: Service) -> Self {
        self.map(|host| host.service(service))
    }

    /// Runs on this bridge (instead of the configured one).
    pub fn bridge(self, bridge: impl Bridge) -> Self {
        self.map(|host| host.bridge(bridge))
    }

    /// Runs on this (shared) bridge.
    pub fn shared_bridge(self, bridge: Arc<dyn Bridge>) -> Self {
        self.map(|host| host.shared_bridge(bridge))
    }

    /// Receives `event` for [`Client::wait_for_event`] and `Context::wait_for_event` (see
    /// [`Host::awaits`]).
    pub fn awaits(self, event: &str) -> Self {
        self.map(|host| host.awaits(event))
    }

    /// Shares `value` with every service's handlers (a service's own state wins).
    pub fn state<T: Clone + Send + Sync + 'static>(self, value: T) -> Self {
        self.map(|host| host.state(value))
    }

    /// Adds a [layer](purest_core::layer) around every command and subscription of every service.
    pub fn layer(self, layer: impl Layer) -> Self {
        self.map(|host| host.layer(layer))
    }

    /// How long shutdown waits for handlers in flight.
    pub fn drain_timeout(self, timeout: Duration) -> Self {
        self.map(|host| host.drain_timeout(timeout))
    }

    /// Runs only these services (by `name` or `name/version`).
    pub fn only<S: Into<String>>(self, services: impl IntoIterator<Item = S>) -> Self {
        self.map(|host| host.only(services))
    }

    /// The registered services.
    pub fn services(&self) -> &[Service] {
        self.host.services()
    }

    /// With `PUREST_DESCRIBE` set, prints the app's description (for the `purest` CLI) and returns
    /// `true`: the caller should then stop. [`App::run`] does this itself; a `main` that starts the
    /// app on its own asks first.
    pub fn describe_if_asked(&self) -> bool {
        crate::describe::answer_if_asked(self.services())
    }

    /// Applies the configuration: `purest.toml` (or the file `PUREST_CONFIG` names) and the
    /// environment, which wins (see [`crate::config`]).
    pub fn configure_from_env(self) -> Result<Self, BuildError> {
        let settings = Settings::load()?;
        self.configure_with(&settings)
    }

    /// Applies `settings`: the topology, each bridge's section, and per-service concurrency,
    /// durability and retries.
    pub fn configure_with(self, settings: &Settings) -> Result<Self, BuildError> {
        let mut app = self.map(|host| with_connectors(host, settings));
        app = app.try_map(|host| host.configure(|key| settings.lookup(key)))?;
        for (name, section) in &settings.service {
            app = app.try_map(|host| host.update_service(name, |service| apply_service_settings(service, section)))?;
        }
        Ok(app)
    }

    /// Applies a topology read through `lookup` (`PUREST_BRIDGE`, `PUREST_SERVICES`).
    pub fn configure(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        self.try_map(|host| host.configure(lookup))
    }

    /// Connects the bridge, checks every service and starts them (no gateway: see [`App::run`]).
    pub async fn start(self) -> Result<RunningApp, Error> {
        self.host.start().await
    }

    /// Adjusts the HTTP gateway `run` starts (authenticators, CORS, limits), before the
    /// configuration's settings (`[http]`, `PUREST_HTTP_*`) are added.
    #[cfg(feature = "http")]
    pub fn http(mut self, customize: impl FnOnce(purest_http::Gateway) -> purest_http::Gateway + Send + 'static) -> Self {
        self.customize_gateway = Some(Box::new(customize));
        self
    }

    /// Applies the configuration, starts the services and the HTTP gateway, and runs until SIGINT
    /// or SIGTERM; then the gateway stops taking requests, requests and handlers in flight finish,
    /// and it returns. With `PUREST_DESCRIBE` set it prints the app's description instead and
    /// returns at once.
    pub async fn run(self) -> Result<(), Error> {
        if self.describe_if_asked() {
            return Ok(());
        }
        let settings = Settings::load()?;
        let app = self.configure_with(&settings)?;
        #[cfg(feature = "http")]
        let http = purest_http::config::HttpSettings::from_section(app.services(), &settings.http)?;
        #[cfg(feature = "http")]
        let customize = app.customize_gateway;
        // Listening for SIGINT/SIGTERM from before the start, so one that arrives while the app
        // starts (or right after it says it is listening) stops it gracefully.
        let stop = purest_core::host::shutdown_signal();
        let running = app.host.start().await?;
        let started = Started {
            bridge: running.bridge().clone(),
            client: running.client(),
            services: running.running_services().map(str::to_owned).collect(),
        };
        let mut companions = Vec::with_capacity(app.companions.len());
        for start in app.companions {
            match start(started.clone()).await {
                Ok(companion) => companions.push(companion),
                Err(error) => {
                    stop_companions(companions).await;
                    running.shutdown().await;
                    return Err(error);
                }
            }
        }
        #[cfg(feature = "http")]
        let gateway = match http {
            Some(settings) => {
                let mut gateway = purest_http::Gateway::new(&running);
                for check in companions.iter().flat_map(|companion| &companion.readiness) {
                    gateway = gateway.readiness(check.clone());
                }
                #[cfg(feature = "telemetry")]
                if let Some((render, purest_telemetry::PrometheusScrape::Gateway { token })) = metrics_text() {
                    gateway = gateway.metrics(render, &token);
                }
                let gateway = match customize {
                    Some(customize) => customize(gateway),
                    None => gateway,
                };
                match purest_http::config::serve(settings, gateway).await {
                    Ok(server) => Some(server),
                    Err(error) => {
                        stop_companions(companions).await;
                        running.shutdown().await;
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        #[cfg(feature = "telemetry")]
        let metrics_server = match serve_metrics_alone(gateway.is_some()).await {
            Ok(server) => server,
            Err(error) => {
                #[cfg(feature = "http")]
                if let Some(server) = gateway {
                    server.stop().await;
                }
                stop_companions(companions).await;
                running.shutdown().await;
                return Err(error);
            }
        };
        stop.await;
        tracing::info!("shutdown requested; draining");
        #[cfg(feature = "http")]
        if let Some(server) = gateway {
            server.stop().await;
        }
        #[cfg(feature = "telemetry")]
        if let Some(server) = metrics_server {
            server.stop().await;
        }
        stop_companions(companions).await;
        running.shutdown().await;
        crate::logging::flush();
        Ok(())
    }

    /// The core [`Host`], for what this type does not forward.
    pub fn into_host(self) -> Host {
        self.host
    }
}

/// How to render the metrics as Prometheus text, and where they are scraped, when the telemetry
/// [`crate::logging::init`] started serves them.
#[cfg(feature = "telemetry")]
fn metrics_text() -> Option<(purest_http::RenderMetrics, purest_telemetry::PrometheusScrape)> {
    let telemetry = crate::logging::telemetry()?;
    let scrape = telemetry.prometheus_scrape()?.clone();
    let render: purest_http::RenderMetrics = Arc::new(move || telemetry.prometheus_text().unwrap_or_default());
    Some((render, scrape))
}

/// `/metrics` served on an address of its own, running until stopped.
#[cfg(feature = "telemetry")]
struct MetricsServer {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[cfg(feature = "telemetry")]
impl MetricsServer {
    async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(Err(error)) = self.server.await {
            tracing::error!(%error, "the metrics listener failed");
        }
    }
}

/// Serves `/metrics` on the Prometheus address when the telemetry asks for one; with the scrape
/// on the gateway, checks that there is a gateway.
#[cfg(feature = "telemetry")]
async fn serve_metrics_alone(gateway_runs: bool) -> Result<Option<MetricsServer>, Error> {
    let Some((render, scrape)) = metrics_text() else {
        return Ok(None);
    };
    let address = match scrape {
        purest_telemetry::PrometheusScrape::Address(address) => address,
        purest_telemetry::PrometheusScrape::Gateway { .. } if gateway_runs => return Ok(None),
        purest_telemetry::PrometheusScrape::Gateway { .. } => {
            return Err(Error::msg(
                "PUREST_METRICS_TOKEN puts /metrics on the HTTP gateway, which this process does not run: \
                 unset it to serve /metrics on OTEL_EXPORTER_PROMETHEUS_HOST:PORT instead, or run the gateway",
            ));
        }
    };
    let listener = tokio::net::TcpListener::bind(&address).await.map_err(|e| {
        Error::msg(format!(
            "cannot serve /metrics on {address} ({e}); set OTEL_EXPORTER_PROMETHEUS_HOST and OTEL_EXPORTER_PROMETHEUS_PORT to another address"
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::msg(format!("cannot read the metrics address: {e}")))?;
    tracing::info!(address = %bound, "Prometheus metrics on http://{bound}/metrics");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(purest_http::serve_metrics(listener, render, async {
        stopped.await.ok();
    }));
    Ok(Some(MetricsServer { stop, server }))
}

/// Stops companions, the last started first.
async fn stop_companions(companions: Vec<Companion>) {
    for companion in companions.into_iter().rev() {
        companion.stop().await;
    }
}

/// Registers the bridges of this build, each configured by its section of `settings`.
fn with_connectors(host: Host, settings: &Settings) -> Host {
    #[cfg(feature = "nats")]
    let host = {
        let section = settings.nats.clone();
        host.connector("nats", move |url| {
            let section = section.clone();
            async move {
                let config = purest_nats::NatsConfig::from_url_and_section(&url, &section)?;
                Ok(Arc::new(purest_nats::NatsBridge::connect(config).await?) as Arc<dyn Bridge>)
            }
        })
    };
    #[cfg(feature = "amqp")]
    let host = {
        let section = settings.amqp.clone();
        amqp_connectors(host, move |url| {
            let section = section.clone();
            async move { purest_amqp::AmqpConfig::from_url_and_section(&url, &section) }
        })
    };
    #[cfg(feature = "mqtt")]
    let host = {
        let section = settings.mqtt.clone();
        mqtt_connectors(host, move |url| {
            let section = section.clone();
            async move { purest_mqtt::MqttConfig::from_url_and_section(&url, &section) }
        })
    };
    #[cfg(feature = "redis")]
    let host = {
        let section = settings.redis.clone();
        redis_connectors(host, move |url| {
            let section = section.clone();
            async move { purest_redis::RedisConfig::from_url_and_section(&url, &section) }
        })
    };
    #[cfg(not(any(feature = "nats", feature = "amqp", feature = "mqtt", feature = "redis")))]
    let _ = settings;
    host
}

/// Registers the Redis bridge for `redis://` and `rediss://`, configured by `config`.
#[cfg(feature = "redis")]
fn redis_connectors<C, Fut>(host: Host, config: C) -> Host
where
    C: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<purest_redis::RedisConfig, purest_redis::ConfigError>> + Send + 'static,
{
    ["redis", "rediss"].into_iter().fold(host, |host, scheme| {
        let config = config.clone();
        host.connector(scheme, move |url| {
            let config = config.clone();
            async move {
                let config = config(url).await?;
                Ok(Arc::new(purest_redis::RedisBridge::connect(config).await?) as Arc<dyn Bridge>)
            }
        })
    })
}

/// Registers the MQTT bridge for `mqtt://` and `mqtts://`, configured by `config`.
#[cfg(feature = "mqtt")]
fn mqtt_connectors<C, Fut>(host: Host, config: C) -> Host
where
    C: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<purest_mqtt::MqttConfig, purest_mqtt::ConfigError>> + Send + 'static,
{
    ["mqtt", "mqtts"].into_iter().fold(host, |host, scheme| {
        let config = config.clone();
        host.connector(scheme, move |url| {
            let config = config.clone();
            async move {
                let config = config(url).await?;
                Ok(Arc::new(purest_mqtt::MqttBridge::connect(config).await?) as Arc<dyn Bridge>)
            }
        })
    })
}

/// Registers the RabbitMQ bridge for `amqp://` and `amqps://`, configured by `config`.
#[cfg(feature = "amqp")]
fn amqp_connectors<C, Fut>(host: Host, config: C) -> Host
where
    C: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<purest_amqp::AmqpConfig, purest_amqp::ConfigError>> + Send + 'static,
{
    ["amqp", "amqps"].into_iter().fold(host, |host, scheme| {
        let config = config.clone();
        host.connector(scheme, move |url| {
            let config = config.clone();
            async move {
                let config = config(url).await?;
                Ok(Arc::new(purest_amqp::AmqpBridge::connect(config).await?) as Arc<dyn Bridge>)
            }
        })
    })
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
            if let Some(capacity) = settings.queue_capacity {
                subscription = subscription.queue_capacity(capacity);
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
