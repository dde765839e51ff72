//! PURISTA's layout on RabbitMQ (`../shared/WIRE.md`, "AMQP 0.9.1"): the queue names, the
//! headers every message carries, the bindings that route by them, and the message properties.
//!
//! One durable `headers` exchange (`purista`), routing key always empty:
//!
//! | queue | bound on (`x-match=all`) |
//! |---|---|
//! | `purista.cmd.<service>.<version>.<command>`, shared by the instances | `messageType=command` and the three receiver headers |
//! | an exclusive, broker-named reply queue per connection | `replyTo=<its name>` |
//! | `purista.sub.<service>.<version>.<subscription>` (durable: a quorum queue) | the headers of the filter's set fields |
//! | `….<instance>` or broker-named, for subscriptions on every instance | the same |
//! | `purista.sub.….retry.<ms>` (durable subscriptions' retry delays) | none: reached by name |
//!
//! Names keep their case (nothing is snake-cased on AMQP).

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use purest_core::bridge::{EventFilter, SubscriptionRoute};
use purest_core::{Address, Envelope, Error};

/// Header names, as PURISTA writes them.
pub(crate) mod header {
    pub const MESSAGE_TYPE: &str = "messageType";
    pub const SENDER_SERVICE_NAME: &str = "senderServiceName";
    pub const SENDER_SERVICE_VERSION: &str = "senderServiceVersion";
    pub const SENDER_SERVICE_TARGET: &str = "senderServiceTarget";
    pub const SENDER_INSTANCE_ID: &str = "senderInstanceId";
    pub const RECEIVER_SERVICE_NAME: &str = "receiverServiceName";
    pub const RECEIVER_SERVICE_VERSION: &str = "receiverServiceVersion";
    pub const RECEIVER_SERVICE_TARGET: &str = "receiverServiceTarget";
    /// The caller's instance on a response (PURISTA's name; not `receiverInstanceId`).
    pub const RECEIVER_SERVICE_INSTANCE_ID: &str = "receiverServiceInstanceId";
    pub const REPLY_TO: &str = "replyTo";
    pub const EVENT_NAME: &str = "eventName";
    pub const PRINCIPAL_ID: &str = "principalId";
    pub const TENANT_ID: &str = "tenantId";
    pub const TRACEPARENT: &str = "traceparent";
    /// Set by RabbitMQ on a quorum queue's redeliveries: deliveries before this one.
    pub const DELIVERY_COUNT: &str = "x-delivery-count";
    /// Set by purest on a message sent through a retry delay queue: deliveries before it went.
    pub const ATTEMPTS: &str = "x-purest-attempts";
}

/// `purista.cmd.<service>.<version>.<command>`.
pub(crate) fn command_queue(address: &Address) -> String {
    format!(
        "purista.cmd.{}.{}.{}",
        address.service_name, address.service_version, address.service_target
    )
}

/// The queue of a subscription: `purista.sub.<service>.<version>.<subscription>`, durable or
/// shared best-effort; `None` for a best-effort subscription on every instance, whose queue the
/// broker names. A durable subscription on every instance gets one of its own per instance. A
/// best-effort shared one is named by its filter too: several routes under one address (the
/// WebSocket gateway listens to many events under one) must not share a queue, where each would
/// take the others' messages.
pub(crate) fn subscription_queue(route: &SubscriptionRoute) -> Option<String> {
    let address = &route.address;
    let base = format!(
        "purista.sub.{}.{}.{}",
        address.service_name, address.service_version, address.service_target
    );
    match (route.durable, route.every_instance) {
        (true, false) => Some(base),
        (true, true) => Some(format!("{base}.{}", address.instance_id.as_deref().unwrap_or("instance"))),
        (false, true) => None,
        (false, false) => Some(match route.filter.event_name.as_deref() {
            Some(event) if only_event_name(&route.filter) => format!("{base}.{event}"),
            _ => format!("{base}.{:016x}", fingerprint(&route.filter)),
        }),
    }
}

fn only_event_name(filter: &EventFilter) -> bool {
    *filter
        == EventFilter {
            event_name: filter.event_name.clone(),
            ..EventFilter::default()
        }
}

