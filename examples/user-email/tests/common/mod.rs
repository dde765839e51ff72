//! A `user-email --serve` process as tests drive it.
#![allow(dead_code)] // each test file uses part of it

use std::process::Command as Process;

pub use purest_bridge_tests::process::Served;

pub const API_KEY: &str = "test-key-0123456789";

/// `user-email --serve` with these variables (and the tests' API key), logging at `info`.
pub fn serve(env: &[(&str, &str)]) -> Served {
    let mut command = Process::new(env!("CARGO_BIN_EXE_user-email"));
    command
        .arg("--serve")
        .env("RUST_LOG", "info")
        .env_remove("PUREST_BRIDGE")
        .env_remove("PUREST_SERVICES")
        .env("PUREST_HTTP_API_KEYS", format!("tester={API_KEY}"));
    for (key, value) in env {
        command.env(key, value);
    }
    Served::spawn(command)
}
