//! Commands on the in-memory bridge: round trips, validation, errors, deadlines, guards, hooks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest_core::Message;
use purest_core::prelude::*;
use purest_core::testing::TestApp;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct NewUser {
    #[garde(length(min = 1, max = 20))]
    name: String,
    #[garde(email)]
    email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct Options {
    #[garde(range(min = 1, max = 10))]
    copies: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Echo {
    name: String,
    copies: u32,
    principal: Option<String>,
    tenant: Option<String>,
    trace: String,
}

async fn echo(ctx: Context, Payload(user): Payload<NewUser>, Params(options): Params<Options>) -> Result<Echo, HandledError> {
    Ok(Echo {
        name: user.name,
        copies: options.copies,
        principal: ctx.principal_id().map(str::to_owned),
        tenant: ctx.tenant_id().map(str::to_owned),
        trace: ctx.trace_id().to_string(),
    })
}

async fn conflict() -> Result<(), HandledError> {
    Err(HandledError::conflict("taken").with_data(json!({"field": "email"})))
}

async fn broken() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("database password is hunter2"))
}

async fn panics() -> Result<(), HandledError> {
    panic!("boom")
}

async fn ok() -> Result<String, HandledError> {
    Ok("ok".into())
}

fn echo_service() -> Service {
    Service::new("echo", "1")
        .command(Command::new("echo", echo))
        .command(Command::new("conflict", conflict))
        .command(Command::new("broken", broken))
        .command(Command::new("panics", panics))
        .command(Command::new("ok", ok))
}

fn new_user(name: &str, email: &str) -> NewUser {
    NewUser {
        name: name.into(),
        email: email.into(),
    }
}

#[tokio::test]
async fn round_trip_carries_payload_params_principal_tenant_and_trace() {
    let app = TestApp::new().service(echo_service()).start().await;
    let trace = Id::random();
    let client = app
        .client()
        .with_principal("user-42")
        .with_tenant("tenant-7")
        .with_trace_id(trace.clone());
    let out: Echo = client
        .call("echo/1/echo")
        .params(Options { copies: 3 })
        .invoke(new_user("ann", "ann@example.com"))
        .await
        .unwrap();
    assert_eq!(
        out,
        Echo {
            name: "ann".into(),
            copies: 3,
            principal: Some("user-42".into()),
            tenant: Some("tenant-7".into()),
            trace: trace.to_string()
        }
    );
    app.shutdown().await;
}

#[tokio::test]
async fn handled_error_keeps_status_message_and_data() {
    let app = TestApp::new().service(echo_service()).start().await;
    let err = app.client().invoke::<()>("echo/1/conflict", ()).await.unwrap_err();
    assert_eq!((err.status, err.message.as_str()), (409, "taken"));
    assert_eq!(err.data, Some(json!({"field": "email"})));
    assert!(err.trace_id.is_some(), "errors carry the trace id");
    app.shutdown().await;
}

#[tokio::test]
async fn invalid_payload_and_params_are_400_listing_each_path() {
    let app = TestApp::new().service(echo_service()).start().await;
    let client = app.client();
    let err = client
        .call("echo/1/echo")
        .params(Options { copies: 3 })
        .invoke::<Echo>(new_user("", "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.status, 400);
    let paths: Vec<&str> = err.data.as_ref().unwrap()["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/email", "/name"], "{err}");

    let err = client
        .call("echo/1/echo")
        .params(Options { copies: 99 })
        .invoke::<Echo>(new_user("ann", "a@b.co"))
        .await
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("parameters") && err.message.contains("/copies"), "{err}");

    // The same checks hold for JSON of another shape (as from another language).
    let err = client
        .call("echo/1/echo")
        .params(json!({"copies": 1}))
        .invoke::<Echo>(json!({"name": "ann", "email": 3, "extra": true}))
        .await
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("/email"), "{err}");
    app.shutdown().await;
}

