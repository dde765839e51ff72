//! REST routes from command metadata: one axum route per command marked `.http(method, path)`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::{Path, Query, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use purest_core::{Address, Body, HandledError, HttpRoute, Id, Method, Service};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::gateway::Shared;
use crate::problem::Problem;
use crate::schema_util::resolve;

/// Header carrying the trace id, read and returned.
pub const TRACE_ID: &str = "x-trace-id";
const TRACE_ID_HEADER: HeaderName = HeaderName::from_static(TRACE_ID);
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// One command served over HTTP.
pub(crate) struct Endpoint {
    pub receiver: Arc<Address>,
    pub route: HttpRoute,
    /// The HTTP path (`/api/v1/users/{id}`).
    pub http_path: String,
    /// JSON type of each parameter the params schema names, to read query and path strings as.
    param_types: BTreeMap<String, ParamType>,
    pub takes_payload: bool,
    output_is_unit: bool,
    /// Whether the path has `{parameters}`.
    has_path_params: bool,
}

/// How a parameter given as text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamType {
    Text,
    Integer,
    Number,
    Boolean,
    List,
}

impl Endpoint {
    /// The endpoints of every HTTP command of `services`.
    pub fn all(services: &[Service]) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        for service in services {
            for command in service.commands() {
                let Some(route) = command.get_http() else { continue };
                let signature = command.signature();
                let http_path = format!("/api/v{}/{}", service.version(), route.path);
                endpoints.push(Endpoint {
                    receiver: Arc::new(Address::new(service.name(), service.version(), command.name())),
                    // axum's syntax: `{name}`, `{*rest}`.
                    has_path_params: http_path.contains('{'),
                    http_path,
                    param_types: signature.params.as_ref().map(|p| param_types(&p.json)).unwrap_or_default(),
                    takes_payload: signature.payload.is_some(),
                    output_is_unit: signature.output_is_unit,
                    route: route.clone(),
                });
            }
        }
        endpoints
    }
}

/// The top-level properties of a parameters schema, with the type their text is read as.
fn param_types(schema: &Value) -> BTreeMap<String, ParamType> {
    let Some(properties) = resolve(schema, schema).get("properties").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let property = resolve(schema, property);
            let types: Vec<&str> = match property.get("type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let kind = if types.contains(&"array") {
                ParamType::List
            } else if types.contains(&"integer") {
                ParamType::Integer
            } else if types.contains(&"number") {
                ParamType::Number
            } else if types.contains(&"boolean") {
                ParamType::Boolean
            } else {
                ParamType::Text
            };
            (name.clone(), kind)
        })
        .collect()
}

/// Reads a parameter's text as its declared type; text that does not parse stays text, so the
/// schema check names the parameter and what it expected.
fn typed_param(kind: ParamType, text: String) -> Value {
    let parsed = match kind {
        ParamType::Integer => text.parse::<i64>().ok().map(Value::from),
        ParamType::Number => text
            .parse::<f64>()
            .ok()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
        ParamType::Boolean => text.parse::<bool>().ok().map(Value::Bool),
        ParamType::Text | ParamType::List => None,
    };
    parsed.unwrap_or(Value::String(text))
}

/// Handles one request to `endpoint`: credentials, parameters, body, the invoke, the answer.
pub(crate) async fn handle(shared: Arc<Shared>, endpoint: Arc<Endpoint>, request: Request) -> Response {
    if let Some(propagation) = purest_core::trace_context::propagation() {
        return handle_traced(propagation, shared, endpoint, request).await;
    }
    let trace_id = trace_id_of(request.headers());
    let mut response = answer(&shared, &endpoint, request, trace_id.clone()).await;
    let headers = response.headers_mut();
    // Written into buffers on the stack, not through `format!`: every response carries both.
    match trace_id.hex_digits() {
        // A W3C trace id is 32 hex digits; a caller's trace id in another form is only echoed.
        Some(trace) => {
            let span = Id::from_u128(u128::from(new_span_id())).hex_digits().unwrap_or([b'0'; 32]);
            let mut traceparent = [0u8; 55];
            traceparent[..3].copy_from_slice(b"00-");
            traceparent[3..35].copy_from_slice(&trace);
            traceparent[35] = b'-';
            traceparent[36..52].copy_from_slice(&span[16..]);
            traceparent[52..].copy_from_slice(b"-01");
            if let Ok(value) = HeaderValue::from_bytes(&traceparent) {
                headers.insert(TRACEPARENT, value);
            }
            if let Ok(value) = HeaderValue::from_bytes(&trace) {
                headers.insert(TRACE_ID_HEADER, value);
            }
        }
        None => {
            if let Ok(value) = HeaderValue::from_str(&trace_id.to_string()) {
                headers.insert(TRACE_ID_HEADER, value);
            }
        }
    }
    response
}

