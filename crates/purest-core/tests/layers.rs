//! Layers around commands and subscriptions: order, service layers reaching subscriptions,
//! timeouts, a panicking layer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use purest_core::layer::{Incoming, Kind, Layer, Next, Outcome};
use purest_core::layers::Timeout;
use purest_core::prelude::*;
use purest_core::testing::TestApp;

/// Records `name>` on the way in and `<name` on the way out.
#[derive(Clone)]
struct Trace {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl Layer for Trace {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        self.log.lock().unwrap().push(format!("{}>", self.name));
        Box::pin(async move {
            let outcome = next.run(incoming).await;
            self.log.lock().unwrap().push(format!("<{}", self.name));
            outcome
        })
    }
}

#[tokio::test]
async fn layers_nest_app_then_service_then_command_in_the_order_added() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let trace = |name| Trace { name, log: log.clone() };
    let inner = log.clone();
    let handler = move || {
        let inner = inner.clone();
        async move {
            inner.lock().unwrap().push("handler".to_owned());
            Ok::<_, HandledError>(())
        }
    };
    let app = TestApp::new()
        .service(
            Service::new("s", "1")
                .layer(trace("service"))
                .command(Command::new("c", handler).layer(trace("command1")).layer(trace("command2"))),
        )
        .start()
        .await;
    // TestApp has no app-level layers; an Host does.
    app.client().invoke::<()>("s/1/c", ()).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "service>",
            "command1>",
            "command2>",
            "handler",
            "<command2",
            "<command1",
            "<service"
        ]
    );
    app.shutdown().await;

    log.lock().unwrap().clear();
    let handler = move || async move { Ok::<_, HandledError>(()) };
    let app = Host::new()
        .layer(trace("app"))
        .service(Service::new("s", "1").layer(trace("service")).command(Command::new("c", handler)))
        .start()
        .await
        .unwrap();
    app.client().invoke::<()>("s/1/c", ()).await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["app>", "service>", "<service", "<app"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_guard_also_guards_its_subscriptions() {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let count = move |Payload(_): Payload<u64>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandledError>(())
        }
    };
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let seen = kinds.clone();
    let service = Service::new("guarded", "1")
        .layer(KindLog(seen))
        .before_guard("tenant acme only", |input: GuardInput| async move {
            match input.tenant_id() {
                Some("acme") => Ok(()),
                _ => Err(HandledError::forbidden("acme only")),
            }
        })
        .subscription(Subscription::new("count", count).on_event("tick").durable());
    let app = TestApp::new().service(service).start().await;
    let dead = app.record(purest_core::bridge::DEFAULT_DEAD_LETTER);
    app.client().with_tenant("other").emit("tick", 1u64).await.unwrap();
    app.client().with_tenant("acme").emit("tick", 2u64).await.unwrap();
    let letters = dead.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["reason"].as_str().unwrap().contains("acme only"), "{}", letters[0]);
    assert_eq!(letters[0]["attempts"], 1, "a guard's 403 is not retried");
    let acked = || app.subscription_stats("guarded/1/count").acked == 1;
    while !acked() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1, "only acme's event reached the handler");
    assert!(kinds.lock().unwrap().iter().all(|kind| *kind == Kind::Subscription));
    app.shutdown().await;
}

struct KindLog(Arc<Mutex<Vec<Kind>>>);

impl Layer for KindLog {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        self.0.lock().unwrap().push(incoming.kind());
        next.run(incoming)
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscription_timing_out_is_retried_then_dead_lettered() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let hangs = move |Payload(_): Payload<u64>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, HandledError>(())
        }
    };
    let retry = Retry::exponential(2).backoff(Duration::from_millis(10));
    let app = TestApp::new()
        .service(
            Service::new("s", "1").subscription(
                Subscription::new("hangs", hangs)
                    .on_event("e")
                    .durable()
                    .retry(retry)
                    .layer(Timeout::new(Duration::from_secs(1))),
            ),
        )
        .start()
        .await;
    let dead = app.record(purest_core::bridge::DEFAULT_DEAD_LETTER);
    app.client().emit("e", 1u64).await.unwrap();
    let letters = dead.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(letters[0]["attempts"], 2, "a 504 is worth retrying: {}", letters[0]);
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("s/1/hangs did not finish within 1s")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    app.shutdown().await;
}

struct Panics;

impl Layer for Panics {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        if incoming.principal_id() == Some("boom") {
            panic!("layer bug");
        }
        next.run(incoming)
    }
}

#[tokio::test]
async fn a_panicking_layer_fails_that_call_with_a_generic_500_and_nothing_else() {
    async fn ok() -> Result<String, HandledError> {
        Ok("fine".into())
    }
    let app = TestApp::new()
        .service(Service::new("s", "1").command(Command::new("c", ok).layer(Panics)))
        .start()
        .await;
    let error = app.client().with_principal("boom").invoke::<String>("s/1/c", ()).await.unwrap_err();
    assert_eq!(error.status, 500);
    assert!(!error.message.contains("layer bug"), "internal details stay in the log: {error}");
    assert_eq!(app.client().invoke::<String>("s/1/c", ()).await.unwrap(), "fine");
    app.shutdown().await;
}
