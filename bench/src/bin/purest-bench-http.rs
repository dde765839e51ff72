//! HTTP servers for `bench/http-side-by-side.sh`, loaded by wrk on loopback:
//!
//! - `purest`: the purest gateway in front of commands on the in-memory bridge —
//!   `GET /api/v1/hello` (a public command answering a string) and `POST /api/v1/ping`
//!   (a validated JSON payload in, a JSON object out);
//! - `raw`: a plain axum hello world (`GET /` → `Hello, World!`), the baseline.
//!
//! Each prints `listening on http://…` and serves until stopped.

use clap::{Parser, ValueEnum};
use purest::http::Gateway;
use purest::http::axum::{self, Router, routing::get};
use purest::prelude::*;
use purest_bench::{Ping, Pong};

#[derive(Parser)]
#[command(about = "HTTP servers for the gateway benchmark")]
struct Args {
    /// Which server.
    #[arg(value_enum)]
    server: Server,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Server {
    Purest,
    Raw,
}

async fn hello() -> Result<String, HandledError> {
    Ok("Hello, World!".into())
}

async fn ping(Payload(ping): Payload<Ping>) -> Result<Pong, HandledError> {
    Ok(Pong { seq: ping.seq, ok: true })
}

#[tokio::main]
async fn main() -> purest::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    match args.server {
        Server::Purest => {
            let app = App::new()
                .service(
                    Service::new("bench", "1")
                        .command(Command::new("hello", hello).http(Method::GET, "hello").public())
                        .command(Command::new("ping", ping).http(Method::POST, "ping").public()),
                )
                .start()
                .await?;
            Gateway::new(&app).serve(listener, purest::host::shutdown_signal()).await?;
            app.shutdown().await;
        }
        Server::Raw => {
            let router = Router::new().route("/", get(|| async { "Hello, World!" }));
            axum::serve(listener, router)
                .with_graceful_shutdown(purest::host::shutdown_signal())
                .await?;
        }
    }
    Ok(())
}
