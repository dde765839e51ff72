//! The HTTP gateway of purest, on axum: commands marked `.http(method, path)` are served at
//! `METHOD /api/v{serviceVersion}/{path}`, described by OpenAPI 3.1 at `/api/openapi.json`, with
//! `/healthz`, `/readyz`, bearer-JWT or API-key authentication, RFC 9457 problem responses, and a
//! WebSocket gateway at `/ws` taking `{event, data, params?, id?}` frames (commands and event
//! subscriptions; see the `Gateway` docs).
//!
//! ```
//! use purest_core::prelude::*;
//! use purest_http::{ApiKeyAuthenticator, Gateway, Identity};
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
//! let app = Host::new()
//!     .service(Service::new("greeter", "1").command(Command::new("greet", greet).http(Method::POST, "greetings")))
//!     .start()
//!     .await
//!     .expect("the service starts");
//! let gateway = Gateway::new(&app).authenticator(ApiKeyAuthenticator::new().key("k-1", Identity::new("ann")));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(gateway.serve(listener, async { stopped.await.ok(); }));
//!
//! // POST /api/v1/greetings {"name": "ann"} with the API key → 200 "hello ann"
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! # let mut tcp = tokio::net::TcpStream::connect(address).await?;
//! # let body = r#"{"name":"ann"}"#;
//! # tcp.write_all(format!("POST /api/v1/greetings HTTP/1.1\r\nhost: x\r\nx-api-key: k-1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes()).await?;
//! # let mut response = String::new();
//! # tcp.read_to_string(&mut response).await?;
//! # assert!(response.starts_with("HTTP/1.1 200"), "{response}");
//! # assert!(response.ends_with("\"hello ann\""), "{response}");
//! stop.send(()).ok();
//! server.await.unwrap()?;
//! app.shutdown().await;
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod auth;
pub mod config;
mod gateway;
mod jwks;
mod limits;
mod metrics;
pub mod openapi;
mod problem;
mod rest;
mod schema_util;
mod ws;

pub use auth::{ApiKeyAuthenticator, AuthError, Authenticator, Identity, JwtAuthenticator};
/// The axum version the gateway is built on, to merge its router into an app of your own.
pub use axum;
pub use gateway::{DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT, Gateway, GatewayError};
pub use limits::{RateLimit, RateLimitParseError};
pub use metrics::{RenderMetrics, serve_metrics};
pub use problem::{PROBLEM_JSON, Problem};
pub use rest::TRACE_ID;
pub use tower_http::cors::CorsLayer;
