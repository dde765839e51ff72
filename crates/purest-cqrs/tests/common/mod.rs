//! A ledger of deposits as a LOW handler and a projector, over any datastore that implements
//! [`Ledger`], and the cases every datastore passes.
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use purest_core::prelude::*;
use purest_core::validation::Garde;
use purest_cqrs::{
    Datastore, Decision, Event, Executor, LowContext, LowHandler, Meta, Outcome, Projector, ProjectorSink, rebuild, rebuild_projector,
};
use purest_eventstore::{Expected, NewEvent, Projections};

/// The most an account may hold: `write` refuses (409) a deposit past it.
pub const LIMIT: i64 = 1_000;

/// A deposit, with a way to make the handler misbehave.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
pub struct Deposit {
    #[garde(length(min = 1, max = 50))]
    pub account: String,
    #[garde(range(min = 1))]
    pub amount: i64,
    #[garde(skip)]
    pub bug: Option<Bug>,
}

/// How the handler misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Bug {
    /// `operate` decides a `deposited` event of amount 0, which its schema refuses.
    InvalidEvent,
    /// `operate` decides an event its metadata does not declare.
    UndeclaredEvent,
    /// Another writer appends to the account's stream between every lookup and its commit.
    AlwaysRacing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct Deposited {
    pub account: String,
    #[schemars(range(min = 1))]
    pub amount: i64,
}

pub const DEPOSIT: CommandRef<Deposit, Outcome> = CommandRef::new("ledger", "1", "deposit");
pub const DEPOSITED: EventRef<Deposited> = EventRef::new("deposited");
pub const AUDITED: EventRef<String> = EventRef::new("audited");

/// What the ledger needs of a datastore.
pub trait Ledger: Datastore + Clone {
    fn balance(&self, account: &str) -> impl Future<Output = Result<i64, HandledError>> + Send;
    /// Adds `amount` to `account`; 409 past [`LIMIT`].
    fn add(&self, unit: &mut Self::Unit, account: &str, amount: i64) -> impl Future<Output = Result<(), HandledError>> + Send;
    fn clear_balances(&self, unit: &mut Self::Unit) -> impl Future<Output = Result<(), HandledError>> + Send;
    /// The projector's table: deposits counted per account.
    fn count(&self, unit: &mut Self::Unit, account: &str) -> impl Future<Output = Result<(), HandledError>> + Send;
    fn clear_counts(&self, unit: &mut Self::Unit) -> impl Future<Output = Result<(), HandledError>> + Send;
    /// Both tables: balances, and counts (prefixed `#`).
    fn dump(&self) -> impl Future<Output = Result<BTreeMap<String, i64>, HandledError>> + Send;
}

pub fn stream(account: &str) -> String {
    format!("account-{account}")
}

/// The LOW handler; counts its lookups.
#[derive(Default)]
pub struct DepositHandler {
    pub lookups: AtomicUsize,
}

impl<D: Ledger> LowHandler<D> for DepositHandler {
    type Input = Deposit;
    type Data = u64;

    fn meta(&self) -> Meta<Deposit> {
        Meta::on_command("deposit", DEPOSIT).emits(DEPOSITED)
    }

    async fn lookup(&self, _: &LowContext, db: &D, deposit: &Deposit) -> Result<u64, HandledError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let version = db.events().stream_version(&stream(&deposit.account)).await?;
        if deposit.bug == Some(Bug::AlwaysRacing) {
            let rival = NewEvent::new(
                DEPOSITED.name(),
                &Deposited {
                    account: deposit.account.clone(),
                    amount: 1,
                },
            )?;
            db.events().append(&stream(&deposit.account), Expected::Any, vec![rival]).await?;
        }
        Ok(version)
    }

    fn operate(&self, _: &LowContext, deposit: &Deposit, version: u64) -> Result<Decision, HandledError> {
        let expected = if version == 0 {
            Expected::NoStream
        } else {
            Expected::Version(version)
        };
        let decision = Decision::append(stream(&deposit.account), expected);
        Ok(match deposit.bug {
            Some(Bug::InvalidEvent) => decision.event(
                DEPOSITED,
                Deposited {
                    account: deposit.account.clone(),
                    amount: 0,
                },
            ),
            Some(Bug::UndeclaredEvent) => decision.event(AUDITED, "deposit".to_owned()),
            _ => decision.event(
                DEPOSITED,
                Deposited {
                    account: deposit.account.clone(),
                    amount: deposit.amount,
                },
            ),
        })
    }

    async fn write(&self, db: &D, unit: &mut D::Unit, event: &Event) -> Result<(), HandledError> {
        if let Some(deposited) = event.decode(DEPOSITED)? {
            db.add(unit, &deposited.account, deposited.amount).await?;
        }
        Ok(())
    }

    async fn reset(&self, db: &D, unit: &mut D::Unit) -> Result<(), HandledError> {
        db.clear_balances(unit).await
    }
}

