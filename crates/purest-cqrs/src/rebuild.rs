//! Rebuilding a handler's local tables by replaying the event store through its `write`.

use purest_core::HandledError;
use purest_eventstore::{Committed, Sink};

use crate::datastore::{Datastore, Unit};
use crate::handler::{Event, LowHandler};
use crate::projector::{Projector, ProjectorSink};

/// How many events one unit of a rebuild writes.
const BATCH: usize = 500;

/// What a [`rebuild`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events read from the store.
    pub read: u64,
    /// Events written (those the handler decides).
    pub written: u64,
}

/// Rebuilds `handler`'s local tables from the event store: [`LowHandler::reset`], then `write`
/// of every event the handler may decide, in the store's order, a batch per unit of work. Run it
/// while no executor of the handler runs (a deployment's maintenance step, or at start before
/// serving); a rebuild that fails part way leaves the tables partly written, and running it
/// again starts over.
pub async fn rebuild<D: Datastore, H: LowHandler<D>>(handler: &H, datastore: &D) -> Result<Rebuilt, HandledError> {
    let checks = handler.meta().erase();
    let store = datastore.events();
    let mut unit = datastore.begin().await?;
    handler.reset(datastore, &mut unit).await?;
    unit.commit().await?;
    let mut rebuilt = Rebuilt { read: 0, written: 0 };
    let mut after = 0;
    loop {
        let events = store.read_all(after, BATCH).await?;
        let Some(last) = events.last() else { break };
        after = last.position;
        rebuilt.read += events.len() as u64;
        let mut unit = datastore.begin().await?;
        for event in events.iter().filter(|event| checks.emits(&event.event_type)) {
            handler.write(datastore, &mut unit, &Event::from(event)).await?;
            rebuilt.written += 1;
        }
        unit.commit().await?;
    }
    tracing::info!(handler = %checks.name, read = rebuilt.read, written = rebuilt.written, "rebuilt a handler's tables from the event store");
    Ok(rebuilt)
}

/// Rebuilds `projector`'s read model now: empties it and puts its checkpoint back to 0 in one
/// unit, then writes every event of its category, a batch per unit, moving the checkpoint with
/// each (so a projector started later goes on from the end). Run it while the projector runs
/// nowhere; a running projector is rebuilt by asking it (`purest eventstore rebuild NAME`,
/// [`RunningProjections::rebuild`](purest_eventstore::RunningProjections::rebuild)).
pub async fn rebuild_projector<D: Datastore, P: Projector<D>>(projector: P, datastore: D) -> Result<Rebuilt, HandledError> {
    let store = datastore.events();
    let sink = ProjectorSink::new(projector, datastore);
    sink.rebuild().await?;
    let mut rebuilt = Rebuilt { read: 0, written: 0 };
    let mut position = 0;
    loop {
        let events = match sink.category() {
            Some(category) => store.read_category(category, position, BATCH).await?,
            None => store.read_all(position, BATCH).await?,
        };
        let Some(last) = events.last().map(|event| event.position) else {
            break;
        };
        match sink.commit(&events, position).await? {
            Committed::Done => {}
            Committed::Moved | Committed::Busy => {
                return Err(HandledError::conflict(format!(
                    "projector {} moved on while being rebuilt: it runs elsewhere; stop it, or ask it to rebuild itself",
                    sink.name()
                )));
            }
        }
        rebuilt.read += events.len() as u64;
        rebuilt.written += events.len() as u64;
        position = last;
    }
    tracing::info!(
        projector = sink.name(),
        events = rebuilt.read,
        "rebuilt a projector's read model from the event store"
    );
    Ok(rebuilt)
}
