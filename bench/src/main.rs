//! Prints purest's in-process figures in the shape of `../shared/peer-bench/purista/bench.mjs`:
//! (a) command round trip A→B with validation, 1 and C in flight; (b) the same without
//! validation; (c) event fan-out to 1 and 4 subscribing services.
//!
//! `cargo run --release -p purest-bench -- [--n 20000] [--concurrency 100] [--events 50000]
//! [--subs 1,4] [--repeat 3] [--warmup 2000] [--json out.json] [--telemetry off|traces|traces1|metrics] [--log]`

use std::time::Instant;

use clap::Parser;
use purest::prelude::*;
use purest_bench::telemetry::{BenchTelemetry, TelemetryMode};
use purest_bench::{Drive, Driven, EmitTicks, TickCounter, command_services, percentile, subscriber_services};
use serde_json::json;

#[derive(Parser)]
#[command(about = "purest in-process benchmark (same workloads as the PURISTA peer script)")]
struct Args {
    /// Calls per command run.
    #[arg(long, default_value_t = 20_000)]
    n: u64,
    /// Calls in flight for the concurrent run.
    #[arg(long, default_value_t = 100)]
    concurrency: u64,
    /// Events per fan-out run.
    #[arg(long, default_value_t = 50_000)]
    events: u64,
    /// Subscribing services per fan-out run (comma list).
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    subs: Vec<usize>,
    /// Runs per figure (the median is shown).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Warm-up calls before measuring.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<String>,
    /// Telemetry on during the run, to measure its cost.
    #[arg(long, value_enum, default_value = "off")]
    telemetry: TelemetryMode,
    /// Also a log layer at info (writing nowhere), as a service that logs has.
    #[arg(long)]
    log: bool,
    /// Run only this command workload (for counting instructions): no other command workload,
    /// no warm-up, no events.
    #[arg(long, value_enum)]
    only: Option<Only>,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Only {
    Validated,
    Unvalidated,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

struct CommandRun {
    ops: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn command_run(client: &Client, calls: u64, in_flight: u64) -> CommandRun {
    let driven: Driven = client.invoke("ServiceA/1/drive", Drive { calls, in_flight }).await.expect("drive");
    let mut sorted = driven.latencies_ns;
    sorted.sort_unstable();
    CommandRun {
        ops: calls as f64 / driven.elapsed_secs,
        p50_us: percentile(&sorted, 50.0) as f64 / 1000.0,
        p99_us: percentile(&sorted, 99.0) as f64 / 1000.0,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let telemetry = BenchTelemetry::start(args.telemetry, args.log);
    println!(
        "# purest in-memory bridge benchmark (telemetry: {:?}, log layer: {})",
        args.telemetry, args.log
    );
    println!(
        "{}",
        json!({"purest": env!("CARGO_PKG_VERSION"), "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" }})
    );
    println!(
        "# N={} concurrency={} events={} subs={:?} repeat={} (median of repeats shown)",
        args.n, args.concurrency, args.events, args.subs, args.repeat
    );
    let mut results = json!({"command": [], "events": []});

    let workloads = match args.only {
        None => vec![true, false],
        Some(only) => vec![only == Only::Validated],
    };
    for validate in workloads {
        let mut app = App::new();
        for service in command_services(validate) {
            app = app.service(service);
        }
        let app = app.start().await.expect("start");
        let client = app.client();
        if args.only.is_none() {
            command_run(&client, args.warmup, 1).await;
            command_run(&client, args.warmup, args.concurrency).await;
        }
        for in_flight in [1, args.concurrency] {
            let runs: Vec<CommandRun> = {
                let mut runs = Vec::new();
                for _ in 0..args.repeat {
                    runs.push(command_run(&client, args.n, in_flight).await);
                }
                runs
            };
            let ops = median(runs.iter().map(|r| r.ops).collect());
            let p50 = median(runs.iter().map(|r| r.p50_us).collect());
            let p99 = median(runs.iter().map(|r| r.p99_us).collect());
            let label = if validate { "validated" } else { "no-validation" };
            println!(
                "command A->B  {label:>13}  in-flight={in_flight:>3}  calls={}  ops/s={ops:.0}  p50={p50:.2}us  p99={p99:.2}us  (runs ops/s: {})",
                args.n,
                runs.iter().map(|r| format!("{:.0}", r.ops)).collect::<Vec<_>>().join(", ")
            );
            results["command"]
                .as_array_mut()
                .unwrap()
                .push(json!({"validated": validate, "inFlight": in_flight, "calls": args.n,
                "opsPerSec": ops, "p50us": p50, "p99us": p99}));
        }
        app.shutdown().await;
    }

    let subs = if args.only.is_some() { &[][..] } else { &args.subs[..] };
    for &subs in subs {
        let counter = TickCounter::default();
        let mut app = App::new();
        for service in command_services(true).into_iter().chain(subscriber_services(subs, &counter)) {
            app = app.service(service);
        }
        let app = app.start().await.expect("start");
        let client = app.client();
        let mut run_id = 0;
        let mut event_run = |count: u64| {
            run_id += 1;
            let (client, counter, run) = (client.clone(), counter.clone(), run_id);
            async move {
                counter.reset(run, count as usize * subs);
                let started = Instant::now();
                let emit_secs: f64 = client.invoke("ServiceA/1/emitTicks", EmitTicks { count, run }).await.expect("emit");
                counter.wait().await;
                let total = started.elapsed().as_secs_f64();
                assert_eq!(counter.delivered(), count as usize * subs);
                (
                    count as f64 / emit_secs,
                    count as f64 / total,
                    (count as usize * subs) as f64 / total,
                )
            }
        };
        event_run(args.warmup.min(args.events)).await;
        let mut runs = Vec::new();
        for _ in 0..args.repeat {
            runs.push(event_run(args.events).await);
        }
        let emit = median(runs.iter().map(|r| r.0).collect());
        let events = median(runs.iter().map(|r| r.1).collect());
        let deliveries = median(runs.iter().map(|r| r.2).collect());
        println!(
            "event fan-out subs={subs}  events={}  events/s(end-to-end)={events:.0}  deliveries/s={deliveries:.0}  emit-side/s={emit:.0}",
            args.events
        );
        results["events"]
            .as_array_mut()
            .unwrap()
            .push(json!({"subscriptions": subs, "events": args.events,
            "eventsPerSec": events, "deliveriesPerSec": deliveries, "emitPerSec": emit}));
        app.shutdown().await;
    }

    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).expect("write json");
    }
    println!("# {}", telemetry.finish());
}
