//! A parent-based sampler follows the sender: a message whose `traceparent` says "not sampled"
//! gets no span, and its trace context travels on unchanged to what it causes; one that says
//! "sampled" is recorded as the sender's child. (A file of its own: the core keeps the first
//! propagation a process installs.)

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::trace::InMemorySpanExporter;
use purest_core::prelude::*;
use purest_core::{Envelope, Message};
use purest_telemetry::{Sampling, Telemetry};
use tokio::sync::Notify;
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

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Counts the `tracing` spans made, for the tracing backend and only for log lines (target
/// `purest::unrecorded`, which carry the message's trace id).
#[derive(Clone, Default)]
struct SpansMade(Arc<std::sync::Mutex<(usize, Vec<String>)>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpansMade {
    fn on_new_span(&self, attributes: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut made = self.0.lock().unwrap();
        if attributes.metadata().target() == purest_core::trace_context::UNRECORDED {
            made.1.push(attributes.metadata().name().to_owned());
        } else {
            made.0 += 1;
        }
    }
}

#[test]
fn an_unsampled_sender_makes_no_spans_and_a_sampled_one_is_continued() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let spans = InMemorySpanExporter::default();
    let telemetry = Telemetry::with_exporter("users", spans.clone(), Sampling::ParentBasedAlwaysOn);
    let made = SpansMade::default();
    let _guard = tracing_subscriber::registry()
        .with(telemetry.layer())
        .with(made.clone())
        .set_default();
    let responses = runtime.block_on(async {
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
        let mut responses = Vec::new();
        for flags in ["00", "01"] {
            let mut command = Envelope::new(
                Arc::new(Address::new("caller", "1", "x")),
                Message::Command {
                    payload: Body::typed(format!("flags {flags}")),
                    parameter: Body::empty_object(),
                },
            );
            command.receiver = Some(Arc::new(Address::new("user", "1", "register")));
            command.correlation_id = Some(Id::random());
            command.otp = Some(purest_core::trace_context::otp_of(&format!("00-{TRACE}-00f067aa0ba902b7-{flags}")));
            let welcomed = done.notified();
            let response = app.bridge().invoke(command, Duration::from_secs(5)).await.unwrap();
            assert!(matches!(response.message, Message::Success { .. }), "{:?}", response.message);
            tokio::time::timeout(Duration::from_secs(5), welcomed).await.expect("welcomed");
            if flags == "00" {
                telemetry.flush();
                assert_eq!(
                    spans.get_finished_spans().unwrap().len(),
                    0,
                    "nothing recorded of an unsampled trace"
                );
                let made = made.0.lock().unwrap();
                assert_eq!(made.0, 0, "not even a span made for the backend");
                assert_eq!(made.1, ["command", "subscription"], "spans for log lines only, with the trace id");
            }
            responses.push(response.otp);
        }
        app.shutdown().await;
        responses
    });
    assert_eq!(
        responses[0].as_deref(),
        Some(&*purest_core::trace_context::otp_of(&format!("00-{TRACE}-00f067aa0ba902b7-00"))),
        "the unsampled context travels on unchanged"
    );
    telemetry.flush();
    let names: Vec<String> = spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|span| span.name.to_string())
        .collect();
    for name in ["user/1/register process", "userRegistered send", "userRegistered process"] {
        assert!(
            names.contains(&name.to_owned()),
            "{name} recorded for the sampled sender: {names:?}"
        );
    }
    let sampled = responses[1].as_deref().unwrap();
    assert!(sampled.contains(TRACE) && sampled.ends_with("-01\"}"), "{sampled}");
}
