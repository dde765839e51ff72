//! The gateway: builds the axum router (REST routes, OpenAPI, health) for a set of services and
//! serves it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use purest_core::readiness::ReadinessCheck;
use purest_core::{Address, Bridge, Client, Id, RunningApp, Service};
use serde_json::{Value, json};
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;

use crate::auth::{Authenticator, Identity};
use crate::limits::{self, ClientAddress, RateLimit};
use crate::metrics::RenderMetrics;
use crate::openapi::{self, ApiInfo};
use crate::problem::Problem;
use crate::rest::{self, Endpoint};
use crate::ws::{self, WsSettings, WsState};

/// Default largest request body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Default deadline of one request's command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A route table that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Two commands claim the same method and path.
    #[error("{method} {path} is claimed by both {first} and {second}; give one of them another path")]
    DuplicateRoute {
        /// The method.
        method: String,
        /// The HTTP path.
        path: String,
        /// One command.
        first: String,
        /// The other.
        second: String,
    },
    /// Two services declare one WebSocket event, one as public and one not.
    #[error(
        "event {event} is declared for WebSocket clients as public by {public} and for signed-in clients only by {protected}; declare it the same way in both"
    )]
    ConflictingWebsocketEvent {
        /// The event name.
        event: String,
        /// The service declaring it public.
        public: String,
        /// The service declaring it for signed-in clients.
        protected: String,
    },
    /// A rate limit names a command the gateway does not serve over HTTP.
    #[error("a route rate limit names {command}, which has no HTTP route; name a command served over HTTP as service/version/command")]
    UnknownRateLimitedRoute {
        /// The command named.
        command: String,
    },
    /// A path the router cannot take.
    #[error("command {command}: path {path:?} is not valid: {reason}")]
    BadPath {
        /// The command.
        command: String,
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub bridge: Arc<dyn Bridge>,
    /// The sender address of the gateway's commands.
    pub sender: Arc<Address>,
    pub timeout: Duration,
    pub body_limit: usize,
    pub authenticators: Vec<Arc<dyn Authenticator>>,
}

impl Shared {
    /// A client sending as the gateway, for `identity`, in trace `trace_id`.
    pub fn client(&self, identity: Option<&Identity>, trace_id: Id) -> Client {
        let mut client = Client::new(self.bridge.clone(), self.sender.clone())
            .with_trace_id(trace_id)
            .with_timeout(self.timeout);
        if let Some(identity) = identity {
            client = client.with_principal(&identity.principal_id);
            if let Some(tenant_id) = &identity.tenant_id {
                client = client.with_tenant(tenant_id);
            }
        }
        client
    }

    /// The caller's identity. Credentials that are present but bad are refused even on a public
    /// command (a caller who sends them expects them to count); missing ones are refused unless the
    /// command is public.
    pub async fn authenticate(&self, headers: &HeaderMap, public: bool) -> Result<Option<Identity>, Problem> {
        for authenticator in &self.authenticators {
            match authenticator.authenticate(headers).await {
                Ok(Some(identity)) => return Ok(Some(identity)),
                Ok(None) => {}
                Err(error) => {
                    // The reason goes to the log; the caller learns only that it was refused.
                    tracing::info!(reason = %error, "credentials refused");
                    return Err(Problem::new(StatusCode::UNAUTHORIZED, "the credentials were refused")
                        .header(header::WWW_AUTHENTICATE, challenge(&authenticator.challenge(Some(&error)))));
                }
            }
        }
        if public {
            return Ok(None);
        }
        let challenges = if self.authenticators.is_empty() {
            "Bearer realm=\"purest\"".to_owned()
        } else {
            self.authenticators.iter().map(|a| a.challenge(None)).collect::<Vec<_>>().join(", ")
        };
        Err(Problem::new(StatusCode::UNAUTHORIZED, "authentication required").header(header::WWW_AUTHENTICATE, challenge(&challenges)))
    }
}

fn challenge(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"purest\""))
}

