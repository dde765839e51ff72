//! Connection settings: the `redis://` (or `rediss://`) URL, credentials, TLS, the key prefix and
//! the limits, from the URL and the `[redis]` section of `purest.toml` or its `PUREST_REDIS_*`
//! variables (the variables win; the `purest` facade merges both and hands this crate its section).
//!
//! ```toml
//! bridge = "redis://127.0.0.1:6379"
//!
//! [redis]
//! key_prefix = "billing"      # PUREST_REDIS_KEY_PREFIX: every key starts with it, so two apps can share one Redis
//! user = "billing"            # PUREST_REDIS_USER (+ PUREST_REDIS_PASSWORD): instead of the URL's
//! password = "…"
//! tls_ca = "ca.pem"           # PUREST_REDIS_TLS_CA: the root certificate to trust (rediss:// URLs)
//! max_len = 100000            # PUREST_REDIS_MAX_LEN: entries one event stream holds at most (see the crate docs)
//! claim_idle_ms = 30000       # PUREST_REDIS_CLAIM_IDLE_MS: a durable delivery unacknowledged this long by a silent consumer is claimed by another
//! prefetch = 256              # PUREST_REDIS_PREFETCH: commands one instance runs at once, per command
//! command_backlog = 10000     # PUREST_REDIS_COMMAND_BACKLOG: commands waiting for an instance, per command, before callers get 503
//! op_timeout_ms = 5000        # PUREST_REDIS_OP_TIMEOUT_MS: longest wait for Redis to answer one operation
//! connect_timeout_ms = 30000  # PUREST_REDIS_CONNECT_TIMEOUT_MS: how long the first connection may take
//! ```

use std::path::PathBuf;
use std::time::Duration;

use purest_core::host::{setting_in_range, url_without_password, variable_number};
use redis::IntoConnectionInfo;
use serde::Deserialize;

/// The variables of the `[redis]` section and the keys they set (`redis.<key>`).
pub const ENV_KEYS: [(&str, &str); 10] = [
    ("PUREST_REDIS_KEY_PREFIX", "key_prefix"),
    ("PUREST_REDIS_USER", "user"),
    ("PUREST_REDIS_PASSWORD", "password"),
    ("PUREST_REDIS_TLS_CA", "tls_ca"),
    ("PUREST_REDIS_MAX_LEN", "max_len"),
    ("PUREST_REDIS_CLAIM_IDLE_MS", "claim_idle_ms"),
    ("PUREST_REDIS_PREFETCH", "prefetch"),
    ("PUREST_REDIS_COMMAND_BACKLOG", "command_backlog"),
    ("PUREST_REDIS_OP_TIMEOUT_MS", "op_timeout_ms"),
    ("PUREST_REDIS_CONNECT_TIMEOUT_MS", "connect_timeout_ms"),
];

/// The keys of the section whose values are numbers (for variables, which are text).
pub const NUMBER_KEYS: [&str; 6] = [
    "max_len",
    "claim_idle_ms",
    "prefetch",
    "command_backlog",
    "op_timeout_ms",
    "connect_timeout_ms",
];

/// The key prefix unless set.
pub const DEFAULT_KEY_PREFIX: &str = "purest";
/// Entries one event stream holds at most unless set.
pub const DEFAULT_MAX_LEN: u64 = 100_000;
/// How long a durable delivery may stay unacknowledged by a consumer that does not keep it alive
/// before another consumer claims it, unless set.
pub const DEFAULT_CLAIM_IDLE: Duration = Duration::from_secs(30);
/// Commands one instance runs at once, per command, unless set.
pub const DEFAULT_PREFETCH: usize = 256;
/// Commands waiting for an instance, per command, unless set.
pub const DEFAULT_COMMAND_BACKLOG: u64 = 10_000;
/// Longest wait for one Redis operation unless set.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the first connection may take unless set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// `[redis]` as written in `purest.toml` (or set by its variables). What is not given keeps what
/// the bridge URL says, or the default.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// The start of every key.
    pub key_prefix: Option<String>,
    /// User name (instead of the URL's; Redis 6 ACL users).
    pub user: Option<String>,
    /// Its password (instead of the URL's), so the URL can be written down without it.
    pub password: Option<String>,
    /// The root certificate (PEM) to trust for `rediss://`.
    pub tls_ca: Option<PathBuf>,
    /// Entries one event stream holds at most.
    pub max_len: Option<u64>,
    /// Idle time after which another consumer claims a durable delivery, in milliseconds.
    pub claim_idle_ms: Option<u64>,
    /// Commands one instance runs at once, per command.
    pub prefetch: Option<u64>,
    /// Commands waiting for an instance, per command.
    pub command_backlog: Option<u64>,
    /// Longest wait for one Redis operation, in milliseconds.
    pub op_timeout_ms: Option<u64>,
    /// How long the first connection may take, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
}

