//! Hooks around a command's handler, run in the order of DESIGN.md §6: transform input →
//! validate → before guards → handler → validate output → after guards → transform output.
//! Service hooks run before the command's own.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::body::Body;
use crate::context::MessageInfo;
use crate::error::HandledError;

/// What a guard sees: the message metadata and the (not yet typed) payload and parameters, or,
/// for after guards, the output.
#[derive(Debug, Clone)]
pub struct GuardInput {
    /// Principal, tenant, trace id, sender, …
    pub message: Arc<MessageInfo>,
    /// Before guards: the payload. After guards: the output.
    pub body: Body,
    /// The parameters.
    pub params: Body,
}

impl GuardInput {
    /// The principal, if any.
    pub fn principal_id(&self) -> Option<&str> {
        self.message.principal_id.as_deref()
    }
    /// The tenant, if any.
    pub fn tenant_id(&self) -> Option<&str> {
        self.message.tenant_id.as_deref()
    }
}

type GuardFn = dyn Fn(GuardInput) -> BoxFuture<'static, Result<(), HandledError>> + Send + Sync;
type TransformInputFn = dyn Fn(&MessageInfo, Value, Value) -> Result<(Value, Value), HandledError> + Send + Sync;
type TransformOutputFn = dyn Fn(&MessageInfo, Value) -> Result<Value, HandledError> + Send + Sync;

/// A named check that may refuse a call with its own status (401, 403, …).
#[derive(Clone)]
pub struct Guard {
    pub(crate) name: Arc<str>,
    pub(crate) check: Arc<GuardFn>,
}

impl Guard {
    /// A guard from an async function.
    pub fn new<F, Fut>(name: &str, check: F) -> Self
    where
        F: Fn(GuardInput) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandledError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            check: Arc::new(move |input| Box::pin(check(input))),
        }
    }
}

/// The hooks of a command or a service.
#[derive(Clone, Default)]
pub struct Hooks {
    pub(crate) transform_input: Vec<Arc<TransformInputFn>>,
    pub(crate) before_guards: Vec<Guard>,
    pub(crate) after_guards: Vec<Guard>,
    pub(crate) transform_output: Vec<Arc<TransformOutputFn>>,
}

impl Hooks {
    pub(crate) fn add_transform_input(
        &mut self,
        f: impl Fn(&MessageInfo, Value, Value) -> Result<(Value, Value), HandledError> + Send + Sync + 'static,
    ) {
        self.transform_input.push(Arc::new(f));
    }

    pub(crate) fn add_transform_output(&mut self, f: impl Fn(&MessageInfo, Value) -> Result<Value, HandledError> + Send + Sync + 'static) {
        self.transform_output.push(Arc::new(f));
    }

    /// `self` (the service's) first, then `then` (the command's).
    pub(crate) fn followed_by(&self, then: &Hooks) -> Hooks {
        fn chain<T: Clone>(a: &[T], b: &[T]) -> Vec<T> {
            a.iter().chain(b).cloned().collect()
        }
        Hooks {
            transform_input: chain(&self.transform_input, &then.transform_input),
            before_guards: chain(&self.before_guards, &then.before_guards),
            after_guards: chain(&self.after_guards, &then.after_guards),
            transform_output: chain(&self.transform_output, &then.transform_output),
        }
    }

    /// Whether anything runs after the handler.
    pub(crate) fn has_output_hooks(&self) -> bool {
        !self.after_guards.is_empty() || !self.transform_output.is_empty()
    }

    pub(crate) async fn run_guards(guards: &[Guard], input: GuardInput) -> Result<(), HandledError> {
        for guard in guards {
            (guard.check)(input.clone()).await.inspect_err(|refusal| {
                tracing::debug!(guard = %guard.name, status = refusal.status, "guard refused the call");
            })?;
        }
        Ok(())
    }

    pub(crate) fn apply_transform_input(&self, info: &MessageInfo, payload: Body, params: Body) -> Result<(Body, Body), HandledError> {
        if self.transform_input.is_empty() {
            return Ok((payload, params));
        }
        let unreadable = |e: serde_json::Error| HandledError::bad_request(format!("input could not be read: {e}"));
        let (mut payload, mut params) = (payload.to_value().map_err(unreadable)?, params.to_value().map_err(unreadable)?);
        for transform in &self.transform_input {
            (payload, params) = transform(info, payload, params)?;
        }
        Ok((Body::json(payload), Body::json(params)))
    }

    pub(crate) fn apply_transform_output(&self, info: &MessageInfo, output: Body) -> Result<Body, HandledError> {
        if self.transform_output.is_empty() {
            return Ok(output);
        }
        let mut value = output.to_value().map_err(|e| {
            tracing::error!(error = %e, "output could not be serialized for transform_output");
            HandledError::generic_internal()
        })?;
        for transform in &self.transform_output {
            value = transform(info, value)?;
        }
        Ok(Body::json(value))
    }
}
