//! The example's `--serve` mode over HTTP, as a newcomer uses it with curl: in one process, and
//! with the gateway in a process of its own reaching the services over NATS.

mod common;

use std::time::{Duration, Instant};

use common::{API_KEY, serve};
use purest_bridge_tests::nats_server::OwnServer;
use serde_json::{Value, json};

async fn register_and_fetch(base: &str, email: &str) {
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/api/v1/users"))
        .json(&json!({"name": "Ada Lovelace", "email": email}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], email);
    let id = user["id"].as_str().unwrap();

    let anonymous = http.get(format!("{base}/api/v1/users/{id}")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let fetched: Value = http
        .get(format!("{base}/api/v1/users/{id}"))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, user);

    let again = http
        .post(format!("{base}/api/v1/users"))
        .json(&json!({"name": "Ada", "email": email}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
}

/// Waits until `check` passes or 10 s have gone by.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn serve_answers_http_and_sends_the_welcome_mail() {
    let served = serve(&[("PUREST_HTTP", "127.0.0.1:0")]);
    let base = served.http_base();
    register_and_fetch(&base, "ada@example.com").await;
    let spec: Value = reqwest::get(format!("{base}/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["paths"]["/api/v1/users"]["post"]["operationId"], "user_v1_registerNewUser");
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), 200);
    served.wait_for_log("welcome mail sent");
    let stdout = served.stop();
    assert!(stdout.contains("--- welcome mail ---\nTo: ada@example.com"), "{stdout}");
}

/// The gateway in its own process (`PUREST_SERVICES=none`), the services in another, over NATS:
/// the gateway knows the routes from the compiled-in service definitions and reaches the
/// commands over the bridge.
#[tokio::test]
async fn a_gateway_in_its_own_process_reaches_the_services_over_nats() {
    let Some(nats) = OwnServer::start() else { return };
    let url = nats.url();
    let services = serve(&[("PUREST_BRIDGE", &url), ("PUREST_SERVICES", "user,email"), ("PUREST_HTTP", "off")]);
    services.wait_for_log("service email/1 started");
    let gateway = serve(&[("PUREST_BRIDGE", &url), ("PUREST_SERVICES", "none"), ("PUREST_HTTP", "127.0.0.1:0")]);
    let base = gateway.http_base();
    let ready = eventually(|| std::net::TcpStream::connect(base.trim_start_matches("http://")).is_ok()).await;
    assert!(ready);
    register_and_fetch(&base, "grace@example.com").await;
    services.wait_for_log("welcome mail sent");
    let gateway_out = gateway.stop();
    assert!(!gateway_out.contains("welcome mail"), "the gateway runs no service: {gateway_out}");
    let services_out = services.stop();
    assert!(
        services_out.contains("--- welcome mail ---\nTo: grace@example.com"),
        "{services_out}"
    );
}
