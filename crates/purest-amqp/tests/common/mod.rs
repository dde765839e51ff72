//! What the RabbitMQ tests share: the broker's URL, the skip-or-fail rule, and raw lapin queues
//! on the `purista` exchange to watch the wire with.

#![allow(dead_code)]

use std::collections::BTreeMap;

use lapin::options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Consumer, ExchangeKind};

/// The shared broker (`PUREST_AMQP_URL`, default the local one as guest).
pub fn url() -> String {
    std::env::var("PUREST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The shared broker's URL; `None` (the test skips) when it is down, unless
/// `PUREST_REQUIRE_BROKERS=1`, where that fails the test.
pub fn broker() -> Option<String> {
    let url = url();
    let host = url
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    if std::net::TcpStream::connect(&host).is_err() {
        assert_ne!(
            std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
            Ok("1"),
            "RabbitMQ is not reachable at {host}"
        );
        eprintln!("skipping: RabbitMQ is not reachable at {host}");
        return None;
    }
    Some(url)
}

/// An AMQP long string, as PURISTA writes header values.
pub fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}

/// A header table of texts.
pub fn table(pairs: &BTreeMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert(key.as_str().into(), text(value));
    }
    table
}

/// `x-match=all` and `pairs`: a binding.
pub fn binding(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    map.insert("x-match".into(), "all".into());
    map
}

/// A broker-named queue of its own on the `purista` exchange (declared if missing), bound on
/// `binding` — where `replyTo` is empty, on its own name, as a reply queue — and consumed without
/// acks.
pub async fn tap(channel: &Channel, binding: &BTreeMap<String, String>) -> (String, Consumer) {
    channel
        .exchange_declare(
            "purista".into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the purista exchange");
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a queue");
    let name = queue.name().as_str().to_owned();
    let mut binding = binding.clone();
    if binding.get("replyTo").is_some_and(|v| v.is_empty()) {
        binding.insert("replyTo".into(), name.clone());
    }
    channel
        .queue_bind(
            name.clone().into(),
            "purista".into(),
            "".into(),
            QueueBindOptions::default(),
            table(&binding),
        )
        .await
        .expect("bind the queue");
    let consumer = channel
        .basic_consume(
            name.clone().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume the queue");
    (name, consumer)
}