/// Counts deposits per account; announces each as `depositCounted`.
pub struct DepositCounter;

pub const DEPOSIT_COUNTED: EventRef<purest_cqrs::Projected> = EventRef::new("depositCounted");

impl<D: Ledger> Projector<D> for DepositCounter {
    fn name(&self) -> &str {
        "deposit-counter"
    }
    fn category(&self) -> Option<&str> {
        Some("account")
    }
    fn announces(&self) -> Option<EventRef<purest_cqrs::Projected>> {
        Some(DEPOSIT_COUNTED)
    }
    async fn write(&self, db: &D, unit: &mut D::Unit, event: &Event) -> Result<(), HandledError> {
        if let Some(deposited) = event.decode(DEPOSITED)? {
            db.count(unit, &deposited.account).await?;
        }
        Ok(())
    }
    async fn reset(&self, db: &D, unit: &mut D::Unit) -> Result<(), HandledError> {
        db.clear_counts(unit).await
    }
}

pub fn deposit(account: &str, amount: i64) -> Deposit {
    Deposit {
        account: account.into(),
        amount,
        bug: None,
    }
}

fn context() -> LowContext {
    LowContext::new(Id::random(), 1_000).with_correlation(Id::random())
}

/// A deposit commits its event and its write together; the event carries the message as its
/// cause and the conversation's correlation id.
pub async fn writes_and_events_commit_together<D: Ledger>(db: D) {
    let executor = Executor::new(DepositHandler::default(), db.clone());
    let ctx = context();
    let executed = executor.execute(&ctx, &deposit("a", 100)).await.unwrap();
    assert_eq!(executed.outcome.stream.as_deref(), Some("account-a"));
    assert_eq!(
        (executed.outcome.version, executed.outcome.events.as_slice()),
        (1, ["deposited".to_owned()].as_slice())
    );
    assert_eq!(db.balance("a").await.unwrap(), 100);
    let events = db
        .events()
        .read_stream("account-a", 1, purest_eventstore::Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata.causation_id, Some(ctx.message_id().to_string()));
    assert_eq!(events[0].metadata.correlation_id, ctx.correlation_id().map(Id::to_string));
    assert_eq!(events[0].id, executed.events[0].id);
}

/// An event that fails its schema, or that the metadata does not declare, is a 500 that names
/// no detail, and nothing is committed.
pub async fn invalid_decisions_commit_nothing<D: Ledger>(db: D) {
    let executor = Executor::new(DepositHandler::default(), db.clone());
    for bug in [Bug::InvalidEvent, Bug::UndeclaredEvent] {
        let refused = executor
            .execute(
                &context(),
                &Deposit {
                    bug: Some(bug),
                    ..deposit("a", 5)
                },
            )
            .await
            .unwrap_err();
        assert_eq!(refused.status, 500, "{bug:?}: {refused}");
        assert_eq!(refused.message, "handler deposit made an invalid decision; nothing was committed");
    }
    assert_eq!(db.events().stream_version("account-a").await.unwrap(), 0);
    assert_eq!(db.balance("a").await.unwrap(), 0);
}

/// A `write` that fails its integrity check undoes the append too.
pub async fn a_failed_write_commits_nothing<D: Ledger>(db: D) {
    let executor = Executor::new(DepositHandler::default(), db.clone());
    executor.execute(&context(), &deposit("a", LIMIT)).await.unwrap();
    let refused = executor.execute(&context(), &deposit("a", 1)).await.unwrap_err();
    assert_eq!(refused.status, 409, "{refused}");
    assert_eq!(
        db.events().stream_version("account-a").await.unwrap(),
        1,
        "the event was not appended"
    );
    assert_eq!(db.balance("a").await.unwrap(), LIMIT);
}

