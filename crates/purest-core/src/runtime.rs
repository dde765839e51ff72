//! Runs services on a bridge: one [`CommandRuntime`] per command and one
//! [`SubscriptionRuntime`] per subscription of each instance, each executing the pipeline of
//! docs/ARCHITECTURE.md §6, and the bookkeeping that lets an instance drain gracefully.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::body::Body;
use crate::bridge::{
    Bridge, CommandEndpoint, DeadLetter, Delivery, Malformed, Registration, Retry, Settlement, SubscriptionEndpoint, SubscriptionRoute,
};
use crate::context::{Context, Endpoint, MessageInfo, StateMap};
use crate::envelope::{Address, Envelope, Message};
use crate::error::{Error, HandledError};
use crate::handler::{CallError, Checks, ErasedHandler, Invocation};
use crate::id::Id;
use crate::layer::{Incoming, Kind, Layer, Outcome, Stack};
use crate::layers::ConcurrencyLimit;
use crate::name::Name;
use crate::presence::{Card, info};
use crate::service::Service;
use crate::validation::Schema;

/// Counts the handlers running in one instance, so shutdown can wait for them.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    /// Set once shutdown waits; until then finishing a handler need not wake anybody.
    draining: std::sync::atomic::AtomicBool,
    idle: Notify,
}

impl InFlight {
    pub(crate) async fn wait_idle(&self) {
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn exit(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 && self.draining.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }
}

/// An endpoint whose handlers are counted in flight.
pub(crate) trait Counted {
    fn in_flight(&self) -> &InFlight;
}

/// An endpoint while one of its handlers runs: counted in flight until dropped. It owns the
/// endpoint's `Arc`, so counting costs no extra reference.
pub(crate) struct Running<E: Counted>(Arc<E>);

impl<E: Counted> Running<E> {
    pub(crate) fn enter(endpoint: Arc<E>) -> Self {
        endpoint.in_flight().count.fetch_add(1, Ordering::AcqRel);
        Running(endpoint)
    }
}

impl<E: Counted> std::ops::Deref for Running<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: Counted> Drop for Running<E> {
    fn drop(&mut self) {
        self.0.in_flight().exit();
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

fn panicked(panic: Box<dyn std::any::Any + Send>) -> CallError {
    CallError::Failed(Error::msg(format!("handler panicked: {}", panic_message(&*panic))))
}

/// Starts the handler: extraction and validation run now, synchronously, so the future that
/// stays behind is small. A panic becomes an unhandled error.
fn start_guarded(handler: &Arc<dyn ErasedHandler>, invocation: Invocation<'_>) -> BoxFuture<'static, Result<Body, CallError>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(invocation))) {
        Ok(running) => running,
        Err(panic) => Box::pin(std::future::ready(Err(panicked(panic)))),
    }
}

/// Awaits a started handler, turning a panic into an unhandled error.
async fn finish_guarded(running: BoxFuture<'static, Result<Body, CallError>>) -> Result<Body, CallError> {
    AssertUnwindSafe(running)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(panicked(panic)))
}

/// Whether a tracing subscriber takes this module's info spans. Without one, handlers run in no
/// span at all: `info_span!` alone would still offer each span to the `log` crate (tracing's `log`
/// feature, which axum's defaults turn on), a cost on every message.
fn wants_spans() -> bool {
    tracing::enabled!(tracing::Level::INFO)
}

/// Continues the sender's trace (the `traceparent` in `otp`) in `span`, when a tracing backend
/// is installed (see [`crate::trace_context`]).
fn continue_trace(span: &tracing::Span, otp: Option<&str>) {
    if let Some(propagation) = crate::trace_context::propagation() {
        let traceparent = otp.and_then(crate::trace_context::traceparent_of);
        propagation.continue_trace(span, traceparent.as_deref());
    }
}

fn compile(schema: Option<&crate::handler::TypeSchema>, on: bool, what: String) -> Result<Option<Schema>, Error> {
    match schema {
        Some(schema) if on => Ok(Some(Schema::compile(schema.json.clone(), &what)?)),
        _ => Ok(None),
    }
}

/// One command of one running instance.
pub(crate) struct CommandRuntime {
    endpoint: Arc<Endpoint>,
    handler: Arc<dyn ErasedHandler>,
    checks: Arc<Checks>,
    layers: Stack,
    success_event: Option<Name>,
    in_flight: Arc<InFlight>,
}

