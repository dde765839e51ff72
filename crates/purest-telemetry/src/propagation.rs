//! The W3C trace context of purest's messages, read and written through OpenTelemetry's span
//! contexts.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use purest_core::trace_context::{Propagation, TraceParent};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// What `Telemetry` installs in the core.
pub(crate) struct OtelPropagation {
    /// Whether the sampler follows the sender's decision (the `parentbased_*` samplers).
    pub(crate) parent_based: bool,
}

impl Propagation for OtelPropagation {
    fn continue_trace(&self, span: &tracing::Span, traceparent: Option<&str>) {
        let Some(text) = traceparent else { return };
        let Some(parent) = TraceParent::parse(text) else {
            tracing::warn!(traceparent = text, "a traceparent that is not W3C's: a new trace starts here");
            return;
        };
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.span_id.to_be_bytes()),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }

    fn records(&self, parent: Option<&TraceParent>) -> bool {
        // A parent-based sampler leaves out what the sender left out: no span needs making.
        !(self.parent_based && parent.is_some_and(|parent| !parent.sampled()))
    }

    fn current_traceparent(&self) -> Option<String> {
        let context = tracing::Span::current().context();
        let span = context.span();
        let current = span.span_context();
        if !current.is_valid() {
            return None;
        }
        let traceparent = TraceParent {
            trace_id: u128::from_be_bytes(current.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(current.span_id().to_bytes()),
            flags: current.trace_flags().to_u8(),
        };
        Some(traceparent.to_string())
    }
}
