//! CQRS for purest with **LOW handlers**: each business function is a **l**ookup (all reads), an
//! **o**perate (the decision, a pure function returning events) and a **w**rite (the events
//! applied to the handler's local tables, with their integrity checks), plus metadata naming its
//! input and outputs. An [`Executor`] runs them and commits the writes together with the events,
//! through the event store (PostgreSQL: one transaction, the store being the outbox; in memory:
//! one atomic commit). [`Projector`]s keep read models from the store and announce what they
//! applied, so a resolver can answer a request once its result can be read.
//!
//! The functions name no deployment: they ask for what they need through traits of their own,
//! which each deployment implements for its [`Datastore`]. The same functions run in one process
//! in memory, on NATS with PostgreSQL, or one per process; `examples/invite-customer` runs one
//! set of functions all three ways.
//!
//! ```
//! use std::collections::BTreeSet;
//! use std::future::Future;
//! use std::sync::Arc;
//! use purest_core::prelude::*;
//! use purest_cqrs::testing::{SCENARIO_TIME, Scenario, event};
//! use purest_cqrs::{Datastore, Decision, Event, Executor, LowContext, LowHandler, MemoryDatastore, MemoryUnit, Meta, Outcome};
//! use purest_eventstore::{Checkpoints, EventStore, Expected};
//!
//! #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
//! struct InviteCustomer {
//!     #[garde(email)]
//!     email: String,
//! }
//!
//! #[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
//! struct CustomerInvited {
//!     email: String,
//!     invited_at: u64,
//! }
//!
//! const INVITE_CUSTOMER: CommandRef<InviteCustomer, Outcome> = CommandRef::new("customer", "1", "inviteCustomer");
//! const CUSTOMER_INVITED: EventRef<CustomerInvited> = EventRef::new("customerInvited");
//!
//! /// What the handler needs of its datastore; every deployment implements it.
//! trait Customers: Datastore {
//!     fn email_known(&self, email: &str) -> impl Future<Output = Result<bool, HandledError>> + Send;
//!     /// Refuses (409) an email that is there already.
//!     fn insert(&self, unit: &mut Self::Unit, email: &str) -> impl Future<Output = Result<(), HandledError>> + Send;
//! }
//!
//! struct Invite;
//!
//! impl<D: Customers> LowHandler<D> for Invite {
//!     type Input = InviteCustomer;
//!     type Data = bool;
//!
//!     fn meta(&self) -> Meta<InviteCustomer> {
//!         Meta::on_command("invite-customer", INVITE_CUSTOMER).emits(CUSTOMER_INVITED)
//!     }
//!     async fn lookup(&self, _: &LowContext, db: &D, command: &InviteCustomer) -> Result<bool, HandledError> {
//!         db.email_known(&command.email).await
//!     }
//!     fn operate(&self, ctx: &LowContext, command: &InviteCustomer, known: bool) -> Result<Decision, HandledError> {
//!         if known {
//!             return Err(HandledError::conflict(format!("{} is invited already", command.email)));
//!         }
//!         let invited = CustomerInvited { email: command.email.clone(), invited_at: ctx.now() };
//!         Ok(Decision::append(format!("customer-{}", command.email), Expected::NoStream).event(CUSTOMER_INVITED, invited))
//!     }
//!     async fn write(&self, db: &D, unit: &mut D::Unit, event: &Event) -> Result<(), HandledError> {
//!         if let Some(invited) = event.decode(CUSTOMER_INVITED)? {
//!             db.insert(unit, &invited.email).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! /// The in-memory deployment's datastore (a PostgreSQL one would run SQL in its unit).
//! #[derive(Clone, Default)]
//! struct InMemory(MemoryDatastore<BTreeSet<String>>);
//!
//! impl Datastore for InMemory {
//!     type Unit = MemoryUnit<BTreeSet<String>>;
//!     async fn begin(&self) -> Result<Self::Unit, HandledError> { self.0.begin().await }
//!     fn events(&self) -> Arc<dyn EventStore> { self.0.events() }
//!     fn checkpoints(&self) -> Arc<dyn Checkpoints> { self.0.checkpoints() }
//! }
//!
//! impl Customers for InMemory {
//!     async fn email_known(&self, email: &str) -> Result<bool, HandledError> {
//!         Ok(self.0.read().contains(email))
//!     }
//!     async fn insert(&self, unit: &mut Self::Unit, email: &str) -> Result<(), HandledError> {
//!         match unit.tables_mut().insert(email.to_owned()) {
//!             true => Ok(()),
//!             false => Err(HandledError::conflict(format!("{email} is a customer already"))),
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // The given/when/then test: no infrastructure.
//! let ann = || InviteCustomer { email: "ann@example.com".into() };
//! let invited = CustomerInvited { email: "ann@example.com".into(), invited_at: SCENARIO_TIME };
//! Scenario::new(Invite, InMemory::default())
//!     .when(ann())
//!     .then([event(CUSTOMER_INVITED, invited.clone())])
//!     .await;
//! Scenario::new(Invite, InMemory::default())
//!     .given("customer-ann@example.com", [event(CUSTOMER_INVITED, invited)])
//!     .when(ann())
//!     .then_error(409)
//!     .await;
//!
//! // The same handler served as a command.
//! let datastore = InMemory::default();
//! let service = Executor::new(Invite, datastore.clone()).register(Service::new("customer", "1"));
//! let app = Host::new().service(service).start().await?;
//! let outcome = app.client().invoke(INVITE_CUSTOMER, ann()).await?;
//! assert_eq!((outcome.stream.as_deref(), outcome.version), (Some("customer-ann@example.com"), 1));
//! let again = app.client().invoke(INVITE_CUSTOMER, ann()).await.unwrap_err();
//! assert_eq!(again.status, 409);
//! assert_eq!(datastore.0.event_store().len(), 1);
//! app.shutdown().await;
//! # Ok::<_, purest_core::Error>(()) }).unwrap();
//! ```
#![warn(missing_docs)]

mod datastore;
mod executor;
mod handler;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod projector;
mod rebuild;
pub mod testing;

pub use datastore::{Datastore, Unit, is_duplicate_event, is_version_conflict};
pub use executor::{DEFAULT_RETRIES, Executed, Executor};
pub use handler::{Decision, Event, Input, LowContext, LowHandler, Meta, Outcome};
pub use memory::{MemoryDatastore, MemoryUnit};
#[cfg(feature = "postgres")]
pub use postgres::PgUnit;
pub use projector::{Projected, Projector, ProjectorSink};
pub use rebuild::{Rebuilt, rebuild, rebuild_projector};
