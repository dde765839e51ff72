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

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Histogram, Meter, ObservableCounter, ObservableUpDownCounter};
use purest_core::metrics::{BridgeMeter, HandlerKind, HandlerMeter, HandlerOutcome, Metrics};

/// Bucket bounds of the duration histogram, in seconds: from 50 µs (an in-process command) to
/// 10 s, denser where handlers usually end.
const DURATION_BOUNDS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The kinds of message a bridge counts, in the order of [`BridgeCounts`]' arrays.
const KINDS: [&str; 4] = ["command", "response", "event", "info"];

/// Counters that are plain atomics on the message path and read by the exporters' callbacks:
/// an add costs what an atomic add costs, not an attribute lookup.
#[derive(Default)]
struct Registry {
    handlers: Mutex<HashMap<(String, HandlerKind, String), Arc<AtomicI64>>>,
    bridges: Mutex<HashMap<String, Arc<BridgeCounts>>>,
}

#[derive(Default)]
struct BridgeCounts {
    sent: [AtomicU64; 4],
    consumed: [AtomicU64; 4],
    reconnects: AtomicU64,
}

fn kind_index(kind: &str) -> usize {
    KINDS.iter().position(|known| *known == kind).unwrap_or(KINDS.len() - 1)
}

/// The instruments, shared by every handler and bridge of the process.
#[derive(Clone)]
pub(crate) struct OtelMetrics {
    duration: Histogram<f64>,
    registry: Arc<Registry>,
    /// Kept so their callbacks stay registered.
    _observed: Arc<(ObservableUpDownCounter<i64>, [ObservableCounter<u64>; 3])>,
}

impl OtelMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        let registry = Arc::new(Registry::default());
        let in_flight = {
            let registry = registry.clone();
            meter
                .i64_observable_up_down_counter("purest.handler.in_flight")
                .with_description("Messages being handled now")
                .with_callback(move |observer| {
                    let handlers = registry.handlers.lock().unwrap_or_else(|e| e.into_inner());
                    for ((bridge, kind, handler), count) in handlers.iter() {
                        observer.observe(count.load(Ordering::Relaxed), &handler_labels(bridge, *kind, handler));
                    }
                })
                .build()
        };
        let bridge_counter = |name: &'static str, description: &'static str, read: fn(&BridgeCounts, usize) -> u64| {
            let registry = registry.clone();
            meter
                .u64_observable_counter(name)
                .with_description(description)
                .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
                    let bridges = registry.bridges.lock().unwrap_or_else(|e| e.into_inner());
                    for (bridge, counts) in bridges.iter() {
                        for (index, kind) in KINDS.iter().enumerate() {
                            let labels = [
                                KeyValue::new("messaging.system", bridge.clone()),
                                KeyValue::new("purest.message.kind", *kind),
                            ];
                            observer.observe(read(counts, index), &labels);
                        }
                    }
                })
                .build()
        };
        let sent = bridge_counter(
            "messaging.client.sent.messages",
            "Messages handed to the bridge to send",
            |counts, kind| counts.sent[kind].load(Ordering::Relaxed),
        );
        let consumed = bridge_counter(
            "messaging.client.consumed.messages",
            "Messages received from the bridge",
            |counts, kind| counts.consumed[kind].load(Ordering::Relaxed),
        );
        let reconnects = {
            let registry = registry.clone();
            meter
                .u64_observable_counter("purest.bridge.reconnects")
                .with_description("Times the bridge connected again after losing its broker")
                .with_callback(move |observer| {
                    let bridges = registry.bridges.lock().unwrap_or_else(|e| e.into_inner());
                    for (bridge, counts) in bridges.iter() {
                        observer.observe(
                            counts.reconnects.load(Ordering::Relaxed),
                            &[KeyValue::new("messaging.system", bridge.clone())],
                        );
                    }
                })
                .build()
        };
        Self {
            duration: meter
                .f64_histogram("messaging.process.duration")
                .with_description("How long commands and subscriptions took per message, by outcome")
                .with_unit("s")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            registry,
            _observed: Arc::new((in_flight, [sent, consumed, reconnects])),
        }
    }

    fn bridge_counts(&self, bridge: &str) -> Arc<BridgeCounts> {
        let mut bridges = self.registry.bridges.lock().unwrap_or_else(|e| e.into_inner());
        bridges.entry(bridge.to_owned()).or_default().clone()
    }
}

fn handler_labels(bridge: &str, kind: HandlerKind, handler: &str) -> [KeyValue; 3] {
    [
        KeyValue::new("messaging.system", bridge.to_owned()),
        KeyValue::new("purest.handler.kind", kind.as_str()),
        KeyValue::new("purest.handler", handler.to_owned()),
    ]
}

impl Metrics for OtelMetrics {
    fn handler(&self, bridge: &str, kind: HandlerKind, handler: &str) -> Arc<dyn HandlerMeter> {
        // Instances of one service in one process share their counts, as they share labels.
        let in_flight = {
            let mut handlers = self.registry.handlers.lock().unwrap_or_else(|e| e.into_inner());
            handlers.entry((bridge.to_owned(), kind, handler.to_owned())).or_default().clone()
        };
        let labels = handler_labels(bridge, kind, handler);
        let with_outcome = |outcome: HandlerOutcome| {
            let [system, kind, handler] = labels.clone();
            [system, kind, handler, KeyValue::new("purest.outcome", outcome.label())]
        };
        Arc::new(OtelHandler {
            duration: self.duration.clone(),
            in_flight,
            usual: USUAL.map(with_outcome),
            labels,
        })
    }

    fn bridge(&self, bridge: &str) -> Arc<dyn BridgeMeter> {
        Arc::new(OtelBridge(self.bridge_counts(bridge)))
    }
}

/// The outcomes most runs end with, whose labels each handler makes once.
const USUAL: [HandlerOutcome; 3] = [HandlerOutcome::Status(200), HandlerOutcome::Ack, HandlerOutcome::Retry];

struct OtelHandler {
    duration: Histogram<f64>,
    in_flight: Arc<AtomicI64>,
    /// The labels with each of [`USUAL`]: recording them copies nothing.
    usual: [[KeyValue; 4]; 3],
    /// Made once: other outcomes clone them (reference counts), never format.
    labels: [KeyValue; 3],
}

impl HandlerMeter for OtelHandler {
    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&self, outcome: HandlerOutcome, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match USUAL.iter().position(|usual| *usual == outcome) {
            Some(index) => self.duration.record(elapsed.as_secs_f64(), &self.usual[index]),
            None => {
                let [system, kind, handler] = self.labels.clone();
                let labels = [system, kind, handler, KeyValue::new("purest.outcome", outcome.label())];
                self.duration.record(elapsed.as_secs_f64(), &labels);
            }
        }
    }
}

struct OtelBridge(Arc<BridgeCounts>);

impl BridgeMeter for OtelBridge {
    fn sent(&self, kind: &'static str) {
        self.0.sent[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    fn received(&self, kind: &'static str) {
        self.0.consumed[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    fn reconnected(&self) {
        self.0.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}
