//! Layers: middleware around command and subscription handlers, in the spirit of tower's
//! `Layer`/`Service`. A [`Layer`] sees each message on its way in ([`Incoming`]) and decides
//! whether and how the rest of the pipeline runs ([`Next`]); it sees the outcome on the way out.
//!
//! Layers are added per app ([`Host::layer`](crate::Host::layer)), per service
//! ([`Service::layer`](crate::Service::layer)) or per command and subscription; they run outermost
//! first: app, then service, then the command's or subscription's own, each in the order added —
//! and in reverse on the way out. Inside the last layer the message is validated and the handler
//! runs. A service's layers wrap its subscriptions as well as its commands, so a service-level
//! guard guards both.
//!
//! purest ships [`Timeout`](crate::layers::Timeout), [`ConcurrencyLimit`](crate::layers::ConcurrencyLimit)
//! (with load shedding) and the hooks (guards and transforms, built on layers). Writing one:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use purest_core::prelude::*;
//! use purest_core::layer::{BoxFuture, Incoming, Layer, Next, Outcome};
//!
//! /// Counts the calls that reach the handlers it wraps.
//! #[derive(Clone, Default)]
//! struct CountCalls(Arc<AtomicUsize>);
//!
//! impl Layer for CountCalls {
//!     fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!         next.run(incoming)
//!     }
//! }
//!
//! async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let calls = CountCalls::default();
//! let app = Host::new()
//!     .service(Service::new("health", "1").layer(calls.clone()).command(Command::new("ping", ping)))
//!     .start()
//!     .await?;
//! app.client().invoke::<String>("health/1/ping", ()).await?;
//! app.client().invoke::<String>("health/1/ping", ()).await?;
//! assert_eq!(calls.0.load(Ordering::Relaxed), 2);
//! app.shutdown().await;
//! # Ok::<_, purest_core::Error>(()) }).unwrap();
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
/// The future a layer returns (re-exported, so a layer needs no other crate).
pub use futures::future::BoxFuture;

use crate::body::Body;
use crate::context::MessageInfo;
use crate::envelope::Address;
use crate::error::Error;

/// What a layer answers: the output of the handler (which a layer may replace), or why there is
/// none. A [`HandledError`](crate::HandledError) reaches the caller as it is (and, on a durable
/// subscription, is retried when its status is 5xx, 408 or 429, else dead-lettered); any other
/// error is a generic 500 for the caller and is retried by durable subscriptions.
pub type Outcome = Result<Body, Error>;

/// Whether a command or a subscription is being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A command: the outcome is the response.
    Command,
    /// A subscription: an `Err` outcome fails the delivery.
    Subscription,
}

/// A message on its way into a handler, as layers see it: its metadata, the command or
/// subscription it is for, and its (not yet validated) payload and parameters.
#[derive(Debug, Clone)]
pub struct Incoming {
    message: Arc<MessageInfo>,
    target: Arc<Address>,
    kind: Kind,
    payload: Body,
    params: Body,
}

impl Incoming {
    pub(crate) fn new(message: Arc<MessageInfo>, target: Arc<Address>, kind: Kind, payload: Body, params: Body) -> Self {
        Self {
            message,
            target,
            kind,
            payload,
            params,
        }
    }

    pub(crate) fn into_parts(self) -> (Arc<MessageInfo>, Body, Body) {
        (self.message, self.payload, self.params)
    }

    /// The message's metadata: sender, principal, tenant, trace id, event name, …
    pub fn message(&self) -> &MessageInfo {
        &self.message
    }

    /// The metadata, shared.
    pub fn message_arc(&self) -> &Arc<MessageInfo> {
        &self.message
    }

    /// The principal, if any.
    pub fn principal_id(&self) -> Option<&str> {
        self.message.principal_id.as_deref()
    }

    /// The tenant, if any.
    pub fn tenant_id(&self) -> Option<&str> {
        self.message.tenant_id.as_deref()
    }

    /// The command or subscription being run (service, version, name, instance).
    pub fn target(&self) -> &Address {
        &self.target
    }

    /// Command or subscription.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The payload, not yet validated.
    pub fn payload(&self) -> &Body {
        &self.payload
    }

    /// The parameters (an empty object for events), not yet validated.
    pub fn params(&self) -> &Body {
        &self.params
    }

    /// Replaces the payload (it is validated afterwards, like the original).
    pub fn set_payload(&mut self, payload: Body) {
        self.payload = payload;
    }

    /// Replaces the parameters (validated afterwards).
    pub fn set_params(&mut self, params: Body) {
        self.params = params;
    }
}

/// Middleware around handlers. See the [module docs](self) for an example.
pub trait Layer: Send + Sync + 'static {
    /// Handles one message: run the rest of the pipeline with `next.run(incoming)` (or don't, to
    /// refuse the message), and look at or change the outcome.
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome>;

    /// The layer for one running command or subscription of one instance. Layers whose state
    /// must not be shared between them (a concurrency limit counts per instance) return a fresh
    /// copy; the default shares `self`.
    fn per_instance(&self) -> Option<Arc<dyn Layer>> {
        None
    }
}

/// The rest of the pipeline after a layer: the inner layers, then validation and the handler.
pub struct Next<'a> {
    layers: &'a [Arc<dyn Layer>],
    terminal: &'a Terminal<'a>,
}

/// Validation and the handler, run inside the innermost layer.
pub(crate) type Terminal<'t> = dyn Fn(Incoming) -> BoxFuture<'static, Outcome> + Send + Sync + 't;

impl<'a> Next<'a> {
    /// Runs the rest of the pipeline on `incoming`.
    pub fn run(self, incoming: Incoming) -> BoxFuture<'a, Outcome> {
        match self.layers.split_first() {
            Some((layer, layers)) => {
                let next = Next {
                    layers,
                    terminal: self.terminal,
                };
                // A panicking layer fails this message, never the process or the consumer.
                match std::panic::catch_unwind(AssertUnwindSafe(|| layer.call(incoming, next))) {
                    Ok(running) => Box::pin(
                        AssertUnwindSafe(running)
                            .catch_unwind()
                            .map(|result| result.unwrap_or_else(layer_panicked)),
                    ),
                    Err(panic) => Box::pin(std::future::ready(layer_panicked(panic))),
                }
            }
            None => (self.terminal)(incoming),
        }
    }
}

fn layer_panicked(panic: Box<dyn std::any::Any + Send>) -> Outcome {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into());
    Err(Error::msg(format!("a layer panicked: {text}")))
}

/// The layers of one running command or subscription, outermost first.
#[derive(Clone, Default)]
pub(crate) struct Stack(Arc<[Arc<dyn Layer>]>);

impl Stack {
    /// The stack of one running instance: every layer's per-instance copy.
    pub(crate) fn for_instance<'a>(layers: impl IntoIterator<Item = &'a Arc<dyn Layer>>) -> Self {
        Stack(
            layers
                .into_iter()
                .map(|layer| layer.per_instance().unwrap_or_else(|| layer.clone()))
                .collect(),
        )
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs `incoming` through every layer, then `terminal`.
    pub(crate) fn run<'a>(&'a self, incoming: Incoming, terminal: &'a Terminal<'a>) -> BoxFuture<'a, Outcome> {
        Next { layers: &self.0, terminal }.run(incoming)
    }
}
