//! Fault cases on a nats-server of their own (a free loopback port, its own JetStream store), so
//! the shared server is never disturbed: a durable subscriber killed with SIGKILL in the middle of
//! 10,000 events loses none of them. Skips without `nats-server` on the PATH, unless
//! `PUREST_REQUIRE_BROKERS=1`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_bridge_tests::nats_server::OwnServer;
use purest_core::prelude::*;
use purest_nats::NatsBridge;

/// A durable subscriber process recording into `out`; returns once it said `ready`.
fn start_worker(url: &str, service: &str, event: &str, out: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_purest-nats-conformance-worker"))
        .env("PUREST_BRIDGE", url)
        .env("PUREST_NATS_ACK_WAIT_MS", "2000")
        .env("WORKER_SERVICE", service)
        .env("WORKER_EVENT", event)
        .env("WORKER_OUT", out)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the worker");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the worker did not start");
    child
}

fn recorded(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_killed_mid_stream_loses_no_durable_event() {
    const EVENTS: u64 = 10_000;
    let Some(server) = OwnServer::start() else { return };
    let (service, event) = ("crashy", "counted");
    let out = std::env::temp_dir().join(format!("purest-worker-{}.txt", Id::random()));
    let mut first = start_worker(&server.url(), service, event, &out);

    let publisher = App::new()
        .bridge(NatsBridge::connect_url(&server.url()).await.unwrap())
        .start()
        .await
        .unwrap();
    let client = publisher.client();
    let publishing = tokio::spawn(async move {
        for seq in 0..EVENTS {
            client.emit(event, seq).await.unwrap();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded(&out).len() < 2_000 {
        assert!(
            Instant::now() < deadline,
            "the first worker handled only {} events",
            recorded(&out).len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().expect("SIGKILL the worker");
    first.wait().unwrap();
    let at_kill = recorded(&out).len();
    assert!(at_kill < EVENTS as usize, "the kill must land in the middle of the stream");
    publishing.await.unwrap();

    let mut second = start_worker(&server.url(), service, event, &out);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let distinct: HashSet<u64> = recorded(&out).into_iter().collect();
        if distinct.len() as u64 == EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart only {} of {EVENTS} events were handled",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = recorded(&out);
    let distinct: HashSet<u64> = seen.iter().copied().collect();
    let lost = (0..EVENTS).filter(|seq| !distinct.contains(seq)).count();
    purest_bridge_tests::report(&format!(
        "[nats] SIGKILL mid-stream: sent {EVENTS}, handled {} ({at_kill} before the kill), duplicates {}, lost {lost}",
        seen.len(),
        seen.len() - distinct.len()
    ));
    assert_eq!(lost, 0);

    let _ = Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    second.wait().unwrap();
    publisher.shutdown().await;
    let _ = std::fs::remove_file(&out);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_survived() {
    let Some(mut server) = OwnServer::start() else { return };
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = handled.clone();
    let record = move |Payload(n): Payload<u64>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(n);
            Ok::<_, HandledError>(())
        }
    };
    let echo = |Payload(n): Payload<u64>| async move { Ok::<_, HandledError>(n) };
    let services = App::new()
        .bridge(NatsBridge::connect_url(&server.url()).await.unwrap())
        .service(
            Service::new("steady", "1")
                .command(purest_core::Command::new("echo", echo))
                .subscription(Subscription::new("record", record).on_event("steady.tick").durable()),
        )
        .start()
        .await
        .unwrap();
    let caller = App::new()
        .bridge(NatsBridge::connect_url(&server.url()).await.unwrap())
        .start()
        .await
        .unwrap();
    let client = caller.client().with_timeout(Duration::from_millis(500));
    for n in 0..100u64 {
        assert_eq!(client.invoke::<u64>("steady/1/echo", n).await.unwrap(), n);
        client.emit("steady.tick", n).await.unwrap();
    }
    assert!(caller.bridge().is_ready(), "connected");

    server.kill();
    // Down for a while: long enough for every connection to notice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!caller.bridge().is_ready(), "the bridge reports the lost connection");
    let started = Instant::now();
    let lost_emit = client.emit("steady.tick", 999u64).await;
    assert_eq!(lost_emit.expect_err("an event cannot be stored without the broker").status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "an emit during the outage must fail fast"
    );
    let mut outage = Vec::new();
    for n in 0..10u64 {
        let started = Instant::now();
        let result = client.invoke::<u64>("steady/1/echo", n).await;
        let took = started.elapsed();
        let status = result.expect_err("no broker, no answer").status;
        assert!(matches!(status, 503 | 504), "{status}");
        assert!(
            took < Duration::from_millis(1500),
            "an invoke during the outage must fail fast, took {took:?}"
        );
        outage.push((status, took));
    }

    server.restart();
    let restarted = Instant::now();
    loop {
        if client.invoke::<u64>("steady/1/echo", 1u64).await.is_ok() {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "no successful invoke within 30 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = restarted.elapsed();
    assert!(caller.bridge().is_ready(), "the bridge reports the connection back");
    for n in 100..200u64 {
        assert_eq!(client.invoke::<u64>("steady/1/echo", n).await.unwrap(), n);
        client.emit("steady.tick", n).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let distinct: HashSet<u64> = handled.lock().unwrap().iter().copied().collect();
        if distinct.len() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "durable events handled after the restart: {} of 200",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = handled.lock().unwrap().clone();
    let distinct: HashSet<u64> = seen.iter().copied().collect();
    purest_bridge_tests::report(&format!(
        "[nats] broker restart: invokes during the outage {:?}; first success {recovered:?} after the restart; durable events sent 200, handled {}, duplicates {}, lost {}",
        outage.iter().map(|(s, t)| format!("{s} in {t:?}")).collect::<Vec<_>>(),
        seen.len(),
        seen.len() - distinct.len(),
        (0..200u64).filter(|n| !distinct.contains(n)).count()
    ));
    caller.shutdown().await;
    services.shutdown().await;
}
