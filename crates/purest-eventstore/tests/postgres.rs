//! The shared event-store cases against PostgreSQL, and what only PostgreSQL has to prove: a
//! transaction that commits late is never skipped by a reader.

mod common;
mod pg_support;

use std::sync::Arc;

use purest_eventstore::{EventStore, Expected, NewEvent};

macro_rules! shared_cases {
    ($($case:ident $(($flavor:tt))?),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(test) = pg_support::fresh_store().await else { return };
                common::$case(Arc::new(test.store.clone())).await;
                test.finish().await;
            }
        )*
    };
}

shared_cases!(
    versions_positions_and_reads,
    stale_expectations_are_refused,
    one_of_many_concurrent_writers_wins,
    appends_are_all_or_nothing,
    a_checkpointed_reader_sees_every_event_once,
    the_newest_snapshot_is_kept,
    loads_start_from_snapshots,
);

fn event(kind: &str) -> NewEvent {
    NewEvent::new(kind, &serde_json::json!({})).unwrap()
}

/// A transaction holds an append open while a later one commits: readers see neither until the
/// first commits, then both, the early one first. A reader that had moved past the later event
/// would have skipped the early one forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = &test.store;
    store.append("audit-0", Expected::Any, vec![event("before")]).await.unwrap();
    let seen_before = common::settled(store, 0, 1).await;
    assert_eq!(seen_before.len(), 1);
    let checkpoint = seen_before[0].position;

    let mut early = store.pool().begin().await.unwrap();
    store
        .append_in(&mut early, "audit-1", Expected::NoStream, vec![event("early")])
        .await
        .unwrap();
    store.append("audit-2", Expected::NoStream, vec![event("late")]).await.unwrap();
    assert_eq!(store.stream_version("audit-2").await.unwrap(), 1, "the later append committed");
    assert!(
        store.read_all(checkpoint, 100).await.unwrap().is_empty(),
        "nothing past the open transaction is readable yet"
    );
    assert!(store.read_category("audit", checkpoint, 100).await.unwrap().is_empty());

    early.commit().await.unwrap();
    let after = common::settled(store, checkpoint, 2).await;
    let types: Vec<&str> = after.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["early", "late"]);
    assert!(after[0].position < after[1].position);
    test.finish().await;
}

/// Events appended in a transaction that rolls back are gone, and the stream is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_nothing() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = &test.store;
    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(&mut tx, "job-1", Expected::NoStream, vec![event("started")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.stream_version("job-1").await.unwrap(), 0);
    store.append("job-1", Expected::NoStream, vec![event("started")]).await.unwrap();
    assert_eq!(common::settled(store, 0, 1).await.len(), 1);
    test.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_are_checked_and_upcast() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let checked = test.store.clone().with_types(common::types());
    common::types_are_checked_and_upcast(Arc::new(test.store.clone()), Arc::new(checked)).await;
    test.finish().await;
}
