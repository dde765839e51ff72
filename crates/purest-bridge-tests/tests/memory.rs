//! The in-memory bridge runs every case that applies to it (the cases with OS processes, broker
//! restarts and bytes on a wire need a broker).

use purest_bridge_tests::Harness;

async fn harness() -> Option<Harness> {
    Some(Harness::memory())
}

purest_bridge_tests::conformance_suite!(harness);
