//! LOW handlers: **l**ookup (all reads), **o**perate (the business decision, a pure function),
//! **w**rite (the decided events applied to the handler's local tables), and the metadata that
//! says what comes in and what may go out.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use purest_core::validation::{Schema, Violation};
use purest_core::{CommandRef, EventRef, HandledError, Id, MessageInfo};
use purest_eventstore::{Expected, Metadata, RecordedEvent, check_stream_name};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::datastore::Datastore;

/// A business function in three parts, run by an [`Executor`](crate::Executor): `lookup` reads
/// what the decision needs, `operate` decides (and nothing else: no reads, no clock, no
/// randomness beyond what [`LowContext`] gives), and `write` applies each decided event to the
/// handler's local tables, checking their integrity. The executor commits the writes and the
/// events together, retrying the whole when another writer got there first.
///
/// `D` is the datastore. The functions reach it only through traits of their own that a
/// deployment implements (`D: Customers`), so they never change when the deployment does. The
/// events carry everything `write` needs: replaying the store through `write` rebuilds the
/// tables ([`rebuild`](crate::rebuild)), on the same technology or another.
///
/// See the crate docs for a complete handler and its given/when/then test.
pub trait LowHandler<D: Datastore>: Send + Sync + 'static {
    /// The command or event the handler takes.
    type Input: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static;
    /// What `lookup` hands to `operate`.
    type Data: Send;

    /// The handler's name, input and the events it may decide.
    fn meta(&self) -> Meta<Self::Input>;

    /// Every read the decision needs.
    fn lookup(&self, ctx: &LowContext, db: &D, input: &Self::Input) -> impl Future<Output = Result<Self::Data, HandledError>> + Send;

    /// The decision: the events to append, or an error for the caller (400, 409, …). Pure:
    /// testable as a plain function.
    fn operate(&self, ctx: &LowContext, input: &Self::Input, data: Self::Data) -> Result<Decision, HandledError>;

    /// Applies one event (decided now, or replayed from the store) to the local tables within
    /// `unit`. An error (a uniqueness check failing: 409) undoes the whole unit.
    fn write(&self, db: &D, unit: &mut D::Unit, event: &Event) -> impl Future<Output = Result<(), HandledError>> + Send;

    /// Empties the handler's local tables before a [`rebuild`](crate::rebuild) writes every
    /// event again. The default does nothing: the deployment then rebuilds into fresh tables.
    fn reset(&self, db: &D, unit: &mut D::Unit) -> impl Future<Output = Result<(), HandledError>> + Send {
        let _ = (db, unit);
        async { Ok(()) }
    }
}

/// What a handler takes: the command it serves, or the event it consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A command, `service/version/command`.
    Command {
        /// The service.
        service: &'static str,
        /// Its version.
        version: &'static str,
        /// The command's name.
        command: &'static str,
    },
    /// An event, by name.
    Event(&'static str),
}

/// A handler's metadata: its name, its input channel and the events it may decide (with their
/// schemas, which every decided event is checked against before anything is committed).
///
/// ```
/// use purest_core::prelude::*;
/// use purest_cqrs::{Meta, Outcome};
/// #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
/// struct Invite { #[garde(email)] email: String }
/// #[derive(Clone, Serialize, Deserialize, JsonSchema)]
/// struct Invited { email: String }
/// const INVITE: CommandRef<Invite, Outcome> = CommandRef::new("customer", "1", "invite");
/// const INVITED: EventRef<Invited> = EventRef::new("customerInvited");
///
/// let meta = Meta::on_command("invite-customer", INVITE).emits(INVITED);
/// assert_eq!(meta.name(), "invite-customer");
/// assert_eq!(meta.outputs(), ["customerInvited"]);
/// ```
pub struct Meta<I> {
    name: String,
    description: String,
    input: Input,
    outputs: Vec<Output>,
    kind: PhantomData<fn() -> I>,
}

/// An event a handler may decide, with its compiled schema.
#[derive(Clone)]
pub(crate) struct Output {
    pub name: &'static str,
    schema: Schema,
}

