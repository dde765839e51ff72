//! The one message type every bridge carries, field-for-field compatible with PURISTA's JSON
//! messages so that PURISTA and purest services can share a broker (docs/ARCHITECTURE.md §4).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::body::Body;
use crate::codec;
use crate::error::HandledError;
use crate::id::Id;
use crate::name::Name;
use crate::recent;

/// `application/json`, the only content type purest produces.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `utf-8`, the only content encoding purest produces.
pub const CONTENT_ENCODING_UTF8: &str = "utf-8";

/// The `contentType` and `contentEncoding` of a message: `application/json` and `utf-8` (all
/// purest writes) unless a peer sent others, which are kept as they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content(Option<Box<(String, String)>>);

impl Content {
    /// The given type and encoding (the defaults are stored for free).
    pub fn new(content_type: impl AsRef<str> + Into<String>, content_encoding: impl AsRef<str> + Into<String>) -> Self {
        if content_type.as_ref() == CONTENT_TYPE_JSON && content_encoding.as_ref() == CONTENT_ENCODING_UTF8 {
            Content(None)
        } else {
            Content(Some(Box::new((content_type.into(), content_encoding.into()))))
        }
    }

    /// `contentType`.
    pub fn content_type(&self) -> &str {
        self.0.as_ref().map_or(CONTENT_TYPE_JSON, |c| &c.0)
    }

    /// `contentEncoding`.
    pub fn content_encoding(&self) -> &str {
        self.0.as_ref().map_or(CONTENT_ENCODING_UTF8, |c| &c.1)
    }
}

/// Who sent or should receive a message: `serviceName`, `serviceVersion`, `serviceTarget` (the
/// command or subscription name) and, for a concrete running copy, its `instanceId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Service name, e.g. `user`.
    pub service_name: Name,
    /// Service version, e.g. `1`.
    pub service_version: Name,
    /// Command or subscription name; empty for the service itself.
    pub service_target: Name,
    /// The running instance, when one is meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Name>,
}

impl Address {
    /// An address without instance (names known at run time; see [`Address::named`] for literals).
    pub fn new(service: &str, version: &str, target: &str) -> Self {
        Self::named(Name::new(service), Name::new(version), Name::new(target))
    }

    /// An address from names (literals cost nothing).
    pub fn named(service: impl Into<Name>, version: impl Into<Name>, target: impl Into<Name>) -> Self {
        Self {
            service_name: service.into(),
            service_version: version.into(),
            service_target: target.into(),
            instance_id: None,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.service_name, self.service_version, self.service_target)
    }
}

/// What kind of message an envelope carries, with the fields only that kind has.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `command`: invoke `receiver` with a payload and parameters.
    Command {
        /// The command's input.
        payload: Body,
        /// The command's parameters (`{}` when none).
        parameter: Body,
    },
    /// `commandSuccessResponse`: the command's output.
    Success {
        /// The output.
        payload: Body,
    },
    /// `commandErrorResponse`: the command failed.
    Error {
        /// Status, message, data and trace id (boxed: errors are rare, envelopes are moved often).
        error: Box<HandledError>,
        /// Whether the handler reported the error itself (`false`: an unhandled 500).
        is_handled_error: bool,
    },
    /// `customMessage`: an event emitted by a handler.
    Custom {
        /// The event's data.
        payload: Body,
    },
    /// Any PURISTA `info*` message (service lifecycle); carried through unchanged.
    Info {
        /// The exact `messageType`, e.g. `infoServiceReady`.
        message_type: Box<str>,
        /// Its payload, if any (boxed: rare, and envelopes are moved often).
        payload: Option<Box<Value>>,
    },
}

impl Message {
    /// The wire name of this kind (`command`, `commandSuccessResponse`, …).
    pub fn message_type(&self) -> &str {
        match self {
            Message::Command { .. } => "command",
            Message::Success { .. } => "commandSuccessResponse",
            Message::Error { .. } => "commandErrorResponse",
            Message::Custom { .. } => "customMessage",
            Message::Info { message_type, .. } => message_type,
        }
    }
}

