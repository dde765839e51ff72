//! The transactional outbox and the inbox on PostgreSQL: a handler's write and its events commit
//! together; the relay carries them to a real broker in order, at least once, across a SIGKILL
//! and with several relays at once; a consumer with an inbox has each effect once although every
//! message reaches it twice.

#[allow(dead_code)]
mod common;
mod pg_support;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_bridge_tests::nats_server::OwnServer;
use purest_bridge_tests::process::Served;
use purest_core::prelude::*;
use purest_core::{Address, Bridge};
use purest_eventstore::{Checkpoints, EventStore, Expected, NewEvent, OutboxRelay, PgEventStore, PgOptions, Projections};
use purest_nats::NatsBridge;
use serde_json::json;
use sqlx::Executor;

/// Set in a relay process: the schema of the store it relays.
const RELAY_SCHEMA: &str = "PUREST_TEST_RELAY_SCHEMA";
/// Set in a relay process: the NATS it publishes to.
const RELAY_NATS: &str = "PUREST_TEST_RELAY_NATS";

/// Waits (at most 60 s) until `done` holds, naming `what` if it never does.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A state change and the events it causes commit together, or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_and_its_events_commit_together() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = &test.store;
    let balances = format!("\"{}\".balances", store.schema());
    store
        .pool()
        .execute(
            format!("CREATE TABLE {balances} (id int PRIMARY KEY, cents bigint NOT NULL); INSERT INTO {balances} VALUES (1, 100)").as_str(),
        )
        .await
        .unwrap();
    let withdraw = format!("UPDATE {balances} SET cents = cents - 30 WHERE id = 1");
    let balance = || async {
        sqlx::query_scalar::<_, i64>(&format!("SELECT cents FROM {balances} WHERE id = 1"))
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let withdrawn = || NewEvent::new("withdrawn", &json!({ "cents": 30 })).unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    tx.execute(withdraw.as_str()).await.unwrap();
    store
        .append_in(&mut tx, "account-1", Expected::Any, vec![withdrawn()])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!((balance().await, store.stream_version("account-1").await.unwrap()), (100, 0));

    let mut tx = store.pool().begin().await.unwrap();
    tx.execute(withdraw.as_str()).await.unwrap();
    store
        .append_in(&mut tx, "account-1", Expected::Any, vec![withdrawn()])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((balance().await, store.stream_version("account-1").await.unwrap()), (70, 1));
    test.finish().await;
}

/// Not a test on its own: the relay process of `a_relay_killed_midway_loses_nothing`, which runs
/// this test binary again with [`RELAY_SCHEMA`] and [`RELAY_NATS`] set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_process() {
    let (Ok(schema), Ok(nats)) = (std::env::var(RELAY_SCHEMA), std::env::var(RELAY_NATS)) else {
        return;
    };
    let options = PgOptions {
        schema,
        ..PgOptions::default()
    };
    let store = PgEventStore::connect(&pg_support::database_url(), options).await.unwrap();
    let bridge: Arc<dyn Bridge> = Arc::new(NatsBridge::connect_url(&nats).await.unwrap());
    let relay = OutboxRelay::new(bridge, Address::new("meters", "1", ""));
    let _running = Projections::new(Arc::new(store.clone()))
        .add_leased(relay, &store)
        .batch(10)
        .start();
    println!("relaying");
    std::future::pending::<()>().await;
}

