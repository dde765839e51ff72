//! The business functions of inviting a customer by email, as in "events unbundled": a route
//! handler with its resolver, an `invite-customer` LOW handler, a projector into a `customers`
//! read model, and a query of it. This crate imports nothing of any deployment — no bridge, no
//! database driver, no HTTP server: it asks for its tables through [`CustomerRegistry`] and
//! [`CustomerViews`], which each deployment implements ([`MemoryCustomers`] here, PostgreSQL in
//! the `invite-customer` binary).
//!
//! The handler's own unit tests need nothing else:
//!
//! ```
//! use invite_customer_functions::*;
//! use purest_cqrs::testing::{SCENARIO_TIME, Scenario, event};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let ann = InviteCustomer { email: "Ann@Example.com".into(), name: "Ann".into() };
//! let invited = CustomerInvited {
//!     customer_id: "00000000000000000000000000000001".into(),
//!     email: "ann@example.com".into(),
//!     name: "Ann".into(),
//!     invited_at: SCENARIO_TIME,
//! };
//! Scenario::new(InviteCustomerHandler, MemoryCustomers::default())
//!     .when(ann.clone())
//!     .then([event(CUSTOMER_INVITED, invited.clone())])
//!     .await;
//! let refused = InvitationRejected { email: "ann@example.com".into(), reason: "ann@example.com is invited already".into() };
//! Scenario::new(InviteCustomerHandler, MemoryCustomers::default())
//!     .given("customer-ann@example.com", [event(CUSTOMER_INVITED, invited)])
//!     .when(ann)
//!     .then([event(INVITATION_REJECTED, refused)])
//!     .await;
//! # });
//! ```

mod api;
mod customers;
mod datastore;
mod invite;
mod memory;
mod messages;

pub use api::{ResolverSettings, post_customer};
pub use customers::{CustomersProjector, get_customer};
pub use datastore::{CustomerRegistry, CustomerViews};
pub use invite::{InviteCustomerHandler, Known};
pub use memory::{MemoryCustomers, Tables};
pub use messages::*;

use purest_core::{Command, Method, Service};
use purest_cqrs::Executor;

/// The `customer` service: the `invite-customer` handler, over `db`.
pub fn customer_service<D: CustomerRegistry>(db: D) -> Service {
    Executor::new(InviteCustomerHandler, db).register(Service::new("customer", "1").description("invites customers"))
}

/// The `customer-views` service: the query of the read model in `db`, at
/// `GET /api/v1/customers/{email}`. (The projector that keeps the read model runs beside it.)
pub fn views_service<D: CustomerViews>(db: D) -> Service {
    Service::new("customer-views", "1")
        .description("reads the customers read model")
        .state(db)
        .command(
            Command::of(GET_CUSTOMER, get_customer::<D>)
                .description("a customer by email")
                .http(Method::GET, "customers/{email}")
                .public()
                .http_error(404, "no customer has this email"),
        )
}

/// The `customer-api` service: `POST /api/v1/customers`, answered once the customer can be read.
pub fn api_service(settings: ResolverSettings) -> Service {
    Service::new("customer-api", "1")
        .description("the HTTP face of inviting customers")
        .state(settings)
        .command(
            Command::of(POST_CUSTOMER, post_customer)
                .description("invites a customer and answers with them once they can be read")
                .http(Method::POST, "customers")
                .public()
                .invokes("customer/1/inviteCustomer")
                .invokes("customer-views/1/getCustomer")
                .http_error(202, "invited; the customer is not readable yet: GET the Location later")
                .http_error(409, "the email is invited already"),
        )
}