impl<I> Meta<I> {
    fn new(name: &str, input: Input) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            input,
            outputs: Vec::new(),
            kind: PhantomData,
        }
    }

    /// A handler named `name` serving the command `command`; callers get its [`Outcome`].
    pub fn on_command<P>(name: &str, command: CommandRef<I, Outcome, P>) -> Self {
        Self::new(
            name,
            Input::Command {
                service: command.service(),
                version: command.version(),
                command: command.command(),
            },
        )
    }

    /// A handler named `name` consuming the event `event` (a durable subscription).
    pub fn on_event(name: &str, event: EventRef<I>) -> Self {
        Self::new(name, Input::Event(event.name()))
    }

    /// Declares an event the handler may decide.
    ///
    /// # Panics
    ///
    /// When `T`'s schema does not compile: a mistake in the program, found when it starts.
    pub fn emits<T: JsonSchema>(mut self, event: EventRef<T>) -> Self {
        let schema = Schema::compile(Schema::json_of::<T>(), &format!("the payload of event {}", event.name()))
            .unwrap_or_else(|e| panic!("handler {}: {e}", self.name));
        self.outputs.push(Output {
            name: event.name(),
            schema,
        });
        self
    }

    /// Describes the handler (for the command's or subscription's description).
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its description.
    pub fn get_description(&self) -> &str {
        &self.description
    }

    /// What it takes.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// The names of the events it may decide.
    pub fn outputs(&self) -> Vec<&'static str> {
        self.outputs.iter().map(|output| output.name).collect()
    }

    pub(crate) fn erase(self) -> Checks {
        Checks {
            name: self.name,
            description: self.description,
            input: self.input,
            outputs: self.outputs,
        }
    }
}

/// A handler's metadata without its input type: what the executor checks decisions against.
pub(crate) struct Checks {
    pub name: String,
    pub description: String,
    pub input: Input,
    pub outputs: Vec<Output>,
}

impl Checks {
    /// Whether the handler declares `event_type` as an output.
    pub fn emits(&self, event_type: &str) -> bool {
        self.outputs.iter().any(|output| output.name == event_type)
    }

    /// Refuses (500, the details logged) a decision with an undeclared event, a payload that
    /// fails its schema or is not JSON, or a stream name no store takes: a handler's mistake,
    /// which must not reach the store.
    pub fn check(&self, decision: &Decision) -> Result<(), HandledError> {
        let refuse = |problem: String, violations: &[Violation]| {
            let violations: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.path, v.message)).collect();
            tracing::error!(handler = %self.name, stream = %decision.stream, %problem, ?violations, "a handler decided something it may not; nothing was committed");
            HandledError::internal(format!("handler {} made an invalid decision; nothing was committed", self.name))
        };
        if decision.events.is_empty() {
            return Ok(());
        }
        if let Err(e) = check_stream_name(&decision.stream) {
            return Err(refuse(e.message, &[]));
        }
        for event in &decision.events {
            let Some(output) = self.outputs.iter().find(|output| output.name == event.name) else {
                return Err(refuse(
                    format!(
                        "it decided a {} event, which its metadata does not declare (add .emits)",
                        event.name
                    ),
                    &[],
                ));
            };
            let payload = match &event.payload {
                Ok(payload) => payload,
                Err(e) => return Err(refuse(format!("the payload of its {} event is not JSON: {e}", event.name), &[])),
            };
            let value: serde_json::Value = serde_json::from_str(payload.get())
                .map_err(|e| refuse(format!("the payload of its {} event is not JSON: {e}", event.name), &[]))?;
            if let Err(violations) = output.schema.check(&value) {
                return Err(refuse(format!("its {} event fails the event's schema", event.name), &violations));
            }
        }
        Ok(())
    }
}

