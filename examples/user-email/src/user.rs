//! The `user` service: registers users and looks them up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use purest::prelude::*;

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

async fn register_new_user(State(store): State<UserStore>, Payload(new): Payload<NewUser>) -> Result<User, Error> {
    let user = store.insert_unique(new.name, new.email).await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok(user)
}

async fn get_user(State(store): State<UserStore>, Params(params): Params<GetUser>) -> Result<User, Error> {
    store
        .get(&params.id)
        .await?
        .ok_or_else(|| HandledError::not_found(format!("no user with id {}", params.id)).into())
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
        .command(
            Command::new("registerNewUser", register_new_user)
                .description("Registers a user; 409 when the email is taken")
                .success_event("newUserRegistered")
                .http(Method::POST, "users")
                .public()
                .http_error(409, "the email is already registered"),
        )
        .command(
            Command::new("getUser", get_user)
                .description("Returns a user by id; 404 when unknown")
                .http(Method::GET, "users/{id}")
                .http_error(404, "no user has this id"),
        )
}