#[tokio::test]
async fn wire_json_is_decoded_and_validated() {
    let app = TestApp::new().service(echo_service()).start().await;
    let timeout = Duration::from_secs(5);
    let err = app
        .app()
        .invoke_json(b"{\"messageType\": \"command\", oops", timeout)
        .await
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("not a purest/PURISTA envelope"), "{err}");

    let command = |payload: serde_json::Value| {
        json!({"messageType": "command", "id": Id::random(), "timestamp": 1, "correlationId": Id::random(),
            "contentType": "application/json", "contentEncoding": "utf-8",
            "sender": {"serviceName": "peer", "serviceVersion": "1", "serviceTarget": "x"},
            "receiver": {"serviceName": "echo", "serviceVersion": "1", "serviceTarget": "echo"},
            "payload": {"payload": payload, "parameter": {"copies": 2}}})
        .to_string()
    };
    let response = app
        .app()
        .invoke_json(command(json!({"name": "ann"})).as_bytes(), timeout)
        .await
        .unwrap();
    let Message::Error { error, .. } = response.message else {
        panic!("expected an error response")
    };
    assert_eq!(error.status, 400);
    assert!(error.message.contains("email") && error.message.contains("required"), "{error}");

    let response = app
        .app()
        .invoke_json(command(json!({"name": "ann", "email": "a@b.co"})).as_bytes(), timeout)
        .await
        .unwrap();
    let Message::Success { payload } = response.message else {
        panic!("expected success")
    };
    assert_eq!(payload.to_value().unwrap()["copies"], 2);
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_service_version_or_command_is_503_naming_it() {
    let app = TestApp::new().service(echo_service()).start().await;
    for target in ["nobody/1/echo", "echo/2/echo", "echo/1/nothing"] {
        let err = app.client().invoke::<()>(target, ()).await.unwrap_err();
        assert_eq!(err.status, 503, "{target}");
        assert!(err.message.contains(target), "{target}: {err}");
    }
    let err = app.client().invoke::<()>("not-an-address", ()).await.unwrap_err();
    assert_eq!(err.status, 400);
    app.shutdown().await;
}

