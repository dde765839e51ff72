//! A Mosquitto broker of a test's own: a free loopback port and a persistence folder under a
//! temporary folder, so fault cases kill and restart it without disturbing the shared broker on
//! 1883. Sessions and queued QoS 1 messages are saved every second (Mosquitto's default is every
//! 30 minutes; saving on every change rewrites the whole file each time, too slow for the cases'
//! 10,000 queued messages): a SIGKILL loses what changed in the last second.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use purest_core::Id;

/// How long the broker may take to accept connections.
const BOOT_LIMIT: Duration = Duration::from_secs(20);

/// A Mosquitto this test started; stopped (and its folder removed) on drop.
pub struct OwnMosquitto {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> Option<u16> {
    Some(std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port())
}

/// The `mosquitto` binary: on the PATH, or Debian's `/usr/sbin/mosquitto`.
fn binary() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.exists())
}

impl OwnMosquitto {
    /// Starts one with `extra` lines of configuration; `None` (the test skips) when Mosquitto is
    /// not installed, unless `PUREST_REQUIRE_BROKERS=1`.
    pub fn start_with(extra: &str) -> Option<Self> {
        if binary().is_none() {
            assert_ne!(
                std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
                Ok("1"),
                "Mosquitto is not installed (no mosquitto on the PATH or in /usr/sbin)"
            );
            eprintln!("skipping: Mosquitto is not installed");
            return None;
        }
        let id = Id::random().to_string();
        let dir = std::env::temp_dir().join(format!("purest-mosquitto-{}", &id[..12]));
        std::fs::create_dir_all(&dir).expect("create the broker's folder");
        let port = free_port()?;
        let config = format!(
            // As root Mosquitto switches to the `mosquitto` user, who cannot write this folder;
            // `user root` keeps the user it was started as (it only switches when root).
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\nset_tcp_nodelay true\nlog_dest file {}\n{extra}\n",
            dir.display(),
            dir.join("mosquitto.log").display()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).expect("write mosquitto.conf");
        let mut broker = OwnMosquitto { child: None, port, dir };
        broker.boot();
        Some(broker)
    }

    /// Starts one with the defaults above.
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn boot(&mut self) {
        use std::os::unix::process::CommandExt;
        let binary = binary().expect("mosquitto was found at start");
        let output = std::fs::File::create(self.dir.join("console.log")).expect("create the broker's console log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone the log handle"))
            .stderr(output)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + BOOT_LIMIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "mosquitto on port {} exited at start ({status}); its log:\n{}{}",
                    self.port,
                    std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default(),
                    std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto on port {} did not accept connections within {BOOT_LIMIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Starts it again on the same port with the same persistence file.
    pub fn restart(&mut self) {
        self.kill();
        self.boot();
    }
}

impl Drop for OwnMosquitto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl crate::OwnBroker for OwnMosquitto {
    fn url(&self) -> String {
        OwnMosquitto::url(self)
    }

    fn kill(&mut self) {
        OwnMosquitto::kill(self);
    }

    fn restart(&mut self) {
        OwnMosquitto::restart(self);
    }
}
