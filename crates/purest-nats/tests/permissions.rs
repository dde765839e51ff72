//! The trust boundary on NATS: a nats-server of the test's own, configured with
//! `examples/nats-permissions.conf` (one user per service, each allowed only its own subjects),
//! and purest services connecting as those users. Allowed traffic works; a publish or
//! subscription the server refuses fails at once with an error naming the permission, not at
//! the deadline.

use std::sync::Arc;
use std::time::Duration;

use purest_bridge_tests::nats_server::OwnServer;
use purest_core::prelude::*;
use purest_core::{Address, Bridge, Client};
use purest_nats::{NatsBridge, NatsConfig};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The configuration the test runs and the crate documents.
const PERMISSIONS: &str = include_str!("../examples/nats-permissions.conf");

/// Long: an answer that waited for it would be a 504, so a 403 shows it did not.
const DEADLINE: Duration = Duration::from_secs(60);

async fn connect_as(server: &OwnServer, user: &str) -> Arc<dyn Bridge> {
    let mut config = NatsConfig::from_url(&server.url()).expect("a nats:// URL");
    config.user = Some(user.into());
    config.password = Some(format!("{user}-secret"));
    Arc::new(NatsBridge::connect(config).await.expect("connect to NATS")) as Arc<dyn Bridge>
}

async fn get_user(Payload(id): Payload<String>) -> Result<Value, HandledError> {
    Ok(json!({ "id": id, "name": "Ada" }))
}

async fn sign_up(Payload(name): Payload<String>) -> Result<Value, HandledError> {
    Ok(json!({ "name": name }))
}

async fn monthly() -> Result<u32, HandledError> {
    Ok(12)
}

fn user_service() -> Service {
    Service::new("user", "1")
        .command(Command::new("getUser", get_user))
        .command(Command::new("signUp", sign_up).success_event("userSignedUp"))
}

#[tokio::test]
async fn each_service_reaches_only_what_its_nats_user_may() {
    let Some(server) = OwnServer::start_with_config(PERMISSIONS) else {
        return;
    };

    let user = Host::new()
        .shared_bridge(connect_as(&server, "user").await)
        .service(user_service())
        .start()
        .await
        .expect("user starts");
    let (welcomed, mut welcomes) = mpsc::channel::<Value>(4);
    let welcome = move |Payload(user): Payload<Value>| {
        let welcomed = welcomed.clone();
        async move {
            let _ = welcomed.send(user).await;
            Ok::<_, HandledError>(())
        }
    };
    let email = Host::new()
        .shared_bridge(connect_as(&server, "email").await)
        .service(Service::new("email", "1").subscription(Subscription::new("sendWelcomeMail", welcome).on_event("userSignedUp").durable()))
        .start()
        .await
        .expect("email starts with its durable subscription");
    let reports = Host::new()
        .shared_bridge(connect_as(&server, "reports").await)
        .service(Service::new("reports", "1").command(Command::new("monthly", monthly)))
        .start()
        .await
        .expect("reports starts");

    // (a) The gateway may call user's commands, and signUp's event reaches email.
    let gateway = Client::new(connect_as(&server, "gateway").await, Address::named("gateway", "1", "web")).with_timeout(DEADLINE);
    let found: Value = gateway
        .call("user/1/getUser")
        .invoke("u-1".to_owned())
        .await
        .expect("gateway may call getUser");
    assert_eq!(found, json!({ "id": "u-1", "name": "Ada" }));
    let signed_up: Value = gateway
        .call("user/1/signUp")
        .invoke("Grace".to_owned())
        .await
        .expect("gateway may call signUp");
    assert_eq!(signed_up, json!({ "name": "Grace" }));
    let event = tokio::time::timeout(Duration::from_secs(30), welcomes.recv())
        .await
        .expect("the event reaches email");
    assert_eq!(event, Some(json!({ "name": "Grace" })));

    // (b) reports may not call user's commands: a 403 naming the refused subject and what to
    // grant, not a 504 at the deadline. Claiming to be the gateway changes nothing: the NATS
    // user decides.
    for sender in [Address::named("reports", "1", "monthly"), Address::named("gateway", "1", "web")] {
        let shown = sender.to_string();
        let intruder = Client::new(reports.bridge().clone(), sender).with_timeout(DEADLINE);
        let refused = intruder
            .call("user/1/getUser")
            .invoke::<Value>("u-1".to_owned())
            .await
            .expect_err("reports may not call getUser");
        assert_eq!(refused.status, 403, "as {shown}: {refused:?}");
        for part in [
            "NATS refused to publish to purista.command.",
            ".user.1.get_user: permissions violation",
            "grant NATS user \"reports\" publish permission on",
            "to invoke user/1/getUser",
        ] {
            assert!(refused.message.contains(part), "as {shown}, {part:?} missing: {}", refused.message);
        }
    }
    // Nor forge user's event.
    let forged = Client::new(reports.bridge().clone(), Address::named("reports", "1", "monthly"))
        .with_timeout(DEADLINE)
        .emit(Name::new("userSignedUp"), json!({ "name": "Mallory" }))
        .await
        .expect_err("reports may not emit userSignedUp");
    assert_eq!(forged.status, 403, "{forged:?}");
    assert!(
        forged.message.contains("NATS refused to publish to purista.custom_message.")
            && forged.message.contains(".user_signed_up.")
            && forged.message.contains("to emit events on"),
        "{}",
        forged.message
    );
    // Its own command still works for a caller that may reach it (its own connection here).
    let own = Client::new(reports.bridge().clone(), Address::named("reports", "1", "monthly"));
    let refused = own
        .call("reports/1/monthly")
        .invoke::<u32>(())
        .await
        .expect_err("reports may not call itself either");
    assert_eq!(refused.status, 403, "{refused:?}");

    // (c) A service whose user may not subscribe to its own commands does not start.
    let refused = Host::new()
        .shared_bridge(connect_as(&server, "reports").await)
        .service(user_service())
        .start()
        .await
        .err()
        .expect("user under reports' NATS user must not start")
        .to_string();
    for part in [
        "NATS refused NATS user \"reports\" the subscription to purista.command.*.*.*.*.*.*.*.*.user.1.get_user",
        "permissions violation",
        "grant it subscribe permission on \"purista.command.*.*.*.*.*.*.*.*.user.1.get_user PURISTA_QUEUE_USER_1_GETUSER\"",
    ] {
        assert!(refused.contains(part), "{part:?} missing: {refused}");
    }

    // A refusal leaves the connection usable: the gateway still gets its answers.
    let again: Value = gateway.call("user/1/getUser").invoke("u-2".to_owned()).await.expect("still served");
    assert_eq!(again["id"], "u-2");

    for app in [reports, email, user] {
        app.shutdown().await;
    }
}
