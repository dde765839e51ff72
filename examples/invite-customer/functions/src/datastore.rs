//! What the functions need of a datastore, as traits each deployment implements: the functions
//! never see SQL or maps.

use std::future::Future;

use purest_core::HandledError;
use purest_cqrs::Datastore;

use crate::messages::Customer;

/// The invite handler's own table: which emails are taken, by which customer.
pub trait CustomerRegistry: Datastore {
    /// The id of the customer with `email`, if there is one.
    fn customer_with_email(&self, email: &str) -> impl Future<Output = Result<Option<String>, HandledError>> + Send;

    /// Records that `email` belongs to `customer_id`, within `unit`; 409 when the email is taken
    /// (the integrity check that keeps two customers from sharing an email).
    fn register_customer(
        &self,
        unit: &mut Self::Unit,
        customer_id: &str,
        email: &str,
    ) -> impl Future<Output = Result<(), HandledError>> + Send;

    /// Empties the table, within `unit` (before a rebuild).
    fn clear_registry(&self, unit: &mut Self::Unit) -> impl Future<Output = Result<(), HandledError>> + Send;
}

/// The `customers` read model.
pub trait CustomerViews: Datastore + Clone {
    /// The customer with `email`, if the read model has them.
    fn customer(&self, email: &str) -> impl Future<Output = Result<Option<Customer>, HandledError>> + Send;

    /// Puts `customer` in the read model (replacing what it had under their email), within
    /// `unit`.
    fn put_customer(&self, unit: &mut Self::Unit, customer: &Customer) -> impl Future<Output = Result<(), HandledError>> + Send;

    /// Empties the read model, within `unit` (before a rebuild).
    fn clear_customers(&self, unit: &mut Self::Unit) -> impl Future<Output = Result<(), HandledError>> + Send;
}
