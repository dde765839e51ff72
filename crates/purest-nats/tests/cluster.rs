//! docs/ARCHITECTURE.md §5.5 and §5.6 on a three-node NATS cluster of the test's own (JetStream, the event
//! stream kept on all three nodes: `stream_replicas = 3`), the way users grow past one machine:
//! one node SIGKILLed in the middle of traffic loses no acknowledged event, and commands keep
//! being answered through the other nodes, which the bridges reconnect to. The node killed is the
//! one both bridges are connected to, made the leader of the event stream and of the durable
//! consumer first, so the kill hits everything at once. Without `nats-server` the tests skip,
//! unless `PUREST_REQUIRE_BROKERS=1` (CI), where they fail.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use purest_bridge_tests::nats_server::OwnCluster;
use purest_bridge_tests::{report, unique, wait_for_count};
use purest_core::prelude::*;
use purest_core::{Bridge, RunningApp};
use purest_nats::{EVENT_STREAM, NatsBridge, NatsConfig};

/// Events the kill test emits, one after the other, every emit awaited.
const EVENTS: u64 = 2_000;
/// At most this many in the restart test, which emits until it has seen what it waits for.
const EVENTS_AT_MOST: u64 = 50_000;
/// The callers' deadline for invokes and emits.
const DEADLINE: Duration = Duration::from_secs(1);
/// A call that fails must fail by this, not hang until some later timeout (the default 30 s)
/// or forever. Generous beyond the deadline: the cluster shares 2 cores with the other tests.
const FAIL_FAST: Duration = Duration::from_secs(6);
/// Short, so deliveries whose ack was lost with the node come again within the test.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// After a kill, commands must be answered again within this (a bound on a hang, not a speed
/// goal: the report prints how long recovery took).
const RECOVERY: Duration = Duration::from_secs(30);

async fn connect(cluster: &OwnCluster) -> NatsBridge {
    let mut config = NatsConfig::from_url(&cluster.url()).expect("the cluster's URL");
    assert_eq!(config.servers.len(), 3, "one URL per node: {:?}", config.servers);
    config.stream_replicas = Some(3);
    config.ack_wait = Some(ACK_WAIT);
    config.connect_timeout = Some(Duration::from_secs(10));
    NatsBridge::connect(config).await.expect("connect to the cluster")
}

/// The node a bridge's connection is on.
fn node_of(cluster: &OwnCluster, bridge: &NatsBridge) -> usize {
    let port = bridge.client().server_info().port;
    cluster
        .node_of_port(port)
        .unwrap_or_else(|| panic!("connected to port {port}, which is no node of the cluster"))
}

/// A cluster with a service (an echo command and a durable subscription recording event numbers)
/// and a caller, both connected to the node `victim`, which also leads the event stream and the
/// consumer where the cluster lets it.
struct Setup {
    cluster: OwnCluster,
    services: RunningApp,
    caller: RunningApp,
    service_bridge: NatsBridge,
    caller_bridge: NatsBridge,
    /// Another connection, for asking JetStream about the stream.
    admin: async_nats::Client,
    handled: Arc<Mutex<Vec<u64>>>,
    target: String,
    event: String,
    consumer: String,
    victim: usize,
    /// What the victim was, for the report.
    roles: Vec<String>,
}

