//! Counts and durations of the messages a process handles and sends, for a metrics backend.
//!
//! The core knows no metrics backend: a backend (`purest-telemetry`, with OpenTelemetry) installs
//! a [`Metrics`], and every app started afterwards runs on a [`Metered`] bridge, which wraps the
//! real one and reports each command answered, each delivery settled, each message sent and
//! received. With none installed — metrics off — the bridge is not wrapped and nothing of this
//! runs. Bridges report their reconnections with [`reconnected`].
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//! use purest_core::metrics::{self, BridgeMeter, HandlerKind, HandlerMeter, HandlerOutcome, Metrics};
//! use purest_core::prelude::*;
//!
//! #[derive(Default)]
//! struct Answered(AtomicU64);
//! impl HandlerMeter for Answered {
//!     fn started(&self) {}
//!     fn finished(&self, outcome: HandlerOutcome, _elapsed: Duration) {
//!         if outcome == HandlerOutcome::Status(200) { self.0.fetch_add(1, Ordering::Relaxed); }
//!     }
//! }
//! struct NoCounts;
//! impl BridgeMeter for NoCounts {
//!     fn sent(&self, _kind: &'static str) {}
//!     fn received(&self, _kind: &'static str) {}
//!     fn reconnected(&self) {}
//! }
//! struct Backend(Arc<Answered>);
//! impl Metrics for Backend {
//!     fn handler(&self, _bridge: &str, _kind: HandlerKind, _handler: &str) -> Arc<dyn HandlerMeter> { self.0.clone() }
//!     fn bridge(&self, _bridge: &str) -> Arc<dyn BridgeMeter> { Arc::new(NoCounts) }
//! }
//!
//! async fn hello(Payload(name): Payload<String>) -> Result<String, HandledError> { Ok(format!("hello {name}")) }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let answered = Arc::new(Answered::default());
//! metrics::install(Backend(answered.clone()));
//! let app = Host::new().service(Service::new("greeter", "1").command(Command::new("hello", hello))).start().await?;
//! app.client().invoke::<String>("greeter/1/hello", "ann".to_owned()).await?;
//! assert_eq!(app.bridge().name(), "memory");
//! app.shutdown().await;
//! assert_eq!(answered.0.load(Ordering::Relaxed), 1);
//! # Ok::<_, purest_core::Error>(()) }).unwrap();
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::bridge::{Bridge, CommandEndpoint, Delivery, Registration, Settlement, SubscriptionEndpoint, SubscriptionRoute};
use crate::envelope::{Address, Envelope, Message};
use crate::error::{Error, HandledError};

/// What a metrics backend does for the core.
pub trait Metrics: Send + Sync + 'static {
    /// The instruments of one command or subscription (`handler` is `service/version/name`) on
    /// `bridge`, asked once when it starts serving.
    fn handler(&self, bridge: &str, kind: HandlerKind, handler: &str) -> Arc<dyn HandlerMeter>;

    /// The instruments of the bridge named `bridge`.
    fn bridge(&self, bridge: &str) -> Arc<dyn BridgeMeter>;
}

/// A command or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    /// Answers a request.
    Command,
    /// Consumes events.
    Subscription,
}

impl HandlerKind {
    /// `command` or `subscription`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Command => "command",
            HandlerKind::Subscription => "subscription",
        }
    }
}

/// How one run of a handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// A command answered with this status: 200 for a success, the error's status otherwise.
    Status(u16),
    /// A delivery handled (or not meant for the subscription).
    Ack,
    /// A delivery that failed and will come again.
    Retry,
    /// A delivery given up on: its dead letter is published.
    DeadLetter,
    /// A delivery that failed on a best-effort subscription: dropped.
    Reject,
}

impl HandlerOutcome {
    /// A label for the outcome: the status as text (`"200"`, `"409"`; `"4xx"`, `"5xx"` for
    /// statuses purest does not answer with itself), `ack`, `retry`, `dead_letter` or `reject`.
    ///
    /// ```
    /// use purest_core::metrics::HandlerOutcome;
    /// assert_eq!(HandlerOutcome::Status(404).label(), "404");
    /// assert_eq!(HandlerOutcome::Status(418).label(), "4xx");
    /// assert_eq!(HandlerOutcome::DeadLetter.label(), "dead_letter");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            HandlerOutcome::Status(status) => status_label(status),
            HandlerOutcome::Ack => "ack",
            HandlerOutcome::Retry => "retry",
            HandlerOutcome::DeadLetter => "dead_letter",
            HandlerOutcome::Reject => "reject",
        }
    }

    /// Whether the run failed: an error status, a retry, a dead letter or a rejection.
    pub fn is_failure(self) -> bool {
        match self {
            HandlerOutcome::Status(status) => status >= 400,
            HandlerOutcome::Ack => false,
            HandlerOutcome::Retry | HandlerOutcome::DeadLetter | HandlerOutcome::Reject => true,
        }
    }
}

/// Static labels keep recording free of allocation; the statuses purest answers with have their
/// own, others their class.
fn status_label(status: u16) -> &'static str {
    const OWN: [(u16, &str); 22] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (410, "410"),
        (412, "412"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match OWN.iter().find(|(own, _)| *own == status) {
        Some((_, label)) => label,
        None => match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}

/// The instruments of one command or subscription.
pub trait HandlerMeter: Send + Sync + 'static {
    /// A run started (one more in flight).
    fn started(&self);
    /// A run ended after `elapsed` (one fewer in flight).
    fn finished(&self, outcome: HandlerOutcome, elapsed: Duration);
}

