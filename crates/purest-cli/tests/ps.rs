//! `purest ps` against the example's services: two copies of the app on a NATS server of the
//! test's own, listed by the binary as a user runs it.

use std::process::{Command as Process, Output};

use purest::prelude::*;
use purest_bridge_tests::nats_server::OwnServer;
use serde_json::Value;
use user_email::{MailLog, email_service, user_service};

fn ps(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_purest"))
        .arg("ps")
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("PUREST_BRIDGE")
        .env_remove("PUREST_CONFIG")
        .output()
        .expect("run purest ps")
}

async fn example_on(url: &str) -> purest::RunningApp {
    App::new()
        .service(user_service())
        .service(email_service(MailLog::default().sender(0)))
        .configure(|key| (key == "PUREST_BRIDGE").then(|| url.to_owned()))
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// `purest ps --json`, run off the async runtime, as (service/version, instances) pairs.
async fn listed(url: &str) -> Vec<Value> {
    let url = url.to_owned();
    let output = tokio::task::spawn_blocking(move || ps(&["--bridge", &url, "--wait-ms", "3000", "--json"]))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

fn of<'a>(instances: &'a [Value], service: &str) -> Vec<&'a Value> {
    instances.iter().filter(|i| i["service"] == service).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_lists_the_examples_services_and_instances_over_nats() {
    let Some(server) = OwnServer::start() else { return };
    let url = server.url();
    let first = example_on(&url).await;
    let second = example_on(&url).await;

    let instances = listed(&url).await;
    let users = of(&instances, "user");
    assert_eq!(users.len(), 2, "{instances:#?}");
    assert_ne!(users[0]["instanceId"], users[1]["instanceId"]);
    for user in &users {
        assert_eq!((user["version"].as_str(), user["state"].as_str()), (Some("1"), Some("ready")));
        let commands: Vec<&str> = user["commands"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(commands, ["registerNewUser", "getUser"], "{user}");
        assert_eq!(user["commands"][0]["http"], "POST /api/v1/users");
        assert_eq!(user["commands"][0]["event"], "newUserRegistered");
    }
    let emails = of(&instances, "email");
    assert_eq!(emails.len(), 2, "{instances:#?}");
    assert_eq!(emails[0]["subscriptions"][0]["name"], "sendWelcomeMail");
    assert_eq!(emails[0]["subscriptions"][0]["durable"], true);

    // The table a person reads.
    let url_for_table = url.clone();
    let table = tokio::task::spawn_blocking(move || ps(&["--bridge", &url_for_table, "--wait-ms", "3000"]))
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("user/1") && table.contains("2 (2 ready)"), "{table}");
    assert!(
        table.contains("command registerNewUser  POST /api/v1/users  → newUserRegistered"),
        "{table}"
    );
    assert!(
        table.contains("subscription sendWelcomeMail  on newUserRegistered  (durable)"),
        "{table}"
    );

    // A stopped copy is gone from the list.
    first.shutdown().await;
    let instances = listed(&url).await;
    assert_eq!(
        (of(&instances, "user").len(), of(&instances, "email").len()),
        (1, 1),
        "{instances:#?}"
    );
    second.shutdown().await;
}

#[test]
fn ps_without_a_broker_says_how_to_name_one() {
    let output = ps(&[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--bridge nats://") && stderr.contains("PUREST_BRIDGE"), "{stderr}");
}