/// An HTTP gateway for a set of services: REST routes from their commands' `.http(...)`
/// metadata, OpenAPI 3.1 at `/api/openapi.json`, `/healthz` and `/readyz`.
///
/// The gateway reaches the commands through the bridge, so it serves the same routes whether
/// the services run in its process or in others: it needs only their definitions.
pub struct Gateway {
    catalog: Arc<[Service]>,
    bridge: Arc<dyn Bridge>,
    info: ApiInfo,
    timeout: Duration,
    body_limit: usize,
    authenticators: Vec<Arc<dyn Authenticator>>,
    cors: Option<CorsLayer>,
    websocket_buffer: usize,
    websocket_subscriptions: usize,
    rate_limit: Option<RateLimit>,
    route_rate_limits: Vec<(String, RateLimit)>,
    trust_forwarded: bool,
    metrics: Option<(RenderMetrics, String)>,
    readiness: Vec<Arc<dyn ReadinessCheck>>,
}

impl Gateway {
    /// A gateway for every service `app` knows (also those it does not run), over its bridge.
    pub fn new(app: &RunningApp) -> Self {
        Self::from_parts(app.catalog().clone(), app.bridge().clone())
    }

    /// A gateway for `services`, reached over `bridge`.
    pub fn from_parts(services: Arc<[Service]>, bridge: Arc<dyn Bridge>) -> Self {
        Self {
            catalog: services,
            bridge,
            info: ApiInfo::default(),
            timeout: DEFAULT_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
            authenticators: Vec::new(),
            cors: None,
            websocket_buffer: ws::DEFAULT_SEND_BUFFER,
            websocket_subscriptions: ws::DEFAULT_SUBSCRIPTIONS,
            rate_limit: None,
            route_rate_limits: Vec::new(),
            trust_forwarded: false,
            metrics: None,
            readiness: Vec::new(),
        }
    }

    /// Frames that may wait to be written to one WebSocket client (default 256). When they are
    /// full, replies wait and events queue in the backlog shared per event name; a client that
    /// falls more than 1024 events behind is closed with 1008.
    pub fn websocket_buffer(mut self, frames: usize) -> Self {
        self.websocket_buffer = frames.max(1);
        self
    }

    /// Event names one WebSocket connection may subscribe to at once (default 64); a `subscribe`
    /// beyond it is refused with 400.
    pub fn websocket_subscriptions(mut self, events: usize) -> Self {
        self.websocket_subscriptions = events.max(1);
        self
    }

    /// At most `limit` requests per client over all routes (the WebSocket upgrade included;
    /// `/healthz` and `/readyz` excepted); beyond it a client gets 429 with `Retry-After`. A client
    /// is its IP address (see [`Gateway::trust_forwarded_headers`]). Serve the router with
    /// `into_make_service_with_connect_info::<SocketAddr>()` ([`Gateway::serve`] does).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// At most `limit` requests per client to the route of `command` (`service/version/command`),
    /// besides the limit over all routes.
    pub fn route_rate_limit(mut self, command: &str, limit: RateLimit) -> Self {
        self.route_rate_limits.push((command.to_owned(), limit));
        self
    }

    /// Counts requests against the client address a proxy reports (`X-Forwarded-For`,
    /// `X-Real-IP`, `Forwarded`) instead of the peer's. Only behind a proxy that sets them: anyone
    /// else can write these headers.
    pub fn trust_forwarded_headers(mut self, trust: bool) -> Self {
        self.trust_forwarded = trust;
        self
    }

    /// Serves Prometheus text rendered by `render` at `/metrics`, to requests bearing
    /// `Authorization: Bearer <token>` (others get 401). Never rate limited.
    pub fn metrics(mut self, render: RenderMetrics, token: &str) -> Self {
        self.metrics = Some((render, token.to_owned()));
        self
    }

    /// Adds `check` to what `/readyz` reports: the gateway answers 503 while any check (or the
    /// bridge) is not ready.
    pub fn readiness(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.readiness.push(check);
        self
    }

