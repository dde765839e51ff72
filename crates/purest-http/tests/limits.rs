//! Rate limits (per client over all routes, per client on one route) answering 429 with
//! `Retry-After`, and CORS rules, both set from configuration as `purest.toml`/env would.

mod common;

use common::*;
use purest_http::config::HttpSettings;
use reqwest::StatusCode;
use serde_json::json;

/// Reads the gateway settings from these variables (as `PUREST_HTTP_*` would set them).
fn read(vars: &[(&str, &str)]) -> Result<Option<HttpSettings>, purest_core::BuildError> {
    HttpSettings::read(&[], &|key| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()))
}

fn settings(vars: &[(&str, &str)]) -> HttpSettings {
    read(vars).unwrap().expect("the gateway is on")
}

/// The error the variables are refused with.
fn refusal(vars: &[(&str, &str)]) -> String {
    read(vars).err().expect("refused").to_string()
}

#[tokio::test]
async fn a_client_over_its_limit_gets_429_with_retry_after_and_probes_are_never_limited() {
    let limited = settings(&[("PUREST_HTTP", "127.0.0.1:0"), ("PUREST_HTTP_RATE_LIMIT", "3/min")]);
    let f = Fixture::start_with(|gateway| limited.apply(gateway)).await;
    for n in 0..3 {
        let response = f.http.get(f.url("/api/openapi.json")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {n} is within the limit");
    }
    let refused = f.http.get(f.url("/api/v1/slow")).send().await.unwrap();
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body = problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(body["detail"].as_str().unwrap().contains("3/min"), "{body}");
    for _ in 0..5 {
        assert_eq!(f.http.get(f.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    }
    f.stop().await;
}

#[tokio::test]
async fn a_route_limit_holds_for_its_route_only_and_forwarded_clients_count_apart() {
    let limited = settings(&[
        ("PUREST_HTTP", "127.0.0.1:0"),
        ("PUREST_HTTP_ROUTE_RATE_LIMITS", "user/1/registerNewUser=2/min"),
        ("PUREST_HTTP_TRUST_FORWARDED", "true"),
    ]);
    let f = Fixture::start_with(|gateway| limited.apply(gateway)).await;
    let register = |client: &'static str, n: u32| {
        f.http
            .post(f.url("/api/v1/users"))
            .header("x-forwarded-for", client)
            .json(&json!({"name": "Ann", "email": format!("ann{n}-{client}@example.com")}))
            .send()
    };
    assert_eq!(register("203.0.113.1", 1).await.unwrap().status(), StatusCode::OK);
    assert_eq!(register("203.0.113.1", 2).await.unwrap().status(), StatusCode::OK);
    assert_eq!(register("203.0.113.1", 3).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        register("203.0.113.2", 4).await.unwrap().status(),
        StatusCode::OK,
        "another client has its own bucket"
    );
    let other_route = f.http.get(f.url("/api/v1/fail")).header("x-forwarded-for", "203.0.113.1").send();
    assert_ne!(other_route.await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    f.stop().await;
}

#[tokio::test]
async fn bad_limits_and_unknown_routes_are_named() {
    let bad_rate = refusal(&[("PUREST_HTTP", "127.0.0.1:0"), ("PUREST_HTTP_RATE_LIMIT", "lots")]);
    assert!(bad_rate.starts_with("PUREST_HTTP_RATE_LIMIT: \"lots\" is not a rate"), "{bad_rate}");
    let bad_entry = refusal(&[("PUREST_HTTP", "127.0.0.1:0"), ("PUREST_HTTP_ROUTE_RATE_LIMITS", "user/1/x")]);
    assert!(bad_entry.contains("has no `=`"), "{bad_entry}");
    let unknown = settings(&[
        ("PUREST_HTTP", "127.0.0.1:0"),
        ("PUREST_HTTP_ROUTE_RATE_LIMITS", "user/1/nothing=1/s"),
    ]);
    let f = Fixture::start().await;
    let error = unknown.apply(purest_http::Gateway::new(&f.app)).router().err().unwrap().to_string();
    assert!(error.contains("user/1/nothing"), "{error}");
    f.stop().await;
}

#[tokio::test]
async fn cors_from_configuration_answers_allowed_origins_only() {
    let cors = settings(&[
        ("PUREST_HTTP", "127.0.0.1:0"),
        ("PUREST_HTTP_CORS_ORIGINS", "https://app.example, https://admin.example"),
        ("PUREST_HTTP_CORS_METHODS", "GET,POST"),
    ]);
    let f = Fixture::start_with(|gateway| cors.apply(gateway)).await;
    let preflight = |origin: &'static str| {
        f.http
            .request(reqwest::Method::OPTIONS, f.url("/api/v1/users"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let methods = allowed.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    assert!(methods.contains("POST") && !methods.contains("DELETE"), "{methods}");
    assert!(
        allowed.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let simple = f
        .http
        .get(f.url("/api/v1/fail"))
        .header("origin", "https://admin.example")
        .send()
        .await
        .unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], "https://admin.example");
    assert!(
        simple.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-trace-id")
    );

    let bad = refusal(&[("PUREST_HTTP", "127.0.0.1:0"), ("PUREST_HTTP_CORS_ORIGINS", "app.example")]);
    assert!(
        bad.starts_with("PUREST_HTTP_CORS_ORIGINS: \"app.example\" is not accepted"),
        "{bad}"
    );
    f.stop().await;
}
