//! What `/readyz` asks beyond the bridge: each store, projection or other dependency a process
//! needs reports whether it can take work now, and details (a projection's lag) for whoever
//! looks.
//!
//! ```
//! use futures::future::BoxFuture;
//! use purest_core::readiness::{Readiness, ReadinessCheck};
//!
//! struct Cache;
//! impl ReadinessCheck for Cache {
//!     fn name(&self) -> String { "cache".into() }
//!     fn check(&self) -> BoxFuture<'_, Readiness> {
//!         Box::pin(async { Readiness::ready().with("entries", 12) })
//!     }
//! }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let report = Cache.check().await;
//! assert!(report.ready);
//! assert_eq!(report.details["entries"], 12);
//! # });
//! ```

use futures::future::BoxFuture;
use serde_json::{Map, Value};

/// One dependency's answer to "can you take work now?".
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// Whether it can.
    pub ready: bool,
    /// Why not, when it cannot (shown to the prober: no secrets, no internals).
    pub reason: Option<String>,
    /// What else it reports (a JSON object).
    pub details: Value,
}

impl Readiness {
    /// Ready.
    pub fn ready() -> Self {
        Self {
            ready: true,
            reason: None,
            details: Value::Object(Map::new()),
        }
    }

    /// Not ready, because of `reason`.
    pub fn not_ready(reason: impl Into<String>) -> Self {
        Self {
            ready: false,
            reason: Some(reason.into()),
            details: Value::Object(Map::new()),
        }
    }

    /// Adds `key: value` to the details.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(details) = &mut self.details {
            details.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// A dependency `/readyz` reports on.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// What it is, as the report names it (`event store`, `projections`).
    fn name(&self) -> String;
    /// Asks it now. Keep it quick: probes come every few seconds.
    fn check(&self) -> BoxFuture<'_, Readiness>;
}
