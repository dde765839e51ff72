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
    /// recorded here. `false` — a trace its sampler leaves out — means the core gives its span
    /// the target [`UNRECORDED`] (kept for log lines, made only when a layer other than the
    /// backend's takes it) and sends nothing of it: its `otp` travels on unchanged, so nothing
    /// it causes is recorded either, and an unrecorded trace costs next to nothing. The default
    /// records every message.
    fn records(&self, parent: Option<&TraceParent>) -> bool {
        let _ = parent;
        true
    }

    /// For a message that starts a trace (sent outside any span, caused by no other message):
    /// `Some` — the sampler leaves this trace out: send the message with this context and make
    /// no span; `None` — make the span as usual, and the trace is recorded. The default records
    /// every trace.
    fn start_trace(&self) -> Option<TraceParent> {
        None
    }
}

/// Whether a message carrying `otp` is recorded: always without a backend (which then records
/// nothing anyway), else as the backend's [`Propagation::records`] says.
pub fn records(otp: Option<&str>) -> bool {
    match propagation() {
        Some(propagation) => {
            let parent = otp.and_then(|otp| match written_traceparent(otp) {
                Some(text) => TraceParent::parse(text),
                None => TraceParent::parse(&traceparent_of(otp)?),
            });
            propagation.records(parent.as_ref())
        }
        None => true,
    }
}

/// The text between the quotes of what [`otp_of`] writes, borrowed; `None` for other shapes.
fn written_traceparent(otp: &str) -> Option<&str> {
    otp.strip_prefix("{\"traceparent\":\"")?.strip_suffix("\"}")
}

/// The `tracing` target of the spans of messages whose trace is not recorded: they carry the
/// message's `trace_id` for log lines, and the tracing backend leaves them out.
pub const UNRECORDED: &str = "purest::unrecorded";

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
///
/// ```
/// use purest_core::trace_context::{otp_of, traceparent_of};
/// let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// assert_eq!(traceparent_of(&otp_of(traceparent)).as_deref(), Some(traceparent));
/// let purista = format!(r#"{{ "tracestate": "vendor=1", "traceparent": "{traceparent}" }}"#);
/// assert_eq!(traceparent_of(&purista).as_deref(), Some(traceparent));
/// assert_eq!(traceparent_of(r#"{"traceparent":"a\"b"}"#).as_deref(), Some("a\"b"));
/// assert_eq!(traceparent_of("not json"), None);
/// ```
pub fn traceparent_of(otp: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Otp {
        traceparent: Option<String>,
    }
    // What `otp_of` writes (every purest sender) is read without a parser; anything else —
    // PURISTA's, with more fields or escapes — goes through serde.
    if let Some(text) = written_traceparent(otp)
        && !text.contains(['"', '\\'])
    {
        return Some(text.to_owned());
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
/// // Uppercase, other versions, non-hex digits and extra parts are not W3C's version 00.
/// for bad in ["00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
///     "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"] {
///     assert!(TraceParent::parse(bad).is_none(), "{bad}");
/// }
/// let round = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00";
/// assert_eq!(TraceParent::parse(round).unwrap().to_string(), round);
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
        // `00-` 32 hex `-` 16 hex `-` 2 hex: fixed places, read by hand (it is read for every
        // message a traced process handles).
        let bytes = text.trim().as_bytes();
        if bytes.len() != 55 || !bytes.starts_with(b"00-") || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let parsed = Self {
            trace_id: u128::from(hex(&bytes[3..19])?) << 64 | u128::from(hex(&bytes[19..35])?),
            span_id: hex(&bytes[36..52])?,
            flags: hex(&bytes[53..55])? as u8,
        };
        (parsed.trace_id != 0 && parsed.span_id != 0).then_some(parsed)
    }

    /// Whether the sender recorded its span.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// The value of at most 16 lowercase hex digits; `None` if one is not.
fn hex(digits: &[u8]) -> Option<u64> {
    /// Each byte's value as a hex digit, 0xff for bytes that are not one.
    const VALUES: [u8; 256] = {
        let mut values = [0xff; 256];
        let mut digit = 0;
        while digit < 16 {
            values[b"0123456789abcdef"[digit] as usize] = digit as u8;
            digit += 1;
        }
        values
    };
    let mut value = 0u64;
    let mut invalid = 0u8;
    for &digit in digits {
        let nibble = VALUES[digit as usize];
        invalid |= nibble;
        value = value << 4 | u64::from(nibble & 0x0f);
    }
    // 0xff has its high bit set, no digit's value does: one test for them all.
    (invalid & 0x80 == 0).then_some(value)
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}
