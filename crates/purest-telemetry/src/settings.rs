//! What the standard OpenTelemetry variables ask for.

use opentelemetry_sdk::trace::Sampler;
use purest_core::BuildError;

/// How spans and metrics travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`; port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`, the default; port 4318).
    HttpProtobuf,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every trace (`always_on`).
    AlwaysOn,
    /// None (`always_off`).
    AlwaysOff,
    /// This share of traces, chosen by trace id (`traceidratio`).
    TraceIdRatio(f64),
    /// As the sender decided, else every trace (`parentbased_always_on`, the default).
    ParentBasedAlwaysOn,
    /// As the sender decided, else none (`parentbased_always_off`).
    ParentBasedAlwaysOff,
    /// As the sender decided, else this share (`parentbased_traceidratio`).
    ParentBasedTraceIdRatio(f64),
}

impl From<Sampling> for Sampler {
    fn from(sampling: Sampling) -> Self {
        match sampling {
            Sampling::AlwaysOn => Sampler::AlwaysOn,
            Sampling::AlwaysOff => Sampler::AlwaysOff,
            Sampling::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Sampling::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Sampling::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Sampling::ParentBasedTraceIdRatio(ratio) => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
        }
    }
}

/// What telemetry a process exports, read from the standard variables (and `[telemetry]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `service.name` of the spans and metrics (`OTEL_SERVICE_NAME`, else `purest`).
    pub service_name: String,
    /// Where traces go; `None`: no traces.
    pub traces: Option<TraceExport>,
    /// Where metrics go; `None`: no metrics.
    pub metrics: Option<MetricsExport>,
}

/// Traces exported over OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The collector's traces endpoint, a URL.
    pub endpoint: String,
    /// How to reach it.
    pub protocol: Protocol,
    /// Which traces are recorded.
    pub sampling: Sampling,
}

/// Where metrics go: pushed over OTLP, scraped as Prometheus text, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsExport {
    /// Pushed to this collector's metrics endpoint (`OTEL_METRICS_EXPORTER=otlp`).
    pub otlp: Option<OtlpMetrics>,
    /// Served as Prometheus text (`OTEL_METRICS_EXPORTER=prometheus`).
    pub prometheus: Option<PrometheusScrape>,
}

/// Metrics pushed over OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpMetrics {
    /// The collector's metrics endpoint, a URL.
    pub endpoint: String,
    /// How to reach it.
    pub protocol: Protocol,
    /// Time between pushes (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds; default 60 s).
    pub interval: std::time::Duration,
}

/// Where Prometheus scrapes `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrometheusScrape {
    /// On a listener of its own at `host:port` (`OTEL_EXPORTER_PROMETHEUS_HOST`, default
    /// `localhost`; `OTEL_EXPORTER_PROMETHEUS_PORT`, default 9464), open to whoever reaches it.
    Address(String),
    /// On the HTTP gateway, for requests bearing this token (`PUREST_METRICS_TOKEN`).
    Gateway {
        /// The bearer token a scraper must send.
        token: String,
    },
}

/// The variables read, and the keys of `[telemetry]` in `purest.toml` that stand for them (a
/// variable that is set wins over its key).
pub const ENV_KEYS: [(&str, &str); 16] = [
    ("OTEL_SDK_DISABLED", "disabled"),
    ("OTEL_SERVICE_NAME", "service_name"),
    ("OTEL_TRACES_EXPORTER", "traces_exporter"),
    ("OTEL_METRICS_EXPORTER", "metrics_exporter"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "protocol"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "traces_endpoint"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "traces_protocol"),
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "metrics_endpoint"),
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "metrics_protocol"),
    ("OTEL_TRACES_SAMPLER", "traces_sampler"),
    ("OTEL_TRACES_SAMPLER_ARG", "traces_sampler_arg"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "metric_export_interval"),
    ("OTEL_EXPORTER_PROMETHEUS_HOST", "prometheus_host"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "prometheus_port"),
    ("PUREST_METRICS_TOKEN", "metrics_token"),
];

fn invalid(key: &str, problem: String, accepted: &str) -> BuildError {
    BuildError::InvalidSetting {
        key: key.to_owned(),
        problem,
        accepted: accepted.to_owned(),
    }
}

