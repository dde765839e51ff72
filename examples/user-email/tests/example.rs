//! The user-email example, as a newcomer runs it (the binary) and as a test would use it (the lib).

use std::process::Command as Process;
use std::time::Duration;

use purest::Invoke;
use purest::testing::TestApp;
use purest_bridge_tests::process::Served;
use user_email::{GetUser, MailLog, NewUser, User, email_service, user_service};

fn run_example(args: &[&str]) -> (bool, String, String) {
    let output = Process::new(env!("CARGO_BIN_EXE_user-email"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("PUREST_BRIDGE")
        .env_remove("PUREST_SERVICES")
        .output()
        .expect("run the example");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_binary_registers_a_user_and_prints_the_welcome_mail() {
    let (ok, stdout, stderr) = run_example(&[]);
    assert!(ok, "exit status; stderr: {stderr}");
    assert!(stdout.contains("registered user: {\"id\":\""), "{stdout}");
    assert!(stdout.contains("\"email\":\"ada@example.com\""), "{stdout}");
    assert!(
        stdout.contains("--- welcome mail ---\nTo: ada@example.com\nSubject: Welcome, Ada Lovelace!"),
        "{stdout}"
    );
}

#[test]
fn the_binary_retries_a_failing_sender_then_dead_letters() {
    let (ok, stdout, _) = run_example(&["--fail-first", "2", "--email", "grace@example.com", "--name", "Grace"]);
    assert!(ok);
    assert!(stdout.contains("To: grace@example.com"), "sent after two failed attempts: {stdout}");

    let (ok, stdout, _) = run_example(&["--fail-first", "10"]);
    assert!(ok);
    assert!(
        stdout.contains("--- dead letter ---\nemail/1/sendWelcomeMail gave up after 4 attempts"),
        "{stdout}"
    );
    assert!(!stdout.contains("--- welcome mail ---"), "{stdout}");
}

#[test]
fn the_binary_reports_invalid_input_and_bad_configuration() {
    let (ok, _, stderr) = run_example(&["--email", "not-an-email"]);
    assert!(!ok);
    assert!(stderr.contains("registration failed: 400") && stderr.contains("/email"), "{stderr}");

    let output = Process::new(env!("CARGO_BIN_EXE_user-email"))
        .env("PUREST_SERVICES", "user,billing")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service \"billing\""));
}

#[cfg(unix)]
#[test]
fn serve_mode_runs_until_sigterm_and_stops_gracefully() {
    let mut command = Process::new(env!("CARGO_BIN_EXE_user-email"));
    command
        .arg("--serve")
        .env("RUST_LOG", "info")
        .env("PUREST_HTTP", "127.0.0.1:0")
        .env_remove("PUREST_BRIDGE")
        .env_remove("PUREST_SERVICES");
    let app = Served::spawn(command);
    app.wait_for_log("HTTP gateway listening");
    app.terminate();
    app.wait_for_log("shutdown requested");
    app.wait_for_log("all services stopped");
    app.stop();
}

async fn app(fail_first: u32) -> (purest::testing::RunningTestApp, MailLog) {
    let mails = MailLog::default();
    let app = TestApp::new()
        .service(user_service())
        .service(email_service(mails.sender(fail_first)))
        .start()
        .await;
    (app, mails)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_get_and_conflicts() {
    let (app, mails) = app(0).await;
    let client = app.client();
    let ann: User = client
        .invoke(
            "user/1/registerNewUser",
            NewUser {
                name: "Ann".into(),
                email: "ann@example.com".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(ann.id.len(), 32);

    let found: User = client
        .call("user/1/getUser")
        .params(GetUser { id: ann.id.clone() })
        .invoke(())
        .await
        .unwrap();
    assert_eq!(found, ann);
    let missing = client
        .call("user/1/getUser")
        .params(GetUser { id: "nope".into() })
        .invoke::<User>(())
        .await
        .unwrap_err();
    assert_eq!(missing.status, 404);

    let duplicate = client
        .invoke::<User>(
            "user/1/registerNewUser",
            NewUser {
                name: "Ann 2".into(),
                email: "ANN@example.com".into(),
            },
        )
        .await;
    let err = duplicate.unwrap_err();
    assert_eq!((err.status, err.message.as_str()), (409, "email already registered"));

    let invalid = client
        .invoke::<User>(
            "user/1/registerNewUser",
            NewUser {
                name: "".into(),
                email: "x".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(invalid.status, 400);
    let paths: Vec<&str> = invalid.data.as_ref().unwrap()["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/email", "/name"]);

    let mail = mails.wait_for_mail(Duration::from_secs(5)).await.expect("welcome mail");
    assert_eq!(mail.to, "ann@example.com");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        mails.sent().len(),
        1,
        "one mail per registered user; none for refused registrations"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_sender_ends_in_the_dead_letter_queue() {
    let (app, mails) = app(u32::MAX).await;
    let dead = app.record("email.dlq");
    app.client()
        .invoke::<User>(
            "user/1/registerNewUser",
            NewUser {
                name: "Bo".into(),
                email: "bo@example.com".into(),
            },
        )
        .await
        .unwrap();
    let letters = dead.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["attempts"], 4);
    assert_eq!(letters[0]["message"]["payload"]["email"], "bo@example.com");
    assert!(mails.sent().is_empty());
    let stats = app.subscription_stats("email/1/sendWelcomeMail");
    assert_eq!((stats.attempts, stats.retried, stats.dead_lettered), (4, 3, 1));
    app.shutdown().await;
}

/// The same binary, unchanged, on NATS: `PUREST_BRIDGE=nats://127.0.0.1:4222`.
#[test]
fn the_binary_runs_unchanged_on_nats() {
    let url = std::env::var("PUREST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    runs_unchanged_on(&url, "nats-user@example.com", "Nat");
}

/// The same binary, unchanged, on RabbitMQ: `PUREST_BRIDGE=amqp://guest:guest@127.0.0.1:5672/%2f`.
#[test]
fn the_binary_runs_unchanged_on_rabbitmq() {
    let url = std::env::var("PUREST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    runs_unchanged_on(&url, "rabbit-user@example.com", "Roger");
}

/// The same binary, unchanged, on an MQTT 5 broker: `PUREST_BRIDGE=mqtt://127.0.0.1:1883`.
#[test]
fn the_binary_runs_unchanged_on_mqtt() {
    let url = std::env::var("PUREST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    runs_unchanged_on(&url, "mqtt-user@example.com", "Mo");
}

/// The same binary, unchanged, on Redis: `PUREST_BRIDGE=redis://127.0.0.1:6379`.
#[test]
fn the_binary_runs_unchanged_on_redis() {
    let url = std::env::var("PUREST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    runs_unchanged_on(&url, "redis-user@example.com", "Rae");
}

/// Runs the demo with `PUREST_BRIDGE=url` and checks it registered `email` and mailed `name`;
/// skips when the broker is down (fails under `PUREST_REQUIRE_BROKERS=1`).
fn runs_unchanged_on(url: &str, email: &str, name: &str) {
    let host = url.split("://").nth(1).unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default().split('/').next().unwrap_or_default();
    if std::net::TcpStream::connect(host).is_err() {
        assert_ne!(
            std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
            Ok("1"),
            "the broker is not reachable at {host}"
        );
        eprintln!("skipping: the broker is not reachable at {host}");
        return;
    }
    let output = Process::new(env!("CARGO_BIN_EXE_user-email"))
        .args(["--email", email, "--name", name])
        .env("RUST_LOG", "warn")
        .env("PUREST_BRIDGE", url)
        .env_remove("PUREST_SERVICES")
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("registered user:") && stdout.contains(&format!("To: {email}\nSubject: Welcome, {name}!")),
        "{stdout}"
    );
}

/// Runs the demo with `purest.toml` text in a file named by `PUREST_CONFIG`.
fn run_with_config(config: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("purest-config-{}", purest::Id::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("purest.toml");
    std::fs::write(&file, config).unwrap();
    let output = Process::new(env!("CARGO_BIN_EXE_user-email"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("PUREST_CONFIG", &file)
        .env_remove("PUREST_BRIDGE")
        .env_remove("PUREST_SERVICES")
        .output()
        .expect("run the example");
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_config_file_sets_retries_and_its_mistakes_stop_the_start() {
    let (code, stdout, _) = run_with_config(
        "[service.email.subscriptions.sendWelcomeMail]\nretry = { attempts = 2, backoff_ms = 10 }\n",
        &["--fail-first", "9"],
    );
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("gave up after 2 attempts"),
        "the file's retry policy applies: {stdout}"
    );

    let (code, _, stderr) = run_with_config("bridge = \"memory\"\n[service.email]\nconcurency = 8\n", &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("purest.toml line 3") && stderr.contains("concurency"), "{stderr}");

    let (code, _, stderr) = run_with_config("services = [\"user\", \"mail\"]\n", &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown service \"mail\""), "{stderr}");

    let (code, _, stderr) = run_with_config("[service.email.subscriptions.sendWelcomeMails]\ndurable = true\n", &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("no subscription \"sendWelcomeMails\"") && stderr.contains("sendWelcomeMail"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_broker_is_retried_then_named_in_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Process::new(env!("CARGO_BIN_EXE_user-email"))
        .env("RUST_LOG", "warn")
        .env("PUREST_BRIDGE", format!("nats://127.0.0.1:{port}"))
        .env("PUREST_NATS_CONNECT_TIMEOUT_MS", "1500")
        .env_remove("PUREST_SERVICES")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach NATS; retrying with backoff"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to NATS at nats://127.0.0.1:{port} within 1.5s; is nats-server running there?"
        )),
        "{stderr}"
    );
}
