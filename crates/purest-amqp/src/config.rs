//! Connection settings: the `amqp://` (or `amqps://`) URL, credentials, TLS, prefetch and
//! timeouts, from the URL and the `[amqp]` section of `purest.toml` or its `PUREST_AMQP_*`
//! variables (the variables win; the `purest` facade merges both and hands this crate its section).
//!
//! ```toml
//! bridge = "amqp://127.0.0.1:5672/%2f"
//!
//! [amqp]
//! user = "billing"              # PUREST_AMQP_USER (+ PUREST_AMQP_PASSWORD): instead of the URL's
//! password = "…"
//! name = "billing"              # PUREST_AMQP_NAME: the connection's name in the management UI
//! prefetch = 256                # PUREST_AMQP_PREFETCH: commands one instance takes ahead, per command
//! confirm_timeout_ms = 10000    # PUREST_AMQP_CONFIRM_TIMEOUT_MS: longest wait for a publisher confirm
//! connect_timeout_ms = 30000    # PUREST_AMQP_CONNECT_TIMEOUT_MS: how long the first connection may take
//! tls_ca = "ca.pem"             # PUREST_AMQP_TLS_CA: a root certificate to trust (amqps:// URLs)
//! exchange = "purista"          # PUREST_AMQP_EXCHANGE: PURISTA's default; change only to keep apps apart
//! ```

use std::path::PathBuf;
use std::time::Duration;

use lapin::uri::AMQPUri;
use purest_core::host::{url_without_password, variable_number};
use serde::Deserialize;

/// The variables of the `[amqp]` section and the keys they set (`amqp.<key>`).
pub const ENV_KEYS: [(&str, &str); 8] = [
    ("PUREST_AMQP_USER", "user"),
    ("PUREST_AMQP_PASSWORD", "password"),
    ("PUREST_AMQP_NAME", "name"),
    ("PUREST_AMQP_PREFETCH", "prefetch"),
    ("PUREST_AMQP_CONFIRM_TIMEOUT_MS", "confirm_timeout_ms"),
    ("PUREST_AMQP_CONNECT_TIMEOUT_MS", "connect_timeout_ms"),
    ("PUREST_AMQP_TLS_CA", "tls_ca"),
    ("PUREST_AMQP_EXCHANGE", "exchange"),
];

/// Commands one instance takes from the broker ahead of handling them, per command, unless set.
pub const DEFAULT_PREFETCH: u16 = 256;
/// The longest wait for a publisher confirm unless set (an emit also waits at most its deadline).
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first connection may take unless set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// PURISTA's exchange.
pub const DEFAULT_EXCHANGE: &str = "purista";

/// `[amqp]` as written in `purest.toml` (or set by its variables). What is not given keeps what
/// the bridge URL says, or the default.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSection {
    /// User name (instead of the URL's).
    pub user: Option<String>,
    /// Its password (instead of the URL's), so the URL can be written down without it.
    pub password: Option<String>,
    /// The connection's name in RabbitMQ's management UI.
    pub name: Option<String>,
    /// Commands one instance takes ahead, per command (1 to 65535).
    pub prefetch: Option<u16>,
    /// Longest wait for a publisher confirm, in milliseconds.
    pub confirm_timeout_ms: Option<u64>,
    /// How long the first connection may take, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// A root certificate (PEM) to trust for `amqps://`.
    pub tls_ca: Option<PathBuf>,
    /// The headers exchange every message goes through.
    pub exchange: Option<String>,
}

impl std::fmt::Debug for AmqpSection {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSection")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("name", &self.name)
            .field("prefetch", &self.prefetch)
            .field("confirm_timeout_ms", &self.confirm_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("tls_ca", &self.tls_ca)
            .field("exchange", &self.exchange)
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

/// How to reach RabbitMQ.
///
/// ```
/// use purest_amqp::AmqpConfig;
/// let config = AmqpConfig::from_url("amqp://alice:secret@127.0.0.1:5672/%2f").unwrap();
/// assert_eq!(config.shown(), "amqp://alice@127.0.0.1:5672/%2f");
/// assert!(AmqpConfig::from_url("nats://x").is_err());
/// ```
#[derive(Clone)]
pub struct AmqpConfig {
    /// Where and as whom (parsed from the URL, then the section's user and password).
    pub uri: AMQPUri,
    /// The connection's name in the management UI (`purest` unless set).
    pub name: Option<String>,
    /// Commands one instance takes ahead, per command.
    pub prefetch: u16,
    /// Longest wait for a publisher confirm.
    pub confirm_timeout: Duration,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
    /// A root certificate (PEM file) to trust for `amqps://`.
    pub tls_ca: Option<PathBuf>,
    /// The headers exchange every message goes through (`purista`).
    pub exchange: String,
}

impl std::fmt::Debug for AmqpConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("uri", &self.shown())
            .field("name", &self.name)
            .field("prefetch", &self.prefetch)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_ca", &self.tls_ca)
            .field("exchange", &self.exchange)
            .finish()
    }
}

