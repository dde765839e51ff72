//! The envelope's wire codec on the hot path: every message a bridge carries is decoded and
//! encoded here, so it reads and writes the envelope's JSON without a detour.
//!
//! - [`scan`] reads the usual shape of an envelope (keys and values as purest and PURISTA write
//!   them) straight into [`WireEnvelope`], leaving the payload as JSON text that serde_json checks
//!   for well-formedness. Anything else — escapes in a string, a `null`, a repeated key, a number
//!   that is not a plain integer, bad input of any kind — returns `None`, and the caller decodes
//!   with serde, the reference: so every input gets serde's verdict, and its error message.
//! - [`encode`] writes the same bytes as the envelope's `Serialize` impl, with its keys as
//!   constants and its strings copied as they are when they need no escaping.
//!
//! Both are held to serde's output by the tests below, over samples and every one-byte change of
//! them.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::body::Body;
use crate::envelope::{Address, CommandParts, Envelope, Message, WireAddress, WireEnvelope};
use crate::id::Id;
use crate::name::Name;
use crate::recent;

/// Reads an envelope in its usual shape; `None` leaves it to serde.
pub(crate) fn scan(bytes: &[u8]) -> Option<WireEnvelope<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut scanner = Scanner { text, pos: 0 };
    let wire = scanner.envelope()?;
    scanner.skip_whitespace();
    (scanner.pos == text.len()).then_some(wire)
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

/// The keys of an envelope, each read at most once, in the order the encoder writes them.
const KEYS: [&str; 16] = [
    "messageType",
    "id",
    "timestamp",
    "contentType",
    "contentEncoding",
    "sender",
    "receiver",
    "traceId",
    "correlationId",
    "principalId",
    "tenantId",
    "eventName",
    "otp",
    "instanceId",
    "isHandledError",
    "payload",
];

