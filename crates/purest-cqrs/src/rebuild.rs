//! Rebuilding a handler's local tables by replaying the event store through its `write`.

use purest_core::HandledError;

use crate::datastore::{Datastore, Unit};
use crate::handler::{Event, LowHandler};

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