/// What `operate` decided: events to append to one stream, expecting it at a version (the
/// optimistic-concurrency check the executor retries on), or nothing.
///
/// ```
/// use purest_core::EventRef;
/// use purest_cqrs::Decision;
/// use purest_eventstore::Expected;
/// const INVITED: EventRef<String> = EventRef::new("customerInvited");
/// let decision = Decision::append("customer-ann", Expected::NoStream).event(INVITED, "ann@example.com".to_owned());
/// assert_eq!(decision.events(), ["customerInvited"]);
/// assert!(Decision::nothing().events().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Decision {
    pub(crate) stream: String,
    pub(crate) expected: Expected,
    pub(crate) events: Vec<Decided>,
}

#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub name: &'static str,
    pub payload: Result<Arc<RawValue>, String>,
}

impl Decision {
    /// Events for `stream`, appended only if the stream is at `expected`.
    pub fn append(stream: impl Into<String>, expected: Expected) -> Self {
        Self {
            stream: stream.into(),
            expected,
            events: Vec::new(),
        }
    }

    /// No events: nothing to write or commit.
    pub fn nothing() -> Self {
        Self::append(String::new(), Expected::Any)
    }

    /// Adds an event.
    pub fn event<T: Serialize>(mut self, event: EventRef<T>, payload: T) -> Self {
        let payload = serde_json::value::to_raw_value(&payload).map(Arc::from).map_err(|e| e.to_string());
        self.events.push(Decided {
            name: event.name(),
            payload,
        });
        self
    }

    /// The stream the events go to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The version the stream must be at.
    pub fn expected(&self) -> Expected {
        self.expected
    }

    /// The names of the decided events, in order.
    pub fn events(&self) -> Vec<&'static str> {
        self.events.iter().map(|event| event.name).collect()
    }

    /// The payload of the `index`th event as `T` (for tests of `operate`).
    pub fn payload<T: DeserializeOwned>(&self, index: usize) -> Option<T> {
        let payload = self.events.get(index)?.payload.as_ref().ok()?;
        serde_json::from_str(payload.get()).ok()
    }
}

/// An event as `write` sees it: the same whether it was just decided or is replayed from the
/// store. It has no recording time or global position, on purpose: what `write` needs must be
/// in the payload, or a rebuild would write something else.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its id.
    pub id: Id,
    /// Its stream.
    pub stream: Arc<str>,
    /// Its version in the stream.
    pub version: u64,
    /// Its type name.
    pub event_type: String,
    /// Its payload, as JSON.
    pub payload: Arc<RawValue>,
    /// Where it came from.
    pub metadata: Metadata,
}

impl Event {
    /// Whether it is an `event`.
    pub fn is<T>(&self, event: EventRef<T>) -> bool {
        self.event_type == event.name()
    }

    /// Its payload as `event`'s type, or `None` when it is another event. A payload that does not
    /// fit is a 500 naming the event (the store holds what the handler's schema allowed).
    pub fn decode<T: DeserializeOwned>(&self, event: EventRef<T>) -> Result<Option<T>, HandledError> {
        if !self.is(event) {
            return Ok(None);
        }
        serde_json::from_str(self.payload.get()).map(Some).map_err(|e| {
            tracing::error!(stream = %self.stream, version = self.version, event_type = %self.event_type, error = %e, "an event's payload does not fit its type");
            HandledError::internal(format!(
                "event {} of stream {} ({}) cannot be read as {}",
                self.version,
                self.stream,
                self.event_type,
                std::any::type_name::<T>()
            ))
        })
    }
}

impl From<&RecordedEvent> for Event {
    fn from(event: &RecordedEvent) -> Self {
        Self {
            id: event.id.clone(),
            stream: event.stream.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
        }
    }
}

/// What a handler's caller learns: where the decided events went. A command served by a
/// handler answers with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
#[garde(allow_unvalidated)]
pub struct Outcome {
    /// The stream the events were appended to; `None` when nothing was decided.
    pub stream: Option<String>,
    /// The stream's version after the append (0 when nothing was appended).
    pub version: u64,
    /// The types of the events appended, in order.
    pub events: Vec<String>,
    /// Whether this message was handled before and its events were in the store already (a
    /// redelivery): nothing was appended again.
    pub redelivered: bool,
}

