//! **purest** — message-driven backends in Rust. Business logic lives in small async functions,
//! *commands* (request/response) and *subscriptions* (event consumers), grouped in versioned
//! *services* that talk only through an event bridge. Which bridge, and which services run in
//! which process, is configuration.
//!
//! `use purest::prelude::*;` is all a service author imports.
//!
//! ```
//! use purest::prelude::*;
//!
//! #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
//! struct NewUser {
//!     #[garde(length(min = 1, max = 100))]
//!     name: String,
//! }
//!
//! #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
//! #[garde(allow_unvalidated)]
//! struct UserCreated {
//!     id: u64,
//!     name: String,
//! }
//!
//! async fn register(Payload(user): Payload<NewUser>) -> Result<UserCreated, HandledError> {
//!     Ok(UserCreated { id: 1, name: user.name })
//! }
//!
//! async fn welcome(Payload(user): Payload<UserCreated>) -> Result<(), HandledError> {
//!     println!("welcome, {}!", user.name);
//!     Ok(())
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let app = App::new()
//!     .service(Service::new("user", "1").command(Command::new("register", register).success_event("userRegistered")))
//!     .service(Service::new("mail", "1").subscription(Subscription::new("welcome", welcome).on_event("userRegistered").durable()))
//!     .start()
//!     .await?;
//! let created: UserCreated = app.client().invoke("user/1/register", NewUser { name: "Ann".into() }).await?;
//! assert_eq!(created.name, "Ann");
//! app.shutdown().await;
//! # Ok::<_, purest::Error>(()) }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod config;
mod configured_app;
pub mod describe;

pub use configured_app::{App, Companion, Started};
/// The RabbitMQ bridge (feature `amqp`, on by default).
#[cfg(feature = "amqp")]
pub use purest_amqp as amqp;
pub use purest_core::*;
/// CQRS with LOW handlers (lookup, operate, write), projectors and the given/when/then harness
/// (feature `cqrs`, on by default).
#[cfg(feature = "cqrs")]
pub use purest_cqrs as cqrs;
/// Event sourcing: the event store, projections, the outbox relay and the inbox (feature
/// `eventstore`, on by default).
#[cfg(feature = "eventstore")]
pub use purest_eventstore as eventstore;
/// The HTTP gateway (feature `http`, on by default).
#[cfg(feature = "http")]
pub use purest_http as http;
/// The MQTT 5 bridge (feature `mqtt`, on by default).
#[cfg(feature = "mqtt")]
pub use purest_mqtt as mqtt;
/// The NATS bridge (feature `nats`, on by default).
#[cfg(feature = "nats")]
pub use purest_nats as nats;
/// The Redis bridge (feature `redis`, on by default).
#[cfg(feature = "redis")]
pub use purest_redis as redis;
/// OpenTelemetry traces (feature `telemetry`, on by default; off at run time unless the
/// `OTEL_*` variables ask for it).
#[cfg(feature = "telemetry")]
pub use purest_telemetry as telemetry;

/// Everything a service author needs: `use purest::prelude::*;`.
pub mod prelude {
    pub use crate::App;
    pub use purest_core::prelude::*;
}

/// Logging setup for binaries.
pub mod logging {
    use tracing_subscriber::EnvFilter;

    use crate::config::{LogFormat, Settings};

    /// Installs a `tracing` subscriber writing to stderr: the filter from `RUST_LOG`, else the
    /// configured level (`PUREST_LOG`, `[log] level`), else `info`; lines as text (coloured only
    /// when stderr is a terminal) or, with
    /// `PUREST_LOG_FORMAT=json` (`[log] format`), JSON. A configuration that does not load is
    /// reported by `App::run`, not here. With the feature `telemetry` and the `OTEL_*` variables
    /// set (`OTEL_EXPORTER_OTLP_ENDPOINT`, …; see `purest::telemetry`), spans are also exported
    /// as OpenTelemetry traces, whatever the log level. Safe to call more than once: later calls
    /// do nothing.
    ///
    /// ```
    /// purest::logging::init();
    /// purest::logging::init();
    /// ```
    pub fn init() {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;

        let settings = Settings::load().unwrap_or_default();
        let log = &settings.log;
        let level = log.level.clone().unwrap_or_else(|| "info".to_owned());
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info")));
        // Colours only for a terminal: a file or a pipe gets plain text.
        let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour);
        let lines = match log.format {
            Some(LogFormat::Json) => lines.json().with_filter(filter).boxed(),
            _ => lines.with_filter(filter).boxed(),
        };
        #[cfg(feature = "telemetry")]
        let traces = telemetry::start(&settings.telemetry);
        #[cfg(not(feature = "telemetry"))]
        let traces: Option<tracing_subscriber::layer::Identity> = None;
        let _ = tracing_subscriber::registry().with(lines).with(traces).try_init();
    }

    /// Traces and metrics exported as the `OTEL_*` variables and `[telemetry]` say (see
    /// `purest_telemetry`), kept for `App::run` (which serves `/metrics`) and for [`flush`] at
    /// the end of the process.
    #[cfg(feature = "telemetry")]
    mod telemetry {
        use std::sync::OnceLock;

        use tracing_subscriber::Layer as _;

        use crate::config::TelemetrySection;

        pub(super) static TELEMETRY: OnceLock<purest_telemetry::Telemetry> = OnceLock::new();

        /// The OpenTelemetry layer, when the configuration asks for traces. It filters by itself
        /// (info and above): the log level does not thin out the traces.
        pub(super) fn start<S>(section: &TelemetrySection) -> Option<Box<dyn tracing_subscriber::Layer<S> + Send + Sync>>
        where
            S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
        {
            if TELEMETRY.get().is_some() {
                return None;
            }
            let settings = purest_telemetry::TelemetrySettings::from_lookup(|var| std::env::var(var).ok().or_else(|| section.get(var)));
            let telemetry = match settings.and_then(|settings| settings.map(|s| purest_telemetry::Telemetry::from_settings(&s)).transpose())
            {
                Ok(telemetry) => telemetry?,
                Err(error) => {
                    eprintln!("telemetry is off: {error}");
                    return None;
                }
            };
            let layer = telemetry.layer().map(|layer| layer.boxed());
            let _ = TELEMETRY.set(telemetry);
            layer
        }
    }

    /// The telemetry [`init`] started, if the configuration asked for any.
    #[cfg(feature = "telemetry")]
    pub fn telemetry() -> Option<&'static purest_telemetry::Telemetry> {
        telemetry::TELEMETRY.get()
    }

    /// Exports the spans not exported yet and stops exporting (`App::run` calls it at the end).
    pub fn flush() {
        #[cfg(feature = "telemetry")]
        if let Some(telemetry) = telemetry::TELEMETRY.get() {
            telemetry.shutdown();
        }
    }
}

/// The README's Rust examples, compiled (and run, where they are not `no_run`) as doctests, so
/// what a newcomer copies works.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
