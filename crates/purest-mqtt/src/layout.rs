//! PURISTA's layout on MQTT 5 (`../shared/WIRE.md`, "MQTT 5"): topics, subscriptions, client
//! ids and the properties every publish carries.
//!
//! Topics are PURISTA's 13 tokens ([`purest_core::topic`]) joined by `/`, snake-cased, `none`
//! for a missing value — an empty one too (PURISTA drops the level, which no 13-level filter
//! matches). Every publish is QoS 1, never retained.
//!
//! | subscription | filter |
//! |---|---|
//! | a command, shared by its instances | `$share/sharedpurista/purista/command/+/+/+/+/+/+/+/+/<name>/<version>/<target>` |
//! | responses to one instance | `purista/+/+/+/+/+/+/+/+/<instance>/+/+/+` |
//! | a subscription, shared | `$share/<service>.<version>.<subscription>/purista/<filter's tokens, + elsewhere>` |
//! | a subscription on every instance | the filter without `$share/…` |
//!
//! PURISTA puts its shared subscriptions in the one group `sharedpurista` too; two services
//! subscribing one event with one filter would then split its events between them. purest names
//! a subscription's group after the subscription, so each service gets every event.

use bytes::Bytes;
use purest_core::bridge::SubscriptionRoute;
use purest_core::topic::{self, Style};
use purest_core::{Address, Envelope};
use rumqttc::v5::mqttbytes::v5::PublishProperties;

/// The share group of commands: PURISTA's.
pub const COMMAND_GROUP: &str = "sharedpurista";

/// The topic an envelope is published on.
pub fn topic_of(envelope: &Envelope) -> String {
    topic::topic_of(envelope, &Style::MQTT)
}

/// The shared subscription of a command's instances.
pub(crate) fn command_subscription(address: &Address) -> String {
    format!("$share/{COMMAND_GROUP}/{}", topic::command_filter(address, &Style::MQTT))
}

/// Everything addressed to one instance: the responses to its invokes.
pub(crate) fn response_subscription(instance: &str) -> String {
    topic::instance_filter(instance, &Style::MQTT)
}

/// The topic filter of a subscription: shared by the service's instances (a group named after
/// the subscription) or, on every instance, plain.
pub(crate) fn subscription_filter(route: &SubscriptionRoute) -> String {
    let filter = topic::subscription_filter(&route.filter, &Style::MQTT);
    if route.every_instance {
        return filter;
    }
    let address = &route.address;
    let group: String = format!("{}.{}.{}", address.service_name, address.service_version, address.service_target)
        .chars()
        .map(|c| if matches!(c, '/' | '+' | '#' | '\0') { '_' } else { c })
        .collect();
    format!("$share/{group}/{filter}")
}

/// The client id of a durable subscription's session, the same in every process that runs it
/// with the same prefix: `<prefix>-<service>-<version>-<subscription>`, and the instance for
/// one on every instance.
pub(crate) fn durable_client_id(prefix: &str, route: &SubscriptionRoute) -> String {
    let address = &route.address;
    let mut id = format!(
        "{prefix}-{}-{}-{}",
        address.service_name, address.service_version, address.service_target
    );
    if route.every_instance {
        id.push('-');
        id.push_str(address.instance_id.as_deref().unwrap_or("instance"));
    }
    id
}

/// User property names, as PURISTA writes them.
pub(crate) mod property {
    pub const MESSAGE_TYPE: &str = "messageType";
    pub const SENDER_SERVICE_NAME: &str = "senderServiceName";
    pub const SENDER_SERVICE_VERSION: &str = "senderServiceVersion";
    pub const SENDER_SERVICE_TARGET: &str = "senderServiceTarget";
    pub const SENDER_INSTANCE_ID: &str = "senderInstanceId";
    pub const RECEIVER_SERVICE_NAME: &str = "receiverServiceName";
    pub const RECEIVER_SERVICE_VERSION: &str = "receiverServiceVersion";
    pub const RECEIVER_SERVICE_TARGET: &str = "receiverServiceTarget";
    pub const RECEIVER_INSTANCE_ID: &str = "receiverInstanceId";
    pub const TRACEPARENT: &str = "traceparent";
    pub const EVENT_NAME: &str = "eventName";
    pub const PRINCIPAL_ID: &str = "principalId";
    pub const TENANT_ID: &str = "tenantId";
}

/// How long the broker keeps an event for a subscriber that is away: PURISTA's 30 days.
pub(crate) const EVENT_EXPIRY_SECONDS: u32 = 30 * 24 * 3600;

