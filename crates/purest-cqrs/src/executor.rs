//! The executor: runs a [`LowHandler`]'s lookup → operate → write, commits the writes with the
//! decided events in one unit of work, and retries the whole when another writer changed the
//! stream first.

use std::sync::Arc;

use purest_core::validation::Validate;
use purest_core::{Command, CommandRef, Context, EventRef, HandledError, Payload, Service, Subscription};
use purest_eventstore::NewEvent;

use crate::datastore::{Datastore, Unit, is_duplicate_event, is_version_conflict};
use crate::handler::{Checks, Decision, Event, Input, LowContext, LowHandler, Outcome};

/// How many times a decision is made again after losing a race, unless set otherwise.
pub const DEFAULT_RETRIES: u32 = 5;

/// Runs a handler over a datastore: as a command or subscription of a [`Service`]
/// ([`Executor::register`]), or directly ([`Executor::execute`]).
///
/// For each message: `lookup`, `operate`, then in one unit of work the append of the decided
/// events and `write` of each, then the commit. Nothing is committed when `operate` refuses, when
/// a decided event fails its schema (500, logged), when `write` fails (its error, such as a
/// 409 from a uniqueness check) or when the append finds the stream moved on: then the executor
/// looks up and decides again, up to [`Executor::retries`] times, and answers 409 after that.
/// A redelivered message whose events are in the store already is not appended again.
pub struct Executor<H, D> {
    handler: Arc<H>,
    datastore: Arc<D>,
    checks: Arc<Checks>,
    retries: u32,
}

impl<H, D> Clone for Executor<H, D> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            datastore: self.datastore.clone(),
            checks: self.checks.clone(),
            retries: self.retries,
        }
    }
}

/// What an execution committed.
#[derive(Debug, Clone)]
pub struct Executed {
    /// Where the events went.
    pub outcome: Outcome,
    /// The events as `write` saw them (none for a redelivery or an empty decision).
    pub events: Vec<Event>,
}

impl<D: Datastore, H: LowHandler<D>> Executor<H, D> {
    /// An executor of `handler` over `datastore`.
    ///
    /// # Panics
    ///
    /// When a declared event's schema does not compile (see [`Meta::emits`](crate::Meta::emits)).
    pub fn new(handler: H, datastore: D) -> Self {
        let checks = handler.meta().erase();
        Self {
            handler: Arc::new(handler),
            datastore: Arc::new(datastore),
            checks: Arc::new(checks),
            retries: DEFAULT_RETRIES,
        }
    }

    /// How many times a decision that lost a race is made again before the caller gets 409.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The datastore.
    pub fn datastore(&self) -> &D {
        &self.datastore
    }

