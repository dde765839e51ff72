//! The executor, projector and rebuild cases on the in-memory datastore, and the given/when/then
//! harness.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use purest_core::prelude::*;
use purest_core::validation::Garde;
use purest_cqrs::testing::{Scenario, event};
use purest_cqrs::{Datastore, Decision, Event, Executor, LowContext, LowHandler, MemoryDatastore, MemoryUnit, Meta};
use purest_eventstore::{Checkpoints, Direction, EventStore, Expected};

#[derive(Debug, Clone, Default)]
struct Books {
    balances: BTreeMap<String, i64>,
    counts: BTreeMap<String, i64>,
}

#[derive(Clone, Default)]
struct MemoryLedger(MemoryDatastore<Books>);

impl Datastore for MemoryLedger {
    type Unit = MemoryUnit<Books>;
    async fn begin(&self) -> Result<Self::Unit, HandledError> {
        self.0.begin().await
    }
    fn events(&self) -> Arc<dyn EventStore> {
        self.0.events()
    }
    fn checkpoints(&self) -> Arc<dyn Checkpoints> {
        self.0.checkpoints()
    }
}

impl Ledger for MemoryLedger {
    async fn balance(&self, account: &str) -> Result<i64, HandledError> {
        Ok(self.0.read().balances.get(account).copied().unwrap_or(0))
    }
    async fn add(&self, unit: &mut Self::Unit, account: &str, amount: i64) -> Result<(), HandledError> {
        let balance = unit.tables_mut().balances.entry(account.to_owned()).or_default();
        if *balance + amount > LIMIT {
            return Err(HandledError::conflict(format!("account {account} would hold more than {LIMIT}")));
        }
        *balance += amount;
        Ok(())
    }
    async fn clear_balances(&self, unit: &mut Self::Unit) -> Result<(), HandledError> {
        unit.tables_mut().balances.clear();
        Ok(())
    }
    async fn count(&self, unit: &mut Self::Unit, account: &str) -> Result<(), HandledError> {
        *unit.tables_mut().counts.entry(account.to_owned()).or_default() += 1;
        Ok(())
    }
    async fn clear_counts(&self, unit: &mut Self::Unit) -> Result<(), HandledError> {
        unit.tables_mut().counts.clear();
        Ok(())
    }
    async fn dump(&self) -> Result<BTreeMap<String, i64>, HandledError> {
        let books = self.0.read();
        let counts = books.counts.iter().map(|(account, n)| (format!("#{account}"), *n));
        Ok(books.balances.clone().into_iter().chain(counts).collect())
    }
}

#[tokio::test]
async fn writes_and_events_commit_together() {
    common::writes_and_events_commit_together(MemoryLedger::default()).await;
}

#[tokio::test]
async fn invalid_decisions_commit_nothing() {
    common::invalid_decisions_commit_nothing(MemoryLedger::default()).await;
}

#[tokio::test]
async fn a_failed_write_commits_nothing() {
    common::a_failed_write_commits_nothing(MemoryLedger::default()).await;
}

