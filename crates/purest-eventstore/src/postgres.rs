//! The PostgreSQL event store: events in one table of a schema of their own, appended by one
//! function call per append, read in a global order that never shows a reader a hole.
//!
//! **The visibility rule.** A position is the appending transaction's id shifted left by 20 bits,
//! plus the event's place in that transaction. Transactions can commit in another order than
//! their ids, so a reader takes only positions below the oldest transaction id still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction below that has ended, so no event
//! can appear below a position a reader has passed. The price: while a transaction that wrote
//! (anywhere in the cluster) stays open, readers of the global order wait for it. Keep writing
//! transactions short, and do not leave one idle.

mod inbox;
mod projection;
mod wakeup;

pub use projection::{PgProjection, ReaderStatus};

use std::sync::Arc;

use futures::future::BoxFuture;
use purest_core::HandledError;
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Executor, PgConnection, Postgres, Row};
use tokio::sync::watch;

use crate::event::{Appended, Direction, Expected, Metadata, NewEvent, RecordedEvent, Snapshot};
use crate::store::{EventStore, check_append, check_stream_name, duplicate_event, version_conflict};
use crate::types::EventTypes;

/// The migrations that make a store's schema, applied by [`PgEventStore::migrate`].
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The most events one transaction can append: a position numbers them in its low 20 bits.
pub const MAX_EVENTS_PER_TRANSACTION: usize = 1 << 20;

/// The lowest position no reader may take yet: the oldest running transaction's.
const VISIBLE_BELOW: &str = "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)";

const EVENT_COLUMNS: &str = "position, stream, version, id, event_type, schema_version, payload, metadata, \
     (extract(epoch from recorded_at) * 1000)::bigint AS recorded_ms";

/// How a [`PgEventStore`] is set up.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The schema holding the store's tables (`purest`); several stores can share a database
    /// under different schemas.
    pub schema: String,
    /// Whether an append sends a notification, which wakes readers in other processes at once.
    /// Without it they find new events at their next poll.
    pub notify: bool,
    /// How many connections [`PgEventStore::connect`] opens at most (16; at least 2, as readers
    /// that wait for notifications keep one listening).
    pub pool_size: u32,
    /// How long an operation waits for a free connection before it is refused with 503 (5 s).
    pub acquire_timeout: std::time::Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: "purest".to_owned(),
            notify: true,
            pool_size: 16,
            acquire_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// An [`EventStore`] in PostgreSQL (13 or newer). Clones share the pool.
///
/// Besides the trait, it appends inside a transaction of the caller's
/// ([`PgEventStore::append_in`]), so that a handler's own writes and the events they cause commit
/// together.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    schema: Arc<str>,
    channel: Arc<str>,
    sql: Arc<Statements>,
    types: Option<Arc<EventTypes>>,
    wakeups: Arc<wakeup::Wakeups>,
}

/// The statements, written once with the schema's name in them.
struct Statements {
    append_in_transaction: String,
    append_alone: String,
    read_forward: String,
    read_backward: String,
    read_all: String,
    read_category: String,
    count_all: String,
    count_category: String,
    stream_version: String,
    read_snapshot: String,
    write_snapshot: String,
}