/// The OTLP protocol `key` (or the general `OTEL_EXPORTER_OTLP_PROTOCOL`) names.
fn protocol(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Protocol, BuildError> {
    let (key, protocol) = match get(key) {
        Some(protocol) => (key, Some(protocol)),
        None => ("OTEL_EXPORTER_OTLP_PROTOCOL", get("OTEL_EXPORTER_OTLP_PROTOCOL")),
    };
    match protocol.as_deref() {
        None | Some("http/protobuf") => Ok(Protocol::HttpProtobuf),
        Some("grpc") => Ok(Protocol::Grpc),
        Some(other) => Err(invalid(
            key,
            format!("{other:?} is not a protocol purest speaks"),
            "grpc, http/protobuf",
        )),
    }
}

/// The endpoint of one signal: its own variable, else the general one with `/v1/<signal>` added
/// for HTTP, else the default collector when `asked`; `None` when none is set nor asked for.
fn endpoint(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    signal: &str,
    protocol: Protocol,
    asked: bool,
) -> Result<Option<String>, BuildError> {
    let (key, endpoint) = match (get(key), get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        (Some(endpoint), _) => (key, endpoint),
        (None, Some(base)) if protocol == Protocol::HttpProtobuf => {
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{}/v1/{signal}", base.trim_end_matches('/')))
        }
        (None, Some(base)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", base),
        (None, None) if asked => match protocol {
            Protocol::HttpProtobuf => (key, format!("http://localhost:4318/v1/{signal}")),
            Protocol::Grpc => (key, "http://localhost:4317".to_owned()),
        },
        (None, None) => return Ok(None),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(invalid(
            key,
            format!("{endpoint:?} is not an http:// or https:// URL"),
            "a URL such as http://localhost:4318",
        ));
    }
    Ok(Some(endpoint))
}

/// The exporters a `OTEL_*_EXPORTER` variable lists (comma-separated), checked against `known`.
fn exporters(get: &impl Fn(&str) -> Option<String>, key: &str, known: &[&str]) -> Result<Option<Vec<String>>, BuildError> {
    let Some(list) = get(key) else { return Ok(None) };
    let names: Vec<String> = list
        .split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if let Some(unknown) = names.iter().find(|name| !known.contains(&name.as_str())) {
        return Err(invalid(
            key,
            format!("{unknown:?} is not an exporter purest has"),
            &known.join(", "),
        ));
    }
    Ok(Some(names))
}

impl TelemetrySettings {
    /// Reads the variables of [`ENV_KEYS`] through `lookup`:
    ///
    /// - `OTEL_SDK_DISABLED=true` turns everything off.
    /// - Traces go over OTLP when an endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
    ///   `OTEL_EXPORTER_OTLP_ENDPOINT` to which `/v1/traces` is added for HTTP) or
    ///   `OTEL_TRACES_EXPORTER=otlp` asks for the default collector; `OTEL_TRACES_EXPORTER=none`
    ///   turns them off. `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` choose which.
    /// - Metrics go over OTLP likewise (`…_METRICS_ENDPOINT`, `/v1/metrics`), pushed every
    ///   `OTEL_METRIC_EXPORT_INTERVAL` ms; `OTEL_METRICS_EXPORTER` lists `otlp`, `prometheus`
    ///   or `none`. Prometheus text is served on `OTEL_EXPORTER_PROMETHEUS_HOST:PORT`, or, with
    ///   `PUREST_METRICS_TOKEN`, at `/metrics` on the HTTP gateway for that bearer token.
    ///
    /// `None` — telemetry off — when nothing asks for traces or metrics.
    ///
    /// ```
    /// use purest_telemetry::{PrometheusScrape, Protocol, Sampling, TelemetrySettings};
    /// let env = |pairs: &'static [(&'static str, &'static str)]| move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
    /// assert_eq!(TelemetrySettings::from_lookup(env(&[])).unwrap(), None);
    /// let on = TelemetrySettings::from_lookup(env(&[
    ///     ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
    ///     ("OTEL_SERVICE_NAME", "billing"),
    ///     ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ///     ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
    /// ])).unwrap().unwrap();
    /// let traces = on.traces.unwrap();
    /// assert_eq!(traces.endpoint, "http://collector:4318/v1/traces");
    /// assert_eq!((traces.protocol, traces.sampling), (Protocol::HttpProtobuf, Sampling::ParentBasedTraceIdRatio(0.01)));
    /// assert_eq!(on.metrics.unwrap().otlp.unwrap().endpoint, "http://collector:4318/v1/metrics");
    /// let scraped = TelemetrySettings::from_lookup(env(&[("OTEL_METRICS_EXPORTER", "prometheus")])).unwrap().unwrap();
    /// assert_eq!(scraped.traces, None);
    /// assert_eq!(scraped.metrics.unwrap().prometheus, Some(PrometheusScrape::Address("localhost:9464".into())));
    /// let bad = TelemetrySettings::from_lookup(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_TRACES_SAMPLER", "sometimes")]));
    /// assert!(bad.unwrap_err().to_string().contains("OTEL_TRACES_SAMPLER"));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, BuildError> {
        let get = |key: &str| lookup(key).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let traces = Self::traces(&get)?;
        let metrics = Self::metrics(&get)?;
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| "purest".into()),
            traces,
            metrics,
        }))
    }

    fn traces(get: &impl Fn(&str) -> Option<String>) -> Result<Option<TraceExport>, BuildError> {
        let asked = match exporters(get, "OTEL_TRACES_EXPORTER", &["otlp", "none"])? {
            Some(names) if names.iter().any(|name| name == "none") => return Ok(None),
            Some(names) => names.iter().any(|name| name == "otlp"),
            None => false,
        };
        let protocol = protocol(get, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?;
        let Some(endpoint) = endpoint(get, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "traces", protocol, asked)? else {
            return Ok(None);
        };
        let ratio = || -> Result<f64, BuildError> {
            let text = get("OTEL_TRACES_SAMPLER_ARG").unwrap_or_else(|| "1.0".into());
            text.parse::<f64>().ok().filter(|ratio| (0.0..=1.0).contains(ratio)).ok_or_else(|| {
                invalid(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("{text:?} is not a ratio"),
                    "a number from 0 to 1, such as 0.01",
                )
            })
        };
        let sampling = match get("OTEL_TRACES_SAMPLER").as_deref() {
            None | Some("parentbased_always_on") => Sampling::ParentBasedAlwaysOn,
            Some("always_on") => Sampling::AlwaysOn,
            Some("always_off") => Sampling::AlwaysOff,
            Some("traceidratio") => Sampling::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => Sampling::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => Sampling::ParentBasedTraceIdRatio(ratio()?),
            Some(other) => {
                return Err(invalid(
                    "OTEL_TRACES_SAMPLER",
                    format!("{other:?} is not a sampler purest has"),
                    "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
                ));
            }
        };
        Ok(Some(TraceExport {
            endpoint,
            protocol,
            sampling,
        }))
    }

    fn metrics(get: &impl Fn(&str) -> Option<String>) -> Result<Option<MetricsExport>, BuildError> {
        let named = exporters(get, "OTEL_METRICS_EXPORTER", &["otlp", "prometheus", "none"])?;
        let named = |exporter: &str| named.as_ref().is_some_and(|names| names.iter().any(|name| name == exporter));
        if named("none") {
            return Ok(None);
        }
        let protocol = protocol(get, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")?;
        let otlp = match endpoint(get, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "metrics", protocol, named("otlp"))? {
            // A general endpoint set for traces alone does not push metrics when the variable
            // lists other exporters.
            Some(_) if get("OTEL_METRICS_EXPORTER").is_some() && !named("otlp") => None,
            Some(endpoint) => {
                let interval = match get("OTEL_METRIC_EXPORT_INTERVAL") {
                    None => std::time::Duration::from_secs(60),
                    Some(text) => text
                        .parse::<u64>()
                        .ok()
                        .filter(|ms| *ms > 0)
                        .map(std::time::Duration::from_millis)
                        .ok_or_else(|| {
                            invalid(
                                "OTEL_METRIC_EXPORT_INTERVAL",
                                format!("{text:?} is not a number of milliseconds"),
                                "milliseconds above 0, such as 60000",
                            )
                        })?,
                };
                Some(OtlpMetrics {
                    endpoint,
                    protocol,
                    interval,
                })
            }
            None => None,
        };
        let prometheus = if named("prometheus") {
            Some(match get("PUREST_METRICS_TOKEN") {
                Some(token) => PrometheusScrape::Gateway { token },
                None => {
                    let host = get("OTEL_EXPORTER_PROMETHEUS_HOST").unwrap_or_else(|| "localhost".into());
                    let port = get("OTEL_EXPORTER_PROMETHEUS_PORT").unwrap_or_else(|| "9464".into());
                    if port.parse::<u16>().is_err() {
                        return Err(invalid(
                            "OTEL_EXPORTER_PROMETHEUS_PORT",
                            format!("{port:?} is not a port"),
                            "a port number such as 9464 (0 picks a free one)",
                        ));
                    }
                    PrometheusScrape::Address(format!("{host}:{port}"))
                }
            })
        } else {
            None
        };
        if otlp.is_none() && prometheus.is_none() {
            return Ok(None);
        }
        Ok(Some(MetricsExport { otlp, prometheus }))
    }
}

impl TraceExport {
    /// The OTLP exporter these settings describe.
    pub fn exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, BuildError> {
        use opentelemetry_otlp::WithExportConfig;
        let built = match self.protocol {
            Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(&self.endpoint)
                .build(),
            Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&self.endpoint)
                .build(),
        };
        built.map_err(|e| {
            invalid(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("no OTLP exporter for {}: {e}", self.endpoint),
                "a reachable collector URL",
            )
        })
    }
}

impl OtlpMetrics {
    /// The OTLP exporter these settings describe.
    pub fn exporter(&self) -> Result<opentelemetry_otlp::MetricExporter, BuildError> {
        use opentelemetry_otlp::WithExportConfig;
        let built = match self.protocol {
            Protocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(&self.endpoint)
                .build(),
            Protocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&self.endpoint)
                .build(),
        };
        built.map_err(|e| {
            invalid(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                format!("no OTLP exporter for {}: {e}", self.endpoint),
                "a reachable collector URL",
            )
        })
    }
}
