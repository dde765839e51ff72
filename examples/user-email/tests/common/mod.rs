//! A `user-email --serve` process as tests drive it.
#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const API_KEY: &str = "test-key-0123456789";

/// A `user-email --serve` process; stopped with SIGTERM on [`Served::stop`] (killed on drop).
pub struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Served {
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut command = Process::new(env!("CARGO_BIN_EXE_user-email"));
        command
            .arg("--serve")
            .env("RUST_LOG", "info")
            .env_remove("PUREST_BRIDGE")
            .env_remove("PUREST_SERVICES")
            .env("PUREST_HTTP_API_KEYS", format!("tester={API_KEY}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start user-email --serve");
        let (send, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let mut stdout = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Served { child, lines, stdout }
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = std::collections::VecDeque::with_capacity(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => {
                    if seen.len() == 10 {
                        seen.pop_front();
                    }
                    seen.push_back(line);
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within 20 s; the last lines were:\n{}",
                    Vec::from(seen).join("\n")
                ),
            }
        }
    }

    /// The gateway's base URL, read from its "listening on" log line.
    pub fn http_base(&self) -> String {
        let line = self.wait_for_log("HTTP gateway listening on ");
        let url = line.rsplit("listening on ").next().unwrap().split_whitespace().next().unwrap();
        url.to_owned()
    }

    /// SIGTERM, then what it printed on stdout.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Process::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit after SIGTERM: {status}");
        std::mem::replace(&mut self.stdout, std::thread::spawn(String::new)).join().unwrap()
    }
}

impl Served {
    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything it printed on stdout so far is collected at exit; this waits for that.
    pub fn stdout_after_exit(mut self) -> String {
        std::mem::replace(&mut self.stdout, std::thread::spawn(String::new)).join().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