async fn setup() -> Option<Setup> {
    let cluster = OwnCluster::start()?;
    let service_bridge = connect(&cluster).await;
    let victim = node_of(&cluster, &service_bridge);
    // The client picks a server of the list at random: connect until the caller shares the
    // service's node, so the kill cuts both off.
    let mut caller_bridge = connect(&cluster).await;
    for _ in 0..30 {
        if node_of(&cluster, &caller_bridge) == victim {
            break;
        }
        caller_bridge = connect(&cluster).await;
    }

    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = handled.clone();
    let record = move |Payload(n): Payload<u64>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(n);
            Ok::<_, HandledError>(())
        }
    };
    let echo = |Payload(n): Payload<u64>| async move { Ok::<_, HandledError>(n) };
    let (service, event) = (unique("clustered"), unique("tick"));
    let services = Host::new()
        .shared_bridge(Arc::new(service_bridge.clone()) as Arc<dyn Bridge>)
        .drain_timeout(Duration::from_secs(10))
        .service(
            Service::new(&service, "1")
                .command(Command::new("echo", echo))
                .subscription(Subscription::new("record", record).on_event(&event).durable()),
        )
        .start()
        .await
        .expect("the service starts on the cluster");
    let caller = Host::new()
        .shared_bridge(Arc::new(caller_bridge.clone()) as Arc<dyn Bridge>)
        .drain_timeout(Duration::from_secs(10))
        .start()
        .await
        .expect("the caller starts on the cluster");

    let servers = NatsConfig::from_url(&cluster.url()).expect("the cluster's URL").servers;
    let admin = async_nats::connect(servers).await.expect("an admin connection");
    let jetstream = async_nats::jetstream::new(admin.clone());
    // The service's durable subscription created the stream and its consumer, with all three
    // nodes up; `lead` below waits until both have a leader and two current followers, so every
    // event is kept on three nodes before the first kill. (NATS 2.9.10 also creates an R3 stream
    // with one node down, on the two left plus the dead one as a follower that catches up later.)
    let mut stream = jetstream.get_stream(EVENT_STREAM).await.expect("the event stream exists");
    let replicas = stream.info().await.expect("stream info").config.num_replicas;
    assert_eq!(replicas, 3, "the event stream is created with stream_replicas copies");
    // The subscription's consumers: one per event message type; custom messages are this one's.
    let consumer = format!("purest_{service}_1_record");
    let names: Vec<String> = stream.consumer_names().filter_map(|name| async move { name.ok() }).collect().await;
    assert!(names.contains(&consumer), "the durable consumer {consumer} exists: {names:?}");
    for name in names.iter().filter(|n| n.starts_with(&consumer)) {
        let config = stream.consumer_info(name).await.expect("consumer info").config;
        // 0: the stream's own.
        assert!(matches!(config.num_replicas, 0 | 3), "{name} has {} replicas", config.num_replicas);
    }

    let victim_name = OwnCluster::node_name(victim);
    let stream_led = lead(&admin, &Group::Stream, &victim_name).await;
    let consumer_led = lead(&admin, &Group::Consumer(&consumer), &victim_name).await;
    let mut roles = vec!["the service's connection".to_owned()];
    if node_of(&cluster, &caller_bridge) == victim {
        roles.push("the caller's connection".into());
    }
    if stream_led {
        roles.push("event stream leader".into());
    }
    if consumer_led {
        roles.push("consumer leader".into());
    }
    if cluster.meta_leader(victim).as_deref() == Some(victim_name.as_str()) {
        roles.push("JetStream meta leader".into());
    }
    Some(Setup {
        cluster,
        services,
        caller,
        service_bridge,
        caller_bridge,
        admin,
        handled,
        target: format!("{service}/1/echo"),
        event,
        consumer,
        victim,
        roles,
    })
}

/// A RAFT group of JetStream: the event stream or one of its consumers.
enum Group<'a> {
    Stream,
    Consumer(&'a str),
}

