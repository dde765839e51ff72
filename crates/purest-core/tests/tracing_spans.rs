//! Each handled message runs in a `tracing` span naming service, version, command or
//! subscription, and trace id. Alone in its test binary: tracing caches per-callsite interest
//! process-wide, so other tests without a subscriber must not run beside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_core::prelude::*;

/// Records the fields of every span named `command` or `subscription`.
#[derive(Clone, Default)]
struct SpanLog(Arc<Mutex<Vec<HashMap<String, String>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanLog {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut HashMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        let mut fields = HashMap::from([("span".to_owned(), attrs.metadata().name().to_owned())]);
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

#[test]
fn each_handled_message_gets_a_span_with_service_version_name_and_trace() {
    use tracing_subscriber::layer::SubscriberExt;
    async fn ping(ctx: Context) -> Result<String, HandledError> {
        ctx.emit("pinged", 1u64).await?;
        Ok("pong".into())
    }
    async fn on_ping(Payload(_): Payload<u64>) -> Result<(), HandledError> {
        Ok(())
    }
    let log = SpanLog::default();
    let subscriber = tracing_subscriber::registry().with(log.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let trace = Id::random();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let app = Host::new()
                .service(
                    Service::new("ping", "2")
                        .command(Command::new("ping", ping))
                        .subscription(Subscription::new("onPing", on_ping).on_event("pinged")),
                )
                .start()
                .await
                .unwrap();
            app.client()
                .with_trace_id(trace.clone())
                .invoke::<String>("ping/2/ping", ())
                .await
                .unwrap();
            for _ in 0..100 {
                if log.0.lock().unwrap().iter().any(|s| s["span"] == "subscription") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            app.shutdown().await;
        })
    });
    let spans = log.0.lock().unwrap().clone();
    let command = spans.iter().find(|s| s["span"] == "command").expect("a command span");
    assert_eq!(
        (
            command["service"].as_str(),
            command["version"].as_str(),
            command["command"].as_str()
        ),
        ("ping", "2", "ping")
    );
    assert_eq!(command["trace_id"], trace.to_string());
    let sub = spans.iter().find(|s| s["span"] == "subscription").expect("a subscription span");
    assert_eq!(
        (sub["subscription"].as_str(), sub["trace_id"].clone()),
        ("onPing", trace.to_string()),
        "the event carries the trace on"
    );
}
