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

/// Where users live. The example keeps them in memory; a real app would put a database here.
#[derive(Clone, Default)]
pub struct UserStore(Arc<Mutex<HashMap<String, User>>>);

impl UserStore {
    fn insert_unique(&self, name: String, email: String) -> Result<User, HandledError> {
        let mut users = self.0.lock().expect("user store lock");
        if users.values().any(|u| u.email.eq_ignore_ascii_case(&email)) {
            return Err(HandledError::conflict("email already registered").with_data(serde_json::json!({ "email": email })));
        }
        let user = User {
            id: Id::random().to_string(),
            name,
            email,
        };
        users.insert(user.id.clone(), user.clone());
        Ok(user)
    }

    fn get(&self, id: &str) -> Option<User> {
        self.0.lock().expect("user store lock").get(id).cloned()
    }
}

async fn register_new_user(State(store): State<UserStore>, Payload(new): Payload<NewUser>) -> Result<User, HandledError> {
    let user = store.insert_unique(new.name, new.email)?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok(user)
}

async fn get_user(State(store): State<UserStore>, Params(params): Params<GetUser>) -> Result<User, HandledError> {
    store
        .get(&params.id)
        .ok_or_else(|| HandledError::not_found(format!("no user with id {}", params.id)))
}

/// Service `user`, version 1.
pub fn user_service() -> Service {
    Service::new("user", "1")
        .description("Registers users and looks them up")
        .state(UserStore::default())
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
