//! A trace started by a message sent outside any span is decided once: with a ratio sampler,
//! about that share of requests is recorded whole (the client's span and the command's), and the
//! rest make no span at all. (A file of its own: the core keeps the first propagation a process
//! installs.)

use std::collections::{HashMap, HashSet};

use opentelemetry_sdk::trace::InMemorySpanExporter;
use purest_core::prelude::*;
use purest_telemetry::{Sampling, Telemetry};
use tracing_subscriber::prelude::*;

async fn echo(Payload(n): Payload<u32>) -> Result<u32, HandledError> {
    Ok(n)
}

#[test]
fn a_ratio_sampler_records_its_share_of_requests_whole() {
    const REQUESTS: u32 = 400;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let spans = InMemorySpanExporter::default();
    let telemetry = Telemetry::with_exporter("echo", spans.clone(), Sampling::ParentBasedTraceIdRatio(0.5));
    let _guard = tracing_subscriber::registry().with(telemetry.layer()).set_default();
    runtime.block_on(async {
        let app = Host::new()
            .service(Service::new("echo", "1").command(Command::new("echo", echo)))
            .start()
            .await
            .unwrap();
        let client = app.client();
        for n in 0..REQUESTS {
            assert_eq!(client.invoke::<u32>("echo/1/echo", n).await.unwrap(), n);
        }
        app.shutdown().await;
    });
    telemetry.flush();
    let mut traces: HashMap<_, HashSet<String>> = HashMap::new();
    for span in spans.get_finished_spans().unwrap() {
        traces
            .entry(span.span_context.trace_id())
            .or_default()
            .insert(span.name.to_string());
    }
    for names in traces.values() {
        let whole: HashSet<String> = ["echo/1/echo send".to_owned(), "echo/1/echo process".to_owned()].into();
        assert_eq!(names, &whole, "a recorded request is recorded whole");
    }
    // Drawn once per request: about half (drawn twice, it would be about a quarter).
    let recorded = traces.len() as f64 / f64::from(REQUESTS);
    assert!((0.35..=0.65).contains(&recorded), "{recorded} of the requests recorded");
}