/// One message on a bridge.
///
/// ```
/// use purest_core::{Envelope, Message};
/// let json = br#"{"messageType":"customMessage","id":"aed94e7a3bafbd553e3d1b5605d2aa00",
///   "timestamp":1795377195118,"contentType":"application/json","contentEncoding":"utf-8",
///   "sender":{"serviceName":"UserService","serviceVersion":"1","serviceTarget":"signUp"},
///   "eventName":"audit.userCreated","payload":{"userId":"u-1"}}"#;
/// let envelope = Envelope::from_json(json).unwrap();
/// assert_eq!(envelope.event_name.as_deref(), Some("audit.userCreated"));
/// assert!(matches!(envelope.message, Message::Custom { .. }));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique id of this message.
    pub id: Id,
    /// Creation time, epoch milliseconds.
    pub timestamp: u64,
    /// `contentType` and `contentEncoding`.
    pub content: Content,
    /// Who sent it.
    pub sender: Arc<Address>,
    /// Who should receive it (commands and responses; optional for events).
    pub receiver: Option<Arc<Address>>,
    /// Trace id shared by every message caused by one request.
    pub trace_id: Option<Id>,
    /// Links a response to its command.
    pub correlation_id: Option<Id>,
    /// The authenticated principal on whose behalf this runs.
    pub principal_id: Option<Name>,
    /// The tenant.
    pub tenant_id: Option<Name>,
    /// The event name (events, and success responses of commands that declare one).
    pub event_name: Option<Name>,
    /// OpenTelemetry propagation: a JSON string holding the W3C `traceparent`.
    pub otp: Option<Box<str>>,
    /// PURISTA repeats the sender's instance id at the top level. `None` writes
    /// `sender.instanceId` there (what PURISTA does); a decoded message keeps what it carried.
    pub instance_id: Option<Name>,
    /// The kind of message and its payload.
    pub message: Message,
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    // Every message takes one: on Linux straight from the clock, without `SystemTime`'s checked
    // subtraction and `Duration` arithmetic.
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        if let (Ok(secs), Ok(nanos)) = (u64::try_from(now.tv_sec), u64::try_from(now.tv_nsec)) {
            return secs * 1000 + nanos / 1_000_000;
        }
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why bytes are not an envelope.
#[derive(Debug, thiserror::Error)]
#[error("not a purest/PURISTA envelope: {0}")]
pub struct DecodeError(String);

impl Envelope {
    /// A new message of `message` kind from `sender`, with a fresh id and the current time.
    pub fn new(sender: impl Into<Arc<Address>>, message: Message) -> Self {
        Self {
            id: Id::random(),
            timestamp: now_millis(),
            content: Content::default(),
            sender: sender.into(),
            receiver: None,
            trace_id: None,
            correlation_id: None,
            principal_id: None,
            tenant_id: None,
            event_name: None,
            otp: None,
            instance_id: None,
            message,
        }
    }

    /// Decodes one envelope from JSON bytes, with an error that names what is wrong. Payloads
    /// are copied out as JSON text, parsed only when read; [`Envelope::from_bytes`] shares the
    /// buffer instead.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, None)
    }

    /// Decodes one envelope from a buffer a bridge received; payloads stay slices of it (no copy).
    pub fn from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        decode(&bytes, Some(&bytes))
    }

    /// Encodes to JSON bytes (serializing typed payloads).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        // An envelope with two addresses and three ids is 500 to 700 bytes: room for it at once.
        let mut out = Vec::with_capacity(1024);
        codec::encode(self, &mut out)?;
        Ok(out)
    }

    /// The W3C `traceparent` inside [`Envelope::otp`], which brokers carry as a header too.
    pub fn traceparent(&self) -> Option<String> {
        crate::trace_context::traceparent_of(self.otp.as_deref()?)
    }

    /// The wire name of the message type.
    pub fn message_type(&self) -> &str {
        self.message.message_type()
    }
}

/// Decodes with the codec's scanner, which reads the usual shape of an envelope without a detour;
/// anything it does not take (escapes, `null`s, duplicate keys, bad input) goes through serde,
/// whose verdict and error messages are the reference.
fn decode(bytes: &[u8], owner: Option<&Bytes>) -> Result<Envelope, DecodeError> {
    let wire = match codec::scan(bytes) {
        Some(wire) => wire,
        None => serde_json::from_slice::<WireEnvelope<'_>>(bytes).map_err(|e| DecodeError(e.to_string()))?,
    };
    wire.into_envelope(bytes, owner).map_err(DecodeError)
}

struct CommandPayload<'a> {
    payload: &'a Body,
    parameter: &'a Body,
}

impl Serialize for CommandPayload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("payload", self.payload)?;
        map.serialize_entry("parameter", self.parameter)?;
        map.end()
    }
}

