//! PURISTA's NATS subject scheme (docs/ARCHITECTURE.md §4), token for token, so PURISTA and purest services
//! find each other's messages on one NATS server:
//!
//! `purista.<messageType>.<principalId>.<tenantId>.<senderInstanceId>.<senderName>.<senderVersion>.
//! <senderTarget>.<eventName>.<receiverInstanceId>.<receiverName>.<receiverVersion>.<receiverTarget>`
//!
//! Every token is snake-cased; a missing one is `empty`.

use std::cell::RefCell;
use std::sync::Arc;

use purest_core::bridge::EventFilter;
use purest_core::{Address, Envelope, Message};

/// The first token of every subject.
pub const PREFIX: &str = "purista";
/// The token written for a missing value.
pub const EMPTY: &str = "empty";

/// PURISTA's `convertToSnakeCase`: splits into words (acronyms, capitalized or lowercase words
/// with trailing digits, single capitals, digit runs), lowercases and joins them with `_`.
/// Characters that belong to no word (`.`, `-`, spaces, non-ASCII) only separate words.
///
/// ```
/// use purest_nats::subject::snake_case;
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

/// [`snake_case`], appended to `out` (subjects are built in one buffer).
fn push_snake_case(text: &str, out: &mut String) {
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

/// Appends one subject token: snake-cased, `empty` when missing or when nothing usable is left
/// of it (an empty token, or one with `.`, `*`, `>` or a space, would break the subject).
fn push_token(out: &mut String, value: Option<&str>) {
    if !out.is_empty() {
        out.push('.');
    }
    let start = out.len();
    if let Some(value) = value {
        push_snake_case(value, out);
    }
    let token = &out[start..];
    if token.is_empty() || token.contains(['.', '*', '>', ' ']) {
        out.truncate(start);
        out.push_str(EMPTY);
    }
}

/// The subject an envelope is published on.
pub fn subject_of(envelope: &Envelope) -> String {
    let mut subject = String::with_capacity(160);
    subject.push_str(PREFIX);
    match envelope.message {
        // The four kinds purest sends, snake-cased once.
        Message::Command { .. } => subject.push_str(".command"),
        Message::Success { .. } => subject.push_str(".command_success_response"),
        Message::Error { .. } => subject.push_str(".command_error_response"),
        Message::Custom { .. } => subject.push_str(".custom_message"),
        Message::Info { .. } => push_token(&mut subject, Some(envelope.message_type())),
    }
    push_token(&mut subject, envelope.principal_id.as_deref());
    push_token(&mut subject, envelope.tenant_id.as_deref());
    push_address(&mut subject, Some(&envelope.sender));
    push_token(&mut subject, envelope.event_name.as_deref());
    push_address(&mut subject, envelope.receiver.as_ref());
    subject
}

/// Addresses whose four subject tokens were built lately on this thread, kept alive with them
/// (so a pointer identifies its entry): a process sends from and to few addresses, and
/// snake-casing their names (an instance id is some twenty words) is most of a subject's cost.
struct AddressTokens {
    slots: Vec<(Arc<Address>, Box<str>)>,
    next: usize,
}

const ADDRESS_TOKEN_SLOTS: usize = 32;

thread_local! {
    static ADDRESS_TOKENS: RefCell<AddressTokens> = const { RefCell::new(AddressTokens { slots: Vec::new(), next: 0 }) };
}

/// Appends the tokens `instanceId.serviceName.serviceVersion.serviceTarget` of `address`
/// (`empty` for each when there is none).
fn push_address(out: &mut String, address: Option<&Arc<Address>>) {
    let Some(address) = address else {
        out.push_str(".empty.empty.empty.empty");
        return;
    };
    ADDRESS_TOKENS.with(|tokens| {
        let mut tokens = tokens.borrow_mut();
        if let Some((_, known)) = tokens.slots.iter().find(|(known, _)| Arc::ptr_eq(known, address)) {
            out.push('.');
            out.push_str(known);
            return;
        }
        let start = out.len() + 1;
        push_token(out, address.instance_id.as_deref());
        for value in [&address.service_name, &address.service_version, &address.service_target] {
            push_token(out, Some(value));
        }
        let entry = (address.clone(), Box::from(&out[start..]));
        if tokens.slots.len() < ADDRESS_TOKEN_SLOTS {
            tokens.slots.push(entry);
        } else {
            let next = tokens.next;
            tokens.slots[next] = entry;
            tokens.next = (next + 1) % ADDRESS_TOKEN_SLOTS;
        }
    });
}

/// The subject a command's handlers listen on: any sender, this receiver.
pub fn command_subject(command: &Address) -> String {
    let mut subject = format!("{PREFIX}.command");
    subject.push_str(&".*".repeat(8));
    for value in [&command.service_name, &command.service_version, &command.service_target] {
        push_token(&mut subject, Some(value));
    }
    subject
}

/// The queue group sharing a command (or subscription) between instances of one service:
/// `PURISTA_QUEUE_<NAME>_<VERSION>_<TARGET>`, as PURISTA names it.
pub fn queue_group(address: &Address) -> String {
    format!(
        "{PREFIX}_queue_{}_{}_{}",
        address.service_name, address.service_version, address.service_target
    )
    .to_uppercase()
}

/// The queue group sharing a best-effort subscription between instances: the address's, plus a
/// digest of the subject. NATS groups queue subscribers by name across subjects, so two
/// subscriptions under one address with different filters need different names.
pub fn subscription_queue_group(address: &Address, subject: &str) -> String {
    // FNV-1a: the same digest in every process and build (std's hasher promises neither).
    let digest = subject.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}_{digest:016X}", queue_group(address))
}

