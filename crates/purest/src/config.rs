//! Settings from an optional `purest.toml` and the environment (the environment wins), read with
//! figment: the topology (bridge, which services run here), logging and per-service settings
//! here; `[http]`, `[nats]` and `[amqp]` belong to their crates (`purest::http::config::HttpSection`,
//! `purest::nats::NatsSection`, `purest::amqp::AmqpSection`), which say what they accept — this
//! module only merges them.
//!
//! ```toml
//! bridge = "nats://127.0.0.1:4222"     # PUREST_BRIDGE; default "memory"; or amqp://…
//! services = ["user", "email"]          # PUREST_SERVICES (comma-separated); default all; "none"
//!
//! [http]
//! address = "127.0.0.1:8080"            # PUREST_HTTP; "off" turns the gateway off
//! timeout_ms = 5000                     # PUREST_HTTP_TIMEOUT_MS: each request's deadline
//! api_keys = "ops=key-1"                # PUREST_HTTP_API_KEYS; also jwt_secret, jwt_public_key,
//!                                       # jwt_issuer, jwt_audience (PUREST_HTTP_JWT_*)
//! [nats]                                # see purest::nats::NatsSection (PUREST_NATS_*)
//! ack_wait_ms = 30000
//! [amqp]                                # see purest::amqp::AmqpSection (PUREST_AMQP_*)
//! prefetch = 256
//!
//! [telemetry]                           # OTEL_* variables; see docs/CONFIGURATION.md
//! endpoint = "http://collector:4318"    # OTEL_EXPORTER_OTLP_ENDPOINT: traces and metrics
//! metrics_exporter = "otlp,prometheus"  # OTEL_METRICS_EXPORTER; /metrics on localhost:9464
//!
//! [log]
//! level = "info"                        # PUREST_LOG (RUST_LOG wins when set)
//! format = "json"                       # PUREST_LOG_FORMAT: "text" (default) or "json"
//!
//! [service.email]
//! concurrency = 8                       # calls at once, for each command and subscription
//! [service.email.subscriptions.sendWelcomeMail]
//! durable = true
//! concurrency = 4
//! queue_capacity = 1024                 # in-memory bridge: messages held at most, then 503
//! retry = { attempts = 5, backoff_ms = 200, dead_letter = "email.dlq" }
//! ```
//!
//! The file is `PUREST_CONFIG` if set (it must then exist), else `./purest.toml` if there is one.
//! Unknown keys and bad values stop the start with an error naming the key, the file and line, and
//! what is accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use purest_core::{BuildError, Retry};
use serde::{Deserialize, Deserializer};

/// The variable naming the configuration file.
pub const CONFIG_FILE_VAR: &str = "PUREST_CONFIG";
/// The file read when `PUREST_CONFIG` is not set (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "purest.toml";

/// Environment variables of this module's own settings and the keys they set.
const ENV_KEYS: [(&str, &str); 4] = [
    ("PUREST_BRIDGE", "bridge"),
    ("PUREST_SERVICES", "services"),
    ("PUREST_LOG", "log.level"),
    ("PUREST_LOG_FORMAT", "log.format"),
];

