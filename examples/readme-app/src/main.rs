use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest::layers::Timeout;
use purest::prelude::*;

#[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
pub struct NewUser {
    #[garde(length(chars, min = 1, max = 100))]
    pub name: String,
    #[garde(email)]
    pub email: String,
}

#[derive(Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
}

// The contract both sides use: a typo, or a payload that does not fit, is a compile error.
pub const USER_REGISTERED: EventRef<User> = EventRef::new("newUserRegistered");
pub const REGISTER: CommandRef<NewUser, User> = CommandRef::new("user", "1", "registerNewUser").success_event(USER_REGISTERED);
pub const EMAIL_TAKEN: CommandRef<String, bool> = CommandRef::new("user", "1", "emailTaken");

type Emails = Arc<Mutex<HashSet<String>>>;

async fn email_taken(State(emails): State<Emails>, Payload(email): Payload<String>) -> Result<bool, HandledError> {
    Ok(emails.lock().unwrap().contains(&email))
}

async fn register(ctx: Context, State(emails): State<Emails>, Payload(new): Payload<NewUser>) -> Result<User, HandledError> {
    if ctx.invoke(EMAIL_TAKEN, new.email.clone()).await? {
        return Err(HandledError::conflict("email already registered"));
    }
    emails.lock().unwrap().insert(new.email.clone());
    Ok(User {
        id: Id::random().to_string(),
        name: new.name,
        email: new.email,
    })
}

async fn welcome(Payload(user): Payload<User>) -> Result<(), Error> {
    // Send the mail here; any error is retried with backoff, then dead-lettered.
    println!("welcome, {} <{}>!", user.name, user.email);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    purest::logging::init(); // logs to stderr; RUST_LOG or PUREST_LOG set the level
    let users = Service::new("user", "1")
        .state(Emails::default())
        .command(Command::of(REGISTER, register).http(Method::POST, "users").public())
        .command(Command::of(EMAIL_TAKEN, email_taken));
    let email = Service::new("email", "1").subscription(
        Subscription::on(USER_REGISTERED, "sendWelcomeMail", welcome)
            .durable()
            .layer(Timeout::new(Duration::from_secs(10)))
            .retry(Retry::exponential(5).dead_letter("email.dlq")),
    );
    // Topology from purest.toml / PUREST_*: in-memory by default, HTTP on 127.0.0.1:8080
    // (`curl -X POST localhost:8080/api/v1/users -H 'content-type: application/json'
    // -d '{"name":"Ann","email":"ann@example.com"}'`); stops gracefully on SIGTERM.
    App::new().service(users).service(email).run().await
}
