//! Event store figures on PostgreSQL, in one process and one sitting (see `bench/eventstore.sh`):
//!
//! - appends/s by 1 and 16 writers, one event per transaction and batches of 10: purest's
//!   `append` (each writer on a stream of its own, expecting its version), beside the raw
//!   baseline — plain sqlx inserting the same rows into a table of the same columns and indexes,
//!   one `INSERT … SELECT FROM unnest(…)` per transaction, without version checks;
//! - stream reads (events/s), purest's `read_stream` beside the same `SELECT` decoded by sqlx;
//! - projection catch-up (events/s) over everything appended: at least once (read model in
//!   memory, checkpoint in PostgreSQL) and effectively once (a per-stream count upserted in the
//!   batch's transaction);
//! - outbox relay (events/s) to NATS, each event published and confirmed in order.
//!
//! Each run works in a schema of its own, dropped at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use purest::eventstore::{
    Direction, EventStore, Expected, NewEvent, OutboxRelay, PgEventStore, PgOptions, PgProjection, Projection, Projections, RecordedEvent,
    database_error,
};
use purest::{Address, HandledError};
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{Executor, PgConnection, Row};

#[derive(Parser)]
#[command(about = "purest's event store on PostgreSQL beside raw sqlx")]
struct Args {
    /// The database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database: String,
    /// The NATS server the relay publishes to.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Seconds each append figure is measured over.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of the append figures (purest and raw alternate within each).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Whether appends notify readers (purest's default); off shows what notifying costs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    notify: bool,
    /// Only the append figures.
    #[arg(long)]
    appends_only: bool,
}

/// A meter reading of about 100 bytes: the payload of every event.
fn payload(meter: u64, n: u64) -> serde_json::Value {
    serde_json::json!({ "meter": meter, "reading": n as f64 * 0.25, "unit": "kWh", "at": "2026-12-07T01:00:00Z", "n": n })
}

fn event(meter: u64, n: u64) -> NewEvent {
    NewEvent::new("metered", &payload(meter, n)).expect("a payload is JSON")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let schema = format!("bench_{}", &purest::Id::random().to_string()[..12]);
    let options = PgOptions {
        schema: schema.clone(),
        pool_size: 20,
        notify: args.notify,
        ..PgOptions::default()
    };
    let store = PgEventStore::connect(&args.database, options).await?;
    store.pool().execute(raw_table(&schema).as_str()).await?;
    let seconds = Duration::from_secs(args.seconds);

    println!("| figure | purest | raw sqlx | ratio |");
    println!("|---|---:|---:|---:|");
    for round in 1..=args.rounds {
        for (writers, batch) in [(1, 1), (1, 10), (16, 1), (16, 10)] {
            let ours = appends(&store, writers, batch, seconds, round).await?;
            let raw = raw_appends(&store, writers, batch, seconds, round).await?;
            println!(
                "| appends/s, {writers} writer{}, {batch} per transaction | {ours:.0} | {raw:.0} | {:.2}× |",
                if writers == 1 { "" } else { "s" },
                ours / raw
            );
        }
    }

    if args.appends_only {
        store.pool().execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str()).await?;
        return Ok(());
    }
    let (ours, raw) = stream_reads(&store, seconds).await?;
    println!(
        "| stream reads, events/s (pages of 500) | {ours:.0} | {raw:.0} | {:.2}× |",
        ours / raw
    );

    let total = store.count_after(0, None).await?;
    let at_least_once = catch_up_in_memory(&store).await?;
    println!("| projection catch-up, events/s, at least once ({total} events) | {at_least_once:.0} | | |");
    let effectively_once = catch_up_in_postgres(&store).await?;
    println!("| projection catch-up, events/s, effectively once ({total} events) | {effectively_once:.0} | | |");

    let relayed = relay(&store, &args.nats).await?;
    println!("| outbox relay to NATS, events/s | {relayed:.0} | | |");

    store.pool().execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str()).await?;
    Ok(())
}

/// The baseline's table: the events table's columns and indexes, its own sequence for positions.
fn raw_table(schema: &str) -> String {
    format!(
        "CREATE TABLE \"{schema}\".raw_events (
            position bigserial PRIMARY KEY,
            stream text NOT NULL,
            category text NOT NULL GENERATED ALWAYS AS (split_part(stream, '-', 1)) STORED,
            version bigint NOT NULL,
            id text NOT NULL,
            event_type text NOT NULL,
            schema_version integer NOT NULL,
            payload jsonb NOT NULL,
            metadata jsonb NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            UNIQUE (stream, version),
            UNIQUE (id)
        );
        CREATE INDEX ON \"{schema}\".raw_events (category, position);"
    )
}

