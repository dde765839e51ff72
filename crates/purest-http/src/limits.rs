//! Request rate limits per client, on every route and on single routes: a token bucket per client
//! address (tower_governor), answering 429 with `Retry-After` and a problem body when a client has
//! used its requests. Buckets of clients not seen for a while are dropped once a minute, so the
//! table holds only recently active clients.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use governor::middleware::NoOpMiddleware;
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor, PeerIpKeyExtractor, SmartIpKeyExtractor};

use crate::problem::Problem;

/// How often buckets of clients that have not been seen lately are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// At most `requests` requests per `per` from one client: a burst of `requests`, refilled evenly.
///
/// ```
/// use purest_http::RateLimit;
/// use std::time::Duration;
/// assert_eq!("100/s".parse::<RateLimit>().unwrap(), RateLimit::per_second(100));
/// assert_eq!("5/min".parse::<RateLimit>().unwrap(), RateLimit::new(5, Duration::from_secs(60)));
/// assert!("5 per day".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed within `per` (also the largest burst).
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// `requests` per `per` (at least one request, and a window of at least a millisecond).
    pub fn new(requests: u32, per: Duration) -> Self {
        Self {
            requests: requests.max(1),
            per: per.max(Duration::from_millis(1)),
        }
    }

    /// `requests` per second.
    pub fn per_second(requests: u32) -> Self {
        Self::new(requests, Duration::from_secs(1))
    }

    /// `requests` per minute.
    pub fn per_minute(requests: u32) -> Self {
        Self::new(requests, Duration::from_secs(60))
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per.as_secs() {
            1 => write!(f, "{}/s", self.requests),
            60 => write!(f, "{}/min", self.requests),
            3600 => write!(f, "{}/h", self.requests),
            _ => write!(f, "{} per {:?}", self.requests, self.per),
        }
    }
}

/// Why a text is not a [`RateLimit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate: write requests per unit, e.g. `100/s`, `30/min`, `1000/h`")]
pub struct RateLimitParseError(pub String);

impl FromStr for RateLimit {
    type Err = RateLimitParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RateLimitParseError(text.to_owned());
        let (count, unit) = text.trim().split_once('/').ok_or_else(error)?;
        let requests: u32 = count.trim().parse().ok().filter(|n| *n > 0).ok_or_else(error)?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(error()),
        };
        Ok(Self::new(requests, per))
    }
}

/// Who a request counts against: the peer's IP address, or — behind a trusted proxy — the client
/// address the proxy reports (`X-Forwarded-For`, `X-Real-IP`, `Forwarded`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddress {
    pub trust_forwarded: bool,
}

impl KeyExtractor for ClientAddress {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        if self.trust_forwarded {
            SmartIpKeyExtractor.extract(request)
        } else {
            PeerIpKeyExtractor.extract(request)
        }
    }
}

/// The middleware enforcing `limit` per client.
pub(crate) fn layer(limit: RateLimit, client: ClientAddress) -> GovernorLayer<ClientAddress, NoOpMiddleware, Body> {
    let config = GovernorConfigBuilder::default()
        .key_extractor(client)
        .period(limit.per / limit.requests)
        .burst_size(limit.requests)
        .finish()
        .expect("a period and burst of at least one");
    let limiter = Arc::downgrade(config.limiter());
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut every = tokio::time::interval(FORGET_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(limiter) = limiter.upgrade() else { return };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        });
    }
    GovernorLayer::new(config).error_handler(move |error| refusal(error, limit))
}

/// 429 with `Retry-After` (whole seconds, at least 1) and a problem naming the limit.
fn refusal(error: GovernorError, limit: RateLimit) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let wait = wait_time.max(1);
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many requests: at most {limit} per client; retry in {wait} s"),
            )
            .header(header::RETRY_AFTER, HeaderValue::from(wait))
            .into_response()
        }
        GovernorError::UnableToExtractKey => {
            tracing::error!(
                "rate limit: the request has no client address; serve the router with into_make_service_with_connect_info::<SocketAddr>()"
            );
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        GovernorError::Other { code, msg, .. } => Problem::new(code, msg.unwrap_or_else(|| "request refused".to_owned())).into_response(),
    }
}
