//! A PostgreSQL cluster of a test's own: `initdb` into a temporary folder, `postgres` on a free
//! loopback port with trust authentication, so fault cases can stop and restart it without
//! touching the shared server on 5432. PostgreSQL refuses to run as root: as root, the commands
//! run as the `postgres` user, which owns the folder.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use purest_core::Id;

/// How long the server may take to accept connections.
const BOOT_LIMIT: Duration = Duration::from_secs(30);

/// A PostgreSQL this test started; stopped (and its folder removed) on drop.
pub struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`: `pg_config --bindir`, else the newest
/// of Debian's `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let debian = || {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .collect();
        versions.sort();
        versions.pop()
    };
    from_pg_config
        .filter(|dir| dir.join("initdb").exists())
        .or_else(debian)
        .filter(|dir| dir.join("postgres").exists())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl OwnPostgres {
    /// Creates and starts a cluster; `None` (the test skips) when PostgreSQL's server programs are
    /// not installed, unless `PUREST_REQUIRE_BROKERS=1`.
    pub fn start() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert_ne!(
                std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
                Ok("1"),
                "PostgreSQL's server programs (initdb, postgres) are not installed"
            );
            eprintln!("skipping: PostgreSQL's server programs are not installed");
            return None;
        };
        let id = Id::random().to_string();
        let dir = std::env::temp_dir().join(format!("purest-pg-{}", &id[..12]));
        std::fs::create_dir_all(&dir).expect("create the cluster's folder");
        if running_as_root() {
            let chown = Command::new("chown").arg("postgres:postgres").arg(&dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown the cluster's folder to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let cluster = OwnPostgres { bin, dir, port };
        let data = cluster.data();
        let init = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(init.status.success(), "initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        cluster.boot();
        Some(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`: no checkpoint,
    /// every connection cut), and keeps it down until [`OwnPostgres::boot`].
    pub fn crash(&self) {
        let stop = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl stop");
        assert!(
            stop.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&stop.stderr)
        );
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn boot(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.display()
        );
        let start = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "30", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &options])
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        assert!(start.status.success(), "PostgreSQL did not start: {log}");
        let deadline = Instant::now() + BOOT_LIMIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not listen on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command of PostgreSQL's, as `postgres` when this process is root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command.current_dir(Path::new("/"));
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
