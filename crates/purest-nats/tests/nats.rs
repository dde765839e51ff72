//! The NATS bridge against the real nats-server on 127.0.0.1:4222 (set `PUREST_NATS_URL` to use
//! another). Without a server these tests skip, unless `PUREST_REQUIRE_BROKERS=1` (CI), where they
//! fail. Every test uses its own service names, so tests can share the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use purest_core::prelude::*;
use purest_nats::NatsBridge;
use serde_json::json;

fn url() -> String {
    std::env::var("PUREST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A connected bridge, or `None` (skip) when no server runs and brokers are not required.
async fn bridge() -> Option<NatsBridge> {
    let reachable = tokio::net::TcpStream::connect(url().trim_start_matches("nats://")).await.is_ok();
    if !reachable {
        if std::env::var("PUREST_REQUIRE_BROKERS").as_deref() == Ok("1") {
            panic!("NATS is not reachable at {} and PUREST_REQUIRE_BROKERS=1", url());
        }
        eprintln!("skipping: NATS is not reachable at {}", url());
        return None;
    }
    Some(NatsBridge::connect_url(&url()).await.expect("connect to NATS"))
}

/// A service name no other test (or earlier run) uses.
fn unique(base: &str) -> String {
    format!("{base}{}", &Id::random().to_string()[..8])
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct Greeting {
    #[garde(length(min = 1))]
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Seen {
    text: String,
    principal: Option<String>,
    tenant: Option<String>,
    trace: String,
    copies: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
struct Copies {
    #[garde(range(min = 1, max = 3))]
    copies: u32,
}

async fn greet(ctx: Context, Payload(g): Payload<Greeting>, Params(p): Params<Copies>) -> Result<Seen, HandledError> {
    if g.name == "taken" {
        return Err(HandledError::conflict("name taken").with_data(json!({"name": "taken"})));
    }
    Ok(Seen {
        text: format!("hello {}", g.name),
        principal: ctx.principal_id().map(str::to_owned),
        tenant: ctx.tenant_id().map(str::to_owned),
        trace: ctx.trace_id().to_string(),
        copies: p.copies,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_payload_params_principal_tenant_trace_and_errors() {
    let Some(bridge) = bridge().await else { return };
    let name = unique("greeter");
    let app = App::new()
        .bridge(bridge)
        .service(Service::new(&name, "1").command(Command::new("greet", greet)))
        .start()
        .await
        .unwrap();
    let trace = Id::random();
    let client = app.client().with_principal("user-42").with_tenant("tenant-7").with_trace_id(trace);
    let target = format!("{name}/1/greet");
    let seen: Seen = client
        .call(target.clone())
        .params(Copies { copies: 2 })
        .invoke(Greeting { name: "ann".into() })
        .await
        .unwrap();
    assert_eq!(
        seen,
        Seen {
            text: "hello ann".into(),
            principal: Some("user-42".into()),
            tenant: Some("tenant-7".into()),
            trace: trace.to_string(),
            copies: 2
        }
    );

    let err = client
        .call(target.clone())
        .params(Copies { copies: 1 })
        .invoke::<Seen>(Greeting { name: "taken".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.message.as_str(), err.data.clone()),
        (409, "name taken", Some(json!({"name": "taken"})))
    );

    let err = client
        .call(target)
        .params(Copies { copies: 9 })
        .invoke::<Seen>(Greeting { name: "".into() })
        .await
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("/name") || err.message.contains("/copies"), "{err}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_503_at_once_and_a_deadline_is_504() {
    let Some(bridge) = bridge().await else { return };
    let name = unique("slow");
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, HandledError>(1u32)
    };
    let app = App::new()
        .bridge(bridge)
        .service(Service::new(&name, "1").command(Command::new("slow", slow)))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let err = app.client().invoke::<u32>(format!("{name}/1/nothing"), ()).await.unwrap_err();
    assert_eq!(err.status, 503, "{err}");
    assert!(err.message.contains("nothing"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no responders is known at once: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let err = app
        .client()
        .call(format!("{name}/1/slow"))
        .timeout(Duration::from_millis(300))
        .invoke::<u32>(())
        .await
        .unwrap_err();
    assert_eq!(err.status, 504, "{err}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_two_connections_share_the_load() {
    let Some(first_bridge) = bridge().await else { return };
    let second_bridge = bridge().await.unwrap();
    let name = unique("calc");
    let which = |ctx: Context, Payload(n): Payload<u64>| async move {
        Ok::<_, HandledError>((ctx.address().instance_id.as_deref().unwrap_or_default().to_owned(), n))
    };
    let service = || Service::new(&name, "1").command(Command::new("which", which));
    let first = App::new().bridge(first_bridge).service(service()).start().await.unwrap();
    let second = App::new().bridge(second_bridge).service(service()).start().await.unwrap();
    let client = first.client();
    let target = format!("{name}/1/which");
    let calls = (0..1000u64).map(|n| {
        let (client, target) = (client.clone(), target.clone());
        async move { client.invoke::<(String, u64)>(target, n).await.unwrap() }
    });
    let answers = futures::future::join_all(calls).await;
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for (n, (instance, echoed)) in answers.into_iter().enumerate() {
        assert_eq!(echoed, n as u64);
        *per_instance.entry(instance).or_default() += 1;
    }
    println!("1000 calls over NATS, per instance: {per_instance:?}");
    assert_eq!(per_instance.len(), 2, "both instances used: {per_instance:?}");
    assert_eq!(per_instance.values().sum::<usize>(), 1000, "each call handled exactly once");
    first.shutdown().await;
    second.shutdown().await;
}

type Log = Arc<Mutex<Vec<(String, u64)>>>;
type Handled = std::pin::Pin<Box<dyn Future<Output = Result<(), HandledError>> + Send>>;

fn recorder(log: &Log, label: &str) -> impl Fn(Payload<u64>) -> Handled + Clone + Send + Sync + 'static {
    let (log, label) = (log.clone(), label.to_owned());
    move |Payload(n)| {
        let (log, label) = (log.clone(), label.clone());
        Box::pin(async move {
            log.lock().unwrap().push((label, n));
            Ok(())
        })
    }
}

fn count(log: &Log, label: &str) -> usize {
    log.lock().unwrap().iter().filter(|(l, _)| l == label).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fan_out_to_every_service_once_and_to_every_instance_when_asked() {
    let Some(bridge) = bridge().await else { return };
    let other = bridge.clone();
    let event = unique("tick");
    let log: Log = Default::default();
    let mut app = App::new().bridge(bridge);
    for label in ["a", "b", "c"] {
        app = app.service(Service::new(&unique(label), "1").subscription(Subscription::new("on", recorder(&log, label)).on_event(&event)));
    }
    let watcher = unique("watch");
    let app = app
        .service(
            Service::new(&watcher, "1").subscription(
                Subscription::new("all", recorder(&log, "instance1"))
                    .on_event(&event)
                    .every_instance(),
            ),
        )
        .start()
        .await
        .unwrap();
    let second = App::new()
        .bridge(other)
        .service(
            Service::new(&watcher, "1").subscription(
                Subscription::new("all", recorder(&log, "instance2"))
                    .on_event(&event)
                    .every_instance(),
            ),
        )
        .start()
        .await
        .unwrap();
    for n in 0..50u64 {
        app.client().emit(Name::new(&event), n).await.unwrap();
    }
    wait_until("250 deliveries", || log.lock().unwrap().len() >= 250).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for label in ["a", "b", "c", "instance1", "instance2"] {
        assert_eq!(count(&log, label), 50, "{label} received each event exactly once");
    }
    app.shutdown().await;
    second.shutdown().await;
}