impl PgEventStore {
    /// Connects to the database at `url` (`postgres://user@host/db`) with a pool of
    /// `options.pool_size` connections, each waited for at most `options.acquire_timeout`, and
    /// applies the store's migrations.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, HandledError> {
        let connect: PgConnectOptions = url.parse().map_err(|e| {
            HandledError::bad_request(format!(
                "{url:?} is not a PostgreSQL address ({e}); write postgres://user:password@host:5432/database"
            ))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| {
                let url = purest_core::host::url_without_password(url);
                tracing::warn!(url, error = %e, "cannot connect to the event store's PostgreSQL");
                HandledError::unavailable(format!(
                    "cannot connect to PostgreSQL at {url} ({e}); check that it runs and that the address names the right host, port, user and database"
                ))
            })?;
        let store = Self::new(pool, options)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store on `pool`, with its tables in `options.schema`. Call [`PgEventStore::migrate`]
    /// before the first use (or run `purest eventstore migrate`).
    pub fn new(pool: PgPool, options: PgOptions) -> Result<Self, HandledError> {
        check_schema_name(&options.schema)?;
        let s = format!("\"{}\"", options.schema);
        let sql = Statements {
            append_in_transaction: format!("SELECT stream_version, first_position FROM {s}.append($1, $2, $3, $4, $5, $6, $7)"),
            append_alone: format!(
                "WITH inserted AS (
                    INSERT INTO {s}.events (position, stream, version, id, event_type, schema_version, payload, metadata)
                    SELECT (pg_current_xact_id()::text::bigint << 20) + e.o - 1, $1, base.version + e.o, e.i, e.t, e.s, e.p, e.m
                    FROM (SELECT CASE WHEN $2 >= 0 THEN $2
                                 ELSE (SELECT coalesce(max(version), 0) FROM {s}.events WHERE stream = $1) END AS version) base,
                         unnest($3::text[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[]) WITH ORDINALITY AS e(i, t, s, p, m, o)
                    WHERE $2 <= 0 OR EXISTS (SELECT 1 FROM {s}.events WHERE stream = $1 AND version = $2)
                    RETURNING version, position)
                 SELECT max(version), min(position) FROM inserted"
            ),
            read_forward: format!("SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3"),
            read_backward: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream = $1 AND version <= $2 ORDER BY version DESC LIMIT $3"
            ),
            read_all: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE position > $1 AND position < {VISIBLE_BELOW} ORDER BY position LIMIT $2"
            ),
            read_category: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE category = $1 AND position > $2 AND position < {VISIBLE_BELOW} \
                 ORDER BY position LIMIT $3"
            ),
            count_all: format!("SELECT count(*) FROM {s}.events WHERE position > $1 AND position < {VISIBLE_BELOW}"),
            count_category: format!("SELECT count(*) FROM {s}.events WHERE category = $2 AND position > $1 AND position < {VISIBLE_BELOW}"),
            stream_version: format!("SELECT coalesce(max(version), 0) FROM {s}.events WHERE stream = $1"),
            read_snapshot: format!("SELECT version, state_version, state FROM {s}.snapshots WHERE stream = $1"),
            write_snapshot: format!(
                "INSERT INTO {s}.snapshots (stream, version, state_version, state) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version, state_version = excluded.state_version, \
                 state = excluded.state, taken_at = clock_timestamp() WHERE snapshots.version <= excluded.version"
            ),
        };
        let channel = if options.notify {
            notify_channel(&options.schema)
        } else {
            String::new()
        };
        Ok(Self {
            pool,
            schema: Arc::from(options.schema),
            channel: Arc::from(channel),
            sql: Arc::new(sql),
            types: None,
            wakeups: Arc::new(wakeup::Wakeups::new()),
        })
    }

    /// The store, checking appends against `types` and upcasting what it reads (see
    /// [`EventTypes`]).
    pub fn with_types(mut self, types: EventTypes) -> Self {
        self.types = Some(Arc::new(types));
        self
    }

    /// Creates the schema and applies the migrations it lacks. Safe to run from several
    /// processes at once: they take turns.
    pub async fn migrate(&self) -> Result<(), HandledError> {
        let mut conn = self.pool.acquire().await.map_err(|e| database_error("migrate", &e))?;
        let schema = format!("\"{}\"", self.schema);
        conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
            .await
            .map_err(|e| database_error("migrate", &e))?;
        // The migrations name nothing by schema: with the search path on the store's schema, the
        // tables (and sqlx's record of applied migrations) land there.
        conn.execute(format!("SET search_path TO {schema}").as_str())
            .await
            .map_err(|e| database_error("migrate", &e))?;
        let applied = MIGRATOR.run(&mut *conn).await;
        // The connection's search path stays changed: it does not go back to the pool.
        conn.detach();
        applied.map_err(|e| {
            tracing::error!(schema = %self.schema, error = %e, "the event store's migrations failed");
            HandledError::unavailable(format!(
                "the event store's tables in schema {} could not be migrated; see the logs",
                self.schema
            ))
        })
    }

    /// The pool, for a caller's own transactions ([`PgEventStore::append_in`]) and read models.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The channel an append notifies (empty when notifications are off).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Appends inside the caller's transaction: the events commit (or roll back) with it. The
    /// stream stays locked against other writers until then. Readers are woken at once, before
    /// the commit: those that find nothing look again shortly after, or at once when
    /// [`PgEventStore::wake_readers`] is called after the commit.
    ///
    /// ```no_run
    /// # async fn demo(store: purest_eventstore::PgEventStore) -> Result<(), purest_core::HandledError> {
    /// use purest_eventstore::{Expected, NewEvent};
    /// let mut tx = store.pool().begin().await.unwrap();
    /// sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1").execute(&mut *tx).await.unwrap();
    /// let event = NewEvent::new("withdrawn", &serde_json::json!({"amount": 10}))?;
    /// store.append_in(&mut tx, "account-1", Expected::Any, vec![event]).await?;
    /// tx.commit().await.unwrap();
    /// store.wake_readers();
    /// # Ok(()) }
    /// ```
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &str,
        expected: Expected,
        events: Vec<NewEvent>,
    ) -> Result<Appended, HandledError> {
        self.append_in_transaction(conn, stream, expected, events).await
    }

    /// Wakes readers (projections, relays, here and in other processes) again: call it after
    /// committing a transaction that appended with [`PgEventStore::append_in`]. Readers woken at
    /// the append itself found its events not yet committed; without this they find them at their
    /// next look, up to 10 ms later.
    pub fn wake_readers(&self) {
        self.wakeups.appended(&self.pool, &self.channel);
    }

    /// Refuses what no store takes, and what these event types refuse.
    fn check(&self, stream: &str, events: &[NewEvent]) -> Result<(), HandledError> {
        check_append(stream, events)?;
        if let Some(types) = &self.types {
            events.iter().try_for_each(|event| types.check(event))?;
        }
        if events.len() > MAX_EVENTS_PER_TRANSACTION {
            return Err(HandledError::bad_request(format!(
                "an append of {} events to stream {stream} is more than the {MAX_EVENTS_PER_TRANSACTION} one transaction can hold; split it",
                events.len()
            )));
        }
        Ok(())
    }

    /// Appends in the caller's transaction, by the `append` function: it takes the stream's
    /// turn and numbers positions after those the transaction appended already.
    async fn append_in_transaction(
        &self,
        conn: &mut PgConnection,
        stream: &str,
        expected: Expected,
        events: Vec<NewEvent>,
    ) -> Result<Appended, HandledError> {
        self.check(stream, &events)?;
        let columns = Columns::of(&events);
        let row = columns
            .bind(
                sqlx::query(&self.sql.append_in_transaction)
                    .bind(stream)
                    .bind(expected_number(expected)),
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| append_error(&e, stream, expected, &events))?;
        let version: i64 = row.try_get(0).map_err(|e| database_error("append", &e))?;
        let first_position: i64 = row.try_get(1).map_err(|e| database_error("append", &e))?;
        self.wakeups.appended(&self.pool, &self.channel);
        Ok(Appended {
            version: version as u64,
            first_position: first_position as u64,
        })
    }

    /// Appends in a transaction of its own: one plain statement, which the benchmark found a
    /// third faster than the function. Alone in its transaction, its positions start at the
    /// transaction's base; the unique (stream, version) index refuses a writer that lost a race.
    async fn append_alone(&self, stream: &str, expected: Expected, events: Vec<NewEvent>) -> Result<Appended, HandledError> {
        self.check(stream, &events)?;
        let columns = Columns::of(&events);
        // Writers that expect any version and lose a race read the version again and retry.
        let mut races = 0;
        loop {
            let query = columns.bind(sqlx::query(&self.sql.append_alone).bind(stream).bind(expected_number(expected)));
            match query.fetch_one(&self.pool).await {
                Ok(row) => {
                    let decode = |e: sqlx::Error| database_error("append", &e);
                    let version: Option<i64> = row.try_get(0).map_err(decode)?;
                    let first_position: Option<i64> = row.try_get(1).map_err(decode)?;
                    if let (Some(version), Some(first_position)) = (version, first_position) {
                        self.wakeups.appended(&self.pool, &self.channel);
                        return Ok(Appended {
                            version: version as u64,
                            first_position: first_position as u64,
                        });
                    }
                    // Nothing inserted: the stream is shorter than expected.
                    return Err(version_conflict(stream, expected, self.stream_version(stream).await?));
                }
                Err(e) if is_violation(&e, "events_stream_version") => {
                    races += 1;
                    if expected == Expected::Any && races < 10 {
                        continue;
                    }
                    return Err(version_conflict(stream, expected, self.stream_version(stream).await?));
                }
                Err(e) => return Err(append_error(&e, stream, expected, &events)),
            }
        }
    }

    async fn fetch_events(&self, query: Query<'_>, what: &str) -> Result<Vec<RecordedEvent>, HandledError> {
        let rows = query.fetch_all(&self.pool).await.map_err(|e| database_error(what, &e))?;
        let mut stream_name: Option<Arc<str>> = None;
        let events = rows
            .iter()
            .map(|row| recorded_event(row, &mut stream_name))
            .collect::<Result<Vec<_>, _>>()?;
        match &self.types {
            Some(types) => types.upcast_all(events),
            None => Ok(events),
        }
    }
}

