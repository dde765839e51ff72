//! The `[http]` section of `purest.toml` and its `PUREST_HTTP*` variables (the variables win;
//! the `purest` facade merges both and hands this crate its section): whether and where the
//! gateway listens, and which credentials it accepts.
//!
//! ```toml
//! [http]
//! address = "127.0.0.1:8080"   # PUREST_HTTP; "off" turns the gateway off
//! timeout_ms = 5000            # PUREST_HTTP_TIMEOUT_MS
//! api_keys = "ops=key-1"       # PUREST_HTTP_API_KEYS
//! rate_limit = "100/s"         # PUREST_HTTP_RATE_LIMIT; also route_rate_limits, trust_forwarded
//! cors_origins = "https://app.example"  # PUREST_HTTP_CORS_ORIGINS; also cors_methods, cors_headers
//! jwt_secret = "…"             # PUREST_HTTP_JWT_SECRET; or jwt_public_key, or jwks_url
//! jwt_issuer = "https://id.example"  # PUREST_HTTP_JWT_ISSUER; also jwt_audience
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `PUREST_HTTP` | `host:port` to listen on, or `off`; default `127.0.0.1:8080` when a command has an HTTP route |
//! | `PUREST_HTTP_JWT_SECRET` | accept bearer JWTs signed HS256 with this secret |
//! | `PUREST_HTTP_JWT_PUBLIC_KEY` | accept bearer JWTs signed RS256 or ES256: path of the PEM public key (RSA or P-256) |
//! | `PUREST_HTTP_JWKS_URL` | accept bearer JWTs signed RS256 or ES256 with the keys published at this URL (an identity provider's JWKS), picked by `kid` |
//! | `PUREST_HTTP_JWT_ISSUER` / `PUREST_HTTP_JWT_AUDIENCE` | required `iss` / `aud` of those JWTs |
//! | `PUREST_HTTP_API_KEYS` | API keys in `x-api-key`: `principal=key` or `principal@tenant=key`, comma-separated |
//! | `PUREST_HTTP_TIMEOUT_MS` | each request's deadline (default 30 000); past it the caller gets 504 |
//! | `PUREST_HTTP_RATE_LIMIT` | requests per client over all routes, e.g. `100/s`, `600/min`; beyond it 429 with `Retry-After` |
//! | `PUREST_HTTP_ROUTE_RATE_LIMITS` | requests per client to one command's route: `user/1/registerNewUser=5/min`, comma-separated |
//! | `PUREST_HTTP_TRUST_FORWARDED` | `true`: a client is the address a proxy reports in `X-Forwarded-For`/`Forwarded`, not the peer's |
//! | `PUREST_HTTP_CORS_ORIGINS` | origins browsers may call from, comma-separated (`https://app.example`), or `*` |
//! | `PUREST_HTTP_CORS_METHODS` | methods they may use (default `GET,POST,PUT,PATCH,DELETE`) |
//! | `PUREST_HTTP_CORS_HEADERS` | request headers they may send (default `authorization,content-type,x-api-key,x-trace-id,traceparent`) |

use std::net::SocketAddr;

use purest_core::{BuildError, Error, Service};
use serde::{Deserialize, Deserializer};

use crate::{ApiKeyAuthenticator, CorsLayer, Gateway, Identity, JwtAuthenticator, RateLimit, RateLimitParseError};

/// Where the gateway listens when `PUREST_HTTP` is not set.
pub const DEFAULT_HTTP_ADDRESS: &str = "127.0.0.1:8080";

/// The variables of this section and the keys they set (`http.<key>`).
pub const ENV_KEYS: [(&str, &str); 14] = [
    ("PUREST_HTTP", "address"),
    ("PUREST_HTTP_JWT_SECRET", "jwt_secret"),
    ("PUREST_HTTP_JWT_PUBLIC_KEY", "jwt_public_key"),
    ("PUREST_HTTP_JWKS_URL", "jwks_url"),
    ("PUREST_HTTP_JWT_ISSUER", "jwt_issuer"),
    ("PUREST_HTTP_JWT_AUDIENCE", "jwt_audience"),
    ("PUREST_HTTP_API_KEYS", "api_keys"),
    ("PUREST_HTTP_TIMEOUT_MS", "timeout_ms"),
    ("PUREST_HTTP_RATE_LIMIT", "rate_limit"),
    ("PUREST_HTTP_ROUTE_RATE_LIMITS", "route_rate_limits"),
    ("PUREST_HTTP_TRUST_FORWARDED", "trust_forwarded"),
    ("PUREST_HTTP_CORS_ORIGINS", "cors_origins"),
    ("PUREST_HTTP_CORS_METHODS", "cors_methods"),
    ("PUREST_HTTP_CORS_HEADERS", "cors_headers"),
];