impl<'a> Scanner<'a> {
    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, consumed.
    fn next_byte(&mut self) -> Option<u8> {
        self.skip_whitespace();
        let byte = *self.text.as_bytes().get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next_byte()? == byte).then_some(())
    }

    /// A string without escapes or control characters (which serde reads instead).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let len = first_special(&bytes[start..]);
        if bytes.get(start + len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        Some(&self.text[start..start + len])
    }

    /// A string that may hold escapes (an `otp` holds JSON: `"{\"traceparent\":…}"`),
    /// unescaped by serde for this one string; `None` for control characters or a string that
    /// does not end.
    fn escaped_string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let start = self.pos - 1;
        let bytes = self.text.as_bytes();
        let mut at = self.pos;
        loop {
            match *bytes.get(at)? {
                b'"' => break,
                b'\\' => at += 2,
                0..=0x1f => return None,
                _ => at += 1,
            }
        }
        self.pos = at + 1;
        serde_json::from_str(&self.text[start..self.pos]).ok()
    }

    /// A plain non-negative integer that fits a `u64` (no sign, fraction, exponent or leading 0).
    fn integer(&mut self) -> Option<u64> {
        self.skip_whitespace();
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(&digit @ b'0'..=b'9') = bytes.get(self.pos) {
            value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        let leading_zero = digits > 1 && bytes[start] == b'0';
        let continues = matches!(bytes.get(self.pos), Some(b'.' | b'e' | b'E'));
        (digits > 0 && !leading_zero && !continues).then_some(value)
    }

    fn boolean(&mut self) -> Option<bool> {
        self.skip_whitespace();
        let rest = &self.text[self.pos..];
        let (value, len) = if rest.starts_with("true") {
            (true, 4)
        } else if rest.starts_with("false") {
            (false, 5)
        } else {
            return None;
        };
        self.pos += len;
        Some(value)
    }

    /// Any JSON value, checked by serde_json and kept as text.
    fn raw(&mut self) -> Option<&'a RawValue> {
        let rest = &self.text[self.pos..];
        let mut deserializer = serde_json::Deserializer::from_str(rest);
        let raw = <&RawValue>::deserialize(&mut deserializer).ok()?;
        let value = raw.get();
        self.pos = value.as_ptr() as usize + value.len() - self.text.as_ptr() as usize;
        Some(raw)
    }

    /// An object payload, read member by member (each value checked by serde_json): its text,
    /// and its parts when it has the shape of a command's (`payload` and `parameter`, each at most
    /// once, nothing else) — so a command's payload is gone through once, not once as a whole
    /// and again for its parts.
    fn payload_object(&mut self) -> Option<(&'a str, Option<CommandParts<'a>>)> {
        self.skip_whitespace();
        let start = self.pos;
        let mut parts = CommandParts::default();
        let mut command_shaped = true;
        self.object(&["payload", "parameter"], |scanner, key| {
            let value = scanner.raw()?.get();
            let slot = match key {
                Some(0) => &mut parts.payload,
                Some(_) => &mut parts.parameter,
                None => {
                    command_shaped = false;
                    return Some(());
                }
            };
            command_shaped &= slot.replace(value).is_none();
            Some(())
        })?;
        Some((&self.text[start..self.pos], command_shaped.then_some(parts)))
    }

    /// Calls `member` with the index in `keys` of each key of an object (`None` for another key;
    /// it reads the value), until the closing brace. Keys are looked for in the order of `keys`
    /// first, the order the encoder writes them in: a key where it is expected costs one compare.
    fn object(&mut self, keys: &[&str], mut member: impl FnMut(&mut Self, Option<usize>) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.text.as_bytes().get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Some(());
        }
        let mut expected = 0;
        loop {
            self.skip_whitespace();
            let index = match keys.get(expected) {
                Some(key) if self.at_key(key) => {
                    self.pos += key.len() + 3;
                    Some(expected)
                }
                _ => {
                    let key = self.string()?;
                    self.expect(b':')?;
                    keys.iter().position(|known| *known == key)
                }
            };
            if let Some(index) = index {
                expected = index + 1;
            }
            member(self, index)?;
            match self.next_byte()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Whether `"key":` comes next.
    fn at_key(&self, key: &str) -> bool {
        let rest = &self.text.as_bytes()[self.pos..];
        rest.len() > key.len() + 2
            && rest[0] == b'"'
            && rest[1..=key.len()] == *key.as_bytes()
            && rest[key.len() + 1] == b'"'
            && rest[key.len() + 2] == b':'
    }

    fn address(&mut self) -> Option<std::sync::Arc<Address>> {
        self.skip_whitespace();
        // An address met lately, written the way the codec writes it: one compare.
        if let Some((address, len)) = recent::address_at(&self.text.as_bytes()[self.pos..]) {
            self.pos += len;
            return Some(address);
        }
        let (mut name, mut version, mut target, mut instance) = (None, None, None, None);
        self.object(&["serviceName", "serviceVersion", "serviceTarget", "instanceId"], |scanner, key| {
            let slot = match key {
                Some(0) => &mut name,
                Some(1) => &mut version,
                Some(2) => &mut target,
                Some(_) => &mut instance,
                None => return scanner.raw().map(drop),
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(Cow::Borrowed(scanner.string()?));
            Some(())
        })?;
        let wire = WireAddress {
            service_name: name?,
            service_version: version?,
            service_target: target?,
            instance_id: instance,
        };
        Some(wire.shared())
    }

    fn envelope(&mut self) -> Option<WireEnvelope<'a>> {
        let mut wire = WireEnvelope::default();
        let mut seen = 0u32;
        self.object(&KEYS, |scanner, key| {
            let Some(index) = key else {
                // serde ignores keys it does not know; so does the scanner, once it checked the value.
                return scanner.raw().map(drop);
            };
            if seen & 1 << index != 0 {
                return None;
            }
            seen |= 1 << index;
            let id = |scanner: &mut Self| scanner.string()?.parse::<Id>().ok();
            let name = |scanner: &mut Self| scanner.string().map(Name::new);
            match index {
                0 => wire.message_type = Cow::Borrowed(scanner.string()?),
                1 => wire.id = Some(id(scanner)?),
                2 => wire.timestamp = scanner.integer()?,
                3 => wire.content_type = Cow::Borrowed(scanner.string()?),
                4 => wire.content_encoding = Cow::Borrowed(scanner.string()?),
                5 => wire.sender = Some(scanner.address()?),
                6 => wire.receiver = Some(scanner.address()?),
                7 => wire.trace_id = Some(id(scanner)?),
                8 => wire.correlation_id = Some(id(scanner)?),
                9 => wire.principal_id = Some(name(scanner)?),
                10 => wire.tenant_id = Some(name(scanner)?),
                11 => wire.event_name = Some(name(scanner)?),
                12 => wire.otp = Some(scanner.escaped_string()?.into()),
                13 => wire.instance_id = Some(name(scanner)?),
                14 => wire.is_handled_error = Some(scanner.boolean()?),
                _ => {
                    scanner.skip_whitespace();
                    // Member by member only when it may be a command's (messageType usually
                    // comes first): anything else is checked whole, in one call.
                    let maybe_command = seen & 1 == 0 || wire.message_type == "command";
                    if maybe_command && scanner.text.as_bytes().get(scanner.pos) == Some(&b'{') {
                        let (text, parts) = scanner.payload_object()?;
                        wire.payload = Some(text);
                        wire.command_parts = parts;
                    } else {
                        wire.payload = Some(scanner.raw()?.get()).filter(|text| *text != "null");
                    }
                }
            }
            Some(())
        })?;
        // What serde requires: messageType, id, timestamp and sender.
        const REQUIRED: u32 = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 5;
        if seen & REQUIRED != REQUIRED {
            return None;
        }
        if !seen & (1 << 3) != 0 {
            wire.content_type = Cow::Borrowed(crate::envelope::CONTENT_TYPE_JSON);
        }
        if !seen & (1 << 4) != 0 {
            wire.content_encoding = Cow::Borrowed(crate::envelope::CONTENT_ENCODING_UTF8);
        }
        Some(wire)
    }
}