fn relay(store: &PgEventStore, nats: &OwnServer) -> Served {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["relay_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(RELAY_SCHEMA, store.schema())
        .env(RELAY_NATS, nats.url())
        .env("RUST_LOG", "warn");
    let relay = Served::spawn(command);
    relay.wait_for_log("relaying");
    relay
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Reading {
    meter: u64,
    seq: u64,
}

type Seen = Arc<Mutex<Vec<Reading>>>;

async fn record(State(seen): State<Seen>, Payload(reading): Payload<Reading>) -> Result<(), HandledError> {
    seen.lock().unwrap().push(reading);
    Ok(())
}

/// 1000 events in 10 streams; a relay process is SIGKILLed after 150 reached the subscriber, then
/// two relay processes run at once. Every event arrives, each stream in order, and at most the
/// one batch in flight at the kill (10 events) arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_midway_loses_nothing() {
    let Some(nats) = OwnServer::start() else { return };
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = test.store.clone();
    let seen = Seen::default();
    let auditor = Service::new("auditor", "1")
        .state(seen.clone())
        .subscription(Subscription::new("audit", record).on_event("metered").durable());
    let bridge = NatsBridge::connect_url(&nats.url()).await.unwrap();
    let app = Host::new().bridge(bridge).service(auditor).start().await.unwrap();

    const METERS: u64 = 10;
    const EACH: u64 = 100;
    for round in 0..EACH / 10 {
        for meter in 0..METERS {
            let events = (0..10)
                .map(|i| {
                    NewEvent::new(
                        "metered",
                        &Reading {
                            meter,
                            seq: round * 10 + i,
                        },
                    )
                    .unwrap()
                })
                .collect();
            store.append(&format!("meter-{meter}"), Expected::Any, events).await.unwrap();
        }
    }
    let last = common::settled(&store, 0, (METERS * EACH) as usize).await.last().unwrap().position;

    let mut first = relay(&store, &nats);
    until("150 events relayed", || seen.lock().unwrap().len() >= 150).await;
    first.kill();
    let at_kill = seen.lock().unwrap().len();
    assert!(at_kill < 1000, "the kill landed midway ({at_kill} relayed)");
    let (_second, _third) = (relay(&store, &nats), relay(&store, &nats));
    let distinct = || seen.lock().unwrap().iter().collect::<HashSet<_>>().len();
    until("every event relayed", || distinct() == (METERS * EACH) as usize).await;

    let seen = seen.lock().unwrap().clone();
    let duplicates = seen.len() - (METERS * EACH) as usize;
    eprintln!("{at_kill} events relayed before the kill; {duplicates} arrived twice");
    assert!(duplicates <= 10, "{duplicates} events arrived twice; at most one batch may");
    let mut order: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut firsts = HashSet::new();
    for reading in &seen {
        if firsts.insert(reading.clone()) {
            order.entry(reading.meter).or_default().push(reading.seq);
        }
    }
    for (meter, seqs) in order {
        assert_eq!(seqs, (0..EACH).collect::<Vec<_>>(), "meter {meter}'s events in stream order");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.load("outbox", None).await.unwrap().position < last {
        assert!(Instant::now() < deadline, "the relay's checkpoint reached the last event");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.shutdown().await;
    test.finish().await;
}

#[derive(Clone)]
struct Billing {
    store: PgEventStore,
    table: String,
    /// Messages that have failed once on purpose.
    failed_once: Arc<Mutex<HashSet<Id>>>,
    deliveries: Arc<Mutex<u32>>,
}

/// Bills once per message, recording it in the inbox in the same transaction; then fails each
/// message's first delivery as if the process died before acknowledging it.
async fn bill(ctx: Context, State(billing): State<Billing>) -> Result<(), HandledError> {
    let id = ctx.message().id.clone();
    let failed = |e: sqlx::Error| HandledError::internal(e.to_string());
    let mut tx = billing.store.pool().begin().await.map_err(failed)?;
    if billing.store.claim_message(&mut tx, "billing", &id).await? {
        let charge = format!("UPDATE {} SET charges = charges + 1", billing.table);
        tx.execute(charge.as_str()).await.map_err(failed)?;
    }
    tx.commit().await.map_err(failed)?;
    *billing.deliveries.lock().unwrap() += 1;
    if billing.failed_once.lock().unwrap().insert(id) {
        return Err(HandledError::unavailable("the acknowledgement was lost"));
    }
    Ok(())
}

/// Every message reaches the consumer twice (its first delivery fails after the effect
/// committed); with its inbox, each message has its effect once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_has_each_effect_once() {
    let Some(test) = pg_support::fresh_store().await else { return };
    let store = test.store.clone();
    let table = format!("\"{}\".billing", store.schema());
    store
        .pool()
        .execute(format!("CREATE TABLE {table} (charges bigint NOT NULL); INSERT INTO {table} VALUES (0)").as_str())
        .await
        .unwrap();
    let billing = Billing {
        store: store.clone(),
        table: table.clone(),
        failed_once: Arc::default(),
        deliveries: Arc::default(),
    };
    let service = Service::new("billing", "1").state(billing.clone()).subscription(
        Subscription::new("bill", bill)
            .on_event("ordered")
            .durable()
            .retry(Retry::exponential(5).backoff(Duration::from_millis(5))),
    );
    let app = Host::new().service(service).start().await.unwrap();
    let relay = OutboxRelay::new(app.bridge().clone(), Address::new("orders", "1", ""));
    let running = Projections::new(Arc::new(store.clone())).add_leased(relay, &store).start();
    for n in 0..50 {
        let ordered = NewEvent::new("ordered", &json!({ "n": n })).unwrap();
        store
            .append(&format!("order-{n}"), Expected::NoStream, vec![ordered])
            .await
            .unwrap();
    }
    until("every message delivered twice", || *billing.deliveries.lock().unwrap() >= 100).await;
    let charges: i64 = sqlx::query_scalar(&format!("SELECT charges FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(charges, 50, "one charge per message");
    assert_eq!(*billing.deliveries.lock().unwrap(), 100);
    running.stop().await;
    app.shutdown().await;
    test.finish().await;
}
