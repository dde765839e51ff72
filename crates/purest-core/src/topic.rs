//! PURISTA's 13-token topic, for bridges that route by it (NATS subjects, MQTT topics): the
//! message type, principal, tenant, sender instance, name, version and target, event name,
//! receiver instance, name, version and target, after the prefix `purista`. Every token is
//! snake-cased; a missing one is written as the bridge's [`Style::missing`] token.
//!
//! ```
//! use purest_core::topic::{self, Style};
//! use purest_core::{Address, Body, Envelope, Message};
//! let mut command = Envelope::new(Address::named("Client", "1", "cli"),
//!     Message::Command { payload: Body::empty_object(), parameter: Body::empty_object() });
//! command.receiver = Some(Address::named("UserService", "1.0.0", "signUp").into());
//! assert_eq!(topic::topic_of(&command, &Style::MQTT),
//!     "purista/command/none/none/none/client/1/cli/none/none/user_service/1_0_0/sign_up");
//! assert_eq!(topic::snake_case("XMLHttpRequest"), "xml_http_request");
//! ```

use std::cell::RefCell;
use std::sync::Arc;

use crate::bridge::EventFilter;
use crate::envelope::{Address, Envelope, Message};
use crate::name::Name;

/// The first token of every topic.
pub const PREFIX: &str = "purista";

/// How one transport writes the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Between tokens (`.` on NATS, `/` on MQTT).
    pub separator: char,
    /// The token for a missing value (`empty` on NATS, `none` on MQTT, as PURISTA writes them).
    pub missing: &'static str,
    /// Matches any one token in a filter (`*`, `+`).
    pub any: &'static str,
    /// Characters a token must not contain; a token with one is written as `missing`.
    pub forbidden: &'static [char],
}

impl Style {
    /// NATS subjects: `purista.command.empty.…`.
    pub const NATS: Style = Style {
        separator: '.',
        missing: "empty",
        any: "*",
        forbidden: &['.', '*', '>', ' '],
    };
    /// MQTT topics: `purista/command/none/…`.
    pub const MQTT: Style = Style {
        separator: '/',
        missing: "none",
        any: "+",
        forbidden: &['/', '+', '#', '\0'],
    };
}

/// PURISTA's `convertToSnakeCase`: splits into words (acronyms, capitalized or lowercase words
/// with trailing digits, single capitals, digit runs), lowercases and joins them with `_`.
/// Characters that belong to no word (`.`, `-`, spaces, non-ASCII) only separate words.
///
/// ```
/// use purest_core::topic::snake_case;
/// assert_eq!(snake_case("ServiceB"), "service_b");
/// assert_eq!(snake_case("1.0.0"), "1_0_0");
/// assert_eq!(snake_case("camelCaseText"), "camel_case_text");
/// assert_eq!(snake_case("XMLHttpRequest"), "xml_http_request");
/// assert_eq!(snake_case("some-mixed_string _With spaces"), "some_mixed_string_with_spaces");
/// ```
pub fn snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    push_snake_case(text, &mut out);
    out
}

/// [`snake_case`], appended to `out` (topics are built in one buffer).
pub fn push_snake_case(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let upper = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_uppercase);
    let lower = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_lowercase);
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    // `\b` of a JavaScript regex: word characters are ASCII letters, digits and `_`.
    let word = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let boundary = |i: usize| i > 0 && word(i - 1) != word(i) || i == 0 && word(0);
    // `[A-Z][a-z]+[0-9]*` starts at `i`.
    let capitalized_word_at = |i: usize| upper(i) && lower(i + 1);

    let start = out.len();
    let mut i = 0;
    while i < bytes.len() {
        // `[A-Z]{2,}(?=[A-Z][a-z]+[0-9]*|\b)`: the longest run of capitals that ends before a
        // capitalized word or at a word boundary.
        let mut run = 0;
        while upper(i + run) {
            run += 1;
        }
        let acronym = (2..=run).rev().find(|&len| capitalized_word_at(i + len) || boundary(i + len));
        let end = if let Some(len) = acronym {
            i + len
        } else if lower(i) || (upper(i) && lower(i + 1)) {
            // `[A-Z]?[a-z]+[0-9]*`
            let mut end = if upper(i) { i + 1 } else { i };
            while lower(end) {
                end += 1;
            }
            while digit(end) {
                end += 1;
            }
            end
        } else if upper(i) {
            i + 1
        } else if digit(i) {
            let mut end = i;
            while digit(end) {
                end += 1;
            }
            end
        } else {
            i += 1;
            continue;
        };
        if out.len() > start {
            out.push('_');
        }
        out.extend(text[i..end].chars().map(|c| c.to_ascii_lowercase()));
        i = end;
    }
    if out.len() == start {
        out.push_str(text);
    }
}

