//! A nats-server of a test's own: a free loopback port and its own JetStream store, so fault
//! cases and tests with fixed service names never disturb (or are disturbed by) the shared server.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use purest_core::Id;

/// A nats-server with JetStream this test started; stopped (and its store removed) on drop.
pub struct OwnServer {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl OwnServer {
    /// Starts one; `None` (the test skips) when `nats-server` is not on the PATH, unless
    /// `PUREST_REQUIRE_BROKERS=1`.
    pub fn start() -> Option<Self> {
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

    /// Kills the server (SIGKILL) and keeps it down until [`OwnServer::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not come back on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's `nats://` URL.
    pub fn url(&self) -> String {
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

impl crate::OwnBroker for OwnServer {
    fn url(&self) -> String {
        OwnServer::url(self)
    }

    fn kill(&mut self) {
        OwnServer::kill(self)
    }

    fn restart(&mut self) {
        OwnServer::restart(self)
    }
}