/// [`handle`] with telemetry on: a server span for the request, continuing the caller's
/// `traceparent` (a malformed one starts a new trace); the trace id, the response's
/// `traceparent` and every message the request causes are this span's.
async fn handle_traced(
    propagation: &'static dyn purest_core::trace_context::Propagation,
    shared: Arc<Shared>,
    endpoint: Arc<Endpoint>,
    request: Request,
) -> Response {
    let span = tracing::info_span!("http", otel.name = %format_args!("{} {}", request.method(), endpoint.http_path),
        otel.kind = "server", otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(), http.route = %endpoint.http_path, http.response.status_code = tracing::field::Empty);
    let incoming = request.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    propagation.continue_trace(&span, incoming);
    let traceparent = span.in_scope(|| propagation.current_traceparent());
    let caller_id = request
        .headers()
        .get(TRACE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.parse::<Id>().ok());
    let trace_id = match (
        &caller_id,
        traceparent.as_deref().and_then(purest_core::trace_context::TraceParent::parse),
    ) {
        (Some(caller_id), _) => caller_id.clone(),
        (None, Some(traceparent)) => Id::from_u128(traceparent.trace_id),
        (None, None) => trace_id_of(request.headers()),
    };
    let mut response = answer(&shared, &endpoint, request, trace_id.clone()).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let headers = response.headers_mut();
    if let Some(value) = traceparent.and_then(|traceparent| HeaderValue::from_str(&traceparent).ok()) {
        headers.insert(TRACEPARENT, value);
    }
    if let Ok(value) = HeaderValue::from_str(&trace_id.to_string()) {
        headers.insert(TRACE_ID_HEADER, value);
    }
    response
}

async fn answer(shared: &Shared, endpoint: &Endpoint, request: Request, trace_id: Id) -> Response {
    let identity = match shared.authenticate(request.headers(), endpoint.route.public).await {
        Ok(identity) => identity,
        Err(problem) => return problem.with_trace(trace_id).into_response(),
    };
    let (mut parts, body) = request.into_parts();
    let params = match read_params(&mut parts, endpoint).await {
        Ok(params) => params,
        Err(problem) => return problem.with_trace(trace_id).into_response(),
    };
    let payload = if endpoint.route.method.has_body() {
        match read_body(&parts.headers, body, shared.body_limit, shared.timeout).await {
            Ok(payload) => payload,
            Err(problem) => return problem.with_trace(trace_id).into_response(),
        }
    } else {
        null()
    };
    let payload = if endpoint.takes_payload { payload } else { null() };
    let params = if params.is_empty() {
        Body::empty_object()
    } else {
        Body::json(Value::Object(params))
    };
    let result = shared
        .client(identity.as_ref(), trace_id.clone())
        .call(endpoint.receiver.clone())
        .params_body(params)
        .invoke_body(payload)
        .await;
    match result {
        Ok(_) if endpoint.output_is_unit => StatusCode::NO_CONTENT.into_response(),
        // The output is written once, from the handler's value (or the wire's text).
        Ok(output) => match serde_json::to_vec(&output) {
            Ok(json) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                json,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(command = %endpoint.receiver, %error, "the output could not be written as JSON");
                Problem::from(HandledError::generic_internal()).with_trace(trace_id).into_response()
            }
        },
        Err(error) if error.status == 202 => accepted(&error),
        Err(error) => {
            if error.status >= 500 {
                tracing::warn!(command = %endpoint.receiver, status = error.status, message = %error.message, "command failed");
            }
            Problem::from(error).with_trace(trace_id).into_response()
        }
    }
}

/// `202 Accepted`: the request is being worked on; `Location` says where its result will be.
fn accepted(answer: &HandledError) -> Response {
    let location = answer.location().unwrap_or_default();
    let body = serde_json::json!({"status": 202, "detail": answer.message, "location": location});
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Path parameters and the query string as one JSON object; a repeated query key (or one whose
/// parameter is a list) becomes a list.
async fn read_params(parts: &mut axum::http::request::Parts, endpoint: &Endpoint) -> Result<Map<String, Value>, Problem> {
    use axum::extract::FromRequestParts;
    let mut params = Map::new();
    // Most routes have neither: nothing to read, nothing to allocate.
    if !endpoint.has_path_params && parts.uri.query().is_none() {
        return Ok(params);
    }
    let Path(path): Path<Vec<(String, String)>> = Path::from_request_parts(parts, &())
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("invalid path parameter: {}", e.body_text())))?;
    let Query(query): Query<Vec<(String, String)>> = Query::from_request_parts(parts, &())
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("invalid query string: {}", e.body_text())))?;
    let kind_of = |name: &str| endpoint.param_types.get(name).copied().unwrap_or(ParamType::Text);
    for (name, text) in query {
        if path.iter().any(|(path_name, _)| *path_name == name) {
            continue; // the path wins over a query parameter of the same name
        }
        let kind = kind_of(&name);
        let value = typed_param(kind, text);
        match params.get_mut(&name) {
            Some(Value::Array(list)) => list.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
            None if kind == ParamType::List => {
                params.insert(name, Value::Array(vec![value]));
            }
            None => {
                params.insert(name, value);
            }
        }
    }
    for (name, text) in path {
        let value = typed_param(kind_of(&name), text);
        params.insert(name, value);
    }
    Ok(params)
}

