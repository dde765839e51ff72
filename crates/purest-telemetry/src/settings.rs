//! What the standard OpenTelemetry variables ask for.

use opentelemetry_sdk::trace::Sampler;
use purest_core::BuildError;

/// How spans travel to the collector.
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

/// Where traces go, read from the standard variables.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `service.name` of the spans (`OTEL_SERVICE_NAME`, else `purest`).
    pub service_name: String,
    /// The collector's traces endpoint, a URL.
    pub endpoint: String,
    /// How to reach it.
    pub protocol: Protocol,
    /// Which traces are recorded.
    pub sampling: Sampling,
}

fn invalid(key: &str, problem: String, accepted: &str) -> BuildError {
    BuildError::InvalidSetting {
        key: key.to_owned(),
        problem,
        accepted: accepted.to_owned(),
    }
}

impl TelemetrySettings {
    /// Reads `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp` or `none`),
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` (to which
    /// `/v1/traces` is added for HTTP), `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG` through `lookup`. `None` — telemetry off — when no endpoint is
    /// set (and `OTEL_TRACES_EXPORTER` does not ask for OTLP), or when disabled.
    ///
    /// ```
    /// use purest_telemetry::{Protocol, Sampling, TelemetrySettings};
    /// let env = |pairs: &'static [(&'static str, &'static str)]| move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
    /// assert_eq!(TelemetrySettings::from_lookup(env(&[])).unwrap(), None);
    /// let on = TelemetrySettings::from_lookup(env(&[
    ///     ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
    ///     ("OTEL_SERVICE_NAME", "billing"),
    ///     ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ///     ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
    /// ])).unwrap().unwrap();
    /// assert_eq!(on.endpoint, "http://collector:4318/v1/traces");
    /// assert_eq!((on.protocol, on.sampling), (Protocol::HttpProtobuf, Sampling::ParentBasedTraceIdRatio(0.01)));
    /// let bad = TelemetrySettings::from_lookup(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_TRACES_SAMPLER", "sometimes")]));
    /// assert!(bad.unwrap_err().to_string().contains("OTEL_TRACES_SAMPLER"));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, BuildError> {
        let get = |key: &str| lookup(key).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let exporter = get("OTEL_TRACES_EXPORTER");
        match exporter.as_deref() {
            Some("none") => return Ok(None),
            None | Some("otlp") => {}
            Some(other) => {
                return Err(invalid(
                    "OTEL_TRACES_EXPORTER",
                    format!("{other:?} is not an exporter purest has"),
                    "otlp, none",
                ));
            }
        }
        let (protocol_key, protocol) = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(protocol) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(protocol)),
            None => ("OTEL_EXPORTER_OTLP_PROTOCOL", get("OTEL_EXPORTER_OTLP_PROTOCOL")),
        };
        let protocol = match protocol.as_deref() {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(invalid(
                    protocol_key,
                    format!("{other:?} is not a protocol purest speaks"),
                    "grpc, http/protobuf",
                ));
            }
        };
        let endpoint = match (get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(endpoint), _) => endpoint,
            (None, Some(base)) if protocol == Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, Some(base)) => base,
            (None, None) if exporter.is_some() => match protocol {
                Protocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_owned(),
                Protocol::Grpc => "http://localhost:4317".to_owned(),
            },
            (None, None) => return Ok(None),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(invalid(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{endpoint:?} is not an http:// or https:// URL"),
                "a URL such as http://localhost:4318",
            ));
        }
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
        Ok(Some(Self {
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| "purest".into()),
            endpoint,
            protocol,
            sampling,
        }))
    }

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
