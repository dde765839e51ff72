//! The commands, events, queries and read model of inviting a customer, and their addresses.

use purest_core::{CommandRef, EventRef};
use purest_cqrs::{Outcome, Projected};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Invite a customer by email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, garde::Validate)]
pub struct InviteCustomer {
    /// Where the invitation goes; also the customer's key (compared without case).
    #[garde(email, length(max = 180))]
    pub email: String,
    /// How to address them.
    #[garde(length(min = 1, max = 100))]
    pub name: String,
}

/// A customer was invited. It carries everything the handler's and the projector's tables hold,
/// so replaying it rebuilds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerInvited {
    /// The new customer's id.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// Their email, in lowercase.
    #[schemars(length(min = 3, max = 180))]
    pub email: String,
    /// Their name.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// When, in milliseconds since the Unix epoch.
    pub invited_at: u64,
}

/// An invitation was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvitationRejected {
    /// The email, in lowercase.
    pub email: String,
    /// Why, for the caller.
    pub reason: String,
}

/// A customer as the read model shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
#[garde(allow_unvalidated)]
pub struct Customer {
    /// Their id.
    pub id: String,
    /// Their email.
    pub email: String,
    /// Their name.
    pub name: String,
    /// When they were invited, in milliseconds since the Unix epoch.
    pub invited_at: u64,
}

/// Which customer to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, garde::Validate)]
pub struct CustomerKey {
    /// Their email.
    #[garde(length(min = 1, max = 180))]
    pub email: String,
}

/// The command the LOW handler serves (answered with where its events went).
pub const INVITE_CUSTOMER: CommandRef<InviteCustomer, Outcome> = CommandRef::new("customer", "1", "inviteCustomer");
/// The HTTP route's command (`POST /api/v1/customers`): the resolver, answered with the customer
/// once the read model has them.
pub const POST_CUSTOMER: CommandRef<InviteCustomer, Customer> = CommandRef::new("customer-api", "1", "postCustomer");
/// The query of the read model (`GET /api/v1/customers/{email}`).
pub const GET_CUSTOMER: CommandRef<(), Customer, CustomerKey> = CommandRef::new("customer-views", "1", "getCustomer");

/// A customer was invited.
pub const CUSTOMER_INVITED: EventRef<CustomerInvited> = EventRef::new("customerInvited");
/// An invitation was refused.
pub const INVITATION_REJECTED: EventRef<InvitationRejected> = EventRef::new("invitationRejected");
/// The read model holds an invited customer (the projector's announcement).
pub const CUSTOMER_PROJECTED: EventRef<Projected> = EventRef::new("customerProjected");

/// The events the resolver waits for: declare them with `Host::awaits` where it runs.
pub const RESOLVER_AWAITS: [&str; 2] = [CUSTOMER_PROJECTED.name(), INVITATION_REJECTED.name()];

/// An email as the functions compare and store it.
pub fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The stream of the customer with this (normalized) email.
pub fn customer_stream(email: &str) -> String {
    format!("customer-{email}")
}
