//! Extractors of users' own (`FromInvocation`): what they can read, and that their refusals and
//! values reach callers and handlers. Every test in this binary logs to one global subscriber
//! (tracing caches per-callsite interest process-wide), which records events for the log test.

use std::sync::{Arc, Mutex, OnceLock};

use purest_core::prelude::*;
use purest_core::testing::TestApp;
use purest_core::{FromInvocation, Invocation, Message};
use serde_json::json;

/// Records the message and fields of every event, for asserting what reached the log.
#[derive(Clone, Default)]
struct EventLog(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Line<'a>(&'a mut String);
        impl tracing::field::Visit for Line<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut line = String::new();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
}

fn log() -> &'static EventLog {
    static LOG: OnceLock<EventLog> = OnceLock::new();
    LOG.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let log = EventLog::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(log.clone())).expect("first subscriber");
        log
    })
}

/// The tenant of the message; 403 without one.
struct Tenant(String);

impl FromInvocation<()> for Tenant {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        invocation
            .context()
            .tenant_id()
            .map(|tenant| Tenant(tenant.to_owned()))
            .ok_or_else(|| HandledError::forbidden("a tenant is required; call with a tenant id"))
    }
}

async fn tenant_of(Tenant(tenant): Tenant) -> Result<String, HandledError> {
    Ok(tenant)
}

#[tokio::test]
async fn a_custom_extractors_refusal_reaches_the_caller_and_its_value_the_handler() {
    log();
    let app = TestApp::new()
        .service(Service::new("t", "1").command(Command::new("tenant", tenant_of)))
        .start()
        .await;
    let refused = app.client().invoke::<String>("t/1/tenant", ()).await.unwrap_err();
    assert_eq!(
        (refused.status, refused.message.as_str()),
        (403, "a tenant is required; call with a tenant id")
    );
    let tenant: String = app.client().with_tenant("acme").invoke("t/1/tenant", ()).await.unwrap();
    assert_eq!(tenant, "acme");
    app.shutdown().await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct Order {
    #[garde(range(min = 1))]
    items: u32,
}

/// The payload's `items`, read without taking the payload.
struct PeekItems(Option<u64>);

impl FromInvocation<()> for PeekItems {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        let payload = invocation
            .payload()
            .ok_or_else(|| HandledError::internal("payload already taken"))?;
        let items = match payload.downcast_ref::<Order>() {
            Some(order) => Some(u64::from(order.items)),
            None => payload.as_json().and_then(|json| json["items"].as_u64()),
        };
        Ok(PeekItems(items))
    }
}

/// The principal, the params' `verbose` flag and the correlation id, read from the invocation.
struct Seen {
    principal: Option<String>,
    verbose: Option<bool>,
    has_correlation: bool,
    target: String,
}

impl FromInvocation<()> for Seen {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        let ctx = invocation.context();
        Ok(Seen {
            principal: ctx.principal_id().map(str::to_owned),
            verbose: invocation
                .params()
                .and_then(|p| p.to_value().ok())
                .and_then(|p| p["verbose"].as_bool()),
            has_correlation: ctx.correlation_id().is_some() && ctx.message().message_type == "command",
            target: ctx.address().service_target.to_string(),
        })
    }
}

async fn peek(PeekItems(peeked): PeekItems, seen: Seen, Payload(order): Payload<Order>) -> Result<serde_json::Value, HandledError> {
    Ok(json!({
        "peeked": peeked,
        "items": order.items,
        "principal": seen.principal,
        "verbose": seen.verbose,
        "correlated": seen.has_correlation,
        "target": seen.target,
    }))
}

#[tokio::test]
async fn an_extractor_reads_payload_params_and_context_and_payload_still_gets_the_payload() {
    log();
    let app = TestApp::new()
        .service(Service::new("o", "1").command(Command::new("peek", peek)))
        .start()
        .await;
    let client = app.client().with_principal("p-7");
    // In process: the payload travels typed.
    let typed: serde_json::Value = client
        .call("o/1/peek")
        .params(json!({"verbose": true}))
        .invoke(Order { items: 3 })
        .await
        .unwrap();
    assert_eq!(
        typed,
        json!({"peeked": 3, "items": 3, "principal": "p-7", "verbose": true, "correlated": true, "target": "peek"})
    );
    // As JSON from a wire.
    let wire = json!({"messageType": "command", "id": Id::random(), "timestamp": 1, "correlationId": Id::random(),
        "sender": {"serviceName": "peer", "serviceVersion": "1", "serviceTarget": "x"},
        "receiver": {"serviceName": "o", "serviceVersion": "1", "serviceTarget": "peek"},
        "principalId": "p-8", "payload": {"payload": {"items": 5}, "parameter": {"verbose": false}}});
    let response = app
        .app()
        .invoke_json(wire.to_string().as_bytes(), std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let Message::Success { payload } = response.message else {
        panic!("expected success, got {:?}", response.message)
    };
    assert_eq!(
        payload.to_value().unwrap(),
        json!({"peeked": 5, "items": 5, "principal": "p-8", "verbose": false, "correlated": true, "target": "peek"})
    );
    // The extractor ran, then Payload<Order> validated as usual.
    let invalid = client
        .invoke::<serde_json::Value>("o/1/peek", json!({"items": 0}))
        .await
        .unwrap_err();
    assert_eq!(invalid.status, 400, "{invalid}");
    app.shutdown().await;
}

/// Stands in for a connection pool.
#[derive(Clone)]
struct ExtractorTestPool {
    name: &'static str,
}

struct Db(ExtractorTestPool);

impl FromInvocation<()> for Db {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        Ok(Db(invocation.state::<ExtractorTestPool>()?.clone()))
    }
}

async fn pool_name(Db(pool): Db) -> Result<String, HandledError> {
    Ok(pool.name.to_owned())
}

#[tokio::test]
async fn a_state_extractor_gets_the_value_or_refuses_with_a_generic_500_and_a_log_naming_the_type() {
    let log = log();
    let service = || Service::new("db", "1").command(Command::new("pool", pool_name));

    let app = TestApp::new()
        .state(ExtractorTestPool { name: "primary" })
        .service(service())
        .start()
        .await;
    assert_eq!(app.client().invoke::<String>("db/1/pool", ()).await.unwrap(), "primary");
    app.shutdown().await;

    let app = TestApp::new().service(service()).start().await;
    let refused = app.client().invoke::<String>("db/1/pool", ()).await.unwrap_err();
    assert_eq!((refused.status, refused.message.as_str()), (500, "internal server error"));
    assert!(!refused.to_string().contains("ExtractorTestPool"), "internals leaked: {refused}");
    app.shutdown().await;
    let lines = log.0.lock().unwrap().clone();
    let logged = lines
        .iter()
        .find(|line| line.contains("ExtractorTestPool"))
        .unwrap_or_else(|| panic!("no log line names the missing state type; lines: {lines:#?}"));
    assert!(logged.contains("db/1/pool"), "the log should name the endpoint: {logged}");
    assert!(
        logged.contains("Service::state or Host::state"),
        "the log should say what to do: {logged}"
    );
}
