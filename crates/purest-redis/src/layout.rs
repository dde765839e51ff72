//! Where purest keeps its messages in Redis: key names, consumer group names, and the frames of
//! commands and responses. Every key starts with the configured prefix (`purest` unless set), so
//! two apps can share one Redis; the part in braces is the key's hash tag, so the keys one
//! operation touches together (a command's queue and its leases) would stay in one Redis Cluster
//! slot.
//!
//! | key | type | what |
//! |---|---|---|
//! | `<prefix>:command:{<service>/<version>/<command>}` | list | commands waiting for an instance (a frame each) |
//! | `<prefix>:serving:{<service>/<version>/<command>}` | sorted set | the instances serving the command, scored by the end of their lease |
//! | `<prefix>:reply:{<instance>}` | list | responses for the invokes of one bridge instance (a frame each) |
//! | `<prefix>:event:{<eventName>}` | stream | events of one name (field `m`: the envelope's JSON) |
//! | `<prefix>:info:{<messageType>}` | stream | info messages of one type (presence) |
//!
//! Consumer groups on an event stream: `<service>/<version>/<subscription>` for a durable
//! subscription (`…@<instance>` when it asks for every instance), `~<service>/<version>/<subscription>`
//! for a best-effort one shared by a service's instances (`#<hash>` of the filter appended when it
//! filters on more than the event name; the leading `~` tells trimming that what it has not read
//! may go). Best-effort subscriptions for every instance read the stream without a group.
//!
//! ```
//! use purest_redis::layout;
//! use purest_core::Address;
//! assert_eq!(layout::command_key("purest", &Address::new("user", "1", "register")), "purest:command:{user/1/register}");
//! assert_eq!(layout::event_key("app", "userRegistered"), "app:event:{userRegistered}");
//! ```

use bytes::{Buf, Bytes};
use purest_core::bridge::SubscriptionRoute;
use purest_core::{Address, Envelope, Message};

/// The list of commands waiting for an instance of `address`'s command.
pub fn command_key(prefix: &str, address: &Address) -> String {
    format!(
        "{prefix}:command:{{{}/{}/{}}}",
        address.service_name, address.service_version, address.service_target
    )
}

/// The sorted set of leases of the instances serving `address`'s command.
pub fn serving_key(prefix: &str, address: &Address) -> String {
    format!(
        "{prefix}:serving:{{{}/{}/{}}}",
        address.service_name, address.service_version, address.service_target
    )
}

/// The list of responses for the bridge instance `instance`.
pub fn reply_key(prefix: &str, instance: &str) -> String {
    format!("{prefix}:reply:{{{instance}}}")
}

/// The stream of events named `event_name`.
pub fn event_key(prefix: &str, event_name: &str) -> String {
    format!("{prefix}:event:{{{event_name}}}")
}

/// The stream of info messages of type `message_type`.
pub fn info_key(prefix: &str, message_type: &str) -> String {
    format!("{prefix}:info:{{{message_type}}}")
}

/// The stream `envelope` is published on, if any: events by their name, info messages by their
/// type. A message of neither kind reaches no subscription on Redis.
pub fn stream_of(prefix: &str, envelope: &Envelope) -> Option<String> {
    match (&envelope.message, &envelope.event_name) {
        (Message::Info { message_type, .. }, _) => Some(info_key(prefix, message_type)),
        (_, Some(event_name)) => Some(event_key(prefix, event_name)),
        _ => None,
    }
}

/// The stream a subscription reads, or why it cannot be served on Redis: events are kept by name,
/// so a subscription names its event (or the info message type it wants).
pub fn stream_for(prefix: &str, route: &SubscriptionRoute) -> Result<String, String> {
    let filter = &route.filter;
    if let Some(event_name) = &filter.event_name {
        return Ok(event_key(prefix, event_name));
    }
    if let Some(info) = filter.message_type.as_ref().filter(|kind| kind.starts_with("info")) {
        return Ok(info_key(prefix, info));
    }
    Err(format!(
        "subscription {} names no event ({}): the Redis bridge keeps events in a stream per event name; add .on_event(\"…\"), or have the command declare the event it succeeds with and subscribe to that",
        route.name(),
        filter
    ))
}

/// The consumer group of a subscription that uses one; `None` for a best-effort subscription of
/// every instance, which reads without a group.
pub fn group_of(route: &SubscriptionRoute) -> Option<String> {
    let name = route.name();
    let instance = route.address.instance_id.as_deref().unwrap_or("none");
    match (route.durable, route.every_instance) {
        (true, false) => Some(name),
        (true, true) => Some(format!("{name}@{instance}")),
        (false, false) => {
            let beyond_event_name = purest_core::EventFilter {
                event_name: None,
                ..route.filter.clone()
            };
            Some(match beyond_event_name.is_specific() {
                true => format!("~{name}#{:08x}", fnv1a(route.filter.to_string().as_bytes())),
                false => format!("~{name}"),
            })
        }
        (false, true) => None,
    }
}

