//! Cases every event store passes, whatever keeps its events: each takes a fresh store.

use std::sync::Arc;

use purest_eventstore::{Direction, EventStore, Expected, NewEvent};
use serde_json::json;

fn event(kind: &str, n: u64) -> NewEvent {
    NewEvent::new(kind, &json!({ "n": n })).unwrap()
}

/// The first `count` events after `after`, once that many are readable. PostgreSQL shows a
/// reader new events only once every older writing transaction in the cluster has ended (other
/// tests' too), so a read right after an append can come a moment early.
pub async fn settled(store: &dyn EventStore, after: u64, count: usize) -> Vec<purest_eventstore::RecordedEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = store.read_all(after, count.max(1000)).await.unwrap();
        if events.len() >= count {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} events became readable",
            events.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn numbers(events: &[purest_eventstore::RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.payload_as::<serde_json::Value>().unwrap()["n"].as_u64().unwrap())
        .collect()
}

/// Versions run 1, 2, 3 per stream; positions rise across streams; reads go both ways, from a
/// version, by category and from a position.
pub async fn versions_positions_and_reads(store: Arc<dyn EventStore>) {
    store
        .append("order-1", Expected::NoStream, vec![event("placed", 1), event("paid", 2)])
        .await
        .unwrap();
    store
        .append("customer-7", Expected::Any, vec![event("registered", 3)])
        .await
        .unwrap();
    let appended = store
        .append("order-1", Expected::Version(2), vec![event("shipped", 4)])
        .await
        .unwrap();
    assert_eq!(appended.version, 3);
    assert_eq!(store.stream_version("order-1").await.unwrap(), 3);
    assert_eq!(store.stream_version("order-2").await.unwrap(), 0);

    let forward = store.read_stream("order-1", 2, Direction::Forward, 10).await.unwrap();
    assert_eq!(forward.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(numbers(&forward), [2, 4]);
    let backward = store.read_stream("order-1", u64::MAX, Direction::Backward, 2).await.unwrap();
    assert_eq!(backward.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 2]);
    assert!(store.read_stream("order-2", 1, Direction::Forward, 10).await.unwrap().is_empty());

    let all = settled(&*store, 0, 4).await;
    assert_eq!(numbers(&all), [1, 2, 3, 4]);
    assert!(all.windows(2).all(|pair| pair[0].position < pair[1].position), "positions rise");
    assert_eq!(appended.first_position, all[3].position);
    assert_eq!(numbers(&store.read_all(all[1].position, 1).await.unwrap()), [3]);
    let orders = store.read_category("order", 0, 10).await.unwrap();
    assert_eq!(numbers(&orders), [1, 2, 4]);
    assert!(orders.iter().all(|e| &*e.stream == "order-1" && e.category() == "order"));
    assert_eq!(numbers(&store.read_category("order", all[1].position, 10).await.unwrap()), [4]);
}

/// An append whose expectation the stream does not meet is refused with 409 naming the stream
/// and both versions, and changes nothing.
pub async fn stale_expectations_are_refused(store: Arc<dyn EventStore>) {
    store.append("cart-1", Expected::NoStream, vec![event("created", 1)]).await.unwrap();
    let again = store
        .append("cart-1", Expected::NoStream, vec![event("created", 2)])
        .await
        .unwrap_err();
    assert_eq!(again.status, 409, "{again}");
    assert!(again.message.contains("cart-1") && again.message.contains("version 1"), "{again}");
    assert_eq!(again.data, Some(json!({"stream": "cart-1", "expected": 0, "actual": 1})));
    let ahead = store
        .append("cart-1", Expected::Version(5), vec![event("added", 3)])
        .await
        .unwrap_err();
    assert_eq!(ahead.data, Some(json!({"stream": "cart-1", "expected": 5, "actual": 1})));
    let missing = store
        .append("cart-2", Expected::Version(1), vec![event("added", 4)])
        .await
        .unwrap_err();
    assert!(missing.message.contains("no events"), "{missing}");
    assert_eq!(store.stream_version("cart-1").await.unwrap(), 1, "refused appends change nothing");
    assert_eq!(settled(&*store, 0, 1).await.len(), 1);
    store.append("cart-1", Expected::Any, vec![event("added", 5)]).await.unwrap();
    assert_eq!(store.stream_version("cart-1").await.unwrap(), 2);
}

/// Of 16 writers appending at once to a stream they all read at version 1, exactly one wins; the
/// others get 409.
pub async fn one_of_many_concurrent_writers_wins(store: Arc<dyn EventStore>) {
    store
        .append("seat-12", Expected::NoStream, vec![event("offered", 0)])
        .await
        .unwrap();
    let writers = (1..=16u64).map(|n| {
        let store = store.clone();
        tokio::spawn(async move { store.append("seat-12", Expected::Version(1), vec![event("reserved", n)]).await })
    });
    let outcomes = futures::future::join_all(writers).await;
    let won = outcomes.iter().filter(|o| o.as_ref().unwrap().is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| o.as_ref().unwrap().as_ref().is_err_and(|e| e.status == 409))
        .count();
    assert_eq!((won, refused), (1, 15));
    assert_eq!(store.stream_version("seat-12").await.unwrap(), 2);
}

