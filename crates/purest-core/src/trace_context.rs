//! The W3C trace context of messages: how a trace started by an HTTP client continues through
//! every command, event and subscription it causes, in any process.
//!
//! A message carries its sender's span as a `traceparent` inside the envelope's `otp` field (what
//! PURISTA reads; bridges copy it into a header where the broker has them). The core knows no
//! tracing backend: a backend (`purest-telemetry`, with OpenTelemetry) installs a
//! [`Propagation`], and the core asks it to continue the sender's trace in the span of each
//! handled message and for the `traceparent` of each message it sends. With none installed —
//! telemetry off — nothing of this runs.

use std::sync::OnceLock;

/// What a tracing backend does for the core.
pub trait Propagation: Send + Sync + 'static {
    /// Makes `span` a child of the sender's span `traceparent` (the part of the trace in another
    /// process), or the root of a new trace when there is none. A `traceparent` that is not W3C's
    /// starts a new trace and is logged: it never fails the message.
    fn continue_trace(&self, span: &tracing::Span, traceparent: Option<&str>);

    /// The `traceparent` of the current span, for a message sent now; `None` outside any span
    /// the backend records.
    fn current_traceparent(&self) -> Option<String>;

    /// Whether a message whose sender's span is `parent` (`None`: none, or not W3C's) is
    /// recorded here. `false` — a trace its sampler leaves out — means the core makes no span for
    /// it: its `otp` travels on unchanged, so nothing it causes is recorded either, and an
    /// unrecorded trace costs next to nothing. The default records every message.
    fn records(&self, parent: Option<&TraceParent>) -> bool {
        let _ = parent;
        true
    }
}

/// Whether a message carrying `otp` is recorded: always without a backend (which then records
/// nothing anyway), else as the backend's [`Propagation::records`] says.
pub fn records(otp: Option<&str>) -> bool {
    match propagation() {
        Some(propagation) => {
            let parent = otp.and_then(traceparent_of).and_then(|text| TraceParent::parse(&text));
            propagation.records(parent.as_ref())
        }
        None => true,
    }
}

static PROPAGATION: OnceLock<Box<dyn Propagation>> = OnceLock::new();

/// Installs the process's backend; `false` when one is installed already (it stays).
pub fn install(propagation: impl Propagation) -> bool {
    PROPAGATION.set(Box::new(propagation)).is_ok()
}

/// The installed backend, if any.
pub fn propagation() -> Option<&'static dyn Propagation> {
    PROPAGATION.get().map(|propagation| &**propagation)
}

/// The `traceparent` inside an envelope's `otp` field (a JSON string holding
/// `{"traceparent": …}`), if it has one.
pub fn traceparent_of(otp: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Otp {
        traceparent: Option<String>,
    }
    serde_json::from_str::<Otp>(otp).ok()?.traceparent
}

/// The envelope's `otp` field holding `traceparent`: `{"traceparent":"00-…"}`.
pub fn otp_of(traceparent: &str) -> Box<str> {
    format!("{{\"traceparent\":\"{traceparent}\"}}").into()
}

/// A W3C `traceparent`: version 00, a trace id and a parent span id that are not all zeros, and
/// flags, all lowercase hex.
///
/// ```
/// use purest_core::trace_context::TraceParent;
/// let parsed = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
/// assert_eq!(parsed.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
/// assert!(parsed.sampled());
/// assert!(TraceParent::parse("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none());
/// assert!(TraceParent::parse("not a traceparent").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: u128,
    /// The sender's span.
    pub span_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses `text`; `None` when it is not a valid version-00 `traceparent`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut parts = text.split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if parts.next().is_some() || version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let parsed = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (parsed.trace_id != 0 && parsed.span_id != 0).then_some(parsed)
    }

    /// Whether the sender recorded its span.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}
