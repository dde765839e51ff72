//! The route handler and its resolver: `POST /api/v1/customers` dispatches the invitation and
//! answers once the read model holds the customer (read-your-writes), or with the refusal.

use std::time::Duration;

use purest_core::{Context, HandledError, Message, Payload, State};

use crate::messages::{
    CUSTOMER_PROJECTED, Customer, CustomerKey, GET_CUSTOMER, INVITATION_REJECTED, INVITE_CUSTOMER, InvitationRejected, InviteCustomer,
    normalize,
};

/// How the resolver answers.
#[derive(Debug, Clone, Copy)]
pub struct ResolverSettings {
    /// How long it waits for the read model before answering 202 with where to look.
    pub deadline: Duration,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
        }
    }
}

/// Invites a customer and answers with them as the read model shows them; 409 when the email is
/// taken; 202 with the customer's location when the read model is not there by the deadline.
pub async fn post_customer(
    ctx: Context,
    State(settings): State<ResolverSettings>,
    Payload(request): Payload<InviteCustomer>,
) -> Result<Customer, HandledError> {
    let email = normalize(&request.email);
    let conversation = ctx.dispatch(INVITE_CUSTOMER, request).await?;
    let awaited = [CUSTOMER_PROJECTED.name(), INVITATION_REJECTED.name()];
    let settled = match ctx.wait_for_event(&conversation, &awaited, settings.deadline).await {
        Ok(settled) => settled,
        Err(late) if late.status == 504 => return Err(HandledError::accepted(format!("/api/v1/customers/{email}"))),
        Err(error) => return Err(error),
    };
    if settled.event_name.as_deref() == Some(INVITATION_REJECTED.name()) {
        let Message::Custom { payload } = &settled.message else {
            return Err(HandledError::internal("a refusal came without its payload"));
        };
        let rejected: InvitationRejected = payload.clone().into_typed().map_err(|e| {
            tracing::error!(error = %e, "an invitationRejected event does not fit its type");
            HandledError::generic_internal()
        })?;
        return Err(HandledError::conflict(rejected.reason).with_data(serde_json::json!({ "email": rejected.email })));
    }
    ctx.call(GET_CUSTOMER).params(CustomerKey { email }).invoke(()).await
}