/// An append is all or nothing: one holding an event id twice (or one the stream has) is refused
/// whole; bad names and empty appends are 400s naming the problem.
pub async fn appends_are_all_or_nothing(store: Arc<dyn EventStore>) {
    let first = event("opened", 1);
    let twice = vec![event("noted", 2), first.clone()];
    store.append("ledger-1", Expected::Any, vec![first]).await.unwrap();
    let duplicate = store.append("ledger-1", Expected::Any, twice).await.unwrap_err();
    assert_eq!(duplicate.status, 409, "{duplicate}");
    assert!(duplicate.message.contains("ledger-1"), "{duplicate}");
    assert_eq!(
        store.stream_version("ledger-1").await.unwrap(),
        1,
        "nothing of the refused append was kept"
    );
    let same = event("noted", 3);
    let within = store.append("ledger-1", Expected::Any, vec![same.clone(), same]).await.unwrap_err();
    assert_eq!(within.status, 409, "{within}");
    for (stream, events) in [("", vec![event("x", 1)]), ("ledger-1", vec![]), ("bad\nname", vec![event("x", 1)])] {
        let refused = store.append(stream, Expected::Any, events).await.unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");
    }
    let untyped = NewEvent::new(" ", &json!({})).unwrap();
    assert_eq!(
        store.append("ledger-1", Expected::Any, vec![untyped]).await.unwrap_err().status,
        400
    );
    assert_eq!(settled(&*store, 0, 1).await.len(), 1);
}

