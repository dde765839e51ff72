//! The core of purest: the envelope, the [`Bridge`] trait and the in-memory bridge, the
//! [`Service`] / [`Command`] / [`Subscription`] builders, handler extractors, hooks, validation,
//! errors, [`Host`] and testing helpers. No broker or HTTP dependency lives here.
//!
//! Commands and events are addressed by strings (`"greeter/1/greet"`, what peers in other
//! languages use) or by typed references ([`CommandRef`], [`EventRef`]) that make the compiler
//! check names and types on both sides; see [`reference`](mod@reference). Handlers take extractors, and
//! extractors of your own implement [`FromInvocation`].
//!
//! Most users depend on the `purest` facade crate instead; its `prelude` re-exports all of this.
//!
//! ```
//! use purest_core::prelude::*;
//!
//! #[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
//! struct Greeting {
//!     #[garde(length(min = 1, max = 50))]
//!     name: String,
//! }
//!
//! async fn greet(Payload(g): Payload<Greeting>) -> Result<String, HandledError> {
//!     Ok(format!("hello {}", g.name))
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let app = Host::new().service(Service::new("greeter", "1").command(Command::new("greet", greet))).start().await?;
//! let client = app.client();
//! assert_eq!(client.invoke::<String>("greeter/1/greet", Greeting { name: "ann".into() }).await?, "hello ann");
//! let refused = client.invoke::<String>("greeter/1/greet", Greeting { name: "".into() }).await.unwrap_err();
//! assert_eq!(refused.status, 400);
//! app.shutdown().await;
//! # Ok::<_, purest_core::Error>(()) }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod body;
pub mod bridge;
mod codec;
pub mod context;
pub mod correlation;
pub mod envelope;
pub mod error;
pub mod handler;
pub mod hooks;
pub mod host;
pub mod id;
pub mod layer;
pub mod layers;
pub mod memory;
pub mod metrics;
pub mod name;
mod places;
pub mod presence;
pub mod readiness;
mod recent;
pub mod reference;
pub mod replies;
pub mod route;
mod runtime;
pub mod service;
pub mod testing;
pub mod topic;
pub mod trace_context;
pub mod validation;

pub use body::Body;
pub use bridge::{Bridge, DeadLetter, EventFilter, Retry};
pub use context::{Call, Client, Context, IntoTarget, Invoke, MessageInfo};
pub use envelope::{Address, Envelope, Message};
pub use error::{BuildError, Error, HandledError, Result};
pub use handler::{FromInvocation, Invocation, Params, Payload, Principal, State};
pub use hooks::GuardInput;
pub use host::{Host, RunningApp};
pub use id::Id;
pub use layer::Layer;
pub use memory::MemoryBridge;
pub use name::Name;
pub use reference::{CommandRef, EventRef, IntoEvent, PayloadFor, TargetParams, TargetTypes};
pub use route::{HttpRoute, Method, WebsocketEvent};
pub use service::{Command, Links, Service, Subscription};

/// Re-exported so derives and helpers resolve without extra dependencies.
pub use {garde, schemars, serde, serde_json};

/// Everything a service author needs: `use purest_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Address, Body, Client, Command, CommandRef, Context, DeadLetter, Error, EventRef, GuardInput, HandledError, Host, Id, Invoke,
        MemoryBridge, MessageInfo, Method, Name, Params, Payload, Principal, Retry, Service, State, Subscription,
    };
    pub use garde::Validate;
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}
