//! Waking readers in every process when events are appended. Readers in the appending process
//! are woken directly; the others by a notification on the store's channel, which a task of the
//! appending process sends after its appends, outside their transactions. (A NOTIFY inside an
//! append's transaction would take PostgreSQL's notification queue lock at every commit, and
//! serialize concurrent appenders on it: it halved the appends of 16 writers.)

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, watch};

/// The least time between two notifications of one process: what readers elsewhere may wait
/// longer for an event, and what keeps a busy writer's notifications from costing it (one per
/// append took 10–15 % of a single writer's appends).
const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);

/// The wake-ups of one store.
pub(crate) struct Wakeups {
    /// Changed after every append of this process, and on every notification received.
    local: Arc<watch::Sender<()>>,
    /// Set once the listener runs.
    listening: OnceLock<()>,
    /// Poked after every append; the notifier sends one notification per poke it sees (pokes
    /// while it sends collapse into one more).
    notifying: OnceLock<Arc<Notify>>,
}

impl Wakeups {
    pub(crate) fn new() -> Self {
        Self {
            local: Arc::new(watch::Sender::new(())),
            listening: OnceLock::new(),
            notifying: OnceLock::new(),
        }
    }

    /// After an append: wakes this process's readers at once and has the others notified.
    pub(crate) fn appended(&self, pool: &PgPool, channel: &str) {
        self.local.send_replace(());
        if channel.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let pending = self.notifying.get_or_init(|| {
            let pending = Arc::new(Notify::new());
            spawn_notifier(pool.clone(), channel.to_owned(), pending.clone());
            pending
        });
        pending.notify_one();
    }

    /// A watch of appends, of this process and (with a channel) of every other.
    pub(crate) fn watch(&self, pool: &PgPool, channel: &str) -> watch::Receiver<()> {
        if !channel.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            self.listening
                .get_or_init(|| spawn_listener(pool.clone(), channel.to_owned(), Arc::downgrade(&self.local)));
        }
        self.local.subscribe()
    }
}

/// Sends a notification on `channel` per poke (at most one per [`NOTIFY_INTERVAL`]), until the
/// pool closes. A failed notification is
/// only logged: readers poll as well.
fn spawn_notifier(pool: PgPool, channel: String, pending: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = pending.notified() => {}
                () = pool.close_event() => return,
            }
            let sent = sqlx::query("SELECT pg_notify($1, '')").bind(&channel).execute(&pool).await;
            if let Err(e) = sent {
                tracing::debug!(channel, error = %e, "a notification of appended events was not sent; readers find them by polling");
            }
            // Appends meanwhile collapse into the next notification: a busy writer costs the
            // database one notification per interval, not one per append.
            tokio::time::sleep(NOTIFY_INTERVAL).await;
        }
    });
}

/// Listens on `channel` for as long as `wake` has an owner and `pool` is open. A lost connection
/// wakes readers too: notifications sent meanwhile are lost, so they should look.
fn spawn_listener(pool: PgPool, channel: String, wake: Weak<watch::Sender<()>>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !pool.is_closed() {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(channel, error = %e, "cannot listen for appended events; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(e) = listener.listen(&channel).await {
                tracing::warn!(channel, error = %e, "cannot listen for appended events; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            backoff = Duration::from_millis(100);
            loop {
                let received = listener.try_recv().await;
                let Some(wake) = wake.upgrade() else { return };
                match received {
                    Ok(Some(_)) => {}
                    // The connection was lost: the listener reconnects on the next call.
                    Ok(None) => tracing::debug!(channel, "the listening connection was lost; reconnecting"),
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(channel, error = %e, "listening for appended events failed; reconnecting");
                        wake.send_replace(());
                        tokio::time::sleep(backoff).await;
                        break;
                    }
                }
                wake.send_replace(());
            }
        }
    });
}
