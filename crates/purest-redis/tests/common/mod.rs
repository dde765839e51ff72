//! What the Redis tests share: the server's URL, the skip-or-fail rule, the bridge settings of
//! the tests, and a raw redis-rs client that puts bytes where the bridge's messages travel.

#![allow(dead_code)]

use std::time::Duration;

use purest_redis::{RedisConfig, RedisSection, layout};
use redis::aio::ConnectionManager;

/// The shared server (`PUREST_REDIS_URL`, default the local Redis).
pub fn url() -> String {
    std::env::var("PUREST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The shared server's URL; `None` (the test skips) when it is down, unless
/// `PUREST_REQUIRE_BROKERS=1`, where that fails the test.
pub fn server() -> Option<String> {
    let url = url();
    let host = url.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    if std::net::TcpStream::connect(&host).is_err() {
        assert_ne!(
            std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
            Ok("1"),
            "Redis is not reachable at {host}"
        );
        eprintln!("skipping: Redis is not reachable at {host}");
        return None;
    }
    Some(url)
}

/// A key prefix of a test's own on the shared server, so tests never see (or clean up) each
/// other's keys.
pub fn unique_prefix() -> String {
    format!("t{}", &purest_core::Id::random().to_string()[..10])
}

/// How long a durable delivery stays with a silent consumer in the tests before another claims it.
pub const CLAIM_IDLE: Duration = Duration::from_secs(2);

/// The tests' bridge settings, with `prefix` for the keys.
pub fn config(url: &str, prefix: &str) -> RedisConfig {
    let section = RedisSection {
        key_prefix: Some(prefix.to_owned()),
        claim_idle_ms: Some(CLAIM_IDLE.as_millis() as u64),
        ..Default::default()
    };
    RedisConfig::from_url_and_section(url, &section).expect("a redis:// URL")
}

/// A plain redis-rs client, as another program writing to the bridge's keys would be.
pub struct RawClient {
    pub connection: ConnectionManager,
    pub prefix: String,
    /// Its reply list's instance name.
    pub instance: String,
}

impl RawClient {
    pub async fn connect(url: &str, prefix: &str) -> Self {
        let client = redis::Client::open(url).expect("a redis:// URL");
        Self {
            connection: client.get_connection_manager().await.expect("connect to Redis"),
            prefix: prefix.to_owned(),
            instance: format!("raw{}", &purest_core::Id::random().to_string()[..8]),
        }
    }

    /// Deletes every key of the prefix.
    pub async fn delete_all(&self) {
        let mut connection = self.connection.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut connection)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(keys).query_async(&mut connection).await;
        }
    }

    /// Queues `payload` as a command frame for `service/version/command` and waits (15 s) for the reply.
    pub async fn command(&self, service: &str, version: &str, command: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut connection = self.connection.clone();
        let correlation = purest_core::Id::random().to_string();
        let frame = layout::CommandFrame {
            deadline_ms: now_ms() + 15_000,
            reply_to: self.instance.clone(),
            correlation: correlation.clone(),
            payload: payload.into(),
        };
        let queue = layout::command_key(&self.prefix, &purest_core::Address::new(service, version, command));
        redis::cmd("RPUSH")
            .arg(&queue)
            .arg(frame.encode())
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        let replies = layout::reply_key(&self.prefix, &self.instance);
        let reply: Option<(String, Vec<Vec<u8>>)> = redis::cmd("BLMPOP")
            .arg(15)
            .arg(1)
            .arg(&replies)
            .arg("LEFT")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        let (_, mut frames) = reply.ok_or("no reply within 15 s")?;
        let (got, payload) = layout::decode_reply(frames.remove(0).into()).ok_or("the reply is not a frame")?;
        assert_eq!(got, correlation, "the reply carries the command's correlation id");
        Ok(payload.to_vec())
    }

    /// Appends `payload` as the `m` field of an entry to the stream of `event_name`.
    pub async fn event(&self, event_name: &str, payload: Vec<u8>) -> Result<(), String> {
        let mut connection = self.connection.clone();
        redis::cmd("XADD")
            .arg(layout::event_key(&self.prefix, event_name))
            .arg("*")
            .arg("m")
            .arg(payload)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| e.to_string())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