/// `[http]` as written in `purest.toml` (or set by its variables).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Listen address, or `off`.
    #[serde(default, deserialize_with = "text")]
    pub address: Option<String>,
    /// HS256 secret.
    #[serde(default, deserialize_with = "text")]
    pub jwt_secret: Option<String>,
    /// RS256 or ES256 public key file.
    #[serde(default, deserialize_with = "text")]
    pub jwt_public_key: Option<String>,
    /// JWKS URL of an identity provider.
    #[serde(default, deserialize_with = "text")]
    pub jwks_url: Option<String>,
    /// Required `iss`.
    #[serde(default, deserialize_with = "text")]
    pub jwt_issuer: Option<String>,
    /// Required `aud`.
    #[serde(default, deserialize_with = "text")]
    pub jwt_audience: Option<String>,
    /// `principal=key` pairs.
    #[serde(default, deserialize_with = "text")]
    pub api_keys: Option<String>,
    /// Deadline of each request's command, in milliseconds (default 30 000).
    pub timeout_ms: Option<u64>,
    /// Requests per client over all routes (`100/s`).
    #[serde(default, deserialize_with = "text")]
    pub rate_limit: Option<String>,
    /// Requests per client to single routes (`user/1/registerNewUser=5/min, …`).
    #[serde(default, deserialize_with = "text")]
    pub route_rate_limits: Option<String>,
    /// Whether the client address comes from a proxy's forwarding headers.
    #[serde(default, deserialize_with = "text")]
    pub trust_forwarded: Option<String>,
    /// CORS origins (comma-separated, or `*`).
    #[serde(default, deserialize_with = "text")]
    pub cors_origins: Option<String>,
    /// CORS methods (comma-separated).
    #[serde(default, deserialize_with = "text")]
    pub cors_methods: Option<String>,
    /// CORS request headers (comma-separated).
    #[serde(default, deserialize_with = "text")]
    pub cors_headers: Option<String>,
}

/// Any scalar as text: values from variables that look like numbers stay the strings they are.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(|scalar| match scalar {
        Scalar::Text(text) => text,
        Scalar::Integer(n) => n.to_string(),
        Scalar::Float(n) => n.to_string(),
        Scalar::Bool(b) => b.to_string(),
    }))
}

impl HttpSection {
    /// A setting by the name of its variable (`PUREST_HTTP_API_KEYS`), as [`HttpSettings::read`]
    /// takes them.
    pub fn lookup(&self, key: &str) -> Option<String> {
        match key {
            "PUREST_HTTP" => self.address.clone(),
            "PUREST_HTTP_JWT_SECRET" => self.jwt_secret.clone(),
            "PUREST_HTTP_JWT_PUBLIC_KEY" => self.jwt_public_key.clone(),
            "PUREST_HTTP_JWKS_URL" => self.jwks_url.clone(),
            "PUREST_HTTP_JWT_ISSUER" => self.jwt_issuer.clone(),
            "PUREST_HTTP_JWT_AUDIENCE" => self.jwt_audience.clone(),
            "PUREST_HTTP_API_KEYS" => self.api_keys.clone(),
            "PUREST_HTTP_TIMEOUT_MS" => self.timeout_ms.map(|ms| ms.to_string()),
            "PUREST_HTTP_RATE_LIMIT" => self.rate_limit.clone(),
            "PUREST_HTTP_ROUTE_RATE_LIMITS" => self.route_rate_limits.clone(),
            "PUREST_HTTP_TRUST_FORWARDED" => self.trust_forwarded.clone(),
            "PUREST_HTTP_CORS_ORIGINS" => self.cors_origins.clone(),
            "PUREST_HTTP_CORS_METHODS" => self.cors_methods.clone(),
            "PUREST_HTTP_CORS_HEADERS" => self.cors_headers.clone(),
            _ => None,
        }
    }
}

