//! Given/when/then tests of a [`LowHandler`], with no infrastructure: given the events of the
//! past (written through the handler's `write`, as a rebuild would), when an input comes, then
//! these events are decided — or this error answered.
//!
//! ```
//! # use purest_core::prelude::*;
//! # use purest_cqrs::{Datastore, Decision, Event, LowContext, LowHandler, MemoryDatastore, MemoryUnit, Meta, Outcome};
//! # use purest_eventstore::Expected;
//! # const INVITED: EventRef<String> = EventRef::new("invited");
//! # const INVITE: CommandRef<String, Outcome> = CommandRef::new("c", "1", "invite");
//! # struct Invite;
//! # impl LowHandler<MemoryDatastore<Vec<String>>> for Invite {
//! #     type Input = String;
//! #     type Data = bool;
//! #     fn meta(&self) -> Meta<String> { Meta::on_command("invite", INVITE).emits(INVITED) }
//! #     async fn lookup(&self, _: &LowContext, db: &MemoryDatastore<Vec<String>>, email: &String) -> Result<bool, HandledError> { Ok(db.read().contains(email)) }
//! #     fn operate(&self, _: &LowContext, email: &String, known: bool) -> Result<Decision, HandledError> {
//! #         if known { return Err(HandledError::conflict("known")) }
//! #         Ok(Decision::append(format!("customer-{email}"), Expected::NoStream).event(INVITED, email.clone()))
//! #     }
//! #     async fn write(&self, _: &MemoryDatastore<Vec<String>>, unit: &mut MemoryUnit<Vec<String>>, event: &Event) -> Result<(), HandledError> {
//! #         if let Some(email) = event.decode(INVITED)? { unit.tables_mut().push(email) }
//! #         Ok(())
//! #     }
//! # }
//! use purest_cqrs::testing::{Scenario, event};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! Scenario::new(Invite, MemoryDatastore::default())
//!     .when("ann@example.com".to_owned())
//!     .then([event(INVITED, "ann@example.com".to_owned())])
//!     .await;
//! Scenario::new(Invite, MemoryDatastore::default())
//!     .given("customer-ann@example.com", [event(INVITED, "ann@example.com".to_owned())])
//!     .when("ann@example.com".to_owned())
//!     .then_error(409)
//!     .await;
//! # });
//! ```

use purest_core::{EventRef, HandledError, Id};
use purest_eventstore::{Expected, NewEvent};
use serde::Serialize;
use serde_json::Value;

use crate::datastore::{Datastore, Unit};
use crate::executor::{Executed, Executor};
use crate::handler::{Event, LowContext, LowHandler};

/// The time a scenario runs at unless set: 2026-01-01T00:00:00Z.
pub const SCENARIO_TIME: u64 = 1_767_225_600_000;

/// An event of a scenario: its type and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TestEvent {
    /// Its type.
    pub event_type: String,
    /// Its payload.
    pub payload: Value,
}

/// The event `event` with `payload`, for [`Scenario::given`] and [`When::then`].
///
/// # Panics
///
/// When `payload` cannot be written as JSON.
pub fn event<T: Serialize>(event: EventRef<T>, payload: T) -> TestEvent {
    TestEvent {
        event_type: event.name().to_owned(),
        payload: serde_json::to_value(payload).unwrap_or_else(|e| panic!("the payload of a {} event is not JSON: {e}", event.name())),
    }
}

/// A test of a handler: the events of the past, then an input.
pub struct Scenario<H, D> {
    executor: Executor<H, D>,
    given: Vec<(String, TestEvent)>,
    context: LowContext,
}

impl<D: Datastore, H: LowHandler<D>> Scenario<H, D> {
    /// A scenario of `handler` over `datastore` (an in-memory one, usually, with the handler's
    /// tables), at [`SCENARIO_TIME`], for message id 1.
    pub fn new(handler: H, datastore: D) -> Self {
        Self {
            executor: Executor::new(handler, datastore),
            given: Vec::new(),
            context: LowContext::new(Id::from_u128(1), SCENARIO_TIME),
        }
    }