/// What a handler knows about the message it handles, and the only clock it reads: `operate`
/// stays a function of its arguments, and tests fix the time.
#[derive(Debug, Clone)]
pub struct LowContext {
    message_id: Id,
    correlation_id: Option<Id>,
    trace_id: Option<Id>,
    principal_id: Option<String>,
    tenant_id: Option<String>,
    now: u64,
}

impl LowContext {
    /// The context of message `message_id`, handled at `now` (milliseconds since the Unix epoch).
    pub fn new(message_id: Id, now: u64) -> Self {
        Self {
            message_id,
            correlation_id: None,
            trace_id: None,
            principal_id: None,
            tenant_id: None,
            now,
        }
    }

    /// The context of a message arriving now.
    pub fn of_message(message: &MessageInfo) -> Self {
        Self {
            message_id: message.id.clone(),
            correlation_id: message.correlation_id.clone(),
            trace_id: Some(message.trace_id.clone()),
            principal_id: message.principal_id.as_deref().map(str::to_owned),
            tenant_id: message.tenant_id.as_deref().map(str::to_owned),
            now: purest_core::envelope::now_millis(),
        }
    }

    /// Sets the principal.
    pub fn with_principal(mut self, principal_id: &str) -> Self {
        self.principal_id = Some(principal_id.to_owned());
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant_id: &str) -> Self {
        self.tenant_id = Some(tenant_id.to_owned());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation(mut self, correlation_id: Id) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// The id of the message handled.
    pub fn message_id(&self) -> &Id {
        &self.message_id
    }

    /// The conversation it belongs to.
    pub fn correlation_id(&self) -> Option<&Id> {
        self.correlation_id.as_ref()
    }

    /// Who it runs for.
    pub fn principal_id(&self) -> Option<&str> {
        self.principal_id.as_deref()
    }

    /// Whose data it is.
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    /// When it is handled, in milliseconds since the Unix epoch: put it in the events that need
    /// a time, so a rebuild writes the same.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// What the events decided in this context carry: the message's correlation, trace,
    /// principal and tenant, and the message as their cause.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id.as_ref().map(Id::to_string),
            causation_id: Some(self.message_id.to_string()),
            trace_id: self.trace_id.as_ref().map(Id::to_string),
            principal_id: self.principal_id.clone(),
            tenant_id: self.tenant_id.clone(),
        }
    }

    /// The id of the `index`th event handler `handler` decides for this message: the same each
    /// time the message is handled, so a redelivered message's events are recognised in the store
    /// instead of appended twice.
    pub(crate) fn event_id(&self, handler: &str, index: usize) -> Id {
        let mut text = self.message_id.to_string();
        text.push('\0');
        text.push_str(handler);
        text.push('\0');
        text.push_str(&index.to_string());
        let high = mix(fnv1a(0xcbf2_9ce4_8422_2325, text.as_bytes()));
        let low = mix(fnv1a(0x8422_2325_cbf2_9ce4, text.as_bytes()) ^ high);
        Id::from_u128(u128::from(high) << 64 | u128::from(low))
    }
}

/// FNV-1a over `bytes`, from `basis`: stable across releases and platforms, unlike std's hasher.
fn fnv1a(basis: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(basis, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_per_message_handler_and_index() {
        let ctx = LowContext::new(Id::from_u128(7), 0);
        assert_eq!(ctx.event_id("a", 0), ctx.event_id("a", 0));
        let ids = [ctx.event_id("a", 0), ctx.event_id("a", 1), ctx.event_id("b", 0)];
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2]);
        let other = LowContext::new(Id::from_u128(8), 0);
        assert_ne!(other.event_id("a", 0), ids[0]);
        // Written down once: a release that changes the derivation would append redelivered
        // messages' events twice.
        assert_eq!(ctx.event_id("a", 0).to_string(), "e96201754496d8162c5d1cf054204b6a");
    }
}