/// The reference shape of the wire format; [`Envelope::to_json`] writes the same bytes faster
/// (`codec`'s tests hold the two to that).
impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("messageType", self.message_type())?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        map.serialize_entry("contentType", self.content.content_type())?;
        map.serialize_entry("contentEncoding", self.content.content_encoding())?;
        map.serialize_entry("sender", &self.sender)?;
        if let Some(receiver) = &self.receiver {
            map.serialize_entry("receiver", receiver)?;
        }
        macro_rules! optional {
            ($($key:literal => $field:ident),*) => {$(
                if let Some(value) = &self.$field {
                    map.serialize_entry($key, value)?;
                }
            )*};
        }
        optional!("traceId" => trace_id, "correlationId" => correlation_id, "principalId" => principal_id,
            "tenantId" => tenant_id, "eventName" => event_name, "otp" => otp);
        if let Some(instance) = self.instance_id.as_ref().or(self.sender.instance_id.as_ref()) {
            map.serialize_entry("instanceId", instance)?;
        }
        match &self.message {
            Message::Command { payload, parameter } => map.serialize_entry("payload", &CommandPayload { payload, parameter })?,
            Message::Success { payload } | Message::Custom { payload } => map.serialize_entry("payload", payload)?,
            Message::Error { error, is_handled_error } => {
                map.serialize_entry("isHandledError", is_handled_error)?;
                map.serialize_entry("payload", error)?;
            }
            Message::Info { payload, .. } => {
                if let Some(payload) = payload {
                    map.serialize_entry("payload", payload)?;
                }
            }
        }
        map.end()
    }
}

/// The flat wire shape, read first (by `codec::scan`, else by serde) and then checked per
/// message type. The payload stays JSON text.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireEnvelope<'a> {
    #[serde(borrow)]
    pub(crate) message_type: Cow<'a, str>,
    /// Required: optional here only so the scanner can fill the struct in; `None` is refused.
    pub(crate) id: Option<Id>,
    pub(crate) timestamp: u64,
    #[serde(borrow, default = "default_content_type")]
    pub(crate) content_type: Cow<'a, str>,
    #[serde(borrow, default = "default_content_encoding")]
    pub(crate) content_encoding: Cow<'a, str>,
    /// Required, like `id`.
    #[serde(deserialize_with = "shared_address")]
    pub(crate) sender: Option<Arc<Address>>,
    #[serde(default, deserialize_with = "shared_optional_address")]
    pub(crate) receiver: Option<Arc<Address>>,
    pub(crate) trace_id: Option<Id>,
    pub(crate) correlation_id: Option<Id>,
    pub(crate) principal_id: Option<Name>,
    pub(crate) tenant_id: Option<Name>,
    pub(crate) event_name: Option<Name>,
    pub(crate) otp: Option<Box<str>>,
    pub(crate) instance_id: Option<Name>,
    pub(crate) is_handled_error: Option<bool>,
    /// The payload's JSON text (checked well-formed), `None` when absent or `null`.
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub(crate) payload: Option<&'a str>,
    /// A command's parts, when the scanner read them on its way through the payload.
    #[serde(skip)]
    pub(crate) command_parts: Option<CommandParts<'a>>,
}

/// Any JSON value as its text (`null` as `None`).
fn raw_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de str>, D::Error> {
    Ok(Option::<&'de RawValue>::deserialize(deserializer)?.map(RawValue::get))
}

/// An address as it arrives, borrowing its strings from the input where it can.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireAddress<'a> {
    #[serde(borrow)]
    pub(crate) service_name: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) service_version: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) service_target: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) instance_id: Option<Cow<'a, str>>,
}

impl WireAddress<'_> {
    fn is(&self, address: &Address) -> bool {
        *self.service_target == *address.service_target
            && *self.service_name == *address.service_name
            && *self.service_version == *address.service_version
            && self.instance_id.as_deref() == address.instance_id.as_deref()
    }

    /// The address, shared with earlier messages that named it.
    pub(crate) fn shared(&self) -> Arc<Address> {
        recent::address(
            self,
            |wire, known| wire.is(known),
            |wire| Address {
                service_name: Name::new(&wire.service_name),
                service_version: Name::new(&wire.service_version),
                service_target: Name::new(&wire.service_target),
                instance_id: wire.instance_id.as_deref().map(Name::new),
            },
        )
    }
}

impl Address {
    /// The address in an `Arc` shared with other messages of this thread that named it: a
    /// command target given by names costs no allocation per call once it is known.
    pub(crate) fn shared(self) -> Arc<Address> {
        recent::address(self, |address, known| address == known, |address| address)
    }
}