/// The gateway settings, checked: where to listen and which authenticators to add.
pub struct HttpSettings {
    /// The listen address.
    pub address: SocketAddr,
    timeout: Option<std::time::Duration>,
    jwt: Option<JwtAuthenticator>,
    api_keys: Option<ApiKeyAuthenticator>,
    rate_limit: Option<RateLimit>,
    route_rate_limits: Vec<(String, RateLimit)>,
    trust_forwarded: bool,
    cors: Option<CorsLayer>,
}

fn invalid(key: &str, problem: impl Into<String>, accepted: &str) -> BuildError {
    BuildError::InvalidSetting {
        key: key.to_owned(),
        problem: problem.into(),
        accepted: accepted.to_owned(),
    }
}

impl HttpSettings {
    /// Checks the section; `None` when the gateway is off (`address = "off"`, or by default when
    /// no command of `services` has an HTTP route).
    pub fn from_section(services: &[Service], section: &HttpSection) -> Result<Option<Self>, BuildError> {
        Self::read(services, &|key| section.lookup(key))
    }

    /// Reads the settings by variable name through `lookup`; `None` when the gateway is off (by
    /// `PUREST_HTTP=off`, or by default when no command has an HTTP route).
    pub fn read(services: &[Service], lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, BuildError> {
        let has_routes = services.iter().flat_map(Service::commands).any(|c| c.get_http().is_some());
        let address = match lookup("PUREST_HTTP").map(|v| v.trim().to_owned()) {
            Some(value) if value.eq_ignore_ascii_case("off") => return Ok(None),
            Some(value) if !value.is_empty() => value,
            _ if has_routes => DEFAULT_HTTP_ADDRESS.to_owned(),
            _ => return Ok(None),
        };
        let address = address.parse().map_err(|_| {
            invalid(
                "PUREST_HTTP",
                format!("{address:?} is not a listen address"),
                "`host:port` with an IP address (e.g. `127.0.0.1:8080`, `0.0.0.0:80`) or `off`",
            )
        })?;
        let mut jwt = jwt_authenticator(lookup)?;
        if let Some(issuer) = lookup("PUREST_HTTP_JWT_ISSUER") {
            jwt = jwt.map(|j| j.issuer(issuer));
        }
        if let Some(audience) = lookup("PUREST_HTTP_JWT_AUDIENCE") {
            jwt = jwt.map(|j| j.audience(audience));
        }
        let api_keys = lookup("PUREST_HTTP_API_KEYS").map(|list| api_keys(&list)).transpose()?;
        let timeout = match lookup("PUREST_HTTP_TIMEOUT_MS") {
            Some(ms) => match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Some(std::time::Duration::from_millis(ms)),
                _ => {
                    return Err(invalid(
                        "PUREST_HTTP_TIMEOUT_MS",
                        format!("{ms:?} is not a positive number"),
                        "milliseconds, e.g. `5000`",
                    ));
                }
            },
            None => None,
        };
        let rate = |key: &str, text: &str| -> Result<RateLimit, BuildError> {
            text.parse()
                .map_err(|e: RateLimitParseError| invalid(key, e.to_string(), "requests per unit: `100/s`, `30/min`, `1000/h`"))
        };
        let rate_limit = lookup("PUREST_HTTP_RATE_LIMIT")
            .map(|text| rate("PUREST_HTTP_RATE_LIMIT", &text))
            .transpose()?;
        let mut route_rate_limits = Vec::new();
        for entry in lookup("PUREST_HTTP_ROUTE_RATE_LIMITS")
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            const KEY: &str = "PUREST_HTTP_ROUTE_RATE_LIMITS";
            let Some((command, limit)) = entry.split_once('=') else {
                return Err(invalid(
                    KEY,
                    format!("{entry:?} has no `=`"),
                    "comma-separated `service/version/command=100/s`",
                ));
            };
            route_rate_limits.push((command.trim().to_owned(), rate(KEY, limit)?));
        }
        let trust_forwarded = match lookup("PUREST_HTTP_TRUST_FORWARDED").as_deref().map(str::trim) {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => {
                return Err(invalid(
                    "PUREST_HTTP_TRUST_FORWARDED",
                    format!("{other:?} is not a yes or no"),
                    "`true` or `false`",
                ));
            }
        };
        Ok(Some(Self {
            address,
            timeout,
            jwt,
            api_keys,
            rate_limit,
            route_rate_limits,
            trust_forwarded,
            cors: cors(lookup)?,
        }))
    }

    /// The OpenAPI security schemes of the configured authenticators.
    pub fn security_schemes(&self) -> Vec<(String, serde_json::Value)> {
        use crate::Authenticator;
        let jwt = self.jwt.as_ref().map(|a| a.security_scheme());
        let keys = self.api_keys.as_ref().map(|a| a.security_scheme());
        jwt.into_iter().chain(keys).collect()
    }

    /// Adds the configured authenticators to `gateway`.
    pub fn apply(self, mut gateway: Gateway) -> Gateway {
        if let Some(timeout) = self.timeout {
            gateway = gateway.timeout(timeout);
        }
        if let Some(jwt) = self.jwt {
            gateway = gateway.authenticator(jwt);
        }
        if let Some(keys) = self.api_keys {
            gateway = gateway.authenticator(keys);
        }
        if let Some(limit) = self.rate_limit {
            gateway = gateway.rate_limit(limit);
        }
        for (command, limit) in &self.route_rate_limits {
            gateway = gateway.route_rate_limit(command, *limit);
        }
        if let Some(cors) = self.cors {
            gateway = gateway.cors(cors);
        }
        gateway.trust_forwarded_headers(self.trust_forwarded)
    }
}