type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

impl EventStore for PgEventStore {
    fn append<'a>(&'a self, stream: &'a str, expected: Expected, events: Vec<NewEvent>) -> BoxFuture<'a, Result<Appended, HandledError>> {
        Box::pin(self.append_alone(stream, expected, events))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, HandledError>> {
        Box::pin(async move {
            check_stream_name(stream)?;
            let sql = match direction {
                Direction::Forward => &self.sql.read_forward,
                Direction::Backward => &self.sql.read_backward,
            };
            let query = sqlx::query(sql).bind(stream).bind(to_i64(from)).bind(to_i64(limit as u64));
            self.fetch_events(query, "read a stream").await
        })
    }

    fn read_all(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, HandledError>> {
        let query = sqlx::query(&self.sql.read_all).bind(to_i64(after)).bind(to_i64(limit as u64));
        Box::pin(self.fetch_events(query, "read all events"))
    }

    fn read_category<'a>(&'a self, category: &'a str, after: u64, limit: usize) -> BoxFuture<'a, Result<Vec<RecordedEvent>, HandledError>> {
        let query = sqlx::query(&self.sql.read_category)
            .bind(category)
            .bind(to_i64(after))
            .bind(to_i64(limit as u64));
        Box::pin(self.fetch_events(query, "read a category"))
    }

    fn stream_version<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<u64, HandledError>> {
        Box::pin(async move {
            check_stream_name(stream)?;
            let version: i64 = sqlx::query_scalar(&self.sql.stream_version)
                .bind(stream)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| database_error("read a stream's version", &e))?;
            Ok(version as u64)
        })
    }

    fn count_after<'a>(&'a self, after: u64, category: Option<&'a str>) -> BoxFuture<'a, Result<u64, HandledError>> {
        Box::pin(async move {
            let query = match category {
                None => sqlx::query_scalar(&self.sql.count_all).bind(to_i64(after)),
                Some(category) => sqlx::query_scalar(&self.sql.count_category).bind(to_i64(after)).bind(category),
            };
            let behind: i64 = query.fetch_one(&self.pool).await.map_err(|e| database_error("count events", &e))?;
            Ok(behind as u64)
        })
    }

    fn watch_appends(&self) -> Option<watch::Receiver<()>> {
        Some(self.wakeups.watch(&self.pool, &self.channel))
    }

    fn read_snapshot<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Option<Snapshot>, HandledError>> {
        Box::pin(async move {
            check_stream_name(stream)?;
            let row = sqlx::query(&self.sql.read_snapshot)
                .bind(stream)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| database_error("read a snapshot", &e))?;
            let Some(row) = row else { return Ok(None) };
            let decode = |e: sqlx::Error| database_error("read a snapshot", &e);
            let version: i64 = row.try_get(0).map_err(decode)?;
            let state_version: i32 = row.try_get(1).map_err(decode)?;
            let Json(state): Json<Box<RawValue>> = row.try_get(2).map_err(decode)?;
            Ok(Some(Snapshot {
                stream: Arc::from(stream),
                version: version as u64,
                state_version: state_version as u32,
                state: Arc::from(state),
            }))
        })
    }