impl CommandRuntime {
    /// The synchronous start of validation and the handler: extraction and validation run now,
    /// so the future that stays behind is small.
    fn start(&self, info: &Arc<MessageInfo>, payload: Body, params: Body) -> BoxFuture<'static, Result<Body, CallError>> {
        let invocation = Invocation {
            ctx: Context::new(self.endpoint.clone(), info.clone()),
            payload: Some(payload),
            params: Some(params),
            checks: &self.checks,
        };
        start_guarded(&self.handler, invocation)
    }

    /// The response; `traced` when the command has a span of its own (else its `otp` travels
    /// on unchanged).
    fn respond(&self, info: &MessageInfo, result: Result<Body, CallError>, traced: bool) -> Envelope {
        let message = match result {
            Ok(payload) => Message::Success { payload },
            Err(CallError::Rejected(error)) => Message::Error {
                error: Box::new(error.with_trace_id(Some(info.trace_id.clone()))),
                is_handled_error: true,
            },
            Err(CallError::Failed(error)) => match error.as_handled() {
                Some(_) => Message::Error {
                    error: Box::new(error.into_handled().with_trace_id(Some(info.trace_id.clone()))),
                    is_handled_error: true,
                },
                None => {
                    tracing::error!(command = %self.endpoint.address, trace_id = %info.trace_id, error = %error, "command failed with an unhandled error; the caller gets a generic 500");
                    Message::Error {
                        error: Box::new(HandledError::generic_internal().with_trace_id(Some(info.trace_id.clone()))),
                        is_handled_error: false,
                    }
                }
            },
        };
        let success = matches!(message, Message::Success { .. });
        let mut response = Envelope::new(self.endpoint.address.clone(), message);
        response.receiver = Some(info.sender.clone());
        response.correlation_id = info.correlation_id.clone();
        response.trace_id = Some(info.trace_id.clone());
        response.principal_id = info.principal_id.clone();
        response.tenant_id = info.tenant_id.clone();
        // With telemetry on, the success event's consumers are children of this command's span
        // (`respond` runs inside it).
        response.otp = crate::trace_context::propagation()
            .filter(|_| traced)
            .and_then(|propagation| propagation.current_traceparent())
            .map(|traceparent| crate::trace_context::otp_of(&traceparent))
            .or_else(|| info.otp.clone());
        if success {
            response.event_name = self.success_event.clone();
        }
        response
    }
}

impl Counted for CommandRuntime {
    fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }
}

impl CommandEndpoint for CommandRuntime {
    fn handle(self: Arc<Self>, command: Envelope) -> BoxFuture<'static, Envelope> {
        let this = Running::enter(self);
        let (info, message) = MessageInfo::split(command);
        let info = Arc::new(info);
        let Message::Command { payload, parameter } = message else {
            let refusal = HandledError::bad_request(format!("expected a command, got {}", message.message_type()));
            return Box::pin(std::future::ready(this.respond(&info, Err(CallError::Rejected(refusal)), false)));
        };
        let address = &this.endpoint.address;
        // A wire bridge routes by subject or queue: a receiver naming another command means the
        // sender built one of them wrong, and answering as this command would do the wrong thing.
        if let Some(receiver) = &info.receiver
            && (receiver.service_name != address.service_name
                || receiver.service_version != address.service_version
                || receiver.service_target != address.service_target)
        {
            let refusal = HandledError::bad_request(format!(
                "the command names receiver {}/{}/{} but was delivered to {}/{}/{}: send it on the receiver's own subject",
                receiver.service_name,
                receiver.service_version,
                receiver.service_target,
                address.service_name,
                address.service_version,
                address.service_target
            ));
            return Box::pin(std::future::ready(this.respond(&info, Err(CallError::Rejected(refusal)), false)));
        }
        let recorded = crate::trace_context::records(info.otp.as_deref());
        let span = if !wants_spans() {
            tracing::Span::none()
        } else if recorded {
            let span = tracing::info_span!("command", service = %address.service_name, version = %address.service_version,
                command = %address.service_target, trace_id = %info.trace_id,
                otel.name = %format_args!("{}/{}/{} process", address.service_name, address.service_version, address.service_target),
                otel.kind = "server", otel.status_code = tracing::field::Empty,
                messaging.system = "purest", messaging.operation.type = "process", messaging.message.id = %info.id);
            continue_trace(&span, info.otp.as_deref());
            span
        } else {
            tracing::info_span!(target: crate::trace_context::UNRECORDED, "command", service = %address.service_name,
                version = %address.service_version, command = %address.service_target, trace_id = %info.trace_id)
        };
        let traced = recorded && !span.is_none();
        if this.layers.is_empty() {
            // The common case, kept small (it is allocated per call): no layer future at all.
            let running = span.in_scope(|| this.start(&info, payload, parameter));
            return Box::pin(async move {
                let result = finish_guarded(running).instrument(span.clone()).await;
                span.in_scope(|| this.respond(&info, result, traced))
            });
        }
        Box::pin(async move {
            let terminal = |incoming: Incoming| -> BoxFuture<'static, Outcome> {
                let (info, payload, params) = incoming.into_parts();
                let running = this.start(&info, payload, params);
                Box::pin(finish_guarded(running).map(|result| result.map_err(CallError::into_error)))
            };
            let incoming = Incoming::new(info.clone(), this.endpoint.address.clone(), Kind::Command, payload, parameter);
            let running = span.in_scope(|| this.layers.run(incoming, &terminal));
            let result = running.instrument(span.clone()).await.map_err(CallError::Failed);
            span.in_scope(|| this.respond(&info, result, traced))
        })
    }
}

