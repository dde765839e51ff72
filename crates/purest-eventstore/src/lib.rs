//! Event sourcing for purest: an application's state kept as the series of events that made it.
//! Events live in streams (`customer-42`), each with its own versions, and in one global order
//! across streams that readers (projections, relays) follow with a checkpoint.
//!
//! - [`EventStore`] is the trait; [`MemoryEventStore`] keeps events in the process (tests, a
//!   monolith), [`PgEventStore`] in PostgreSQL. Appends check an expected version (optimistic
//!   concurrency: a stale writer gets 409 and reads again), and the global order has no holes a
//!   reader could skip, even when PostgreSQL commits transactions out of order.
//! - [`PgEventStore::append_in`] appends inside your transaction: your writes and their events
//!   commit together (the transactional outbox); [`OutboxRelay`] publishes them to the app's
//!   bridge; [`PgEventStore::claim_message`] lets a consumer have each message's effect once.
//! - [`EventTypes`] checks payloads against their JSON Schemas and upcasts old versions;
//!   [`load`] rebuilds an [`Aggregate`], from its snapshot when it keeps them.
//! - [`Projections`] run read models: [`Projection`] (at least once, anywhere) and
//!   [`PgProjection`] (exactly once, in the store's database), with rebuilds and lag.
//!
//! The design, with the visibility rule that keeps readers from skipping, is in
//! `docs/ARCHITECTURE.md` §9. PostgreSQL is the feature `postgres` (on by default): code that only
//! defines events, aggregates and projections can leave it off and build without sqlx.
//!
//! ```
//! use purest_eventstore::{Direction, EventStore, Expected, MemoryEventStore, NewEvent};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryEventStore::new();
//! let invited = NewEvent::new("customerInvited", &serde_json::json!({"email": "ann@example.com"})).unwrap();
//! let accepted = NewEvent::new("invitationAccepted", &serde_json::json!({})).unwrap();
//! let appended = store.append("customer-42", Expected::NoStream, vec![invited, accepted]).await.unwrap();
//! assert_eq!(appended.version, 2);
//!
//! // Another writer that read the stream at version 1 loses the race, and is told so.
//! let late = NewEvent::new("invitationWithdrawn", &serde_json::json!({})).unwrap();
//! let conflict = store.append("customer-42", Expected::Version(1), vec![late]).await.unwrap_err();
//! assert_eq!(conflict.status, 409);
//!
//! let history = store.read_stream("customer-42", 1, Direction::Forward, 100).await.unwrap();
//! let types: Vec<&str> = history.iter().map(|event| event.event_type.as_str()).collect();
//! assert_eq!(types, ["customerInvited", "invitationAccepted"]);
//! let everything = store.read_category("customer", 0, 100).await.unwrap();
//! assert_eq!(everything.last().map(|event| event.position), Some(2));
//! # });
//! ```
#![warn(missing_docs)]

mod aggregate;
mod event;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod projection;
mod readiness;
mod relay;
mod store;
mod types;

pub use aggregate::{Aggregate, Loaded, load};
pub use event::{Appended, Direction, Expected, Metadata, NewEvent, RecordedEvent, Snapshot, category_of};
pub use memory::MemoryEventStore;
#[cfg(feature = "postgres")]
pub use postgres::{MAX_EVENTS_PER_TRANSACTION, PgEventStore, PgOptions, PgProjection, ReaderStatus, database_error};
pub use projection::{
    Checkpoint, Checkpoints, Committed, MemoryCheckpoints, Projection, ProjectionState, ProjectionStatus, Projections, RunningProjections,
    Sink,
};
pub use readiness::{ProjectionsReadiness, StoreReadiness};
pub use relay::OutboxRelay;
/// The sqlx this crate is built with, for [`PgProjection`]s and transactions of your own.
#[cfg(feature = "postgres")]
pub use sqlx;
pub use store::{EventStore, MAX_STREAM_NAME, check_append, check_stream_name, duplicate_event, version_conflict};
pub use types::EventTypes;
