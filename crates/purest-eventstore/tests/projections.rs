//! Projections on PostgreSQL: effectively once with the read model in the same database (also
//! with two runners of one projection), rebuilds, lag, wake-ups by notification, and a stop at an
//! event no one can read. One case runs on the in-memory store.

#[allow(dead_code)]
mod common;
mod pg_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_core::HandledError;
use purest_eventstore::{
    Checkpoints, EventStore, EventTypes, Expected, MemoryCheckpoints, MemoryEventStore, NewEvent, PgEventStore, PgOptions, PgProjection,
    Projection, ProjectionState, Projections, RecordedEvent,
};
use serde_json::json;
use sqlx::{Executor, PgConnection};
use tokio::sync::Semaphore;

/// Counts events per stream in a table of the store's schema.
#[derive(Clone)]
struct Counts {
    table: String,
    /// Applies wait for a permit each, when set: a projection held still.
    gate: Option<Arc<Semaphore>>,
}

impl Counts {
    async fn create(store: &PgEventStore) -> Self {
        let table = format!("\"{}\".counts", store.schema());
        let create = format!("CREATE TABLE {table} (stream text PRIMARY KEY, events bigint NOT NULL)");
        store.pool().execute(create.as_str()).await.unwrap();
        Self { table, gate: None }
    }

    async fn total(&self, store: &PgEventStore) -> i64 {
        sqlx::query_scalar::<_, Option<i64>>(&format!("SELECT sum(events)::bigint FROM {}", self.table))
            .fetch_one(store.pool())
            .await
            .unwrap()
            .unwrap_or(0)
    }
}

fn failed(e: sqlx::Error) -> HandledError {
    HandledError::internal(e.to_string())
}

impl PgProjection for Counts {
    fn name(&self) -> &str {
        "counts"
    }
    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), HandledError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let upsert = format!(
            "INSERT INTO {0} (stream, events) VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET events = {0}.events + 1",
            self.table
        );
        for event in events {
            sqlx::query(&upsert).bind(&*event.stream).execute(&mut *tx).await.map_err(failed)?;
        }
        Ok(())
    }
    async fn reset(&self, tx: &mut PgConnection) -> Result<(), HandledError> {
        sqlx::query(&format!("TRUNCATE {}", self.table)).execute(tx).await.map_err(failed)?;
        Ok(())
    }
}

fn event(kind: &str) -> NewEvent {
    NewEvent::new(kind, &json!({})).unwrap()
}

/// `writers` tasks each append `each` events to a stream of their own; the highest position.
async fn append_many(store: &PgEventStore, writers: u64, each: u64) -> u64 {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut last = 0;
                for _ in 0..each {
                    let appended = store.append(&format!("meter-{w}"), Expected::Any, vec![event("read")]).await;
                    last = appended.unwrap().first_position;
                }
                last
            })
        })
        .collect();
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await.unwrap());
    }
    last
}

/// Two runners of one projection (two app instances) follow 4 writers: every event is counted
/// exactly once. A rebuild empties the table and counts everything again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effectively_once_with_two_runners_and_a_rebuild() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = test.store.clone();
    let counts = Counts::create(&store).await;
    let runner = || {
        Projections::new(Arc::new(store.clone()))
            .add_in_postgres(counts.clone(), &store)
            .batch(37)
            .start()
    };
    let (one, two) = (runner(), runner());
    let last = append_many(&store, 4, 250).await;
    one.caught_up("counts", last).await.unwrap();
    two.caught_up("counts", last).await.unwrap();
    assert_eq!(counts.total(&store).await, 1000, "every event counted once");

    one.rebuild("counts").await.unwrap();
    one.caught_up("counts", last).await.unwrap();
    assert_eq!(counts.total(&store).await, 1000, "a rebuild counts everything again, once");
    let status = one.status().await.unwrap();
    assert_eq!((status[0].position, status[0].behind), (last, 0));
    one.stop().await;
    two.stop().await;
    test.finish().await;
}

/// A projection held still reports how far behind it is; released, it catches up to 0 behind.
/// A checkpoint survives a restart: the next runner does not count anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_reported_and_checkpoints_survive_a_restart() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = test.store.clone();
    let gate = Arc::new(Semaphore::new(0));
    let counts = Counts {
        gate: Some(gate.clone()),
        ..Counts::create(&store).await
    };
    let last = append_many(&store, 1, 120).await;
    let first_batch = common::settled(&store, 0, 120).await[49].position;
    let running = Projections::new(Arc::new(store.clone()))
        .add_in_postgres(counts.clone(), &store)
        .batch(50)
        .start();
    let status = running.status().await.unwrap();
    assert_eq!((status[0].position, status[0].behind), (0, 120));
    gate.add_permits(1);
    running.caught_up("counts", first_batch).await.unwrap();
    let status = running.status().await.unwrap();
    assert_eq!((status[0].position, status[0].behind), (first_batch, 70));
    gate.add_permits(2);
    running.caught_up("counts", last).await.unwrap();
    assert_eq!(running.status().await.unwrap()[0].behind, 0);
    running.stop().await;

    let more = append_many(&store, 1, 10).await;
    let restarted = Projections::new(Arc::new(store.clone()))
        .add_in_postgres(
            Counts {
                gate: None,
                ..counts.clone()
            },
            &store,
        )
        .start();
    restarted.caught_up("counts", more).await.unwrap();
    assert_eq!(counts.total(&store).await, 130);
    restarted.stop().await;
    test.finish().await;
}