/// Every variable the configuration reads, with the (dotted) key it sets: this module's and each
/// section's (see `docs/CONFIGURATION.md`).
pub fn variables() -> Vec<(&'static str, String)> {
    let mut keys: Vec<(&'static str, String)> = ENV_KEYS.iter().map(|(var, key)| (*var, (*key).to_owned())).collect();
    #[cfg(feature = "http")]
    keys.extend(purest_http::config::ENV_KEYS.iter().map(|(var, key)| (*var, format!("http.{key}"))));
    #[cfg(feature = "nats")]
    keys.extend(purest_nats::ENV_KEYS.iter().map(|(var, key)| (*var, format!("nats.{key}"))));
    #[cfg(feature = "amqp")]
    keys.extend(purest_amqp::ENV_KEYS.iter().map(|(var, key)| (*var, format!("amqp.{key}"))));
    #[cfg(feature = "mqtt")]
    keys.extend(purest_mqtt::ENV_KEYS.iter().map(|(var, key)| (*var, format!("mqtt.{key}"))));
    #[cfg(feature = "redis")]
    keys.extend(purest_redis::ENV_KEYS.iter().map(|(var, key)| (*var, format!("redis.{key}"))));
    #[cfg(feature = "telemetry")]
    keys.extend(
        purest_telemetry::ENV_KEYS
            .iter()
            .map(|(var, key)| (*var, format!("telemetry.{key}"))),
    );
    keys
}

/// Whether `key` is a number of the `[mqtt]` or `[redis]` section.
fn is_section_number(key: &str) -> bool {
    #[cfg(feature = "mqtt")]
    if let Some(key) = key.strip_prefix("mqtt.") {
        return purest_mqtt::NUMBER_KEYS.contains(&key);
    }
    #[cfg(feature = "redis")]
    if let Some(key) = key.strip_prefix("redis.") {
        return purest_redis::NUMBER_KEYS.contains(&key);
    }
    let _ = key;
    false
}

/// Everything the configuration can say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The bridge URL (`memory`, `nats://…`, `amqp://…`, `mqtt://…`, `redis://…`).
    #[serde(default, deserialize_with = "text")]
    pub bridge: Option<String>,
    /// The services this process runs.
    #[serde(default)]
    pub services: Option<ServiceList>,
    /// The HTTP gateway (`[http]`, owned by `purest-http`).
    #[cfg(feature = "http")]
    #[serde(default)]
    pub http: purest_http::config::HttpSection,
    /// The NATS bridge (`[nats]`, owned by `purest-nats`).
    #[cfg(feature = "nats")]
    #[serde(default)]
    pub nats: purest_nats::NatsSection,
    /// The RabbitMQ bridge (`[amqp]`, owned by `purest-amqp`).
    #[cfg(feature = "amqp")]
    #[serde(default)]
    pub amqp: purest_amqp::AmqpSection,
    /// The MQTT bridge (`[mqtt]`, owned by `purest-mqtt`).
    #[cfg(feature = "mqtt")]
    #[serde(default)]
    pub mqtt: purest_mqtt::MqttSection,
    /// The Redis bridge (`[redis]`, owned by `purest-redis`).
    #[cfg(feature = "redis")]
    #[serde(default)]
    pub redis: purest_redis::RedisSection,
    /// Traces and metrics (`[telemetry]`; its keys stand for the `OTEL_*` variables, see
    /// `purest_telemetry::ENV_KEYS`).
    #[cfg(feature = "telemetry")]
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// Settings per service, by service name.
    #[serde(default)]
    pub service: BTreeMap<String, ServiceSection>,
    /// Where the file settings came from, if a file was read.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// Services to run: `"user,email"` or `["user", "email"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ServiceList {
    /// Comma-separated.
    Text(String),
    /// A list.
    List(Vec<String>),
}

impl ServiceList {
    /// As one comma-separated text, the form `PUREST_SERVICES` takes.
    pub fn joined(&self) -> String {
        match self {
            ServiceList::Text(text) => text.clone(),
            ServiceList::List(names) => names.join(","),
        }
    }
}

/// `[telemetry]`: `endpoint = "http://collector:4318"`, `metrics_exporter = "prometheus"`, …
/// — each key of `purest_telemetry::ENV_KEYS` (the variable it stands for wins when set).
#[cfg(feature = "telemetry")]
#[derive(Debug, Default, Clone)]
pub struct TelemetrySection(BTreeMap<String, String>);

#[cfg(feature = "telemetry")]
impl TelemetrySection {
    /// The value of the variable `var` (`OTEL_SERVICE_NAME`), as its key sets it.
    pub fn get(&self, var: &str) -> Option<String> {
        let (_, key) = purest_telemetry::ENV_KEYS.iter().find(|(known, _)| *known == var)?;
        self.0.get(*key).cloned()
    }
}

