//! Projections whose read model lives in the event store's PostgreSQL: the read model's change
//! and the checkpoint commit in one transaction, so each event has its effect exactly once, even
//! across crashes and with several instances running the same projection. Also the store's
//! [`Checkpoints`] for projections kept elsewhere.

use std::future::Future;

use futures::future::BoxFuture;
use purest_core::HandledError;
use sqlx::{PgConnection, Row};

use crate::store::EventStore;

use super::{PgEventStore, database_error, to_i64};
use crate::event::RecordedEvent;
use crate::projection::{Checkpoint, Checkpoints, Committed, Projection, Projections, Sink};

/// A read model in the event store's PostgreSQL, changed in the transaction that moves its
/// checkpoint: effectively once.
///
/// ```no_run
/// use purest_eventstore::{PgEventStore, PgProjection, Projections, RecordedEvent, database_error};
/// use purest_core::HandledError;
/// use sqlx::PgConnection;
///
/// struct OrderTotals;
///
/// impl PgProjection for OrderTotals {
///     fn name(&self) -> &str { "order_totals" }
///     fn category(&self) -> Option<&str> { Some("order") }
///     async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), HandledError> {
///         for event in events {
///             let cents: i64 = event.payload_as::<serde_json::Value>()?["cents"].as_i64().unwrap_or(0);
///             sqlx::query("INSERT INTO order_totals (stream, cents) VALUES ($1, $2)
///                          ON CONFLICT (stream) DO UPDATE SET cents = order_totals.cents + $2")
///                 .bind(&*event.stream).bind(cents).execute(&mut *tx).await
///                 .map_err(|e| database_error("update order totals", &e))?;
///         }
///         Ok(())
///     }
///     async fn reset(&self, tx: &mut PgConnection) -> Result<(), HandledError> {
///         sqlx::query("TRUNCATE order_totals").execute(tx).await.map_err(|e| database_error("empty order totals", &e))?;
///         Ok(())
///     }
/// }
/// # async fn run(store: PgEventStore) {
/// let running = Projections::new(std::sync::Arc::new(store.clone())).add_in_postgres(OrderTotals, &store).start();
/// # }
/// ```
pub trait PgProjection: Send + Sync + 'static {
    /// The name its checkpoint is kept under; unique among the store's readers.
    fn name(&self) -> &str;

    /// Only the streams of this category, or every event (`None`, the default).
    fn category(&self) -> Option<&str> {
        None
    }

    /// Applies events, oldest first, in `tx`: the transaction that then moves the checkpoint.
    fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> impl Future<Output = Result<(), HandledError>> + Send;

    /// Empties the read model in `tx`, the transaction that puts the checkpoint back to 0.
    fn reset(&self, tx: &mut PgConnection) -> impl Future<Output = Result<(), HandledError>> + Send;
}

impl Projections {
    /// Adds a projection whose read model is in `store`'s database: its changes and checkpoint
    /// commit together.
    pub fn add_in_postgres(self, projection: impl PgProjection, store: &PgEventStore) -> Self {
        self.add_sink(std::sync::Arc::new(InPostgres {
            projection,
            store: store.clone(),
        }))
    }
}

impl Projections {
    /// Adds a projection kept anywhere (at least once), its checkpoint in `store`, that runs on
    /// one instance at a time: the others stand by and take over when it stops. For work that
    /// must not run twice at once, such as an [`OutboxRelay`](crate::OutboxRelay).
    pub fn add_leased(self, projection: impl Projection, store: &PgEventStore) -> Self {
        self.add_sink(std::sync::Arc::new(Leased {
            projection,
            store: store.clone(),
        }))
    }
}

/// A [`Projection`] whose batches run under a transaction-scoped advisory lock: the instance that
/// holds it applies the batch and moves the checkpoint; the others find it taken and stand by.
/// The lock needs no transaction id, so readers of the global order are not held back while the
/// batch is applied (published, for a relay).
struct Leased<P> {
    projection: P,
    store: PgEventStore,
}

impl<P: Projection> Sink for Leased<P> {
    fn name(&self) -> &str {
        self.projection.name()
    }
    fn category(&self) -> Option<&str> {
        self.projection.category()
    }
    fn checkpoint(&self) -> BoxFuture<'_, Result<Checkpoint, HandledError>> {
        self.store.load(self.projection.name(), self.projection.category())
    }
    fn commit<'a>(&'a self, events: &'a [RecordedEvent], from: u64) -> BoxFuture<'a, Result<Committed, HandledError>> {
        Box::pin(async move {
            let Some(last) = events.last() else { return Ok(Committed::Done) };
            let name = self.projection.name();
            let mut tx = self
                .store
                .pool()
                .begin()
                .await
                .map_err(|e| database_error("begin a leased batch", &e))?;
            if !self.store.try_lease(&mut tx, name).await? {
                return Ok(Committed::Busy);
            }
            // Under the lease, the checkpoint can only have moved before it was taken.
            let current = self.store.load(name, self.projection.category()).await?;
            if current.position != from || current.rebuild_requested {
                return Ok(Committed::Moved);
            }
            self.projection.apply(events).await?;
            if !self.store.advance_in(&mut tx, name, from, last.position).await? {
                return Ok(Committed::Moved);
            }
            tx.commit().await.map_err(|e| database_error("commit a leased batch", &e))?;
            Ok(Committed::Done)
        })
    }
    fn rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            self.projection.reset().await?;
            self.store.restart(self.projection.name()).await
        })
    }
    fn request_rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        self.store.request_rebuild(self.projection.name())
    }
}