/// One subscription of one running instance.
pub(crate) struct SubscriptionRuntime {
    endpoint: Arc<Endpoint>,
    handler: Arc<dyn ErasedHandler>,
    checks: Arc<Checks>,
    emits: Option<Name>,
    in_flight: Arc<InFlight>,
    layers: Stack,
    /// Filter, durability and retry policy, as the bridge got them.
    route: SubscriptionRoute,
}

impl Counted for SubscriptionRuntime {
    fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }
}

/// Why one run of a subscription's handler failed.
struct Failure {
    reason: String,
    /// Retrying cannot help (see [`Retry`]'s docs): dead-letter at once.
    permanent: bool,
}

impl SubscriptionEndpoint for SubscriptionRuntime {
    fn deliver(self: Arc<Self>, delivery: Delivery) -> BoxFuture<'static, Settlement> {
        let this = Running::enter(self);
        Box::pin(async move {
            let attempt = delivery.attempt;
            let event = match delivery.message {
                Ok(event) => event,
                Err(malformed) => {
                    tracing::warn!(subscription = %this.endpoint.address, reason = %malformed.reason, "a message that is not an envelope was refused");
                    return this
                        .give_up(Err(&malformed), format!("not a message: {}", malformed.reason), attempt)
                        .await;
                }
            };
            // Bridges may hand over more than the filter selects (subjects lose case, a broker
            // filters on fewer fields): what does not match is not this subscription's.
            if !this.route.filter.matches(&event) {
                return Settlement::Ack;
            }
            if this.route.durable && attempt > this.route.retry.max_attempts {
                // The last attempt never settled (its consumer died): its attempts are used up.
                let reason = format!("{} attempts used up; the last one did not finish", this.route.retry.max_attempts);
                return this.give_up(Ok(&event), reason, attempt).await;
            }
            let failure = match this.handle(&event, attempt).await {
                Ok(()) => return Settlement::Ack,
                Err(failure) => failure,
            };
            if !this.route.durable {
                tracing::warn!(subscription = %this.endpoint.address, reason = %failure.reason, "best-effort subscription failed; the message is not retried");
                return Settlement::Reject;
            }
            if failure.permanent || attempt >= this.route.retry.max_attempts {
                return this.give_up(Ok(&event), failure.reason, attempt).await;
            }
            let delay = this.route.retry.next_delay(attempt);
            tracing::info!(subscription = %this.endpoint.address, attempt, ?delay, reason = %failure.reason, "retrying");
            Settlement::Retry(delay)
        })
    }
}

