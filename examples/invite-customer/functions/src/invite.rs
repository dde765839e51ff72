//! The `invite-customer` LOW handler: is the email known (lookup)? invite or refuse (operate);
//! record the email as taken (write).

use purest_core::HandledError;
use purest_cqrs::{Decision, Event, LowContext, LowHandler, Meta};
use purest_eventstore::Expected;

use crate::datastore::CustomerRegistry;
use crate::messages::{
    CUSTOMER_INVITED, CustomerInvited, INVITATION_REJECTED, INVITE_CUSTOMER, InvitationRejected, InviteCustomer, customer_stream, normalize,
};

/// Invites a customer unless their email is taken.
pub struct InviteCustomerHandler;

/// What the decision needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// The customer that has the email already, if any.
    pub customer_id: Option<String>,
}

impl<D: CustomerRegistry> LowHandler<D> for InviteCustomerHandler {
    type Input = InviteCustomer;
    type Data = Known;

    fn meta(&self) -> Meta<InviteCustomer> {
        Meta::on_command("invite-customer", INVITE_CUSTOMER)
            .description("invites a customer by email, once per email")
            .emits(CUSTOMER_INVITED)
            .emits(INVITATION_REJECTED)
    }

    async fn lookup(&self, _: &LowContext, db: &D, command: &InviteCustomer) -> Result<Known, HandledError> {
        let customer_id = db.customer_with_email(&normalize(&command.email)).await?;
        Ok(Known { customer_id })
    }

    fn operate(&self, ctx: &LowContext, command: &InviteCustomer, known: Known) -> Result<Decision, HandledError> {
        let email = normalize(&command.email);
        if known.customer_id.is_some() {
            let rejected = InvitationRejected {
                reason: format!("{email} is invited already"),
                email,
            };
            // A refusal of its own stream: the customer's stream holds only what they did.
            return Ok(
                Decision::append(format!("invitation-{}", ctx.message_id()), Expected::NoStream).event(INVITATION_REJECTED, rejected)
            );
        }
        let invited = CustomerInvited {
            customer_id: ctx.message_id().to_string(),
            name: command.name.trim().to_owned(),
            invited_at: ctx.now(),
            email: email.clone(),
        };
        // Expecting no stream: of two invitations of one email decided at once, the second
        // finds the stream taken, and the executor decides it again (a refusal, then).
        Ok(Decision::append(customer_stream(&email), Expected::NoStream).event(CUSTOMER_INVITED, invited))
    }

    async fn write(&self, db: &D, unit: &mut D::Unit, event: &Event) -> Result<(), HandledError> {
        if let Some(invited) = event.decode(CUSTOMER_INVITED)? {
            db.register_customer(unit, &invited.customer_id, &invited.email).await?;
        }
        Ok(())
    }

    async fn reset(&self, db: &D, unit: &mut D::Unit) -> Result<(), HandledError> {
        db.clear_registry(unit).await
    }
}
