//! Load generation shared by the broker benchmarks: calls with a given number in flight, their
//! rate and latency percentiles, printed as one line per level.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::percentile;

/// How much load a `drive` mode puts on.
#[derive(clap::Args)]
pub struct Load {
    /// Calls per run.
    #[arg(long, default_value_t = 20_000)]
    pub n: u64,
    /// Calls in flight for the concurrent run.
    #[arg(long, default_value_t = 100)]
    pub concurrency: u64,
    /// Runs per figure (median shown).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Only the concurrent run (for profiling).
    #[arg(long)]
    pub concurrent_only: bool,
}

/// Runs `calls` calls of `call` with `in_flight` at once; returns ops/s and sorted latencies (ns).
/// The calls run in a task of the runtime, as a service's calls would, not on the main thread.
pub async fn drive<F, Fut>(calls: u64, in_flight: u64, call: F) -> (f64, Vec<u64>)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers = (0..in_flight).map(|_| {
        let (call, next) = (call.clone(), next.clone());
        async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return latencies;
                }
                let t = Instant::now();
                call(i).await;
                latencies.push(t.elapsed().as_nanos() as u64);
            }
        }
    });
    let workers: Vec<_> = workers.collect();
    let mut latencies: Vec<u64> = tokio::spawn(futures::future::join_all(workers))
        .await
        .expect("the load ran")
        .into_iter()
        .flatten()
        .collect();
    let ops = calls as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (ops, latencies)
}

pub async fn report<F, Fut>(label: &str, load: &Load, call: F)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    drive(load.n.min(2_000), load.concurrency, call.clone()).await;
    let levels = if load.concurrent_only {
        vec![load.concurrency]
    } else {
        vec![1, load.concurrency]
    };
    for in_flight in levels {
        let mut runs = Vec::new();
        for _ in 0..load.repeat {
            runs.push(drive(load.n, in_flight, call.clone()).await);
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ops, latencies) = &runs[runs.len() / 2];
        println!(
            "{label}  in-flight={in_flight:>3}  calls={}  ops/s={ops:.0}  p50={:.1}us  p99={:.1}us  (runs ops/s: {})",
            load.n,
            percentile(latencies, 50.0) as f64 / 1000.0,
            percentile(latencies, 99.0) as f64 / 1000.0,
            runs.iter().map(|r| format!("{:.0}", r.0)).collect::<Vec<_>>().join(", ")
        );
    }
}
