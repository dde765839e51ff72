//! The in-memory bridge runs every case that applies to it (the cases with OS processes, broker
//! restarts and bytes on a wire need a broker).

use purest_bridge_tests::{Harness, cases};

macro_rules! conformance {
    ($($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            cases::$case(&Harness::memory()).await;
        }
    )*};
}

conformance!(
    round_trip,
    deadline_and_no_handler,
    load_sharing,
    fan_out,
    durable_while_down,
    retry_then_dead_letter,
    graceful_shutdown
);