#[tokio::test]
async fn panics_and_unhandled_errors_are_generic_500_and_the_service_keeps_serving() {
    let app = TestApp::new().service(echo_service()).start().await;
    let client = app.client();
    for target in ["echo/1/panics", "echo/1/broken"] {
        let err = client.invoke::<()>(target, ()).await.unwrap_err();
        assert_eq!(err.status, 500, "{target}");
        assert_eq!(err.message, "internal server error", "{target}: internal detail must not leak");
        assert!(err.trace_id.is_some());
        assert_eq!(
            client.invoke::<String>("echo/1/ok", ()).await.unwrap(),
            "ok",
            "the next call works after {target}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn deadline_gives_504_and_the_late_answer_is_discarded() {
    // The handler finishes only when released: the caller's 504 arriving while it still runs
    // proves the caller does not wait for it.
    let release = Arc::new(tokio::sync::Notify::new());
    let (finished_tx, mut finished) = tokio::sync::mpsc::channel::<()>(1);
    let slow = {
        let release = release.clone();
        move || {
            let (release, finished_tx) = (release.clone(), finished_tx.clone());
            async move {
                release.notified().await;
                let _ = finished_tx.send(()).await;
                Ok::<_, HandledError>("late".to_owned())
            }
        }
    };
    let app = TestApp::new()
        .service(
            Service::new("slow", "1")
                .command(Command::new("slow", slow))
                .command(Command::new("ok", ok)),
        )
        .start()
        .await;
    let err = app
        .client()
        .call("slow/1/slow")
        .timeout(Duration::from_millis(50))
        .invoke::<String>(())
        .await
        .unwrap_err();
    assert_eq!(err.status, 504);
    assert!(err.message.contains("slow/1/slow"), "{err}");
    assert!(finished.try_recv().is_err(), "the handler is still running");
    release.notify_one();
    tokio::time::timeout(Duration::from_secs(10), finished.recv())
        .await
        .expect("the handler runs to completion; its answer goes nowhere");
    assert_eq!(app.client().invoke::<String>("slow/1/ok", ()).await.unwrap(), "ok");
    app.shutdown().await;
}

#[tokio::test]
async fn hooks_run_in_design_order_and_guards_refuse_with_their_status() {
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let handled = Arc::new(AtomicUsize::new(0));
    let log = |order: &Arc<Mutex<Vec<String>>>, step: &str| order.lock().unwrap().push(step.to_owned());

    let (o1, o2, o3, o4, o5, o6, h) = (
        order.clone(),
        order.clone(),
        order.clone(),
        order.clone(),
        order.clone(),
        order.clone(),
        handled.clone(),
    );
    let handler = move |Payload(name): Payload<String>| {
        let (order, handled) = (o6.clone(), h.clone());
        async move {
            handled.fetch_add(1, Ordering::SeqCst);
            order.lock().unwrap().push(format!("handler({name})"));
            Ok::<_, HandledError>(name)
        }
    };
    let command = Command::new("greet", handler)
        .transform_input(move |_, payload, params| {
            log(&o1, "transform_input");
            let name = payload.as_str().unwrap_or_default().trim().to_owned();
            Ok((json!(name), params))
        })
        .before_guard("signedIn", move |input: GuardInput| {
            let order = o2.clone();
            async move {
                order.lock().unwrap().push("before_guard".into());
                match input.principal_id() {
                    Some("admin") | Some("viewer") => Ok(()),
                    Some(_) => Err(HandledError::forbidden("admins and viewers only")),
                    None => Err(HandledError::unauthorized("sign in first")),
                }
            }
        })
        // Layers nest: added first is outermost, so the output passes the guard before the transform.
        .transform_output(move |_, output| {
            log(&o4, "transform_output");
            Ok(json!({ "greeting": format!("hello {}", output.as_str().unwrap_or_default()) }))
        })
        .after_guard("noSecrets", move |input: GuardInput| {
            let order = o3.clone();
            async move {
                order.lock().unwrap().push("after_guard".into());
                if input.body.to_value().unwrap() == json!("secret") {
                    Err(HandledError::forbidden("redacted"))
                } else {
                    Ok(())
                }
            }
        });
    let service = Service::new("hooks", "1").before_guard("serviceGuard", move |_| {
        let order = o5.clone();
        async move {
            order.lock().unwrap().push("service_guard".into());
            Ok(())
        }
    });
    let app = TestApp::new().service(service.command(command)).start().await;
    let client = app.client();

    let out: serde_json::Value = client
        .clone()
        .with_principal("admin")
        .invoke("hooks/1/greet", "  ann ".to_owned())
        .await
        .unwrap();
    assert_eq!(out, json!({"greeting": "hello ann"}));
    assert_eq!(
        *order.lock().unwrap(),
        [
            "service_guard",
            "transform_input",
            "before_guard",
            "handler(ann)",
            "after_guard",
            "transform_output"
        ]
    );

    let before = handled.load(Ordering::SeqCst);
    assert_eq!(
        client
            .invoke::<serde_json::Value>("hooks/1/greet", "ann".to_owned())
            .await
            .unwrap_err()
            .status,
        401
    );
    assert_eq!(
        client
            .clone()
            .with_principal("guest")
            .invoke::<serde_json::Value>("hooks/1/greet", "ann".to_owned())
            .await
            .unwrap_err()
            .status,
        403
    );
    assert_eq!(
        handled.load(Ordering::SeqCst),
        before,
        "a refusing guard stops the call before the handler"
    );

    let err = client
        .clone()
        .with_principal("viewer")
        .invoke::<serde_json::Value>("hooks/1/greet", "secret".to_owned())
        .await
        .unwrap_err();
    assert_eq!((err.status, err.message.as_str()), (403, "redacted"));
    app.shutdown().await;
}

#[tokio::test]
async fn principal_extractor_requires_a_principal() {
    async fn me(Principal(who): Principal) -> Result<String, HandledError> {
        Ok(who)
    }
    let app = TestApp::new()
        .service(Service::new("me", "1").command(Command::new("me", me)))
        .start()
        .await;
    assert_eq!(app.client().invoke::<String>("me/1/me", ()).await.unwrap_err().status, 401);
    assert_eq!(
        app.client().with_principal("p-1").invoke::<String>("me/1/me", ()).await.unwrap(),
        "p-1"
    );
    app.shutdown().await;
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
struct Score {
    #[garde(range(max = 100))]
    value: u32,
}

async fn bad_score() -> Result<Score, HandledError> {
    Ok(Score { value: 1000 })
}

#[tokio::test]
async fn outputs_are_validated_unless_switched_off() {
    let checked = Service::new("scores", "1").command(Command::new("bad", bad_score));
    let unchecked = Service::new("scores", "2")
        .validate_output(false)
        .command(Command::new("bad", bad_score));
    let app = TestApp::new().service(checked).service(unchecked).start().await;
    let err = app.client().invoke::<Score>("scores/1/bad", ()).await.unwrap_err();
    assert_eq!((err.status, err.message.as_str()), (500, "internal server error"));
    assert_eq!(app.client().invoke::<Score>("scores/2/bad", ()).await.unwrap().value, 1000);
    app.shutdown().await;
}

#[tokio::test]
async fn missing_state_is_a_500_not_a_panic() {
    async fn needs(State(n): State<u64>) -> Result<u64, HandledError> {
        Ok(n)
    }
    let app = TestApp::new()
        .service(Service::new("st", "1").command(Command::new("needs", needs)))
        .start()
        .await;
    assert_eq!(app.client().invoke::<u64>("st/1/needs", ()).await.unwrap_err().status, 500);
    app.shutdown().await;
    let app = TestApp::new()
        .state(7u64)
        .service(Service::new("st", "1").command(Command::new("needs", needs)))
        .start()
        .await;
    assert_eq!(app.client().invoke::<u64>("st/1/needs", ()).await.unwrap(), 7);
    app.shutdown().await;
}

/// A payload whose serialization is counted: in-process calls must never serialize it.
#[derive(Debug, Clone, Deserialize, JsonSchema, Validate)]
struct Probe {
    #[garde(range(min = 1))]
    n: u32,
}

static PROBE_SERIALIZED: AtomicUsize = AtomicUsize::new(0);

impl Serialize for Probe {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PROBE_SERIALIZED.fetch_add(1, Ordering::SeqCst);
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Probe", 1)?;
        s.serialize_field("n", &self.n)?;
        s.end()
    }
}

#[tokio::test]
async fn in_process_calls_do_not_serialize_yet_are_validated() {
    async fn double(Payload(p): Payload<Probe>) -> Result<Probe, HandledError> {
        Ok(Probe { n: p.n * 2 })
    }
    async fn caller(ctx: Context, Payload(p): Payload<Probe>) -> Result<Probe, HandledError> {
        ctx.invoke("probe/1/double", p).await
    }
    let service = Service::new("probe", "1")
        .command(Command::new("double", double))
        .command(Command::new("caller", caller));
    let app = TestApp::new().service(service).start().await;
    let out: Probe = app.client().invoke("probe/1/caller", Probe { n: 21 }).await.unwrap();
    assert_eq!(out.n, 42);
    assert_eq!(
        PROBE_SERIALIZED.load(Ordering::SeqCst),
        0,
        "typed values crossed the in-memory bridge without serde"
    );
    let err = app.client().invoke::<Probe>("probe/1/double", Probe { n: 0 }).await.unwrap_err();
    assert_eq!(err.status, 400, "the typed path still applies the schema's rules");
    assert!(err.message.contains("/n"), "{err}");
    app.shutdown().await;
}

#[tokio::test]
async fn principal_tenant_and_trace_reach_nested_invokes_and_events() {
    async fn outer(ctx: Context) -> Result<Echo, HandledError> {
        ctx.emit("outerRan", "x".to_owned()).await?;
        ctx.call("echo/1/echo")
            .params(Options { copies: 1 })
            .invoke(NewUser {
                name: "n".into(),
                email: "n@x.io".into(),
            })
            .await
    }
    let app = TestApp::new()
        .service(echo_service())
        .service(Service::new("outer", "1").command(Command::new("outer", outer)))
        .start()
        .await;
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    let watcher = move |ctx: Context| {
        let sink = sink.clone();
        async move {
            *sink.lock().unwrap() = Some((
                ctx.principal_id().map(str::to_owned),
                ctx.tenant_id().map(str::to_owned),
                ctx.trace_id(),
            ));
            Ok::<_, HandledError>(())
        }
    };
    let trace = Id::random();
    let watcher_app = Host::new()
        .shared_bridge(app.app().bridge().clone())
        .service(Service::new("watch", "1").subscription(Subscription::new("w", watcher).on_event("outerRan")))
        .start()
        .await
        .unwrap();
    let out: Echo = app
        .client()
        .with_principal("p")
        .with_tenant("t")
        .with_trace_id(trace.clone())
        .invoke("outer/1/outer", ())
        .await
        .unwrap();
    assert_eq!(
        (out.principal.as_deref(), out.tenant.as_deref(), out.trace.as_str()),
        (Some("p"), Some("t"), trace.to_string().as_str())
    );
    for _ in 0..100 {
        if seen.lock().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*seen.lock().unwrap(), Some((Some("p".to_owned()), Some("t".to_owned()), trace)));
    watcher_app.shutdown().await;
    app.shutdown().await;
}

/// Counts calls running at once and the most seen.
#[derive(Clone, Default)]
struct Occupancy {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

async fn occupy(State(occupancy): State<Occupancy>) -> Result<(), HandledError> {
    let now = occupancy.now.fetch_add(1, Ordering::SeqCst) + 1;
    occupancy.most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    occupancy.now.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_runs_n_lets_n_wait_and_sheds_the_rest() {
    for (limit, expected_most, expected_shed) in [(Some(2), 2, 2), (None, 6, 0)] {
        let occupancy = Occupancy::default();
        let command = Command::new("occupy", occupy);
        let command = match limit {
            Some(limit) => command.concurrency(limit),
            None => command,
        };
        let app = TestApp::new()
            .service(Service::new("busy", "1").state(occupancy.clone()).command(command))
            .start()
            .await;
        let client = app.client();
        let calls = (0..6).map(|_| client.invoke::<()>("busy/1/occupy", ()));
        let mut shed = 0;
        for result in futures::future::join_all(calls).await {
            if let Err(refusal) = result {
                assert_eq!(refusal.status, 503, "{refusal}");
                assert!(refusal.message.contains("busy/1/occupy is busy"), "{refusal}");
                shed += 1;
            }
        }
        assert_eq!(occupancy.most.load(Ordering::SeqCst), expected_most, "limit {limit:?}");
        assert_eq!(shed, expected_shed, "2 run, 2 wait their turn, the rest are refused at once");
        app.shutdown().await;
    }
}

/// PURISTA turns an empty subject token into an empty string, and success events it re-publishes
/// for such a sender vanish: the app's client names a target.
#[tokio::test]
async fn the_app_client_sends_with_a_non_empty_target() {
    async fn sender(ctx: Context) -> Result<String, HandledError> {
        Ok(ctx.message().sender.to_string())
    }
    let app = TestApp::new()
        .service(Service::new("who", "1").command(Command::new("sender", sender)))
        .start()
        .await;
    let seen: String = app.app().client().invoke("who/1/sender", ()).await.unwrap();
    assert_eq!(seen, "purest-client/1/client");
    let seen: String = app.client().invoke("who/1/sender", ()).await.unwrap();
    assert!(!seen.ends_with('/'), "the test client names a target too: {seen}");
    app.shutdown().await;
}
