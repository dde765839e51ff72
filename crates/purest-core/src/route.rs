//! How a service is exposed to HTTP and WebSocket clients: plain metadata the gateway
//! (`purest-http`) reads. It lives here so a service definition carries it without the core
//! depending on an HTTP crate.

use std::fmt;

/// An HTTP method a command can be served on.
///
/// ```
/// use purest_core::prelude::*;
/// async fn get_user(Params(p): Params<serde_json::Value>) -> Result<String, HandledError> { Ok(p.to_string()) }
/// let command = Command::new("getUser", get_user).http(Method::GET, "users/{id}");
/// let route = command.get_http().unwrap();
/// assert_eq!((route.method, route.path.as_str()), (Method::GET, "users/{id}"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(MethodKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MethodKind {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// `GET`: parameters only, no body.
    pub const GET: Method = Method(MethodKind::Get);
    /// `POST`.
    pub const POST: Method = Method(MethodKind::Post);
    /// `PUT`.
    pub const PUT: Method = Method(MethodKind::Put);
    /// `PATCH`.
    pub const PATCH: Method = Method(MethodKind::Patch);
    /// `DELETE`: parameters only, no body.
    pub const DELETE: Method = Method(MethodKind::Delete);

    /// The method's name, upper case.
    pub fn as_str(&self) -> &'static str {
        match self.0 {
            MethodKind::Get => "GET",
            MethodKind::Post => "POST",
            MethodKind::Put => "PUT",
            MethodKind::Patch => "PATCH",
            MethodKind::Delete => "DELETE",
        }
    }

    /// Whether requests of this method carry the command's payload as a JSON body.
    pub fn has_body(&self) -> bool {
        matches!(self.0, MethodKind::Post | MethodKind::Put | MethodKind::Patch)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a command is served over HTTP: `METHOD /api/v{serviceVersion}/{path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// The method.
    pub method: Method,
    /// The path below `/api/v{version}/`, with `{name}` segments for path parameters.
    pub path: String,
    /// Whether callers need no credentials.
    pub public: bool,
    /// Error statuses the command answers with on purpose (beyond validation and auth), with
    /// what each means, for the API description.
    pub errors: Vec<(u16, String)>,
}

impl HttpRoute {
    /// The names of the `{name}` path parameters, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

/// An event WebSocket clients of the gateway may subscribe to, declared with
/// [`Service::websocket_event`](crate::Service::websocket_event) or
/// [`Service::public_websocket_event`](crate::Service::public_websocket_event). Events not
/// declared are never pushed, whatever a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebsocketEvent {
    /// The event name (`eventName`).
    pub event_name: crate::Name,
    /// Whether clients without credentials may subscribe. Either way an event carrying a
    /// principal or tenant reaches only clients of that principal and tenant.
    pub public: bool,
}