/// A command's `{"payload": …, "parameter": …}` as JSON text, each part `None` when absent; `None`
/// for anything else (serde reads it, and names what is wrong).
pub(crate) fn command_parts(text: &str) -> Option<CommandParts<'_>> {
    let mut scanner = Scanner { text, pos: 0 };
    let (_, parts) = scanner.payload_object()?;
    scanner.skip_whitespace();
    if scanner.pos == text.len() { parts } else { None }
}

/// Writes `envelope` as JSON: the bytes its `Serialize` impl gives, in the same key order.
pub(crate) fn encode(envelope: &Envelope, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"messageType\":");
    string(out, envelope.message_type())?;
    out.extend_from_slice(b",\"id\":");
    id(out, &envelope.id)?;
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(itoa::Buffer::new().format(envelope.timestamp).as_bytes());
    out.extend_from_slice(b",\"contentType\":");
    string(out, envelope.content.content_type())?;
    out.extend_from_slice(b",\"contentEncoding\":");
    string(out, envelope.content.content_encoding())?;
    out.extend_from_slice(b",\"sender\":");
    known_address(out, &envelope.sender)?;
    if let Some(receiver) = &envelope.receiver {
        out.extend_from_slice(b",\"receiver\":");
        known_address(out, receiver)?;
    }
    for (key, value) in [
        (&b",\"traceId\":"[..], &envelope.trace_id),
        (b",\"correlationId\":", &envelope.correlation_id),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            id(out, value)?;
        }
    }
    for (key, value) in [
        (&b",\"principalId\":"[..], envelope.principal_id.as_deref()),
        (b",\"tenantId\":", envelope.tenant_id.as_deref()),
        (b",\"eventName\":", envelope.event_name.as_deref()),
        (b",\"otp\":", envelope.otp.as_deref()),
        (
            b",\"instanceId\":",
            envelope
                .instance_id
                .as_ref()
                .or(envelope.sender.instance_id.as_ref())
                .map(|name| &**name),
        ),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            string(out, value)?;
        }
    }
    match &envelope.message {
        Message::Command { payload, parameter } => {
            out.extend_from_slice(b",\"payload\":{\"payload\":");
            body(out, payload)?;
            out.extend_from_slice(b",\"parameter\":");
            body(out, parameter)?;
            out.push(b'}');
        }
        Message::Success { payload } | Message::Custom { payload } => {
            out.extend_from_slice(b",\"payload\":");
            body(out, payload)?;
        }
        Message::Error { error, is_handled_error } => {
            out.extend_from_slice(if *is_handled_error {
                b",\"isHandledError\":true,\"payload\":"
            } else {
                b",\"isHandledError\":false,\"payload\":"
            });
            serde_json::to_writer(&mut *out, error)?;
        }
        Message::Info { payload, .. } => {
            if let Some(payload) = payload {
                out.extend_from_slice(b",\"payload\":");
                serde_json::to_writer(&mut *out, payload)?;
            }
        }
    }
    out.push(b'}');
    Ok(())
}

/// The index of the first byte that ends or escapes a JSON string's plain run — `"`, `\\` or a
/// control character — or the length. Eight bytes at a time: every message has some twenty
/// strings to read and as many to write.
fn first_special(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // `(x - ONES * n) & !x & HIGH` marks bytes of `x` below `n`; the lowest mark is always a real
    // one (a borrow only spreads upwards), which is the one looked at.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let marks = below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1) | below(word, 0x20);
        if marks != 0 {
            return i * 8 + (marks.trailing_zeros() / 8) as usize;
        }
    }
    let done = bytes.len() - chunks.remainder().len();
    done + chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(chunks.remainder().len())
}