/// Appends one token (after a separator unless `out` is empty): snake-cased, `missing` when
/// there is no value or nothing usable is left of it (an empty token, or one with a character
/// the transport reserves, would break the topic).
pub fn push_token(out: &mut String, value: Option<&str>, style: &Style) {
    if !out.is_empty() {
        out.push(style.separator);
    }
    let start = out.len();
    if let Some(value) = value {
        push_snake_case(value, out);
    }
    let token = &out[start..];
    if token.is_empty() || token.contains(style.forbidden) {
        out.truncate(start);
        out.push_str(style.missing);
    }
}

/// The topic an envelope is published on.
pub fn topic_of(envelope: &Envelope, style: &Style) -> String {
    let mut topic = String::with_capacity(160);
    topic.push_str(PREFIX);
    let kind = match envelope.message {
        // The four kinds purest sends, snake-cased once.
        Message::Command { .. } => Some("command"),
        Message::Success { .. } => Some("command_success_response"),
        Message::Error { .. } => Some("command_error_response"),
        Message::Custom { .. } => Some("custom_message"),
        Message::Info { .. } => None,
    };
    match kind {
        Some(kind) => {
            topic.push(style.separator);
            topic.push_str(kind);
        }
        None => push_token(&mut topic, Some(envelope.message_type()), style),
    }
    push_token(&mut topic, envelope.principal_id.as_deref(), style);
    push_token(&mut topic, envelope.tenant_id.as_deref(), style);
    push_address(&mut topic, Some(&envelope.sender), style);
    push_token(&mut topic, envelope.event_name.as_deref(), style);
    push_address(&mut topic, envelope.receiver.as_ref(), style);
    topic
}

/// Addresses whose four topic tokens were built lately on this thread, per style, kept alive with them
/// (so a pointer identifies its entry): a process sends from and to few addresses, and
/// snake-casing their names (an instance id is some twenty words) is most of a topic's cost.
struct AddressTokens {
    slots: Vec<(Arc<Address>, char, Box<str>)>,
    next: usize,
}

const ADDRESS_TOKEN_SLOTS: usize = 32;

thread_local! {
    static ADDRESS_TOKENS: RefCell<AddressTokens> = const { RefCell::new(AddressTokens { slots: Vec::new(), next: 0 }) };
}

/// Appends the tokens instance id, service name, version and target of `address` (`missing`
/// for each when there is none).
fn push_address(out: &mut String, address: Option<&Arc<Address>>, style: &Style) {
    let Some(address) = address else {
        for _ in 0..4 {
            out.push(style.separator);
            out.push_str(style.missing);
        }
        return;
    };
    ADDRESS_TOKENS.with(|tokens| {
        let mut tokens = tokens.borrow_mut();
        if let Some((_, _, known)) = tokens
            .slots
            .iter()
            .find(|(known, separator, _)| Arc::ptr_eq(known, address) && *separator == style.separator)
        {
            out.push(style.separator);
            out.push_str(known);
            return;
        }
        let start = out.len() + 1;
        push_token(out, address.instance_id.as_deref(), style);
        for value in [&address.service_name, &address.service_version, &address.service_target] {
            push_token(out, Some(value), style);
        }
        let entry = (address.clone(), style.separator, Box::from(&out[start..]));
        if tokens.slots.len() < ADDRESS_TOKEN_SLOTS {
            tokens.slots.push(entry);
        } else {
            let next = tokens.next;
            tokens.slots[next] = entry;
            tokens.next = (next + 1) % ADDRESS_TOKEN_SLOTS;
        }
    });
}

/// The filter a command's handlers listen on: any sender, this receiver.
pub fn command_filter(command: &Address, style: &Style) -> String {
    let mut topic = String::with_capacity(96);
    topic.push_str(PREFIX);
    topic.push(style.separator);
    topic.push_str("command");
    for _ in 0..8 {
        topic.push(style.separator);
        topic.push_str(style.any);
    }
    for value in [&command.service_name, &command.service_version, &command.service_target] {
        push_token(&mut topic, Some(value), style);
    }
    topic
}

/// The filter matching what a subscription's filter selects.
pub fn subscription_filter(filter: &EventFilter, style: &Style) -> String {
    let mut topic = PREFIX.to_owned();
    let field = |topic: &mut String, value: &Option<Name>| match value {
        Some(value) => push_token(topic, Some(value), style),
        None => {
            topic.push(style.separator);
            topic.push_str(style.any);
        }
    };
    field(&mut topic, &filter.message_type);
    field(&mut topic, &filter.principal_id);
    field(&mut topic, &filter.tenant_id);
    field(&mut topic, &None);
    field(&mut topic, &filter.sender_service);
    field(&mut topic, &filter.sender_version);
    field(&mut topic, &filter.sender_target);
    field(&mut topic, &filter.event_name);
    for _ in 0..4 {
        field(&mut topic, &None);
    }
    topic
}