#[cfg(feature = "telemetry")]
impl<'de> Deserialize<'de> for TelemetrySection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The keys `[telemetry]` takes, for the error naming them.
        static KEYS: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(|| purest_telemetry::ENV_KEYS.iter().map(|(_, key)| *key).collect());
        let entries = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
        let mut section = BTreeMap::new();
        for (key, value) in entries {
            if !KEYS.contains(&key.as_str()) {
                return Err(serde::de::Error::unknown_field(&key, &KEYS));
            }
            section.insert(key, value.into_text());
        }
        Ok(Self(section))
    }
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A `tracing` filter (`info`, `purest=debug,warn`).
    #[serde(default, deserialize_with = "text")]
    pub level: Option<String>,
    /// Line format.
    #[serde(default)]
    pub format: Option<LogFormat>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable (the default).
    Text,
    /// One JSON object per line.
    Json,
}

/// `[service.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Calls at once (per instance) for each of the service's commands and subscriptions.
    pub concurrency: Option<usize>,
    /// Settings per subscription, by name.
    #[serde(default)]
    pub subscriptions: BTreeMap<String, SubscriptionSection>,
}

/// `[service.<name>.subscriptions.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSection {
    /// Handlers at once.
    pub concurrency: Option<usize>,
    /// Messages the in-memory bridge holds for it at most (queued, running, waiting to retry).
    pub queue_capacity: Option<usize>,
    /// At-least-once delivery.
    pub durable: Option<bool>,
    /// Retry policy.
    pub retry: Option<RetrySection>,
}

/// `retry = { attempts?, backoff_ms?, dead_letter? }`: what is not given stays as the code set it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts in all, the first included.
    pub attempts: Option<u32>,
    /// Delay before the second attempt, doubled for each further one.
    pub backoff_ms: Option<u64>,
    /// The event a given-up message is emitted as.
    pub dead_letter: Option<String>,
}

impl RetrySection {
    /// `current` with these settings applied.
    pub fn apply(&self, current: &Retry) -> Retry {
        let mut retry = current.clone();
        if let Some(attempts) = self.attempts {
            retry.max_attempts = attempts.max(1);
        }
        if let Some(ms) = self.backoff_ms {
            retry = retry.backoff(Duration::from_millis(ms));
        }
        if let Some(dead_letter) = &self.dead_letter {
            retry = retry.dead_letter(dead_letter);
        }
        retry
    }
}

/// A value written as text, number or switch, read as the text it stands for.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(text) => text,
            Scalar::Integer(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// Any scalar as text: environment values that look like numbers stay the strings they are.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(Scalar::into_text))
}