/// A JSON string: copied between quotes when nothing in it needs escaping, else escaped by serde_json.
fn string(out: &mut Vec<u8>, text: &str) -> Result<(), serde_json::Error> {
    if first_special(text.as_bytes()) < text.len() {
        return serde_json::to_writer(&mut *out, text);
    }
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

fn id(out: &mut Vec<u8>, id: &Id) -> Result<(), serde_json::Error> {
    match id.as_u128() {
        Some(bits) => {
            out.push(b'"');
            out.extend_from_slice(&crate::id::hex_digits(bits));
            out.push(b'"');
            Ok(())
        }
        None => string(out, &id.to_string()),
    }
}

/// An address from the table of recent ones, written there once.
fn known_address(out: &mut Vec<u8>, address: &std::sync::Arc<Address>) -> Result<(), serde_json::Error> {
    if recent::write_json(address, out) {
        return Ok(());
    }
    write_address(out, address)
}

/// `{"serviceName":…,"serviceVersion":…,"serviceTarget":…,"instanceId":…}`.
pub(crate) fn write_address(out: &mut Vec<u8>, address: &Address) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"serviceName\":");
    string(out, &address.service_name)?;
    out.extend_from_slice(b",\"serviceVersion\":");
    string(out, &address.service_version)?;
    out.extend_from_slice(b",\"serviceTarget\":");
    string(out, &address.service_target)?;
    if let Some(instance) = &address.instance_id {
        out.extend_from_slice(b",\"instanceId\":");
        string(out, instance)?;
    }
    out.push(b'}');
    Ok(())
}