    fn write_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<(), HandledError>> {
        Box::pin(async move {
            check_stream_name(&snapshot.stream)?;
            sqlx::query(&self.sql.write_snapshot)
                .bind(&*snapshot.stream)
                .bind(to_i64(snapshot.version))
                .bind(i32::try_from(snapshot.state_version).unwrap_or(i32::MAX))
                .bind(Json(&*snapshot.state))
                .execute(&self.pool)
                .await
                .map_err(|e| database_error("write a snapshot", &e))?;
            Ok(())
        })
    }
}

/// One row of the events table as an event; rows of one stream share its name.
fn recorded_event(row: &PgRow, stream_name: &mut Option<Arc<str>>) -> Result<RecordedEvent, HandledError> {
    let decode = |e: sqlx::Error| database_error("read events", &e);
    let stream: &str = row.try_get("stream").map_err(decode)?;
    let stream = match stream_name {
        Some(name) if &**name == stream => name.clone(),
        _ => stream_name.insert(Arc::from(stream)).clone(),
    };
    let id: &str = row.try_get("id").map_err(decode)?;
    let Json(payload): Json<Box<RawValue>> = row.try_get("payload").map_err(decode)?;
    let Json(metadata): Json<Metadata> = row.try_get("metadata").map_err(decode)?;
    Ok(RecordedEvent {
        id: id
            .parse()
            .map_err(|e| database_error("read events", &sqlx::Error::Decode(Box::new(e))))?,
        stream,
        version: row.try_get::<i64, _>("version").map_err(decode)? as u64,
        position: row.try_get::<i64, _>("position").map_err(decode)? as u64,
        event_type: row.try_get("event_type").map_err(decode)?,
        schema_version: row.try_get::<i32, _>("schema_version").map_err(decode)? as u32,
        payload: Arc::from(payload),
        metadata,
        recorded_at: row.try_get::<i64, _>("recorded_ms").map_err(decode)? as u64,
    })
}

