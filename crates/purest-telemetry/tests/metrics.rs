//! Metrics of a known number of calls, failures, retries and dead letters, read back as
//! Prometheus text (one test: the core keeps one metrics backend per process).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use purest_core::Retry;
use purest_core::prelude::*;
use purest_telemetry::{MetricsExport, PrometheusScrape, Telemetry, TelemetrySettings};
use tokio::sync::Notify;

const PLACED: EventRef<u32> = EventRef::new("orderPlaced");
const DEAD: EventRef<serde_json::Value> = EventRef::new("billing.deadLetter");

/// Every third order is refused with 409; the others are placed.
async fn order(ctx: Context, Payload(number): Payload<u32>) -> Result<u32, HandledError> {
    if number % 3 == 0 {
        return Err(HandledError::new(409, format!("order {number} exists")));
    }
    ctx.emit(PLACED, number).await?;
    Ok(number)
}

/// Settled deliveries of the billing service, to wait on.
#[derive(Default)]
struct Settled {
    count: AtomicU32,
    changed: Notify,
}

impl Settled {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    async fn reach(&self, count: u32) {
        loop {
            let changed = self.changed.notified();
            if self.count.load(Ordering::SeqCst) >= count {
                return;
            }
            changed.await;
        }
    }
}

/// Charging order 1 always fails (so it is retried, then dead-lettered).
async fn charge(State(settled): State<Arc<Settled>>, Payload(number): Payload<u32>) -> Result<(), HandledError> {
    if number == 1 {
        return Err(HandledError::new(503, "the payment provider is down"));
    }
    settled.add();
    Ok(())
}

async fn dead_letter(State(settled): State<Arc<Settled>>, Payload(_letter): Payload<serde_json::Value>) -> Result<(), HandledError> {
    settled.add();
    Ok(())
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| labels.iter().all(|(key, value)| line.contains(&format!("{key}=\"{value}\""))))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "one sample of {metric} {labels:?} expected in:\n{text}");
    found[0]
}

#[test]
fn calls_failures_retries_and_dead_letters_are_counted() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let telemetry = Telemetry::from_settings(&TelemetrySettings {
        service_name: "shop".into(),
        traces: None,
        metrics: Some(MetricsExport {
            otlp: None,
            prometheus: Some(PrometheusScrape::Gateway { token: "t".into() }),
        }),
    })
    .unwrap();
    runtime.block_on(async {
        let settled = Arc::new(Settled::default());
        let app = Host::new()
            .service(Service::new("shop", "1").command(Command::new("order", order)))
            .service(
                Service::new("billing", "1")
                    .state(settled.clone())
                    .subscription(
                        Subscription::on(PLACED, "charge", charge).durable().retry(
                            Retry::exponential(2)
                                .backoff(Duration::from_millis(1))
                                .dead_letter("billing.deadLetter"),
                        ),
                    )
                    .subscription(Subscription::on(DEAD, "keepDeadLetters", dead_letter).durable()),
            )
            .start()
            .await
            .unwrap();
        let client = app.client();
        for number in 1..=6u32 {
            let answer = client.invoke::<u32>("shop/1/order", number).await;
            assert_eq!(answer.is_err(), number % 3 == 0, "order {number}: {answer:?}");
        }
        // Orders 2, 4 and 5 charged; order 1's dead letter kept.
        tokio::time::timeout(Duration::from_secs(10), settled.reach(4))
            .await
            .expect("every delivery settles");
        app.shutdown().await;
    });
    let text = telemetry.prometheus_text().expect("the Prometheus exporter is on");
    let duration = "messaging_process_duration_seconds_count";
    let order = ("purest_handler", "shop/1/order");
    let charge = ("purest_handler", "billing/1/charge");
    assert_eq!(sample(&text, duration, &[order, ("purest_outcome", "200")]), 4.0);
    assert_eq!(sample(&text, duration, &[order, ("purest_outcome", "409")]), 2.0);
    assert_eq!(sample(&text, duration, &[charge, ("purest_outcome", "ack")]), 3.0);
    assert_eq!(sample(&text, duration, &[charge, ("purest_outcome", "retry")]), 1.0);
    assert_eq!(sample(&text, duration, &[charge, ("purest_outcome", "dead_letter")]), 1.0);
    assert_eq!(sample(&text, "purest_handler_in_flight", &[order]), 0.0);
    assert_eq!(sample(&text, "purest_handler_in_flight", &[charge]), 0.0);
    let memory = ("messaging_system", "memory");
    // Six commands sent by the client, six answered.
    assert_eq!(
        sample(
            &text,
            "messaging_client_sent_messages_total",
            &[memory, ("purest_message_kind", "command")]
        ),
        6.0
    );
    assert_eq!(
        sample(
            &text,
            "messaging_client_consumed_messages_total",
            &[memory, ("purest_message_kind", "command")]
        ),
        6.0
    );
    assert_eq!(
        sample(
            &text,
            "messaging_client_sent_messages_total",
            &[memory, ("purest_message_kind", "response")]
        ),
        6.0
    );
    // Four orders placed and one dead letter; four first deliveries, one retry, one dead letter.
    assert_eq!(
        sample(
            &text,
            "messaging_client_sent_messages_total",
            &[memory, ("purest_message_kind", "event")]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "messaging_client_consumed_messages_total",
            &[memory, ("purest_message_kind", "event")]
        ),
        6.0
    );
    assert!(text.contains("# TYPE messaging_process_duration_seconds histogram"), "{text}");
    assert!(text.contains("service_name=\"shop\""), "the resource is named: {text}");
}
