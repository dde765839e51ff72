//! The functions never change when the deployment does: one HTTP scenario (invitations, a
//! duplicate, bad input, eight concurrent invitations of one email, reads) run on
//! (a) one process in memory, (b) one process on NATS with the PostgreSQL event store and outbox,
//! and (c) the handler, the projector and the API in three processes — and the answers compare
//! equal. Then (b)'s tables are dropped and rebuilt from the event store to the same rows.
//! NATS is a server of the test's own; PostgreSQL the machine's (a schema per run).

use std::process::Command as Process;
use std::time::Duration;

use invite_customer::PgCustomers;
use purest::eventstore::sqlx;
use purest_bridge_tests::nats_server::OwnServer;
use purest_bridge_tests::process::Served;
use serde_json::{Value, json};

fn database_url() -> String {
    std::env::var("PUREST_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema's tables, or `None` (the test skips) when PostgreSQL is not there and
/// `PUREST_REQUIRE_BROKERS` is not 1.
async fn fresh_schema(name: &str) -> Option<(String, PgCustomers)> {
    let schema = format!("invite_{name}_{}", &purest::Id::random().to_string()[..12]);
    match PgCustomers::connect(&database_url(), &schema).await {
        Ok(db) => Some((schema, db)),
        Err(error) if std::env::var("PUREST_REQUIRE_BROKERS").as_deref() != Ok("1") => {
            eprintln!("skipping: PostgreSQL at {} is not usable: {error}", database_url());
            None
        }
        Err(error) => panic!("PostgreSQL at {} is not usable: {error}", database_url()),
    }
}

async fn drop_schema(db: &PgCustomers, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(db.store().pool())
        .await
        .unwrap();
}

/// `invite-customer serve` with these variables, logging at `info`.
fn serve(env: &[(&str, &str)]) -> Served {
    let mut command = Process::new(env!("CARGO_BIN_EXE_invite-customer"));
    command
        .arg("serve")
        .env("RUST_LOG", "info")
        .env_remove("PUREST_BRIDGE")
        .env_remove("PUREST_SERVICES")
        .env_remove("INVITE_DATABASE")
        .env_remove("INVITE_SCHEMA");
    for (key, value) in env {
        command.env(key, value);
    }
    Served::spawn(command)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

async fn post(http: &reqwest::Client, base: &str, body: Value) -> (u16, Value) {
    let response = http.post(format!("{base}/api/v1/customers")).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or_default())
}

async fn get(http: &reqwest::Client, base: &str, email: &str) -> (u16, Value) {
    let response = http.get(format!("{base}/api/v1/customers/{email}")).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or_default())
}

/// A customer without what differs from run to run (its id and time).
fn stable(mut customer: Value) -> Value {
    if let Some(fields) = customer.as_object_mut() {
        fields.remove("id");
        fields.remove("invitedAt");
    }
    customer
}

/// One line per request: what came back, without ids and times.
async fn scenario(base: &str) -> Vec<String> {
    let http = http();
    let mut log = Vec::new();
    for name in ["Ann", "Bob", "Cy", "Dee", "Eve"] {
        let (status, body) = post(&http, base, json!({"email": format!("{name}@Example.com"), "name": name})).await;
        log.push(format!("invite {name}: {status} {}", stable(body)));
    }
    let (status, body) = post(&http, base, json!({"email": "ANN@example.com", "name": "Ann again"})).await;
    log.push(format!("duplicate: {status} {}", body["detail"]));
    let (status, body) = post(&http, base, json!({"email": "nope", "name": ""})).await;
    let paths: Vec<&Value> = body["violations"]
        .as_array()
        .map(|v| v.iter().map(|v| &v["path"]).collect())
        .unwrap_or_default();
    log.push(format!("invalid: {status} {paths:?}"));

    // Eight invitations of one email at once: exactly one wins, the others are told why.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (http, base) = (http.clone(), base.to_owned());
            tokio::spawn(async move { post(&http, &base, json!({"email": "race@example.com", "name": format!("Racer {i}")})).await })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut details = std::collections::BTreeSet::new();
    for racer in racers {
        let (status, body) = racer.await.unwrap();
        statuses.push(status);
        if status == 409 {
            details.insert(body["detail"].to_string());
        }
    }
    statuses.sort();
    log.push(format!("race: {statuses:?} {details:?}"));

    for email in [
        "ann@example.com",
        "bob@example.com",
        "cy@example.com",
        "dee@example.com",
        "eve@example.com",
    ] {
        let (status, body) = get(&http, base, email).await;
        log.push(format!("get {email}: {status} {}", stable(body)));
    }
    let (status, body) = get(&http, base, "race@example.com").await;
    log.push(format!("get race: {status} {}", body["email"]));
    let (status, _) = get(&http, base, "nobody@example.com").await;
    log.push(format!("get unknown: {status}"));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_set_of_functions_in_memory_on_nats_with_postgres_and_as_three_processes() {
    let Some(nats) = OwnServer::start() else { return };
    let Some((schema_b, db_b)) = fresh_schema("b").await else { return };
    let Some((schema_c, db_c)) = fresh_schema("c").await else { return };
    let url = database_url();

    // (a) one process, in memory.
    let monolith = serve(&[("PUREST_HTTP", "127.0.0.1:0")]);
    let a = scenario(&monolith.http_base()).await;
    monolith.stop();
    eprintln!("the scenario's answers:\n{}", a.join("\n"));
    assert!(a[..5].iter().all(|line| line.contains(": 200 ")), "{a:#?}");
    assert!(
        a.iter()
            .any(|line| line.starts_with("race: [200, 409, 409, 409, 409, 409, 409, 409]")),
        "{a:#?}"
    );

    // (b) one process on NATS, the PostgreSQL event store and its outbox.
    let one = serve(&[
        ("PUREST_HTTP", "127.0.0.1:0"),
        ("PUREST_BRIDGE", &nats.url()),
        ("INVITE_DATABASE", &url),
        ("INVITE_SCHEMA", &schema_b),
    ]);
    let one_base = one.http_base();
    let b = scenario(&one_base).await;
    // `/readyz` reports the bridge, the event store and each projection with its lag.
    let ready: Value = http().get(format!("{one_base}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let checks: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["bridge nats", "event store", "projections"], "{ready}");
    let projections = ready["checks"][2]["projections"].as_array().unwrap();
    assert!(
        projections.len() == 2 && projections.iter().all(|p| p["behind"].is_u64() && p["position"].as_u64() > Some(0)),
        "the outbox relay and the customers projector, each with its lag: {ready}"
    );
    one.stop();
    assert_eq!(a, b, "in memory and on NATS with PostgreSQL, the same answers");

    // (c) the API first, alone: an invitation nobody handles fails at once (503), not at the
    // resolver's deadline.
    let process = |services: &'static str, http: &'static str| {
        serve(&[
            ("PUREST_HTTP", http),
            ("PUREST_SERVICES", services),
            ("PUREST_BRIDGE", &nats.url()),
            ("INVITE_DATABASE", &url),
            ("INVITE_SCHEMA", &schema_c),
        ])
    };
    let api = process("customer-api", "127.0.0.1:0");
    let base = api.http_base();
    let started = std::time::Instant::now();
    let (status, _) = post(&http(), &base, json!({"email": "early@example.com", "name": "Early"})).await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(4), "refused after {:?}", started.elapsed());
    let handler = process("customer", "off");
    handler.wait_for_log("service customer/1 started");
    let projector = process("customer-views", "off");
    projector.wait_for_log("service customer-views/1 started");
    let c = scenario(&base).await;
    for served in [api, handler, projector] {
        served.stop();
    }
    assert_eq!(a, c, "one process per function answers like one process");

    // Rebuild (b)'s tables from its event store, through the write functions.
    let before = db_b.dump().await.unwrap();
    assert_eq!(before.len(), 12, "6 registered emails and 6 customers: {before:#?}");
    db_b.drop_tables().await.unwrap();
    let rebuilt = Process::new(env!("CARGO_BIN_EXE_invite-customer"))
        .arg("rebuild")
        .env("INVITE_DATABASE", &url)
        .env("INVITE_SCHEMA", &schema_b)
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    assert_eq!(db_b.dump().await.unwrap(), before, "the rebuilt tables hold the same rows");

    drop_schema(&db_b, &schema_b).await;
    drop_schema(&db_c, &schema_c).await;
}
