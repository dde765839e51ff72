//! Units of work on the PostgreSQL event store: one transaction holds a handler's writes to its
//! tables, the events it decided and the checkpoint moves of projectors.

use std::sync::Arc;

use purest_core::HandledError;
use purest_eventstore::sqlx::{PgConnection, Postgres, Transaction};
use purest_eventstore::{Appended, Checkpoints, EventStore, Expected, NewEvent, PgEventStore, database_error};

use crate::datastore::{Datastore, Unit};

/// A transaction on the event store's database: write your tables through [`PgUnit::conn`];
/// [`Unit::append`] adds events to it. Dropping it without [`Unit::commit`] rolls it back.
///
/// ```no_run
/// use purest_cqrs::{Datastore, Unit};
/// use purest_eventstore::{Expected, NewEvent, PgEventStore, database_error};
/// # async fn demo(store: PgEventStore) -> Result<(), purest_core::HandledError> {
/// let mut unit = store.begin().await?;
/// sqlx::query("INSERT INTO customers (email) VALUES ($1)")
///     .bind("ann@example.com")
///     .execute(unit.conn())
///     .await
///     .map_err(|e| database_error("insert a customer", &e))?;
/// let invited = NewEvent::new("customerInvited", &serde_json::json!({"email": "ann@example.com"}))?;
/// unit.append("customer-ann", Expected::NoStream, vec![invited]).await?;
/// unit.commit().await?;
/// # Ok(()) }
/// ```
pub struct PgUnit {
    tx: Transaction<'static, Postgres>,
    store: PgEventStore,
}

impl PgUnit {
    /// The transaction's connection, for the deployment's own queries.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// The store the unit appends to.
    pub fn store(&self) -> &PgEventStore {
        &self.store
    }
}

impl Unit for PgUnit {
    async fn append(&mut self, stream: &str, expected: Expected, events: Vec<NewEvent>) -> Result<Appended, HandledError> {
        self.store.append_in(&mut self.tx, stream, expected, events).await
    }

    async fn advance(&mut self, name: &str, from: u64, to: u64) -> Result<bool, HandledError> {
        self.store.advance_in(&mut self.tx, name, from, to).await
    }

    async fn restart(&mut self, name: &str) -> Result<(), HandledError> {
        self.store.restart_in(&mut self.tx, name).await
    }

    async fn commit(self) -> Result<(), HandledError> {
        self.tx.commit().await.map_err(|e| database_error("commit a unit of work", &e))?;
        self.store.wake_readers();
        Ok(())
    }
}

impl Datastore for PgEventStore {
    type Unit = PgUnit;

    async fn begin(&self) -> Result<PgUnit, HandledError> {
        let tx = self.pool().begin().await.map_err(|e| database_error("begin a unit of work", &e))?;
        Ok(PgUnit { tx, store: self.clone() })
    }

    fn events(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }

    fn checkpoints(&self) -> Arc<dyn Checkpoints> {
        Arc::new(self.clone())
    }
}
