//! Services and a running gateway for the HTTP and WebSocket tests.
#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use purest_core::prelude::*;
use purest_core::{MemoryBridge, RunningApp};
use purest_http::{ApiKeyAuthenticator, Gateway, Identity, JwtAuthenticator};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
pub const API_KEY: &str = "test-api-key-1";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
struct NewUser {
    #[garde(length(min = 1, max = 40))]
    name: String,
    #[garde(email)]
    email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
struct UserQuery {
    #[garde(length(min = 1))]
    id: String,
    #[garde(skip)]
    verbose: Option<bool>,
    #[garde(range(min = 1, max = 10))]
    limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct Who {
    pub principal: Option<String>,
    pub tenant: Option<String>,
}

type Users = Arc<Mutex<Vec<User>>>;
pub type Seen = Arc<Mutex<Vec<Who>>>;

async fn register(State(users): State<Users>, Payload(new): Payload<NewUser>) -> Result<User, HandledError> {
    let mut users = users.lock().unwrap();
    if users.iter().any(|u| u.email == new.email) {
        return Err(HandledError::conflict("email already registered").with_data(json!({"field": "email"})));
    }
    let user = User {
        id: format!("u{}", users.len() + 1),
        name: new.name,
        email: new.email,
    };
    users.push(user.clone());
    Ok(user)
}

async fn get_user(State(users): State<Users>, Params(query): Params<UserQuery>) -> Result<Value, HandledError> {
    let users = users.lock().unwrap();
    let user = users
        .iter()
        .find(|u| u.id == query.id)
        .ok_or_else(|| HandledError::not_found("no such user"))?;
    Ok(json!({"user": user, "verbose": query.verbose, "limit": query.limit}))
}

async fn delete_user(Params(query): Params<UserQuery>) -> Result<(), HandledError> {
    tracing::info!(id = %query.id, "deleted");
    Ok(())
}

/// Asks another command who is calling, so the test sees what travels downstream.
async fn whoami(ctx: Context) -> Result<Who, HandledError> {
    ctx.emit(
        "identitySeen",
        Who {
            principal: ctx.principal_id().map(str::to_owned),
            tenant: ctx.tenant_id().map(str::to_owned),
        },
    )
    .await?;
    ctx.invoke(("user", "1", "echoIdentity"), ()).await
}

async fn echo_identity(ctx: Context) -> Result<Who, HandledError> {
    Ok(Who {
        principal: ctx.principal_id().map(str::to_owned),
        tenant: ctx.tenant_id().map(str::to_owned),
    })
}

async fn record_identity(ctx: Context, State(seen): State<Seen>) -> Result<(), HandledError> {
    seen.lock().unwrap().push(Who {
        principal: ctx.principal_id().map(str::to_owned),
        tenant: ctx.tenant_id().map(str::to_owned),
    });
    Ok(())
}

async fn slow() -> Result<String, HandledError> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok("late".into())
}

/// A resolver whose result is not ready: taken, to be read later.
async fn later() -> Result<String, HandledError> {
    Err(HandledError::accepted("/api/v1/users/u9"))
}

async fn fail() -> Result<String, Error> {
    Err(Error::msg("database password is hunter2"))
}

fn services(seen: &Seen) -> Vec<Service> {
    let users: Users = Arc::default();
    vec![
        Service::new("user", "1")
            .description("Registers users")
            .state(users)
            .command(
                Command::new("registerNewUser", register)
                    .description("Registers a user")
                    .http(Method::POST, "users")
                    .public()
                    .http_error(409, "email already registered"),
            )
            .command(
                Command::new("getUser", get_user)
                    .http(Method::GET, "users/{id}")
                    .http_error(404, "no such user"),
            )
            .command(
                Command::new("deleteUser", delete_user)
                    .http(Method::DELETE, "users/{id}")
                    .before_guard("admins only", |input: GuardInput| async move {
                        match input.principal_id() {
                            Some("admin") => Ok(()),
                            _ => Err(HandledError::forbidden("only admins may delete users")),
                        }
                    }),
            )
            .command(Command::new("whoami", whoami).http(Method::GET, "whoami"))
            .command(Command::new("echoIdentity", echo_identity))
            .command(Command::new("slow", slow).http(Method::GET, "slow").public())
            .command(Command::new("fail", fail).http(Method::GET, "fail").public())
            .command(
                Command::new("later", later)
                    .http(Method::POST, "later")
                    .public()
                    .http_error(202, "taken; GET the Location later"),
            )
            .websocket_event("identitySeen")
            .public_websocket_event("bulk")
            .public_websocket_event("alpha")
            .public_websocket_event("beta")
            .public_websocket_event("gamma"),
        Service::new("audit", "1")
            .state(seen.clone())
            .subscription(Subscription::new("recordIdentity", record_identity).on_event("identitySeen")),
    ]
}

pub struct Fixture {
    pub app: RunningApp,
    /// The bridge the app runs on, for its subscription counters.
    pub memory: MemoryBridge,
    pub base: String,
    pub http: reqwest::Client,
    pub seen: Seen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Fixture {
    pub async fn start() -> Self {
        Self::start_with(|gateway| gateway).await
    }

    pub async fn start_with(configure: impl FnOnce(Gateway) -> Gateway) -> Self {
        let seen: Seen = Arc::default();
        let memory = MemoryBridge::new();
        let mut app = Host::new().bridge(memory.clone());
        for service in services(&seen) {
            app = app.service(service);
        }
        let app = app.start().await.unwrap();
        let gateway = Gateway::new(&app)
            .authenticator(JwtAuthenticator::hs256(SECRET).issuer("purest-tests").audience("purest"))
            .authenticator(ApiKeyAuthenticator::new().key(API_KEY, Identity::new("key-owner").with_tenant("acme")))
            .timeout(Duration::from_millis(300));
        let gateway = configure(gateway);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gateway.serve(listener, async {
            stopped.await.ok();
        }));
        Self {
            app,
            memory,
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            seen,
            stop: Some(stop),
        }
    }

    /// `GET path` with alice's valid token.
    pub async fn get_as_alice(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(valid_token()).send().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(mut self) {
        self.stop.take().map(|stop| stop.send(()));
        self.app.shutdown().await;
    }
}

pub fn token(claims: Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn valid_token() -> String {
    token(json!({"sub": "alice", "tenant": "t1", "iss": "purest-tests", "aud": "purest", "exp": now() + 600}))
}

/// Asserts an RFC 9457 problem with `status` and returns its body.
pub async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], "about:blank");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}
