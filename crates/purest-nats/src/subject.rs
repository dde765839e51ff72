//! PURISTA's NATS subject scheme (docs/ARCHITECTURE.md §4), token for token, so PURISTA and purest services
//! find each other's messages on one NATS server:
//!
//! `purista.<messageType>.<principalId>.<tenantId>.<senderInstanceId>.<senderName>.<senderVersion>.
//! <senderTarget>.<eventName>.<receiverInstanceId>.<receiverName>.<receiverVersion>.<receiverTarget>`
//!
//! Every token is snake-cased; a missing one is `empty`.

use purest_core::bridge::EventFilter;
use purest_core::topic::{self, Style};
use purest_core::{Address, Envelope};

pub use purest_core::topic::PREFIX;
/// The token written for a missing value.
pub const EMPTY: &str = Style::NATS.missing;

pub use purest_core::topic::snake_case;

/// The subject an envelope is published on.
pub fn subject_of(envelope: &Envelope) -> String {
    topic::topic_of(envelope, &Style::NATS)
}

/// The subject a command's handlers listen on: any sender, this receiver.
pub fn command_subject(command: &Address) -> String {
    topic::command_filter(command, &Style::NATS)
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

/// The subject pattern matching what a subscription filter selects.
pub fn subscription_subject(filter: &EventFilter) -> String {
    topic::subscription_filter(filter, &Style::NATS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use purest_core::{Body, Message};
    use std::sync::Arc;

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