struct InPostgres<P> {
    projection: P,
    store: PgEventStore,
}

impl<P: PgProjection> Sink for InPostgres<P> {
    fn name(&self) -> &str {
        self.projection.name()
    }
    fn category(&self) -> Option<&str> {
        self.projection.category()
    }
    fn checkpoint(&self) -> BoxFuture<'_, Result<Checkpoint, HandledError>> {
        self.store.load(self.projection.name(), self.projection.category())
    }
    fn commit<'a>(&'a self, events: &'a [RecordedEvent], from: u64) -> BoxFuture<'a, Result<Committed, HandledError>> {
        Box::pin(async move {
            let Some(last) = events.last() else { return Ok(Committed::Done) };
            let name = self.projection.name();
            let mut tx = self
                .store
                .pool()
                .begin()
                .await
                .map_err(|e| database_error("begin a projection's transaction", &e))?;
            // The checkpoint first: its row lock keeps a second instance of this projection
            // waiting, not applying the same events alongside.
            if !self.store.advance_in(&mut tx, name, from, last.position).await? {
                return Ok(Committed::Moved);
            }
            if let Err(error) = self.projection.apply(&mut tx, events).await {
                // An error from a connection that broke under the projection is the database's
                // absence, whatever the projection called it: retry, do not stop.
                if let Err(broken) = tx.rollback().await {
                    return Err(database_error("apply a projection's batch", &broken));
                }
                return Err(error);
            }
            tx.commit()
                .await
                .map_err(|e| database_error("commit a projection's transaction", &e))?;
            Ok(Committed::Done)
        })
    }
    fn rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            let mut tx = self.store.pool().begin().await.map_err(|e| database_error("begin a rebuild", &e))?;
            // The checkpoint first, as a batch takes it: a rebuild that locked the read model
            // first would deadlock with another instance's batch holding the checkpoint.
            self.store.restart_in(&mut tx, self.projection.name()).await?;
            self.projection.reset(&mut tx).await?;
            tx.commit().await.map_err(|e| database_error("commit a rebuild", &e))
        })
    }
    fn request_rebuild(&self) -> BoxFuture<'_, Result<(), HandledError>> {
        self.store.request_rebuild(self.projection.name())
    }
}

impl PgEventStore {
    /// Takes the lease of reader `name` for the rest of `conn`'s transaction; `false` when
    /// another transaction holds it.
    async fn try_lease(&self, conn: &mut PgConnection, name: &str) -> Result<bool, HandledError> {
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext($2))")
            .bind(format!("purest.lease.{}", self.schema()))
            .bind(name)
            .fetch_one(conn)
            .await
            .map_err(|e| database_error("take a reader's lease", &e))
    }

    /// Moves the checkpoint of reader `name` from `from` to `to` in `conn`'s transaction: `false`
    /// (and no change) when it is not at `from` or a rebuild was asked for. The row stays locked
    /// until the transaction ends, so a second instance of the reader waits rather than applying
    /// the same events alongside.
    pub async fn advance_in(&self, conn: &mut PgConnection, name: &str, from: u64, to: u64) -> Result<bool, HandledError> {
        let sql = format!(
            "UPDATE \"{}\".checkpoints SET position = $3, updated_at = clock_timestamp() \
             WHERE name = $1 AND position = $2 AND NOT rebuild_requested",
            self.schema()
        );
        let moved = sqlx::query(&sql)
            .bind(name)
            .bind(to_i64(from))
            .bind(to_i64(to))
            .execute(conn)
            .await
            .map_err(|e| database_error("move a checkpoint", &e))?;
        Ok(moved.rows_affected() == 1)
    }

    /// Puts the checkpoint of reader `name` back to 0 and clears its rebuild request, in `conn`'s
    /// transaction.
    pub async fn restart_in(&self, conn: &mut PgConnection, name: &str) -> Result<(), HandledError> {
        let sql = format!(
            "UPDATE \"{}\".checkpoints SET position = 0, rebuild_requested = false, updated_at = clock_timestamp() WHERE name = $1",
            self.schema()
        );
        sqlx::query(&sql)
            .bind(name)
            .execute(conn)
            .await
            .map_err(|e| database_error("restart a checkpoint", &e))?;
        Ok(())
    }

    /// Every reader of this store (projections, relays, in any process) with its checkpoint and
    /// lag, from the checkpoints table: what `purest eventstore status` prints.
    pub async fn readers(&self) -> Result<Vec<ReaderStatus>, HandledError> {
        let sql = format!(
            "SELECT name, category, position, rebuild_requested, (extract(epoch from updated_at) * 1000)::bigint AS updated_ms \
             FROM \"{}\".checkpoints ORDER BY name",
            self.schema()
        );
        let rows = sqlx::query(&sql)
            .fetch_all(self.pool())
            .await
            .map_err(|e| database_error("read checkpoints", &e))?;
        let mut readers = Vec::with_capacity(rows.len());
        for row in &rows {
            let decode = |e| database_error("read checkpoints", &e);
            let category: Option<String> = row.try_get("category").map_err(decode)?;
            let position = row.try_get::<i64, _>("position").map_err(decode)? as u64;
            readers.push(ReaderStatus {
                name: row.try_get("name").map_err(decode)?,
                behind: self.count_after(position, category.as_deref()).await?,
                category,
                position,
                rebuild_requested: row.try_get("rebuild_requested").map_err(decode)?,
                updated_at: row.try_get::<i64, _>("updated_ms").map_err(decode)? as u64,
            });
        }
        Ok(readers)
    }
}

