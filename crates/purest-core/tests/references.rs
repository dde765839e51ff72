//! Typed references (`CommandRef`, `EventRef`) used on both sides, beside string addresses, and
//! the start-up checks of addresses and event names given as strings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_core::prelude::*;
use purest_core::testing::TestApp;
use purest_core::{BuildError, Retry};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct NewUser {
    #[garde(length(min = 1))]
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct User {
    id: u64,
    name: String,
    tenant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Lookup {
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Greeting {
    to: String,
}

const USER_REGISTERED: EventRef<User> = EventRef::new("userRegistered");
const GREETED: EventRef<Greeting> = EventRef::new("greeted");
const REGISTER: CommandRef<NewUser, User> = CommandRef::new("user", "1", "register").success_event(USER_REGISTERED);
const GET_USER: CommandRef<(), User, Lookup> = CommandRef::new("user", "1", "get");
const COUNT: CommandRef<(), u64> = CommandRef::new("user", "1", "count");
const SIGN_UP: CommandRef<NewUser, User> = CommandRef::new("front", "1", "signUp");

#[derive(Clone, Default)]
struct Users(Arc<Mutex<Vec<User>>>);

/// Many extractors at once: the fold over the arguments finds the one `Payload`.
async fn register(ctx: Context, State(users): State<Users>, Payload(new): Payload<NewUser>) -> Result<User, HandledError> {
    let mut users = users.0.lock().unwrap();
    let user = User {
        id: users.len() as u64 + 1,
        name: new.name,
        tenant: ctx.tenant_id().map(str::to_owned),
    };
    users.push(user.clone());
    Ok(user)
}

async fn get_user(State(users): State<Users>, _ctx: Context, Params(lookup): Params<Lookup>) -> Result<User, HandledError> {
    let users = users.0.lock().unwrap();
    users
        .iter()
        .find(|u| u.id == lookup.id)
        .cloned()
        .ok_or_else(|| HandledError::not_found(format!("no user {}", lookup.id)))
}

async fn count(State(users): State<Users>) -> Result<u64, HandledError> {
    Ok(users.0.lock().unwrap().len() as u64)
}

/// Calls other commands through references from inside a handler, and emits a typed event.
async fn sign_up(ctx: Context, Payload(new): Payload<NewUser>) -> Result<User, HandledError> {
    let registered = ctx.invoke(REGISTER, new).await?;
    let found = ctx.call(GET_USER).params(Lookup { id: registered.id }).invoke(()).await?;
    let total = ctx.invoke(COUNT, ()).await?;
    assert_eq!(found, registered, "get answers what register stored");
    ctx.emit(
        GREETED,
        Greeting {
            to: format!("{} (user {total})", found.name),
        },
    )
    .await?;
    Ok(found)
}

fn user_service(users: &Users) -> Service {
    Service::new("user", "1")
        .state(users.clone())
        .command(Command::of(REGISTER, register))
        .command(Command::of(GET_USER, get_user))
        .command(Command::of(COUNT, count))
}

#[tokio::test]
async fn references_register_invoke_emit_and_subscribe_with_their_types() {
    let users = Users::default();
    let welcomed: Arc<Mutex<Vec<User>>> = Arc::default();
    let greeted: Arc<Mutex<Vec<Greeting>>> = Arc::default();
    let welcome = {
        let welcomed = welcomed.clone();
        move |Payload(user): Payload<User>| {
            let welcomed = welcomed.clone();
            async move {
                welcomed.lock().unwrap().push(user);
                Ok::<_, HandledError>(())
            }
        }
    };
    let on_greeted = {
        let greeted = greeted.clone();
        move |Payload(greeting): Payload<Greeting>| {
            let greeted = greeted.clone();
            async move {
                greeted.lock().unwrap().push(greeting);
                Ok::<_, HandledError>(())
            }
        }
    };
    let app = TestApp::new()
        .service(user_service(&users))
        .service(Service::new("front", "1").command(Command::of(SIGN_UP, sign_up)))
        .service(
            Service::new("email", "1")
                .subscription(Subscription::on(USER_REGISTERED, "welcome", welcome))
                .subscription(Subscription::on(GREETED, "log", on_greeted)),
        )
        .start()
        .await;
    let client = app.client().with_tenant("acme");

    let ann = client.invoke(SIGN_UP, NewUser { name: "ann".into() }).await.unwrap();
    assert_eq!(
        ann,
        User {
            id: 1,
            name: "ann".into(),
            tenant: Some("acme".into())
        }
    );
    let bob = client.invoke(REGISTER, NewUser { name: "bob".into() }).await.unwrap();
    assert_eq!(bob.id, 2);
    // The reference's payload is validated as any other.
    let invalid = client.invoke(REGISTER, NewUser { name: "".into() }).await.unwrap_err();
    assert_eq!(invalid.status, 400, "{invalid}");
    let missing = client.call(GET_USER).params(Lookup { id: 9 }).invoke(()).await.unwrap_err();
    assert_eq!((missing.status, missing.message.as_str()), (404, "no user 9"));
    // The same commands by their string addresses, as a peer in another language calls them.
    let by_string: User = client
        .call("user/1/get")
        .params(serde_json::json!({"id": 2}))
        .invoke(())
        .await
        .unwrap();
    assert_eq!(by_string, bob);
    assert_eq!(client.invoke::<u64>(("user", "1", "count"), ()).await.unwrap(), 2);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (welcomed.lock().unwrap().len() < 2 || greeted.lock().unwrap().is_empty()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut welcomed = welcomed.lock().unwrap().clone();
    welcomed.sort_by_key(|u| u.id);
    assert_eq!(
        welcomed,
        vec![ann, bob],
        "the success event of REGISTER reaches Subscription::on(USER_REGISTERED)"
    );
    assert_eq!(*greeted.lock().unwrap(), vec![Greeting { to: "ann (user 1)".into() }]);
    app.shutdown().await;
}

#[tokio::test]
async fn string_event_names_and_references_meet_on_the_same_event() {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        move |Payload(value): Payload<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(value);
                Ok::<_, HandledError>(())
            }
        }
    };
    let app = TestApp::new()
        .service(Service::new("log", "1").subscription(Subscription::new("all", record).on_event("greeted")))
        .start()
        .await;
    app.client().emit(GREETED, Greeting { to: "ann".into() }).await.unwrap();
    app.client().emit("greeted", serde_json::json!({"to": "bob"})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|v| v["to"].as_str().map(str::to_owned));
    assert_eq!(seen, vec![serde_json::json!({"to": "ann"}), serde_json::json!({"to": "bob"})]);
    app.shutdown().await;
}

async fn noop() -> Result<(), HandledError> {
    Ok(())
}

/// What `Host::start` says about `service`: services are checked before anything runs.
async fn start_error(service: Service) -> String {
    match Host::new().service(service).start().await {
        Ok(app) => {
            app.shutdown().await;
            panic!("the app started; expected a start-up error")
        }
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn malformed_strings_given_to_builders_fail_at_start_up_naming_the_item_and_the_fix() {
    let command = |c: Command| Service::new("user", "1").command(c);
    let subscription = |s: Subscription| Service::new("mail", "1").subscription(s);
    let cases = [
        (
            command(Command::new("register", noop).invokes("email/1")),
            "command `register` of service user/1, .invokes(\"email/1\"): \"email/1\" is not a command address; \
             write \"service/version/command\", e.g. .invokes(\"user/1/getUser\")",
        ),
        (
            command(Command::new("register", noop).invokes("email/1/send mail")),
            "command `register` of service user/1, .invokes(\"email/1/send mail\"): \"email/1/send mail\" contains whitespace",
        ),
        (
            command(Command::new("register", noop).success_event("user registered")),
            "command `register` of service user/1, .success_event(\"user registered\"): the event name contains whitespace \
             or control characters; write a non-empty event name without whitespace, e.g. \"newUserRegistered\", or use an EventRef",
        ),
        (
            command(Command::new("register", noop).may_emit("")),
            "command `register` of service user/1, .may_emit(\"\"): the event name is empty",
        ),
        (
            subscription(Subscription::new("send", noop).on_event("")),
            "subscription `send` of service mail/1, its event \"\" (.on_event or Subscription::on): the event name is empty",
        ),
        (
            subscription(Subscription::new("send", noop).on_event("user\tregistered")),
            "subscription `send` of service mail/1, its event \"user\\tregistered\" (.on_event or Subscription::on): \
             the event name contains whitespace",
        ),
        (
            subscription(Subscription::new("send", noop).on_event("e").emits("mail sent")),
            "subscription `send` of service mail/1, .emits(\"mail sent\"): the event name contains whitespace",
        ),
        (
            subscription(
                Subscription::new("send", noop)
                    .on_event("e")
                    .durable()
                    .retry(Retry::exponential(3).dead_letter(" ")),
            ),
            "subscription `send` of service mail/1, Retry::dead_letter(\" \"): the event name contains whitespace",
        ),
        (
            subscription(Subscription::new("send", noop).from_service("user/1", "1")),
            "subscription `send` of service mail/1, the sender's service \"user/1\" (.from_service / .from_command): \
             it contains '/'",
        ),
        (
            subscription(Subscription::new("send", noop).on_event("e").invokes("")),
            "subscription `send` of service mail/1, .invokes(\"\"): \"\" is not a command address",
        ),
        (
            command(Command::new("register", noop).public()),
            "command `register` of service user/1, .public() or .http_error(..): they describe an HTTP route, but the command \
             has no .http(method, path), so it is not served over HTTP; add .http(Method::POST, \"path\") to serve it, or remove them",
        ),
        (
            command(Command::new("register", noop).http_error(409, "taken")),
            "command `register` of service user/1, .public() or .http_error(..): they describe an HTTP route",
        ),
        (
            Service::new("user", "1").websocket_event("user registered"),
            "service user/1, .websocket_event(\"user registered\"): the event name contains whitespace",
        ),
        (
            Service::new("user", "1")
                .websocket_event("registered")
                .public_websocket_event("registered"),
            "service user/1, .websocket_event(\"registered\"): the event is declared twice",
        ),
        (
            Service::new("account", "2").command(Command::of(COUNT, count)),
            "command `count` of service account/2, made with Command::of(user/1/count): the reference names service user/1, \
             but the command is registered in service account/2; register it in service user/1 (Service::new(\"user\", \"1\")) \
             or fix the reference",
        ),
    ];
    for (service, expected) in cases {
        let error = start_error(service).await;
        assert!(error.starts_with(expected), "\n  got: {error}\n want: {expected}…");
    }
}

#[test]
fn well_formed_strings_and_references_pass_the_check() {
    let service = Service::new("user", "1")
        .command(
            Command::new("register", noop)
                .success_event("user.registered")
                .invokes("email/1/send")
                .may_emit("audit.userCreated"),
        )
        .command(Command::of(COUNT, count))
        .subscription(
            Subscription::new("audit", noop)
                .on_event("user.registered")
                .from_command("user", "1", "register")
                .durable()
                .retry(Retry::exponential(2).dead_letter("audit.dlq")),
        )
        .subscription(Subscription::on(USER_REGISTERED, "mirror", noop));
    service.check().unwrap();
    let error = service.command(Command::new("bad", noop).invokes("x")).check().unwrap_err();
    assert!(matches!(error, BuildError::InvalidReference { .. }), "{error:?}");
}

#[tokio::test]
async fn a_command_of_a_reference_registered_in_another_service_fails_at_start_up() {
    let error = start_error(Service::new("account", "2").command(Command::of(COUNT, count))).await;
    assert_eq!(
        error,
        "command `count` of service account/2, made with Command::of(user/1/count): the reference names service user/1, \
         but the command is registered in service account/2; register it in service user/1 (Service::new(\"user\", \"1\")) \
         or fix the reference"
    );
    start_error(Service::new("user", "2").command(Command::of(COUNT, count).description("same name, other version"))).await;
}

#[tokio::test]
async fn a_malformed_string_address_at_run_time_is_still_a_400() {
    async fn caller(ctx: Context) -> Result<String, HandledError> {
        ctx.invoke("user/1", ()).await
    }
    let app = TestApp::new()
        .service(Service::new("c", "1").command(Command::new("call", caller)))
        .start()
        .await;
    let error = app.client().invoke::<String>("c/1/call", ()).await.unwrap_err();
    assert_eq!(error.status, 400);
    assert!(error.message.contains("write \"service/version/command\""), "{error}");
    app.shutdown().await;
}
