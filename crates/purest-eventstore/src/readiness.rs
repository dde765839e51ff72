//! What `/readyz` reports of an event store and its projections (see
//! `purest_core::readiness`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use purest_core::readiness::{Readiness, ReadinessCheck};
use serde_json::json;

use crate::projection::{Entry, status_of};
use crate::{EventStore, ProjectionState};

/// How long a probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The event store answers a read: ready; it fails or takes over 2 s: not ready.
///
/// ```
/// use std::sync::Arc;
/// use purest_core::readiness::ReadinessCheck;
/// use purest_eventstore::{MemoryEventStore, StoreReadiness};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let check = StoreReadiness::new(Arc::new(MemoryEventStore::new()));
/// assert!(check.check().await.ready);
/// # });
/// ```
pub struct StoreReadiness(Arc<dyn EventStore>);

impl StoreReadiness {
    /// Checks `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self(store)
    }
}

impl ReadinessCheck for StoreReadiness {
    fn name(&self) -> String {
        "event store".into()
    }

    fn check(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(async move {
            // A stream nobody writes: one index lookup.
            match tokio::time::timeout(PROBE_TIMEOUT, self.0.stream_version("$purest-readiness")).await {
                Ok(Ok(_)) => Readiness::ready(),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "readiness: the event store failed a read");
                    Readiness::not_ready("the event store cannot be read")
                }
                Err(_) => Readiness::not_ready("the event store did not answer within 2 s"),
            }
        })
    }
}

/// Running projections ([`crate::RunningProjections::readiness`]): each one's state, position
/// and lag (`behind`, events still to apply). Not ready while one has failed at an event or
/// cannot reach its database; catching up is ready (the lag says how far).
pub struct ProjectionsReadiness {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) entries: Vec<Arc<Entry>>,
}

impl ReadinessCheck for ProjectionsReadiness {
    fn name(&self) -> String {
        "projections".into()
    }

    fn check(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(async move {
            let statuses = match tokio::time::timeout(PROBE_TIMEOUT, status_of(&*self.store, &self.entries)).await {
                Ok(Ok(statuses)) => statuses,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "readiness: the projections' lag could not be read");
                    return Readiness::not_ready("the projections' lag cannot be read from the event store");
                }
                Err(_) => return Readiness::not_ready("the event store did not answer within 2 s"),
            };
            let mut troubled = Vec::new();
            let mut listed = Vec::with_capacity(statuses.len());
            for status in statuses {
                let state = match &status.state {
                    ProjectionState::Starting => "starting",
                    ProjectionState::CatchingUp => "catching up",
                    ProjectionState::Live => "live",
                    ProjectionState::StandingBy => "standing by",
                    ProjectionState::Rebuilding => "rebuilding",
                    ProjectionState::Retrying(_) => "retrying",
                    ProjectionState::Failed(_) => "failed",
                };
                if matches!(status.state, ProjectionState::Retrying(_) | ProjectionState::Failed(_)) {
                    troubled.push(format!("{} is {state}", status.name));
                }
                listed.push(json!({"name": status.name, "state": state, "position": status.position, "behind": status.behind}));
            }
            let readiness = if troubled.is_empty() {
                Readiness::ready()
            } else {
                Readiness::not_ready(troubled.join(", "))
            };
            readiness.with("projections", listed)
        })
    }
}