/// A gateway serving in the background.
pub struct RunningGateway {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningGateway {
    /// Stops taking connections and waits for requests in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.server.await {
            Ok(Ok(())) => tracing::info!("HTTP gateway stopped"),
            Ok(Err(error)) => tracing::error!(%error, "HTTP gateway failed"),
            Err(error) => tracing::error!(%error, "HTTP gateway task failed"),
        }
    }
}

/// Binds the listen address and serves `gateway` with the configured credentials.
pub async fn serve(settings: HttpSettings, gateway: Gateway) -> Result<RunningGateway, Error> {
    let address = settings.address;
    let gateway = settings.apply(gateway);
    let routes = gateway.routes();
    let with_client_address = gateway.rate_limited();
    let router = gateway
        .router()
        .map_err(|e| Error::msg(format!("the HTTP routes cannot be served: {e}")))?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        Error::msg(format!(
            "cannot listen on {address} ({e}); set PUREST_HTTP to another address, or to `off`"
        ))
    })?;
    // The bound address, also when the port was 0: what scripts and tests read.
    let bound = listener
        .local_addr()
        .map_err(|e| Error::msg(format!("cannot read the listen address: {e}")))?;
    tracing::info!(address = %bound, "HTTP gateway listening on http://{bound} (OpenAPI at /api/openapi.json, WebSocket at /ws, /healthz, /readyz)");
    for route in routes {
        tracing::info!("HTTP route {route}");
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        crate::gateway::serve_router(listener, router, with_client_address, async {
            stopped.await.ok();
        })
        .await
    });
    Ok(RunningGateway { stop, server })
}

