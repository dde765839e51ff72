//! The in-memory bridge runs every case that applies to it (the cases with OS processes and
//! broker restarts need a broker).

use purest_bridge_tests::{Harness, cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_round_trip() {
    cases::round_trip(&Harness::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_deadline_and_no_handler() {
    cases::deadline_and_no_handler(&Harness::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_load_sharing() {
    cases::load_sharing(&Harness::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_fan_out() {
    cases::fan_out(&Harness::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_durable_while_down() {
    cases::durable_while_down(&Harness::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_retry_then_dead_letter() {
    cases::retry_then_dead_letter(&Harness::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_graceful_shutdown() {
    cases::graceful_shutdown(&Harness::memory()).await;
}
