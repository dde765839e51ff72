//! OpenTelemetry for purest: one trace per request, from the HTTP client through the gateway,
//! every command, event and subscription it causes, in every process, exported over OTLP.
//!
//! [`Telemetry::from_env`] reads the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, …); with none set,
//! telemetry stays off and costs nothing. [`Telemetry::layer`] is the `tracing` layer that turns
//! purest's spans into OpenTelemetry spans; installing it also installs the propagation that
//! carries the W3C trace context in every message (see `purest_core::trace_context`).
//!
//! ```
//! use opentelemetry_sdk::trace::InMemorySpanExporter;
//! use purest_core::prelude::*;
//! use purest_telemetry::{Sampling, Telemetry};
//! use tracing_subscriber::prelude::*;
//!
//! async fn hello(Payload(name): Payload<String>) -> Result<String, HandledError> {
//!     Ok(format!("hello {name}"))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let spans = InMemorySpanExporter::default();
//! let telemetry = Telemetry::with_exporter("greeter", spans.clone(), Sampling::AlwaysOn);
//! let _guard = tracing_subscriber::registry().with(telemetry.layer()).set_default();
//! let app = Host::new().service(Service::new("greeter", "1").command(Command::new("hello", hello))).start().await?;
//! app.client().invoke::<String>("greeter/1/hello", "ann".to_owned()).await?;
//! app.shutdown().await;
//! telemetry.flush();
//! let names: Vec<String> = spans.get_finished_spans().unwrap().iter().map(|span| span.name.to_string()).collect();
//! assert!(names.contains(&"greeter/1/hello send".to_owned()), "{names:?}");
//! assert!(names.contains(&"greeter/1/hello process".to_owned()), "{names:?}");
//! # Ok::<_, purest_core::Error>(()) }).unwrap();
//! ```
#![warn(missing_docs)]

mod propagation;
mod settings;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter};
use purest_core::BuildError;
use tracing_subscriber::registry::LookupSpan;

pub use settings::{Protocol, Sampling, TelemetrySettings};

/// Traces of this process: the tracer provider and its exporter. Dropping it does not flush:
/// call [`Telemetry::shutdown`] before the process ends.
#[derive(Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Telemetry as the environment configures it (see [`TelemetrySettings::from_lookup`]), or
    /// `None` when nothing asks for it; an error names a variable that does not parse.
    pub fn from_env() -> Result<Option<Self>, BuildError> {
        let settings = TelemetrySettings::from_lookup(|key| std::env::var(key).ok())?;
        settings.map(|settings| Self::from_settings(&settings)).transpose()
    }

    /// Telemetry exporting over OTLP as `settings` say.
    pub fn from_settings(settings: &TelemetrySettings) -> Result<Self, BuildError> {
        let exporter = settings.exporter()?;
        Ok(Self::with_exporter(&settings.service_name, exporter, settings.sampling))
    }

    /// Telemetry exporting to `exporter` (an OTLP one, or an in-memory one in tests), batching
    /// spans, as service `service_name`.
    pub fn with_exporter(service_name: &str, exporter: impl SpanExporter + 'static, sampling: Sampling) -> Self {
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::from(sampling))
            .with_resource(Resource::builder().with_service_name(service_name.to_owned()).build())
            .build();
        purest_core::trace_context::install(propagation::OtelPropagation);
        Self { provider }
    }

    /// The `tracing` layer that records purest's spans (and yours) as OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("purest"))
    }

    /// Exports the spans finished so far.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "spans could not be exported");
        }
    }

    /// Exports what is left and stops exporting.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "spans could not be exported at shutdown");
        }
    }
}
