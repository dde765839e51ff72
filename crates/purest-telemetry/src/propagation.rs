//! The W3C trace context of purest's messages, read and written through OpenTelemetry's span
//! contexts.

use std::cell::Cell;

use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SamplingResult, ShouldSample};
use purest_core::trace_context::{Propagation, TraceParent};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// What `Telemetry` installs in the core.
pub(crate) struct OtelPropagation {
    /// The tracer provider's sampler, asked before a root span is made.
    pub(crate) sampler: Sampler,
    /// Whether the sampler follows the sender's decision (the `parentbased_*` samplers).
    pub(crate) parent_based: bool,
}

thread_local! {
    /// Set when [`OtelPropagation::start_trace`] has decided to record the trace whose root span
    /// this thread makes next; [`DecidedRoots`] honours it (else the ratio would be drawn twice).
    static RECORD_NEXT_ROOT: Cell<bool> = const { Cell::new(false) };
}

/// The configured sampler, except for a root purest has decided to record already.
#[derive(Debug, Clone)]
pub(crate) struct DecidedRoots(pub(crate) Sampler);

impl ShouldSample for DecidedRoots {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let root = parent_context.is_none_or(|parent| !parent.has_active_span());
        if root && RECORD_NEXT_ROOT.with(|decided| decided.replace(false)) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        self.0.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
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

    fn start_trace(&self) -> Option<TraceParent> {
        let ids = RandomIdGenerator::default();
        let trace_id = ids.new_trace_id();
        let decided = self.sampler.should_sample(None, trace_id, "send", &SpanKind::Client, &[], &[]);
        if decided.decision == SamplingDecision::RecordAndSample {
            // The span made next on this thread is this trace's root: record it.
            RECORD_NEXT_ROOT.with(|decided| decided.set(true));
            return None;
        }
        Some(TraceParent {
            trace_id: u128::from_be_bytes(trace_id.to_bytes()),
            span_id: u64::from_be_bytes(ids.new_span_id().to_bytes()),
            flags: 0,
        })
    }

    fn current_traceparent(&self) -> Option<String> {
        let context = tracing::Span::current().context();
        // Asked right after a root span is made, whose start has taken the decision now: one for
        // a span that was never started must not decide the next.
        RECORD_NEXT_ROOT.with(|decided| decided.set(false));
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
