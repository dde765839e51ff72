//! The conformance suite of purest bridges: DESIGN.md §5 as executable cases. A bridge crate runs
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
pub mod nats_server;

/// Declares one `#[tokio::test]` per case of the suite. `$harness` is an async fn returning
/// `Option<Harness>` (`None` skips, e.g. when the broker is not running and not required), so
/// every bridge runs the same list of cases and a new case reaches all of them.
///
/// ```no_run
/// async fn harness() -> Option<purest_bridge_tests::Harness> { Some(purest_bridge_tests::Harness::memory()) }
/// purest_bridge_tests::conformance_suite!(harness);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($harness:path) => {
        $crate::conformance_suite!(@cases $harness;
            round_trip, deadline_and_no_handler, load_sharing, fan_out, durable_while_down, retry_then_dead_letter, graceful_shutdown);
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
type Cleanup = Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

/// A bridge under test.
#[derive(Clone)]
pub struct Harness {
    name: String,
    connect: Connect,
    cleanup: Option<Cleanup>,
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
        }
    }

    /// The in-memory bridge: every "connection" is the same bridge.
    pub fn memory() -> Self {
        let bridge = MemoryBridge::new();
        Self::new("memory", move || {
            let bridge = bridge.clone();
            async move { Arc::new(bridge) as Arc<dyn Bridge> }
        })
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

    /// A new connection.
    pub async fn connect(&self) -> Arc<dyn Bridge> {
        (self.connect)().await
    }

    /// An app on a new connection.
    pub async fn app(&self, services: Vec<Service>) -> RunningApp {
        let mut app = App::new()
            .shared_bridge(self.connect().await)
            .drain_timeout(Duration::from_secs(10));
        for service in services {
            app = app.service(service);
        }
        app.start()
            .await
            .unwrap_or_else(|e| panic!("[{}] services failed to start: {e}", self.name))
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
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