/// An append's columns, bound as arrays.
struct Columns<'e> {
    ids: Vec<String>,
    types: Vec<&'e str>,
    schema_versions: Vec<i32>,
    payloads: Vec<Json<&'e RawValue>>,
    metadata: Vec<Json<&'e Metadata>>,
}

impl<'e> Columns<'e> {
    fn of(events: &'e [NewEvent]) -> Self {
        Self {
            ids: events.iter().map(|event| event.id.to_string()).collect(),
            types: events.iter().map(|event| event.event_type.as_str()).collect(),
            schema_versions: events
                .iter()
                .map(|event| i32::try_from(event.schema_version).unwrap_or(i32::MAX))
                .collect(),
            payloads: events.iter().map(|event| Json(&*event.payload)).collect(),
            metadata: events.iter().map(|event| Json(&event.metadata)).collect(),
        }
    }

    /// Binds parameters 3 to 7.
    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.schema_versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
    }
}

/// `expected` as the statements take it: -1 any, 0 no events, else the version.
fn expected_number(expected: Expected) -> i64 {
    match expected {
        Expected::Any => -1,
        Expected::NoStream => 0,
        Expected::Version(version) => to_i64(version),
    }
}

/// Whether `error` is a unique violation of `constraint`.
fn is_violation(error: &sqlx::Error, constraint: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
}

