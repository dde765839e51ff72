//! Errors: [`HandledError`] is what a caller may see; [`Error`] is what a handler may return.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::Id;

/// An error a handler chose to report to its caller: an HTTP-like status, a message and optional
/// data. It crosses the bridge unchanged (PURISTA's `commandErrorResponse` payload).
///
/// ```
/// use purest_core::HandledError;
/// let err = HandledError::conflict("email already registered")
///     .with_data(serde_json::json!({ "field": "email" }));
/// assert_eq!(err.status, 409);
/// assert_eq!(err.to_string(), "409 Conflict: email already registered");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandledError {
    /// HTTP-like status code (400–599).
    pub status: u16,
    /// A message meant for the caller.
    pub message: String,
    /// Structured details, e.g. the failing paths of a validation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The trace id of the call that failed, for finding its logs.
    #[serde(rename = "traceId", default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Id>,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $status:literal;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new($status, message)
            }
        )*
    };
}

impl HandledError {
    /// An error with any status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            data: None,
            trace_id: None,
        }
    }

    constructors! {
        /// 400: the input is malformed or fails its schema.
        bad_request => 400;
        /// 401: the caller is not authenticated.
        unauthorized => 401;
        /// 403: the caller may not do this.
        forbidden => 403;
        /// 404: the thing asked for does not exist.
        not_found => 404;
        /// 409: the request conflicts with the current state.
        conflict => 409;
        /// 422: well-formed, but semantically unacceptable.
        unprocessable => 422;
        /// 429: too many requests; retry later.
        too_many_requests => 429;
        /// 500: something went wrong inside; the message must stay generic.
        internal => 500;
        /// 503: nobody can handle this right now (no instance serves the command, or shutting down).
        unavailable => 503;
        /// 504: the deadline passed before an answer came.
        timeout => 504;
    }

    /// 202: not an error but a promise: the request was taken and is being worked on, and its
    /// result will be at `location` (a path the caller can read later). A resolver answers it
    /// when the result is not readable by its deadline; the HTTP gateway sends it as
    /// `202 Accepted` with a `Location` header, the WebSocket gateway as an `<event>.accepted`
    /// frame.
    ///
    /// ```
    /// use purest_core::HandledError;
    /// let later = HandledError::accepted("/api/v1/customers/ann@example.com");
    /// assert_eq!(later.status, 202);
    /// assert_eq!(later.location(), Some("/api/v1/customers/ann@example.com"));
    /// ```
    pub fn accepted(location: impl Into<String>) -> Self {
        let location = location.into();
        Self::new(
            202,
            format!("accepted: the request is being worked on; its result will be at {location}"),
        )
        .with_data(serde_json::json!({ "location": location }))
    }

    /// Where the result of an [accepted](HandledError::accepted) request will be.
    pub fn location(&self) -> Option<&str> {
        match self.status {
            202 => self.data.as_ref()?.get("location")?.as_str(),
            _ => None,
        }
    }

    /// Attaches structured data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Attaches the trace id of the failing call.
    pub fn with_trace_id(mut self, trace_id: Option<Id>) -> Self {
        self.trace_id = trace_id;
        self
    }

    /// The generic 500 a caller sees for any unhandled error or panic.
    pub fn generic_internal() -> Self {
        Self::internal("internal server error")
    }

    fn reason(&self) -> &'static str {
        match self.status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            409 => "Conflict",
            413 => "Payload Too Large",
            422 => "Unprocessable Entity",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            status if status < 500 => "Client Error",
            _ => "Server Error",
        }
    }
}

impl fmt::Display for HandledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.reason(), self.message)
    }
}

impl std::error::Error for HandledError {}

/// What a handler may fail with: a [`HandledError`] meant for the caller, or any other error,
/// which the caller sees only as a generic 500 (the detail is logged with the trace id).
///
/// Every `std::error::Error` converts into it, so `?` works on any fallible call:
///
/// ```
/// use purest_core::{Error, HandledError};
/// fn parse(text: &str) -> Result<u32, Error> {
///     if text.is_empty() {
///         return Err(HandledError::bad_request("empty").into());
///     }
///     Ok(text.parse::<u32>()?) // a ParseIntError becomes an unhandled (500) error
/// }
/// assert_eq!(parse("").unwrap_err().as_handled().unwrap().status, 400);
/// assert!(parse("x").unwrap_err().as_handled().is_none());
/// ```
pub struct Error(Repr);