/// The properties of a publish, as PURISTA sets them: JSON, the routing headers as user
/// properties (only those the envelope has), the correlation id as `correlationData` on commands
/// and responses, and an expiry — `expiry_seconds` (a command's deadline), or 30 days.
pub fn properties(envelope: &Envelope, correlation: Option<Bytes>, expiry_seconds: Option<u32>) -> PublishProperties {
    use property::*;
    let mut user = Vec::with_capacity(12);
    let mut add = |key: &str, value: &str| user.push((key.to_owned(), value.to_owned()));
    let sender = &envelope.sender;
    add(MESSAGE_TYPE, envelope.message_type());
    add(SENDER_SERVICE_NAME, &sender.service_name);
    add(SENDER_SERVICE_VERSION, &sender.service_version);
    add(SENDER_SERVICE_TARGET, &sender.service_target);
    if let Some(instance) = &sender.instance_id {
        add(SENDER_INSTANCE_ID, instance);
    }
    if let Some(receiver) = &envelope.receiver {
        add(RECEIVER_SERVICE_NAME, &receiver.service_name);
        add(RECEIVER_SERVICE_VERSION, &receiver.service_version);
        add(RECEIVER_SERVICE_TARGET, &receiver.service_target);
        if let Some(instance) = &receiver.instance_id {
            add(RECEIVER_INSTANCE_ID, instance);
        }
    }
    if let Some(traceparent) = envelope.traceparent() {
        add(TRACEPARENT, &traceparent);
    }
    for (key, value) in [
        (EVENT_NAME, &envelope.event_name),
        (PRINCIPAL_ID, &envelope.principal_id),
        (TENANT_ID, &envelope.tenant_id),
    ] {
        if let Some(value) = value {
            add(key, value);
        }
    }
    PublishProperties {
        content_type: Some("application/json".to_owned()),
        message_expiry_interval: Some(expiry_seconds.unwrap_or(EVENT_EXPIRY_SECONDS)),
        correlation_data: correlation,
        user_properties: user,
        ..Default::default()
    }
}

/// A command's deadline as a message expiry: whole seconds, rounded up, at least 1.
pub fn expiry_of(timeout: std::time::Duration) -> u32 {
    u32::try_from(timeout.as_millis().div_ceil(1000).max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use purest_core::bridge::{DEFAULT_QUEUE_CAPACITY, EventFilter};
    use purest_core::{Body, Message, Retry};
    use std::sync::Arc;
    use std::time::Duration;

    fn route(every_instance: bool) -> SubscriptionRoute {
        SubscriptionRoute {
            address: Arc::new(Address {
                instance_id: Some("i1".into()),
                ..Address::named("ping", "1", "onPingEchoed")
            }),
            filter: EventFilter {
                event_name: Some("pingEchoed".into()),
                ..Default::default()
            },
            durable: true,
            every_instance,
            retry: Retry::default(),
            concurrency: 1,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    #[test]
    fn subscriptions_follow_purista() {
        assert_eq!(
            command_subscription(&Address::named("ping", "1", "echo")),
            "$share/sharedpurista/purista/command/+/+/+/+/+/+/+/+/ping/1/echo"
        );
        assert_eq!(
            subscription_filter(&route(false)),
            "$share/ping.1.onPingEchoed/purista/+/+/+/+/+/+/+/ping_echoed/+/+/+/+"
        );
        assert_eq!(subscription_filter(&route(true)), "purista/+/+/+/+/+/+/+/ping_echoed/+/+/+/+");
        assert_eq!(durable_client_id("purest", &route(false)), "purest-ping-1-onPingEchoed");
        assert_eq!(durable_client_id("p", &route(true)), "p-ping-1-onPingEchoed-i1");
    }

    #[test]
    fn a_command_carries_purista_properties() {
        let mut command = Envelope::new(
            Address::named("caller", "1", "callPing"),
            Message::Command {
                payload: Body::empty_object(),
                parameter: Body::empty_object(),
            },
        );
        command.receiver = Some(Arc::new(Address::named("ping", "1", "echo")));
        command.tenant_id = Some("tenantSeven".into());
        let properties = properties(
            &command,
            Some(Bytes::from_static(b"c1")),
            Some(expiry_of(Duration::from_millis(2001))),
        );
        let keys: Vec<&str> = properties.user_properties.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "messageType",
                "senderServiceName",
                "senderServiceVersion",
                "senderServiceTarget",
                "receiverServiceName",
                "receiverServiceVersion",
                "receiverServiceTarget",
                "tenantId"
            ]
        );
        assert_eq!(properties.message_expiry_interval, Some(3));
        assert_eq!(properties.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            topic_of(&command),
            "purista/command/none/tenant_seven/none/caller/1/call_ping/none/none/ping/1/echo"
        );
    }
}