fn body(out: &mut Vec<u8>, body: &Body) -> Result<(), serde_json::Error> {
    match body {
        Body::Raw(raw) => out.extend_from_slice(raw.text()),
        Body::EmptyObject => out.extend_from_slice(b"{}"),
        Body::Json(value) => serde_json::to_writer(&mut *out, &**value)?,
        Body::Typed(value) => serde_json::to_writer(&mut *out, &**value)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::HandledError;

    const CAPTURED: &str = include_str!("../tests/data/purista-envelopes-captured.txt");

    /// Envelopes as PURISTA wrote them, and as purest writes each kind of message.
    fn samples() -> Vec<Vec<u8>> {
        let mut samples: Vec<Vec<u8>> = CAPTURED
            .split("\n## ")
            .skip(1)
            .map(|section| section.split_once('\n').expect("heading").1.trim().as_bytes().to_vec())
            .collect();
        let sender = Arc::new(Address::new("client", "1", ""));
        let mut command = Envelope::new(
            sender.clone(),
            Message::Command {
                payload: Body::typed(serde_json::json!({"name": "ann", "tags": ["a", "b"], "n": 1.5})),
                parameter: Body::empty_object(),
            },
        );
        command.receiver = Some(Arc::new(Address {
            instance_id: Some("i-1".into()),
            ..Address::new("user", "1", "signUp")
        }));
        command.correlation_id = Some(Id::random());
        command.trace_id = Some("a-trace-id-from-elsewhere".parse().unwrap());
        command.principal_id = Some("user \"quoted\" \\ and\ttab".into());
        command.tenant_id = Some("tenant-é".into());
        command.otp = Some(r#"{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#.into());
        samples.push(command.to_json().unwrap());
        let mut traced = Envelope::new(sender.clone(), Message::Custom { payload: Body::typed(7) });
        traced.event_name = Some("user.registered".into());
        traced.otp = Some(crate::trace_context::otp_of(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ));
        samples.push(traced.to_json().unwrap());
        let mut success = Envelope::new(sender.clone(), Message::Success { payload: Body::typed(42) });
        success.event_name = Some("user.registered".into());
        success.instance_id = Some("top-level".into());
        samples.push(success.to_json().unwrap());
        let error = Envelope::new(
            sender.clone(),
            Message::Error {
                error: Box::new(HandledError::bad_request("no").with_data(serde_json::json!({"why": [1, 2]}))),
                is_handled_error: true,
            },
        );
        samples.push(error.to_json().unwrap());
        let info = Envelope::new(
            sender,
            Message::Info {
                message_type: "infoServiceReady".into(),
                payload: Some(Box::new(serde_json::json!({"a": null}))),
            },
        );
        samples.push(info.to_json().unwrap());
        samples.push(br#"{"messageType":"command","id":"0e8cc5894a12c924ea66a95db1c1a223","timestamp":1,"sender":{"serviceName":"a","serviceVersion":"1","serviceTarget":"b"},"receiver":{"serviceName":"c","serviceVersion":"1","serviceTarget":"d"},"payload":{ "parameter" : {"x":[1,{}]} , "payload" : "s\"q" }}"#.to_vec());
        samples.push(br#"{"messageType":"customMessage","id":"0e8cc5894a12c924ea66a95db1c1a223","timestamp":1,"sender":{"serviceName":"a","serviceVersion":"1","serviceTarget":"b"},"eventName":"e","payload":{"a b":"x\"y","n":[1,{"k":"v"}],"e":{},"payload":1,"payload":2}}"#.to_vec());
        samples.push(br#" { "messageType" : "customMessage", "id" : "0e8cc5894a12c924ea66a95db1c1a223", "timestamp" : 0, "sender" : { "serviceName" : "a", "serviceVersion" : "1", "serviceTarget" : "", "extra" : [1, {"x": null}] }, "unknown" : {"deep": [true, false, null]}, "payload" : [ 1 , 2 ] } "#.to_vec());
        samples
    }

    fn reference(bytes: &[u8]) -> Result<Envelope, String> {
        serde_json::from_slice::<WireEnvelope<'_>>(bytes)
            .map_err(|e| e.to_string())?
            .into_envelope(bytes, None)
    }

    fn scanned(bytes: &[u8]) -> Option<Result<Envelope, String>> {
        scan(bytes).map(|wire| wire.into_envelope(bytes, None))
    }

    /// The scanner either leaves a message to serde or reads exactly what serde reads: over
    /// every sample and every one-byte deletion, replacement and insertion of each.
    #[test]
    fn the_scanner_reads_what_serde_reads_or_leaves_it_to_serde() {
        const BYTES: &[u8] = b"\"\\{}[],:0 9-.enx\x01\xff";
        let (mut taken, mut left) = (0usize, 0usize);
        for sample in samples() {
            let text = String::from_utf8_lossy(&sample);
            match scanned(&sample) {
                Some(scan) => assert_eq!(scan.as_ref(), reference(&sample).as_ref(), "{text}"),
                // Escapes are serde's to read.
                None => assert!(text.contains('\\'), "the scanner does not take {text}"),
            }
            let mut variants = Vec::new();
            for i in 0..sample.len() {
                let mut deleted = sample.clone();
                deleted.remove(i);
                variants.push(deleted);
                for &byte in BYTES {
                    let mut replaced = sample.clone();
                    replaced[i] = byte;
                    variants.push(replaced);
                    let mut inserted = sample.clone();
                    inserted.insert(i, byte);
                    variants.push(inserted);
                }
            }
            for variant in variants {
                let Some(fast) = scanned(&variant) else {
                    left += 1;
                    continue;
                };
                taken += 1;
                let slow = reference(&variant);
                let text = String::from_utf8_lossy(&variant);
                match (&fast, &slow) {
                    (Ok(fast), Ok(slow)) => {
                        assert_eq!(fast, slow, "{text}");
                        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{text}");
                    }
                    (Err(fast), Err(slow)) => assert_eq!(fast, slow, "{text}"),
                    _ => panic!("the scanner and serde disagree on {text}: {fast:?} vs {slow:?}"),
                }
            }
        }
        println!("the scanner took {taken} variants and left {left} to serde");
        assert!(taken > 1000 && left > 1000, "taken {taken}, left {left}");
    }

    /// A traced message's `otp` holds escaped JSON; the scanner reads it (else every traced
    /// message would take serde's slower path).
    #[test]
    fn the_scanner_reads_a_traced_message() {
        let mut traced = Envelope::new(Arc::new(Address::new("a", "1", "b")), Message::Custom { payload: Body::typed(1) });
        traced.otp = Some(crate::trace_context::otp_of(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ));
        let bytes = traced.to_json().unwrap();
        let scanned = scanned(&bytes).expect("the scanner takes it").unwrap();
        assert_eq!(scanned.otp, traced.otp);
    }

    #[test]
    fn first_special_finds_the_first_quote_backslash_or_control_character() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    // Bytes just around the special ones must not count.
                    for (i, byte) in bytes.iter_mut().enumerate() {
                        *byte = [b'!', b'#', b'[', b']', 0x20, 0x7f, 0xc3][i % 7];
                    }
                    if at < len {
                        bytes[at] = special;
                        if at + 1 < len {
                            bytes[at + 1] = b'"';
                        }
                    }
                    assert_eq!(first_special(&bytes), at, "{bytes:?}");
                }
            }
        }
    }

    /// The encoder writes the bytes of the `Serialize` impl.
    #[test]
    fn the_encoder_writes_what_serde_writes() {
        for sample in samples() {
            let envelope = reference(&sample).unwrap();
            let mut fast = Vec::new();
            encode(&envelope, &mut fast).unwrap();
            let slow = serde_json::to_vec(&envelope).unwrap();
            assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow));
        }
    }
}
