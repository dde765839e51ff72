//! Connection settings: server URLs, credentials, TLS and the connection name, from a
//! `nats://` URL and the `[nats]` section of `purest.toml` or its `PUREST_NATS_*` variables (the
//! variables win; the `purest` facade merges both and hands this crate its section).
//!
//! ```toml
//! bridge = "nats://127.0.0.1:4222,127.0.0.1:4223"
//!
//! [nats]
//! name = "billing"            # PUREST_NATS_NAME: the connection's name on the server
//! user = "billing"            # PUREST_NATS_USER (+ PUREST_NATS_PASSWORD); or token, creds
//! password = "…"
//! tls = true                  # PUREST_NATS_TLS; tls_ca = "ca.pem" (PUREST_NATS_TLS_CA)
//! ack_wait_ms = 30000         # PUREST_NATS_ACK_WAIT_MS
//! connect_timeout_ms = 30000  # PUREST_NATS_CONNECT_TIMEOUT_MS
//! stream_replicas = 3         # PUREST_NATS_STREAM_REPLICAS: copies of the event stream (cluster)
//! headers = "full"            # PUREST_NATS_HEADERS: PURISTA's routing headers on every message; default "minimal"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// The variables of the `[nats]` section and the keys they set (`nats.<key>`).
pub const ENV_KEYS: [(&str, &str); 11] = [
    ("PUREST_NATS_NAME", "name"),
    ("PUREST_NATS_TOKEN", "token"),
    ("PUREST_NATS_USER", "user"),
    ("PUREST_NATS_PASSWORD", "password"),
    ("PUREST_NATS_CREDS", "creds"),
    ("PUREST_NATS_TLS", "tls"),
    ("PUREST_NATS_TLS_CA", "tls_ca"),
    ("PUREST_NATS_ACK_WAIT_MS", "ack_wait_ms"),
    ("PUREST_NATS_CONNECT_TIMEOUT_MS", "connect_timeout_ms"),
    ("PUREST_NATS_STREAM_REPLICAS", "stream_replicas"),
    ("PUREST_NATS_HEADERS", "headers"),
];

/// Which NATS headers messages carry (`[nats] headers`, `PUREST_NATS_HEADERS`). Receivers read
/// only the body; headers are for tools, tracing and PURISTA (which reads `traceparent`).
/// `minimal` is the default: the full set cost about a third of the round trips per second at
/// 100 calls in flight in the NATS bench (bench/README.md), where a message without headers
/// takes the server's faster path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderSet {
    /// PURISTA's routing set on every message, command replies included: `messageType`,
    /// `senderServiceName`, `senderServiceVersion`, `senderServiceTarget`, `senderInstanceId`,
    /// `receiverServiceName`, `receiverServiceVersion`, `receiverServiceTarget`,
    /// `receiverInstanceId`, `eventName`, `principalId`, `tenantId`, `traceparent` (each only
    /// when the message has that value), exactly as the envelope says, not snake-cased.
    Full,
    /// Only `principalId`, `tenantId`, `eventName` and `traceparent`, when set, and none on
    /// command replies: a message without any of them has no headers at all. The default.
    #[default]
    Minimal,
}

impl std::str::FromStr for HeaderSet {
    type Err = ConfigError;

    /// `full` or `minimal` (any case).
    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(HeaderSet::Full),
            "minimal" => Ok(HeaderSet::Minimal),
            _ => Err(ConfigError(format!(
                "PUREST_NATS_HEADERS={value:?} is not a header set; write \"full\" (PURISTA's routing headers) or \"minimal\""
            ))),
        }
    }
}

/// `[nats]` as written in `purest.toml` (or set by its variables). What is not given keeps what
/// the bridge URL says, or the default.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    /// The connection's name on the server.
    pub name: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// User for user/password authentication.
    pub user: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// A `.creds` file (JWT + NKey).
    pub creds: Option<PathBuf>,
    /// Require TLS.
    pub tls: Option<bool>,
    /// Extra root certificate (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// How long JetStream waits for a durable handler's ack, in milliseconds.
    pub ack_wait_ms: Option<u64>,
    /// How long the first connection may take, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// Copies of the event stream JetStream keeps (1 to 5; 3 on a three-server cluster).
    pub stream_replicas: Option<usize>,
    /// Which headers messages carry.
    pub headers: Option<HeaderSet>,
}

