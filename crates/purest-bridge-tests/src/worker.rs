//! A durable subscriber in a process of its own, for the crash cases. The case starts its own
//! test binary again, running only the suite's `worker_process` test with [`WORKER_URL`] set;
//! that test connects to the broker and calls [`run`]. The worker appends a line per event it
//! sees to a file and prints `ready` once its subscription is in place; it runs until SIGTERM
//! (graceful) or SIGKILL (the test).
//!
//! Environment: `WORKER_SERVICE`, `WORKER_EVENT`, `WORKER_OUT` (the file), and `WORKER_MODE`:
//! `record` (default: writes each event's number once handled) or `hang` (writes `started N`,
//! then never finishes, so a kill lands while a delivery is unsettled).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_core::prelude::*;
use purest_core::{Bridge, Error};

type Out = Arc<Mutex<std::fs::File>>;

/// The variable that makes the suite's `worker_process` test a worker on this broker URL.
pub const WORKER_URL: &str = "PUREST_CONFORMANCE_WORKER_URL";

async fn record(State(out): State<Out>, Payload(seq): Payload<u64>) -> Result<(), Error> {
    // Slow enough that a kill lands in the middle of the stream.
    tokio::time::sleep(Duration::from_millis(1)).await;
    writeln!(out.lock().expect("output lock"), "{seq}")?;
    Ok(())
}

async fn hang(State(out): State<Out>, Payload(seq): Payload<u64>) -> Result<(), Error> {
    writeln!(out.lock().expect("output lock"), "started {seq}")?;
    std::future::pending::<()>().await;
    Ok(())
}

fn env(key: &str) -> Result<String, Error> {
    std::env::var(key).map_err(|_| Error::msg(format!("{key} is not set")))
}

/// Runs the worker on `bridge` until SIGTERM.
pub async fn run(bridge: Arc<dyn Bridge>) -> Result<(), Error> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(env("WORKER_OUT")?)?;
    let subscription = match std::env::var("WORKER_MODE").as_deref() {
        Ok("hang") => Subscription::new("work", hang).retry(Retry::exponential(3).backoff(Duration::from_millis(10))),
        _ => Subscription::new("work", record).concurrency(16),
    };
    let service = Service::new(&env("WORKER_SERVICE")?, "1")
        .state(Arc::new(Mutex::new(out)))
        .subscription(subscription.on_event(&env("WORKER_EVENT")?).durable());
    let stop = purest_core::host::shutdown_signal();
    let app = Host::new().shared_bridge(bridge).service(service).start().await?;
    println!("ready");
    stop.await;
    app.shutdown().await;
    Ok(())
}

/// A running worker process; SIGKILLed when dropped.
pub struct Worker {
    child: std::process::Child,
}

impl Worker {
    /// Starts this test binary as a worker on `url` and waits for its `ready`.
    pub(crate) fn start(url: &str, vars: &[(&str, String)]) -> Self {
        use std::io::BufRead;
        let program = std::env::current_exe().expect("the test binary's path");
        let mut command = std::process::Command::new(&program);
        command
            .args(["worker_process", "--exact", "--nocapture", "--test-threads=1"])
            .env(WORKER_URL, url)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped());
        for (key, value) in vars {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the worker {}: {e}", program.display()));
        // The test harness prints its own words first ("test worker_process ... ready"). Read on
        // a thread of its own, so a worker that never gets ready fails the case instead of
        // hanging it.
        let stdout = child.stdout.take().expect("piped");
        let (said, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ready = std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|line| line.trim_end().ends_with("ready"));
            let _ = said.send(ready);
        });
        if ready.recv_timeout(std::time::Duration::from_secs(30)) != Ok(true) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker did not say it was ready within 30 s");
        }
        Worker { child }
    }

    /// SIGKILL, and wait until the process is gone.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful), and wait until the process is gone.
    pub(crate) fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines a worker wrote to `out`.
pub(crate) fn lines(out: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
