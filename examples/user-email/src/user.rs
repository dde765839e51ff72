//! The `user` service: registers users and looks them up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use purest::handler::{FromInvocation, Invocation};
use purest::layer::{BoxFuture, Incoming, Layer, Next, Outcome};
use purest::prelude::*;

/// The `newUserRegistered` event: every successful registration, carrying the new [`User`].
pub const USER_REGISTERED: EventRef<User> = EventRef::new("newUserRegistered");

/// Registers a user; the success is also the [`USER_REGISTERED`] event. 409 when the email is taken.
pub const REGISTER_NEW_USER: CommandRef<NewUser, User> = CommandRef::new("user", "1", "registerNewUser").success_event(USER_REGISTERED);

/// Returns a user by id (the parameter `id`); 404 when unknown.
pub const GET_USER: CommandRef<(), User, GetUser> = CommandRef::new("user", "1", "getUser");

/// Input of `registerNewUser`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
pub struct NewUser {
    /// Display name, 1–100 characters.
    #[garde(length(chars, min = 1, max = 100))]
    pub name: String,
    /// A valid email address; one account per address.
    #[garde(email)]
    pub email: String,
}

/// A registered user (the output of both commands, and the `newUserRegistered` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct User {
    /// Server-assigned id (32 hex characters).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// Parameters of `getUser`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
pub struct GetUser {
    /// The user's id.
    #[garde(length(min = 1))]
    pub id: String,
}

/// Where users live: in this process's memory (the default), or in Redis so that several
/// `user` instances share them.
#[derive(Clone)]
pub enum UserStore {
    /// In memory; lost when the process ends, not shared between instances.
    Memory(Arc<Mutex<HashMap<String, User>>>),
    /// In Redis, under keys starting with `prefix`.
    Redis {
        /// A reconnecting connection.
        connection: redis::aio::ConnectionManager,
        /// Key prefix, e.g. `user-email:`.
        prefix: String,
    },
}

impl Default for UserStore {
    fn default() -> Self {
        UserStore::Memory(Arc::default())
    }
}

/// What a failed store operation tells the caller; the detail goes to the log.
fn store_failed(error: redis::RedisError) -> Error {
    Error::msg(format!("the user store failed: {error}"))
}

impl UserStore {
    /// Users in Redis at `url` (`redis://127.0.0.1:6379`), keys prefixed with `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("bad Redis URL {url:?}: {e}"))?;
        let connection = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| format!("cannot connect to Redis at {url}: {e}"))?;
        Ok(UserStore::Redis {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    async fn insert_unique(&self, name: String, email: String) -> Result<User, Error> {
        let user = User {
            id: Id::random().to_string(),
            name,
            email,
        };
        let taken = || HandledError::conflict("email already registered").with_data(serde_json::json!({ "email": user.email }));
        match self {
            UserStore::Memory(users) => {
                let mut users = users.lock().expect("user store lock");
                if users.values().any(|u| u.email.eq_ignore_ascii_case(&user.email)) {
                    return Err(taken().into());
                }
                users.insert(user.id.clone(), user.clone());
            }
            UserStore::Redis { connection, prefix } => {
                use redis::AsyncCommands;
                let mut connection = connection.clone();
                // The email claims the account first (SET NX), so two instances cannot both win.
                let claimed: bool = connection
                    .set_nx(format!("{prefix}email:{}", user.email.to_lowercase()), &user.id)
                    .await
                    .map_err(store_failed)?;
                if !claimed {
                    return Err(taken().into());
                }
                let json = serde_json::to_string(&user).map_err(Error::msg)?;
                let () = connection
                    .set(format!("{prefix}user:{}", user.id), json)
                    .await
                    .map_err(store_failed)?;
            }
        }
        Ok(user)
    }

    async fn get(&self, id: &str) -> Result<Option<User>, Error> {
        match self {
            UserStore::Memory(users) => Ok(users.lock().expect("user store lock").get(id).cloned()),
            UserStore::Redis { connection, prefix } => {
                use redis::AsyncCommands;
                let json: Option<String> = connection.clone().get(format!("{prefix}user:{id}")).await.map_err(store_failed)?;
                json.map(|json| serde_json::from_str(&json).map_err(Error::msg)).transpose()
            }
        }
    }
}

/// Who is calling, for the log: the principal, or `anonymous` (registration is public). A
/// custom extractor: it reads what the invocation carries.
pub struct Caller(pub String);

impl FromInvocation<()> for Caller {
    fn from_invocation(invocation: &mut Invocation<'_>) -> Result<Self, HandledError> {
        Ok(Caller(invocation.context().principal_id().unwrap_or("anonymous").to_owned()))
    }
}

async fn register_new_user(Caller(caller): Caller, State(store): State<UserStore>, Payload(new): Payload<NewUser>) -> Result<User, Error> {
    let user = store.insert_unique(new.name, new.email).await?;
    tracing::info!(user_id = %user.id, %caller, "user registered");
    Ok(user)
}

async fn get_user(State(store): State<UserStore>, Params(params): Params<GetUser>) -> Result<User, Error> {
    store
        .get(&params.id)
        .await?
        .ok_or_else(|| HandledError::not_found(format!("no user with id {}", params.id)).into())
}

/// Logs each call with its outcome and duration: a user-written [layer](purest::layer).
#[derive(Clone, Copy, Default)]
pub struct CallLog;

impl Layer for CallLog {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        let target = incoming.target().service_target.clone();
        let started = Instant::now();
        Box::pin(async move {
            let outcome = next.run(incoming).await;
            let status = match &outcome {
                Ok(_) => 200,
                Err(error) => error.as_handled().map_or(500, |handled| handled.status),
            };
            tracing::debug!(command = %target, status, took = ?started.elapsed(), "handled");
            outcome
        })
    }
}

/// Service `user`, version 1.
pub fn user_service() -> Service {
    user_service_with(UserStore::default())
}

/// Service `user`, version 1, keeping users in `store`.
pub fn user_service_with(store: UserStore) -> Service {
    Service::new("user", "1")
        .description("Registers users and looks them up")
        .state(store)
        .layer(CallLog)
        .command(
            Command::of(REGISTER_NEW_USER, register_new_user)
                .description("Registers a user; 409 when the email is taken")
                .http(Method::POST, "users")
                .public()
                .http_error(409, "the email is already registered"),
        )
        .command(
            Command::of(GET_USER, get_user)
                .description("Returns a user by id; 404 when unknown")
                .http(Method::GET, "users/{id}")
                .http_error(404, "no user has this id"),
        )
        // Signed-in WebSocket clients may subscribe to it; each sees the users it registered.
        .websocket_event(USER_REGISTERED.name())
}