impl AmqpConfig {
    /// Reads an `amqp://user:password@host:port/vhost` URL (`amqps://` for TLS; the vhost `/`
    /// is written `%2f`), with every other setting at its default.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let scheme = url.split("://").next().unwrap_or_default();
        if !url.contains("://") || !matches!(scheme, "amqp" | "amqps") {
            return Err(ConfigError::new(format!(
                "{:?} is not an AMQP URL; write amqp://user:password@host:5672/%2f (or amqps:// for TLS)",
                url_without_password(url)
            )));
        }
        let uri: AMQPUri = url
            .parse()
            .map_err(|e| ConfigError::new(format!("{:?} is not a usable AMQP URL: {e}", url_without_password(url))))?;
        Ok(Self {
            uri,
            name: None,
            prefetch: DEFAULT_PREFETCH,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_ca: None,
            exchange: DEFAULT_EXCHANGE.to_owned(),
        })
    }

    /// The URL with the settings of an `[amqp]` section on top.
    pub fn from_url_and_section(url: &str, section: &AmqpSection) -> Result<Self, ConfigError> {
        let mut config = Self::from_url(url)?;
        if let Some(user) = &section.user {
            config.uri.authority.userinfo.username = user.clone();
        }
        if let Some(password) = &section.password {
            config.uri.authority.userinfo.password = password.clone();
        }
        if let Some(name) = &section.name {
            config.name = Some(name.clone());
        }
        if let Some(prefetch) = section.prefetch {
            if prefetch == 0 {
                return Err(ConfigError::new(
                    "amqp prefetch = 0 would let the broker push commands without bound; write 1 to 65535 (default 256)",
                ));
            }
            config.prefetch = prefetch;
        }
        if let Some(ms) = section.confirm_timeout_ms {
            config.confirm_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = section.connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ca) = &section.tls_ca {
            config.tls_ca = Some(ca.clone());
        }
        if let Some(exchange) = &section.exchange {
            if exchange.is_empty() || exchange.len() > 255 {
                return Err(ConfigError::new(format!(
                    "amqp exchange {exchange:?} is not an exchange name; write 1 to 255 characters (PURISTA's is \"purista\")"
                )));
            }
            config.exchange = exchange.clone();
        }
        Ok(config)
    }

    /// The URL with settings from `PUREST_AMQP_*` variables.
    pub fn from_url_and_env(url: &str) -> Result<Self, ConfigError> {
        Self::from_url_and_vars(url, |key| std::env::var(key).ok())
    }

    fn from_url_and_vars(url: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |key: &str| variable_number(&lookup, key).map_err(ConfigError::new);
        let prefetch = number("PUREST_AMQP_PREFETCH")?
            .map(|n| u16::try_from(n).map_err(|_| ConfigError::new(format!("PUREST_AMQP_PREFETCH={n} is above 65535; write 1 to 65535"))))
            .transpose()?;
        let section = AmqpSection {
            user: lookup("PUREST_AMQP_USER"),
            password: lookup("PUREST_AMQP_PASSWORD"),
            name: lookup("PUREST_AMQP_NAME"),
            prefetch,
            confirm_timeout_ms: number("PUREST_AMQP_CONFIRM_TIMEOUT_MS")?,
            connect_timeout_ms: number("PUREST_AMQP_CONNECT_TIMEOUT_MS")?,
            tls_ca: lookup("PUREST_AMQP_TLS_CA").map(PathBuf::from),
            exchange: lookup("PUREST_AMQP_EXCHANGE"),
        };
        Self::from_url_and_section(url, &section)
    }

    /// `amqp://user@host:port/vhost`: the URL without its password, for logs and errors.
    pub fn shown(&self) -> String {
        let uri = &self.uri;
        let scheme = match uri.scheme {
            lapin::uri::AMQPScheme::AMQP => "amqp",
            lapin::uri::AMQPScheme::AMQPS => "amqps",
        };
        let vhost = if uri.vhost == "/" { "%2f".to_owned() } else { uri.vhost.clone() };
        format!(
            "{scheme}://{}@{}:{}/{vhost}",
            uri.authority.userinfo.username, uri.authority.host, uri.authority.port
        )
    }

    /// The TLS settings: the extra root certificate, read now so a wrong path fails the start.
    pub(crate) fn tls(&self) -> Result<lapin::tcp::OwnedTLSConfig, ConfigError> {
        let cert_chain = match &self.tls_ca {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::new(format!("amqp tls_ca {}: {e}; give the path of a PEM certificate", path.display())))?,
            ),
            None => None,
        };
        Ok(lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_and_variables_override_the_url() {
        let vars = |key: &str| match key {
            "PUREST_AMQP_USER" => Some("billing".to_owned()),
            "PUREST_AMQP_PASSWORD" => Some("s3cret".to_owned()),
            "PUREST_AMQP_PREFETCH" => Some("64".to_owned()),
            "PUREST_AMQP_CONFIRM_TIMEOUT_MS" => Some("2500".to_owned()),
            _ => None,
        };
        let config = AmqpConfig::from_url_and_vars("amqp://guest:guest@127.0.0.1:5672/%2f", vars).unwrap();
        assert_eq!(config.uri.authority.userinfo.username, "billing");
        assert_eq!(config.uri.authority.userinfo.password, "s3cret");
        assert_eq!((config.prefetch, config.confirm_timeout), (64, Duration::from_millis(2500)));
        assert_eq!(config.shown(), "amqp://billing@127.0.0.1:5672/%2f");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = AmqpConfig::from_url("amqp://guest:hunter2@[bad").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = AmqpConfig::from_url_and_vars("amqp://127.0.0.1", |k| (k == "PUREST_AMQP_PREFETCH").then(|| "lots".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PUREST_AMQP_PREFETCH"), "{err}");
        let zero = AmqpSection {
            prefetch: Some(0),
            ..Default::default()
        };
        assert!(AmqpConfig::from_url_and_section("amqp://127.0.0.1", &zero).is_err());
        let missing_ca = AmqpSection {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let config = AmqpConfig::from_url_and_section("amqps://127.0.0.1", &missing_ca).unwrap();
        assert!(config.tls().unwrap_err().to_string().contains("/nonexistent/ca.pem"));
    }
}