/// A decision that keeps losing its race is made again `retries` times, then refused with 409.
pub async fn a_lost_race_is_retried_a_bounded_number_of_times<D: Ledger>(db: D) {
    let executor = Executor::new(DepositHandler::default(), db.clone()).retries(3);
    let refused = executor
        .execute(
            &context(),
            &Deposit {
                bug: Some(Bug::AlwaysRacing),
                ..deposit("a", 5)
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.status, 409, "{refused}");
    assert!(refused.message.contains("4 attempts"), "{refused}");
    assert_eq!(executor.handler().lookups.load(Ordering::SeqCst), 4);
    assert_eq!(db.balance("a").await.unwrap(), 0, "no attempt wrote");
}

/// Concurrent deposits on one stream all land, each decided on the stream it saw.
pub async fn concurrent_deposits_all_land<D: Ledger>(db: D) {
    let executor = Executor::new(DepositHandler::default(), db.clone()).retries(1_000);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let executor = executor.clone();
            tokio::spawn(async move { executor.execute(&context(), &deposit("a", 1)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(db.balance("a").await.unwrap(), 20);
    assert_eq!(db.events().stream_version("account-a").await.unwrap(), 20);
}

/// A message handled again (a redelivery) finds its events in the store and writes nothing.
pub async fn a_redelivered_message_is_not_applied_twice<D: Ledger>(db: D) {
    let executor = Executor::new(DepositHandler::default(), db.clone());
    let ctx = context();
    // The second time, the stream is at version 1: the decision expects that, and would be
    // appended, were its event id not the same.
    let first = executor.execute(&ctx, &deposit("a", 7)).await.unwrap();
    let again = executor.execute(&ctx, &deposit("a", 7)).await.unwrap();
    assert!(!first.outcome.redelivered);
    assert!(again.outcome.redelivered, "{:?}", again.outcome);
    assert_eq!(db.events().stream_version("account-a").await.unwrap(), 1);
    assert_eq!(db.balance("a").await.unwrap(), 7);
}

/// The projector counts every deposit once, announces each with its conversation, and a
/// rebuild (of the projector, of the handler's table) writes the same tables again.
pub async fn projector_announces_and_rebuilds_reproduce_the_tables<D: Ledger>(db: D) {
    let announced = Arc::new(std::sync::Mutex::new(Vec::<(Option<Id>, String)>::new()));
    let collect = {
        let announced = announced.clone();
        move |ctx: Context, Payload(projected): Payload<purest_cqrs::Projected>| {
            let announced = announced.clone();
            async move {
                announced.lock().unwrap().push((ctx.correlation_id(), projected.stream));
                Ok::<(), HandledError>(())
            }
        }
    };
    let app = Host::new()
        .service(Service::new("watcher", "1").subscription(Subscription::on(DEPOSIT_COUNTED, "collect", collect)))
        .start()
        .await
        .unwrap();
    let sink = ProjectorSink::new(DepositCounter, db.clone()).announce_on(app.bridge().clone(), Address::new("ledger", "1", "counter"));
    let running = Projections::new(db.events()).add_sink(Arc::new(sink)).start();
    let executor = Executor::new(DepositHandler::default(), db.clone());
    let mut conversations = Vec::new();
    for (account, amount) in [("a", 1), ("b", 2), ("a", 3)] {
        let ctx = context();
        conversations.push(ctx.correlation_id().cloned());
        executor.execute(&ctx, &deposit(account, amount)).await.unwrap();
    }
    let tables = BTreeMap::from([("a".into(), 4), ("b".into(), 2), ("#a".into(), 2), ("#b".into(), 1)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.dump().await.unwrap() != tables || announced.lock().unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "tables {:?}, announcements {:?}",
            db.dump().await.unwrap(),
            announced.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut seen = announced.lock().unwrap().clone();
    let mut expected = vec![
        (conversations[0].clone(), "account-a".to_owned()),
        (conversations[1].clone(), "account-b".to_owned()),
        (conversations[2].clone(), "account-a".to_owned()),
    ];
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "each event announced once, with its conversation");
    running.stop().await;
    app.shutdown().await;

    // Empty both tables, then rebuild them from the store through the write functions.
    let mut unit = db.begin().await.unwrap();
    db.clear_balances(&mut unit).await.unwrap();
    db.clear_counts(&mut unit).await.unwrap();
    purest_cqrs::Unit::commit(unit).await.unwrap();
    assert!(db.dump().await.unwrap().is_empty());
    let handler = rebuild(&DepositHandler::default(), &db).await.unwrap();
    assert_eq!((handler.read, handler.written), (3, 3));
    let projector = rebuild_projector(DepositCounter, db.clone()).await.unwrap();
    assert_eq!(projector.written, 3);
    assert_eq!(db.dump().await.unwrap(), tables);
}

/// The handler served as a command: invoked, refused with 400 on bad input, its events
/// carrying the command's correlation id.
pub async fn served_as_a_command<D: Ledger>(db: D) {
    let service = Executor::new(DepositHandler::default(), db.clone()).register::<Garde>(Service::new("ledger", "1"));
    assert_eq!(service.commands()[0].links().may_emit, [Name::new("deposited")]);
    let app = Host::new().service(service).start().await.unwrap();
    let outcome = app.client().invoke(DEPOSIT, deposit("c", 9)).await.unwrap();
    assert_eq!(outcome.version, 1);
    let refused = app.client().invoke(DEPOSIT, deposit("c", 0)).await.unwrap_err();
    assert_eq!(refused.status, 400);
    assert_eq!(db.balance("c").await.unwrap(), 9);
    let events = db
        .events()
        .read_stream("account-c", 1, purest_eventstore::Direction::Forward, 10)
        .await
        .unwrap();
    assert!(events[0].metadata.correlation_id.is_some());
    app.shutdown().await;
}
