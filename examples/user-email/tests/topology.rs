//! The headline promise, end to end: the same binary and the same HTTP scenario, run
//! (a) as one process on the in-memory bridge, (b) as three processes (gateway, `user`, `email`)
//! over a broker and (c) as (b) with a second `user` process sharing the load — same answers,
//! every welcome mail sent once. Then one `user` process is killed with SIGKILL under load: every
//! request succeeds or gets 503/504, none hangs, and no success is lost. Run over NATS and over
//! RabbitMQ, each a broker of the test's own.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{API_KEY, Served, serve};
use purest_bridge_tests::mosquitto_broker::OwnMosquitto;
use purest_bridge_tests::nats_server::OwnServer;
use purest_bridge_tests::rabbitmq_node::OwnNode;
use purest_bridge_tests::redis_server::OwnRedis;
use serde_json::{Value, json};

const USERS: usize = 10;

fn redis_url() -> Option<String> {
    let url = std::env::var("PUREST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let reachable = std::net::TcpStream::connect(url.trim_start_matches("redis://").trim_end_matches('/')).is_ok();
    if !reachable {
        assert_ne!(
            std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
            Ok("1"),
            "Redis is not reachable at {url}"
        );
        eprintln!("skipping: Redis is not reachable at {url}");
        return None;
    }
    Some(url)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// POSTs a registration; the status and the JSON body.
async fn post_user(http: &reqwest::Client, base: &str, body: Value) -> (u16, Value) {
    let response = http.post(format!("{base}/api/v1/users")).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// GETs a user with the API key; the status and the JSON body.
async fn get_user(http: &reqwest::Client, base: &str, id: &str) -> (u16, Value) {
    let response = http
        .get(format!("{base}/api/v1/users/{id}"))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// One line per request: what came back, without the server-made ids.
async fn scenario(base: &str) -> Vec<String> {
    let http = client();
    let mut log = Vec::new();
    let mut ids = Vec::new();
    for i in 0..USERS {
        let (status, mut body) = post_user(
            &http,
            base,
            json!({"name": format!("User {i}"), "email": format!("u{i}@example.com")}),
        )
        .await;
        ids.push(body["id"].as_str().unwrap_or_default().to_owned());
        body.as_object_mut().map(|b| b.remove("id"));
        log.push(format!("register {i}: {status} {body}"));
    }
    let (status, body) = post_user(&http, base, json!({"name": "Again", "email": "U0@example.com"})).await;
    log.push(format!("duplicate: {status} {}", body["detail"]));
    let (status, body) = post_user(&http, base, json!({"name": "", "email": "nope"})).await;
    let paths: Vec<&Value> = body["violations"]
        .as_array()
        .map(|v| v.iter().map(|v| &v["path"]).collect())
        .unwrap_or_default();
    log.push(format!("invalid: {status} {paths:?}"));
    let malformed = http
        .post(format!("{base}/api/v1/users"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    log.push(format!("malformed: {}", malformed.status().as_u16()));
    for (i, id) in ids.iter().enumerate() {
        let (status, body) = get_user(&http, base, id).await;
        log.push(format!("get {i}: {status} {} {}", body["name"], body["email"]));
    }
    let (status, _) = get_user(&http, base, "0000").await;
    log.push(format!("get unknown: {status}"));
    let anonymous = http.get(format!("{base}/api/v1/users/{}", ids[0])).send().await.unwrap();
    log.push(format!("anonymous: {}", anonymous.status().as_u16()));
    let wrong_method = http.put(format!("{base}/api/v1/users")).send().await.unwrap();
    log.push(format!("put: {}", wrong_method.status().as_u16()));
    log
}

/// How often each address got a welcome mail, from the email processes' stdout.
fn mails(outputs: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for output in outputs {
        for line in output.lines() {
            if let Some(to) = line.strip_prefix("To: ") {
                *counts.entry(to.to_owned()).or_default() += 1;
            }
        }
    }
    counts
}

fn every_user_mailed_once(counts: &BTreeMap<String, usize>) {
    let expected: BTreeMap<String, usize> = (0..USERS).map(|i| (format!("u{i}@example.com"), 1)).collect();
    assert_eq!(counts, &expected);
}

/// Waits until `process` logged `count` welcome mails.
fn wait_for_mails(process: &Served, count: usize) {
    for _ in 0..count {
        process.wait_for_log("welcome mail sent");
    }
}

struct Microservices {
    gateway: Served,
    users: Vec<Served>,
    email: Served,
}

fn start_microservices(bridge: &str, redis: &str, prefix: &str, user_instances: usize) -> Microservices {
    let common = |services: &'static str, http: &'static str| -> Vec<(String, String)> {
        vec![
            ("PUREST_BRIDGE".into(), bridge.to_owned()),
            ("PUREST_SERVICES".into(), services.into()),
            ("PUREST_HTTP".into(), http.into()),
            ("PUREST_HTTP_TIMEOUT_MS".into(), "2000".into()),
            ("USER_EMAIL_REDIS".into(), redis.to_owned()),
            ("USER_EMAIL_REDIS_PREFIX".into(), prefix.to_owned()),
        ]
    };
    let start = |env: Vec<(String, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        serve(&env)
    };
    let email = start(common("email", "off"));
    email.wait_for_log("service email/1 started");
    let users: Vec<Served> = (0..user_instances)
        .map(|_| {
            let user = start(common("user", "off"));
            user.wait_for_log("service user/1 started");
            user
        })
        .collect();
    let gateway = start(common("none", "127.0.0.1:0"));
    Microservices { gateway, users, email }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_binary_as_monolith_and_as_microservices_over_nats_and_a_killed_instance() {
    let Some(redis) = redis_url() else { return };
    let Some(nats) = OwnServer::start() else { return };
    monolith_then_microservices(&redis, &nats.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_binary_as_monolith_and_as_microservices_over_rabbitmq_and_a_killed_instance() {
    let Some(redis) = redis_url() else { return };
    let Some(rabbitmq) = OwnNode::start() else { return };
    monolith_then_microservices(&redis, &rabbitmq.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_binary_as_monolith_and_as_microservices_over_mqtt_and_a_killed_instance() {
    let Some(redis) = redis_url() else { return };
    let Some(mosquitto) = OwnMosquitto::start() else { return };
    monolith_then_microservices(&redis, &mosquitto.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_binary_as_monolith_and_as_microservices_over_redis_and_a_killed_instance() {
    let Some(redis) = redis_url() else { return };
    let Some(bridge) = OwnRedis::start() else { return };
    monolith_then_microservices(&redis, &bridge.url()).await;
}

/// (a), then (b) and (c) over the broker at `bridge`, then the kill.
async fn monolith_then_microservices(redis: &str, bridge: &str) {
    let run = purest::Id::random().to_string();

    // (a) one process, in-memory bridge and store.
    let monolith = serve(&[("PUREST_HTTP", "127.0.0.1:0")]);
    let base = monolith.http_base();
    let a = scenario(&base).await;
    wait_for_mails(&monolith, USERS);
    let mails_a = mails(&[monolith.stop()]);
    every_user_mailed_once(&mails_a);
    assert!(
        a.iter()
            .filter(|line| line.starts_with("register"))
            .all(|line| line.contains(": 200 ")),
        "{a:#?}"
    );

    // (b) gateway, user and email in three processes over the broker, users in Redis.
    let b_processes = start_microservices(bridge, redis, &format!("purest-test:{run}:b:"), 1);
    let base = b_processes.gateway.http_base();
    let b = scenario(&base).await;
    wait_for_mails(&b_processes.email, USERS);
    let Microservices { gateway, users, email } = b_processes;
    gateway.stop();
    users.into_iter().for_each(|u| drop(u.stop()));
    every_user_mailed_once(&mails(&[email.stop()]));
    assert_eq!(a, b, "monolith and microservices answer alike");

    // (c) as (b) with a second user instance.
    let c_processes = start_microservices(bridge, redis, &format!("purest-test:{run}:c:"), 2);
    let base = c_processes.gateway.http_base();
    let c = scenario(&base).await;
    wait_for_mails(&c_processes.email, USERS);
    assert_eq!(a, c, "two user instances answer like one");

    // SIGKILL one user instance under load.
    let Microservices { gateway, mut users, email } = c_processes;
    let http = client();
    let started = Instant::now();
    let mut requests = Vec::new();
    for i in 0..200 {
        let (http, base) = (http.clone(), base.clone());
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let address = format!("load{i}@example.com");
            let response = http
                .post(format!("{base}/api/v1/users"))
                .json(&json!({"name": "Load", "email": address}))
                .send()
                .await;
            let answer = match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or_default();
                    Ok((status, body["id"].as_str().unwrap_or_default().to_owned()))
                }
                Err(e) => Err(e.to_string()),
            };
            (address, answer, sent.elapsed())
        }));
        if i == 60 {
            users[0].kill();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut succeeded = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for request in requests {
        let (address, answer, took) = request.await.unwrap();
        let (status, id) = answer.unwrap_or_else(|e| panic!("{address}: no HTTP answer (hung or dropped): {e}"));
        assert!(took < Duration::from_secs(5), "{address} took {took:?}, past its 2 s deadline");
        assert!(matches!(status, 200 | 503 | 504), "{address}: {status}");
        *statuses.entry(status).or_default() += 1;
        if status == 200 {
            succeeded.push((address, id));
        }
    }
    eprintln!("SIGKILL under load: statuses {statuses:?} in {:?}", started.elapsed());
    assert!(succeeded.len() > 100, "the surviving instance kept serving: {statuses:?}");
    // No success is lost: each user can be fetched, and each got its welcome mail.
    for (address, id) in &succeeded {
        assert_eq!(get_user(&http, &base, id).await.0, 200, "{address} registered, then lost");
    }
    wait_for_mails(&email, succeeded.len());
    gateway.stop();
    users.split_off(1).into_iter().for_each(|u| drop(u.stop()));
    let counts = mails(&[email.stop()]);
    for (address, _) in &succeeded {
        assert!(
            counts.get(address).is_some_and(|n| *n >= 1),
            "the welcome mail of {address} (a success) is missing"
        );
    }
}
