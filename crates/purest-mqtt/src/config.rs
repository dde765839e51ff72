//! Connection settings: the `mqtt://` (or `mqtts://`) URL, credentials, TLS, keep-alive, the
//! durable sessions' expiry and the limits, from the URL and the `[mqtt]` section of
//! `purest.toml` or its `PUREST_MQTT_*` variables (the variables win; the `purest` facade merges
//! both and hands this crate its section).
//!
//! ```toml
//! bridge = "mqtt://127.0.0.1:1883"
//!
//! [mqtt]
//! client_id_prefix = "billing-0"  # PUREST_MQTT_CLIENT_ID_PREFIX: stable and distinct per instance (see below)
//! user = "billing"                # PUREST_MQTT_USER (+ PUREST_MQTT_PASSWORD): instead of the URL's
//! password = "…"
//! tls_ca = "ca.pem"               # PUREST_MQTT_TLS_CA: a root certificate to trust (mqtts:// URLs)
//! keep_alive_s = 10               # PUREST_MQTT_KEEP_ALIVE_S: a dead connection is noticed within 1.5×
//! session_expiry_s = 604800       # PUREST_MQTT_SESSION_EXPIRY_S: how long the broker keeps a durable subscription's messages while its subscriber is away
//! prefetch = 256                  # PUREST_MQTT_PREFETCH: commands one instance takes ahead, per command
//! max_packet_size = 16777216      # PUREST_MQTT_MAX_PACKET_SIZE: the largest message accepted or sent, in bytes
//! ack_timeout_ms = 10000          # PUREST_MQTT_ACK_TIMEOUT_MS: longest wait for the broker's PUBACK
//! connect_timeout_ms = 30000      # PUREST_MQTT_CONNECT_TIMEOUT_MS: how long the first connection may take
//! ```
//!
//! A durable subscription lives in a broker session named by its client id,
//! `<client_id_prefix>-<service>-<version>-<subscription>`: a subscriber that starts again with the
//! same prefix takes its session back, with what was queued for it. Two instances sharing a
//! durable subscription need distinct prefixes (a StatefulSet's pod name, say), or the second
//! takes the session over from the first.

use std::path::PathBuf;
use std::time::Duration;

use purest_core::host::{setting_in_range, url_without_password, variable_number};
use serde::Deserialize;

/// The variables of the `[mqtt]` section and the keys they set (`mqtt.<key>`).
pub const ENV_KEYS: [(&str, &str); 10] = [
    ("PUREST_MQTT_CLIENT_ID_PREFIX", "client_id_prefix"),
    ("PUREST_MQTT_USER", "user"),
    ("PUREST_MQTT_PASSWORD", "password"),
    ("PUREST_MQTT_TLS_CA", "tls_ca"),
    ("PUREST_MQTT_KEEP_ALIVE_S", "keep_alive_s"),
    ("PUREST_MQTT_SESSION_EXPIRY_S", "session_expiry_s"),
    ("PUREST_MQTT_PREFETCH", "prefetch"),
    ("PUREST_MQTT_MAX_PACKET_SIZE", "max_packet_size"),
    ("PUREST_MQTT_ACK_TIMEOUT_MS", "ack_timeout_ms"),
    ("PUREST_MQTT_CONNECT_TIMEOUT_MS", "connect_timeout_ms"),
];

/// The keys of the section whose values are numbers (for variables, which are text).
pub const NUMBER_KEYS: [&str; 6] = [
    "keep_alive_s",
    "session_expiry_s",
    "prefetch",
    "max_packet_size",
    "ack_timeout_ms",
    "connect_timeout_ms",
];

/// The client id prefix unless set.
pub const DEFAULT_CLIENT_ID_PREFIX: &str = "purest";
/// Keep-alive unless set: PURISTA's.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How long the broker keeps a durable subscription's session while nobody is connected to it,
/// unless set: a week.
pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Commands one instance takes ahead of handling them, per command, unless set.
pub const DEFAULT_PREFETCH: u16 = 256;
/// The largest message accepted or sent unless set: 16 MiB.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 16 * 1024 * 1024;
/// The longest wait for the broker's PUBACK unless set (an emit also waits at most its deadline).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first connection may take unless set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// `[mqtt]` as written in `purest.toml` (or set by its variables). What is not given keeps what
/// the bridge URL says, or the default.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// The start of every client id; durable subscriptions' sessions are named by it.
    pub client_id_prefix: Option<String>,
    /// User name (instead of the URL's).
    pub user: Option<String>,
    /// Its password (instead of the URL's), so the URL can be written down without it.
    pub password: Option<String>,
    /// A root certificate (PEM) to trust for `mqtts://`.
    pub tls_ca: Option<PathBuf>,
    /// Keep-alive in seconds (5 to 65535).
    pub keep_alive_s: Option<u64>,
    /// How long the broker keeps a durable subscription's session while it is away, in seconds.
    pub session_expiry_s: Option<u64>,
    /// Commands one instance takes ahead, per command (1 to 65535).
    pub prefetch: Option<u64>,
    /// The largest message accepted or sent, in bytes.
    pub max_packet_size: Option<u64>,
    /// Longest wait for the broker's PUBACK, in milliseconds.
    pub ack_timeout_ms: Option<u64>,
    /// How long the first connection may take, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
}