/// The instruments of one bridge. `kind` is `command`, `response`, `event` or `info`; a command's
/// success event is sent as its `response` and received by subscriptions as an `event`.
pub trait BridgeMeter: Send + Sync + 'static {
    /// A message of `kind` was handed to the bridge to send.
    fn sent(&self, kind: &'static str);
    /// A message of `kind` arrived.
    fn received(&self, kind: &'static str);
    /// The bridge lost its broker and connected again.
    fn reconnected(&self);
}

static METRICS: OnceLock<Box<dyn Metrics>> = OnceLock::new();

/// Installs the process's backend; `false` when one is installed already (it stays). Apps
/// started before are not metered.
pub fn install(metrics: impl Metrics) -> bool {
    METRICS.set(Box::new(metrics)).is_ok()
}

/// The installed backend, if any.
pub fn metrics() -> Option<&'static dyn Metrics> {
    METRICS.get().map(|metrics| &**metrics)
}

/// Reports that the bridge named `bridge` connected again after losing its broker (bridges call
/// this; nothing happens without a backend).
pub fn reconnected(bridge: &str) {
    if let Some(metrics) = metrics() {
        metrics.bridge(bridge).reconnected();
    }
}

/// The kind label of a message.
fn kind_of(message: &Message) -> &'static str {
    match message {
        Message::Command { .. } => "command",
        Message::Success { .. } | Message::Error { .. } => "response",
        Message::Custom { .. } => "event",
        Message::Info { .. } => "info",
    }
}

/// How a command's answer counts.
fn outcome_of(response: &Envelope) -> HandlerOutcome {
    match &response.message {
        Message::Error { error, .. } => HandlerOutcome::Status(error.status),
        _ => HandlerOutcome::Status(200),
    }
}

/// A bridge that reports to the metrics backend what passes through the one it wraps.
pub struct Metered {
    inner: Arc<dyn Bridge>,
    meter: Arc<dyn BridgeMeter>,
    metrics: &'static dyn Metrics,
}

impl Metered {
    /// `bridge` metered by the installed backend, or `bridge` itself when none is installed.
    pub fn wrap(bridge: Arc<dyn Bridge>) -> Arc<dyn Bridge> {
        match metrics() {
            Some(metrics) => Arc::new(Metered {
                meter: metrics.bridge(bridge.name()),
                inner: bridge,
                metrics,
            }),
            None => bridge,
        }
    }
}

impl Bridge for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn invoke(&self, command: Envelope, timeout: Duration) -> BoxFuture<'_, Result<Envelope, HandledError>> {
        self.meter.sent(kind_of(&command.message));
        Box::pin(self.inner.invoke(command, timeout).inspect(|result| {
            if let Ok(response) = result {
                self.meter.received(kind_of(&response.message));
            }
        }))
    }

    fn emit(&self, event: Envelope, timeout: Duration) -> BoxFuture<'_, Result<(), HandledError>> {
        self.meter.sent(kind_of(&event.message));
        self.inner.emit(event, timeout)
    }

    fn serve_command(
        &self,
        address: Arc<Address>,
        endpoint: Arc<dyn CommandEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        let handler = format!("{}/{}/{}", address.service_name, address.service_version, address.service_target);
        let metered = Arc::new(MeteredCommand {
            inner: endpoint,
            handler: self.metrics.handler(self.inner.name(), HandlerKind::Command, &handler),
            bridge: self.meter.clone(),
        });
        self.inner.serve_command(address, metered)
    }

    fn subscribe(
        &self,
        route: SubscriptionRoute,
        endpoint: Arc<dyn SubscriptionEndpoint>,
    ) -> BoxFuture<'_, Result<Box<dyn Registration>, Error>> {
        let handler = route.name();
        let metered = Arc::new(MeteredSubscription {
            inner: endpoint,
            handler: self.metrics.handler(self.inner.name(), HandlerKind::Subscription, &handler),
            bridge: self.meter.clone(),
            route: route.clone(),
        });
        self.inner.subscribe(route, metered)
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}

struct MeteredCommand {
    inner: Arc<dyn CommandEndpoint>,
    handler: Arc<dyn HandlerMeter>,
    bridge: Arc<dyn BridgeMeter>,
}

impl CommandEndpoint for MeteredCommand {
    fn handle(self: Arc<Self>, command: Envelope) -> BoxFuture<'static, Envelope> {
        self.bridge.received(kind_of(&command.message));
        self.handler.started();
        let started = Instant::now();
        let running = self.inner.clone().handle(command);
        Box::pin(running.inspect(move |response| {
            self.handler.finished(outcome_of(response), started.elapsed());
            self.bridge.sent(kind_of(&response.message));
        }))
    }
}

struct MeteredSubscription {
    inner: Arc<dyn SubscriptionEndpoint>,
    handler: Arc<dyn HandlerMeter>,
    bridge: Arc<dyn BridgeMeter>,
    route: SubscriptionRoute,
}

impl SubscriptionEndpoint for MeteredSubscription {
    fn deliver(self: Arc<Self>, delivery: Delivery) -> BoxFuture<'static, Settlement> {
        if let Ok(event) = &delivery.message {
            // Bridges may hand over more than the filter selects; what it does not select is
            // not this subscription's to count.
            if !self.route.filter.matches(event) {
                return self.inner.clone().deliver(delivery);
            }
            // A command's success event arrives as its response: to a subscription, an event.
            self.bridge.received("event");
        }
        self.handler.started();
        let started = Instant::now();
        let running = self.inner.clone().deliver(delivery);
        Box::pin(running.inspect(move |settlement| {
            let outcome = match settlement {
                Settlement::Ack => HandlerOutcome::Ack,
                Settlement::Retry(_) => HandlerOutcome::Retry,
                Settlement::Reject if self.route.durable => HandlerOutcome::DeadLetter,
                Settlement::Reject => HandlerOutcome::Reject,
            };
            self.handler.finished(outcome, started.elapsed());
        }))
    }
}
