//! Fault cases on a nats-server of their own (a free loopback port, its own JetStream store), so
//! the shared server is never disturbed: a durable subscriber killed with SIGKILL in the middle of
//! 10,000 events loses none of them. Skips without `nats-server` on the PATH, unless
//! `PUREST_REQUIRE_BROKERS=1`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use purest_core::prelude::*;
use purest_nats::NatsBridge;

/// A nats-server with JetStream this test started; stopped (and its store removed) on drop.
struct OwnServer {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl OwnServer {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let store = std::env::temp_dir().join(format!("purest-nats-{}", Id::random()));
        let child = match Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                assert_ne!(
                    std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
                    Ok("1"),
                    "cannot start nats-server: {e}"
                );
                eprintln!("skipping: cannot start nats-server: {e}");
                return None;
            }
        };
        let server = OwnServer { child, port, store };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not come up on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

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
    for seq in 0..EVENTS {
        client.emit(event, seq).await.unwrap();
    }
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
    println!(
        "[nats] SIGKILL mid-stream: sent {EVENTS}, handled {} ({at_kill} before the kill), duplicates {}, lost {lost}",
        seen.len(),
        seen.len() - distinct.len()
    );
    assert_eq!(lost, 0);

    let _ = Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    second.wait().unwrap();
    publisher.shutdown().await;
    let _ = std::fs::remove_file(&out);
    drop(server);
}