/// FNV-1a: a short, stable hash for names (not for security).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

/// A command as queued: when it expires, where its response goes, and the envelope's bytes.
///
/// Written as `<deadline ms>:<n>:<reply to><n>:<correlation id><envelope JSON>`, each `<n>` the
/// byte length of what follows it, so the response can be addressed even when the envelope
/// itself cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFrame {
    /// Unix time in milliseconds after which nobody waits for the response.
    pub deadline_ms: u64,
    /// The instance whose reply list takes the response.
    pub reply_to: String,
    /// The correlation id the response carries in its frame.
    pub correlation: String,
    /// The command envelope's JSON (or whatever was queued).
    pub payload: Bytes,
}

impl CommandFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + self.reply_to.len() + self.correlation.len() + 32);
        out.extend_from_slice(self.deadline_ms.to_string().as_bytes());
        out.push(b':');
        put_field(&mut out, self.reply_to.as_bytes());
        put_field(&mut out, self.correlation.as_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads a frame; `None` when the bytes are not one.
    pub fn decode(mut bytes: Bytes) -> Option<Self> {
        let deadline_ms = take_number(&mut bytes)?;
        let reply_to = take_field(&mut bytes)?;
        let correlation = take_field(&mut bytes)?;
        Some(Self {
            deadline_ms,
            reply_to,
            correlation,
            payload: bytes,
        })
    }
}

/// A response as queued for its invoke: `<n>:<correlation id><envelope JSON>`.
pub fn encode_reply(correlation: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + correlation.len() + 8);
    put_field(&mut out, correlation.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The correlation id and the envelope's bytes of a queued response.
pub fn decode_reply(mut bytes: Bytes) -> Option<(String, Bytes)> {
    let correlation = take_field(&mut bytes)?;
    Some((correlation, bytes))
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(field.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(field);
}

/// A decimal number ending in `:`, at most 20 digits.
fn take_number(bytes: &mut Bytes) -> Option<u64> {
    let colon = bytes.iter().take(21).position(|&b| b == b':')?;
    let number = std::str::from_utf8(&bytes[..colon]).ok()?.parse().ok()?;
    bytes.advance(colon + 1);
    Some(number)
}

fn take_field(bytes: &mut Bytes) -> Option<String> {
    let length = usize::try_from(take_number(bytes)?).ok()?;
    if bytes.len() < length {
        return None;
    }
    let field = String::from_utf8(bytes.split_to(length).to_vec()).ok()?;
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use purest_core::bridge::{DEFAULT_QUEUE_CAPACITY, Retry};
    use purest_core::{EventFilter, Name};
    use std::sync::Arc;

    #[test]
    fn frames_carry_their_addressing_around_any_bytes() {
        let frame = CommandFrame {
            deadline_ms: 1_796_597_403_372,
            reply_to: "instance:1".into(),
            correlation: "id with : and 12:".into(),
            payload: Bytes::from_static(b"not json at all"),
        };
        assert_eq!(CommandFrame::decode(Bytes::from(frame.encode())), Some(frame));
        let reply = encode_reply("c1", b"{}");
        assert_eq!(decode_reply(Bytes::from(reply)), Some(("c1".to_owned(), Bytes::from_static(b"{}"))));
        for junk in [&b""[..], b"12", b"12:5:ab", b"x:1:a1:b{}", b"99999999999999999999999:0:0:"] {
            assert_eq!(CommandFrame::decode(Bytes::copy_from_slice(junk)), None, "{junk:?}");
        }
    }

    #[test]
    fn groups_name_the_subscription_and_what_sets_it_apart() {
        let route = |durable: bool, every_instance: bool, tenant: Option<&str>| SubscriptionRoute {
            address: Arc::new(Address {
                instance_id: Some(Name::new("i1")),
                ..Address::new("mail", "1", "send")
            }),
            filter: EventFilter {
                event_name: Some(Name::new("userRegistered")),
                tenant_id: tenant.map(Name::new),
                ..Default::default()
            },
            durable,
            every_instance,
            retry: Retry::default(),
            concurrency: 1,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        };
        assert_eq!(group_of(&route(true, false, None)).as_deref(), Some("mail/1/send"));
        assert_eq!(group_of(&route(true, true, None)).as_deref(), Some("mail/1/send@i1"));
        assert_eq!(group_of(&route(false, false, None)).as_deref(), Some("~mail/1/send"));
        let tenant_only = group_of(&route(false, false, Some("t1"))).unwrap();
        assert!(tenant_only.starts_with("~mail/1/send#"));
        assert_ne!(group_of(&route(false, false, Some("t2"))).unwrap(), tenant_only);
        assert_eq!(group_of(&route(false, true, None)), None);
        assert_eq!(stream_for("p", &route(true, false, None)).unwrap(), "p:event:{userRegistered}");
        let mut unnamed = route(true, false, None);
        unnamed.filter.event_name = None;
        assert!(stream_for("p", &unnamed).unwrap_err().contains("mail/1/send"));
    }
}