    /// Accepts credentials read by `authenticator` (several may be added; the first that finds
    /// its kind of credentials decides).
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticators.push(Arc::new(authenticator));
        self
    }

    /// The largest request body accepted; larger ones get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The deadline of each request's command; past it the caller gets 504.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Cross-origin rules (none by default: browsers on other origins are refused).
    pub fn cors(mut self, cors: CorsLayer) -> Self {
        self.cors = Some(cors);
        self
    }

    /// The API's title and version in its description.
    pub fn info(mut self, title: &str, version: &str) -> Self {
        self.info = ApiInfo {
            title: title.to_owned(),
            version: version.to_owned(),
        };
        self
    }

    /// The OpenAPI 3.1 description of the routes.
    pub fn openapi(&self) -> Value {
        let schemes: Vec<(String, Value)> = self.authenticators.iter().map(|a| a.security_scheme()).collect();
        openapi::document(&self.catalog, &self.info, &schemes)
    }

    /// Each command route as `METHOD /path → service/version/command`, for the start-up log.
    pub fn routes(&self) -> Vec<String> {
        rest::Endpoint::all(&self.catalog)
            .iter()
            .map(|e| format!("{} {} → {}", e.route.method.as_str(), e.http_path, e.receiver))
            .collect()
    }

    /// The axum router; merge it into a larger app or serve it with [`Gateway::serve`].
    pub fn router(&self) -> Result<Router, GatewayError> {
        if self.authenticators.is_empty()
            && self
                .catalog
                .iter()
                .flat_map(Service::commands)
                .any(|c| c.get_http().is_some_and(|r| !r.public))
        {
            tracing::warn!("no authenticator configured: protected HTTP commands answer 401 to everyone");
        }
        let shared = Arc::new(Shared {
            bridge: self.bridge.clone(),
            sender: Arc::new(Address::new("purest-http", "1", "gateway")),
            timeout: self.timeout,
            body_limit: self.body_limit,
            authenticators: self.authenticators.clone(),
        });
        let mut paths: BTreeMap<String, (MethodRouter, Vec<(String, String)>)> = BTreeMap::new();
        let endpoints: Vec<Arc<Endpoint>> = Endpoint::all(&self.catalog).into_iter().map(Arc::new).collect();
        let client = ClientAddress {
            trust_forwarded: self.trust_forwarded,
        };
        if let Some((command, _)) = self
            .route_rate_limits
            .iter()
            .find(|(command, _)| !endpoints.iter().any(|e| e.receiver.to_string() == *command))
        {
            return Err(GatewayError::UnknownRateLimitedRoute { command: command.clone() });
        }
        for endpoint in &endpoints {
            check_path(endpoint)?;
            let method = endpoint.route.method.as_str().to_owned();
            let command = endpoint.receiver.to_string();
            let (router, claimed) = paths
                .entry(endpoint.http_path.clone())
                .or_insert_with(|| (MethodRouter::new(), Vec::new()));
            if let Some((_, first)) = claimed.iter().find(|(m, _)| *m == method) {
                return Err(GatewayError::DuplicateRoute {
                    method,
                    path: endpoint.http_path.clone(),
                    first: first.clone(),
                    second: command,
                });
            }
            let limit = self.route_rate_limits.iter().find(|(c, _)| *c == command).map(|(_, limit)| *limit);
            claimed.push((method, command));
            let filter = rest::method_filter(endpoint.route.method);
            let (shared, endpoint) = (shared.clone(), endpoint.clone());
            let mut route = MethodRouter::new().on(filter, move |request: Request| {
                rest::handle(shared.clone(), endpoint.clone(), request)
            });
            if let Some(limit) = limit {
                route = route.layer(limits::layer(limit, client));
            }
            *router = std::mem::take(router).merge(route);
        }
        let spec = Arc::new(self.openapi().to_string());
        let mut api = Router::new()
            .route(
                "/api/openapi.json",
                get(move || {
                    let spec = spec.clone();
                    async move { ([(header::CONTENT_TYPE, "application/json")], spec.as_str().to_owned()) }
                }),
            )
            .route(
                "/ws",
                get(ws::upgrade).with_state(Arc::new(WsState::new(
                    shared.clone(),
                    &endpoints,
                    WsSettings {
                        send_buffer: self.websocket_buffer,
                        max_subscriptions: self.websocket_subscriptions,
                        events: self.websocket_events()?,
                    },
                ))),
            );
        for (path, (method_router, _)) in paths {
            api = api.route(&path, method_router.fallback(method_not_allowed));
        }
        api = api.fallback(not_found);
        if let Some(limit) = self.rate_limit {
            api = api.layer(limits::layer(limit, client));
        }
        // Probes are never rate limited: they come often, from one address.
        let mut probes = Router::new()
            .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
            .route("/readyz", {
                let (bridge, checks) = (self.bridge.clone(), Arc::new(self.readiness.clone()));
                get(move || ready(bridge.clone(), checks.clone()))
            });
        if let Some((render, token)) = &self.metrics {
            probes = probes.merge(crate::metrics::protected(render.clone(), token));
        }
        let mut router = probes.merge(api).layer(CompressionLayer::new());
        if let Some(cors) = &self.cors {
            router = router.layer(cors.clone());
        }
        Ok(router)
    }

    /// The events WebSocket clients may subscribe to, and whether each is public.
    fn websocket_events(&self) -> Result<HashMap<String, bool>, GatewayError> {
        let mut events: HashMap<String, (bool, String)> = HashMap::new();
        for service in self.catalog.iter() {
            for event in service.websocket_events() {
                let name = event.event_name.to_string();
                match events.get(&name) {
                    Some((public, other)) if *public != event.public => {
                        let (public, protected) = if event.public {
                            (service.id(), other.clone())
                        } else {
                            (other.clone(), service.id())
                        };
                        return Err(GatewayError::ConflictingWebsocketEvent {
                            event: name,
                            public,
                            protected,
                        });
                    }
                    Some(_) => {}
                    None => {
                        events.insert(name, (event.public, service.id()));
                    }
                }
            }
        }
        Ok(events.into_iter().map(|(name, (public, _))| (name, public)).collect())
    }

    /// Serves on `listener` until `shutdown` resolves; requests in flight are then finished.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let with_client_address = self.rate_limited();
        let router = self.router().map_err(std::io::Error::other)?;
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "HTTP gateway listening");
        }
        serve_router(listener, router, with_client_address, shutdown).await
    }

    /// Whether a rate limit is configured, which needs each request's client address.
    pub(crate) fn rate_limited(&self) -> bool {
        self.rate_limit.is_some() || !self.route_rate_limits.is_empty()
    }
}