impl std::fmt::Debug for NatsSection {
    /// Never prints secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSection")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("creds", &self.creds)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("ack_wait_ms", &self.ack_wait_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("stream_replicas", &self.stream_replicas)
            .field("headers", &self.headers)
            .finish()
    }
}

/// How to reach NATS.
///
/// ```
/// use purest_nats::NatsConfig;
/// let config = NatsConfig::from_url("nats://alice:secret@127.0.0.1:4222,127.0.0.1:4223").unwrap();
/// assert_eq!(config.servers, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
/// assert_eq!(config.user.as_deref(), Some("alice"));
/// assert!(NatsConfig::from_url("http://x").is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:port`, or `tls://host:port` for TLS).
    pub servers: Vec<String>,
    /// Connection name shown by the server (`purest` unless set).
    pub name: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// User for user/password authentication. Replies to this connection's requests arrive on
    /// `_INBOX.<user>.…` (when the name is a valid subject token), so that nats-server
    /// permissions can give each service's user its own reply subjects (`_INBOX.<user>.>`) and
    /// no service can read another's replies; without a user they arrive on `_INBOX.…`.
    pub user: Option<String>,
    /// Password for user/password authentication.
    pub password: Option<String>,
    /// A `.creds` file (JWT + NKey).
    pub creds_file: Option<PathBuf>,
    /// Require TLS.
    pub tls: bool,
    /// Extra root certificate (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// How long JetStream waits for a durable handler's ack before it delivers the message again
    /// (also how soon a crashed subscriber's messages go to another instance). Default 30 s.
    pub ack_wait: Option<std::time::Duration>,
    /// How long the first connection may take (retried with backoff meanwhile) before the start
    /// fails. Default 30 s.
    pub connect_timeout: Option<std::time::Duration>,
    /// How many servers of a NATS cluster keep a copy of the event stream (`PURISTA_EVENTS`) when
    /// this bridge is the one that creates it: 3 survives the loss of one server without losing
    /// an acknowledged event. 1 to 5 (JetStream's limit), default 1; more than 1 needs a
    /// JetStream cluster of at least that many servers. A stream that already exists keeps the
    /// replicas it was created with.
    pub stream_replicas: Option<usize>,
    /// Which headers messages carry: the minimal set (the default) or PURISTA's full routing set.
    pub headers: HeaderSet,
}

impl std::fmt::Debug for NatsConfig {
    /// Never prints secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("servers", &self.servers)
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("creds_file", &self.creds_file)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("ack_wait", &self.ack_wait)
            .field("connect_timeout", &self.connect_timeout)
            .field("stream_replicas", &self.stream_replicas)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Why a NATS setting is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad NATS configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn from_message(message: &str) -> Self {
        ConfigError(message.to_owned())
    }
}