/// The CORS rules of `PUREST_HTTP_CORS_*`; `None` (browsers on other origins refused) unless
/// origins are given.
fn cors(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<CorsLayer>, BuildError> {
    use axum::http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::AllowOrigin;
    let Some(origins) = lookup("PUREST_HTTP_CORS_ORIGINS") else {
        return Ok(None);
    };
    let origins = if origins.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(entries(
            lookup,
            "PUREST_HTTP_CORS_ORIGINS",
            "",
            "`scheme://host[:port]` entries, comma-separated, or `*`",
            |origin| {
                let (scheme, host) = origin.split_once("://").unwrap_or_default();
                let well_formed = matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/');
                HeaderValue::from_str(origin).ok().filter(|_| well_formed)
            },
        )?)
    };
    let methods = entries(
        lookup,
        "PUREST_HTTP_CORS_METHODS",
        "GET,POST,PUT,PATCH,DELETE",
        "methods, comma-separated: `GET,POST`",
        |m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok(),
    )?;
    let headers = entries(
        lookup,
        "PUREST_HTTP_CORS_HEADERS",
        "authorization,content-type,x-api-key,x-trace-id,traceparent",
        "header names, comma-separated",
        |h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok(),
    )?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers([
                HeaderName::from_static("x-trace-id"),
                HeaderName::from_static("traceparent"),
                axum::http::header::RETRY_AFTER,
                axum::http::header::WWW_AUTHENTICATE,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// The comma-separated entries of `key` (or of `default`), each read by `parse`; an error names
/// the entry that is not one.
fn entries<T>(
    lookup: &dyn Fn(&str) -> Option<String>,
    key: &str,
    default: &str,
    accepted: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, BuildError> {
    let text = lookup(key).unwrap_or_else(|| default.to_owned());
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| parse(entry).ok_or_else(|| invalid(key, format!("{entry:?} is not accepted"), accepted)))
        .collect()
}

/// The JWT authenticator of `PUREST_HTTP_JWT_SECRET`, `PUREST_HTTP_JWT_PUBLIC_KEY` or
/// `PUREST_HTTP_JWKS_URL` (one of them at most).
fn jwt_authenticator(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<JwtAuthenticator>, BuildError> {
    const ONE_OF: &str = "one of PUREST_HTTP_JWT_SECRET (HS256), PUREST_HTTP_JWT_PUBLIC_KEY (RS256/ES256) and PUREST_HTTP_JWKS_URL";
    let set: Vec<(&str, String)> = ["PUREST_HTTP_JWT_SECRET", "PUREST_HTTP_JWT_PUBLIC_KEY", "PUREST_HTTP_JWKS_URL"]
        .into_iter()
        .filter_map(|key| lookup(key).map(|value| (key, value)))
        .collect();
    let (key, value) = match set.as_slice() {
        [] => return Ok(None),
        [one] => one,
        [first, second, ..] => return Err(invalid(first.0, format!("is set together with {}", second.0), ONE_OF)),
    };
    match *key {
        "PUREST_HTTP_JWT_SECRET" if value.len() < 32 => Err(invalid(
            key,
            format!("is {} bytes long, too short to be safe for HS256", value.len()),
            "a secret of at least 32 bytes",
        )),
        "PUREST_HTTP_JWT_SECRET" => Ok(Some(JwtAuthenticator::hs256(value))),
        "PUREST_HTTP_JWT_PUBLIC_KEY" => {
            const ACCEPTED: &str = "the path of an RSA or P-256 public key in PEM";
            let pem = std::fs::read(value).map_err(|e| invalid(key, format!("cannot read {value:?}: {e}"), ACCEPTED))?;
            JwtAuthenticator::rs256_pem(&pem)
                .or_else(|rsa| JwtAuthenticator::es256_pem(&pem).map_err(|_| rsa))
                .map(Some)
                .map_err(|e| invalid(key, format!("{value:?}: {e}"), ACCEPTED))
        }
        _ => JwtAuthenticator::jwks(value)
            .map(Some)
            .map_err(|e| invalid(key, e.to_string(), "an https:// (or http://) URL of a JWK set")),
    }
}

/// `principal=key` / `principal@tenant=key` pairs. Errors name the entry by position, never the
/// key.
fn api_keys(list: &str) -> Result<ApiKeyAuthenticator, BuildError> {
    const ACCEPTED: &str = "comma-separated `principal=key` or `principal@tenant=key`";
    let mut keys = ApiKeyAuthenticator::new();
    for (n, entry) in list.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let Some((who, key)) = entry.split_once('=') else {
            return Err(invalid("PUREST_HTTP_API_KEYS", format!("entry {} has no `=`", n + 1), ACCEPTED));
        };
        let (principal, tenant) = who.split_once('@').map_or((who, None), |(p, t)| (p, Some(t)));
        if principal.trim().is_empty() || key.trim().is_empty() || tenant.is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid(
                "PUREST_HTTP_API_KEYS",
                format!("entry {} has an empty part", n + 1),
                ACCEPTED,
            ));
        }
        let identity = Identity::new(principal.trim());
        let identity = match tenant {
            Some(tenant) => identity.with_tenant(tenant.trim()),
            None => identity,
        };
        keys = keys.key(key.trim(), identity);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use purest_core::prelude::*;

    async fn ping() -> Result<String, HandledError> {
        Ok("pong".into())
    }

    fn services(with_route: bool) -> Vec<Service> {
        let command = Command::new("ping", ping);
        let command = if with_route { command.http(Method::GET, "ping") } else { command };
        vec![Service::new("health", "1").command(command)]
    }

    fn read(with_route: bool, vars: &[(&str, &str)]) -> Result<Option<HttpSettings>, BuildError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        HttpSettings::read(&services(with_route), &|key| {
            vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn on_by_default_only_with_routes_and_off_when_asked() {
        assert_eq!(read(true, &[]).unwrap().unwrap().address.to_string(), DEFAULT_HTTP_ADDRESS);
        assert!(read(false, &[]).unwrap().is_none());
        assert!(read(true, &[("PUREST_HTTP", "off")]).unwrap().is_none());
        assert_eq!(
            read(false, &[("PUREST_HTTP", "0.0.0.0:9000")])
                .unwrap()
                .unwrap()
                .address
                .to_string(),
            "0.0.0.0:9000"
        );
    }

    #[test]
    fn bad_values_name_the_setting_and_never_echo_secrets() {
        let err = read(true, &[("PUREST_HTTP", "localhost:http")]).err().unwrap().to_string();
        assert!(err.starts_with("PUREST_HTTP: \"localhost:http\" is not a listen address"), "{err}");
        let err = read(true, &[("PUREST_HTTP_JWT_SECRET", "short-secret")]).err().unwrap().to_string();
        assert!(err.contains("PUREST_HTTP_JWT_SECRET") && !err.contains("short-secret"), "{err}");
        let err = read(true, &[("PUREST_HTTP_API_KEYS", "ann=k1,bob-without-key")])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("entry 2 has no `=`") && !err.contains("k1"), "{err}");
        let err = read(true, &[("PUREST_HTTP_JWT_PUBLIC_KEY", "/nonexistent.pem")])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("PUREST_HTTP_JWT_PUBLIC_KEY") && err.contains("/nonexistent.pem"),
            "{err}"
        );
    }

    #[test]
    fn one_jwt_key_source_rsa_or_ec_pems_and_jwks_urls() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
        for file in ["test-only-rsa.pub.pem", "test-only-ec.pub.pem"] {
            let path = format!("{keys}/{file}");
            assert!(read(true, &[("PUREST_HTTP_JWT_PUBLIC_KEY", &path)]).is_ok(), "{file}");
        }
        let private = format!("{keys}/test-only-ec.pem");
        let err = read(true, &[("PUREST_HTTP_JWT_PUBLIC_KEY", &private)]).err().unwrap().to_string();
        assert!(err.contains("private key"), "{err}");
        assert!(read(true, &[("PUREST_HTTP_JWKS_URL", "https://id.example/.well-known/jwks.json")]).is_ok());
        let err = read(true, &[("PUREST_HTTP_JWKS_URL", "ftp://id.example/jwks")])
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("PUREST_HTTP_JWKS_URL: "), "{err}");
        let err = read(
            true,
            &[
                ("PUREST_HTTP_JWT_SECRET", &"s".repeat(32)),
                ("PUREST_HTTP_JWKS_URL", "https://id.example/jwks"),
            ],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("is set together with PUREST_HTTP_JWKS_URL") && !err.contains("sss"),
            "{err}"
        );
    }

    #[test]
    fn api_keys_with_and_without_tenant() {
        assert!(api_keys("ann=k1, bob@acme=k2").is_ok());
        assert!(api_keys("@acme=k2").is_err());
        assert!(api_keys("bob@=k2").is_err());
    }
}