impl std::fmt::Debug for RedisSection {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSection")
            .field("key_prefix", &self.key_prefix)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca)
            .field("max_len", &self.max_len)
            .field("claim_idle_ms", &self.claim_idle_ms)
            .field("prefetch", &self.prefetch)
            .field("command_backlog", &self.command_backlog)
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

/// A setting that cannot be used, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

/// How to reach Redis, and the limits of the bridge.
///
/// ```
/// use purest_redis::RedisConfig;
/// let config = RedisConfig::from_url("redis://alice:secret@127.0.0.1:6379/2").unwrap();
/// assert_eq!(config.shown(), "redis://alice@127.0.0.1:6379/2");
/// assert!(RedisConfig::from_url("mqtt://x").is_err());
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    /// Where Redis is, with credentials and database.
    pub connection: redis::ConnectionInfo,
    /// Whether to speak TLS (`rediss://`).
    pub tls: bool,
    /// The root certificate (PEM file) to trust for `rediss://`, instead of the system's.
    pub tls_ca: Option<PathBuf>,
    /// The start of every key.
    pub key_prefix: String,
    /// Entries one event stream holds at most.
    pub max_len: u64,
    /// Idle time after which another consumer claims a durable delivery.
    pub claim_idle: Duration,
    /// Commands one instance runs at once, per command.
    pub prefetch: usize,
    /// Commands waiting for an instance, per command.
    pub command_backlog: u64,
    /// Longest wait for one Redis operation.
    pub op_timeout: Duration,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for RedisConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.shown())
            .field("tls_ca", &self.tls_ca)
            .field("key_prefix", &self.key_prefix)
            .field("max_len", &self.max_len)
            .field("claim_idle", &self.claim_idle)
            .field("prefetch", &self.prefetch)
            .field("command_backlog", &self.command_backlog)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// Reads a `redis://user:password@host:port/db` URL (`rediss://` for TLS), with every other
    /// setting at its default.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let not_redis = || {
            ConfigError::new(format!(
                "{:?} is not a Redis URL; write redis://host:6379 (rediss:// for TLS; user:password@ before the host and /db after it if needed)",
                url_without_password(url)
            ))
        };
        let tls = match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("redis") => false,
            Some("rediss") => true,
            _ => return Err(not_redis()),
        };
        let connection = url.into_connection_info().map_err(|_| not_redis())?;
        Ok(Self {
            connection,
            tls,
            tls_ca: None,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            max_len: DEFAULT_MAX_LEN,
            claim_idle: DEFAULT_CLAIM_IDLE,
            prefetch: DEFAULT_PREFETCH,
            command_backlog: DEFAULT_COMMAND_BACKLOG,
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The URL with the settings of a `[redis]` section on top.
    pub fn from_url_and_section(url: &str, section: &RedisSection) -> Result<Self, ConfigError> {
        let mut config = Self::from_url(url)?;
        if let Some(prefix) = &section.key_prefix {
            if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['{', '}', ' ', '*', '?', '[', ']']) {
                return Err(ConfigError::new(format!(
                    "redis key_prefix {prefix:?} cannot start keys; write 1 to 64 characters without braces, spaces or glob characters (* ? [ ])"
                )));
            }
            config.key_prefix = prefix.clone();
        }
        let mut settings = config.connection.redis_settings().clone();
        match (&section.user, &section.password) {
            (Some(user), password) => {
                settings = settings.set_username(user);
                if let Some(password) = password {
                    settings = settings.set_password(password);
                }
            }
            (None, Some(password)) => settings = settings.set_password(password),
            (None, None) => {}
        }
        config.connection = config.connection.set_redis_settings(settings);
        if let Some(ca) = &section.tls_ca {
            if !config.tls {
                return Err(ConfigError::new(
                    "redis tls_ca is set but the URL is redis://; write rediss:// to use TLS",
                ));
            }
            config.tls_ca = Some(ca.clone());
        }
        let within =
            |key: &str, value: u64, low: u64, high: u64| setting_in_range("redis", key, value, low, high).map_err(ConfigError::new);
        if let Some(n) = section.max_len {
            config.max_len = within("max_len", n, 100, 1 << 40)?;
        }
        if let Some(ms) = section.claim_idle_ms {
            config.claim_idle = Duration::from_millis(within("claim_idle_ms", ms, 100, 86_400_000)?);
        }
        if let Some(n) = section.prefetch {
            config.prefetch = within("prefetch", n, 1, 65_535)? as usize;
        }
        if let Some(n) = section.command_backlog {
            config.command_backlog = within("command_backlog", n, 1, 1 << 32)?;
        }
        if let Some(ms) = section.op_timeout_ms {
            config.op_timeout = Duration::from_millis(within("op_timeout_ms", ms, 10, 3_600_000)?);
        }
        if let Some(ms) = section.connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }

    /// The URL with settings from `PUREST_REDIS_*` variables.
    pub fn from_url_and_env(url: &str) -> Result<Self, ConfigError> {
        Self::from_url_and_vars(url, |key| std::env::var(key).ok())
    }

    fn from_url_and_vars(url: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |key: &str| variable_number(&lookup, key).map_err(ConfigError::new);
        let section = RedisSection {
            key_prefix: lookup("PUREST_REDIS_KEY_PREFIX"),
            user: lookup("PUREST_REDIS_USER"),
            password: lookup("PUREST_REDIS_PASSWORD"),
            tls_ca: lookup("PUREST_REDIS_TLS_CA").map(PathBuf::from),
            max_len: number("PUREST_REDIS_MAX_LEN")?,
            claim_idle_ms: number("PUREST_REDIS_CLAIM_IDLE_MS")?,
            prefetch: number("PUREST_REDIS_PREFETCH")?,
            command_backlog: number("PUREST_REDIS_COMMAND_BACKLOG")?,
            op_timeout_ms: number("PUREST_REDIS_OP_TIMEOUT_MS")?,
            connect_timeout_ms: number("PUREST_REDIS_CONNECT_TIMEOUT_MS")?,
        };
        Self::from_url_and_section(url, &section)
    }

    /// `redis://user@host:port/db`: the URL without its password, for logs and errors.
    pub fn shown(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let settings = self.connection.redis_settings();
        let user = settings.username().map(|user| format!("{user}@")).unwrap_or_default();
        let address = match self.connection.addr() {
            redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } if host.contains(':') => {
                format!("[{host}]:{port}")
            }
            redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
            other => other.to_string(),
        };
        let db = match settings.db() {
            0 => String::new(),
            db => format!("/{db}"),
        };
        format!("{scheme}://{user}{address}{db}")
    }

    /// A client for these settings; the CA file is read now, so a wrong path fails the start.
    pub(crate) fn client(&self) -> Result<redis::Client, ConfigError> {
        // rustls picks its crypto provider from the features built in; make it ring's explicitly
        // so a build that also has aws-lc-rs does not stop at "no default provider".
        let _ = rustls::crypto::ring::default_provider().install_default();
        let refused = |e: redis::RedisError| ConfigError::new(format!("redis {}: {e}", self.shown()));
        match &self.tls_ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| ConfigError::new(format!("redis tls_ca {}: {e}; give the path of a PEM certificate", path.display())))?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(self.connection.clone(), certificates).map_err(refused)
            }
            None => redis::Client::open(self.connection.clone()).map_err(refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_and_variables_override_the_url() {
        let vars = |key: &str| match key {
            "PUREST_REDIS_USER" => Some("billing".to_owned()),
            "PUREST_REDIS_PASSWORD" => Some("s3cret".to_owned()),
            "PUREST_REDIS_PREFETCH" => Some("64".to_owned()),
            "PUREST_REDIS_CLAIM_IDLE_MS" => Some("2000".to_owned()),
            "PUREST_REDIS_KEY_PREFIX" => Some("billing".to_owned()),
            _ => None,
        };
        let config = RedisConfig::from_url_and_vars("redis://guest:guest@127.0.0.1/3", vars).unwrap();
        assert_eq!(config.connection.redis_settings().password(), Some("s3cret"));
        assert_eq!((config.prefetch, config.claim_idle), (64, Duration::from_secs(2)));
        assert_eq!(config.key_prefix, "billing");
        assert_eq!(config.shown(), "redis://billing@127.0.0.1:6379/3");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(RedisConfig::from_url("rediss://[::1]").unwrap().shown(), "rediss://[::1]:6379");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = RedisConfig::from_url("redis://guest:hunter2@[bad").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(RedisConfig::from_url("nats://127.0.0.1").is_err());
        let err = RedisConfig::from_url_and_vars("redis://127.0.0.1", |k| (k == "PUREST_REDIS_PREFETCH").then(|| "lots".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PUREST_REDIS_PREFETCH"), "{err}");
        for section in [
            RedisSection {
                prefetch: Some(0),
                ..Default::default()
            },
            RedisSection {
                max_len: Some(3),
                ..Default::default()
            },
            RedisSection {
                key_prefix: Some("a{b}".into()),
                ..Default::default()
            },
            RedisSection {
                tls_ca: Some("ca.pem".into()),
                ..Default::default()
            },
        ] {
            let err = RedisConfig::from_url_and_section("redis://127.0.0.1", &section)
                .unwrap_err()
                .to_string();
            assert!(err.contains("redis "), "{err}");
        }
        let missing_ca = RedisSection {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let config = RedisConfig::from_url_and_section("rediss://127.0.0.1", &missing_ca).unwrap();
        assert!(config.client().unwrap_err().to_string().contains("/nonexistent/ca.pem"));
    }
}