/// A reader following the global order with a checkpoint while 8 writers append to 8 streams
/// sees every event once, in rising positions.
pub async fn a_checkpointed_reader_sees_every_event_once(store: Arc<dyn EventStore>) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 50;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    store
                        .append(&format!("meter-{w}"), Expected::Any, vec![event("read", w * EACH + n)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let (mut checkpoint, mut seen) = (0u64, Vec::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (seen.len() as u64) < WRITERS * EACH {
        assert!(std::time::Instant::now() < deadline, "saw {} of {}", seen.len(), WRITERS * EACH);
        let batch = store.read_all(checkpoint, 37).await.unwrap();
        for event in &batch {
            assert!(event.position > checkpoint, "positions rise: {} after {checkpoint}", event.position);
            checkpoint = event.position;
        }
        seen.extend(numbers(&batch));
        if batch.is_empty() {
            tokio::task::yield_now().await;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..WRITERS * EACH).collect::<Vec<_>>(), "every event once");
}

/// A stream's newest snapshot is kept; an older one written late does not replace it.
pub async fn the_newest_snapshot_is_kept(store: Arc<dyn EventStore>) {
    use purest_eventstore::Snapshot;
    let snapshot = |version: u64, total: u64| Snapshot {
        stream: Arc::from("tally-1"),
        version,
        state_version: 1,
        state: Arc::from(serde_json::value::to_raw_value(&json!({ "total": total })).unwrap()),
    };
    assert!(store.read_snapshot("tally-1").await.unwrap().is_none());
    store.write_snapshot(snapshot(20, 200)).await.unwrap();
    store.write_snapshot(snapshot(10, 100)).await.unwrap();
    let kept = store.read_snapshot("tally-1").await.unwrap().unwrap();
    let state: serde_json::Value = serde_json::from_str(kept.state.get()).unwrap();
    assert_eq!((kept.version, state), (20, json!({ "total": 200 })));
    store.write_snapshot(snapshot(30, 300)).await.unwrap();
    assert_eq!(store.read_snapshot("tally-1").await.unwrap().unwrap().version, 30);
}

/// The event types a store is given: appends are checked against them (400 naming the problem),
/// old payloads are read upcast to the current version, and an event no reader can understand is
/// an error naming its type and version. `unchecked` and `checked` share their events; only
/// `checked` was given [`types`].
pub async fn types_are_checked_and_upcast(unchecked: Arc<dyn EventStore>, checked: Arc<dyn EventStore>) {
    // Written by earlier releases: v1 and v2 of `priced`, a type this release dropped, and a
    // version from a newer release.
    let v1 = NewEvent::new("priced", &json!({ "cents": 1250 })).unwrap();
    let v2 = NewEvent::new("priced", &json!({ "amount": { "cents": 990 } }))
        .unwrap()
        .schema_version(2);
    unchecked.append("product-1", Expected::NoStream, vec![v1, v2]).await.unwrap();

    let read = checked.read_stream("product-1", 1, Direction::Forward, 10).await.unwrap();
    let lifted: Vec<(u32, serde_json::Value)> = read.iter().map(|e| (e.schema_version, e.payload_as().unwrap())).collect();
    assert_eq!(
        lifted,
        [
            (3, json!({ "amount": { "cents": 1250, "currency": "EUR" } })),
            (3, json!({ "amount": { "cents": 990, "currency": "EUR" } })),
        ]
    );
    assert_eq!(settled(&*checked, 0, 2).await.len(), 2);

    let current = NewEvent::new("priced", &json!({ "amount": { "cents": 5, "currency": "USD" } }))
        .unwrap()
        .schema_version(3);
    checked.append("product-1", Expected::Version(2), vec![current]).await.unwrap();
    let wrong_shape = NewEvent::new("priced", &json!({ "amount": { "cents": "five" } }))
        .unwrap()
        .schema_version(3);
    let refused = checked.append("product-1", Expected::Any, vec![wrong_shape]).await.unwrap_err();
    assert_eq!(refused.status, 400, "{refused}");
    assert!(
        refused.message.contains("priced") && refused.message.contains("/amount"),
        "{refused}"
    );
    let old_version = NewEvent::new("priced", &json!({ "cents": 1 })).unwrap();
    let refused = checked.append("product-1", Expected::Any, vec![old_version]).await.unwrap_err();
    assert!(refused.status == 400 && refused.message.contains("schema version 3"), "{refused}");
    let undeclared = NewEvent::new("discounted", &json!({})).unwrap();
    let refused = checked.append("product-1", Expected::Any, vec![undeclared]).await.unwrap_err();
    assert!(refused.status == 400 && refused.message.contains("discounted"), "{refused}");
    assert_eq!(
        checked.stream_version("product-1").await.unwrap(),
        3,
        "refused appends wrote nothing"
    );

    let dropped = NewEvent::new("restocked", &json!({})).unwrap().schema_version(4);
    unchecked.append("product-2", Expected::NoStream, vec![dropped]).await.unwrap();
    settled(&*unchecked, 0, 4).await;
    let error = checked.read_all(0, 10).await.unwrap_err();
    assert!(
        error.message.contains("restocked at schema version 4") && error.message.contains("product-2"),
        "{error}"
    );
    let newer = NewEvent::new("priced", &json!({})).unwrap().schema_version(9);
    unchecked.append("product-3", Expected::NoStream, vec![newer]).await.unwrap();
    let error = checked.read_stream("product-3", 1, Direction::Forward, 1).await.unwrap_err();
    assert!(
        error.message.contains("priced at schema version 9") && error.message.contains("up to version 3"),
        "{error}"
    );
}

/// `priced`, now at version 3: v1 had `cents`, v2 moved it under `amount`, v3 added a currency.
pub fn types() -> purest_eventstore::EventTypes {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Amount {
        cents: u64,
        currency: String,
    }
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Priced {
        amount: Amount,
    }
    purest_eventstore::EventTypes::new()
        .register::<Priced>("priced", 3)
        .upcaster("priced", 1, |v1| Ok(json!({ "amount": { "cents": v1["cents"] } })))
        .upcaster("priced", 2, |mut v2| {
            v2["amount"]["currency"] = json!("EUR");
            Ok(v2)
        })
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Tally {
    total: u64,
}

impl purest_eventstore::Aggregate for Tally {
    const SNAPSHOT_EVERY: u64 = 5;
    fn apply(&mut self, event: &purest_eventstore::RecordedEvent) -> Result<(), purest_core::HandledError> {
        self.total += event.payload_as::<serde_json::Value>()?["n"].as_u64().unwrap_or(0);
        Ok(())
    }
}

/// A load starts from the stream's snapshot and applies only later events; it keeps a snapshot
/// once it replayed enough, and ignores one of another state version.
pub async fn loads_start_from_snapshots(store: Arc<dyn EventStore>) {
    use purest_eventstore::{Snapshot, load};
    let ones: Vec<NewEvent> = (0..12).map(|_| event("added", 1)).collect();
    store.append("tally-9", Expected::NoStream, ones).await.unwrap();
    let first = load::<Tally>(&*store, "tally-9").await.unwrap();
    assert_eq!((first.state.total, first.version, first.replayed), (12, 12, 12));
    let kept = store
        .read_snapshot("tally-9")
        .await
        .unwrap()
        .expect("a load of 12 events keeps a snapshot");
    assert_eq!((kept.version, kept.state_version), (12, 1));

    // A snapshot that disagrees with the events shows which one the load used.
    let forged = |state_version: u32| Snapshot {
        stream: Arc::from("tally-9"),
        version: 12,
        state_version,
        state: Arc::from(serde_json::value::to_raw_value(&json!({ "total": 1000 })).unwrap()),
    };
    store.write_snapshot(forged(1)).await.unwrap();
    store
        .append("tally-9", Expected::Version(12), vec![event("added", 1), event("added", 1)])
        .await
        .unwrap();
    let second = load::<Tally>(&*store, "tally-9").await.unwrap();
    assert_eq!((second.state.total, second.version, second.replayed), (1002, 14, 2));

    store.write_snapshot(forged(7)).await.unwrap();
    let third = load::<Tally>(&*store, "tally-9").await.unwrap();
    assert_eq!(
        (third.state.total, third.replayed),
        (14, 14),
        "a snapshot of another shape is ignored"
    );
}