#[tokio::test]
async fn a_lost_race_is_retried_a_bounded_number_of_times() {
    common::a_lost_race_is_retried_a_bounded_number_of_times(MemoryLedger::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deposits_all_land() {
    common::concurrent_deposits_all_land(MemoryLedger::default()).await;
}

#[tokio::test]
async fn a_redelivered_message_is_not_applied_twice() {
    common::a_redelivered_message_is_not_applied_twice(MemoryLedger::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_announces_and_rebuilds_reproduce_the_tables() {
    common::projector_announces_and_rebuilds_reproduce_the_tables(MemoryLedger::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_as_a_command() {
    common::served_as_a_command(MemoryLedger::default()).await;
}

/// An append from outside the datastore between a unit's append and its commit outdates the
/// unit: its commit is refused as a conflict, and nothing of it is kept.
#[tokio::test]
async fn a_memory_unit_outdated_by_an_outside_append_commits_nothing() {
    use purest_cqrs::Unit;
    use purest_eventstore::{Expected, NewEvent};
    let db = MemoryLedger::default();
    let mut unit = db.begin().await.unwrap();
    unit.tables_mut().balances.insert("a".into(), 5);
    unit.append("account-a", Expected::NoStream, vec![NewEvent::new("deposited", &5).unwrap()])
        .await
        .unwrap();
    db.0.event_store()
        .append("account-b", Expected::Any, vec![NewEvent::new("deposited", &1).unwrap()])
        .await
        .unwrap();
    let refused = unit.commit().await.unwrap_err();
    assert!(purest_cqrs::is_version_conflict(&refused), "{refused}");
    assert_eq!(db.0.event_store().len(), 1);
    assert!(db.0.read().balances.is_empty());
}

/// Writes an audit line for every deposit it hears of.
struct Auditor;

impl LowHandler<MemoryLedger> for Auditor {
    type Input = Deposited;
    type Data = ();

    fn meta(&self) -> Meta<Deposited> {
        Meta::on_event("auditor", DEPOSITED).emits(AUDITED)
    }
    async fn lookup(&self, _: &LowContext, _: &MemoryLedger, _: &Deposited) -> Result<(), HandledError> {
        Ok(())
    }
    fn operate(&self, _: &LowContext, deposited: &Deposited, _: ()) -> Result<Decision, HandledError> {
        let line = format!("{} deposited {}", deposited.account, deposited.amount);
        Ok(Decision::append(format!("audit-{}", deposited.account), Expected::Any).event(AUDITED, line))
    }
    async fn write(&self, _: &MemoryLedger, _: &mut MemoryUnit<Books>, _: &Event) -> Result<(), HandledError> {
        Ok(())
    }
}

/// A handler consuming an event runs as a durable subscription, its events carrying the
/// consumed event's correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_of_an_event_runs_as_a_durable_subscription() {
    let db = MemoryLedger::default();
    let service = Executor::new(Auditor, db.clone()).register::<Garde>(Service::new("audit", "1"));
    let subscription = &service.subscriptions()[0];
    assert_eq!((subscription.name(), subscription.is_durable()), ("auditor", true));
    let app = Host::new().service(service).start().await.unwrap();
    app.client()
        .emit(
            DEPOSITED,
            Deposited {
                account: "a".into(),
                amount: 3,
            },
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.0.event_store().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the auditor wrote nothing");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let audit = db.events().read_stream("audit-a", 1, Direction::Forward, 10).await.unwrap();
    assert_eq!(audit[0].payload_as::<String>().unwrap(), "a deposited 3");
    app.shutdown().await;
}

#[tokio::test]
async fn given_when_then() {
    let deposited = |amount| {
        event(
            DEPOSITED,
            Deposited {
                account: "a".into(),
                amount,
            },
        )
    };
    Scenario::new(DepositHandler::default(), MemoryLedger::default())
        .when(deposit("a", 5))
        .then([deposited(5)])
        .await;
    // The past is written through the handler: the limit counts it.
    Scenario::new(DepositHandler::default(), MemoryLedger::default())
        .given("account-a", [deposited(LIMIT - 1)])
        .when(deposit("a", 2))
        .then_error(409)
        .await;
    let executed = Scenario::new(DepositHandler::default(), MemoryLedger::default())
        .given("account-a", [deposited(1), deposited(2)])
        .when(deposit("a", 3))
        .then([deposited(3)])
        .await;
    assert_eq!(executed.outcome.version, 3);
}

#[tokio::test]
#[should_panic(
    expected = "expected the events [deposited {\"account\":\"a\",\"amount\":6}], but the handler decided [deposited {\"account\":\"a\",\"amount\":5}]"
)]
async fn a_scenario_names_what_was_decided_instead() {
    Scenario::new(DepositHandler::default(), MemoryLedger::default())
        .when(deposit("a", 5))
        .then([event(
            DEPOSITED,
            Deposited {
                account: "a".into(),
                amount: 6,
            },
        )])
        .await;
}

#[tokio::test]
#[should_panic(expected = "expected an error 409, but the handler decided [deposited")]
async fn a_scenario_expecting_an_error_names_the_events_instead() {
    Scenario::new(DepositHandler::default(), MemoryLedger::default())
        .when(deposit("a", 5))
        .then_error(409)
        .await;
}