/// `null`, the payload of a request without a body (one shared value, not one per request).
fn null() -> Body {
    static NULL: std::sync::LazyLock<Body> = std::sync::LazyLock::new(|| Body::raw(Bytes::from_static(b"null")));
    NULL.clone()
}

/// The JSON body, checked to be JSON and kept as text (the handler's extractor reads it straight
/// into its type): `null` when empty; 415 unless it is declared JSON; 400 naming the problem when
/// it is not JSON; 413 past the size limit; 408 when it does not arrive within the deadline.
async fn read_body(headers: &HeaderMap, body: HttpBody, limit: usize, deadline: Duration) -> Result<Body, Problem> {
    let mut collect = std::pin::pin!(axum::body::to_bytes(body, limit));
    // A small body usually came with the headers: no timer for it. Else the deadline applies.
    let read = match futures::poll!(collect.as_mut()) {
        std::task::Poll::Ready(read) => read,
        std::task::Poll::Pending => tokio::time::timeout(deadline, collect).await.map_err(|_| {
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {deadline:?}"),
            )
        })?,
    };
    let bytes = read.map_err(|error| {
        let too_large = std::error::Error::source(&error).is_some_and(|e| e.is::<http_body_util::LengthLimitError>())
            || error.to_string().contains("length limit");
        if too_large {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than the gateway accepts ({limit} bytes)"),
            )
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "the request body could not be read")
        }
    })?;
    if bytes.is_empty() {
        return Ok(null());
    }
    if !is_json(headers) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON, sent with Content-Type: application/json",
        ));
    }
    match serde_json::from_slice::<&serde_json::value::RawValue>(&bytes) {
        Ok(_) => Ok(Body::raw(bytes)),
        Err(e) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// Whether the content type is `application/json` or a `+json` type (parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().as_bytes();
    let (prefix, suffix) = (b"application/".as_slice(), b"+json".as_slice());
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() >= prefix.len() + suffix.len()
            && essence[..prefix.len()].eq_ignore_ascii_case(prefix)
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

/// The caller's trace id from `x-trace-id` or `traceparent`, else a new one.
fn trace_id_of(headers: &HeaderMap) -> Id {
    let header = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    header(TRACE_ID_HEADER)
        .and_then(|id| id.parse().ok())
        .or_else(|| {
            header(TRACEPARENT)
                .and_then(|tp| tp.split('-').nth(1))
                .and_then(|id| id.parse().ok())
        })
        .unwrap_or_else(Id::random)
}

/// A span id for the returned `traceparent`.
fn new_span_id() -> u64 {
    (Id::random().as_u128().unwrap_or(1) as u64).max(1)
}

/// The method as axum's filter.
pub(crate) fn method_filter(method: Method) -> axum::routing::MethodFilter {
    use axum::routing::MethodFilter;
    match method.as_str() {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::POST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameter_types_come_from_the_schema_and_refs_are_followed() {
        let schema = json!({
            "type": "object",
            "properties": {
                "limit": {"type": "integer"},
                "ratio": {"type": ["number", "null"]},
                "verbose": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "kind": {"$ref": "#/$defs/Kind"},
                "name": {"type": "string"}
            },
            "$defs": {"Kind": {"type": "integer"}}
        });
        let types = param_types(&schema);
        assert_eq!(types["limit"], ParamType::Integer);
        assert_eq!(types["ratio"], ParamType::Number);
        assert_eq!(types["verbose"], ParamType::Boolean);
        assert_eq!(types["tags"], ParamType::List);
        assert_eq!(types["kind"], ParamType::Integer);
        assert_eq!(types["name"], ParamType::Text);
        assert_eq!(typed_param(ParamType::Integer, "12".into()), json!(12));
        assert_eq!(typed_param(ParamType::Integer, "twelve".into()), json!("twelve"));
        assert_eq!(typed_param(ParamType::Boolean, "true".into()), json!(true));
    }

    #[test]
    fn json_content_types() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(with("APPLICATION/Problem+JSON; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("text/x+json"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn trace_ids_are_read_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(trace_id_of(&headers).to_string(), "0af7651916cd43dd8448eb211c80319c");
        headers.insert(TRACE_ID, HeaderValue::from_static("00000000000000000000000000000abc"));
        assert_eq!(trace_id_of(&headers).to_string(), "00000000000000000000000000000abc");
        // PURISTA passes a client's trace id through whatever its form.
        headers.insert(TRACE_ID, HeaderValue::from_static("3f2c5e0a-9b1d-4c8e-a7f6-2d4b8c9e1f03"));
        assert_eq!(trace_id_of(&headers).to_string(), "3f2c5e0a-9b1d-4c8e-a7f6-2d4b8c9e1f03");
        headers.insert(TRACE_ID, HeaderValue::from_static("has space"));
        assert_eq!(trace_id_of(&headers).to_string().len(), 32, "an unusable one is replaced");
    }
}
