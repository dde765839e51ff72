//! The conformance suite of purest bridges: docs/ARCHITECTURE.md §5 as executable cases. A bridge crate runs
//! every case that applies to it by handing a [`Harness`] a way to open a connection; each case
//! asserts the semantics and prints the counts it saw (sent, handled, duplicates, lost).
//!
//! ```
//! use purest_bridge_tests::{cases, Harness};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let harness = Harness::memory();
//! cases::round_trip(&harness).await;
//! cases::load_sharing(&harness).await;
//! # });
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use purest_core::prelude::*;
use purest_core::{Bridge, RunningApp};

pub mod cases;
pub mod mosquitto_broker;
pub mod nats_server;
pub mod otlp_receiver;
pub mod postgres_cluster;
pub mod process;
pub mod rabbitmq_node;
pub mod redis_server;
pub mod tls;
pub mod worker;

/// Declares one `#[tokio::test]` per case of the suite, plus `capabilities`, which prints what the
/// bridge declares. `$harness` is an async fn returning `Option<Harness>` (`None` skips, e.g. when
/// the broker is not running and not required), so every bridge runs the same list of cases and a
/// new case reaches all of them. A case the bridge does not support prints "not supported" with
/// the reason and passes nothing silently.
///
/// ```no_run
/// async fn harness() -> Option<purest_bridge_tests::Harness> { Some(purest_bridge_tests::Harness::memory()) }
/// purest_bridge_tests::conformance_suite!(harness);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($harness:path) => {
        $crate::conformance_suite!(@cases $harness;
            round_trip, deadline_and_no_handler, load_sharing, fan_out, two_filters_in_one_service,
            two_filters_under_one_address,
            durable_while_down, retry_then_dead_letter, attempts_survive_a_consumer_crash,
            kill_mid_stream, broker_restart, malformed_input, oversized_input, backpressure,
            long_handler_kept_alive, per_key_ordering, presence, graceful_shutdown, dispatch_and_wait, trace_context);
        #[tokio::test]
        async fn capabilities() {
            if let Some(harness) = $harness().await {
                harness.print_capabilities();
            }
        }
        /// Not a case: the crash cases start this test binary again to run it as a subscriber
        /// process of its own (see `purest_bridge_tests::worker`).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn worker_process() {
            if let Ok(url) = std::env::var($crate::worker::WORKER_URL) {
                if let Some(harness) = $harness().await {
                    harness.run_worker(url).await;
                }
            }
        }
    };
    (@cases $harness:path; $($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            if let Some(harness) = $harness().await {
                $crate::cases::$case(&harness).await;
            }
        }
    )*};
}

type Connect = Arc<dyn Fn() -> BoxFuture<'static, Arc<dyn Bridge>> + Send + Sync>;
type ConnectTo = Arc<dyn Fn(String) -> BoxFuture<'static, Arc<dyn Bridge>> + Send + Sync>;
type Cleanup = Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;
type StartBroker = Arc<dyn Fn() -> Option<Box<dyn OwnBroker>> + Send + Sync>;

/// What a bridge can do beyond the cases every bridge must pass (Watermill's `Features`). A case
/// that needs something the bridge lacks prints "not supported" with the reason.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// The broker counts deliveries, so attempts are counted across a consumer crash.
    pub broker_counts_attempts: bool,
    /// Unacked messages are delivered again after this timeout (the suite's connections use it):
    /// a handler running longer must keep its delivery alive.
    pub redelivery_timeout: Option<Duration>,
    /// The bridge queues messages itself and bounds each subscription's queue.
    pub bounded_queues: bool,
    /// Messages with the same key are handled in the order they were sent.
    pub per_key_ordering: bool,
    /// Why, for each feature the bridge lacks (printed with "not supported").
    pub reasons: Vec<(&'static str, &'static str)>,
}

impl Features {
    /// Records why the bridge lacks `feature`.
    pub fn lacks(mut self, feature: &'static str, why: &'static str) -> Self {
        self.reasons.push((feature, why));
        self
    }

    fn why(&self, feature: &str) -> &'static str {
        self.reasons
            .iter()
            .find(|(name, _)| *name == feature)
            .map(|(_, why)| *why)
            .unwrap_or("not declared by the bridge")
    }
}