impl NatsConfig {
    /// Reads `nats://[user:password@|token@]host:port[,host:port…]` (or `tls://…`).
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| ConfigError(format!("{url:?} is not a URL; write nats://host:port")))?;
        let tls = match scheme {
            "nats" => false,
            "tls" => true,
            other => return Err(ConfigError(format!("scheme {other:?} in {url:?}; use nats:// or tls://"))),
        };
        let mut config = NatsConfig { tls, ..Default::default() };
        let hosts = match rest.rsplit_once('@') {
            Some((credentials, hosts)) => {
                match credentials.split_once(':') {
                    Some((user, password)) => {
                        config.user = Some(user.to_owned());
                        config.password = Some(password.to_owned());
                    }
                    None => config.token = Some(credentials.to_owned()),
                }
                hosts
            }
            None => rest,
        };
        for host in hosts.trim_end_matches('/').split(',') {
            let host = host.trim();
            if host.is_empty() || host.contains('/') {
                return Err(ConfigError(format!("{host:?} in {url:?} is not host:port")));
            }
            config.servers.push(format!("{scheme}://{host}"));
        }
        Ok(config)
    }

    /// [`NatsConfig::from_url`], then the section's settings, which win over the URL.
    ///
    /// ```
    /// use purest_nats::{NatsConfig, NatsSection};
    /// let section = NatsSection { user: Some("bob".into()), password: Some("pw".into()), ack_wait_ms: Some(5000), ..Default::default() };
    /// let config = NatsConfig::from_url_and_section("nats://alice:secret@127.0.0.1:4222", &section).unwrap();
    /// assert_eq!((config.user.as_deref(), config.ack_wait), (Some("bob"), Some(std::time::Duration::from_secs(5))));
    /// ```
    pub fn from_url_and_section(url: &str, section: &NatsSection) -> Result<Self, ConfigError> {
        let mut config = Self::from_url(url)?;
        if let Some(name) = &section.name {
            config.name = Some(name.clone());
        }
        if let Some(token) = &section.token {
            config.token = Some(token.clone());
        }
        if let Some(user) = &section.user {
            config.user = Some(user.clone());
            config.password = section.password.clone();
        }
        if let Some(creds) = &section.creds {
            config.creds_file = Some(creds.clone());
        }
        if let Some(tls) = section.tls {
            config.tls = tls;
        }
        if let Some(ca) = &section.tls_ca {
            config.tls_ca = Some(ca.clone());
        }
        if let Some(ms) = section.ack_wait_ms {
            if ms == 0 {
                return Err(ConfigError(
                    "nats.ack_wait_ms (PUREST_NATS_ACK_WAIT_MS) is 0; give a number of milliseconds above 0".into(),
                ));
            }
            config.ack_wait = Some(std::time::Duration::from_millis(ms));
        }
        if let Some(ms) = section.connect_timeout_ms {
            config.connect_timeout = Some(std::time::Duration::from_millis(ms));
        }
        if let Some(replicas) = section.stream_replicas {
            config.stream_replicas = Some(replicas);
            config.checked_stream_replicas()?;
        }
        if let Some(headers) = section.headers {
            config.headers = headers;
        }
        Ok(config)
    }

    /// [`NatsConfig::from_url`], then the `PUREST_NATS_*` variables ([`ENV_KEYS`]), which win.
    /// Apps get this (and the `[nats]` section of `purest.toml`) from `purest::App`.
    pub fn from_url_and_env(url: &str) -> Result<Self, ConfigError> {
        Self::from_url_and_vars(url, |key| std::env::var(key).ok())
    }

    /// [`NatsConfig::from_url_and_env`] with the variables read through `lookup`.
    fn from_url_and_vars(url: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |key: &str| lookup(key).filter(|v| !v.is_empty());
        let millis = |key: &str| -> Result<Option<u64>, ConfigError> {
            var(key)
                .map(|ms| {
                    ms.trim()
                        .parse()
                        .map_err(|_| ConfigError(format!("{key}={ms:?} is not a number of milliseconds")))
                })
                .transpose()
        };
        let section = NatsSection {
            name: var("PUREST_NATS_NAME"),
            token: var("PUREST_NATS_TOKEN"),
            user: var("PUREST_NATS_USER"),
            password: var("PUREST_NATS_PASSWORD"),
            creds: var("PUREST_NATS_CREDS").map(PathBuf::from),
            tls: var("PUREST_NATS_TLS").map(|tls| matches!(tls.as_str(), "1" | "true" | "yes")),
            tls_ca: var("PUREST_NATS_TLS_CA").map(PathBuf::from),
            ack_wait_ms: millis("PUREST_NATS_ACK_WAIT_MS")?,
            connect_timeout_ms: millis("PUREST_NATS_CONNECT_TIMEOUT_MS")?,
            stream_replicas: var("PUREST_NATS_STREAM_REPLICAS").map(|r| parse_replicas(&r)).transpose()?,
            headers: var("PUREST_NATS_HEADERS").map(|h| h.parse()).transpose()?,
        };
        Self::from_url_and_section(url, &section)
    }

    /// The replicas of the event stream: [`NatsConfig::stream_replicas`], checked.
    pub(crate) fn checked_stream_replicas(&self) -> Result<usize, ConfigError> {
        match self.stream_replicas {
            None => Ok(1),
            Some(replicas) if (1..=MAX_REPLICAS).contains(&replicas) => Ok(replicas),
            Some(replicas) => Err(ConfigError(format!(
                "stream_replicas = {replicas}; JetStream keeps 1 to {MAX_REPLICAS} copies of a stream"
            ))),
        }
    }

    /// `_INBOX.<user>` for a user whose name is a plain subject token (see [`NatsConfig::user`]).
    pub(crate) fn inbox_prefix(&self) -> Option<String> {
        let user = self.user.as_deref()?;
        let plain = !user.is_empty() && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        plain.then(|| format!("_INBOX.{user}"))
    }

    /// The async-nats options for these settings.
    pub(crate) async fn options(&self) -> Result<async_nats::ConnectOptions, ConfigError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(self.name.as_deref().unwrap_or("purest"))
            .retry_on_initial_connect();
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(prefix) = self.inbox_prefix() {
            options = options.custom_inbox_prefix(prefix);
        }
        if let Some(creds) = &self.creds_file {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| ConfigError(format!("credentials file {}: {e}", creds.display())))?;
        }
        if self.tls {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        Ok(options)
    }
}