/// Runs `writers` tasks for `seconds`; each calls `write(writer, round)` until time is up and
/// returns how many events it wrote. Events per second.
async fn measure<F, Fut>(writers: u64, seconds: Duration, write: F) -> Result<f64, HandledError>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64, HandledError>> + Send,
{
    let write = Arc::new(write);
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (write, written) = (write.clone(), written.clone());
            tokio::spawn(async move {
                while started.elapsed() < seconds {
                    written.fetch_add(write(writer).await?, Ordering::Relaxed);
                }
                Ok::<_, HandledError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| HandledError::internal(e.to_string()))??;
    }
    Ok(written.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn appends(store: &PgEventStore, writers: u64, batch: u64, seconds: Duration, round: u32) -> Result<f64, HandledError> {
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let store = store.clone();
    measure(writers, seconds, move |writer| {
        let (store, versions) = (store.clone(), versions.clone());
        async move {
            let version = versions[writer as usize].load(Ordering::Relaxed);
            let events = (0..batch).map(|n| event(writer, version + n)).collect();
            let expected = if version == 0 {
                Expected::NoStream
            } else {
                Expected::Version(version)
            };
            let stream = format!("meter-{round}x{writers}x{batch}x{writer}");
            let appended = store.append(&stream, expected, events).await?;
            versions[writer as usize].store(appended.version, Ordering::Relaxed);
            Ok(batch)
        }
    })
    .await
}

async fn raw_appends(store: &PgEventStore, writers: u64, batch: u64, seconds: Duration, round: u32) -> Result<f64, HandledError> {
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let sql = Arc::new(format!(
        "INSERT INTO \"{}\".raw_events (stream, version, id, event_type, schema_version, payload, metadata)
         SELECT $1, $2 + e.o, e.i, e.t, e.s, e.p, e.m
         FROM unnest($3::text[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[]) WITH ORDINALITY AS e(i, t, s, p, m, o)",
        store.schema()
    ));
    let pool = store.pool().clone();
    measure(writers, seconds, move |writer| {
        let (pool, sql, versions) = (pool.clone(), sql.clone(), versions.clone());
        async move {
            let version = versions[writer as usize].load(Ordering::Relaxed);
            let events: Vec<NewEvent> = (0..batch).map(|n| event(writer, version + n)).collect();
            let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            let schema_versions: Vec<i32> = events.iter().map(|e| e.schema_version as i32).collect();
            let payloads: Vec<Json<&RawValue>> = events.iter().map(|e| Json(&*e.payload)).collect();
            let metadata: Vec<Json<&purest::eventstore::Metadata>> = events.iter().map(|e| Json(&e.metadata)).collect();
            sqlx::query(&sql)
                .bind(format!("raw-{round}x{writers}x{batch}x{writer}"))
                .bind(version as i64)
                .bind(&ids)
                .bind(&types)
                .bind(&schema_versions)
                .bind(&payloads)
                .bind(&metadata)
                .execute(&pool)
                .await
                .map_err(|e| database_error("insert raw rows", &e))?;
            versions[writer as usize].store(version + batch, Ordering::Relaxed);
            Ok(batch)
        }
    })
    .await
}

/// A stream of 10,000 events read whole, in pages of 500, for `seconds`: purest, then raw sqlx.
async fn stream_reads(store: &PgEventStore, seconds: Duration) -> Result<(f64, f64), HandledError> {
    const LENGTH: u64 = 10_000;
    const PAGE: usize = 500;
    for chunk in 0..LENGTH / 100 {
        let events = (0..100).map(|n| event(0, chunk * 100 + n)).collect();
        store.append("long-1", Expected::Version(chunk * 100), events).await?;
    }
    let ours = {
        let store = store.clone();
        measure(1, seconds, move |_| {
            let store = store.clone();
            async move {
                let mut from = 1;
                loop {
                    let page = store.read_stream("long-1", from, Direction::Forward, PAGE).await?;
                    from += page.len() as u64;
                    if page.len() < PAGE {
                        return Ok(from - 1);
                    }
                }
            }
        })
        .await?
    };
    let sql = Arc::new(format!(
        "SELECT position, stream, version, id, event_type, schema_version, payload, metadata,
                (extract(epoch from recorded_at) * 1000)::bigint AS recorded_ms
         FROM \"{}\".events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3",
        store.schema()
    ));
    let pool = store.pool().clone();
    let raw = measure(1, seconds, move |_| {
        let (pool, sql) = (pool.clone(), sql.clone());
        async move {
            let mut from = 1i64;
            loop {
                let rows = sqlx::query(&sql)
                    .bind("long-1")
                    .bind(from)
                    .bind(PAGE as i64)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| database_error("read raw rows", &e))?;
                for row in &rows {
                    let decoded: RawRow = (
                        row.get(0),
                        row.get(1),
                        row.get(2),
                        row.get(3),
                        row.get(4),
                        row.get(5),
                        row.get(6),
                        row.get(7),
                        row.get(8),
                    );
                    std::hint::black_box(decoded);
                }
                from += rows.len() as i64;
                if rows.len() < PAGE {
                    return Ok(from as u64 - 1);
                }
            }
        }
    })
    .await?;
    Ok((ours, raw))
}

/// A row of the events table as the baseline decodes it.
type RawRow = (
    i64,
    String,
    i64,
    String,
    String,
    i32,
    Json<Box<RawValue>>,
    Json<serde_json::Value>,
    i64,
);

/// Counts events in memory; its checkpoint is in PostgreSQL.
struct Counter(AtomicU64);

impl Projection for Counter {
    fn name(&self) -> &str {
        "bench_in_memory"
    }
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), HandledError> {
        self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    async fn reset(&self) -> Result<(), HandledError> {
        self.0.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// The position of the store's last readable event.
async fn last_position(store: &PgEventStore) -> Result<u64, HandledError> {
    let mut last = 0;
    loop {
        let page = store.read_all(last, 10_000).await?;
        match page.last() {
            Some(event) => last = event.position,
            None => return Ok(last),
        }
    }
}

async fn catch_up_in_memory(store: &PgEventStore) -> Result<f64, HandledError> {
    let last = last_position(store).await?;
    let total = store.count_after(0, None).await?;
    let checkpoints: Arc<dyn purest::eventstore::Checkpoints> = Arc::new(store.clone());
    let started = Instant::now();
    let running = Projections::new(Arc::new(store.clone()))
        .add(Counter(AtomicU64::new(0)), checkpoints)
        .start();
    running.caught_up("bench_in_memory", last).await?;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    running.stop().await;
    Ok(rate)
}

/// Upserts a count per stream, one statement per batch, in the batch's transaction.
struct StreamCounts(String);

impl PgProjection for StreamCounts {
    fn name(&self) -> &str {
        "bench_in_postgres"
    }
    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), HandledError> {
        let streams: Vec<&str> = events.iter().map(|e| &*e.stream).collect();
        sqlx::query(&format!(
            "INSERT INTO {0} (stream, events) SELECT s, count(*) FROM unnest($1::text[]) AS s GROUP BY s
             ON CONFLICT (stream) DO UPDATE SET events = {0}.events + excluded.events",
            self.0
        ))
        .bind(&streams)
        .execute(&mut *tx)
        .await
        .map_err(|e| database_error("count streams", &e))?;
        Ok(())
    }
    async fn reset(&self, tx: &mut PgConnection) -> Result<(), HandledError> {
        tx.execute(format!("TRUNCATE {}", self.0).as_str())
            .await
            .map_err(|e| database_error("empty the counts", &e))?;
        Ok(())
    }
}

async fn catch_up_in_postgres(store: &PgEventStore) -> Result<f64, HandledError> {
    let table = format!("\"{}\".stream_counts", store.schema());
    store
        .pool()
        .execute(format!("CREATE TABLE {table} (stream text PRIMARY KEY, events bigint NOT NULL)").as_str())
        .await
        .map_err(|e| database_error("create the counts", &e))?;
    let last = last_position(store).await?;
    let total = store.count_after(0, None).await?;
    let started = Instant::now();
    let running = Projections::new(Arc::new(store.clone()))
        .add_in_postgres(StreamCounts(table), store)
        .start();
    running.caught_up("bench_in_postgres", last).await?;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    running.stop().await;
    Ok(rate)
}

/// Relays 20,000 fresh events of their own category to NATS.
async fn relay(store: &PgEventStore, nats: &str) -> Result<f64, Box<dyn std::error::Error>> {
    const EVENTS: u64 = 20_000;
    let mut last = 0;
    for chunk in 0..EVENTS / 100 {
        let events = (0..100)
            .map(|n| NewEvent::new("relayed", &payload(1, chunk * 100 + n)).expect("JSON"))
            .collect();
        last = store
            .append(&format!("relay-{chunk}"), Expected::NoStream, events)
            .await?
            .first_position;
    }
    let bridge: Arc<dyn purest::Bridge> = Arc::new(purest::nats::NatsBridge::connect_url(nats).await.map_err(|e| e.to_string())?);
    let relay = OutboxRelay::new(bridge, Address::new("bench", "1", "")).category("relay");
    let started = Instant::now();
    let running = Projections::new(Arc::new(store.clone())).add_leased(relay, store).start();
    running.caught_up("outbox", last).await?;
    let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    running.stop().await;
    Ok(rate)
}