impl Settings {
    /// Reads `PUREST_CONFIG` (or `./purest.toml`) and the environment.
    pub fn load() -> Result<Self, BuildError> {
        let file = match std::env::var_os(CONFIG_FILE_VAR) {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(BuildError::InvalidSetting {
                        key: CONFIG_FILE_VAR.into(),
                        problem: format!("{} is not a readable file", path.display()),
                        accepted: "the path of a TOML configuration file".into(),
                    });
                }
                Some(path)
            }
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.is_file()),
        };
        Self::load_from(file.as_deref(), |key| std::env::var(key).ok())
    }

    /// Reads `file` (if any) and the variables `lookup` finds; the variables win.
    pub fn load_from(file: Option<&Path>, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let env: Vec<(String, String)> = variables()
            .into_iter()
            .filter_map(|(var, key)| lookup(var).map(|value| (key, value)))
            .collect();
        // Each variable merged as the (dotted) key it sets, so errors can name the variable.
        for (key, value) in env {
            // Text stays text (secrets and lists may look like anything); milliseconds and
            // switches parse (else they stay text, and the error names the variable).
            let value = if key.ends_with("_ms") || key == "amqp.prefetch" || is_section_number(&key) {
                value
                    .trim()
                    .parse::<u64>()
                    .map_or_else(|_| figment::value::Value::from(value), figment::value::Value::from)
            } else if key == "nats.tls" {
                match value.trim() {
                    "1" | "true" | "yes" => figment::value::Value::from(true),
                    "0" | "false" | "no" | "" => figment::value::Value::from(false),
                    _ => figment::value::Value::from(value),
                }
            } else {
                figment::value::Value::from(value)
            };
            figment = figment.merge((key, value));
        }
        let mut settings: Settings = figment.extract().map_err(|error| explain(error, file))?;
        if let Some(level) = &settings.log.level
            && let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
        {
            return Err(BuildError::InvalidSetting {
                key: "log level (PUREST_LOG or [log] level)".into(),
                problem: format!("{level:?} is not a filter: {e}"),
                accepted: "a level (`error`, `warn`, `info`, `debug`, `trace`) or directives like `purest=debug,warn`".into(),
            });
        }
        settings.file = file.map(Path::to_path_buf);
        Ok(settings)
    }

    /// The topology in the `lookup` form `Host::configure` takes: `PUREST_BRIDGE`,
    /// `PUREST_SERVICES`.
    pub fn lookup(&self, key: &str) -> Option<String> {
        match key {
            "PUREST_BRIDGE" => self.bridge.clone(),
            "PUREST_SERVICES" => self.services.as_ref().map(ServiceList::joined),
            _ => None,
        }
    }
}

/// A figment error as one sentence: where (file and line, or the variable), which key, what is
/// wrong and what is accepted.
fn explain(error: figment::Error, file: Option<&Path>) -> BuildError {
    let key = error.path.join(".");
    let from_file = error
        .metadata
        .as_ref()
        .and_then(|m| m.source.as_ref())
        .and_then(|source| source.file_path().map(Path::to_path_buf));
    let place = match (&from_file, file) {
        (Some(path), _) => {
            let line = std::fs::read_to_string(path).ok().and_then(|text| line_of(&text, &error.path));
            match line {
                Some(line) => format!("{} line {line}", path.display()),
                None => path.display().to_string(),
            }
        }
        _ => match variables().into_iter().find(|(_, k)| *k == key) {
            Some((var, _)) => format!("environment variable {var}"),
            None => "the configuration".to_owned(),
        },
    };
    let key_shown = if key.is_empty() { String::new() } else { format!(" (key `{key}`)") };
    BuildError::InvalidSetting {
        key: format!("{place}{key_shown}"),
        problem: error.kind.to_string(),
        accepted:
            "the keys and values documented in `purest::config` (bridge, services, [http], [nats], [amqp], [mqtt], [redis], [log], [service.<name>])"
                .to_owned(),
    }
}

