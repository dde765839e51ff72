//! The outbox relay: publishes the store's events to the app's bridge, in the store's order, at
//! least once. A handler appends its events in the transaction of its own writes (the
//! transactional outbox: the store is the outbox); the relay then carries them to every
//! subscriber, surviving crashes of either side.

use std::sync::Arc;
use std::time::Duration;

use purest_core::name::Name;
use purest_core::{Address, Body, Bridge, Envelope, HandledError, Id, Message};

use crate::event::RecordedEvent;
use crate::projection::Projection;

/// Publishes events as purest events: the message id is the event's id (so consumers can
/// deduplicate), the event name its type, the payload its payload; correlation, trace, principal
/// and tenant come from its metadata.
///
/// It is a [`Projection`]: run it with [`Projections::add_leased`](crate::Projections::add_leased)
/// on PostgreSQL, so that of several instances one relays at a time and a crash resumes from the
/// last checkpoint (republishing at most one batch), or with
/// [`Projections::add`](crate::Projections::add) in one process.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use purest_core::prelude::*;
/// use purest_core::Address;
/// use purest_eventstore::{EventStore, Expected, MemoryCheckpoints, MemoryEventStore, NewEvent, OutboxRelay, Projections};
///
/// type Seen = Arc<Mutex<Vec<String>>>;
/// async fn bill(ctx: Context, State(seen): State<Seen>) -> Result<(), HandledError> {
///     seen.lock().unwrap().push(ctx.message().id.to_string());
///     Ok(())
/// }
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let seen = Seen::default();
/// let billing = Service::new("billing", "1")
///     .state(seen.clone())
///     .subscription(Subscription::new("bill", bill).on_event("orderPlaced"));
/// let app = Host::new().service(billing).start().await.unwrap();
///
/// let store = MemoryEventStore::new();
/// let relay = OutboxRelay::new(app.bridge().clone(), Address::new("orders", "1", ""));
/// let running = Projections::new(Arc::new(store.clone())).add(relay, Arc::new(MemoryCheckpoints::default())).start();
/// let placed = NewEvent::new("orderPlaced", &serde_json::json!({"total": 12})).unwrap();
/// let id = placed.id.to_string();
/// store.append("order-1", Expected::NoStream, vec![placed]).await.unwrap();
/// while seen.lock().unwrap().is_empty() {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
/// }
/// assert_eq!(*seen.lock().unwrap(), [id], "the subscriber got the event, under its id");
/// running.stop().await;
/// app.shutdown().await;
/// # });
/// ```
pub struct OutboxRelay {
    name: String,
    category: Option<String>,
    bridge: Arc<dyn Bridge>,
    sender: Arc<Address>,
    timeout: Duration,
}

impl OutboxRelay {
    /// A relay named `outbox` of every event to `bridge`, sent as from `sender` (the service
    /// that owns the events), each publish waited for at most 10 s.
    pub fn new(bridge: Arc<dyn Bridge>, sender: Address) -> Self {
        Self {
            name: "outbox".to_owned(),
            category: None,
            bridge,
            sender: Arc::new(sender),
            timeout: Duration::from_secs(10),
        }
    }

    /// Names its checkpoint (several relays of one store need different names).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Relays only the streams of `category`.
    pub fn category(mut self, category: &str) -> Self {
        self.category = Some(category.to_owned());
        self
    }

    /// How long one publish may take before the batch fails (and is retried).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The message `event` is published as.
    pub fn envelope(&self, event: &RecordedEvent) -> Envelope {
        let payload = Body::raw(bytes::Bytes::copy_from_slice(event.payload.get().as_bytes()));
        let mut envelope = Envelope::new(self.sender.clone(), Message::Custom { payload });
        let id = |text: &Option<String>| text.as_deref().and_then(|text| text.parse::<Id>().ok());
        envelope.id = event.id.clone();
        envelope.timestamp = event.recorded_at;
        envelope.event_name = Some(Name::new(&event.event_type));
        envelope.correlation_id = id(&event.metadata.correlation_id);
        envelope.trace_id = id(&event.metadata.trace_id);
        envelope.principal_id = event.metadata.principal_id.as_deref().map(Name::new);
        envelope.tenant_id = event.metadata.tenant_id.as_deref().map(Name::new);
        envelope
    }
}

impl Projection for OutboxRelay {
    fn name(&self) -> &str {
        &self.name
    }

    fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// Publishes one event after another, each confirmed by the bridge before the next: a
    /// subscriber sees a stream's events in order. A bridge that cannot take an event fails
    /// the batch; the runner retries it (503) or stops there (anything else), never skipping.
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), HandledError> {
        for event in events {
            self.bridge.emit(self.envelope(event), self.timeout).await?;
        }
        Ok(())
    }

    /// Nothing to empty: a rebuild publishes every event again.
    async fn reset(&self) -> Result<(), HandledError> {
        Ok(())
    }
}
