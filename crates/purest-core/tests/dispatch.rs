//! Dispatching a command and waiting for the first correlated event of a list, on the in-memory
//! bridge: an event that comes before its waiter is kept, a command nobody serves fails the
//! waiter with 503, a conversation without the event ends in 504, an undeclared event is refused.

use std::sync::Arc;
use std::time::Duration;

use purest_core::prelude::*;
use tokio::sync::Notify;

#[derive(Clone, Default)]
struct Emitted(Arc<Notify>);

/// Invites `email` unless it is the taken one; says when it has emitted.
async fn invite(ctx: Context, State(emitted): State<Emitted>, Payload(email): Payload<String>) -> Result<(), HandledError> {
    if email == "taken@example.com" {
        ctx.emit("invitationRejected", email).await?;
    } else {
        ctx.emit("customerInvited", email).await?;
    }
    emitted.0.notify_one();
    Ok(())
}

/// Invites through the conversation API from inside a handler, answering with the event's name.
async fn invite_and_tell(ctx: Context, Payload(email): Payload<String>) -> Result<String, HandledError> {
    let conversation = ctx.dispatch("customers/1/invite", email).await?;
    let event = ctx
        .wait_for_event(&conversation, &["customerInvited", "invitationRejected"], Duration::from_secs(10))
        .await?;
    Ok(event.event_name.as_deref().unwrap_or_default().to_owned())
}

async fn app(emitted: &Emitted) -> purest_core::RunningApp {
    let customers = Service::new("customers", "1")
        .state(emitted.clone())
        .command(Command::new("invite", invite))
        .command(Command::new("inviteAndTell", invite_and_tell));
    Host::new()
        .service(customers)
        .awaits("customerInvited")
        .awaits("invitationRejected")
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_comes_before_its_waiter_is_kept_for_it() {
    let emitted = Emitted::default();
    let app = app(&emitted).await;
    let client = app.client();
    let conversation = client.dispatch("customers/1/invite", "ann@example.com").await.unwrap();
    emitted.0.notified().await;
    let event = client
        .wait_for_event(&conversation, &["customerInvited", "invitationRejected"], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(event.event_name.as_deref(), Some("customerInvited"));
    assert_eq!(event.correlation_id.as_ref(), Some(&conversation));

    let rejected = client.dispatch("customers/1/invite", "taken@example.com").await.unwrap();
    let event = client
        .wait_for_event(&rejected, &["customerInvited", "invitationRejected"], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        event.event_name.as_deref(),
        Some("invitationRejected"),
        "the first of the list that comes"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_dispatches_and_waits_too() {
    let emitted = Emitted::default();
    let app = app(&emitted).await;
    let told: String = app.client().invoke("customers/1/inviteAndTell", "bob@example.com").await.unwrap();
    assert_eq!(told, "customerInvited");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_the_wait_with_a_clear_status() {
    let emitted = Emitted::default();
    let app = app(&emitted).await;
    let client = app.client();

    let nobody = client.dispatch("billing/1/charge", 10u64).await.unwrap();
    let refused = client
        .wait_for_event(&nobody, &["customerInvited"], Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(refused.status, 503, "{refused}");

    let silent = client.dispatch("customers/1/invite", "carl@example.com").await.unwrap();
    emitted.0.notified().await;
    let timed_out = client
        .wait_for_event(&silent, &["invitationRejected"], Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(timed_out.status, 504, "{timed_out}");
    assert!(timed_out.message.contains("invitationRejected"), "{timed_out}");

    let undeclared = client
        .wait_for_event(&silent, &["customerDeleted"], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(undeclared.message.contains("Host::awaits(\"customerDeleted\")"), "{undeclared}");
    app.shutdown().await;
}
