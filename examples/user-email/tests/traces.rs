//! One trace across three processes: an HTTP client's `traceparent` continues through the
//! gateway, the `user` command in another process, its success event and the `email`
//! subscription in a third, over NATS — exported over OTLP (HTTP by two processes, gRPC by the
//! third) to a receiver on loopback, as one trace with each span the child of the one before;
//! and each process's metrics with it.

mod common;

use common::{Served, serve};
use purest_bridge_tests::nats_server::OwnServer;
use purest_bridge_tests::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// `user-email --serve` on `nats`, exporting to `receiver` over gRPC or HTTP, with `settings`.
fn exporting(receiver: &OtlpReceiver, nats: &OwnServer, grpc: bool, settings: &[(&str, &str)]) -> Served {
    let (protocol, endpoint) = match grpc {
        true => ("grpc", receiver.grpc_endpoint()),
        false => ("http/protobuf", receiver.http_endpoint()),
    };
    let url = nats.url();
    let mut env = vec![
        ("PUREST_BRIDGE", url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
    ];
    env.extend_from_slice(settings);
    serve(&env)
}

fn span<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.service == service && span.name == name && span.trace_id == TRACE)
        .unwrap_or_else(|| panic!("no span {name} of {service} in trace {TRACE}: {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_across_gateway_user_and_email_over_nats() {
    let Some(nats) = OwnServer::start() else { return };
    let receiver = OtlpReceiver::start().await;
    let process = |services: &str, http: &str, service_name: &str, grpc: bool| {
        exporting(
            &receiver,
            &nats,
            grpc,
            &[
                ("PUREST_SERVICES", services),
                ("PUREST_HTTP", http),
                ("OTEL_SERVICE_NAME", service_name),
            ],
        )
    };
    let email = process("email", "off", "email", true);
    email.wait_for_log("service email/1 started");
    let user = process("user", "off", "user", false);
    user.wait_for_log("service user/1 started");
    let gateway = process("none", "127.0.0.1:0", "gateway", false);
    let base = gateway.http_base();

    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/users"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .json(&json!({"name": "Ann", "email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answered = response.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(answered.starts_with(&format!("00-{TRACE}-")), "{answered}");
    assert_eq!(response.headers()["x-trace-id"], TRACE);
    email.wait_for_log("welcome mail sent");
    // Stopped, each process exports what it has left.
    for served in [gateway, user, email] {
        served.stop();
    }

    let spans = receiver
        .wait_for("the four spans of the request", |spans| {
            spans.iter().filter(|span| span.trace_id == TRACE).count() >= 4
        })
        .await;
    let http = span(&spans, "gateway", "POST /api/v1/users");
    let send = span(&spans, "gateway", "user/1/registerNewUser send");
    let process = span(&spans, "user", "user/1/registerNewUser process");
    let consume = span(&spans, "email", "newUserRegistered process");
    assert_eq!(http.parent_span_id, CALLER, "the gateway continues the caller's trace");
    assert_eq!(send.parent_span_id, http.span_id);
    assert_eq!(process.parent_span_id, send.span_id, "the user process continues it over NATS");
    assert_eq!(consume.parent_span_id, process.span_id, "the success event's subscriber too");
    assert_eq!((http.kind, send.kind, process.kind, consume.kind), (2, 3, 2, 5));
    assert!(
        answered.contains(&http.span_id),
        "the response names the gateway's span: {answered}"
    );
    let attempt = consume.attributes.iter().find(|(key, _)| key == "messaging.delivery.attempt");
    assert_eq!(attempt.map(|(_, value)| value.as_str()), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_pushes_its_metrics_over_otlp() {
    let Some(nats) = OwnServer::start() else { return };
    let receiver = OtlpReceiver::start().await;
    let process = |services: &str, http: &str, grpc: bool| {
        let settings = [
            ("PUREST_SERVICES", services),
            ("PUREST_HTTP", http),
            ("OTEL_SERVICE_NAME", services),
        ];
        exporting(
            &receiver,
            &nats,
            grpc,
            &[&settings[..], &[("OTEL_TRACES_EXPORTER", "none")]].concat(),
        )
    };
    let email = process("email", "off", true);
    email.wait_for_log("service email/1 started");
    let user = process("user", "127.0.0.1:0", false);
    let base = user.http_base();
    let http = reqwest::Client::new();
    for (name, expected) in [("ann@example.com", 200), ("bob@example.com", 200), ("ann@example.com", 409)] {
        let response = http
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": "Someone", "email": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{name}");
    }
    email.wait_for_log("welcome mail sent");
    email.wait_for_log("welcome mail sent");
    // Stopped, each process pushes what it has.
    user.stop();
    email.stop();
    let count = |service: &str, handler: &str, outcome: &str| {
        receiver
            .points()
            .iter()
            .filter(|p| p.service == service && p.metric == "messaging.process.duration")
            .filter(|p| p.has("purest.handler", handler) && p.has("purest.outcome", outcome))
            .map(|p| p.value)
            .fold(0.0, f64::max)
    };
    assert_eq!(count("user", "user/1/registerNewUser", "200"), 2.0, "{:#?}", receiver.points());
    assert_eq!(count("user", "user/1/registerNewUser", "409"), 1.0);
    let welcomed = receiver
        .points()
        .iter()
        .any(|p| p.service == "email" && p.metric == "messaging.process.duration" && p.has("purest.outcome", "ack") && p.value == 2.0);
    assert!(
        welcomed,
        "the email process pushed its two deliveries over gRPC: {:#?}",
        receiver.points()
    );
    assert!(receiver.spans().is_empty(), "OTEL_TRACES_EXPORTER=none exports no spans");
}

/// `[telemetry]` in `purest.toml` asks for Prometheus on a listener of its own: `/metrics` is
/// served there (not on the gateway) and counts the request.
#[test]
fn prometheus_scrapes_a_listener_of_its_own_configured_in_purest_toml() {
    let config = std::env::temp_dir().join(format!("purest-metrics-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[telemetry]\nmetrics_exporter = \"prometheus\"\nprometheus_host = \"127.0.0.1\"\nprometheus_port = 0\nservice_name = \"configured\"\n",
    )
    .unwrap();
    let app = serve(&[("PUREST_CONFIG", config.to_str().unwrap()), ("PUREST_HTTP", "127.0.0.1:0")]);
    let base = app.http_base();
    let line = app.wait_for_log("Prometheus metrics on http://");
    let metrics = line
        .rsplit("metrics on ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (registered, on_gateway, text) = runtime.block_on(async {
        let http = reqwest::Client::new();
        let registered = http
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": "Ann", "email": "ann@example.com"}))
            .send()
            .await
            .unwrap()
            .status();
        let on_gateway = http.get(format!("{base}/metrics")).send().await.unwrap().status();
        let text = http.get(&metrics).send().await.unwrap().text().await.unwrap();
        (registered, on_gateway, text)
    });
    app.stop();
    std::fs::remove_file(&config).unwrap();
    assert_eq!(registered.as_u16(), 200);
    assert_eq!(on_gateway.as_u16(), 404, "without a token, /metrics is not on the gateway");
    let count = text
        .lines()
        .find(|line| {
            line.starts_with("messaging_process_duration_seconds_count{")
                && line.contains("purest_handler=\"user/1/registerNewUser\"")
                && line.contains("purest_outcome=\"200\"")
        })
        .unwrap_or_else(|| panic!("no count of registrations in:\n{text}"));
    assert!(count.ends_with(" 1"), "{count}");
    assert!(text.contains("service_name=\"configured\""), "{text}");
}