/// An idle projection that polls once an hour still sees an event appended through another
/// connection pool at once: the notification woke it. A rebuild asked for from elsewhere (the
/// CLI's way) wakes it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wake_idle_projections() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = test.store.clone();
    let counts = Counts::create(&store).await;
    let running = Projections::new(Arc::new(store.clone()))
        .add_in_postgres(counts.clone(), &store)
        .poll_every(Duration::from_secs(3600))
        .start();
    let first = store.append("meter-1", Expected::Any, vec![event("read")]).await.unwrap();
    running.caught_up("counts", first.first_position).await.unwrap();

    let options = PgOptions {
        schema: store.schema().to_owned(),
        ..PgOptions::default()
    };
    let elsewhere = PgEventStore::connect(&pg_support::database_url(), options).await.unwrap();
    let second = elsewhere.append("meter-2", Expected::Any, vec![event("read")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.caught_up("counts", second.first_position))
        .await
        .expect("woken by the notification, not by the hourly poll")
        .unwrap();

    sqlx::query(&format!("UPDATE {} SET events = 100", counts.table))
        .execute(store.pool())
        .await
        .unwrap();
    elsewhere.request_rebuild("counts").await.unwrap();
    let rebuilt = async {
        loop {
            if counts.total(&store).await == 2 {
                break;
            }
            let mut status = running.status().await.unwrap();
            assert_ne!(status.remove(0).state, ProjectionState::Failed(String::new()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), rebuilt)
        .await
        .expect("the rebuild ran");
    running.stop().await;
    elsewhere.pool().close().await;
    test.finish().await;
}

/// An event of a type the projection's store does not know stops the projection there, with an
/// error naming the type and version; the events before it were applied, none after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_stops_the_projection_visibly() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = test.store.clone();
    let counts = Counts::create(&store).await;
    store
        .append("meter-1", Expected::Any, vec![event("read"), event("read")])
        .await
        .unwrap();
    store
        .append("meter-1", Expected::Any, vec![event("tampered").schema_version(3)])
        .await
        .unwrap();
    let after = store.append("meter-1", Expected::Any, vec![event("read")]).await.unwrap();
    let typed = store.clone().with_types(EventTypes::new().register_any("read", 1));
    let running = Projections::new(Arc::new(typed.clone()))
        .add_in_postgres(counts.clone(), &typed)
        .batch(2)
        .start();
    let error = running.caught_up("counts", after.first_position).await.unwrap_err();
    assert!(error.message.contains("tampered at schema version 3"), "{error}");
    let status = running.status().await.unwrap().remove(0);
    assert!(
        matches!(&status.state, ProjectionState::Failed(why) if why.contains("tampered")),
        "{status:?}"
    );
    assert_eq!(status.behind, 2, "stopped before the unreadable event, skipping nothing");
    assert_eq!(counts.total(&store).await, 2);
    // `/readyz` says so, with the lag; the store itself still answers.
    use purest_core::readiness::ReadinessCheck;
    let readiness = running.readiness().check().await;
    assert!(!readiness.ready);
    assert_eq!(readiness.reason.as_deref(), Some("counts is failed"));
    assert_eq!(
        readiness.details["projections"],
        serde_json::json!([{"name": "counts", "state": "failed", "position": status.position, "behind": 2}])
    );
    assert!(purest_eventstore::StoreReadiness::new(Arc::new(store.clone())).check().await.ready);
    running.stop().await;
    test.finish().await;
}

/// A projection kept in memory with checkpoints in memory: events once each, and a rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_projections_follow_and_rebuild() {
    #[derive(Default)]
    struct Seen(Mutex<Vec<u64>>);
    impl Projection for Seen {
        fn name(&self) -> &str {
            "seen"
        }
        fn category(&self) -> Option<&str> {
            Some("meter")
        }
        async fn apply(&self, events: &[RecordedEvent]) -> Result<(), HandledError> {
            self.0.lock().unwrap().extend(events.iter().map(|e| e.position));
            Ok(())
        }
        async fn reset(&self) -> Result<(), HandledError> {
            self.0.lock().unwrap().clear();
            Ok(())
        }
    }
    let store = MemoryEventStore::new();
    let seen = Arc::new(Seen::default());
    let checkpoints = Arc::new(MemoryCheckpoints::default());
    let running = Projections::new(Arc::new(store.clone()))
        .add(seen.clone(), checkpoints.clone())
        .start();
    let mut last = 0;
    for n in 0..40 {
        let stream = if n % 4 == 0 { "other-1" } else { "meter-1" };
        last = store
            .append(stream, Expected::Any, vec![event("read")])
            .await
            .unwrap()
            .first_position;
    }
    running.caught_up("seen", last - 1).await.unwrap();
    assert_eq!(seen.0.lock().unwrap().len(), 30, "only the meter category");
    running.rebuild("seen").await.unwrap();
    running.caught_up("seen", last - 1).await.unwrap();
    assert_eq!(seen.0.lock().unwrap().len(), 30, "rebuilt once");
    assert!(checkpoints.load("seen", Some("meter")).await.unwrap().position >= last - 1);
    running.stop().await;
}
