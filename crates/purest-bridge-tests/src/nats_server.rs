//! A nats-server of a test's own: a free loopback port and its own JetStream store, so fault
//! cases and tests with fixed service names never disturb (or are disturbed by) the shared server;
//! and a three-node cluster of a test's own ([`OwnCluster`]) for the cases where one server of
//! several dies.

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
    /// The configuration file it was started with, if any.
    config: Option<PathBuf>,
}

/// The command line of an [`OwnServer`]: address, port, JetStream store, and a configuration
/// file (whose `listen`/`port` and store directory the command line overrides).
fn own_server_command(port: u16, store: &std::path::Path, config: Option<&std::path::Path>) -> Command {
    let mut command = Command::new("nats-server");
    command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]).arg(store);
    if let Some(config) = config {
        command.arg("-c").arg(config);
    }
    command
}

impl OwnServer {
    /// Starts one; `None` (the test skips) when `nats-server` is not on the PATH, unless
    /// `PUREST_REQUIRE_BROKERS=1`.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// Starts one with a configuration file of this text (accounts, users, permissions…); the
    /// address, port and JetStream store are the test's own as with [`OwnServer::start`]. Panics
    /// when the server rejects the configuration.
    pub fn start_with_config(config: &str) -> Option<Self> {
        Self::start_with(Some(config))
    }

    fn start_with(config_text: Option<&str>) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let store = std::env::temp_dir().join(format!("purest-nats-{}", Id::random()));
        let config = config_text.map(|text| {
            let path = store.with_extension("conf");
            std::fs::write(&path, text).expect("write the nats-server configuration");
            path
        });
        let child = match own_server_command(port, &store, config.as_deref())
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
        let mut server = OwnServer {
            child,
            port,
            store,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "nats-server exited ({status}) instead of starting; check its configuration: `nats-server -t -c {}`",
                    server.config.as_deref().map_or("…".into(), |c| c.display().to_string())
                );
            }
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
        self.child = own_server_command(self.port, &self.store, self.config.as_deref())
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
        if let Some(config) = &self.config {
            let _ = std::fs::remove_file(config);
        }
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

/// Servers in an [`OwnCluster`].
pub const CLUSTER_NODES: usize = 3;

/// How long a cluster (or a restarted node) may take to be ready.
const CLUSTER_READY_WITHIN: Duration = Duration::from_secs(30);

/// A three-node NATS cluster with JetStream this test started, all on free loopback ports, each
/// node with its own store (streams with 3 replicas keep a copy on every node); every node is
/// stopped and the stores removed on drop. The calls that start nodes block the calling thread
/// until the nodes are ready (seconds at most).
pub struct OwnCluster {
    nodes: Vec<ClusterNode>,
    dir: PathBuf,
    name: String,
}

struct ClusterNode {
    child: Option<Child>,
    client_port: u16,
    route_port: u16,
    monitor_port: u16,
}

impl OwnCluster {
    /// Starts three nodes and returns once every node accepts clients and JetStream has a meta
    /// leader; `None` (the test skips) when `nats-server` cannot be started, unless
    /// `PUREST_REQUIRE_BROKERS=1`.
    pub fn start() -> Option<Self> {
        let skip = |why: String| {
            assert_ne!(std::env::var("PUREST_REQUIRE_BROKERS").as_deref(), Ok("1"), "{why}");
            eprintln!("skipping: {why}");
        };
        // All ports are taken at once, so no two of them are the same.
        let ports = (0..CLUSTER_NODES * 3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|listeners| {
                listeners
                    .iter()
                    .map(|l| l.local_addr().map(|a| a.port()))
                    .collect::<Result<Vec<u16>, _>>()
            });
        let ports = match ports {
            Ok(ports) => ports,
            Err(e) => {
                skip(format!("no free loopback ports for a nats cluster: {e}"));
                return None;
            }
        };
        let id = Id::random().to_string()[..8].to_owned();
        let mut cluster = OwnCluster {
            nodes: ports
                .chunks(3)
                .map(|p| ClusterNode {
                    child: None,
                    client_port: p[0],
                    route_port: p[1],
                    monitor_port: p[2],
                })
                .collect(),
            dir: std::env::temp_dir().join(format!("purest-nats-cluster-{id}")),
            name: format!("purest-{id}"),
        };
        for node in 0..CLUSTER_NODES {
            if let Err(e) = cluster.spawn(node) {
                skip(format!("cannot start nats-server: {e}"));
                return None;
            }
        }
        cluster.wait_ready("the cluster to start");
        Some(cluster)
    }

