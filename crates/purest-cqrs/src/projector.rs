//! Projectors: read models written from the event store's global order, each batch in one unit
//! of work with the projector's checkpoint (so each event has its effect once), and announced on
//! the bridge once applied, for resolvers that answer a request only when its result can be read.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use purest_core::name::Name;
use purest_core::{Address, Body, Bridge, Envelope, EventRef, HandledError, Id, Message};
use purest_eventstore::{Checkpoint, Committed, RecordedEvent, Sink};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::datastore::{Datastore, Unit};
use crate::handler::Event;

/// A read model kept from events: `write` applies one event within the unit that also moves the
/// projector's checkpoint, `reset` empties it for a rebuild. Run it with [`ProjectorSink`] in
/// [`Projections`](purest_eventstore::Projections).
pub trait Projector<D: Datastore>: Send + Sync + 'static {
    /// The name its checkpoint is kept under; unique among the store's readers.
    fn name(&self) -> &str;

    /// Only the streams of this category (`customer`), or every event (`None`, the default).
    fn category(&self) -> Option<&str> {
        None
    }

    /// The event announcing, on the bridge, each event applied (its output channel): resolvers
    /// wait for it. `None` (the default) announces nothing.
    fn announces(&self) -> Option<EventRef<Projected>> {
        None
    }

    /// Applies one event to the read model within `unit`; events it does not use it skips.
    fn write(&self, db: &D, unit: &mut D::Unit, event: &Event) -> impl Future<Output = Result<(), HandledError>> + Send;

    /// Empties the read model within `unit`, before a rebuild writes every event again.
    fn reset(&self, db: &D, unit: &mut D::Unit) -> impl Future<Output = Result<(), HandledError>> + Send;
}

/// The payload of a projector's announcement: which event it applied. The announcement carries
/// the event's correlation id, so the caller that dispatched the command behind the event can
/// wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
#[garde(allow_unvalidated)]
pub struct Projected {
    /// The projector.
    pub projector: String,
    /// The event's stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the store's global order.
    pub position: u64,
    /// Its type.
    pub event_type: String,
    /// Its id.
    pub event_id: String,
}

/// A [`Projector`] over its datastore, as the [`Sink`] a
/// [`Projections`](purest_eventstore::Projections) runner drives.
///
/// ```
/// use std::sync::Arc;
/// use purest_cqrs::{Event, MemoryDatastore, MemoryUnit, Projector, ProjectorSink, Unit};
/// use purest_eventstore::{EventStore, Expected, NewEvent, Projections};
/// use purest_core::HandledError;
///
/// /// Counts invitations.
/// struct Invitations;
/// impl Projector<MemoryDatastore<u64>> for Invitations {
///     fn name(&self) -> &str { "invitations" }
///     async fn write(&self, _: &MemoryDatastore<u64>, unit: &mut MemoryUnit<u64>, event: &Event) -> Result<(), HandledError> {
///         if event.event_type == "customerInvited" { *unit.tables_mut() += 1 }
///         Ok(())
///     }
///     async fn reset(&self, _: &MemoryDatastore<u64>, unit: &mut MemoryUnit<u64>) -> Result<(), HandledError> {
///         *unit.tables_mut() = 0;
///         Ok(())
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let datastore = MemoryDatastore::<u64>::default();
/// let running = Projections::new(Arc::new(datastore.event_store().clone()))
///     .add_sink(Arc::new(ProjectorSink::new(Invitations, datastore.clone())))
///     .start();
/// let invited = NewEvent::new("customerInvited", &serde_json::json!({})).unwrap();
/// let appended = datastore.event_store().append("customer-1", Expected::NoStream, vec![invited]).await.unwrap();
/// running.caught_up("invitations", appended.first_position).await.unwrap();
/// assert_eq!(*datastore.read(), 1);
/// running.stop().await;
/// # });
/// ```
pub struct ProjectorSink<P, D> {
    projector: P,
    datastore: D,
    announce: Option<Announce>,
    /// Whether the missing bridge for announcements was reported.
    unannounced: AtomicBool,
}

struct Announce {
    bridge: Arc<dyn Bridge>,
    sender: Arc<Address>,
}

