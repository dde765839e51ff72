//! The functions' datastore traits over purest's in-memory datastore: what the unit tests (the
//! "fifth project") and the one-process deployment use. No infrastructure, only maps.

use std::sync::Arc;

use purest_core::HandledError;
use purest_cqrs::{Datastore, MemoryDatastore, MemoryUnit};
use purest_eventstore::{Checkpoints, EventStore, MemoryEventStore};

use crate::datastore::{CustomerRegistry, CustomerViews};
use crate::messages::Customer;

/// The tables: persistent maps, so a unit of work copies them in constant time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tables {
    /// The handler's: customer id by email.
    pub registry: imbl::OrdMap<String, String>,
    /// The read model: customers by email.
    pub customers: imbl::OrdMap<String, Customer>,
}

/// Both tables and the event store, in memory. Clones share them.
#[derive(Clone, Default)]
pub struct MemoryCustomers(MemoryDatastore<Tables>);

impl MemoryCustomers {
    /// The tables as committed.
    pub fn tables(&self) -> Arc<Tables> {
        self.0.read()
    }

    /// The event store.
    pub fn event_store(&self) -> &MemoryEventStore {
        self.0.event_store()
    }
}

impl Datastore for MemoryCustomers {
    type Unit = MemoryUnit<Tables>;

    async fn begin(&self) -> Result<Self::Unit, HandledError> {
        self.0.begin().await
    }

    fn events(&self) -> Arc<dyn EventStore> {
        self.0.events()
    }

    fn checkpoints(&self) -> Arc<dyn Checkpoints> {
        self.0.checkpoints()
    }
}

impl CustomerRegistry for MemoryCustomers {
    async fn customer_with_email(&self, email: &str) -> Result<Option<String>, HandledError> {
        Ok(self.0.read().registry.get(email).cloned())
    }

    async fn register_customer(&self, unit: &mut Self::Unit, customer_id: &str, email: &str) -> Result<(), HandledError> {
        let registry = &mut unit.tables_mut().registry;
        if registry.contains_key(email) {
            return Err(HandledError::conflict(format!("{email} belongs to another customer")));
        }
        registry.insert(email.to_owned(), customer_id.to_owned());
        Ok(())
    }

    async fn clear_registry(&self, unit: &mut Self::Unit) -> Result<(), HandledError> {
        unit.tables_mut().registry.clear();
        Ok(())
    }
}

impl CustomerViews for MemoryCustomers {
    async fn customer(&self, email: &str) -> Result<Option<Customer>, HandledError> {
        Ok(self.0.read().customers.get(email).cloned())
    }

    async fn put_customer(&self, unit: &mut Self::Unit, customer: &Customer) -> Result<(), HandledError> {
        unit.tables_mut().customers.insert(customer.email.clone(), customer.clone());
        Ok(())
    }

    async fn clear_customers(&self, unit: &mut Self::Unit) -> Result<(), HandledError> {
        unit.tables_mut().customers.clear();
        Ok(())
    }
}