    /// Handles `input` in `ctx`.
    pub async fn execute(&self, ctx: &LowContext, input: &H::Input) -> Result<Executed, HandledError> {
        let name = &self.checks.name;
        let mut attempt = 0;
        loop {
            let data = self.handler.lookup(ctx, &self.datastore, input).await?;
            let decision = self.handler.operate(ctx, input, data)?;
            self.checks.check(&decision)?;
            if decision.events.is_empty() {
                return Ok(Executed {
                    outcome: Outcome {
                        stream: None,
                        version: 0,
                        events: Vec::new(),
                        redelivered: false,
                    },
                    events: Vec::new(),
                });
            }
            match self.commit(ctx, &decision).await {
                Ok(executed) => return Ok(executed),
                Err(error) if is_duplicate_event(&error) => {
                    tracing::debug!(handler = %name, message = %ctx.message_id(), "a redelivered message's events are in the store already");
                    return Ok(Executed {
                        outcome: Outcome {
                            events: decision.events().into_iter().map(str::to_owned).collect(),
                            stream: Some(decision.stream),
                            version: 0,
                            redelivered: true,
                        },
                        events: Vec::new(),
                    });
                }
                Err(error) if is_version_conflict(&error) => {
                    if attempt == self.retries {
                        tracing::warn!(handler = %name, stream = %decision.stream, attempts = attempt + 1, "a handler kept losing races for its stream; gave up");
                        let gave_up = HandledError::conflict(format!(
                            "stream {} kept changing while {name} decided ({} attempts); retry the request",
                            decision.stream,
                            attempt + 1
                        ));
                        return Err(match error.data {
                            Some(data) => gave_up.with_data(data),
                            None => gave_up,
                        });
                    }
                    attempt += 1;
                    tracing::debug!(handler = %name, stream = %decision.stream, attempt, "the stream moved on; deciding again");
                }
                Err(error) => {
                    if error.status >= 500 {
                        tracing::warn!(handler = %name, stream = %decision.stream, error = %error, "a handler's unit of work failed; nothing was committed");
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Appends and writes the decision in one unit and commits it.
    async fn commit(&self, ctx: &LowContext, decision: &Decision) -> Result<Executed, HandledError> {
        let metadata = ctx.metadata();
        let mut new_events = Vec::with_capacity(decision.events.len());
        for (index, decided) in decision.events.iter().enumerate() {
            let payload = decided
                .payload
                .clone()
                .map_err(|_| HandledError::internal("a decided event is not JSON"))?;
            new_events.push(NewEvent {
                id: ctx.event_id(&self.checks.name, index),
                event_type: decided.name.to_owned(),
                schema_version: 1,
                payload,
                metadata: metadata.clone(),
            });
        }
        let mut unit = self.datastore.begin().await?;
        let appended = unit.append(&decision.stream, decision.expected, new_events.clone()).await?;
        let stream: Arc<str> = Arc::from(decision.stream.as_str());
        let first_version = appended.version + 1 - new_events.len() as u64;
        let events: Vec<Event> = new_events
            .into_iter()
            .enumerate()
            .map(|(offset, event)| Event {
                id: event.id,
                stream: stream.clone(),
                version: first_version + offset as u64,
                event_type: event.event_type,
                payload: event.payload,
                metadata: event.metadata,
            })
            .collect();
        for event in &events {
            self.handler.write(&self.datastore, &mut unit, event).await?;
        }
        unit.commit().await?;
        Ok(Executed {
            outcome: Outcome {
                stream: Some(decision.stream.clone()),
                version: appended.version,
                events: events.iter().map(|event| event.event_type.clone()).collect(),
                redelivered: false,
            },
            events,
        })
    }

    /// Adds the handler to `service`: as the command its metadata names (answering with the
    /// [`Outcome`]), or as a durable subscription to its event.
    pub fn register<M>(self, service: Service) -> Service
    where
        H::Input: Validate<M>,
        M: 'static,
    {
        match self.checks.input {
            Input::Command { .. } => service.command(self.command()),
            Input::Event(_) => service.subscription(self.subscription()),
        }
    }

    /// The handler as a command (its metadata must name one), declaring the events it may
    /// decide.
    ///
    /// # Panics
    ///
    /// When the handler consumes an event instead ([`Meta::on_event`](crate::Meta::on_event)).
    pub fn command<M>(self) -> Command
    where
        H::Input: Validate<M>,
        M: 'static,
    {
        let Input::Command { service, version, command } = self.checks.input else {
            panic!("handler {} consumes an event: register it as a subscription", self.checks.name);
        };
        let reference: CommandRef<H::Input, Outcome> = CommandRef::new(service, version, command);
        let checks = self.checks.clone();
        let executor = self;
        let mut command = Command::of(reference, move |ctx: Context, Payload(input): Payload<H::Input>| {
            let executor = executor.clone();
            async move {
                executor
                    .execute(&LowContext::of_message(ctx.message()), &input)
                    .await
                    .map(|executed| executed.outcome)
            }
        })
        .description(&checks.description);
        for output in &checks.outputs {
            command = command.may_emit(output.name);
        }
        command
    }

    /// The handler as a durable subscription to its event (its metadata must name one), named
    /// after the handler.
    ///
    /// # Panics
    ///
    /// When the handler serves a command instead ([`Meta::on_command`](crate::Meta::on_command)).
    pub fn subscription<M>(self) -> Subscription
    where
        H::Input: Validate<M>,
        M: 'static,
    {
        let Input::Event(event) = self.checks.input else {
            panic!("handler {} serves a command: register it as a command", self.checks.name);
        };
        let reference: EventRef<H::Input> = EventRef::new(event);
        let checks = self.checks.clone();
        let executor = self;
        let mut subscription = Subscription::on(reference, &checks.name, move |ctx: Context, Payload(input): Payload<H::Input>| {
            let executor = executor.clone();
            async move {
                executor.execute(&LowContext::of_message(ctx.message()), &input).await?;
                Ok::<(), HandledError>(())
            }
        })
        .durable()
        .description(&checks.description);
        for output in &checks.outputs {
            subscription = subscription.may_emit(output.name);
        }
        subscription
    }
}
