//! Prometheus' `/metrics`: on the gateway for scrapers bearing a token, or on a listener of its
//! own. The text comes from the metrics backend (`purest-telemetry`); this module only serves it.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::problem::Problem;

/// Renders the metrics as Prometheus text.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn text(render: &RenderMetrics) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT))], render()).into_response()
}

/// `/metrics` answering only requests with `Authorization: Bearer <token>`.
pub(crate) fn protected(render: RenderMetrics, token: &str) -> Router {
    let expected = crate::auth::digest(token.as_bytes());
    Router::new().route(
        "/metrics",
        get(move |request: Request| {
            let render = render.clone();
            async move {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "));
                // Digests compared, so the time taken says nothing about the token.
                if presented.is_some_and(|token| crate::auth::digest(token.trim().as_bytes()) == expected) {
                    text(&render)
                } else {
                    Problem::new(StatusCode::UNAUTHORIZED, "/metrics needs the metrics token as a bearer token")
                        .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"metrics\""))
                        .into_response()
                }
            }
        }),
    )
}

/// Serves `/metrics`, open to whoever reaches `listener`, until `shutdown` resolves.
///
/// ```
/// use std::sync::Arc;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let address = listener.local_addr().unwrap();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(purest_http::serve_metrics(listener, Arc::new(|| "up 1\n".to_owned()), async { stopped.await.ok(); }));
/// let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
/// let mut answer = String::new();
/// stream.read_to_string(&mut answer).await.unwrap();
/// assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("up 1\n"), "{answer}");
/// stop.send(()).unwrap();
/// server.await.unwrap().unwrap();
/// # });
/// ```
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    render: RenderMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new().route("/metrics", get(move || std::future::ready(text(&render))));
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