/// A stable hash of a filter (FNV-1a over its text), to tell queues of one address apart.
fn fingerprint(filter: &EventFilter) -> u64 {
    filter.to_string().bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The retry delay queue of a durable subscription's queue for delays up to `millis`.
pub(crate) fn retry_queue(queue: &str, millis: u64) -> String {
    format!("{queue}.retry.{millis}ms")
}

/// A queue or exchange name, or why it cannot be one (AMQP names are at most 255 bytes).
pub(crate) fn short(name: impl Into<String>) -> Result<ShortString, Error> {
    let name = name.into();
    let length = name.len();
    ShortString::try_new(name).map_err(|_| {
        Error::msg(format!(
            "a RabbitMQ name would be {length} bytes, above AMQP's 255: shorten the service, version or function name"
        ))
    })
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}

/// The arguments of a command queue's binding.
pub(crate) fn command_binding(address: &Address) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert("x-match".into(), text("all"));
    table.insert(header::MESSAGE_TYPE.into(), text("command"));
    table.insert(header::RECEIVER_SERVICE_NAME.into(), text(&address.service_name));
    table.insert(header::RECEIVER_SERVICE_VERSION.into(), text(&address.service_version));
    table.insert(header::RECEIVER_SERVICE_TARGET.into(), text(&address.service_target));
    table
}

/// The arguments of a reply queue's binding.
pub(crate) fn reply_binding(queue: &str) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert("x-match".into(), text("all"));
    table.insert(header::REPLY_TO.into(), text(queue));
    table
}

/// The arguments of a subscription's binding: the filter's set fields, nothing else (a filter
/// without any matches every message; the core drops what is not the subscription's).
pub(crate) fn subscription_binding(filter: &EventFilter) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert("x-match".into(), text("all"));
    for (key, value) in [
        (header::EVENT_NAME, &filter.event_name),
        (header::SENDER_SERVICE_NAME, &filter.sender_service),
        (header::SENDER_SERVICE_VERSION, &filter.sender_version),
        (header::SENDER_SERVICE_TARGET, &filter.sender_target),
        (header::MESSAGE_TYPE, &filter.message_type),
        (header::PRINCIPAL_ID, &filter.principal_id),
        (header::TENANT_ID, &filter.tenant_id),
    ] {
        if let Some(value) = value {
            table.insert(key.into(), text(value));
        }
    }
    table
}

/// The headers of a message: PURISTA's routing set, each only when the envelope has the value;
/// on a response also `replyTo` (the caller's reply queue, which routes it) and
/// `receiverServiceInstanceId`.
pub(crate) fn headers(envelope: &Envelope, reply_to: Option<&str>) -> FieldTable {
    let mut table = FieldTable::default();
    let sender = &envelope.sender;
    table.insert(header::MESSAGE_TYPE.into(), text(envelope.message_type()));
    table.insert(header::SENDER_SERVICE_NAME.into(), text(&sender.service_name));
    table.insert(header::SENDER_SERVICE_VERSION.into(), text(&sender.service_version));
    table.insert(header::SENDER_SERVICE_TARGET.into(), text(&sender.service_target));
    if let Some(instance) = &sender.instance_id {
        table.insert(header::SENDER_INSTANCE_ID.into(), text(instance));
    }
    if let Some(receiver) = &envelope.receiver {
        table.insert(header::RECEIVER_SERVICE_NAME.into(), text(&receiver.service_name));
        table.insert(header::RECEIVER_SERVICE_VERSION.into(), text(&receiver.service_version));
        table.insert(header::RECEIVER_SERVICE_TARGET.into(), text(&receiver.service_target));
        if let (Some(instance), Some(_)) = (&receiver.instance_id, reply_to) {
            table.insert(header::RECEIVER_SERVICE_INSTANCE_ID.into(), text(instance));
        }
    }
    if let Some(queue) = reply_to {
        table.insert(header::REPLY_TO.into(), text(queue));
    }
    for (key, value) in [
        (header::EVENT_NAME, &envelope.event_name),
        (header::PRINCIPAL_ID, &envelope.principal_id),
        (header::TENANT_ID, &envelope.tenant_id),
    ] {
        if let Some(value) = value {
            table.insert(key.into(), text(value));
        }
    }
    if let Some(traceparent) = envelope.traceparent() {
        table.insert(header::TRACEPARENT.into(), text(&traceparent));
    }
    table
}

/// The properties of every message: JSON, persistent, id, millisecond timestamp and type, as
/// PURISTA sends them.
pub(crate) fn properties(envelope: &Envelope, headers: FieldTable) -> BasicProperties {
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_timestamp(envelope.timestamp)
        .with_type(envelope.message_type().into())
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(envelope.id.to_string()) {
        properties = properties.with_message_id(id);
    }
    properties
}