fn shared_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<Address>>, D::Error> {
    Ok(Some(WireAddress::deserialize(deserializer)?.shared()))
}

fn shared_optional_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<Address>>, D::Error> {
    Ok(Option::<WireAddress>::deserialize(deserializer)?.map(|address| address.shared()))
}

fn default_content_type() -> Cow<'static, str> {
    Cow::Borrowed(CONTENT_TYPE_JSON)
}
fn default_content_encoding() -> Cow<'static, str> {
    Cow::Borrowed(CONTENT_ENCODING_UTF8)
}

/// A command's payload `{"payload": …, "parameter": …}`, each part kept as JSON text. A repeated
/// key keeps its last value, as a JSON object read into a map would.
#[derive(Default)]
pub(crate) struct CommandParts<'a> {
    pub(crate) payload: Option<&'a str>,
    pub(crate) parameter: Option<&'a str>,
}

impl<'de> Deserialize<'de> for CommandParts<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Parts;
        impl<'de> serde::de::Visitor<'de> for Parts {
            type Value = CommandParts<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object {\"payload\": …, \"parameter\": …}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut parts = CommandParts {
                    payload: None,
                    parameter: None,
                };
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match &*key {
                        "payload" => parts.payload = Some(map.next_value::<&RawValue>()?.get()),
                        "parameter" => parts.parameter = Some(map.next_value::<&RawValue>()?.get()),
                        other => {
                            return Err(A::Error::custom(format!(
                                "a command's `payload` must be an object {{\"payload\": …, \"parameter\": …}}; it has the key {other:?}: wrap the input as {{\"payload\": <input>, \"parameter\": {{}}}}"
                            )));
                        }
                    }
                }
                Ok(parts)
            }
        }
        deserializer.deserialize_map(Parts)
    }
}

const NOT_A_COMMAND_OBJECT: &str = "a command's `payload` must be an object {\"payload\": …, \"parameter\": …}";

