//! The Redis bridge beyond the shared suite: the trimming policy and the full stream, what the
//! bridge makes of bytes that are not its frames or entries, refusals (no event name, a full
//! backlog, no server), and `rediss://` with a private CA. Each test has a key prefix of its own
//! on the shared Redis (or a `redis-server` of its own).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use purest_bridge_tests::redis_server::OwnRedis;
use purest_bridge_tests::{wait_for_count, wait_until};
use purest_core::prelude::*;
use purest_redis::{RedisBridge, RedisConfig, RedisSection, layout};
use serde_json::{Value, json};

async fn bridge(url: &str, section: RedisSection) -> RedisBridge {
    RedisBridge::connect(RedisConfig::from_url_and_section(url, &section).unwrap())
        .await
        .expect("connect to Redis")
}

fn section(prefix: &str) -> RedisSection {
    RedisSection {
        key_prefix: Some(prefix.to_owned()),
        claim_idle_ms: Some(common::CLAIM_IDLE.as_millis() as u64),
        ..Default::default()
    }
}

async fn xlen(raw: &common::RawClient, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query_async(&mut raw.connection.clone()).await.unwrap()
}

/// A stream never drops what a durable subscription has not acknowledged: with `max_len` 100 and
/// the subscriber away, 100 events are kept and the 101st is refused with 503 naming the
/// subscription (after waiting within its deadline); once the subscriber has caught up, the
/// stream is trimmed and takes events again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_refuses_and_keeps_every_unacknowledged_event() {
    let Some(url) = common::server() else { return };
    let prefix = common::unique_prefix();
    let raw = common::RawClient::connect(&url, &prefix).await;
    let (service, event) = (purest_bridge_tests::unique("keeper"), purest_bridge_tests::unique("kept"));
    let handled = Arc::new(AtomicUsize::new(0));
    let subscriber = || {
        let handled = handled.clone();
        Service::new(&service, "1").subscription(
            Subscription::new("keep", move |Payload(_): Payload<u64>| {
                let handled = handled.clone();
                async move {
                    handled.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, HandledError>(())
                }
            })
            .on_event(&event)
            .durable(),
        )
    };
    let limited = RedisSection {
        max_len: Some(100),
        ..section(&prefix)
    };
    let emitter_bridge = bridge(&url, limited.clone()).await;
    let emitter = Host::new().bridge(emitter_bridge.clone()).start().await.unwrap();
    // The subscription's group is made, then its consumer goes away.
    let consumer = Host::new()
        .bridge(bridge(&url, limited.clone()).await)
        .service(subscriber())
        .start()
        .await
        .unwrap();
    consumer.shutdown().await;
    for n in 0..100u64 {
        emitter.client().emit(Name::new(&event), n).await.unwrap();
    }
    let refused = emitter
        .client()
        .with_timeout(Duration::from_millis(300))
        .emit(Name::new(&event), 100u64)
        .await
        .expect_err("the stream is full of unacknowledged events");
    assert_eq!(refused.status, 503, "{refused}");
    assert!(refused.message.contains(&format!("{service}/1/keep")), "{refused}");
    let stream = layout::event_key(&prefix, &event);
    assert_eq!(xlen(&raw, &stream).await, 100, "nothing unacknowledged was trimmed");
    assert_eq!(emitter_bridge.stats().refused_full.load(Ordering::Relaxed), 1);

    let consumer = Host::new()
        .bridge(bridge(&url, limited).await)
        .service(subscriber())
        .start()
        .await
        .unwrap();
    wait_for_count("the kept events", Duration::from_secs(15), 100, || handled.load(Ordering::SeqCst)).await;
    // The emit waits (within its deadline) for the acknowledgements, then trims and goes in.
    emitter
        .client()
        .with_timeout(Duration::from_secs(10))
        .emit(Name::new(&event), 100u64)
        .await
        .expect("a stream whose entries are acknowledged takes events again");
    assert!(xlen(&raw, &stream).await < 100, "trimmed once acknowledged");
    consumer.shutdown().await;
    emitter.shutdown().await;
    raw.delete_all().await;
}

/// Bytes on a command list that are not a frame are counted and dropped; the command keeps
/// answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_a_frame_are_counted_and_dropped() {
    let Some(url) = common::server() else { return };
    let prefix = common::unique_prefix();
    let raw = common::RawClient::connect(&url, &prefix).await;
    let serving = bridge(&url, section(&prefix)).await;
    let echo = |Payload(text): Payload<String>| async move { Ok::<_, HandledError>(text) };
    let app = Host::new()
        .bridge(serving.clone())
        .service(Service::new("echo", "1").command(Command::new("say", echo)))
        .start()
        .await
        .unwrap();
    let queue = layout::command_key(&prefix, &Address::new("echo", "1", "say"));
    for junk in [&b"not a frame"[..], b"12:5:ab", b""] {
        redis::cmd("RPUSH")
            .arg(&queue)
            .arg(junk)
            .query_async::<()>(&mut raw.connection.clone())
            .await
            .unwrap();
    }
    wait_until("the junk to be counted", Duration::from_secs(10), || {
        serving.stats().malformed.load(Ordering::Relaxed) == 3
    })
    .await;
    let said: String = app.client().invoke("echo/1/say", "still here").await.unwrap();
    assert_eq!(said, "still here");
    app.shutdown().await;
    raw.delete_all().await;
}

