//! purest's metrics as OpenTelemetry instruments: what the core reports (see
//! `purest_core::metrics`) recorded with OpenTelemetry's names for messaging where it has one.
//!
//! | instrument | kind | attributes |
//! |---|---|---|
//! | `messaging.process.duration` (s) | histogram | `messaging.system`, `purest.handler.kind`, `purest.handler`, `purest.outcome` |
//! | `purest.handler.in_flight` | up-down counter | `messaging.system`, `purest.handler.kind`, `purest.handler` |
//! | `messaging.client.sent.messages` | counter | `messaging.system`, `purest.message.kind` |
//! | `messaging.client.consumed.messages` | counter | `messaging.system`, `purest.message.kind` |
//! | `purest.bridge.reconnects` | counter | `messaging.system` |
//!
//! `messaging.system` is the bridge (`memory`, `nats`, `amqp`, `mqtt`, `redis`);
//! `purest.handler` is `service/version/name`; `purest.outcome` is the status a command answered
//! with (`200`, `409`, …) or what became of a delivery (`ack`, `retry`, `dead_letter`,
//! `reject`). So executions, errors by status, retries and dead letters are the histogram's
//! counts by outcome.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};
use purest_core::metrics::{BridgeMeter, HandlerKind, HandlerMeter, HandlerOutcome, Metrics};

/// Bucket bounds of the duration histogram, in seconds: from 50 µs (an in-process command) to
/// 10 s, denser where handlers usually end.
const DURATION_BOUNDS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The instruments, shared by every handler and bridge of the process.
#[derive(Clone)]
pub(crate) struct OtelMetrics {
    duration: Histogram<f64>,
    in_flight: UpDownCounter<i64>,
    sent: Counter<u64>,
    consumed: Counter<u64>,
    reconnects: Counter<u64>,
}

impl OtelMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram("messaging.process.duration")
                .with_description("How long commands and subscriptions took per message, by outcome")
                .with_unit("s")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            in_flight: meter
                .i64_up_down_counter("purest.handler.in_flight")
                .with_description("Messages being handled now")
                .build(),
            sent: meter
                .u64_counter("messaging.client.sent.messages")
                .with_description("Messages handed to the bridge to send")
                .build(),
            consumed: meter
                .u64_counter("messaging.client.consumed.messages")
                .with_description("Messages received from the bridge")
                .build(),
            reconnects: meter
                .u64_counter("purest.bridge.reconnects")
                .with_description("Times the bridge connected again after losing its broker")
                .build(),
        }
    }
}

impl Metrics for OtelMetrics {
    fn handler(&self, bridge: &str, kind: HandlerKind, handler: &str) -> Arc<dyn HandlerMeter> {
        Arc::new(OtelHandler {
            metrics: self.clone(),
            labels: [
                KeyValue::new("messaging.system", bridge.to_owned()),
                KeyValue::new("purest.handler.kind", kind.as_str()),
                KeyValue::new("purest.handler", handler.to_owned()),
            ],
        })
    }

    fn bridge(&self, bridge: &str) -> Arc<dyn BridgeMeter> {
        Arc::new(OtelBridge {
            metrics: self.clone(),
            system: KeyValue::new("messaging.system", bridge.to_owned()),
        })
    }
}

struct OtelHandler {
    metrics: OtelMetrics,
    /// Made once: recording clones them (reference counts), never formats.
    labels: [KeyValue; 3],
}

impl HandlerMeter for OtelHandler {
    fn started(&self) {
        self.metrics.in_flight.add(1, &self.labels);
    }

    fn finished(&self, outcome: HandlerOutcome, elapsed: Duration) {
        self.metrics.in_flight.add(-1, &self.labels);
        let [system, kind, handler] = self.labels.clone();
        let labels = [system, kind, handler, KeyValue::new("purest.outcome", outcome.label())];
        self.metrics.duration.record(elapsed.as_secs_f64(), &labels);
    }
}

struct OtelBridge {
    metrics: OtelMetrics,
    system: KeyValue,
}

impl OtelBridge {
    fn labels(&self, kind: &'static str) -> [KeyValue; 2] {
        [self.system.clone(), KeyValue::new("purest.message.kind", kind)]
    }
}

impl BridgeMeter for OtelBridge {
    fn sent(&self, kind: &'static str) {
        self.metrics.sent.add(1, &self.labels(kind));
    }

    fn received(&self, kind: &'static str) {
        self.metrics.consumed.add(1, &self.labels(kind));
    }

    fn reconnected(&self) {
        self.metrics.reconnects.add(1, std::slice::from_ref(&self.system));
    }
}
