//! Instances, load sharing, build-time errors, configuration, graceful shutdown and tracing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use purest_core::prelude::*;
use purest_core::{BuildError, MessageInfo};

async fn which(ctx: Context, Payload(n): Payload<u64>) -> Result<(String, u64), HandledError> {
    Ok((ctx.address().instance_id.as_deref().unwrap_or_default().to_owned(), n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_load_and_each_call_is_handled_once() {
    let bridge = MemoryBridge::new();
    let service = || Service::new("calc", "1").command(Command::new("which", which));
    let first = Host::new().bridge(bridge.clone()).service(service()).start().await.unwrap();
    let second = Host::new().bridge(bridge.clone()).service(service()).start().await.unwrap();
    let client = first.client();
    let calls = (0..1000u64).map(|n| {
        let client = client.clone();
        async move { client.invoke::<(String, u64)>("calc/1/which", n).await.unwrap() }
    });
    let answers = futures::future::join_all(calls).await;
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for (n, (instance, echoed)) in answers.iter().enumerate() {
        assert_eq!(*echoed, n as u64, "each call got its own answer");
        *per_instance.entry(instance.clone()).or_default() += 1;
    }
    println!("calls per instance: {per_instance:?}");
    assert_eq!(per_instance.len(), 2, "both instances were used");
    assert_eq!(per_instance.values().sum::<usize>(), 1000);
    assert!(per_instance.values().all(|&n| n >= 100), "load is shared: {per_instance:?}");

    // When one instance stops, the other takes every call.
    first.shutdown().await;
    let client = second.client();
    for n in 0..10 {
        client.invoke::<(String, u64)>("calc/1/which", n).await.unwrap();
    }
    second.shutdown().await;
}

#[tokio::test]
async fn two_commands_of_one_name_fail_the_build_naming_both_handlers() {
    async fn register() -> Result<(), HandledError> {
        Ok(())
    }
    async fn register_again() -> Result<(), HandledError> {
        Ok(())
    }
    let service = Service::new("user", "1")
        .command(Command::new("register", register))
        .command(Command::new("register", register_again));
    let err = Host::new().service(service).start().await.err().expect("start must fail");
    let text = err.to_string();
    assert!(text.contains("user/1") && text.contains("`register` twice"), "{text}");
    assert!(text.contains("::register` and by"), "{text}");
    assert!(text.contains("::register_again`"), "{text}");
}

#[test]
fn services_are_checked_for_mistakes() {
    async fn unit(Payload(_): Payload<u64>) -> Result<(), HandledError> {
        Ok(())
    }
    async fn value(Payload(n): Payload<u64>) -> Result<u64, HandledError> {
        Ok(n)
    }
    let check = |s: Service| s.check().unwrap_err();
    assert!(matches!(
        check(Service::new("s", "1").subscription(Subscription::new("x", unit))),
        BuildError::UnfilteredSubscription(_)
    ));
    let err = check(Service::new("s", "1").subscription(Subscription::new("x", value).on_event("e")));
    assert!(err.to_string().contains("returns `u64` but declares no event"), "{err}");
    assert!(
        Service::new("s", "1")
            .subscription(Subscription::new("x", value).on_event("e").emits("f"))
            .check()
            .is_ok()
    );
    assert!(check(Service::new("a/b", "1")).to_string().contains("contains '/'"));
    assert!(check(Service::new("", "1")).to_string().contains("empty"));
    let twice = Service::new("s", "1")
        .subscription(Subscription::new("x", unit).on_event("e"))
        .subscription(Subscription::new("x", unit).on_event("f"));
    assert!(matches!(check(twice), BuildError::DuplicateSubscription { .. }));
}

#[tokio::test]
async fn configuration_errors_name_the_key_and_what_is_accepted() {
    let app = || Host::new().service(Service::new("user", "1")).service(Service::new("email", "1"));
    let env =
        |pairs: &'static [(&'static str, &'static str)]| move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());

    let err = app().configure(env(&[("PUREST_BRIDGE", "kafka://x")])).err().unwrap().to_string();
    assert!(
        err.contains("PUREST_BRIDGE=\"kafka://x\"") && err.contains("accepted: `memory`"),
        "{err}"
    );

    let err = app().configure(env(&[("PUREST_SERVICES", "user,nope")])).err().unwrap().to_string();
    assert!(err.contains("\"nope\"") && err.contains("user/1, email/1"), "{err}");

    let dup = Host::new().service(Service::new("user", "1")).service(Service::new("user", "1"));
    assert!(dup.start().await.err().unwrap().to_string().contains("registered twice"));

    // Selecting services runs only those.
    async fn ping() -> Result<String, HandledError> {
        Ok("pong".into())
    }
    let app = Host::new()
        .service(Service::new("user", "1").command(Command::new("ping", ping)))
        .service(Service::new("email", "1").command(Command::new("ping", ping)))
        .configure(env(&[("PUREST_BRIDGE", "memory"), ("PUREST_SERVICES", " email ")]))
        .unwrap()
        .start()
        .await
        .unwrap();
    assert_eq!(app.client().invoke::<String>("email/1/ping", ()).await.unwrap(), "pong");
    assert_eq!(app.client().invoke::<String>("user/1/ping", ()).await.unwrap_err().status, 503);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_handlers_then_refuses_new_work() {
    let finished = Arc::new(AtomicUsize::new(0));
    let done = finished.clone();
    let slow = move || {
        let done = done.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandledError>(1u64)
        }
    };
    let sub_done = finished.clone();
    let slow_sub = move |Payload(_): Payload<u64>| {
        let done = sub_done.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandledError>(())
        }
    };
    let bridge = MemoryBridge::new();
    let app = Host::new()
        .bridge(bridge.clone())
        .service(
            Service::new("slow", "1")
                .command(Command::new("slow", slow))
                .subscription(Subscription::new("s", slow_sub).on_event("e").durable()),
        )
        .start()
        .await
        .unwrap();
    let client = app.client();
    client.emit("e", 1u64).await.unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.invoke::<u64>("slow/1/slow", ()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(app.shutdown().await, "drained within the timeout");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        2,
        "shutdown waited for the command and the subscription in flight"
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), 1, "the in-flight call got its answer");
    assert_eq!(
        bridge.subscription_stats()["slow/1/s"].acked,
        1,
        "the durable message was acked before stopping"
    );
    assert_eq!(
        client.invoke::<u64>("slow/1/slow", ()).await.unwrap_err().status,
        503,
        "no new work after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_shutdown() {
    async fn forever() -> Result<(), HandledError> {
        std::future::pending::<()>().await;
        Ok(())
    }
    let app = Host::new()
        .drain_timeout(Duration::from_millis(100))
        .service(Service::new("f", "1").command(Command::new("f", forever)))
        .start()
        .await
        .unwrap();
    let client = app.client();
    tokio::spawn(async move { client.invoke::<()>("f/1/f", ()).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!app.shutdown().await, "reports that handlers were still running");
}

#[test]
fn message_info_fills_in_a_trace_id() {
    let envelope = purest_core::Envelope::new(
        Address::new("a", "1", "b"),
        purest_core::Message::Custom {
            payload: Body::empty_object(),
        },
    );
    let (info, _) = MessageInfo::split(envelope);
    assert_ne!(info.trace_id, Id::from_u128(0));
}