impl Group<'_> {
    fn stepdown_subject(&self) -> String {
        match self {
            Group::Stream => format!("$JS.API.STREAM.LEADER.STEPDOWN.{EVENT_STREAM}"),
            Group::Consumer(name) => format!("$JS.API.CONSUMER.LEADER.STEPDOWN.{EVENT_STREAM}.{name}"),
        }
    }

    /// The group's leader and the peers following it (name, current), as JetStream reports them.
    async fn cluster(&self, admin: &async_nats::Client) -> Option<(String, Vec<(String, bool)>)> {
        let jetstream = async_nats::jetstream::new(admin.clone());
        let stream = jetstream.get_stream(EVENT_STREAM).await.ok()?;
        let cluster = match self {
            Group::Stream => stream.get_info().await.ok()?.cluster?,
            Group::Consumer(name) => stream.consumer_info(name).await.ok()?.cluster?,
        };
        let peers = cluster.replicas.into_iter().map(|p| (p.name, p.current)).collect();
        Some((cluster.leader?, peers))
    }

    /// Waits until the group has a leader other than `not` and `followers` current followers.
    async fn wait_leader(&self, admin: &async_nats::Client, not: Option<&str>, followers: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.cluster(admin).await;
            if let Some((leader, peers)) = &seen
                && Some(leader.as_str()) != not
                && peers.iter().filter(|(_, current)| *current).count() >= followers
            {
                return leader.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {} to have a leader (not {not:?}) and {followers} current followers; saw {seen:?}",
                self.name()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn name(&self) -> String {
        match self {
            Group::Stream => format!("stream {EVENT_STREAM}"),
            Group::Consumer(name) => format!("consumer {name}"),
        }
    }
}

/// Asks the group's leader to step down until `node` leads it (each stepdown elects one of the
/// others); whether it does in the end. The group is settled (a leader, both followers current)
/// before each step and after the last.
async fn lead(admin: &async_nats::Client, group: &Group<'_>, node: &str) -> bool {
    for _ in 0..10 {
        let leader = group.wait_leader(admin, None, 2, Duration::from_secs(15)).await;
        if leader == node {
            return true;
        }
        let answer = admin
            .request(group.stepdown_subject(), "".into())
            .await
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned());
        match answer {
            Ok(body) if body.contains("\"success\":true") => {
                group.wait_leader(admin, Some(&leader), 0, Duration::from_secs(15)).await;
            }
            other => eprintln!("{} stepdown refused: {other:?}", group.name()),
        }
    }
    group.wait_leader(admin, None, 2, Duration::from_secs(15)).await == node
}

/// What the callers saw: emits one after the other (each awaited), invokes alongside.
#[derive(Default)]
struct Traffic {
    /// Emitted so far (acknowledged or not).
    sent: AtomicUsize,
    /// Event numbers whose emit returned `Ok` (JetStream stored them): when the emit started,
    /// when it returned.
    acked: Mutex<Vec<(u64, Instant, Instant)>>,
    /// Emits that failed: status and how long they took.
    emit_failures: Mutex<Vec<(Instant, u16, Duration)>>,
    /// Invokes: when they returned, the status if they failed, how long they took.
    invokes: Mutex<Vec<(Instant, Option<u16>, Duration)>>,
    /// Set to end the emits early.
    stop: AtomicBool,
    /// Set when the emits ended.
    done: AtomicBool,
}

impl Traffic {
    /// Starts the emitting (up to `events`, or until stopped) and the invoking tasks.
    fn start(setup: &Setup, events: u64) -> (Arc<Self>, tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
        let traffic = Arc::new(Traffic::default());
        let client = setup.caller.client().with_timeout(DEADLINE);
        let (t, c, tick) = (traffic.clone(), client.clone(), Name::new(&setup.event));
        let emitter = tokio::spawn(async move {
            for n in 0..events {
                if t.stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let emitted = c.emit(tick.clone(), n).await;
                t.sent.fetch_add(1, Ordering::Relaxed);
                match emitted {
                    Ok(()) => t.acked.lock().unwrap().push((n, started, Instant::now())),
                    Err(e) => {
                        t.emit_failures.lock().unwrap().push((started, e.status, started.elapsed()));
                        // Not retried: an event the caller was told failed may or may not arrive.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            t.done.store(true, Ordering::Relaxed);
        });
        let (t, target) = (traffic.clone(), setup.target.clone());
        let invoker = tokio::spawn(async move {
            let mut n = 0u64;
            while !t.done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answered = client.invoke::<u64>(target.clone(), n).await;
                let took = started.elapsed();
                let status = match answered {
                    Ok(echoed) => {
                        assert_eq!(echoed, n, "the echo answers the invoke it was asked");
                        None
                    }
                    Err(e) => Some(e.status),
                };
                t.invokes.lock().unwrap().push((Instant::now(), status, took));
                tokio::time::sleep(Duration::from_millis(if status.is_some() { 50 } else { 2 })).await;
                n += 1;
            }
        });
        (traffic, emitter, invoker)
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn acked_since(&self, since: Instant) -> usize {
        self.acked.lock().unwrap().iter().filter(|(_, _, at)| *at >= since).count()
    }

    /// The first acknowledged emit that started after `since`: how long after it returned.
    fn first_ack_since(&self, since: Instant) -> Option<Duration> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .find(|(_, started, _)| *started >= since)
            .map(|(_, _, at)| at.duration_since(since))
    }

    /// The first successful invoke that returned after `since`: how long after.
    fn first_success_since(&self, since: Instant) -> Option<Duration> {
        self.invokes
            .lock()
            .unwrap()
            .iter()
            .find(|(at, status, took)| status.is_none() && *at >= since && at.duration_since(since) >= *took)
            .map(|(at, _, _)| at.duration_since(since))
    }

    fn invoke_successes_since(&self, since: Instant) -> usize {
        self.invokes
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, status, _)| status.is_none() && *at >= since)
            .count()
    }

