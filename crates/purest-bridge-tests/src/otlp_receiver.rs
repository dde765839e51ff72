//! An OTLP receiver on loopback for traces and metrics, over HTTP (`/v1/traces`, `/v1/metrics`,
//! protobuf) and gRPC: what the telemetry tests export to, as a collector would receive it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// One span as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// OTLP's span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// Its attributes whose values are strings or integers, as text.
    pub attributes: Vec<(String, String)>,
}

/// One data point of a metric as received: a sum's value, a gauge's, or a histogram's count.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// The metric's name.
    pub metric: String,
    /// The point's attributes whose values are strings or integers, as text.
    pub attributes: Vec<(String, String)>,
    /// The value (for a histogram, how many values it counted).
    pub value: f64,
}

impl ReceivedPoint {
    /// Whether the point has the attribute `key` = `value`.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.attributes.iter().any(|(k, v)| k == key && v == value)
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;
type Points = Arc<Mutex<Vec<ReceivedPoint>>>;

/// A receiver running until dropped.
pub struct OtlpReceiver {
    spans: Spans,
    points: Points,
    http: String,
    grpc: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Listens on two free loopback ports, one per protocol.
    pub async fn start() -> Self {
        let spans = Spans::default();
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let http = format!("http://{}", http_listener.local_addr().expect("an address"));
        let grpc = format!("http://{}", grpc_listener.local_addr().expect("an address"));
        let points = Points::default();
        let received = spans.clone();
        let received_points = points.clone();
        let router = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let received = received.clone();
                    async move {
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(request) => {
                                record(&received, request);
                                let response = ExportTraceServiceResponse::default().encode_to_vec();
                                ([(axum::http::header::CONTENT_TYPE, "application/x-protobuf")], response)
                            }
                            Err(_) => ([(axum::http::header::CONTENT_TYPE, "text/plain")], b"not an OTLP request".to_vec()),
                        }
                    }
                }),
            )
            .route(
                "/v1/metrics",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let received = received_points.clone();
                    async move {
                        match ExportMetricsServiceRequest::decode(body) {
                            Ok(request) => {
                                record_points(&received, request);
                                let response = ExportMetricsServiceResponse::default().encode_to_vec();
                                ([(axum::http::header::CONTENT_TYPE, "application/x-protobuf")], response)
                            }
                            Err(_) => ([(axum::http::header::CONTENT_TYPE, "text/plain")], b"not an OTLP request".to_vec()),
                        }
                    }
                }),
            );
        let serve_http = tokio::spawn(async move {
            let _ = axum::serve(http_listener, router).await;
        });
        let traces = TraceServiceServer::new(Grpc(spans.clone(), points.clone()));
        let metrics = MetricsServiceServer::new(Grpc(spans.clone(), points.clone()));
        let serve_grpc = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
            let _ = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming(incoming)
                .await;
        });
        Self {
            spans,
            points,
            http,
            grpc,
            tasks: vec![serve_http, serve_grpc],
        }
    }

    /// The base URL for OTLP over HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn http_endpoint(&self) -> &str {
        &self.http
    }

    /// The URL for OTLP over gRPC.
    pub fn grpc_endpoint(&self) -> &str {
        &self.grpc
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every metric data point received so far.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (up to 20 s) until `done` holds for the spans received, and returns them.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "{what}: not within 20 s; received {spans:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The gRPC side.
struct Grpc(Spans, Points);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        record_points(&self.1, request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The `service.name` of a resource.
fn service_of(resource: Option<&Resource>) -> String {
    resource
        .iter()
        .flat_map(|resource| &resource.attributes)
        .find(|attribute| attribute.key == "service.name")
        .and_then(|attribute| match attribute.value.as_ref()?.value.as_ref()? {
            Value::StringValue(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Attributes whose values are strings or integers, as text.
fn texts(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .filter_map(|attribute| {
            let value = match attribute.value.as_ref()?.value.as_ref()? {
                Value::StringValue(text) => text.clone(),
                Value::IntValue(number) => number.to_string(),
                _ => return None,
            };
            Some((attribute.key.clone(), value))
        })
        .collect()
}

fn record_points(points: &Points, request: ExportMetricsServiceRequest) {
    let mut received = points.lock().unwrap_or_else(|e| e.into_inner());
    for resource_metrics in request.resource_metrics {
        let service = service_of(resource_metrics.resource.as_ref());
        for metric in resource_metrics.scope_metrics.into_iter().flat_map(|scope| scope.metrics) {
            let point = |attributes: &[KeyValue], value: f64| ReceivedPoint {
                service: service.clone(),
                metric: metric.name.clone(),
                attributes: texts(attributes),
                value,
            };
            let number = |value: Option<number_data_point::Value>| match value {
                Some(number_data_point::Value::AsDouble(value)) => value,
                Some(number_data_point::Value::AsInt(value)) => value as f64,
                None => 0.0,
            };
            match &metric.data {
                Some(Data::Sum(sum)) => received.extend(sum.data_points.iter().map(|p| point(&p.attributes, number(p.value)))),
                Some(Data::Gauge(gauge)) => received.extend(gauge.data_points.iter().map(|p| point(&p.attributes, number(p.value)))),
                Some(Data::Histogram(histogram)) => {
                    received.extend(histogram.data_points.iter().map(|p| point(&p.attributes, p.count as f64)))
                }
                _ => {}
            }
        }
    }
}

fn record(spans: &Spans, request: ExportTraceServiceRequest) {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut received = spans.lock().unwrap_or_else(|e| e.into_inner());
    for resource_spans in request.resource_spans {
        let service = service_of(resource_spans.resource.as_ref());
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let attributes = texts(&span.attributes);
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes,
                });
            }
        }
    }
}
