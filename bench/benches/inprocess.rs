//! Criterion micro-benchmarks of the in-memory bridge: (a) validated command round trip,
//! (b) the same without validation, (c) one event fanned out to 1 and 4 subscribing services.
//! `cargo bench -p purest-bench`; the side-by-side figures come from the `purest-bench` binary.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use purest::prelude::*;
use purest_bench::{Ping, Pong, Tick, TickCounter, command_services, subscriber_services};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn commands(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("command_round_trip");
    group.throughput(Throughput::Elements(1));
    for validate in [true, false] {
        let app = rt.block_on(async {
            let mut app = App::new();
            for service in command_services(validate) {
                app = app.service(service);
            }
            app.start().await.expect("start")
        });
        let client = app.client();
        let name = if validate { "validated" } else { "no_validation" };
        group.bench_function(BenchmarkId::new(name, 1), |b| {
            b.to_async(&rt).iter(|| async {
                let pong: Pong = client.invoke(("ServiceB", "1", "ping"), Ping { seq: 7 }).await.expect("ping");
                pong
            })
        });
        rt.block_on(app.shutdown());
    }
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("event_fan_out");
    group.measurement_time(Duration::from_secs(5));
    const BATCH: u64 = 1_000;
    for subscribers in [1usize, 4] {
        let counter = TickCounter::default();
        let app = rt.block_on(async {
            let mut app = App::new();
            for service in subscriber_services(subscribers, &counter) {
                app = app.service(service);
            }
            app.start().await.expect("start")
        });
        let client = app.client();
        group.throughput(Throughput::Elements(BATCH * subscribers as u64));
        let mut run = 0;
        group.bench_function(BenchmarkId::new("deliveries", subscribers), |b| {
            b.to_async(&rt).iter(|| {
                run += 1;
                let (client, counter, run) = (client.clone(), counter.clone(), run);
                async move {
                    counter.reset(run, BATCH as usize * subscribers);
                    for seq in 0..BATCH {
                        client.emit("bench.tick", Tick { seq, run }).await.expect("emit");
                    }
                    counter.wait().await;
                }
            })
        });
        rt.block_on(app.shutdown());
    }
    group.finish();
}

criterion_group!(benches, commands, fan_out);
criterion_main!(benches);
