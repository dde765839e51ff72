//! PURISTA's NATS subject scheme (DESIGN.md §4), token for token, so PURISTA and purest services
//! find each other's messages on one NATS server:
//!
//! `purista.<messageType>.<principalId>.<tenantId>.<senderInstanceId>.<senderName>.<senderVersion>.
//! <senderTarget>.<eventName>.<receiverInstanceId>.<receiverName>.<receiverVersion>.<receiverTarget>`
//!
//! Every token is snake-cased; a missing one is `empty`.

use purest_core::bridge::EventFilter;
use purest_core::{Address, Envelope};

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
    let bytes = text.as_bytes();
    let upper = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_uppercase);
    let lower = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_lowercase);
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    // `\b` of a JavaScript regex: word characters are ASCII letters, digits and `_`.
    let word = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let boundary = |i: usize| i > 0 && word(i - 1) != word(i) || i == 0 && word(0);
    // `[A-Z][a-z]+[0-9]*` starts at `i`.
    let capitalized_word_at = |i: usize| upper(i) && lower(i + 1);

    let mut words: Vec<&str> = Vec::new();
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
        words.push(&text[i..end]);
        i = end;
    }
    if words.is_empty() {
        return text.to_owned();
    }
    words.join("_").to_ascii_lowercase()
}

/// One subject token: snake-cased, `empty` when missing or when nothing is left of it (an empty
/// token would make the subject invalid).
fn token(value: Option<&str>) -> String {
    match value.map(snake_case) {
        Some(token) if !token.is_empty() && !token.contains(['.', '*', '>', ' ']) => token,
        _ => EMPTY.to_owned(),
    }
}

/// The subject an envelope is published on.
pub fn subject_of(envelope: &Envelope) -> String {
    let receiver = envelope.receiver.as_deref();
    [
        PREFIX.to_owned(),
        token(Some(envelope.message_type())),
        token(envelope.principal_id.as_deref()),
        token(envelope.tenant_id.as_deref()),
        token(envelope.sender.instance_id.as_deref()),
        token(Some(&envelope.sender.service_name)),
        token(Some(&envelope.sender.service_version)),
        token(Some(&envelope.sender.service_target)),
        token(envelope.event_name.as_deref()),
        token(receiver.and_then(|r| r.instance_id.as_deref())),
        token(receiver.map(|r| &*r.service_name)),
        token(receiver.map(|r| &*r.service_version)),
        token(receiver.map(|r| &*r.service_target)),
    ]
    .join(".")
}

/// The subject a command's handlers listen on: any sender, this receiver.
pub fn command_subject(command: &Address) -> String {
    let mut tokens = vec![PREFIX.to_owned(), token(Some("command"))];
    tokens.extend(std::iter::repeat_n("*".to_owned(), 8));
    tokens.extend([
        token(Some(&command.service_name)),
        token(Some(&command.service_version)),
        token(Some(&command.service_target)),
    ]);
    tokens.join(".")
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

/// The subject pattern matching what a subscription filter selects; fields the subject does not
/// carry (none today) would be checked after delivery by [`EventFilter::matches`].
pub fn subscription_subject(filter: &EventFilter) -> String {
    let pattern = |value: &Option<purest_core::Name>| value.as_deref().map_or_else(|| "*".to_owned(), |v| token(Some(v)));
    [
        PREFIX.to_owned(),
        pattern(&filter.message_type),
        pattern(&filter.principal_id),
        pattern(&filter.tenant_id),
        "*".to_owned(),
        pattern(&filter.sender_service),
        pattern(&filter.sender_version),
        pattern(&filter.sender_target),
        pattern(&filter.event_name),
        "*".to_owned(),
        "*".to_owned(),
        "*".to_owned(),
        "*".to_owned(),
    ]
    .join(".")
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
        // The DESIGN.md examples.
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
