//! The gateway over real HTTP (reqwest) against services on the in-memory bridge: routes,
//! parameters, errors as problems, authentication, guards, limits, health and the OpenAPI
//! document.

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use purest_http::CorsLayer;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_public_command_round_trips_with_trace_headers() {
    let f = Fixture::start().await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let response = f
        .http
        .post(f.url("/api/v1/users"))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({"name": "Ann", "email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-trace-id"], trace);
    let traceparent = response.headers()["traceparent"].to_str().unwrap().to_owned();
    let span = traceparent
        .strip_prefix(&format!("00-{trace}-"))
        .and_then(|rest| rest.strip_suffix("-01"))
        .unwrap_or_else(|| panic!("not a traceparent of {trace}: {traceparent}"));
    assert!(
        span.len() == 16 && span.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) && span != "0000000000000000",
        "{traceparent}"
    );
    let user: User = response.json().await.unwrap();
    assert_eq!((user.id.as_str(), user.email.as_str()), ("u1", "ann@example.com"));

    let again = f
        .http
        .post(f.url("/api/v1/users"))
        .json(&json!({"name": "Ann", "email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    let body = problem(again, StatusCode::CONFLICT).await;
    assert_eq!(body["detail"], "email already registered");
    assert_eq!(
        body["data"],
        json!({"field": "email"}),
        "the handler's error data reaches the caller: {body}"
    );
    f.stop().await;
}

#[tokio::test]
async fn path_and_query_become_typed_parameters() {
    let f = Fixture::start().await;
    f.http
        .post(f.url("/api/v1/users"))
        .json(&json!({"name": "Bo", "email": "bo@example.com"}))
        .send()
        .await
        .unwrap();
    let response = f.get_as_alice("/api/v1/users/u1?verbose=true&limit=3").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"user": {"id": "u1", "name": "Bo", "email": "bo@example.com"}, "verbose": true, "limit": 3})
    );

    let missing = f.get_as_alice("/api/v1/users/u9").await;
    problem(missing, StatusCode::NOT_FOUND).await;

    let bad = f.get_as_alice("/api/v1/users/u1?limit=eleven").await;
    let body = problem(bad, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["violations"][0]["path"], "/limit", "{body}");
    let out_of_range = f.get_as_alice("/api/v1/users/u1?limit=11").await;
    problem(out_of_range, StatusCode::BAD_REQUEST).await;
    f.stop().await;
}

