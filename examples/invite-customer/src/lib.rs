//! The invite-customer example's deployments. One binary runs the same functions
//! (`invite-customer-functions`) whichever way the configuration says:
//!
//! - **(a) one process, in memory** — `invite-customer serve` with nothing set;
//! - **(b) NATS + PostgreSQL + outbox** — `INVITE_DATABASE=postgres://… PUREST_BRIDGE=nats://…`;
//! - **(c) one process per function** — as (b), each process with `PUREST_SERVICES` naming its
//!   part: `customer` (the LOW handler and the outbox relay), `customer-views` (the projector and
//!   the query), `customer-api` (the HTTP route and its resolver, with `PUREST_HTTP`).
//!
//! `invite-customer rebuild` rebuilds the handler's and the projector's tables from the event
//! store (`INVITE_DATABASE`), through their `write` functions.

mod postgres;

use std::sync::Arc;

use invite_customer_functions::{
    CustomerRegistry, CustomerViews, CustomersProjector, MemoryCustomers, RESOLVER_AWAITS, ResolverSettings, api_service, customer_service,
    views_service,
};
pub use postgres::PgCustomers;
use purest::cqrs::{Datastore, ProjectorSink};
use purest::eventstore::{OutboxRelay, Projections, StoreReadiness};
use purest::prelude::*;
use purest::{Address, Companion, Started};

/// The PostgreSQL database of (b) and (c); unset, everything is in memory (a).
pub const DATABASE: &str = "INVITE_DATABASE";
/// The schema of the event store and the tables (`invite`).
pub const SCHEMA: &str = "INVITE_SCHEMA";
/// How long the resolver waits for the read model before answering 202, in milliseconds.
pub const RESOLVE_MS: &str = "INVITE_RESOLVE_MS";

/// The PostgreSQL tables, if `INVITE_DATABASE` names a database.
pub async fn database() -> Result<Option<PgCustomers>, Error> {
    let Ok(url) = std::env::var(DATABASE) else { return Ok(None) };
    let schema = std::env::var(SCHEMA).unwrap_or_else(|_| "invite".into());
    Ok(Some(PgCustomers::connect(&url, &schema).await?))
}

/// Where a deployment's outbox relay keeps its checkpoint.
pub trait Outbox: CustomerRegistry + CustomerViews {
    /// Whether every process sees the tables (else they must all run in one process).
    const SHARED: bool;
    /// Adds the outbox relay to `projections`.
    fn relay(&self, projections: Projections, relay: OutboxRelay) -> Projections;
}

impl Outbox for MemoryCustomers {
    const SHARED: bool = false;
    fn relay(&self, projections: Projections, relay: OutboxRelay) -> Projections {
        projections.add(relay, self.checkpoints())
    }
}

impl Outbox for PgCustomers {
    const SHARED: bool = true;
    fn relay(&self, projections: Projections, relay: OutboxRelay) -> Projections {
        // One relay at a time among the `customer` processes; the others stand by.
        projections.add_leased(relay, self.store())
    }
}

/// The three services over `db`, and beside them the relay (with `customer`) and the projector
/// (with `customer-views`).
pub fn app<D: Outbox>(db: D, resolver: ResolverSettings) -> App {
    let mut app = App::new()
        .service(customer_service(db.clone()))
        .service(views_service(db.clone()))
        .service(api_service(resolver));
    for event in RESOLVER_AWAITS {
        app = app.awaits(event);
    }
    app.companion(move |started: Started| async move {
        if !D::SHARED && started.services.len() != 3 {
            return Err(Error::msg(format!(
                "the in-memory tables live in one process, which must run every service (it runs {}); set {DATABASE} to split them",
                started.services.join(", ")
            )));
        }
        let mut projections = Projections::new(db.events());
        let mut any = false;
        if started.runs("customer") {
            let relay = OutboxRelay::new(started.bridge.clone(), Address::new("customer", "1", ""));
            projections = db.relay(projections, relay);
            any = true;
        }
        if started.runs("customer-views") {
            let projector = ProjectorSink::new(CustomersProjector, db.clone())
                .announce_on(started.bridge.clone(), Address::new("customer-views", "1", "customers"));
            projections = projections.add_sink(Arc::new(projector));
            any = true;
        }
        if !any {
            return Ok(Companion::none());
        }
        let running = projections.start();
        let readiness = running.readiness();
        Ok(Companion::new(move || running.stop())
            .readiness(StoreReadiness::new(db.events()))
            .readiness(readiness))
    })
}
