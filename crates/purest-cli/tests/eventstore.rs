//! `purest eventstore` against the machine's PostgreSQL: migrate, status with a projection's lag,
//! and a rebuild that the running projection carries out.

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use purest::HandledError;
use purest::eventstore::{EventStore, Expected, NewEvent, PgEventStore, PgOptions, Projection, Projections, RecordedEvent};

fn database_url() -> String {
    std::env::var("PUREST_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn purest(schema: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_purest"))
        .args(["eventstore", "--database", &database_url(), "--schema", schema])
        .args(args)
        .output()
        .expect("run purest")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Counts the events it applied and the times it was reset.
#[derive(Default)]
struct Tally {
    applied: AtomicU64,
    resets: AtomicU64,
}

impl Projection for Tally {
    fn name(&self) -> &str {
        "tally"
    }
    fn category(&self) -> Option<&str> {
        Some("order")
    }
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), HandledError> {
        self.applied.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    async fn reset(&self) -> Result<(), HandledError> {
        self.applied.store(0, Ordering::SeqCst);
        self.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_status_and_rebuild() {
    let schema = format!("cli_{}", &purest::Id::random().to_string()[..12]);
    let migrated = purest(&schema, &["migrate"]);
    if !migrated.status.success() && std::env::var("PUREST_REQUIRE_BROKERS").as_deref() != Ok("1") {
        eprintln!("skipped: PostgreSQL is not usable: {}", String::from_utf8_lossy(&migrated.stderr));
        return;
    }
    assert!(stdout(&migrated).contains("up to date"));
    assert!(stdout(&purest(&schema, &["status"])).contains("no projection or relay has run"));

    let options = PgOptions {
        schema: schema.clone(),
        ..PgOptions::default()
    };
    let store = PgEventStore::connect(&database_url(), options).await.unwrap();
    let tally = Arc::new(Tally::default());
    let running = Projections::new(Arc::new(store.clone()))
        .add(tally.clone(), Arc::new(store.clone()))
        .poll_every(Duration::from_millis(200))
        .start();
    let mut last = 0;
    for n in 0..5 {
        let placed = NewEvent::new("placed", &serde_json::json!({ "n": n })).unwrap();
        last = store
            .append(&format!("order-{n}"), Expected::NoStream, vec![placed])
            .await
            .unwrap()
            .first_position;
        store
            .append(
                "audit-1",
                Expected::Any,
                vec![NewEvent::new("noted", &serde_json::json!({})).unwrap()],
            )
            .await
            .unwrap();
    }
    running.caught_up("tally", last).await.unwrap();

    let status: serde_json::Value = serde_json::from_str(&stdout(&purest(&schema, &["status", "--json"]))).unwrap();
    assert_eq!(status[0]["name"], "tally");
    assert_eq!(status[0]["category"], "order");
    assert_eq!(status[0]["behind"], 0, "the audit events are not its category");
    let table = stdout(&purest(&schema, &["status"]));
    assert!(table.contains("tally") && table.contains("order"), "{table}");

    let unknown = purest(&schema, &["rebuild", "nothing"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no projection named nothing"));

    assert!(stdout(&purest(&schema, &["rebuild", "tally"])).contains("asked projection tally to rebuild"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.resets.load(Ordering::SeqCst) == 0 || tally.applied.load(Ordering::SeqCst) < 5 {
        assert!(Instant::now() < deadline, "the running projection rebuilt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((tally.resets.load(Ordering::SeqCst), tally.applied.load(Ordering::SeqCst)), (1, 5));
    running.stop().await;
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::query(&drop).execute(store.pool()).await.unwrap();
}