/// A stream entry without the `m` field reaches a durable subscription as a malformed delivery:
/// dead-lettered at once, the handler never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_without_a_message_is_dead_lettered() {
    let Some(url) = common::server() else { return };
    let prefix = common::unique_prefix();
    let raw = common::RawClient::connect(&url, &prefix).await;
    let (event, dlq) = (purest_bridge_tests::unique("odd"), purest_bridge_tests::unique("dlq"));
    let letters: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let sink = letters.clone();
    let called = Arc::new(AtomicUsize::new(0));
    let calls = called.clone();
    let app = Host::new()
        .bridge(bridge(&url, section(&prefix)).await)
        .service(
            Service::new("strict", "1").subscription(
                Subscription::new("take", move |Payload(_): Payload<Value>| {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, HandledError>(())
                    }
                })
                .on_event(&event)
                .durable()
                .retry(Retry::exponential(3).dead_letter(&dlq)),
            ),
        )
        .service(
            Service::new("ops", "1").subscription(
                Subscription::new("letters", move |Payload(letter): Payload<Value>| {
                    let sink = sink.clone();
                    async move {
                        sink.lock().unwrap().push(letter);
                        Ok::<_, HandledError>(())
                    }
                })
                .on_event(&dlq),
            ),
        )
        .start()
        .await
        .unwrap();
    redis::cmd("XADD")
        .arg(layout::event_key(&prefix, &event))
        .arg("*")
        .arg("other")
        .arg("field")
        .query_async::<()>(&mut raw.connection.clone())
        .await
        .unwrap();
    wait_until("the dead letter", Duration::from_secs(10), || !letters.lock().unwrap().is_empty()).await;
    let letter = letters.lock().unwrap()[0].clone();
    assert_eq!(letter["attempts"], 1, "{letter}");
    assert!(letter["reason"].as_str().unwrap_or_default().contains("m field"), "{letter}");
    assert_eq!(called.load(Ordering::SeqCst), 0);
    app.shutdown().await;
    raw.delete_all().await;
}

/// Events live in a stream per name: a subscription naming no event is refused at start, saying
/// what to write.
#[tokio::test]
async fn a_subscription_naming_no_event_is_refused() {
    let Some(url) = common::server() else { return };
    let prefix = common::unique_prefix();
    let started = Host::new()
        .bridge(bridge(&url, section(&prefix)).await)
        .service(Service::new("audit", "1").subscription(
            Subscription::new("all", |Payload(_): Payload<Value>| async { Ok::<_, HandledError>(()) }).from_service("user", "1"),
        ))
        .start()
        .await;
    let error = started.err().expect("refused").to_string();
    assert!(error.contains("audit/1/all") && error.contains("on_event"), "{error}");
}

type Call = tokio::task::JoinHandle<Result<u32, HandledError>>;

/// A command that counts its calls and holds each until released: with `prefetch` 1 one runs
/// and the rest wait in Redis.
struct Held {
    release: Arc<tokio::sync::Semaphore>,
    started: Arc<AtomicUsize>,
}

impl Default for Held {
    fn default() -> Self {
        Self {
            release: Arc::new(tokio::sync::Semaphore::new(0)),
            started: Arc::default(),
        }
    }
}

impl Held {
    fn command(&self, name: &str) -> Command {
        let (release, started) = (self.release.clone(), self.started.clone());
        Command::new(name, move || {
            let (release, started) = (release.clone(), started.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                release.acquire().await.expect("open").forget();
                Ok::<_, HandledError>(1u32)
            }
        })
    }

