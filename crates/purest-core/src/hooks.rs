//! Hooks — guards and transforms — as [layers](crate::layer): `.before_guard(..)`,
//! `.after_guard(..)`, `.transform_input(..)` and `.transform_output(..)` on a command,
//! subscription or service each add one layer, in order, among the others added there.
//!
//! A before guard runs before the payload is validated: a caller without the right learns
//! nothing about what the command accepts.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::body::Body;
use crate::context::MessageInfo;
use crate::error::HandledError;
use crate::layer::{Incoming, Layer, Next, Outcome};

/// What a guard sees: the message metadata and the (not yet validated) payload and parameters,
/// or, for after guards, the output.
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

/// Whether a guard looks at the input (before the handler) or the output (after it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
}

/// A named check that may refuse a message with its own status (401, 403, …).
#[derive(Clone)]
pub struct Guard {
    name: Arc<str>,
    when: When,
    check: Arc<GuardFn>,
}

impl Guard {
    fn new<F, Fut>(name: &str, when: When, check: F) -> Self
    where
        F: Fn(GuardInput) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandledError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            when,
            check: Arc::new(move |input| Box::pin(check(input))),
        }
    }

    /// A guard of the input: an `Err` refuses the message before the handler runs.
    pub fn before<F, Fut>(name: &str, check: F) -> Self
    where
        F: Fn(GuardInput) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandledError>> + Send + 'static,
    {
        Self::new(name, When::Before, check)
    }

    /// A guard of the output: an `Err` replaces the response.
    pub fn after<F, Fut>(name: &str, check: F) -> Self
    where
        F: Fn(GuardInput) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandledError>> + Send + 'static,
    {
        Self::new(name, When::After, check)
    }

    async fn check(&self, input: GuardInput) -> Result<(), HandledError> {
        (self.check)(input).await.inspect_err(|refusal| {
            tracing::debug!(guard = %self.name, status = refusal.status, "guard refused the message");
        })
    }
}

impl Layer for Guard {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        let message = incoming.message_arc().clone();
        match self.when {
            When::Before => {
                let input = GuardInput {
                    message,
                    body: incoming.payload().clone(),
                    params: incoming.params().clone(),
                };
                Box::pin(async move {
                    self.check(input).await?;
                    next.run(incoming).await
                })
            }
            When::After => Box::pin(async move {
                let output = next.run(incoming).await?;
                let input = GuardInput {
                    message,
                    body: output.clone(),
                    params: Body::empty_object(),
                };
                self.check(input).await?;
                Ok(output)
            }),
        }
    }
}

/// Changes the raw (JSON) payload and parameters before they are validated.
#[derive(Clone)]
pub struct TransformInput(Arc<TransformInputFn>);

impl TransformInput {
    /// A transform of payload and parameters.
    pub fn new(transform: impl Fn(&MessageInfo, Value, Value) -> Result<(Value, Value), HandledError> + Send + Sync + 'static) -> Self {
        Self(Arc::new(transform))
    }
}

impl Layer for TransformInput {
    fn call<'a>(&'a self, mut incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        let unreadable = |e: serde_json::Error| HandledError::bad_request(format!("input could not be read: {e}"));
        let transformed = (|| {
            let (payload, params) = (
                incoming.payload().to_value().map_err(unreadable)?,
                incoming.params().to_value().map_err(unreadable)?,
            );
            (self.0)(incoming.message(), payload, params)
        })();
        match transformed {
            Ok((payload, params)) => {
                incoming.set_payload(Body::json(payload));
                incoming.set_params(Body::json(params));
                next.run(incoming)
            }
            Err(refusal) => Box::pin(std::future::ready(Err(refusal.into()))),
        }
    }
}

/// Changes the output (as JSON) on its way out.
#[derive(Clone)]
pub struct TransformOutput(Arc<TransformOutputFn>);

impl TransformOutput {
    /// A transform of the output.
    pub fn new(transform: impl Fn(&MessageInfo, Value) -> Result<Value, HandledError> + Send + Sync + 'static) -> Self {
        Self(Arc::new(transform))
    }
}

impl Layer for TransformOutput {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        let message = incoming.message_arc().clone();
        Box::pin(async move {
            let output = next.run(incoming).await?;
            let value = output.to_value().map_err(|e| {
                tracing::error!(error = %e, "output could not be serialized for transform_output");
                HandledError::generic_internal()
            })?;
            Ok(Body::json((self.0)(&message, value)?))
        })
    }
}
