//! A RabbitMQ node of a test's own: its own node name, AMQP and distribution ports (free loopback
//! ports), database and log folder under a temporary folder, so fault cases kill and restart it
//! without disturbing the shared broker on 5672. It runs as a process group of the test, and a
//! kill is a SIGKILL of the whole group (the Erlang VM and its helpers).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use purest_core::Id;

/// Where Debian's RabbitMQ keeps the script that runs a node in the foreground as the caller
/// (`/usr/sbin/rabbitmq-server` switches to the `rabbitmq` user and the machine's node).
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// How long a node may take to accept connections (about 8 s on a 2-core machine).
const BOOT_LIMIT: Duration = Duration::from_secs(90);

/// A RabbitMQ node this test started; stopped (and its folder removed) on drop.
pub struct OwnNode {
    child: Option<Child>,
    port: u16,
    dist_port: u16,
    name: String,
    dir: PathBuf,
}

fn free_port() -> Option<u16> {
    Some(std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port())
}

impl OwnNode {
    /// Starts one; `None` (the test skips) when RabbitMQ is not installed, unless
    /// `PUREST_REQUIRE_BROKERS=1`.
    pub fn start() -> Option<Self> {
        if !std::path::Path::new(SERVER).exists() {
            assert_ne!(
                std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
                Ok("1"),
                "RabbitMQ is not installed ({SERVER} is missing)"
            );
            eprintln!("skipping: RabbitMQ is not installed ({SERVER} is missing)");
            return None;
        }
        let id = Id::random().to_string();
        let dir = std::env::temp_dir().join(format!("purest-rabbitmq-{}", &id[..12]));
        std::fs::create_dir_all(&dir).expect("create the node's folder");
        // guest may log in over loopback (the default); nothing else is configured.
        std::fs::write(dir.join("rabbitmq.conf"), "loopback_users.guest = true\n").expect("write rabbitmq.conf");
        let mut node = OwnNode {
            child: None,
            port: free_port()?,
            dist_port: free_port()?,
            name: format!("purest-{}@localhost", &id[..12]),
            dir,
        };
        node.boot();
        Some(node)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn boot(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join("console.log")).expect("create the node's console log");
        let mut command = Command::new(SERVER);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/bin".into()))
            // The Erlang cookie lives in $HOME: the node's own, not the machine's.
            .env("HOME", &self.dir)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start {SERVER}: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + BOOT_LIMIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the RabbitMQ node {} exited at boot ({status}); its output:\n{}",
                    self.name,
                    std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the RabbitMQ node {} did not accept connections within {BOOT_LIMIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL of the node's whole process group; returns once the port is closed.
    ///
    /// First the node saves Ra's registry of quorum queues. RabbitMQ 3.10 (this machine's) keeps
    /// it in a dets table written to disk only after 500 ms without access: a node killed sooner
    /// after a quorum queue was declared restarts without that queue's Raft member, and the queue
    /// never elects a leader again (publishes to it are never confirmed). The save makes the
    /// test exercise the bridge's recovery, not that window of the broker's.
    pub fn kill(&mut self) {
        if self.child.is_some() {
            let saved = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
                .args(["-n", &self.name, "eval", "dets:sync(ra_directory_reverse)."])
                .env("HOME", &self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !saved.is_ok_and(|status| status.success()) {
                eprintln!(
                    "the RabbitMQ node {} did not save its quorum queue registry before the kill",
                    self.name
                );
            }
        }
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the node again with the same name, ports and database.
    pub fn restart(&mut self) {
        self.kill();
        self.boot();
    }
}

impl crate::OwnBroker for OwnNode {
    fn url(&self) -> String {
        OwnNode::url(self)
    }

    fn kill(&mut self) {
        OwnNode::kill(self);
    }

    fn restart(&mut self) {
        OwnNode::restart(self);
    }
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