/// A reader of the store as its checkpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderStatus {
    /// The projection's or relay's name.
    pub name: String,
    /// The category it reads; `None` for every event.
    pub category: Option<String>,
    /// The position of the last event it applied.
    pub position: u64,
    /// How many events it has still to apply.
    pub behind: u64,
    /// Whether a rebuild is asked for and has not started.
    pub rebuild_requested: bool,
    /// When its checkpoint last changed, in milliseconds since the Unix epoch.
    pub updated_at: u64,
}

impl Checkpoints for PgEventStore {
    fn load<'a>(&'a self, name: &'a str, category: Option<&'a str>) -> BoxFuture<'a, Result<Checkpoint, HandledError>> {
        Box::pin(async move {
            // Two statements: a read in the insert's statement would not see a row another
            // reader inserted meanwhile (the insert waits for it, the read's snapshot is older).
            let create = format!(
                "INSERT INTO \"{}\".checkpoints (name, category) VALUES ($1, $2) ON CONFLICT (name) \
                 DO UPDATE SET category = excluded.category WHERE checkpoints.category IS DISTINCT FROM excluded.category",
                self.schema()
            );
            sqlx::query(&create)
                .bind(name)
                .bind(category)
                .execute(self.pool())
                .await
                .map_err(|e| database_error("create a checkpoint", &e))?;
            let read = format!(
                "SELECT position, rebuild_requested FROM \"{}\".checkpoints WHERE name = $1",
                self.schema()
            );
            let row = sqlx::query(&read)
                .bind(name)
                .fetch_one(self.pool())
                .await
                .map_err(|e| database_error("read a checkpoint", &e))?;
            let decode = |e| database_error("read a checkpoint", &e);
            Ok(Checkpoint {
                position: row.try_get::<i64, _>(0).map_err(decode)? as u64,
                rebuild_requested: row.try_get(1).map_err(decode)?,
            })
        })
    }

    fn advance<'a>(&'a self, name: &'a str, from: u64, to: u64) -> BoxFuture<'a, Result<bool, HandledError>> {
        Box::pin(async move {
            let mut conn = self.pool().acquire().await.map_err(|e| database_error("move a checkpoint", &e))?;
            self.advance_in(&mut conn, name, from, to).await
        })
    }

    fn request_rebuild<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), HandledError>> {
        Box::pin(async move {
            let sql = format!(
                "INSERT INTO \"{0}\".checkpoints (name, rebuild_requested) VALUES ($1, true) \
                 ON CONFLICT (name) DO UPDATE SET rebuild_requested = true, updated_at = clock_timestamp()",
                self.schema()
            );
            sqlx::query(&sql)
                .bind(name)
                .execute(self.pool())
                .await
                .map_err(|e| database_error("ask for a rebuild", &e))?;
            // Wakes the projection's runner in whichever process it runs.
            if !self.channel().is_empty() {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(self.channel())
                    .execute(self.pool())
                    .await
                    .map_err(|e| database_error("ask for a rebuild", &e))?;
            }
            Ok(())
        })
    }

    fn restart<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), HandledError>> {
        Box::pin(async move {
            let mut conn = self
                .pool()
                .acquire()
                .await
                .map_err(|e| database_error("restart a checkpoint", &e))?;
            self.restart_in(&mut conn, name).await
        })
    }
}
