//! One trace per request, in one process over the in-memory bridge: a client's span, the
//! command it invokes, the event the command emits and the subscription that consumes it, each
//! the child of the one before; a malformed traceparent starts a new trace and fails nothing.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use purest_core::prelude::*;
use purest_core::{Envelope, Message};
use purest_telemetry::{Sampling, Telemetry};
use tokio::sync::Notify;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const REGISTERED: EventRef<String> = EventRef::new("userRegistered");

async fn register(ctx: Context, Payload(name): Payload<String>) -> Result<String, HandledError> {
    ctx.emit(REGISTERED, name.clone()).await?;
    Ok(name)
}

async fn welcome(State(done): State<Arc<Notify>>, Payload(_name): Payload<String>) -> Result<(), HandledError> {
    done.notify_one();
    Ok(())
}

fn find<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|span| span.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
        )
    })
}

#[test]
fn a_request_is_one_trace_through_command_event_and_subscription() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let spans = InMemorySpanExporter::default();
    let telemetry = Telemetry::with_exporter("users", spans.clone(), Sampling::AlwaysOn);
    let _guard = tracing_subscriber::registry().with(telemetry.layer()).set_default();
    runtime.block_on(async {
        let done = Arc::new(Notify::new());
        let app = Host::new()
            .service(Service::new("user", "1").command(Command::new("register", register)))
            .service(
                Service::new("email", "1")
                    .state(done.clone())
                    .subscription(Subscription::on(REGISTERED, "welcome", welcome)),
            )
            .start()
            .await
            .unwrap();
        let request = tracing::info_span!("request", otel.kind = "server");
        // A command is sent when `invoke` is called: from inside the request's span.
        let client = app.client();
        let invoked = request.in_scope(|| client.invoke::<String>("user/1/register", "ann".to_owned()));
        invoked.instrument(request).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), done.notified()).await.unwrap();
        app.shutdown().await;
    });
    telemetry.flush();
    let spans = spans.get_finished_spans().unwrap();
    let request = find(&spans, "request");
    let send = find(&spans, "user/1/register send");
    let process = find(&spans, "user/1/register process");
    let emit = find(&spans, "userRegistered send");
    let consume = find(&spans, "userRegistered process");
    let trace = request.span_context.trace_id();
    for span in [send, process, emit, consume] {
        assert_eq!(span.span_context.trace_id(), trace, "{} is in the request's trace", span.name);
    }
    assert_eq!(send.parent_span_id, request.span_context.span_id());
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    assert_eq!(emit.parent_span_id, process.span_context.span_id());
    assert_eq!(consume.parent_span_id, emit.span_context.span_id());
    assert_eq!(
        [
            send.span_kind.clone(),
            process.span_kind.clone(),
            emit.span_kind.clone(),
            consume.span_kind.clone()
        ],
        [SpanKind::Client, SpanKind::Server, SpanKind::Producer, SpanKind::Consumer]
    );
}

#[test]
fn a_malformed_traceparent_starts_a_new_trace_and_fails_nothing() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let spans = InMemorySpanExporter::default();
    let telemetry = Telemetry::with_exporter("users", spans.clone(), Sampling::AlwaysOn);
    let _guard = tracing_subscriber::registry().with(telemetry.layer()).set_default();
    runtime.block_on(async {
        let app = Host::new()
            .service(Service::new("user", "1").command(Command::new("register", register)))
            .start()
            .await
            .unwrap();
        let mut command = Envelope::new(
            Arc::new(Address::new("caller", "1", "x")),
            Message::Command {
                payload: Body::typed("bob".to_owned()),
                parameter: Body::empty_object(),
            },
        );
        command.receiver = Some(Arc::new(Address::new("user", "1", "register")));
        command.correlation_id = Some(Id::random());
        command.otp = Some(purest_core::trace_context::otp_of("00-not-a-trace-01"));
        let response = app.bridge().invoke(command, Duration::from_secs(5)).await.unwrap();
        assert!(matches!(response.message, Message::Success { .. }), "{:?}", response.message);
        app.shutdown().await;
    });
    telemetry.flush();
    let spans = spans.get_finished_spans().unwrap();
    let process = find(&spans, "user/1/register process");
    assert!(process.span_context.is_valid());
    assert_eq!(
        process.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "a new trace, rooted here"
    );
}
