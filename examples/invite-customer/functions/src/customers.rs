//! The `customers` read model: its projector and its query.

use purest_core::{EventRef, HandledError, Params, State};
use purest_cqrs::{Event, Projected, Projector};

use crate::datastore::CustomerViews;
use crate::messages::{CUSTOMER_INVITED, CUSTOMER_PROJECTED, Customer, CustomerKey, normalize};

/// Keeps the `customers` read model from the `customer` streams, and announces each customer it
/// holds ([`CUSTOMER_PROJECTED`]).
pub struct CustomersProjector;

impl<D: CustomerViews> Projector<D> for CustomersProjector {
    fn name(&self) -> &str {
        "customers"
    }

    fn category(&self) -> Option<&str> {
        Some("customer")
    }

    fn announces(&self) -> Option<EventRef<Projected>> {
        Some(CUSTOMER_PROJECTED)
    }

    async fn write(&self, db: &D, unit: &mut D::Unit, event: &Event) -> Result<(), HandledError> {
        if let Some(invited) = event.decode(CUSTOMER_INVITED)? {
            let customer = Customer {
                id: invited.customer_id,
                email: invited.email,
                name: invited.name,
                invited_at: invited.invited_at,
            };
            db.put_customer(unit, &customer).await?;
        }
        Ok(())
    }

    async fn reset(&self, db: &D, unit: &mut D::Unit) -> Result<(), HandledError> {
        db.clear_customers(unit).await
    }
}

/// The query: a customer by email, 404 when the read model has none.
pub async fn get_customer<D: CustomerViews>(State(db): State<D>, Params(key): Params<CustomerKey>) -> Result<Customer, HandledError> {
    let email = normalize(&key.email);
    db.customer(&email)
        .await?
        .ok_or_else(|| HandledError::not_found(format!("no customer has the email {email}")))
}