/// A header's text, if the message has it as a string.
#[cfg(test)]
pub(crate) fn header_text<'a>(properties: &'a BasicProperties, key: &str) -> Option<&'a [u8]> {
    match properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(value) => Some(value.as_bytes()),
        AMQPValue::ShortString(value) => Some(value.as_str().as_bytes()),
        _ => None,
    }
}

/// A header's number (RabbitMQ writes `x-delivery-count` as a long or long-long integer).
pub(crate) fn header_number(properties: &BasicProperties, key: &str) -> Option<u64> {
    let value = properties.headers().as_ref()?.inner().get(key)?;
    match *value {
        AMQPValue::ShortShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        AMQPValue::Timestamp(n) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use purest_core::bridge::Retry;
    use purest_core::{Body, Message, Name};
    use std::sync::Arc;

    fn route(durable: bool, every_instance: bool, filter: EventFilter) -> SubscriptionRoute {
        SubscriptionRoute {
            address: Arc::new(Address {
                instance_id: Some(Name::new("i1")),
                ..Address::new("ping", "1", "onPingEchoed")
            }),
            filter,
            durable,
            every_instance,
            retry: Retry::default(),
            concurrency: 1,
            queue_capacity: 16,
        }
    }

    #[test]
    fn names_follow_purista() {
        assert_eq!(
            command_queue(&Address::new("caller", "1", "callPing")),
            "purista.cmd.caller.1.callPing"
        );
        let on_event = EventFilter {
            event_name: Some("pingEchoed".into()),
            ..Default::default()
        };
        assert_eq!(
            subscription_queue(&route(true, false, on_event.clone())).as_deref(),
            Some("purista.sub.ping.1.onPingEchoed")
        );
        assert_eq!(
            subscription_queue(&route(true, true, on_event.clone())).as_deref(),
            Some("purista.sub.ping.1.onPingEchoed.i1")
        );
        assert_eq!(subscription_queue(&route(false, true, on_event.clone())), None);
        assert_eq!(
            subscription_queue(&route(false, false, on_event)).as_deref(),
            Some("purista.sub.ping.1.onPingEchoed.pingEchoed")
        );
        let by_tenant = EventFilter {
            tenant_id: Some("t".into()),
            ..Default::default()
        };
        let name = subscription_queue(&route(false, false, by_tenant)).unwrap();
        assert!(
            name.starts_with("purista.sub.ping.1.onPingEchoed.") && name.len() == 32 + 16,
            "{name}"
        );
        assert!(short("x".repeat(256)).unwrap_err().to_string().contains("255"));
    }

    #[test]
    fn bindings_hold_only_the_set_filters() {
        let binding = subscription_binding(&EventFilter {
            event_name: Some("pingEchoed".into()),
            ..Default::default()
        });
        let keys: Vec<&str> = binding.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["eventName", "x-match"]);
        let command = command_binding(&Address::new("ping", "1", "echo"));
        assert_eq!(
            header_text(&BasicProperties::default().with_headers(command), "receiverServiceTarget"),
            Some(&b"echo"[..])
        );
    }

    #[test]
    fn a_response_carries_reply_to_and_the_callers_instance() {
        let mut response = Envelope::new(
            Arc::new(Address::new("ping", "1", "echo")),
            Message::Success {
                payload: Body::empty_object(),
            },
        );
        response.receiver = Some(Arc::new(Address {
            instance_id: Some(Name::new("caller-1")),
            ..Address::new("caller", "1", "callPing")
        }));
        response.otp = Some(r#"{"traceparent":"00-abc-def-01"}"#.into());
        let properties = properties(&response, headers(&response, Some("amq.gen-1")));
        for (key, value) in [
            ("messageType", "commandSuccessResponse"),
            ("replyTo", "amq.gen-1"),
            ("receiverServiceInstanceId", "caller-1"),
            ("traceparent", "00-abc-def-01"),
        ] {
            assert_eq!(header_text(&properties, key), Some(value.as_bytes()), "{key}");
        }
        assert_eq!(properties.delivery_mode(), &Some(2));
        assert_eq!(properties.kind().as_ref().map(|t| t.as_str()), Some("commandSuccessResponse"));
    }
}