impl SubscriptionRuntime {
    /// Runs the layers and the handler on one event (and emits the output when the subscription
    /// `.emits`).
    async fn handle(&self, event: &Envelope, attempt: u32) -> Result<(), Failure> {
        let info = Arc::new(MessageInfo::of_event(event));
        let payload = match &event.message {
            Message::Custom { payload } | Message::Success { payload } => payload.clone(),
            Message::Error { error, .. } => Body::typed(error.clone()),
            Message::Command { payload, .. } => payload.clone(),
            Message::Info { payload, .. } => Body::json(payload.as_deref().cloned().unwrap_or_default()),
        };
        let address = &self.endpoint.address;
        let span = if !wants_spans() {
            tracing::Span::none()
        } else if crate::trace_context::records(info.otp.as_deref()) {
            let span = tracing::info_span!("subscription", service = %address.service_name, version = %address.service_version,
                subscription = %address.service_target, trace_id = %info.trace_id,
                otel.name = %format_args!("{} process", info.event_name.as_deref().unwrap_or("event")),
                otel.kind = "consumer", otel.status_code = tracing::field::Empty,
                messaging.system = "purest", messaging.operation.type = "process", messaging.message.id = %info.id,
                messaging.destination.subscription.name = %address, messaging.delivery.attempt = attempt);
            continue_trace(&span, info.otp.as_deref());
            span
        } else {
            tracing::info_span!(target: crate::trace_context::UNRECORDED, "subscription", service = %address.service_name,
                version = %address.service_version, subscription = %address.service_target, trace_id = %info.trace_id)
        };
        let ctx = Context::new(self.endpoint.clone(), info.clone());
        let terminal = |incoming: Incoming| -> BoxFuture<'static, Outcome> {
            let (info, payload, _) = incoming.into_parts();
            let invocation = Invocation {
                ctx: Context::new(self.endpoint.clone(), info),
                payload: Some(payload),
                params: None,
                checks: &self.checks,
            };
            let running = start_guarded(&self.handler, invocation);
            Box::pin(finish_guarded(running).map(|result| result.map_err(CallError::into_error)))
        };
        let outcome = if self.layers.is_empty() {
            let running = span.in_scope(|| {
                start_guarded(
                    &self.handler,
                    Invocation {
                        ctx: ctx.clone(),
                        payload: Some(payload),
                        params: None,
                        checks: &self.checks,
                    },
                )
            });
            finish_guarded(running).instrument(span.clone()).await
        } else {
            let incoming = Incoming::new(info.clone(), address.clone(), Kind::Subscription, payload, Body::empty_object());
            let running = span.in_scope(|| self.layers.run(incoming, &terminal));
            running.instrument(span.clone()).await.map_err(CallError::Failed)
        };
        if outcome.is_err() {
            // A failed attempt shows on the trace; the next attempt is a span of its own.
            span.record("otel.status_code", "ERROR");
        }
        match outcome {
            Ok(output) => match &self.emits {
                Some(event_name) => ctx
                    .emit_body(event_name.clone(), output)
                    .instrument(span)
                    .await
                    .map_err(|e| Failure {
                        reason: format!("emitting {event_name} failed: {e}"),
                        permanent: false,
                    }),
                None => Ok(()),
            },
            Err(CallError::Rejected(error)) => {
                tracing::warn!(subscription = %address, trace_id = %info.trace_id, %error, "message refused before the handler ran");
                Err(Failure {
                    reason: error.to_string(),
                    permanent: true,
                })
            }
            Err(CallError::Failed(error)) => {
                tracing::warn!(subscription = %address, trace_id = %info.trace_id, %error, "subscription handler failed");
                let permanent = error.as_handled().is_some_and(|handled| !Retry::is_transient(handled.status));
                Err(Failure {
                    reason: error.to_string(),
                    permanent,
                })
            }
        }
    }

    /// Stops trying: publishes the dead letter of a durable subscription and rejects the
    /// delivery. If the dead letter cannot be published the message is retried instead, so it is
    /// never lost.
    async fn give_up(&self, original: Result<&Envelope, &Malformed>, reason: String, attempts: u32) -> Settlement {
        if !self.route.durable {
            return Settlement::Reject;
        }
        let retry = &self.route.retry;
        tracing::error!(subscription = %self.endpoint.address, attempts, %reason, dead_letter = %retry.dead_letter,
            message_id = original.map(|e| e.id.to_string()).unwrap_or_default(), "giving up on a message; published as a dead letter");
        let letter = DeadLetter::envelope(&self.route, original, reason, attempts);
        match self.endpoint.bridge.emit(letter, self.endpoint.default_timeout).await {
            Ok(()) => Settlement::Reject,
            Err(error) => {
                let delay = retry.next_delay(attempts);
                tracing::error!(subscription = %self.endpoint.address, %error, ?delay, "the dead letter could not be published; the message stays and is delivered again");
                Settlement::Retry(delay)
            }
        }
    }
}

/// One running copy of a service.
pub(crate) struct ServiceInstance {
    pub(crate) id: String,
    /// `name/version` of the service.
    pub(crate) service_id: String,
    /// What the instance announces about itself (see [`crate::presence`]).
    pub(crate) card: Arc<Card>,
    bridge: Arc<dyn Bridge>,
    registrations: Vec<Box<dyn Registration>>,
    in_flight: Arc<InFlight>,
}

