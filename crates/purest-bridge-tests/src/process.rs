//! A purest app running as a process of its own, as tests drive it: its output read line by line
//! as it comes (and stdout also kept whole), SIGTERM to stop it gracefully, SIGKILL on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running app process; stopped with SIGTERM on [`Served::stop`] (killed on drop).
pub struct Served {
    child: Child,
    /// Whether SIGTERM was sent already.
    terminated: std::cell::Cell<bool>,
    lines: mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Served {
    /// Starts `command` with its stdout and stderr captured.
    pub fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        let (send, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let send_log = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = send_log.send(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                let _ = send.send(line);
            }
            text
        });
        Served {
            child,
            terminated: std::cell::Cell::new(false),
            lines,
            stdout: Some(stdout),
        }
    }

    /// Waits (at most 20 s) for a line of its output (a log line on stderr, or a line on stdout)
    /// containing `needle` and returns it; gives up naming the last lines it saw.
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

    /// The HTTP gateway's base URL, read from its "listening on" log line.
    pub fn http_base(&self) -> String {
        let line = self.wait_for_log("HTTP gateway listening on ");
        let url = line
            .rsplit("listening on ")
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default();
        url.to_owned()
    }

    /// Sends SIGTERM (a graceful stop) without waiting.
    pub fn terminate(&self) {
        self.terminated.set(true);
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("run kill").success());
    }

    /// SIGTERM (unless [`Served::terminate`] sent it); asserts a clean exit and returns what it
    /// printed on stdout.
    pub fn stop(mut self) -> String {
        if !self.terminated.get() {
            self.terminate();
        }
        let status = self.child.wait().expect("wait for the app");
        assert!(status.success(), "exit after SIGTERM: {status}");
        self.stdout_after_exit()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it printed on stdout, once it has exited.
    pub fn stdout_after_exit(mut self) -> String {
        self.stdout.take().and_then(|reader| reader.join().ok()).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