    /// Three calls of `target`, returned once the first runs and the other two wait in its list.
    async fn one_running_two_waiting(&self, client: &Client, target: &str, raw: &common::RawClient) -> (Call, [Call; 2]) {
        let call = || {
            let (client, target) = (client.clone(), target.to_owned());
            tokio::spawn(async move { client.invoke::<u32>(target, ()).await })
        };
        let running = call();
        wait_until("the first command to run", Duration::from_secs(10), || {
            self.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let waiting = [call(), call()];
        let mut parts = target.split('/');
        let address = Address::new(parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let queue = layout::command_key(&raw.prefix, &address);
        let mut connection = raw.connection.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let length: u64 = redis::cmd("LLEN").arg(&queue).query_async(&mut connection).await.unwrap();
            if length == 2 {
                return (running, waiting);
            }
            assert!(std::time::Instant::now() < deadline, "two commands wait (saw {length})");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// With `command_backlog` 2 and one command running (`prefetch` 1), two more wait and the next
/// is refused at once with 503 naming the command; the waiting ones are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_refuses_at_once() {
    let Some(url) = common::server() else { return };
    let prefix = common::unique_prefix();
    let raw = common::RawClient::connect(&url, &prefix).await;
    let narrow = RedisSection {
        prefetch: Some(1),
        command_backlog: Some(2),
        ..section(&prefix)
    };
    let held = Held::default();
    let app = Host::new()
        .bridge(bridge(&url, narrow).await)
        .service(Service::new("narrow", "1").command(held.command("slow")))
        .start()
        .await
        .unwrap();
    let (first, waiting) = held.one_running_two_waiting(&app.client(), "narrow/1/slow", &raw).await;
    let refused = app.client().invoke::<u32>("narrow/1/slow", ()).await.unwrap_err();
    assert_eq!(refused.status, 503, "{refused}");
    assert!(
        refused.message.contains("narrow/1/slow") && refused.message.contains("busy"),
        "{refused}"
    );
    held.release.add_permits(3);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    for waiting in waiting {
        assert_eq!(waiting.await.unwrap().unwrap(), 1);
    }
    app.shutdown().await;
    raw.delete_all().await;
}

/// The last instance of a command to stop answers the commands still waiting with 503 at once
/// (nobody else would take them) while it finishes the one it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_instance_to_stop_refuses_what_still_waits() {
    let Some(url) = common::server() else { return };
    let prefix = common::unique_prefix();
    let raw = common::RawClient::connect(&url, &prefix).await;
    let one_at_a_time = RedisSection {
        prefetch: Some(1),
        ..section(&prefix)
    };
    let held = Held::default();
    let server = Host::new()
        .bridge(bridge(&url, one_at_a_time.clone()).await)
        .service(Service::new("leaving", "1").command(held.command("slow")))
        .start()
        .await
        .unwrap();
    let caller = Host::new().bridge(bridge(&url, one_at_a_time).await).start().await.unwrap();
    let (running, waiting) = held.one_running_two_waiting(&caller.client(), "leaving/1/slow", &raw).await;
    let stopping = tokio::spawn(async move { server.shutdown().await });
    for waiting in waiting {
        let refused = waiting.await.unwrap().unwrap_err();
        assert_eq!(refused.status, 503, "{refused}");
        assert!(refused.message.contains("no running instance"), "{refused}");
    }
    assert_eq!(held.started.load(Ordering::SeqCst), 1, "the waiting commands never ran");
    held.release.add_permits(1);
    assert_eq!(running.await.unwrap().unwrap(), 1, "the running command finishes");
    assert!(stopping.await.unwrap(), "drained");
    caller.shutdown().await;
    raw.delete_all().await;
}

/// A start against a port nobody listens on fails within the connect timeout, naming the server.
#[tokio::test]
async fn an_absent_server_fails_the_start_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let section = RedisSection {
        connect_timeout_ms: Some(1500),
        ..Default::default()
    };
    let config = RedisConfig::from_url_and_section(&format!("redis://127.0.0.1:{port}"), &section).unwrap();
    let started = std::time::Instant::now();
    let error = RedisBridge::connect(config).await.err().expect("no server, no bridge").to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(error.contains(&format!("127.0.0.1:{port}")) && error.contains("running"), "{error}");
}

/// `rediss://` with the CA named by `tls_ca`: a `redis-server` of the test's own with a TLS port
/// (a certificate for localhost, signed by a CA made for the test) carries a round trip; without
/// the CA the start fails, naming the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("purest-redis-tls-{}", Id::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = purest_bridge_tests::tls::make_certificates(&dir);
    if !made {
        return;
    }
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = |name: &str| dir.join(name).display().to_string();
    let options = [
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        path("cert.pem"),
        "--tls-key-file".to_owned(),
        path("key.pem"),
        "--tls-ca-cert-file".to_owned(),
        path("ca.pem"),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
    ];
    let Some(_server) = OwnRedis::start_with(&options) else {
        return;
    };
    let url = format!("rediss://localhost:{tls_port}");
    let with_ca = RedisSection {
        tls_ca: Some(dir.join("ca.pem")),
        connect_timeout_ms: Some(10_000),
        ..Default::default()
    };
    let echo = |Payload(input): Payload<Value>| async move { Ok::<_, HandledError>(input) };
    let app = Host::new()
        .bridge(bridge(&url, with_ca).await)
        .service(Service::new("secure", "1").command(Command::new("echo", echo)))
        .start()
        .await
        .unwrap();
    let answer: Value = app.client().invoke("secure/1/echo", json!({"text": "over TLS"})).await.unwrap();
    assert_eq!(answer["text"], "over TLS");
    app.shutdown().await;

    let without_ca = RedisSection {
        connect_timeout_ms: Some(1500),
        ..Default::default()
    };
    let error = RedisBridge::connect(RedisConfig::from_url_and_section(&url, &without_ca).unwrap())
        .await
        .err()
        .expect("a certificate nobody trusts is refused")
        .to_string();
    assert!(error.contains(&format!("rediss://localhost:{tls_port}")), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