impl ServiceInstance {
    /// Compiles the service's schemas and registers its commands and subscriptions on `bridge`.
    pub(crate) async fn start(
        service: &Service,
        bridge: Arc<dyn Bridge>,
        app_state: &StateMap,
        app_layers: &[Arc<dyn Layer>],
    ) -> Result<Self, Error> {
        let instance_id: Name = Id::random().to_string().into();
        let mut state = service.state.clone();
        state.merge_missing(app_state);
        let state = Arc::new(state);
        let in_flight = Arc::new(InFlight::default());
        let mut instance = ServiceInstance {
            id: format!("{}/{}#{}", service.name, service.version, instance_id),
            service_id: service.id(),
            card: Arc::new(Card::new(service, &instance_id)),
            bridge: bridge.clone(),
            registrations: Vec::new(),
            in_flight: in_flight.clone(),
        };
        instance.card.announce(&*bridge, info::SERVICE_INIT).await;
        let address_of = |target: &Name| {
            Arc::new(Address {
                service_name: service.name.clone(),
                service_version: service.version.clone(),
                service_target: target.clone(),
                instance_id: Some(instance_id.clone()),
            })
        };
        for command in &service.commands {
            let address = address_of(&command.name);
            let what = |part: &str| format!("{part} of command {address}");
            let checks = Checks {
                payload: compile(command.signature.payload.as_ref(), service.validate_input, what("payload"))?,
                params: compile(command.signature.params.as_ref(), service.validate_input, what("parameters"))?,
                validate_output: service.validate_output,
            };
            let limit: Option<Arc<dyn Layer>> = command
                .concurrency
                .map(|limit| Arc::new(ConcurrencyLimit::new(limit)) as Arc<dyn Layer>);
            let runtime = CommandRuntime {
                endpoint: Arc::new(Endpoint::new(bridge.clone(), address.clone(), state.clone())),
                handler: command.handler.clone(),
                checks: Arc::new(checks),
                layers: Stack::for_instance(app_layers.iter().chain(&service.layers).chain(&limit).chain(&command.layers)),
                success_event: command.success_event.clone(),
                in_flight: in_flight.clone(),
            };
            let registration = bridge.serve_command(address, Arc::new(runtime)).await;
            instance.push(registration).await?;
        }
        for sub in &service.subscriptions {
            let address = address_of(&sub.name);
            let checks = Checks {
                payload: compile(
                    sub.signature.payload.as_ref(),
                    service.validate_input,
                    format!("payload of subscription {address}"),
                )?,
                params: None,
                validate_output: service.validate_output,
            };
            let route = SubscriptionRoute {
                address: address.clone(),
                filter: sub.filter.clone(),
                durable: sub.durable,
                every_instance: sub.every_instance,
                retry: sub.retry.clone(),
                concurrency: sub.concurrency,
                queue_capacity: sub.queue_capacity,
            };
            let runtime = SubscriptionRuntime {
                endpoint: Arc::new(Endpoint::new(bridge.clone(), address, state.clone())),
                handler: sub.handler.clone(),
                checks: Arc::new(checks),
                emits: sub.emits.clone(),
                in_flight: in_flight.clone(),
                layers: Stack::for_instance(app_layers.iter().chain(&service.layers).chain(&sub.layers)),
                route: route.clone(),
            };
            let registration = bridge.subscribe(route, Arc::new(runtime)).await;
            instance.push(registration).await?;
        }
        instance.card.announce_functions(&*bridge).await;
        Ok(instance)
    }

    /// Keeps a registration; on failure undoes the ones made so far.
    async fn push(&mut self, registration: Result<Box<dyn Registration>, Error>) -> Result<(), Error> {
        match registration {
            Ok(registration) => {
                self.registrations.push(registration);
                Ok(())
            }
            Err(error) => {
                for registration in self.registrations.drain(..) {
                    registration.close().await;
                }
                self.card.announce(&*self.bridge, info::SERVICE_SHUTDOWN).await;
                Err(error)
            }
        }
    }

    /// Stops taking work, then waits for the handlers in flight.
    pub(crate) async fn stop(self) {
        self.card.announce(&*self.bridge, info::SERVICE_DRAIN).await;
        futures::future::join_all(self.registrations.into_iter().map(|r| r.close())).await;
        self.in_flight.wait_idle().await;
        self.card.announce(&*self.bridge, info::SERVICE_SHUTDOWN).await;
    }
}
