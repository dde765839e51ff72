//! The shared event-store cases against [`MemoryEventStore`].

mod common;

use std::sync::Arc;

use purest_eventstore::{EventStore, MemoryEventStore};

fn store() -> Arc<dyn EventStore> {
    Arc::new(MemoryEventStore::new())
}

#[tokio::test]
async fn versions_positions_and_reads() {
    common::versions_positions_and_reads(store()).await;
}

#[tokio::test]
async fn stale_expectations_are_refused() {
    common::stale_expectations_are_refused(store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_many_concurrent_writers_wins() {
    common::one_of_many_concurrent_writers_wins(store()).await;
}

#[tokio::test]
async fn appends_are_all_or_nothing() {
    common::appends_are_all_or_nothing(store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_reader_sees_every_event_once() {
    common::a_checkpointed_reader_sees_every_event_once(store()).await;
}

#[tokio::test]
async fn the_newest_snapshot_is_kept() {
    common::the_newest_snapshot_is_kept(store()).await;
}

#[tokio::test]
async fn types_are_checked_and_upcast() {
    let unchecked = MemoryEventStore::new();
    let checked = unchecked.clone().with_types(common::types());
    common::types_are_checked_and_upcast(Arc::new(unchecked), Arc::new(checked)).await;
}

#[tokio::test]
async fn loads_start_from_snapshots() {
    common::loads_start_from_snapshots(store()).await;
}
