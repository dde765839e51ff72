//! Faults on PostgreSQL: a crash and restart of the database mid-traffic (on a cluster of the
//! test's own), and a pool with no free connection.

#[allow(dead_code)]
mod common;
mod pg_support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_bridge_tests::postgres_cluster::OwnPostgres;
use purest_core::Address;
use purest_core::prelude::*;
use purest_eventstore::{
    EventStore, Expected, NewEvent, OutboxRelay, PgEventStore, PgOptions, PgProjection, ProjectionState, Projections, RecordedEvent,
};
use sqlx::{Executor, PgConnection};

/// Counts events per stream, in the store's database: effectively once.
struct Counts;

impl PgProjection for Counts {
    fn name(&self) -> &str {
        "counts"
    }
    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), HandledError> {
        for event in events {
            sqlx::query("INSERT INTO counts (stream, events) VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET events = counts.events + 1")
                .bind(&*event.stream)
                .execute(&mut *tx)
                .await
                .map_err(|e| HandledError::internal(e.to_string()))?;
        }
        Ok(())
    }
    async fn reset(&self, tx: &mut PgConnection) -> Result<(), HandledError> {
        tx.execute("TRUNCATE counts")
            .await
            .map_err(|e| HandledError::internal(e.to_string()))?;
        Ok(())
    }
}

type Relayed = Arc<Mutex<Vec<Id>>>;

async fn relayed(ctx: Context, State(seen): State<Relayed>) -> Result<(), HandledError> {
    seen.lock().unwrap().push(ctx.message().id.clone());
    Ok(())
}

/// Appends `event`, retrying while the database is away. An append whose answer was lost may
/// have committed: retried under the same event id, it is refused as a duplicate, which means
/// it is in.
async fn append_surely(store: &PgEventStore, stream: &str, event: NewEvent, retries: &Mutex<u32>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match store.append(stream, Expected::Any, vec![event.clone()]).await {
            Ok(_) => return,
            Err(e) if e.status == 409 && e.message.contains("has already") => return,
            Err(e) => {
                assert_eq!(e.status, 503, "{e}");
                assert!(Instant::now() < deadline, "the database did not come back: {e}");
                *retries.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// 600 events appended by 3 writers while PostgreSQL crashes and restarts after the first 200. A
/// projection in the same database counts each event once, and the relay delivers every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_traffic_loses_and_doubles_nothing() {
    let Some(postgres) = OwnPostgres::start() else { return };
    let options = PgOptions {
        acquire_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let store = PgEventStore::connect(&postgres.url(), options).await.unwrap();
    store
        .pool()
        .execute("CREATE TABLE counts (stream text PRIMARY KEY, events bigint NOT NULL)")
        .await
        .unwrap();
    let seen = Relayed::default();
    let audit = Service::new("audit", "1")
        .state(seen.clone())
        .subscription(Subscription::new("relayed", relayed).on_event("metered"));
    let app = Host::new().service(audit).start().await.unwrap();
    let relay = OutboxRelay::new(app.bridge().clone(), Address::new("meters", "1", ""));
    let running = Projections::new(Arc::new(store.clone()))
        .add_in_postgres(Counts, &store)
        .add_leased(relay, &store)
        .batch(25)
        .start();

    const WRITERS: u64 = 3;
    const EACH: u64 = 200;
    let appended = Arc::new(Mutex::new(0u64));
    let retries = Arc::new(Mutex::new(0u32));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, appended, retries) = (store.clone(), appended.clone(), retries.clone());
            tokio::spawn(async move {
                for n in 0..EACH {
                    let event = NewEvent::new("metered", &serde_json::json!({ "n": n })).unwrap();
                    append_surely(&store, &format!("meter-{w}"), event, &retries).await;
                    *appended.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while *appended.lock().unwrap() < 200 {
        assert!(Instant::now() < deadline, "200 events appended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    postgres.crash();
    let crashed_at = *appended.lock().unwrap();
    postgres.boot();
    for writer in writers {
        writer.await.unwrap();
    }

    let all = common::settled(&store, 0, (WRITERS * EACH) as usize).await;
    assert_eq!(all.len(), (WRITERS * EACH) as usize, "every event once in the store");
    let last = all.last().unwrap().position;
    tokio::time::timeout(Duration::from_secs(60), running.caught_up("counts", last))
        .await
        .expect("the projection resumed")
        .unwrap();
    let counted: Vec<i64> = sqlx::query_scalar("SELECT events FROM counts ORDER BY stream")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(counted, [EACH as i64; WRITERS as usize], "each event counted once");
    tokio::time::timeout(Duration::from_secs(60), running.caught_up("outbox", last))
        .await
        .expect("the relay resumed")
        .unwrap();
    let ids: HashSet<Id> = all.iter().map(|event| event.id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().iter().collect::<HashSet<_>>().len() < ids.len() {
        assert!(Instant::now() < deadline, "every event relayed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = seen.lock().unwrap().clone();
    assert!(delivered.iter().all(|id| ids.contains(id)));
    // A runner that has just applied its last batch says so until its next look finds nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses = running.status().await.unwrap();
        if statuses.iter().all(|s| s.behind == 0 && s.state == ProjectionState::Live) {
            break;
        }
        assert!(Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "crash after {crashed_at} appends; {} appends retried; {} relayed for {} events",
        retries.lock().unwrap(),
        delivered.len(),
        ids.len()
    );
    running.stop().await;
    app.shutdown().await;
    store.pool().close().await;
}

/// With every connection taken, an append waits its acquire timeout and is refused with a 503
/// that says why; once a connection is free, appends go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let options = PgOptions {
        schema: test.store.schema().to_owned(),
        pool_size: 2,
        acquire_timeout: Duration::from_millis(300),
        ..PgOptions::default()
    };
    let store = PgEventStore::connect(&pg_support::database_url(), options).await.unwrap();
    let held = (store.pool().acquire().await.unwrap(), store.pool().acquire().await.unwrap());
    let event = NewEvent::new("noted", &serde_json::json!({})).unwrap();
    let refused = store.append("note-1", Expected::Any, vec![event.clone()]).await.unwrap_err();
    assert_eq!(refused.status, 503, "{refused}");
    assert!(refused.message.contains("no database connection came free"), "{refused}");
    drop(held);
    store.append("note-1", Expected::Any, vec![event]).await.unwrap();
    store.pool().close().await;
    test.finish().await;
}