/// The line where `path` (`["service", "email", "concurency"]`) is set in a TOML text: its key
/// under the table holding it, else a line naming the key after that table's header, else the
/// table's header.
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let last = path.last()?;
    let (mut table, mut header, mut mention) = (Vec::<String>::new(), None, None);
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = trimmed
                .trim_matches(['[', ']'])
                .split('.')
                .map(|s| s.trim().trim_matches('"').to_owned())
                .collect();
            if table.as_slice() == path {
                header = Some(n + 1);
            }
            continue;
        }
        if !path.starts_with(&table) {
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or("").trim().trim_matches('"');
        if key == last {
            return Some(n + 1);
        }
        if mention.is_none() && trimmed.contains(last.as_str()) {
            mention = Some(n + 1);
        }
    }
    mention.or(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn file_and_environment_merge_and_the_environment_wins() {
        let file = write(
            "bridge = \"nats://127.0.0.1:4222\"\nservices = [\"user\", \"email\"]\n[http]\naddress = \"127.0.0.1:9000\"\n[service.email.subscriptions.sendWelcomeMail]\nconcurrency = 4\nqueue_capacity = 64\nretry = { attempts = 3, backoff_ms = 50 }\n",
        );
        let settings = Settings::load_from(Some(file.path()), |key| (key == "PUREST_HTTP").then(|| "off".to_owned())).unwrap();
        assert_eq!(settings.lookup("PUREST_BRIDGE").as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(settings.lookup("PUREST_SERVICES").as_deref(), Some("user,email"));
        assert_eq!(settings.http.address.as_deref(), Some("off"));
        let sub = &settings.service["email"].subscriptions["sendWelcomeMail"];
        assert_eq!((sub.concurrency, sub.queue_capacity), (Some(4), Some(64)));
        let retry = sub.retry.as_ref().unwrap().apply(&Retry::exponential(5).dead_letter("x.dlq"));
        assert_eq!((retry.max_attempts, &*retry.dead_letter), (3, "x.dlq"));
    }

    #[test]
    fn secrets_that_look_like_numbers_stay_text() {
        let settings = Settings::load_from(None, |key| (key == "PUREST_HTTP_API_KEYS").then(|| "12345".to_owned())).unwrap();
        assert_eq!(settings.http.api_keys.as_deref(), Some("12345"));
        let settings = Settings::load_from(None, |key| match key {
            "PUREST_HTTP_API_KEYS" => Some("ops=[key]".to_owned()),
            "PUREST_HTTP_TIMEOUT_MS" => Some("2000".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (settings.http.api_keys.as_deref(), settings.http.timeout_ms),
            (Some("ops=[key]"), Some(2000))
        );
    }

    #[test]
    fn a_typo_names_the_key_file_and_line_and_what_is_accepted() {
        let file = write("bridge = \"memory\"\n\n[service.email]\nconcurency = 8\n");
        let err = Settings::load_from(Some(file.path()), |_| None).err().unwrap().to_string();
        assert!(err.contains(&format!("{} line 4", file.path().display())), "{err}");
        assert!(err.contains("concurency") && err.contains("concurrency"), "{err}");

        let file = write("[log]\nformat = \"xml\"\n");
        let err = Settings::load_from(Some(file.path()), |_| None).err().unwrap().to_string();
        assert!(err.contains("line 2") && err.contains("`text`") && err.contains("`json`"), "{err}");

        let err = Settings::load_from(None, |key| (key == "PUREST_LOG_FORMAT").then(|| "xml".to_owned()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("environment variable PUREST_LOG_FORMAT (key `log.format`)"),
            "{err}"
        );
    }

    #[test]
    fn the_amqp_section_belongs_to_purest_amqp_and_its_variables_win() {
        let file = write("bridge = \"amqp://127.0.0.1:5672/%2f\"\n[amqp]\nname = \"billing\"\nprefetch = 32\nuser = \"billing\"\n");
        let settings = Settings::load_from(Some(file.path()), |key| match key {
            "PUREST_AMQP_PREFETCH" => Some("64".to_owned()),
            "PUREST_AMQP_PASSWORD" => Some("s3cret".to_owned()),
            _ => None,
        })
        .unwrap();
        let config = purest_amqp::AmqpConfig::from_url_and_section("amqp://127.0.0.1:5672/%2f", &settings.amqp).unwrap();
        assert_eq!(config.name.as_deref(), Some("billing"));
        assert_eq!(config.prefetch, 64, "the variable wins");
        assert_eq!(config.uri.authority.userinfo.password, "s3cret");
        assert!(!format!("{:?}", settings.amqp).contains("s3cret"));

        let err = Settings::load_from(Some(file.path()), |key| (key == "PUREST_AMQP_PREFETCH").then(|| "lots".to_owned()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("PUREST_AMQP_PREFETCH"), "names the variable: {err}");
    }

    #[test]
    fn the_mqtt_section_belongs_to_purest_mqtt_and_its_variables_win() {
        let file =
            write("bridge = \"mqtt://127.0.0.1:1883\"\n[mqtt]\nclient_id_prefix = \"billing-0\"\nprefetch = 32\nuser = \"billing\"\n");
        let settings = Settings::load_from(Some(file.path()), |key| match key {
            "PUREST_MQTT_PREFETCH" => Some("64".to_owned()),
            "PUREST_MQTT_SESSION_EXPIRY_S" => Some("60".to_owned()),
            "PUREST_MQTT_PASSWORD" => Some("s3cret".to_owned()),
            _ => None,
        })
        .unwrap();
        let config = purest_mqtt::MqttConfig::from_url_and_section("mqtt://127.0.0.1:1883", &settings.mqtt).unwrap();
        assert_eq!(config.client_id_prefix, "billing-0");
        assert_eq!(config.prefetch, 64, "the variable wins");
        assert_eq!(config.session_expiry, std::time::Duration::from_secs(60));
        assert_eq!(config.credentials, Some(("billing".to_owned(), "s3cret".to_owned())));
        assert!(!format!("{:?}", settings.mqtt).contains("s3cret"));

        let err = Settings::load_from(Some(file.path()), |key| (key == "PUREST_MQTT_PREFETCH").then(|| "lots".to_owned()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("PUREST_MQTT_PREFETCH"), "names the variable: {err}");
    }

    #[test]
    fn the_redis_section_belongs_to_purest_redis_and_its_variables_win() {
        let file = write("bridge = \"redis://127.0.0.1:6379\"\n[redis]\nkey_prefix = \"billing\"\nprefetch = 32\nuser = \"billing\"\n");
        let settings = Settings::load_from(Some(file.path()), |key| match key {
            "PUREST_REDIS_PREFETCH" => Some("64".to_owned()),
            "PUREST_REDIS_CLAIM_IDLE_MS" => Some("5000".to_owned()),
            "PUREST_REDIS_PASSWORD" => Some("s3cret".to_owned()),
            _ => None,
        })
        .unwrap();
        let config = purest_redis::RedisConfig::from_url_and_section("redis://127.0.0.1:6379", &settings.redis).unwrap();
        assert_eq!(config.key_prefix, "billing");
        assert_eq!(config.prefetch, 64, "the variable wins");
        assert_eq!(config.claim_idle, std::time::Duration::from_secs(5));
        assert_eq!(config.connection.redis_settings().password(), Some("s3cret"));
        assert!(!format!("{:?}", settings.redis).contains("s3cret"));

        let err = Settings::load_from(Some(file.path()), |key| (key == "PUREST_REDIS_MAX_LEN").then(|| "lots".to_owned()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("PUREST_REDIS_MAX_LEN"), "names the variable: {err}");
    }

    #[test]
    fn the_nats_section_belongs_to_purest_nats_and_its_variables_win() {
        let file = write("bridge = \"nats://127.0.0.1:4222\"\n[nats]\nname = \"billing\"\nack_wait_ms = 5000\ntls = false\n");
        let settings = Settings::load_from(Some(file.path()), |key| match key {
            "PUREST_NATS_ACK_WAIT_MS" => Some("7000".to_owned()),
            "PUREST_NATS_TLS" => Some("1".to_owned()),
            _ => None,
        })
        .unwrap();
        let config = purest_nats::NatsConfig::from_url_and_section("nats://127.0.0.1:4222", &settings.nats).unwrap();
        assert_eq!(config.name.as_deref(), Some("billing"));
        assert_eq!(config.ack_wait, Some(Duration::from_millis(7000)), "the variable wins");
        assert!(config.tls, "PUREST_NATS_TLS=1 wins over the file");

        let file = write("[nats]\nack_wait = 5000\n");
        let err = Settings::load_from(Some(file.path()), |_| None).err().unwrap().to_string();
        assert!(
            err.contains("line 2") && err.contains("ack_wait_ms"),
            "names the line and the accepted keys: {err}"
        );
        let err = Settings::load_from(None, |key| (key == "PUREST_NATS_CONNECT_TIMEOUT_MS").then(|| "soon".to_owned()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("environment variable PUREST_NATS_CONNECT_TIMEOUT_MS"), "{err}");
    }
}