/// How long an announcement may take to publish.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

impl<D: Datastore, P: Projector<D>> ProjectorSink<P, D> {
    /// `projector` writing into `datastore`.
    pub fn new(projector: P, datastore: D) -> Self {
        Self {
            projector,
            datastore,
            announce: None,
            unannounced: AtomicBool::new(false),
        }
    }

    /// Publishes the projector's announcements ([`Projector::announces`]) on `bridge`, sent as
    /// from `sender`.
    pub fn announce_on(mut self, bridge: Arc<dyn Bridge>, sender: Address) -> Self {
        self.announce = Some(Announce {
            bridge,
            sender: Arc::new(sender),
        });
        self
    }

    /// Announces each applied event that belongs to a conversation. An announcement lost here
    /// costs its waiter a timeout, not data: the read model holds the event.
    async fn announce(&self, events: &[RecordedEvent]) {
        let Some(name) = self.projector.announces() else { return };
        let Some(announce) = &self.announce else {
            if !self.unannounced.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    projector = self.projector.name(),
                    event = name.name(),
                    "a projector announces, but has no bridge to do it on; give it one with ProjectorSink::announce_on"
                );
            }
            return;
        };
        for event in events {
            let Some(correlation_id) = event.metadata.correlation_id.as_deref().and_then(|id| id.parse::<Id>().ok()) else {
                continue;
            };
            let projected = Projected {
                projector: self.projector.name().to_owned(),
                stream: event.stream.to_string(),
                version: event.version,
                position: event.position,
                event_type: event.event_type.clone(),
                event_id: event.id.to_string(),
            };
            let mut envelope = Envelope::new(
                announce.sender.clone(),
                Message::Custom {
                    payload: Body::typed(projected),
                },
            );
            envelope.event_name = Some(Name::from_static(name.name()));
            envelope.correlation_id = Some(correlation_id);
            envelope.trace_id = event.metadata.trace_id.as_deref().and_then(|id| id.parse().ok());
            envelope.principal_id = event.metadata.principal_id.as_deref().map(Name::new);
            envelope.tenant_id = event.metadata.tenant_id.as_deref().map(Name::new);
            if let Err(error) = announce.bridge.emit(envelope, ANNOUNCE_TIMEOUT).await {
                tracing::warn!(projector = self.projector.name(), stream = %event.stream, version = event.version, %error, "an announcement could not be published");
            }
        }
    }
}

impl<D: Datastore, P: Projector<D>> Sink for ProjectorSink<P, D> {
    fn name(&self) -> &str {
        self.projector.name()
    }

    fn category(&self) -> Option<&str> {
        self.projector.category()
    }

    fn checkpoint(&self) -> BoxFuture<'_, Result<Checkpoint, HandledError>> {
        let checkpoints = self.datastore.checkpoints();
        Box::pin(async move { checkpoints.load(self.projector.name(), self.projector.category()).await })
    }

    fn commit<'a>(&'a self, events: &'a [RecordedEvent], from: u64) -> BoxFuture<'a, Result<Committed, HandledError>> {
        Box::pin(async move {
            let Some(last) = events.last() else { return Ok(Committed::Done) };
            let mut unit = self.datastore.begin().await?;
            // The checkpoint first: in PostgreSQL its row lock keeps a second instance of the
            // projector waiting rather than applying the same events alongside.
            if !unit.advance(self.projector.name(), from, last.position).await? {
                return Ok(Committed::Moved);
            }
            for event in events {
                self.projector.write(&self.datastore, &mut unit, &Event::from(event)).await?;
            }
            unit.commit().await?;
            self.announce(events).await;
            Ok(Committed::Done)
        })
    }

    fn rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            let mut unit = self.datastore.begin().await?;
            // The checkpoint first, in the order a batch takes its locks (no deadlock with
            // another instance's batch).
            unit.restart(self.projector.name()).await?;
            self.projector.reset(&self.datastore, &mut unit).await?;
            unit.commit().await
        })
    }

    fn request_rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        let checkpoints = self.datastore.checkpoints();
        Box::pin(async move { checkpoints.request_rebuild(self.projector.name()).await })
    }
}