enum Repr {
    Handled(HandledError),
    Unhandled(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// An unhandled error with a message (the caller sees a generic 500).
    pub fn msg(message: impl fmt::Display) -> Self {
        Error(Repr::Unhandled(message.to_string().into()))
    }

    /// The handled error, if this is one.
    pub fn as_handled(&self) -> Option<&HandledError> {
        match &self.0 {
            Repr::Handled(handled) => Some(handled),
            Repr::Unhandled(_) => None,
        }
    }

    /// What the caller sees: the handled error itself, or a generic 500.
    pub fn into_handled(self) -> HandledError {
        match self.0 {
            Repr::Handled(handled) => handled,
            Repr::Unhandled(_) => HandledError::generic_internal(),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
        match boxed.downcast::<HandledError>() {
            Ok(handled) => Error(Repr::Handled(*handled)),
            Err(other) => Error(Repr::Unhandled(other)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Handled(handled) => handled.fmt(f),
            Repr::Unhandled(other) => other.fmt(f),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Handled(handled) => handled.fmt(f),
            Repr::Unhandled(other) => fmt::Debug::fmt(other, f),
        }
    }
}

/// `Result` with purest's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A mistake in how services were put together, found when they are built or started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Two commands of one service share a name.
    #[error("service {service} defines command `{command}` twice: by `{first}` and by `{second}`; rename one of them")]
    DuplicateCommand {
        /// `name/version` of the service.
        service: String,
        /// The duplicated command name.
        command: String,
        /// The first handler's Rust name.
        first: String,
        /// The second handler's Rust name.
        second: String,
    },
    /// Two subscriptions of one service share a name.
    #[error("service {service} defines subscription `{subscription}` twice: by `{first}` and by `{second}`; rename one of them")]
    DuplicateSubscription {
        /// `name/version` of the service.
        service: String,
        /// The duplicated subscription name.
        subscription: String,
        /// The first handler's Rust name.
        first: String,
        /// The second handler's Rust name.
        second: String,
    },
    /// Two services of one app share name and version.
    #[error("service {0} is registered twice; register each service once (run more instances instead)")]
    DuplicateService(String),
    /// A name that cannot address anything.
    #[error("{what} name {name:?} is invalid: {why}")]
    InvalidName {
        /// What is named (service, command, …).
        what: &'static str,
        /// The offending name.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A subscription without any filter would receive every message.
    #[error("subscription `{0}` matches nothing specific; give it .on_event(..) or another filter")]
    UnfilteredSubscription(String),
    /// `.retry(..)` on a subscription that is not durable: best-effort messages are never retried.
    #[error(
        "subscription `{subscription}` of service {service} sets .retry(..) but is best effort, so it would never retry; add .durable() (or `durable = true` in its configuration), or remove the retry"
    )]
    RetryWithoutDurable {
        /// `name/version` of the service.
        service: String,
        /// The subscription.
        subscription: String,
    },
    /// A subscription returns a value but declares no event to emit it under.
    #[error("subscription `{subscription}` returns `{output}` but declares no event for it; add .emits(\"eventName\") or return ()")]
    OutputWithoutEvent {
        /// The subscription.
        subscription: String,
        /// The Rust output type.
        output: String,
    },
    /// A JSON schema that could not be compiled.
    #[error("schema of {what} does not compile: {reason}")]
    Schema {
        /// Which schema.
        what: String,
        /// The compiler's message.
        reason: String,
    },
    /// `PUREST_SERVICES` (or a topology) names a service that is not registered.
    #[error("unknown service {name:?} in {source_name}; registered services: {known}")]
    UnknownService {
        /// The unknown name.
        name: String,
        /// Where it came from (e.g. `PUREST_SERVICES`).
        source_name: String,
        /// Comma-separated registered services.
        known: String,
    },
    /// Configuration names a subscription a service does not have.
    #[error("service {service} has no subscription {name:?}; its subscriptions: {known}")]
    UnknownSubscription {
        /// `name/version` of the service.
        service: String,
        /// The unknown name.
        name: String,
        /// Its subscriptions, comma-separated.
        known: String,
    },
    /// An address or event name given to a builder (`.invokes(..)`, `.on_event(..)`,
    /// `.success_event(..)`, a [`CommandRef`](crate::CommandRef) registered in another service,
    /// …) that cannot work.
    #[error("{item}: {problem}; {fix}")]
    InvalidReference {
        /// Where it was given: the command or subscription, its service and the builder call.
        item: String,
        /// What is wrong with it.
        problem: String,
        /// What to write instead.
        fix: String,
    },
    /// A bridge URL this build cannot use.
    #[error("PUREST_BRIDGE={0:?} is not supported; accepted: `memory` (the default){1}")]
    UnsupportedBridge(String, String),
    /// A configuration value that cannot be used.
    #[error("{key}: {problem}; accepted: {accepted}")]
    InvalidSetting {
        /// The setting (an environment variable).
        key: String,
        /// What is wrong with the value (never the value itself when it is a secret).
        problem: String,
        /// What the setting accepts.
        accepted: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_error_survives_conversion() {
        let err: Error = HandledError::forbidden("nope").into();
        assert_eq!(err.into_handled(), HandledError::forbidden("nope"));
    }

    #[test]
    fn other_errors_become_generic_500() {
        let err: Error = std::io::Error::other("disk on fire at /var/secret").into();
        let seen = err.into_handled();
        assert_eq!(seen.status, 500);
        assert!(!seen.message.contains("disk"), "internal detail leaked: {seen}");
    }

    #[test]
    fn wire_form_matches_purista() {
        let err = HandledError::conflict("name already taken")
            .with_data(serde_json::json!({"name": "taken"}))
            .with_trace_id(Some("0e8cc5894a12c924ea66a95db1c1a223".parse().unwrap()));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            serde_json::json!({"status":409,"message":"name already taken","data":{"name":"taken"},"traceId":"0e8cc5894a12c924ea66a95db1c1a223"})
        );
    }
}
