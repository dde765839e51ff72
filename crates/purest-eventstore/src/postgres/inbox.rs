//! The inbox: a consumer records each message id it has had its effect for, in the effect's own
//! transaction, so a message delivered again (at-least-once delivery, a relay's crash) has its
//! effect once.

use purest_core::{HandledError, Id};
use sqlx::PgConnection;

use super::{PgEventStore, database_error};

impl PgEventStore {
    /// Claims `message_id` for `consumer` in `conn`'s transaction: `true` the first time, when
    /// the caller goes on to its effect and commits both; `false` when the message was handled
    /// before, when the caller skips it. A second delivery arriving while the first is still
    /// uncommitted waits for it, then gets `false` (or `true`, if the first rolled back).
    ///
    /// ```no_run
    /// # async fn demo(store: purest_eventstore::PgEventStore, message_id: purest_core::Id) -> Result<(), purest_core::HandledError> {
    /// let mut tx = store.pool().begin().await.unwrap();
    /// if store.claim_message(&mut tx, "billing", &message_id).await? {
    ///     sqlx::query("UPDATE invoices SET paid = true WHERE id = 7").execute(&mut *tx).await.unwrap();
    /// }
    /// tx.commit().await.unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn claim_message(&self, conn: &mut PgConnection, consumer: &str, message_id: &Id) -> Result<bool, HandledError> {
        let sql = format!(
            "INSERT INTO \"{}\".inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.schema()
        );
        let claimed = sqlx::query(&sql)
            .bind(consumer)
            .bind(message_id.to_string())
            .execute(conn)
            .await
            .map_err(|e| database_error("claim a message in the inbox", &e))?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Forgets the inbox records older than `age`: a message redelivered after that would have
    /// its effect again. Keep `age` well beyond the longest redelivery (a broker's retention).
    pub async fn prune_inbox(&self, age: std::time::Duration) -> Result<u64, HandledError> {
        let sql = format!(
            "DELETE FROM \"{}\".inbox WHERE handled_at < clock_timestamp() - make_interval(secs => $1)",
            self.schema()
        );
        let pruned = sqlx::query(&sql)
            .bind(age.as_secs_f64())
            .execute(self.pool())
            .await
            .map_err(|e| database_error("prune the inbox", &e))?;
        Ok(pruned.rows_affected())
    }
}