    /// Events that happened in `stream` before the input: appended, and written through the
    /// handler's `write` when it may decide them.
    pub fn given(mut self, stream: &str, events: impl IntoIterator<Item = TestEvent>) -> Self {
        self.given.extend(events.into_iter().map(|event| (stream.to_owned(), event)));
        self
    }

    /// The context the input is handled in (the time, principal, tenant).
    pub fn context(mut self, context: LowContext) -> Self {
        self.context = context;
        self
    }

    /// The input.
    pub fn when(self, input: H::Input) -> When<H, D> {
        When { scenario: self, input }
    }

    async fn run(self, input: H::Input) -> Result<Executed, HandledError> {
        let datastore = self.executor.datastore();
        let checks = self.executor.handler().meta().erase();
        let mut unit = datastore
            .begin()
            .await
            .unwrap_or_else(|e| panic!("the scenario's datastore cannot begin a unit: {e}"));
        for (stream, given) in self.given {
            let new = NewEvent::new(&given.event_type, &given.payload).unwrap_or_else(|e| panic!("a given event: {e}"));
            let appended = unit
                .append(&stream, Expected::Any, vec![new.clone()])
                .await
                .unwrap_or_else(|e| panic!("the given {} event could not be appended to {stream}: {e}", given.event_type));
            if checks.emits(&new.event_type) {
                let event = Event {
                    id: new.id,
                    stream: stream.as_str().into(),
                    version: appended.version,
                    event_type: new.event_type,
                    payload: new.payload,
                    metadata: new.metadata,
                };
                self.executor
                    .handler()
                    .write(datastore, &mut unit, &event)
                    .await
                    .unwrap_or_else(|e| panic!("the given {} event could not be written: {e}", event.event_type));
            }
        }
        unit.commit()
            .await
            .unwrap_or_else(|e| panic!("the given events could not be committed: {e}"));
        self.executor.execute(&self.context, &input).await
    }
}

/// A scenario with its input: [`When::then`] or [`When::then_error`] runs it.
pub struct When<H: LowHandler<D>, D: Datastore> {
    scenario: Scenario<H, D>,
    input: H::Input,
}

impl<D: Datastore, H: LowHandler<D>> When<H, D> {
    /// Runs the scenario and asserts that the handler decided and committed exactly `expected`,
    /// in order (types and payloads); returns what it committed.
    ///
    /// # Panics
    ///
    /// When the handler answered an error, or decided other events.
    pub async fn then(self, expected: impl IntoIterator<Item = TestEvent>) -> Executed {
        let expected: Vec<TestEvent> = expected.into_iter().collect();
        let executed = match self.scenario.run(self.input).await {
            Ok(executed) => executed,
            Err(error) => panic!("expected the events {}, but the handler answered {error}", list(&expected)),
        };
        let decided = decided(&executed);
        assert!(
            decided == expected,
            "expected the events {}, but the handler decided {}",
            list(&expected),
            list(&decided)
        );
        executed
    }

    /// Runs the scenario and asserts that the handler answered an error of `status` and
    /// committed nothing; returns the error.
    ///
    /// # Panics
    ///
    /// When the handler succeeded, or answered another status.
    pub async fn then_error(self, status: u16) -> HandledError {
        match self.scenario.run(self.input).await {
            Ok(executed) => panic!("expected an error {status}, but the handler decided {}", list(&decided(&executed))),
            Err(error) => {
                assert_eq!(error.status, status, "expected an error {status}, but the handler answered {error}");
                error
            }
        }
    }
}

/// The events an execution committed, as a scenario compares them.
fn decided(executed: &Executed) -> Vec<TestEvent> {
    executed
        .events
        .iter()
        .map(|event| TestEvent {
            event_type: event.event_type.clone(),
            payload: serde_json::from_str(event.payload.get()).unwrap_or(Value::Null),
        })
        .collect()
}

fn list(events: &[TestEvent]) -> String {
    if events.is_empty() {
        return "[] (none)".to_owned();
    }
    let items: Vec<String> = events
        .iter()
        .map(|event| format!("{} {}", event.event_type, event.payload))
        .collect();
    format!("[{}]", items.join(", "))
}