/// The filter of everything addressed to one instance: its responses (`receiverInstanceId`).
pub fn instance_filter(instance: &str, style: &Style) -> String {
    let mut topic = PREFIX.to_owned();
    for _ in 0..8 {
        topic.push(style.separator);
        topic.push_str(style.any);
    }
    push_token(&mut topic, Some(instance), style);
    for _ in 0..3 {
        topic.push(style.separator);
        topic.push_str(style.any);
    }
    topic
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, Message};
    use std::sync::Arc;

    #[test]
    fn snake_case_matches_purista() {
        // PURISTA's own test cases (packages/core/src/helper/string/convertToSnakeCase.test.ts).
        assert_eq!(snake_case("camelCaseText"), "camel_case_text");
        assert_eq!(snake_case("PascalCaseText"), "pascal_case_text");
        assert_eq!(snake_case("kebab-case-text"), "kebab_case_text");
        assert_eq!(
            snake_case("some-mixed_string _With spaces_underscores-and-hyphens"),
            "some_mixed_string_with_spaces_underscores_and_hyphens"
        );
        // The examples of docs/ARCHITECTURE.md §4.
        assert_eq!(snake_case("ServiceB"), "service_b");
        assert_eq!(snake_case("1.0.0"), "1_0_0");
        assert_eq!(snake_case("commandSuccessResponse"), "command_success_response");
        assert_eq!(snake_case("newUserRegistered"), "new_user_registered");
        assert_eq!(snake_case("user2"), "user2");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("getHTTP"), "get_http");
        assert_eq!(snake_case("0bd531a3"), "0_bd531_a3");
        assert_eq!(snake_case(""), "");
    }

    /// Every token snake-cased in turn, with no shortcut: what `subject_of` must give.
    fn token_by_token(envelope: &Envelope, style: &Style) -> String {
        let receiver = envelope.receiver.as_deref();
        let mut subject = PREFIX.to_owned();
        for value in [
            Some(envelope.message_type()),
            envelope.principal_id.as_deref(),
            envelope.tenant_id.as_deref(),
            envelope.sender.instance_id.as_deref(),
            Some(&envelope.sender.service_name),
            Some(&envelope.sender.service_version),
            Some(&envelope.sender.service_target),
            envelope.event_name.as_deref(),
            receiver.and_then(|r| r.instance_id.as_deref()),
            receiver.map(|r| &*r.service_name),
            receiver.map(|r| &*r.service_version),
            receiver.map(|r| &*r.service_target),
        ] {
            push_token(&mut subject, value, style);
        }
        subject
    }

    #[test]
    fn kept_tokens_give_the_same_topics() {
        let sender = Arc::new(Address {
            instance_id: Some(crate::Id::random().to_string().into()),
            ..Address::named("UserService", "1.0.0", "signUp")
        });
        let messages = [
            Message::Command {
                payload: Body::empty_object(),
                parameter: Body::empty_object(),
            },
            Message::Success {
                payload: Body::empty_object(),
            },
            Message::Error {
                error: Box::new(crate::HandledError::bad_request("no")),
                is_handled_error: true,
            },
            Message::Custom {
                payload: Body::empty_object(),
            },
            Message::Info {
                message_type: "infoServiceReady".into(),
                payload: None,
            },
        ];
        for message in messages {
            let mut envelope = Envelope::new(sender.clone(), message);
            for style in [Style::NATS, Style::MQTT] {
                assert_eq!(topic_of(&envelope, &style), token_by_token(&envelope, &style));
            }
            envelope.receiver = Some(Arc::new(Address::named("Client", "2", "")));
            envelope.event_name = Some("user.Registered".into());
            envelope.tenant_id = Some("tenant*1/+".into());
            for style in [Style::NATS, Style::MQTT, Style::NATS] {
                assert_eq!(topic_of(&envelope, &style), token_by_token(&envelope, &style));
            }
        }
    }

    #[test]
    fn mqtt_filters_follow_purista() {
        let command = Address::named("ping", "1", "echo");
        assert_eq!(
            command_filter(&command, &Style::MQTT),
            "purista/command/+/+/+/+/+/+/+/+/ping/1/echo"
        );
        let filter = EventFilter {
            event_name: Some("pingEchoed".into()),
            ..Default::default()
        };
        assert_eq!(
            subscription_filter(&filter, &Style::MQTT),
            "purista/+/+/+/+/+/+/+/ping_echoed/+/+/+/+"
        );
        assert_eq!(
            instance_filter("a3df0e0c6f97e479aaca48cd232c61cc", &Style::MQTT),
            "purista/+/+/+/+/+/+/+/+/a3_df0_e0_c6_f97_e479_aaca48_cd232_c61_cc/+/+/+"
        );
    }
}