    fn spawn(&mut self, node: usize) -> std::io::Result<()> {
        let store = self.dir.join(format!("n{node}"));
        std::fs::create_dir_all(&store)?;
        let routes: Vec<String> = (0..CLUSTER_NODES)
            .filter(|&other| other != node)
            .map(|other| format!("nats://127.0.0.1:{}", self.nodes[other].route_port))
            .collect();
        let this = &self.nodes[node];
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &this.client_port.to_string()])
            .args(["-m", &this.monitor_port.to_string()])
            .args(["-js", "-sd"])
            .arg(&store)
            .args(["--server_name", &format!("n{node}"), "--cluster_name", &self.name])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", this.route_port)])
            .args(["--routes", &routes.join(",")])
            .arg("-l")
            .arg(self.dir.join(format!("n{node}.log")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.nodes[node].child = Some(child);
        Ok(())
    }

    /// All three client URLs in one: `nats://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.client_port)).collect();
        format!("nats://{}", hosts.join(","))
    }

    /// The client URL of one node.
    pub fn node_url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client_port)
    }

    /// The node whose client port is `port` (as a client's server info shows it).
    pub fn node_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.client_port == port)
    }

    /// Server name of a node (`n0`, `n1`, `n2`), as JetStream names stream leaders and peers.
    pub fn node_name(node: usize) -> String {
        format!("n{node}")
    }

    /// Whether a node runs (was not killed).
    pub fn is_up(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// Kills one node (SIGKILL) and keeps it down until [`OwnCluster::restart`].
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again on the same ports with the same store; returns once it accepts
    /// clients and reports itself healthy: in contact with the meta leader and current with the
    /// streams and consumers it holds.
    pub fn restart(&mut self, node: usize) {
        self.kill(node);
        if let Err(e) = self.spawn(node) {
            panic!("cannot restart nats-server node {node}: {e}");
        }
        self.wait_ready(&format!("node {node} to come back"));
    }

    /// The JetStream meta leader as node `node` sees it (`/jsz`), if that node is up and knows one.
    pub fn meta_leader(&self, node: usize) -> Option<String> {
        let (_, body) = http_get(self.nodes[node].monitor_port, "/jsz").ok()?;
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        jsz.pointer("/meta_cluster/leader")?.as_str().map(str::to_owned)
    }

    /// Waits until every running node accepts clients and its `/healthz` says ok (JetStream has
    /// a meta leader and the node is current with it and with its streams and consumers); panics
    /// after 30 s with what each node said.
    pub fn wait_ready(&mut self, what: &str) {
        let deadline = Instant::now() + CLUSTER_READY_WITHIN;
        let mut seen = vec![String::new(); self.nodes.len()];
        loop {
            let mut ready = true;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                let Some(child) = &mut node.child else {
                    seen[i] = "down (killed)".into();
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "nats-server node {i} exited ({status}) while waiting for {what}; see {}",
                        self.dir.join(format!("n{i}.log")).display()
                    );
                }
                seen[i] = if TcpStream::connect(("127.0.0.1", node.client_port)).is_err() {
                    format!("client port {} not accepting", node.client_port)
                } else {
                    match http_get(node.monitor_port, "/healthz") {
                        Ok((200, _)) => continue,
                        Ok((status, body)) => format!("healthz {status}: {}", body.trim()),
                        Err(e) => format!("monitoring port {}: {e}", node.monitor_port),
                    }
                };
                ready = false;
            }
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {CLUSTER_READY_WITHIN:?} waiting for {what}: {} (logs in {})",
                seen.iter()
                    .enumerate()
                    .map(|(i, s)| format!("n{i}: {s}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            self.kill(node);
        }
        if std::thread::panicking() {
            // The stores go; the logs stay for whoever looks into the failure.
            for node in 0..self.nodes.len() {
                let _ = std::fs::remove_dir_all(self.dir.join(format!("n{node}")));
            }
            eprintln!("nats cluster logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: the status and the body.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    Ok((status, body.to_owned()))
}