/// A broker instance of a test's own (a free loopback port), for the restart and crash cases:
/// the shared broker is never disturbed.
pub trait OwnBroker: Send {
    /// The URL a bridge connects to.
    fn url(&self) -> String;
    /// Kills the broker (SIGKILL) and keeps it down until [`OwnBroker::restart`].
    fn kill(&mut self);
    /// Starts it again on the same port with the same storage; returns once it accepts connections.
    fn restart(&mut self);
}

/// Puts raw bytes where a bridge's messages travel, for the malformed and oversized input cases.
pub trait Wire: Send + Sync {
    /// Sends `bytes` as a command to `service/version/command` and returns the raw reply, or why
    /// the transport refused them.
    fn command(&self, service: &str, version: &str, command: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, String>>;
    /// Publishes `bytes` where events named `event_name` travel.
    fn event(&self, event_name: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>>;
}

/// A bridge under test.
#[derive(Clone)]
pub struct Harness {
    name: String,
    connect: Connect,
    cleanup: Option<Cleanup>,
    features: Features,
    own_broker: Option<(StartBroker, ConnectTo)>,
    wire: Option<Arc<dyn Wire>>,
}

impl Harness {
    /// A harness whose `connect` opens a new connection (a new "process") to the same broker.
    pub fn new<F, Fut>(name: &str, connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Arc<dyn Bridge>> + Send + 'static,
    {
        Self {
            name: name.to_owned(),
            connect: Arc::new(move || Box::pin(connect())),
            cleanup: None,
            features: Features::default(),
            own_broker: None,
            wire: None,
        }
    }

    /// The in-memory bridge: every "connection" is the same bridge.
    pub fn memory() -> Self {
        let bridge = MemoryBridge::new();
        Self::new("memory", move || {
            let bridge = bridge.clone();
            async move { Arc::new(bridge) as Arc<dyn Bridge> }
        })
        .with_features(
            Features {
                bounded_queues: true,
                ..Features::default()
            }
            .lacks(
                "broker_counts_attempts",
                "no broker: a consumer crash is a process crash, which loses the in-memory queue",
            )
            .lacks(
                "redelivery_timeout",
                "no redelivery timeout: a delivery stays with its consumer until settled",
            )
            .lacks(
                "per_key_ordering",
                "a subscription's deliveries run concurrently (up to its concurrency)",
            )
            .lacks("own_broker", "no broker to restart, and its queues live in the test's own process")
            .lacks("wire", "in-process messages are never bytes"),
        )
    }

    /// Declares what the bridge can do beyond the common cases.
    pub fn with_features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }

    /// Lets the restart and crash cases start a broker of their own, and connect to it.
    pub fn with_own_broker<F, Fut>(mut self, start: impl Fn() -> Option<Box<dyn OwnBroker>> + Send + Sync + 'static, connect_to: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Arc<dyn Bridge>> + Send + 'static,
    {
        self.own_broker = Some((Arc::new(start), Arc::new(move |url| Box::pin(connect_to(url)))));
        self
    }

    /// Lets the malformed and oversized input cases put raw bytes on the wire.
    pub fn with_wire(mut self, wire: impl Wire + 'static) -> Self {
        self.wire = Some(Arc::new(wire));
        self
    }

    /// Runs after a case with each durable service it created (`name`), to remove what the broker
    /// keeps for it (durable consumers), so cases can share a broker.
    pub fn with_cleanup<F, Fut>(mut self, cleanup: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.cleanup = Some(Arc::new(move |service| Box::pin(cleanup(service))));
        self
    }

    /// The bridge's name, for the printed counts.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the bridge declared.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// A new connection.
    pub async fn connect(&self) -> Arc<dyn Bridge> {
        (self.connect)().await
    }

    /// An app on a new connection.
    pub async fn app(&self, services: Vec<Service>) -> RunningApp {
        let bridge = self.connect().await;
        self.app_on(bridge, services).await
    }

    /// An app on `bridge`.
    pub async fn app_on(&self, bridge: Arc<dyn Bridge>, services: Vec<Service>) -> RunningApp {
        let mut app = Host::new().shared_bridge(bridge).drain_timeout(Duration::from_secs(10));
        for service in services {
            app = app.service(service);
        }
        app.start()
            .await
            .unwrap_or_else(|e| panic!("[{}] services failed to start: {e}", self.name))
    }

    /// A broker of the case's own and a way to connect to it, or `None` after printing that the
    /// case is not supported.
    pub(crate) fn own_broker(&self, case: &str) -> Option<(Box<dyn OwnBroker>, &ConnectTo)> {
        let Some((start, connect_to)) = &self.own_broker else {
            self.not_supported(case, self.features.why("own_broker"));
            return None;
        };
        match start() {
            Some(broker) => Some((broker, connect_to)),
            None => {
                self.not_supported(case, "the broker cannot be started here");
                None
            }
        }
    }

    pub(crate) fn wire(&self, case: &str) -> Option<&Arc<dyn Wire>> {
        if self.wire.is_none() {
            self.not_supported(case, self.features.why("wire"));
        }
        self.wire.as_ref()
    }

    /// Runs this test binary as a subscriber process on the broker at `url` (see [`worker`]);
    /// the suite's `worker_process` test calls it when the crash cases start it.
    pub async fn run_worker(&self, url: String) {
        let Some((_, connect_to)) = &self.own_broker else {
            panic!("[{}] a worker process needs a broker of the case's own", self.name)
        };
        if let Err(e) = worker::run(connect_to(url).await).await {
            panic!("[{}] the worker failed: {e}", self.name);
        }
    }

    /// Whether the bridge has `feature`; if not, prints that `case` is not supported.
    pub(crate) fn supports(&self, case: &str, feature: &str, has: bool) -> bool {
        if !has {
            self.not_supported(case, self.features.why(feature));
        }
        has
    }

    pub(crate) fn not_supported(&self, case: &str, why: &str) {
        report(&format!("[{}] {case}: not supported ({why})", self.name));
    }

    /// Prints the declared capabilities: what the cases that depend on them will do.
    pub fn print_capabilities(&self) {
        let f = &self.features;
        let yes_no = |has: bool, feature: &str| {
            if has {
                "yes".to_owned()
            } else {
                format!("no ({})", f.why(feature))
            }
        };
        report(&format!(
            "[{}] capabilities: broker counts attempts: {}; redelivery timeout: {}; bounded queues: {}; per-key ordering: {}; own broker for restarts and subscriber processes: {}; raw wire input: {}",
            self.name,
            yes_no(f.broker_counts_attempts, "broker_counts_attempts"),
            f.redelivery_timeout
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|| yes_no(false, "redelivery_timeout")),
            yes_no(f.bounded_queues, "bounded_queues"),
            yes_no(f.per_key_ordering, "per_key_ordering"),
            yes_no(self.own_broker.is_some(), "own_broker"),
            yes_no(self.wire.is_some(), "wire"),
        ));
    }

    pub(crate) async fn cleanup(&self, service: &str) {
        if let Some(cleanup) = &self.cleanup {
            cleanup(service.to_owned()).await;
        }
    }

    pub(crate) fn report(&self, case: &str, counts: &Counts) {
        report(&format!(
            "[{}] {case}: sent {}, handled {}, duplicates {}, lost {}{}",
            self.name,
            counts.sent,
            counts.handled,
            counts.duplicates,
            counts.lost,
            counts.detail.as_deref().map(|d| format!(", {d}")).unwrap_or_default()
        ));
    }
}

/// Prints a case's counts straight to the process's stderr, which the test harness does not
/// capture, so they show in every test run's output.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// What a case counted.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub sent: usize,
    pub handled: usize,
    pub duplicates: usize,
    pub lost: usize,
    pub detail: Option<String>,
}

impl Counts {
    /// Counts of ids `0..sent` seen in `seen` (any order, repeats allowed).
    pub fn of(sent: usize, seen: &[u64]) -> Self {
        let mut times = vec![0usize; sent];
        for &id in seen {
            if let Some(slot) = times.get_mut(id as usize) {
                *slot += 1;
            }
        }
        Counts {
            sent,
            handled: seen.len(),
            duplicates: times.iter().map(|&n| n.saturating_sub(1)).sum(),
            lost: times.iter().filter(|&&n| n == 0).count(),
            detail: None,
        }
    }
}

/// A service or event name no other case (or earlier run) uses.
pub fn unique(base: &str) -> String {
    format!("{base}{}", &Id::random().to_string()[..8])
}

/// Waits for `done`, failing the case after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `count()` reaches `want`, failing the case after `limit` with how many it saw.
pub async fn wait_for_count(what: &str, limit: Duration, want: usize, mut count: impl FnMut() -> usize) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = count();
        if seen >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}: saw {seen} of {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