impl<'a> WireEnvelope<'a> {
    /// Checks the fields per message type and builds the envelope. `input` is the decoded buffer,
    /// which every raw part points into; `owner`, when given, owns it, so bodies can share it.
    pub(crate) fn into_envelope(self, input: &[u8], owner: Option<&Bytes>) -> Result<Envelope, String> {
        let body = |text: &str| -> Body {
            let text = text.as_bytes();
            match owner {
                Some(owner) => {
                    let start = text.as_ptr() as usize - input.as_ptr() as usize;
                    Body::raw(owner.slice(start..start + text.len()))
                }
                None => Body::raw(Bytes::copy_from_slice(text)),
            }
        };
        let null = || Body::raw(Bytes::from_static(b"null"));
        let message = match &*self.message_type {
            "command" => {
                let raw = self.payload.filter(|raw| raw.starts_with('{')).ok_or(NOT_A_COMMAND_OBJECT)?;
                let parts = match self.command_parts.or_else(|| codec::command_parts(raw)) {
                    Some(parts) => parts,
                    None => serde_json::from_str(raw).map_err(|e| {
                        let text = e.to_string();
                        // serde_json appends the position; ours is a position in the payload, which misleads.
                        text.split(" at line ").next().unwrap_or(&text).to_owned()
                    })?,
                };
                Message::Command {
                    payload: parts.payload.map_or_else(null, body),
                    parameter: parts.parameter.map_or_else(Body::empty_object, body),
                }
            }
            "commandSuccessResponse" => Message::Success {
                payload: self.payload.map_or_else(null, body),
            },
            "commandErrorResponse" => {
                let raw = self.payload.ok_or("a commandErrorResponse needs a `payload` {status, message}")?;
                let error: HandledError = serde_json::from_str(raw)
                    .map_err(|e| format!("a commandErrorResponse `payload` must be {{status, message, data?, traceId?}}: {e}"))?;
                Message::Error {
                    error: Box::new(error),
                    is_handled_error: self.is_handled_error.unwrap_or(false),
                }
            }
            "customMessage" => Message::Custom {
                payload: self.payload.map_or_else(null, body),
            },
            other if other.starts_with("info") => Message::Info {
                message_type: other.into(),
                payload: match self.payload {
                    Some(raw) => Some(Box::new(serde_json::from_str(raw).map_err(|e| e.to_string())?)),
                    None => None,
                },
            },
            other => {
                return Err(format!(
                    "unknown messageType {other:?}; expected command, commandSuccessResponse, commandErrorResponse, customMessage or info*"
                ));
            }
        };
        if matches!(message, Message::Command { .. }) && self.receiver.is_none() {
            return Err("a command needs a `receiver` {serviceName, serviceVersion, serviceTarget}".into());
        }
        Ok(Envelope {
            id: self.id.ok_or("missing field `id`")?,
            timestamp: self.timestamp,
            content: Content::new(self.content_type, self.content_encoding),
            sender: self.sender.ok_or("missing field `sender`")?,
            receiver: self.receiver,
            trace_id: self.trace_id,
            correlation_id: self.correlation_id,
            principal_id: self.principal_id,
            tenant_id: self.tenant_id,
            event_name: self.event_name,
            otp: self.otp,
            instance_id: self.instance_id,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_addresses_are_shared_but_never_mixed_up() {
        let json = |instance: &str| {
            format!(
                r#"{{"messageType":"commandSuccessResponse","id":"{id}","timestamp":1,"sender":{{"serviceName":"user","serviceVersion":"1","serviceTarget":"get","instanceId":"{instance}"}},"receiver":{{"serviceName":"client","serviceVersion":"1","serviceTarget":""}},"payload":null}}"#,
                id = Id::random()
            )
        };
        let first = Envelope::from_json(json("a").as_bytes()).unwrap();
        let again = Envelope::from_json(json("a").as_bytes()).unwrap();
        let other = Envelope::from_json(json("b").as_bytes()).unwrap();
        assert!(Arc::ptr_eq(&first.sender, &again.sender), "the same address is decoded once");
        assert_eq!(other.sender.instance_id.as_deref(), Some("b"));
        assert_eq!(first.sender.instance_id.as_deref(), Some("a"));
        assert!(Arc::ptr_eq(first.receiver.as_ref().unwrap(), other.receiver.as_ref().unwrap()));
        for n in 0..100 {
            let many = Envelope::from_json(json(&format!("i{n}")).as_bytes()).unwrap();
            assert_eq!(many.sender.instance_id.as_deref(), Some(format!("i{n}").as_str()));
        }
    }

    #[test]
    fn typed_command_serializes_in_purista_shape() {
        #[derive(Serialize)]
        struct NewUser {
            name: &'static str,
        }
        let mut envelope = Envelope::new(
            Address::new("Client", "1", "cli"),
            Message::Command {
                payload: Body::typed(NewUser { name: "alice" }),
                parameter: Body::empty_object(),
            },
        );
        envelope.receiver = Some(Address::new("UserService", "1", "signUp").into());
        let json: Value = serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
        assert_eq!(json["payload"], serde_json::json!({"payload": {"name": "alice"}, "parameter": {}}));
        assert_eq!(json["messageType"], "command");
        assert_eq!(json["receiver"]["serviceTarget"], "signUp");
        assert_eq!(json["id"].as_str().unwrap().len(), 32);
        assert!(json["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        let back = Envelope::from_json(&envelope.to_json().unwrap()).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn malformed_input_names_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "key must be a string"),
            (b"[]", "expected struct WireEnvelope"),
            (br#"{"messageType":"command","id":"62f600d70b3057cd2e4b8e8f3c359a32","timestamp":1}"#, "missing field `sender`"),
            (br#"{"messageType":"bogus","id":"62f600d70b3057cd2e4b8e8f3c359a32","timestamp":1,"sender":{"serviceName":"a","serviceVersion":"1","serviceTarget":""}}"#, "unknown messageType \"bogus\""),
            (br#"{"messageType":"command","id":"62f600d70b3057cd2e4b8e8f3c359a32","timestamp":1,"sender":{"serviceName":"a","serviceVersion":"1","serviceTarget":""},"receiver":{"serviceName":"b","serviceVersion":"1","serviceTarget":"x"},"payload":3}"#, "must be an object"),
            (br#"{"messageType":"customMessage","id":"not an id","timestamp":1,"sender":{"serviceName":"a","serviceVersion":"1","serviceTarget":""}}"#, "printable ASCII"),
            (br#"{"messageType":"command","id":"62f600d70b3057cd2e4b8e8f3c359a32","timestamp":1,"sender":{"serviceName":"a","serviceVersion":"1","serviceTarget":"t"},"receiver":{"serviceName":"b","serviceVersion":"1","serviceTarget":"x"},"payload":{"name":"ann"}}"#, "it has the key \"name\""),
        ];
        for (bytes, expected) in cases {
            let err = Envelope::from_json(bytes).unwrap_err().to_string();
            assert!(err.contains(expected), "{:?}: got {err}", String::from_utf8_lossy(bytes));
        }
    }
}
