//! OpenTelemetry for purest: one trace per request, from the HTTP client through the gateway,
//! every command, event and subscription it causes, in every process, exported over OTLP; and
//! metrics of every command, subscription and bridge, pushed over OTLP or scraped by Prometheus.
//!
//! [`Telemetry::from_env`] reads the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_METRICS_EXPORTER`, …); with none set, telemetry stays off and costs nothing.
//! [`Telemetry::layer`] is the `tracing` layer that turns purest's spans into OpenTelemetry
//! spans; creating a `Telemetry` with traces installs the propagation that carries the W3C trace
//! context in every message (see `purest_core::trace_context`), and one with metrics installs the
//! meters every app started afterwards reports to (see `purest_core::metrics` and [`metrics`]).
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

pub mod metrics;
mod propagation;
mod settings;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter};
use purest_core::BuildError;
use tracing_subscriber::Layer as _;
use tracing_subscriber::registry::LookupSpan;

pub use settings::{ENV_KEYS, MetricsExport, OtlpMetrics, PrometheusScrape, Protocol, Sampling, TelemetrySettings, TraceExport};

/// Traces and metrics of this process: the providers and their exporters. Dropping it does not
/// flush: call [`Telemetry::shutdown`] before the process ends.
#[derive(Clone)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
    prometheus: Option<Prometheus>,
}

/// The registry Prometheus text is rendered from, and where it is scraped.
#[derive(Clone)]
struct Prometheus {
    registry: prometheus::Registry,
    scrape: PrometheusScrape,
}

fn resource(service_name: &str) -> Resource {
    Resource::builder().with_service_name(service_name.to_owned()).build()
}

impl Telemetry {
    /// Telemetry as the environment configures it (see [`TelemetrySettings::from_lookup`]), or
    /// `None` when nothing asks for it; an error names a variable that does not parse.
    pub fn from_env() -> Result<Option<Self>, BuildError> {
        let settings = TelemetrySettings::from_lookup(|key| std::env::var(key).ok())?;
        settings.map(|settings| Self::from_settings(&settings)).transpose()
    }

    /// Telemetry exporting as `settings` say. Metrics are reported by the apps started after
    /// the first `Telemetry` with metrics of the process (the core keeps one backend).
    pub fn from_settings(settings: &TelemetrySettings) -> Result<Self, BuildError> {
        let mut telemetry = match &settings.traces {
            Some(traces) => Self::with_exporter(&settings.service_name, traces.exporter()?, traces.sampling),
            None => Self {
                traces: None,
                metrics: None,
                prometheus: None,
            },
        };
        if let Some(export) = &settings.metrics {
            let mut provider = SdkMeterProvider::builder().with_resource(resource(&settings.service_name));
            if let Some(otlp) = &export.otlp {
                provider = provider.with_reader(PeriodicReader::builder(otlp.exporter()?).with_interval(otlp.interval).build());
            }
            if let Some(scrape) = &export.prometheus {
                let registry = prometheus::Registry::new();
                let exporter = opentelemetry_prometheus::exporter()
                    .with_registry(registry.clone())
                    .scope_info_enabled(false)
                    .build()
                    .map_err(|e| BuildError::InvalidSetting {
                        key: "OTEL_METRICS_EXPORTER".into(),
                        problem: format!("the Prometheus exporter could not start: {e}"),
                        accepted: "otlp, prometheus, none".into(),
                    })?;
                provider = provider.with_reader(exporter);
                telemetry.prometheus = Some(Prometheus {
                    registry,
                    scrape: scrape.clone(),
                });
            }
            let provider = provider.build();
            purest_core::metrics::install(metrics::OtelMetrics::new(&provider.meter("purest")));
            telemetry.metrics = Some(provider);
        }
        Ok(telemetry)
    }

    /// Telemetry exporting traces to `exporter` (an OTLP one, or an in-memory one in tests),
    /// batching spans, as service `service_name`.
    pub fn with_exporter(service_name: &str, exporter: impl SpanExporter + 'static, sampling: Sampling) -> Self {
        let sampler = Sampler::from(sampling);
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(propagation::DecidedRoots(sampler.clone()))
            .with_resource(resource(service_name))
            .build();
        let parent_based = matches!(
            sampling,
            Sampling::ParentBasedAlwaysOn | Sampling::ParentBasedAlwaysOff | Sampling::ParentBasedTraceIdRatio(_)
        );
        purest_core::trace_context::install(propagation::OtelPropagation { sampler, parent_based });
        Self {
            traces: Some(provider),
            metrics: None,
            prometheus: None,
        }
    }

    /// The `tracing` layer that records purest's spans (and yours) as OpenTelemetry spans;
    /// `None` without traces. It takes spans at info level and above, whatever the log level,
    /// and leaves out those of messages whose trace is not recorded (target
    /// `purest::unrecorded`), which stay for your log lines. Add it without a filter of your own.
    pub fn layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S> + use<S>>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let provider = self.traces.as_ref()?;
        // No source locations, thread names or busy/idle timings on every span, and no
        // OpenTelemetry context attached on every poll: purest reads each span's context when it
        // needs one, and the rest cost more per message than the message.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("purest"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            // Info and above, not unrecorded traces' spans: decided once per callsite (a filter
            // function would be asked per span, and the registry would make each span first).
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_default(tracing::Level::INFO)
                    .with_target(purest_core::trace_context::UNRECORDED, tracing_subscriber::filter::LevelFilter::OFF),
            );
        Some(layer)
    }

    /// Where Prometheus scrapes this process, when it does.
    pub fn prometheus_scrape(&self) -> Option<&PrometheusScrape> {
        self.prometheus.as_ref().map(|prometheus| &prometheus.scrape)
    }

    /// The metrics now, as Prometheus text (exposition format 0.0.4); `None` unless the
    /// Prometheus exporter is on.
    pub fn prometheus_text(&self) -> Option<String> {
        let prometheus = self.prometheus.as_ref()?;
        let families = prometheus.registry.gather();
        match prometheus::TextEncoder::new().encode_to_string(&families) {
            Ok(text) => Some(text),
            Err(error) => {
                tracing::warn!(%error, "the metrics could not be rendered as Prometheus text");
                Some(String::new())
            }
        }
    }

    /// Exports the spans finished so far and the metrics as they are.
    pub fn flush(&self) {
        if let Some(traces) = &self.traces
            && let Err(error) = traces.force_flush()
        {
            tracing::warn!(%error, "spans could not be exported");
        }
        if let Some(metrics) = &self.metrics
            && let Err(error) = metrics.force_flush()
        {
            tracing::warn!(%error, "metrics could not be exported");
        }
    }

    /// Exports what is left and stops exporting.
    pub fn shutdown(&self) {
        if let Some(traces) = &self.traces
            && let Err(error) = traces.shutdown()
        {
            tracing::warn!(%error, "spans could not be exported at shutdown");
        }
        if let Some(metrics) = &self.metrics
            && let Err(error) = metrics.shutdown()
        {
            tracing::warn!(%error, "metrics could not be exported at shutdown");
        }
    }
}
