//! A `redis-server` of a test's own: a free loopback port and a data folder under a temporary
//! folder, with the append-only file on and fsynced on every write (`appendfsync always`), so a
//! SIGKILL and restart keep every stream, consumer group and pending entry the server had
//! acknowledged. Fault cases kill and restart it without disturbing the shared Redis on 6379.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use purest_core::Id;

/// How long the server may take to accept connections.
const BOOT_LIMIT: Duration = Duration::from_secs(20);

/// A Redis this test started; stopped (and its folder removed) on drop.
pub struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

fn free_port() -> Option<u16> {
    Some(std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port())
}

/// The `redis-server` binary on the PATH (or in /usr/bin).
fn binary() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.exists())
}

impl OwnRedis {
    /// Starts one; `None` (the test skips) when Redis is not installed, unless
    /// `PUREST_REQUIRE_BROKERS=1`.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts one with `extra` command-line options (a TLS port, say; the plain port stays, for
    /// the readiness check).
    pub fn start_with(extra: &[String]) -> Option<Self> {
        if binary().is_none() {
            assert_ne!(
                std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
                Ok("1"),
                "Redis is not installed (no redis-server on the PATH)"
            );
            eprintln!("skipping: Redis is not installed");
            return None;
        }
        let id = Id::random().to_string();
        let dir = std::env::temp_dir().join(format!("purest-redis-{}", &id[..12]));
        std::fs::create_dir_all(&dir).expect("create the server's folder");
        let port = free_port()?;
        let mut server = OwnRedis {
            child: None,
            port,
            dir,
            extra: extra.to_vec(),
        };
        server.boot();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn boot(&mut self) {
        use std::os::unix::process::CommandExt;
        let binary = binary().expect("redis-server was found at start");
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + BOOT_LIMIT;
        while !self.answers_ping() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "redis-server on port {} exited at start ({status}); its log:\n{}",
                    self.port,
                    std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within {BOOT_LIMIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers PING with PONG (not LOADING: it is done reading its file).
    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// SIGKILL; returns once the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port with the same append-only file.
    pub fn restart(&mut self) {
        self.kill();
        self.boot();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl crate::OwnBroker for OwnRedis {
    fn url(&self) -> String {
        OwnRedis::url(self)
    }

    fn kill(&mut self) {
        OwnRedis::kill(self);
    }

    fn restart(&mut self) {
        OwnRedis::restart(self);
    }
}