    /// Every failed invoke and emit: 503 or 504, within its deadline (plus slack). Returns the
    /// failed invokes and their statuses (`503×n, 504×m`), and the same for emits.
    fn check_failures(&self) -> (usize, String, usize, String) {
        let statuses = |failures: &[(u16, Duration)], what: &str| {
            let mut counts = BTreeMap::new();
            for &(status, took) in failures {
                assert!(matches!(status, 503 | 504), "{what} failed with {status}, not 503 or 504");
                assert!(took < FAIL_FAST, "{what} failed only after {took:?} (deadline {DEADLINE:?})");
                *counts.entry(status).or_insert(0usize) += 1;
            }
            let shown: Vec<String> = counts.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            let longest = failures.iter().map(|&(_, took)| took).max().unwrap_or_default();
            let shown = if shown.is_empty() {
                "none".to_owned()
            } else {
                format!("{}, longest {longest:.0?}", shown.join(", "))
            };
            (failures.len(), shown)
        };
        let invokes: Vec<(u16, Duration)> = self
            .invokes
            .lock()
            .unwrap()
            .iter()
            .filter_map(|&(_, status, took)| status.map(|s| (s, took)))
            .collect();
        let emits: Vec<(u16, Duration)> = self.emit_failures.lock().unwrap().iter().map(|&(_, s, t)| (s, t)).collect();
        let (failed_invokes, invoke_statuses) = statuses(&invokes, "an invoke");
        let (failed_emits, emit_statuses) = statuses(&emits, "an emit");
        (failed_invokes, invoke_statuses, failed_emits, emit_statuses)
    }
}

