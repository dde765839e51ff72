//! RFC 9457 problem details: how every error leaves the gateway.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use purest_core::{HandledError, Id};
use serde_json::{Value, json};

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response: `{type, title, status, detail, traceId?, violations?, data?}` as
/// `application/problem+json`. `violations` lists each failing path of a validation error; `data`
/// is what a handler attached with [`HandledError::with_data`] (RFC 9457 extension members).
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    trace_id: Option<Id>,
    violations: Option<Value>,
    data: Option<Value>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with this status and a message for the caller.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            trace_id: None,
            violations: None,
            data: None,
            headers: Vec::new(),
        }
    }

    /// Adds a response header (`WWW-Authenticate`, `Allow`).
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Names the trace the problem belongs to (kept if it has one already).
    pub fn with_trace(mut self, trace_id: Id) -> Self {
        self.trace_id.get_or_insert(trace_id);
        self
    }

    /// Adds data for the caller, shown under `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body, as JSON.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(trace_id) = &self.trace_id {
            body["traceId"] = json!(trace_id);
        }
        if let Some(violations) = &self.violations {
            body["violations"] = violations.clone();
        }
        if let Some(data) = &self.data {
            body["data"] = data.clone();
        }
        body
    }
}

impl From<HandledError> for Problem {
    /// A handler's error: its status and message; validation failures list each failing path.
    /// A status outside 400–599 (a handler's mistake) becomes a 500 with a generic message.
    fn from(error: HandledError) -> Self {
        let status = StatusCode::from_u16(error.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error());
        let Some(status) = status else {
            tracing::error!(status = error.status, message = %error.message, "a handler answered with a status that is not an error");
            return Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        };
        // Validation errors carry `{violations}` and show them as such; any other data is the
        // handler's, for the caller, under `data`.
        let (violations, data) = match error.data {
            Some(Value::Object(mut fields)) if fields.len() == 1 && fields.contains_key("violations") => {
                (fields.remove("violations"), None)
            }
            data => (None, data),
        };
        Self {
            status,
            detail: error.message,
            trace_id: error.trace_id,
            violations,
            data,
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// The JSON Schema of a problem body, for the API description.
pub fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "traceId": {"type": "string", "minLength": 1, "maxLength": 128},
            "violations": {
                "type": "array",
                "description": "each failing path of a validation error",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}}
                }
            },
            "data": {"description": "details the command attached to its error (HandledError::with_data)"}
        }
    })
}