/// Serves `router` on `listener` until `shutdown`; with each request's client address
/// (`ConnectInfo`) only when `with_client_address` (rate limits need it; recording it costs every
/// request an extensions map).
pub(crate) async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    with_client_address: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if with_client_address {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
    } else {
        axum::serve(listener, router).with_graceful_shutdown(shutdown).await
    }
}

/// Rejects a path axum would panic on or read differently from the API description.
fn check_path(endpoint: &Endpoint) -> Result<(), GatewayError> {
    let bad = |reason: &str| GatewayError::BadPath {
        command: endpoint.receiver.to_string(),
        path: endpoint.route.path.clone(),
        reason: reason.to_owned(),
    };
    for segment in endpoint.route.path.split('/') {
        if segment.is_empty() {
            return Err(bad("it has an empty segment (`//`)"));
        }
        let braces = segment.matches(['{', '}']).count();
        let whole_param = segment.starts_with('{') && segment.ends_with('}') && braces == 2;
        if braces > 0 && !whole_param {
            return Err(bad("a parameter must be a whole segment, like `users/{id}`"));
        }
        if whole_param && (segment.len() == 2 || segment.starts_with("{*")) {
            return Err(bad("parameters need a name, and wildcards (`{*rest}`) are not supported"));
        }
    }
    Ok(())
}

/// What `/readyz` says: each part (the bridge first, then each check) with its status and
/// details; 200 when all are ready, else 503 naming those that are not.
async fn ready(bridge: Arc<dyn Bridge>, checks: Arc<Vec<Arc<dyn ReadinessCheck>>>) -> Response {
    let mut parts = vec![json!({
        "name": format!("bridge {}", bridge.name()),
        "ready": bridge.is_ready(),
    })];
    let mut not_ready = Vec::new();
    if !bridge.is_ready() {
        not_ready.push(format!("the {} bridge is not connected", bridge.name()));
    }
    let reports = futures::future::join_all(checks.iter().map(|check| check.check())).await;
    for (check, report) in checks.iter().zip(reports) {
        let mut part = json!({"name": check.name(), "ready": report.ready});
        if let Value::Object(details) = report.details {
            part.as_object_mut().expect("an object").extend(details);
        }
        if !report.ready {
            not_ready.push(format!("{}: {}", check.name(), report.reason.as_deref().unwrap_or("not ready")));
        }
        parts.push(part);
    }
    if not_ready.is_empty() {
        axum::Json(json!({"status": "ready", "checks": parts})).into_response()
    } else {
        // The parts travel with the problem, so a dashboard sees what is ready too.
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, not_ready.join("; "))
            .with_data(json!({"checks": parts}))
            .into_response()
    }
}

async fn not_found(request: Request) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

/// 405 for a known path with another method; axum adds the `Allow` header.
async fn method_not_allowed(request: Request) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not served on {}", request.method(), request.uri().path()),
    )
    .into_response()
}