/// Acknowledged, handled (all deliveries), duplicates and lost (acknowledged, never handled),
/// once every acknowledged event was handled or the wait ran out.
async fn settle(traffic: &Traffic, handled: &Mutex<Vec<u64>>) -> (usize, usize, usize, usize) {
    let acked: HashSet<u64> = traffic.acked.lock().unwrap().iter().map(|&(n, _, _)| n).collect();
    let missing = || {
        let seen: HashSet<u64> = handled.lock().unwrap().iter().copied().collect();
        acked.difference(&seen).count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while missing() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handled = handled.lock().unwrap().clone();
    let distinct: HashSet<u64> = handled.iter().copied().collect();
    let lost = acked.difference(&distinct).count();
    (acked.len(), handled.len(), handled.len() - distinct.len(), lost)
}

/// Waits for the traffic to finish, bounded.
async fn finish(traffic: &Traffic, emitter: tokio::task::JoinHandle<()>, invoker: tokio::task::JoinHandle<()>) {
    let limit = Duration::from_secs(40);
    let deadline = Instant::now() + limit;
    while !traffic.done.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for the emits: sent {}, {} acknowledged",
            traffic.sent.load(Ordering::Relaxed),
            traffic.acked_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emitter.await.expect("the emitter");
    tokio::time::timeout(DEADLINE * 2, invoker)
        .await
        .expect("the invoker stops after the emits")
        .expect("the invoker");
}

/// Waits until `count` acknowledged events were stored after `since`.
async fn wait_for_acks_since(traffic: &Traffic, since: Instant, count: usize, what: &str) {
    let limit = RECOVERY;
    let deadline = Instant::now() + limit;
    while traffic.acked_since(since) < count {
        assert!(
            Instant::now() < deadline && !traffic.done.load(Ordering::Relaxed),
            "{} waiting for {count} acknowledged emits {what}: saw {}",
            if traffic.done.load(Ordering::Relaxed) {
                "the emits ended".to_owned()
            } else {
                format!("timed out after {limit:?}")
            },
            traffic.acked_since(since)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until an invoke that returned after `since` succeeded; how long after `since`.
async fn wait_for_answer_since(traffic: &Traffic, since: Instant, what: &str) -> Duration {
    let deadline = since + RECOVERY;
    loop {
        if let Some(after) = traffic.first_success_since(since) {
            return after;
        }
        let after: Vec<Option<u16>> = traffic
            .invokes
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _, _)| *at >= since)
            .map(|(_, s, _)| *s)
            .collect();
        assert!(
            Instant::now() < deadline,
            "no command answered within {RECOVERY:?} {what}: {} invokes since, statuses of the last: {:?}",
            after.len(),
            &after[after.len().saturating_sub(5)..]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_traffic() {
    let Some(mut setup) = setup().await else {
        return;
    };
    let (traffic, emitter, invoker) = Traffic::start(&setup, EVENTS);
    wait_for_count(
        "a quarter of the events acknowledged",
        Duration::from_secs(30),
        EVENTS as usize / 4,
        || traffic.acked_count(),
    )
    .await;
    setup.cluster.kill(setup.victim);
    let killed = Instant::now();
    let sent_at_kill = traffic.sent.load(Ordering::Relaxed);
    assert!(sent_at_kill < EVENTS as usize, "the kill lands in the middle of the traffic");

    let first_success = wait_for_answer_since(&traffic, killed, "after the kill").await;
    wait_for_acks_since(&traffic, killed, 100, "after the kill").await;
    finish(&traffic, emitter, invoker).await;
    let (failed_invokes, invoke_statuses, failed_emits, emit_statuses) = traffic.check_failures();
    let answered_after = traffic.invoke_successes_since(killed);
    let acked_after = traffic.acked_since(killed);
    let stored_again = traffic.first_ack_since(killed).expect("an emit after the kill was acknowledged");
    let (acked, handled, duplicates, lost) = settle(&traffic, &setup.handled).await;
    let victim = OwnCluster::node_name(setup.victim);
    let new_leader = Group::Stream.wait_leader(&setup.admin, Some(&victim), 1, RECOVERY).await;
    report(&format!(
        "[nats cluster] node SIGKILLed mid-traffic: sent {EVENTS}, acknowledged {acked}, handled {handled}, duplicates {duplicates}, \
         lost {lost}, invokes failed during failover {failed_invokes} (statuses {invoke_statuses}), first success after the kill in \
         {first_success:.0?}; emits failed {failed_emits} (statuses {emit_statuses}), first event stored after the kill in \
         {stored_again:.0?}; {victim} killed after {sent_at_kill} emits, was {}; after the kill {answered_after} invokes answered, \
         {acked_after} events acknowledged, stream led by {new_leader}",
        setup.roles.join(", ")
    ));
    assert_eq!(lost, 0, "every acknowledged event is handled");
    assert!(acked_after >= 100, "events are stored with two of three nodes");
    assert!(answered_after > 0, "commands are answered after the kill");
    for (who, bridge) in [("service", &setup.service_bridge), ("caller", &setup.caller_bridge)] {
        assert!(bridge.is_ready(), "the {who}'s bridge is connected");
        assert_ne!(node_of(&setup.cluster, bridge), setup.victim, "the {who} moved to a live node");
    }
    setup.caller.shutdown().await;
    setup.services.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restarted_mid_traffic() {
    let Some(mut setup) = setup().await else {
        return;
    };
    let victim = OwnCluster::node_name(setup.victim);
    let (traffic, emitter, invoker) = Traffic::start(&setup, EVENTS_AT_MOST);
    wait_for_count("acknowledged events", Duration::from_secs(30), 300, || traffic.acked_count()).await;
    setup.cluster.kill(setup.victim);
    let killed = Instant::now();
    let first_success = wait_for_answer_since(&traffic, killed, "after the kill").await;
    wait_for_acks_since(&traffic, killed, 100, "with the node down").await;
    let acked_while_down = traffic.acked_since(killed);

    let restarting = Instant::now();
    tokio::task::block_in_place(|| setup.cluster.restart(setup.victim));
    let back = restarting.elapsed();
    // Back and current: it holds the events stored while it was down.
    Group::Stream.wait_leader(&setup.admin, None, 2, RECOVERY).await;
    Group::Consumer(&setup.consumer).wait_leader(&setup.admin, None, 2, RECOVERY).await;
    let current = restarting.elapsed();
    let restarted = Instant::now();
    wait_for_acks_since(&traffic, restarted, 100, "after the restart").await;

    // The restarted node now counts: with the stream's leader killed too, the stream and the
    // consumer go on on the restarted node and the one left.
    let leader = Group::Stream.wait_leader(&setup.admin, None, 2, RECOVERY).await;
    let second = (0..3)
        .find(|&node| OwnCluster::node_name(node) == leader && node != setup.victim)
        .unwrap_or((setup.victim + 1) % 3);
    setup.cluster.kill(second);
    let second_killed = Instant::now();
    let second_success = wait_for_answer_since(&traffic, second_killed, "after the second kill").await;
    wait_for_acks_since(&traffic, second_killed, 100, "after the second kill").await;
    traffic.stop.store(true, Ordering::Relaxed);
    finish(&traffic, emitter, invoker).await;
    let sent = traffic.sent.load(Ordering::Relaxed);
    let (failed_invokes, invoke_statuses, failed_emits, emit_statuses) = traffic.check_failures();
    let acked_after_second = traffic.acked_since(second_killed);
    let stored_again = traffic.first_ack_since(killed).expect("an emit after the kill was acknowledged");
    let stored_again_second = traffic
        .first_ack_since(second_killed)
        .expect("an emit after the second kill was acknowledged");
    let (acked, handled, duplicates, lost) = settle(&traffic, &setup.handled).await;
    report(&format!(
        "[nats cluster] node restarted mid-traffic: sent {sent}, acknowledged {acked}, handled {handled}, duplicates {duplicates}, \
         lost {lost}, invokes failed {failed_invokes} (statuses {invoke_statuses}), emits failed {failed_emits} (statuses {emit_statuses}); \
         {victim} ({}) killed, first success after it in {first_success:.0?}, first event stored after it in {stored_again:.0?}, \
         {acked_while_down} events acknowledged while it was down; back in {back:.0?}, current in {current:.0?}; then {} (stream leader \
         {leader}) SIGKILLed, first success after it in {second_success:.0?}, first event stored after it in {stored_again_second:.0?}, \
         {acked_after_second} events acknowledged after it",
        setup.roles.join(", "),
        OwnCluster::node_name(second),
    ));
    assert_eq!(lost, 0, "every acknowledged event is handled");
    assert!(
        acked_after_second >= 100,
        "events are stored on the restarted node and the one left"
    );
    for (who, bridge) in [("service", &setup.service_bridge), ("caller", &setup.caller_bridge)] {
        assert!(bridge.is_ready(), "the {who}'s bridge is connected");
    }
    let answer: u64 = setup
        .caller
        .client()
        .with_timeout(DEADLINE)
        .invoke(setup.target.clone(), 7u64)
        .await
        .expect("commands are answered at the end");
    assert_eq!(answer, 7);
    setup.caller.shutdown().await;
    setup.services.shutdown().await;
}
