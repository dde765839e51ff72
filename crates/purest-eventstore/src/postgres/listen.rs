//! The wake-up of readers in any process: a connection that LISTENs to the store's channel and
//! passes each notification on as a change of a watch.

use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

/// Listens on `channel` for as long as `wake` has an owner and `pool` is open. A lost connection
/// wakes readers too: notifications sent meanwhile are lost, so they should look.
pub(crate) fn spawn(pool: PgPool, channel: String, wake: Weak<watch::Sender<()>>) {
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
