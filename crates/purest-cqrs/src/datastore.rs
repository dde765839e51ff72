//! Where handlers keep their local state: a [`Datastore`] opens [`Unit`]s of work in which a
//! handler's writes and the events it decided commit together, or not at all.
//!
//! The business functions never name a datastore. They state what they need as traits of their
//! own (`trait Customers: Datastore { async fn email_known(..) }`), and each deployment implements
//! those for its datastore: a [`MemoryDatastore`](crate::MemoryDatastore) in one process, the
//! PostgreSQL event store's transactions elsewhere. Changing the deployment changes those
//! implementations, never the functions.

use std::future::Future;
use std::sync::Arc;

use purest_core::HandledError;
use purest_eventstore::{Appended, Checkpoints, EventStore, Expected, NewEvent};

/// One unit of work: appends and writes that commit together when [`Unit::commit`] succeeds, and
/// leave no trace when it fails or the unit is dropped.
pub trait Unit: Send + 'static {
    /// Appends `events` to `stream` within the unit, refusing (409) an `expected` version the
    /// stream does not meet; the events become visible to readers only with the commit.
    fn append(
        &mut self,
        stream: &str,
        expected: Expected,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Appended, HandledError>> + Send;

    /// Moves the checkpoint of reader `name` from `from` to `to` within the unit: `false` (no
    /// change) when it is not at `from` or a rebuild was asked for.
    fn advance(&mut self, name: &str, from: u64, to: u64) -> impl Future<Output = Result<bool, HandledError>> + Send;

    /// Puts the checkpoint of reader `name` back to 0 and clears its rebuild request, within the
    /// unit.
    fn restart(&mut self, name: &str) -> impl Future<Output = Result<(), HandledError>> + Send;

    /// Makes everything done in the unit durable and visible at once. A 409 means another unit
    /// changed what this one relied on: the whole decision can be made again.
    fn commit(self) -> impl Future<Output = Result<(), HandledError>> + Send;
}

/// A local datastore with its event store: what a deployment gives the executor of a
/// [`LowHandler`](crate::LowHandler) or a [`Projector`](crate::Projector).
///
/// Implemented by [`MemoryDatastore`](crate::MemoryDatastore) and, with the feature `postgres`,
/// by `PgEventStore`. A deployment usually wraps one in a type of its own, so that it can
/// implement the traits its business functions declare:
///
/// ```
/// use std::sync::Arc;
/// use purest_cqrs::{Datastore, MemoryDatastore, MemoryUnit};
/// use purest_eventstore::{Checkpoints, EventStore};
/// use purest_core::HandledError;
///
/// #[derive(Clone, Default)]
/// struct Tables { emails: std::collections::BTreeSet<String> }
///
/// /// The deployment's datastore: the in-memory one, with the functions' traits implemented on it.
/// #[derive(Clone, Default)]
/// struct Customers(MemoryDatastore<Tables>);
///
/// impl Datastore for Customers {
///     type Unit = MemoryUnit<Tables>;
///     async fn begin(&self) -> Result<Self::Unit, HandledError> { self.0.begin().await }
///     fn events(&self) -> Arc<dyn EventStore> { self.0.events() }
///     fn checkpoints(&self) -> Arc<dyn Checkpoints> { self.0.checkpoints() }
/// }
/// ```
pub trait Datastore: Send + Sync + 'static {
    /// Its unit of work.
    type Unit: Unit;

    /// Opens a unit of work.
    fn begin(&self) -> impl Future<Output = Result<Self::Unit, HandledError>> + Send;

    /// The event store its units append to, for reads (stream versions, replays).
    fn events(&self) -> Arc<dyn EventStore>;

    /// Where its readers' checkpoints are kept, for reading them outside a unit.
    fn checkpoints(&self) -> Arc<dyn Checkpoints>;
}

/// Whether `error` is the 409 of an append whose expected version the stream did not meet, or of
/// a commit that found its reads outdated: a conflict that making the decision again can solve.
pub fn is_version_conflict(error: &HandledError) -> bool {
    error.status == 409
        && error
            .data
            .as_ref()
            .is_some_and(|data| data.get("actual").is_some() && data.get("stream").is_some())
}

/// Whether `error` is the 409 of an append holding an event id the store has already: the
/// decision was committed before (a redelivered message).
pub fn is_duplicate_event(error: &HandledError) -> bool {
    error.status == 409 && error.data.as_ref().is_some_and(|data| data.get("eventId").is_some())
}