/// What an append's failure means to its caller.
fn append_error(error: &sqlx::Error, stream: &str, expected: Expected, events: &[NewEvent]) -> HandledError {
    if let Some(db) = error.as_database_error() {
        match (db.code().as_deref(), db.constraint()) {
            (Some("PU409"), _) => {
                let actual = db.message().parse().unwrap_or_default();
                return version_conflict(stream, expected, actual);
            }
            // A writer in a REPEATABLE READ transaction read an old version: the same conflict.
            (Some("23505"), Some("events_stream_version")) => {
                return version_conflict(stream, expected, expected_version(expected) + 1);
            }
            (Some("23505"), Some("events_id")) => {
                // PostgreSQL names the key: "Key (id)=(…) already exists."
                let held = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.detail())
                    .and_then(|detail| detail.split_once("=(")?.1.split_once(')'))
                    .and_then(|(id, _)| events.iter().find(|event| event.id.to_string() == id));
                if let Some(event) = held.or(events.first()) {
                    return duplicate_event(stream, &event.id);
                }
            }
            _ => {}
        }
    }
    database_error("append", error)
}

fn expected_version(expected: Expected) -> u64 {
    match expected {
        Expected::Version(version) => version,
        Expected::Any | Expected::NoStream => 0,
    }
}

/// A database failure as the caller sees it: 503 when PostgreSQL cannot be reached, has no free
/// connection or aborted the transaction for a deadlock or serialization failure (retrying can
/// work), otherwise a generic 500; the details go to the log.
/// `what` completes "failed to …" in the message. Projections use it for their own queries, so
/// that a lost connection makes them retry rather than stop.
///
/// ```
/// let refused = purest_eventstore::database_error("update the read model", &sqlx::Error::PoolTimedOut);
/// assert_eq!(refused.status, 503);
/// ```
pub fn database_error(what: &str, error: &sqlx::Error) -> HandledError {
    let unreachable = match error {
        sqlx::Error::PoolTimedOut => {
            tracing::warn!(operation = what, "no free connection to the event store's PostgreSQL in time");
            return HandledError::unavailable(format!(
                "the event store is busy: no database connection came free in time to {what}; retry shortly"
            ));
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => true,
        // 40001 and 40P01: PostgreSQL aborted the transaction (serialization, deadlock); the
        // same work done again can pass.
        sqlx::Error::Database(db) if db.code().is_some_and(|code| matches!(&*code, "40001" | "40P01")) => {
            tracing::warn!(operation = what, error = %error, "PostgreSQL aborted a transaction of the event store; to be retried");
            return HandledError::unavailable(format!(
                "the event store's transaction to {what} collided with another and was aborted; retry"
            ));
        }
        // Class 08 is a connection failure; 57P01–57P03 a server shutting down or starting up.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")),
        _ => false,
    };
    if unreachable {
        tracing::warn!(operation = what, error = %error, "the event store's PostgreSQL cannot be reached");
        HandledError::unavailable(format!("the event store cannot be reached to {what}; retry shortly"))
    } else {
        tracing::error!(operation = what, error = %error, "an event store operation failed");
        HandledError::internal(format!("the event store failed to {what}"))
    }
}

/// The notification channel of the store in `schema`.
pub(crate) fn notify_channel(schema: &str) -> String {
    format!("purest_events.{schema}")
}

/// Refuses a schema name that would need quoting tricks: lowercase letters, digits and `_`,
/// starting with a letter or `_`, at most 40 bytes (channel names must stay under 64).
fn check_schema_name(schema: &str) -> Result<(), HandledError> {
    let mut chars = schema.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok || schema.len() > 40 || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(HandledError::bad_request(format!(
            "{schema:?} is not a schema name for the event store; write 1 to 40 lowercase letters, digits or _, such as purest"
        )));
    }
    Ok(())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