/// A body sent in parts within the gateway's deadline is read whole; one that stops arriving gets
/// 408 once the deadline (300 ms in the fixture) has passed, instead of holding the request open.
#[tokio::test]
async fn a_body_is_awaited_within_the_deadline_and_no_longer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = Fixture::start().await;
    let address = f.base.trim_start_matches("http://").to_owned();
    let body = br#"{"name": "Ann", "email": "ann@example.com"}"#;
    let head = format!(
        "POST /api/v1/users HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let status_of = |response: &[u8]| String::from_utf8_lossy(response).lines().next().unwrap_or_default().to_owned();

    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    slow.write_all(&body[10..]).await.unwrap();
    let mut response = Vec::new();
    slow.read_to_end(&mut response).await.unwrap();
    assert!(status_of(&response).contains("200"), "{}", String::from_utf8_lossy(&response));

    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut response))
        .await
        .expect("the gateway answers a stalled body by itself")
        .unwrap();
    assert!(status_of(&response).contains("408"), "{}", String::from_utf8_lossy(&response));
    assert!(String::from_utf8_lossy(&response).contains("did not arrive within"));
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_it() {
    let f = Fixture::start().await;
    let users = f.url("/api/v1/users");

    let malformed = f
        .http
        .post(&users)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let body = problem(malformed, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("not valid JSON"), "{body}");

    let text = f
        .http
        .post(&users)
        .header("content-type", "text/plain")
        .body("name=ann")
        .send()
        .await
        .unwrap();
    problem(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let oversized = f
        .http
        .post(&users)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    problem(oversized, StatusCode::PAYLOAD_TOO_LARGE).await;

    let invalid = f
        .http
        .post(&users)
        .json(&json!({"name": "", "email": "nope"}))
        .send()
        .await
        .unwrap();
    let body = problem(invalid, StatusCode::BAD_REQUEST).await;
    let paths: Vec<&str> = body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/name") && paths.contains(&"/email"), "{body}");

    let empty = f.http.post(&users).header("content-type", "application/json").send().await.unwrap();
    problem(empty, StatusCode::BAD_REQUEST).await;

    let unknown = f.http.get(f.url("/api/v1/nothing-here")).send().await.unwrap();
    let body = problem(unknown, StatusCode::NOT_FOUND).await;
    assert!(body["detail"].as_str().unwrap().contains("/api/v1/nothing-here"));

    let wrong_method = f.http.put(&users).json(&json!({})).send().await.unwrap();
    assert!(wrong_method.headers()["allow"].to_str().unwrap().contains("POST"));
    problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    f.stop().await;
}

#[tokio::test]
async fn credentials_are_checked_and_secrets_never_echoed() {
    let f = Fixture::start().await;
    let whoami = f.url("/api/v1/whoami");

    let missing = f.http.get(&whoami).send().await.unwrap();
    assert!(missing.headers()["www-authenticate"].to_str().unwrap().contains("Bearer"));
    problem(missing, StatusCode::UNAUTHORIZED).await;

    let expired = token(json!({"sub": "alice", "iss": "purest-tests", "aud": "purest", "exp": now() - 3600}));
    let wrong_key = encode(
        &Header::default(),
        &json!({"sub": "alice", "iss": "purest-tests", "aud": "purest", "exp": now() + 600}),
        &EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long"),
    )
    .unwrap();
    let unsigned = {
        let part = |v: Value| b64(v.to_string().as_bytes());
        format!(
            "{}.{}.",
            part(json!({"alg": "none", "typ": "JWT"})),
            part(json!({"sub": "alice", "iss": "purest-tests", "aud": "purest", "exp": now() + 600}))
        )
    };
    for bad in [expired, wrong_key, unsigned.clone(), "garbage".to_owned()] {
        let response = f.http.get(&whoami).bearer_auth(&bad).send().await.unwrap();
        assert!(response.headers().contains_key("www-authenticate"));
        let body = problem(response, StatusCode::UNAUTHORIZED).await;
        assert!(!body.to_string().contains(&bad) && !body.to_string().contains(SECRET), "{body}");
    }
    let wrong_api_key = f.http.get(&whoami).header("x-api-key", "guess").send().await.unwrap();
    problem(wrong_api_key, StatusCode::UNAUTHORIZED).await;

    let ok: Who = f
        .http
        .get(&whoami)
        .bearer_auth(valid_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((ok.principal.as_deref(), ok.tenant.as_deref()), (Some("alice"), Some("t1")));
    let by_key: Who = f
        .http
        .get(&whoami)
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (by_key.principal.as_deref(), by_key.tenant.as_deref()),
        (Some("key-owner"), Some("acme"))
    );
    // The event emitted downstream carried the caller too.
    let seen = f.seen.clone();
    for _ in 0..100 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen: Vec<Option<String>> = seen.lock().unwrap().iter().map(|w| w.principal.clone()).collect();
    assert_eq!(seen, [Some("alice".to_owned()), Some("key-owner".to_owned())]);
    f.stop().await;
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn a_refusing_guard_is_a_403_and_unit_results_are_204() {
    let f = Fixture::start().await;
    let user = f.url("/api/v1/users/u1");
    let refused = f.http.delete(&user).bearer_auth(valid_token()).send().await.unwrap();
    problem(refused, StatusCode::FORBIDDEN).await;
    let admin = token(json!({"sub": "admin", "iss": "purest-tests", "aud": "purest", "exp": now() + 600}));
    let deleted = f.http.delete(&user).bearer_auth(admin).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    f.stop().await;
}

#[tokio::test]
async fn deadlines_and_internal_errors_stay_generic() {
    let f = Fixture::start().await;
    let slow = f.http.get(f.url("/api/v1/slow")).send().await.unwrap();
    problem(slow, StatusCode::GATEWAY_TIMEOUT).await;
    let failed = f.http.get(f.url("/api/v1/fail")).send().await.unwrap();
    let body = problem(failed, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert!(!body.to_string().contains("hunter2"), "{body}");
    assert!(body["traceId"].is_string());
    f.stop().await;
}

/// A resolver's "not ready yet" is a 202 with the result's location, in the header and the
/// body, described as such in the OpenAPI document.
#[tokio::test]
async fn an_accepted_answer_is_a_202_with_its_location() {
    let f = Fixture::start().await;
    let response = f.http.post(f.url("/api/v1/later")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], "/api/v1/users/u9");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["status"].as_u64(), body["location"].as_str()),
        (Some(202), Some("/api/v1/users/u9"))
    );
    let spec: Value = f.http.get(f.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let accepted = &spec["paths"]["/api/v1/later"]["post"]["responses"]["202"];
    assert!(accepted["headers"]["Location"].is_object(), "{accepted}");
    assert_eq!(
        accepted["content"]["application/json"]["schema"]["required"],
        json!(["status", "detail", "location"])
    );
    f.stop().await;
}

#[tokio::test]
async fn health_readiness_compression_and_cors() {
    let f = Fixture::start_with(|g| g.cors(CorsLayer::permissive())).await;
    assert_eq!(f.http.get(f.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let ready: Value = f.http.get(f.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");

    let spec = f
        .http
        .get(f.url("/api/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(spec.headers()["content-encoding"], "gzip");

    let preflight = f
        .http
        .request(reqwest::Method::OPTIONS, f.url("/api/v1/users"))
        .header("origin", "https://example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.headers().contains_key("access-control-allow-origin"));
    f.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_routes_schemas_errors_and_security() {
    let f = Fixture::start().await;
    let doc: Value = f.http.get(f.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let register = &doc["paths"]["/api/v1/users"]["post"];
    assert_eq!(register["operationId"], "user_v1_registerNewUser");
    assert_eq!(register["summary"], "Registers a user");
    assert_eq!(register["tags"], json!(["user"]));
    assert_eq!(register["security"], json!([]), "public");
    assert!(register["requestBody"]["content"]["application/json"]["schema"]["properties"]["email"].is_object());
    for status in ["400", "409", "413", "415", "500", "503", "504", "default"] {
        assert_eq!(
            register["responses"][status]["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
            "{status}"
        );
    }
    let get = &doc["paths"]["/api/v1/users/{id}"]["get"];
    let params = get["parameters"].as_array().unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "id" && p["in"] == "path" && p["required"] == true)
    );
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "limit" && p["in"] == "query" && p["required"] == false)
    );
    assert!(get["responses"]["401"].is_object() && get["responses"]["404"].is_object());
    assert!(get.get("security").is_none(), "protected operations use the document's security");
    assert!(doc["components"]["securitySchemes"]["bearerAuth"].is_object());
    assert!(doc["components"]["securitySchemes"]["apiKey"].is_object());
    assert_eq!(
        doc["paths"]["/api/v1/users/{id}"]["delete"]["responses"]["204"]["description"],
        "done"
    );
    assert!(
        doc["paths"].get("/api/v1/echoIdentity").is_none(),
        "commands without .http are not routes"
    );
    f.stop().await;
}

/// A dependency whose readiness the test sets.
struct Switch(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl purest_core::readiness::ReadinessCheck for Switch {
    fn name(&self) -> String {
        "event store".into()
    }
    fn check(&self) -> futures::future::BoxFuture<'_, purest_core::readiness::Readiness> {
        use purest_core::readiness::Readiness;
        let up = self.0.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if up {
                Readiness::ready().with("behind", 0)
            } else {
                Readiness::not_ready("the database does not answer").with("behind", 7)
            }
        })
    }
}

#[tokio::test]
async fn readyz_reports_every_check_and_metrics_need_the_token() {
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let switch = Switch(up.clone());
    let f = Fixture::start_with(move |g| {
        g.readiness(std::sync::Arc::new(switch))
            .metrics(std::sync::Arc::new(|| "purest_up 1\n".to_owned()), "scrape-secret")
    })
    .await;
    let ready: Value = f.http.get(f.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        ready["checks"],
        json!([{"name": "bridge memory", "ready": true}, {"name": "event store", "ready": true, "behind": 0}])
    );
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    let down = f.http.get(f.url("/readyz")).send().await.unwrap();
    let body = problem(down, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["detail"], "event store: the database does not answer", "{body}");
    assert_eq!(body["data"]["checks"][1]["behind"], 7, "{body}");

    let anonymous = f.http.get(f.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"metrics\"");
    problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let wrong = f.http.get(f.url("/metrics")).bearer_auth("guess").send().await.unwrap();
    problem(wrong, StatusCode::UNAUTHORIZED).await;
    let scraped = f.http.get(f.url("/metrics")).bearer_auth("scrape-secret").send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(scraped.text().await.unwrap(), "purest_up 1\n");
    f.stop().await;
}