/// JetStream's limit on the copies of a stream.
const MAX_REPLICAS: usize = 5;

/// `PUREST_NATS_STREAM_REPLICAS`: a number from 1 to [`MAX_REPLICAS`].
fn parse_replicas(value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(replicas) if (1..=MAX_REPLICAS).contains(&replicas) => Ok(replicas),
        _ => Err(ConfigError(format!(
            "PUREST_NATS_STREAM_REPLICAS={value:?} is not a number of copies from 1 to {MAX_REPLICAS} \
             (3 for a three-server cluster)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_a_user_arrive_on_its_own_inbox() {
        let inbox = |url: &str| NatsConfig::from_url(url).unwrap().inbox_prefix();
        assert_eq!(inbox("nats://user-svc_1:pw@127.0.0.1:4222").as_deref(), Some("_INBOX.user-svc_1"));
        assert_eq!(inbox("nats://127.0.0.1:4222"), None);
        assert_eq!(inbox("nats://sometoken@127.0.0.1:4222"), None, "a token names no user");
        for odd in ["a.b", "a*", "a>", "a b", ""] {
            let config = NatsConfig {
                user: Some(odd.into()),
                ..Default::default()
            };
            assert_eq!(config.inbox_prefix(), None, "{odd:?} is not one subject token");
        }
    }

    #[test]
    fn headers_from_the_environment_and_the_section() {
        let read = |value: Option<&str>| {
            NatsConfig::from_url_and_vars("nats://127.0.0.1:4222", |key| {
                (key == "PUREST_NATS_HEADERS").then(|| value.map(str::to_owned)).flatten()
            })
        };
        assert_eq!(read(None).unwrap().headers, HeaderSet::Minimal);
        assert_eq!(read(Some("")).unwrap().headers, HeaderSet::Minimal, "empty means unset");
        assert_eq!(read(Some("minimal")).unwrap().headers, HeaderSet::Minimal);
        assert_eq!(read(Some(" Full ")).unwrap().headers, HeaderSet::Full);
        let error = read(Some("some")).expect_err("not a header set").to_string();
        assert!(
            error.contains("PUREST_NATS_HEADERS") && error.contains("\"some\"") && error.contains("minimal"),
            "{error}"
        );
        assert!(ENV_KEYS.contains(&("PUREST_NATS_HEADERS", "headers")));
        let section = NatsSection {
            headers: Some(HeaderSet::Full),
            ..Default::default()
        };
        let config = NatsConfig::from_url_and_section("nats://127.0.0.1:4222", &section).unwrap();
        assert_eq!(config.headers, HeaderSet::Full);
        assert!(format!("{section:?}").contains("headers: Some(Full)"));
    }

    #[test]
    fn stream_replicas_from_the_environment() {
        let read = |value: Option<&str>| {
            NatsConfig::from_url_and_vars("nats://127.0.0.1:4222", |key| {
                (key == "PUREST_NATS_STREAM_REPLICAS").then(|| value.map(str::to_owned)).flatten()
            })
        };
        assert_eq!(read(None).unwrap().stream_replicas, None);
        assert_eq!(read(None).unwrap().checked_stream_replicas(), Ok(1));
        assert_eq!(read(Some("3")).unwrap().stream_replicas, Some(3));
        assert_eq!(read(Some(" 5 ")).unwrap().stream_replicas, Some(5));
        for bad in ["0", "three", "-1", "6", "2.5"] {
            let error = read(Some(bad)).expect_err(bad).to_string();
            assert!(error.contains("PUREST_NATS_STREAM_REPLICAS") && error.contains(bad), "{error}");
        }
        // Empty means unset, like every PUREST_NATS_ variable.
        assert_eq!(read(Some("")).unwrap().stream_replicas, None);
        let config = NatsConfig {
            stream_replicas: Some(3),
            ..Default::default()
        };
        assert!(format!("{config:?}").contains("stream_replicas: Some(3)"));
        assert_eq!(config.checked_stream_replicas(), Ok(3));
        for bad in [0, 6] {
            let config = NatsConfig {
                stream_replicas: Some(bad),
                ..Default::default()
            };
            assert!(config.checked_stream_replicas().is_err());
        }
    }
}