impl std::fmt::Debug for MqttSection {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSection")
            .field("client_id_prefix", &self.client_id_prefix)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca)
            .field("keep_alive_s", &self.keep_alive_s)
            .field("session_expiry_s", &self.session_expiry_s)
            .field("prefetch", &self.prefetch)
            .field("max_packet_size", &self.max_packet_size)
            .field("ack_timeout_ms", &self.ack_timeout_ms)
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

/// How to reach the MQTT broker.
///
/// ```
/// use purest_mqtt::MqttConfig;
/// let config = MqttConfig::from_url("mqtt://alice:secret@127.0.0.1:1883").unwrap();
/// assert_eq!(config.shown(), "mqtt://alice@127.0.0.1:1883");
/// assert!(MqttConfig::from_url("amqp://x").is_err());
/// ```
#[derive(Clone)]
pub struct MqttConfig {
    /// Host name or address.
    pub host: String,
    /// Port (1883 for `mqtt://`, 8883 for `mqtts://` unless the URL says).
    pub port: u16,
    /// Whether to speak TLS (`mqtts://`).
    pub tls: bool,
    /// User and password, if any.
    pub credentials: Option<(String, String)>,
    /// The start of every client id.
    pub client_id_prefix: String,
    /// A root certificate (PEM file) to trust for `mqtts://`, on top of the system's.
    pub tls_ca: Option<PathBuf>,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// How long the broker keeps a durable subscription's session while it is away.
    pub session_expiry: Duration,
    /// Commands one instance takes ahead, per command.
    pub prefetch: u16,
    /// The largest message accepted or sent, in bytes.
    pub max_packet_size: u32,
    /// Longest wait for the broker's PUBACK.
    pub ack_timeout: Duration,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for MqttConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.shown())
            .field("client_id_prefix", &self.client_id_prefix)
            .field("tls_ca", &self.tls_ca)
            .field("keep_alive", &self.keep_alive)
            .field("session_expiry", &self.session_expiry)
            .field("prefetch", &self.prefetch)
            .field("max_packet_size", &self.max_packet_size)
            .field("ack_timeout", &self.ack_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl MqttConfig {
    /// Reads an `mqtt://user:password@host:port` URL (`mqtts://` for TLS), with every other
    /// setting at its default.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let not_mqtt = || {
            ConfigError::new(format!(
                "{:?} is not an MQTT URL; write mqtt://host:1883 (or mqtts://host:8883 for TLS, user:password@ before the host if needed)",
                url_without_password(url)
            ))
        };
        let parsed = url::Url::parse(url).map_err(|_| not_mqtt())?;
        let tls = match parsed.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            _ => return Err(not_mqtt()),
        };
        let host = parsed.host_str().filter(|host| !host.is_empty()).ok_or_else(not_mqtt)?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(ConfigError::new(format!(
                "{:?}: an MQTT URL has no path or query; write mqtt://host:port and put other settings in [mqtt]",
                url_without_password(url)
            )));
        }
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| not_mqtt())
        };
        let credentials = if parsed.username().is_empty() {
            None
        } else {
            Some((decode(parsed.username())?, decode(parsed.password().unwrap_or_default())?))
        };
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            credentials,
            client_id_prefix: DEFAULT_CLIENT_ID_PREFIX.to_owned(),
            tls_ca: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            session_expiry: DEFAULT_SESSION_EXPIRY,
            prefetch: DEFAULT_PREFETCH,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The URL with the settings of an `[mqtt]` section on top.
    pub fn from_url_and_section(url: &str, section: &MqttSection) -> Result<Self, ConfigError> {
        let mut config = Self::from_url(url)?;
        if let Some(prefix) = &section.client_id_prefix {
            if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['/', '+', '#']) {
                return Err(ConfigError::new(format!(
                    "mqtt client_id_prefix {prefix:?} cannot start client ids; write 1 to 64 characters without / + #"
                )));
            }
            config.client_id_prefix = prefix.clone();
        }
        match (&section.user, &section.password) {
            (Some(user), password) => {
                let password = password.clone().or_else(|| config.credentials.as_ref().map(|(_, p)| p.clone()));
                config.credentials = Some((user.clone(), password.unwrap_or_default()));
            }
            (None, Some(password)) => match &mut config.credentials {
                Some((_, old)) => *old = password.clone(),
                None => {
                    return Err(ConfigError::new(
                        "mqtt password is set without a user; set user too (PUREST_MQTT_USER)",
                    ));
                }
            },
            (None, None) => {}
        }
        if let Some(ca) = &section.tls_ca {
            config.tls_ca = Some(ca.clone());
        }
        let within = |key: &str, value: u64, low: u64, high: u64| setting_in_range("mqtt", key, value, low, high).map_err(ConfigError::new);
        if let Some(s) = section.keep_alive_s {
            config.keep_alive = Duration::from_secs(within("keep_alive_s", s, 5, 65_535)?);
        }
        if let Some(s) = section.session_expiry_s {
            config.session_expiry = Duration::from_secs(within("session_expiry_s", s, 1, u64::from(u32::MAX))?);
        }
        if let Some(n) = section.prefetch {
            config.prefetch = within("prefetch", n, 1, 65_535)? as u16;
        }
        if let Some(n) = section.max_packet_size {
            config.max_packet_size = within("max_packet_size", n, 1024, 268_435_455)? as u32;
        }
        if let Some(ms) = section.ack_timeout_ms {
            config.ack_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = section.connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }

    /// The URL with settings from `PUREST_MQTT_*` variables.
    pub fn from_url_and_env(url: &str) -> Result<Self, ConfigError> {
        Self::from_url_and_vars(url, |key| std::env::var(key).ok())
    }

    fn from_url_and_vars(url: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |key: &str| variable_number(&lookup, key).map_err(ConfigError::new);
        let section = MqttSection {
            client_id_prefix: lookup("PUREST_MQTT_CLIENT_ID_PREFIX"),
            user: lookup("PUREST_MQTT_USER"),
            password: lookup("PUREST_MQTT_PASSWORD"),
            tls_ca: lookup("PUREST_MQTT_TLS_CA").map(PathBuf::from),
            keep_alive_s: number("PUREST_MQTT_KEEP_ALIVE_S")?,
            session_expiry_s: number("PUREST_MQTT_SESSION_EXPIRY_S")?,
            prefetch: number("PUREST_MQTT_PREFETCH")?,
            max_packet_size: number("PUREST_MQTT_MAX_PACKET_SIZE")?,
            ack_timeout_ms: number("PUREST_MQTT_ACK_TIMEOUT_MS")?,
            connect_timeout_ms: number("PUREST_MQTT_CONNECT_TIMEOUT_MS")?,
        };
        Self::from_url_and_section(url, &section)
    }

    /// `mqtt://user@host:port`: the URL without its password, for logs and errors.
    pub fn shown(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = self.credentials.as_ref().map(|(user, _)| format!("{user}@")).unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{user}{host}:{}", self.port)
    }

    /// The TLS client settings: the system's roots and the configured CA, read now so a wrong
    /// path fails the start.
    pub(crate) fn tls_config(&self) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, ConfigError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        if !self.tls {
            return Ok(None);
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &self.tls_ca {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| ConfigError::new(format!("mqtt tls_ca {}: {e}; give the path of a PEM certificate", path.display())))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::new(format!("mqtt tls_ca {}: {e}", path.display())))?;
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(std::sync::Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_and_variables_override_the_url() {
        let vars = |key: &str| match key {
            "PUREST_MQTT_USER" => Some("billing".to_owned()),
            "PUREST_MQTT_PASSWORD" => Some("s3cret".to_owned()),
            "PUREST_MQTT_PREFETCH" => Some("64".to_owned()),
            "PUREST_MQTT_SESSION_EXPIRY_S" => Some("60".to_owned()),
            "PUREST_MQTT_CLIENT_ID_PREFIX" => Some("billing-0".to_owned()),
            _ => None,
        };
        let config = MqttConfig::from_url_and_vars("mqtt://guest:guest@127.0.0.1", vars).unwrap();
        assert_eq!(config.credentials, Some(("billing".to_owned(), "s3cret".to_owned())));
        assert_eq!((config.prefetch, config.session_expiry), (64, Duration::from_secs(60)));
        assert_eq!(config.client_id_prefix, "billing-0");
        assert_eq!(config.shown(), "mqtt://billing@127.0.0.1:1883");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(MqttConfig::from_url("mqtts://[::1]").unwrap().shown(), "mqtts://[::1]:8883");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = MqttConfig::from_url("mqtt://guest:hunter2@[bad").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(MqttConfig::from_url("mqtt://127.0.0.1/some/path").is_err());
        let err = MqttConfig::from_url_and_vars("mqtt://127.0.0.1", |k| (k == "PUREST_MQTT_PREFETCH").then(|| "lots".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PUREST_MQTT_PREFETCH"), "{err}");
        for section in [
            MqttSection {
                prefetch: Some(0),
                ..Default::default()
            },
            MqttSection {
                keep_alive_s: Some(1),
                ..Default::default()
            },
            MqttSection {
                client_id_prefix: Some("a/b".into()),
                ..Default::default()
            },
        ] {
            let err = MqttConfig::from_url_and_section("mqtt://127.0.0.1", &section)
                .unwrap_err()
                .to_string();
            assert!(err.contains("mqtt "), "{err}");
        }
        let missing_ca = MqttSection {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let config = MqttConfig::from_url_and_section("mqtts://127.0.0.1", &missing_ca).unwrap();
        assert!(config.tls_config().unwrap_err().to_string().contains("/nonexistent/ca.pem"));
    }
}
