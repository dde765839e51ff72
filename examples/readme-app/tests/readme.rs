//! The README's "What code looks like" is this crate: the text is `src/main.rs` and `Cargo.toml`'s
//! dependencies, and the program does what the README says.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use purest_bridge_tests::process::Served;

const README: &str = include_str!("../../../README.md");
const MAIN: &str = include_str!("../src/main.rs");
const MANIFEST: &str = include_str!("../Cargo.toml");

/// The first fenced block of `lang` after the "What code looks like" heading.
fn readme_block(lang: &str) -> &'static str {
    let section = &README[README.find("## What code looks like").expect("the README has the section")..];
    let fence = format!("```{lang}\n");
    let start = section.find(&fence).unwrap_or_else(|| panic!("a {lang} block in the section")) + fence.len();
    &section[start..start + section[start..].find("```\n").expect("the block ends")]
}

/// `name = value` lines of a `[dependencies]` table, comments and spacing dropped.
fn dependencies(toml: &str) -> Vec<String> {
    let table = &toml[toml.find("[dependencies]\n").expect("a [dependencies] table") + "[dependencies]\n".len()..];
    table
        .lines()
        .take_while(|line| !line.starts_with('['))
        .map(|line| line.split('#').next().unwrap_or_default().split_whitespace().collect::<String>())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn the_readme_shows_this_program_and_its_dependencies() {
    assert_eq!(
        readme_block("rust,no_run"),
        MAIN,
        "README.md and examples/readme-app/src/main.rs differ"
    );
    assert_eq!(dependencies(readme_block("toml")), dependencies(MANIFEST));
}

/// One HTTP/1.1 request; the status code and the body.
fn post(base: &str, path: &str, body: &str) -> (u16, String) {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect to the app");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn the_readme_app_registers_over_http_sends_the_welcome_and_stops_gracefully() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_readme-app"));
    command
        .env("RUST_LOG", "info")
        .env("PUREST_HTTP", "127.0.0.1:0")
        .env_remove("PUREST_BRIDGE")
        .env_remove("PUREST_SERVICES")
        .env_remove("PUREST_CONFIG");
    let app = Served::spawn(command);
    let base = app.http_base();

    let ann = r#"{"name":"Ann","email":"ann@example.com"}"#;
    let (status, body) = post(&base, "/api/v1/users", ann);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""email":"ann@example.com""#), "{body}");
    app.wait_for_log("welcome, Ann <ann@example.com>!");
    let (status, body) = post(&base, "/api/v1/users", ann);
    assert_eq!(status, 409, "the email is taken: {body}");
    let (status, body) = post(&base, "/api/v1/users", r#"{"name":"Bob","email":"nope"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("/email") && body.contains("not a valid email address"), "{body}");

    let stdout = app.stop();
    assert_eq!(stdout.matches("welcome, Ann <ann@example.com>!").count(), 1, "{stdout}");
}
