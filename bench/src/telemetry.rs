//! Telemetry switched on for a benchmark run, to measure what it costs: traces of every message
//! (100 %), of 1 % of requests, or metrics. Spans go to an exporter that counts and drops them:
//! what is measured is purest's and the SDK's work in the process (spans, sampling, batching),
//! not OTLP's encoding or the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use purest::telemetry::{MetricsExport, PrometheusScrape, Sampling, Telemetry, TelemetrySettings};
use tracing_subscriber::prelude::*;

/// What a run turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TelemetryMode {
    /// Nothing (no tracing subscriber at all, as a service without telemetry runs).
    Off,
    /// Traces of every request.
    Traces,
    /// Traces of 1 % of requests (parent-based, trace-id ratio 0.01).
    Traces1,
    /// Metrics (Prometheus registry), no traces.
    Metrics,
}

/// Counts the spans it is given and drops them.
#[derive(Debug, Clone, Default)]
struct Discard(Arc<AtomicU64>);

impl SpanExporter for Discard {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// Telemetry running for a benchmark; [`BenchTelemetry::finish`] reports what it recorded.
pub struct BenchTelemetry {
    telemetry: Option<Telemetry>,
    spans: Arc<AtomicU64>,
}

impl BenchTelemetry {
    /// Turns on what `mode` says, for the whole process; with `log`, also a log layer at info
    /// (writing nowhere) in every mode, as a service that logs has.
    pub fn start(mode: TelemetryMode, log: bool) -> Self {
        let spans = Discard::default();
        let (telemetry, traces) = match mode {
            TelemetryMode::Off => (None, None),
            TelemetryMode::Traces | TelemetryMode::Traces1 => {
                let sampling = match mode {
                    TelemetryMode::Traces => Sampling::AlwaysOn,
                    _ => Sampling::ParentBasedTraceIdRatio(0.01),
                };
                let telemetry = Telemetry::with_exporter("bench", spans.clone(), sampling);
                let layer = telemetry.layer();
                (Some(telemetry), layer)
            }
            TelemetryMode::Metrics => (
                Some(
                    Telemetry::from_settings(&TelemetrySettings {
                        service_name: "bench".into(),
                        traces: None,
                        metrics: Some(MetricsExport {
                            otlp: None,
                            prometheus: Some(PrometheusScrape::Gateway { token: "unused".into() }),
                        }),
                    })
                    .expect("metrics"),
                ),
                None,
            ),
        };
        let lines = log.then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
        });
        if traces.is_some() || lines.is_some() {
            tracing_subscriber::registry().with(lines).with(traces).init();
        }
        Self { telemetry, spans: spans.0 }
    }

    /// Exports what is left and says how much was recorded.
    pub fn finish(self) -> String {
        let Some(telemetry) = self.telemetry else {
            return "telemetry off".into();
        };
        telemetry.flush();
        let series = telemetry
            .prometheus_text()
            .map(|text| text.lines().filter(|l| !l.starts_with('#')).count());
        telemetry.shutdown();
        match series {
            Some(series) => format!("{series} metric samples"),
            None => format!("{} spans exported", self.spans.load(Ordering::Relaxed)),
        }
    }
}