/// The subject pattern matching what a subscription filter selects; fields the subject does not
/// carry (none today) would be checked after delivery by [`EventFilter::matches`].
pub fn subscription_subject(filter: &EventFilter) -> String {
    let mut subject = PREFIX.to_owned();
    let any = |subject: &mut String| subject.push_str(".*");
    let field = |subject: &mut String, value: &Option<purest_core::Name>| match value {
        Some(value) => push_token(subject, Some(value)),
        None => subject.push_str(".*"),
    };
    field(&mut subject, &filter.message_type);
    field(&mut subject, &filter.principal_id);
    field(&mut subject, &filter.tenant_id);
    any(&mut subject);
    field(&mut subject, &filter.sender_service);
    field(&mut subject, &filter.sender_version);
    field(&mut subject, &filter.sender_target);
    field(&mut subject, &filter.event_name);
    for _ in 0..4 {
        any(&mut subject);
    }
    subject
}

#[cfg(test)]
mod tests {
    use super::*;
    use purest_core::{Body, Message};
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
    fn token_by_token(envelope: &Envelope) -> String {
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
            push_token(&mut subject, value);
        }
        subject
    }

    #[test]
    fn kept_tokens_give_the_same_subjects() {
        let sender = Arc::new(Address {
            instance_id: Some(purest_core::Id::random().to_string().into()),
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
                error: Box::new(purest_core::HandledError::bad_request("no")),
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
            assert_eq!(subject_of(&envelope), token_by_token(&envelope));
            envelope.receiver = Some(Arc::new(Address::named("Client", "2", "")));
            envelope.event_name = Some("user.Registered".into());
            envelope.tenant_id = Some("tenant*1".into());
            for _ in 0..2 {
                assert_eq!(subject_of(&envelope), token_by_token(&envelope));
            }
        }
    }

    #[test]
    fn subjects_follow_the_purista_scheme() {
        let mut command = Envelope::new(
            Address::named("Client", "1", "cli"),
            Message::Command {
                payload: Body::empty_object(),
                parameter: Body::empty_object(),
            },
        );
        command.receiver = Some(Arc::new(Address::named("UserService", "1.0.0", "signUp")));
        command.principal_id = Some("user-42".into());
        assert_eq!(
            subject_of(&command),
            "purista.command.user_42.empty.empty.client.1.cli.empty.empty.user_service.1_0_0.sign_up"
        );
        assert_eq!(
            command_subject(&command.receiver.clone().unwrap()),
            "purista.command.*.*.*.*.*.*.*.*.user_service.1_0_0.sign_up"
        );
        assert_eq!(
            queue_group(&Address::named("UserService", "1", "signUp")),
            "PURISTA_QUEUE_USERSERVICE_1_SIGNUP"
        );
        let filter = EventFilter {
            event_name: Some("newUserRegistered".into()),
            tenant_id: Some("t1".into()),
            ..Default::default()
        };
        assert_eq!(subscription_subject(&filter), "purista.*.*.t1.*.*.*.*.new_user_registered.*.*.*.*");
    }
}
