//! The executor, projector and rebuild cases on PostgreSQL: the writes, the events and the
//! checkpoints of one unit in one transaction. Each test has a schema of its own in the machine's
//! database (`PUREST_TEST_DATABASE_URL`, by default `postgres://postgres@127.0.0.1:5432/test`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use purest_core::HandledError;
use purest_cqrs::{Datastore, PgUnit};
use purest_eventstore::sqlx::{self, Executor as _, Row};
use purest_eventstore::{Checkpoints, EventStore, PgEventStore, PgOptions, database_error};

#[derive(Clone)]
struct PgLedger {
    store: PgEventStore,
}

impl PgLedger {
    /// A ledger in a fresh schema, or `None` (the test skips) when PostgreSQL is not there and
    /// `PUREST_REQUIRE_BROKERS` is not 1.
    async fn fresh() -> Option<Self> {
        let url = std::env::var("PUREST_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("cqrs_{}", &purest_core::Id::random().to_string()[..16]);
        let options = PgOptions {
            schema: schema.clone(),
            ..PgOptions::default()
        };
        let store = match PgEventStore::connect(&url, options).await {
            Ok(store) => store,
            Err(error) if std::env::var("PUREST_REQUIRE_BROKERS").as_deref() != Ok("1") => {
                eprintln!("skipped: PostgreSQL at {url} is not usable: {error}");
                return None;
            }
            Err(error) => panic!("PostgreSQL at {url} is not usable: {error}"),
        };
        let tables = format!(
            "CREATE TABLE \"{schema}\".balances (account text PRIMARY KEY, balance bigint NOT NULL CHECK (balance <= {LIMIT})); \
             CREATE TABLE \"{schema}\".counts (account text PRIMARY KEY, n bigint NOT NULL)"
        );
        store.pool().execute(tables.as_str()).await.unwrap();
        Some(Self { store })
    }

    fn table(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.store.schema())
    }

    async fn finish(self) {
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.store.schema());
        self.store.pool().execute(drop.as_str()).await.unwrap();
    }
}

impl Datastore for PgLedger {
    type Unit = PgUnit;
    async fn begin(&self) -> Result<PgUnit, HandledError> {
        self.store.begin().await
    }
    fn events(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }
    fn checkpoints(&self) -> Arc<dyn Checkpoints> {
        Arc::new(self.store.clone())
    }
}

impl Ledger for PgLedger {
    async fn balance(&self, account: &str) -> Result<i64, HandledError> {
        let sql = format!("SELECT balance FROM {} WHERE account = $1", self.table("balances"));
        let balance: Option<i64> = sqlx::query_scalar(&sql)
            .bind(account)
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| database_error("read a balance", &e))?;
        Ok(balance.unwrap_or(0))
    }
    async fn add(&self, unit: &mut PgUnit, account: &str, amount: i64) -> Result<(), HandledError> {
        let sql = format!(
            "INSERT INTO {} (account, balance) VALUES ($1, $2) ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2",
            self.table("balances")
        );
        match sqlx::query(&sql).bind(account).bind(amount).execute(unit.conn()).await {
            Ok(_) => Ok(()),
            // The check constraint: the integrity check of this write.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {
                Err(HandledError::conflict(format!("account {account} would hold more than {LIMIT}")))
            }
            Err(e) => Err(database_error("add to a balance", &e)),
        }
    }
    async fn clear_balances(&self, unit: &mut PgUnit) -> Result<(), HandledError> {
        let sql = format!("DELETE FROM {}", self.table("balances"));
        sqlx::query(&sql)
            .execute(unit.conn())
            .await
            .map_err(|e| database_error("clear", &e))?;
        Ok(())
    }
    async fn count(&self, unit: &mut PgUnit, account: &str) -> Result<(), HandledError> {
        let sql = format!(
            "INSERT INTO {} (account, n) VALUES ($1, 1) ON CONFLICT (account) DO UPDATE SET n = counts.n + 1",
            self.table("counts")
        );
        sqlx::query(&sql)
            .bind(account)
            .execute(unit.conn())
            .await
            .map_err(|e| database_error("count", &e))?;
        Ok(())
    }
    async fn clear_counts(&self, unit: &mut PgUnit) -> Result<(), HandledError> {
        let sql = format!("DELETE FROM {}", self.table("counts"));
        sqlx::query(&sql)
            .execute(unit.conn())
            .await
            .map_err(|e| database_error("clear", &e))?;
        Ok(())
    }
    async fn dump(&self) -> Result<BTreeMap<String, i64>, HandledError> {
        let sql = format!(
            "SELECT account, balance FROM {} UNION ALL SELECT '#' || account, n FROM {}",
            self.table("balances"),
            self.table("counts")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(self.store.pool())
            .await
            .map_err(|e| database_error("dump", &e))?;
        Ok(rows.iter().map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1))).collect())
    }
}

macro_rules! on_postgres {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let Some(ledger) = PgLedger::fresh().await else { return };
            common::$case(ledger.clone()).await;
            ledger.finish().await;
        }
    )*};
}

on_postgres!(
    writes_and_events_commit_together,
    invalid_decisions_commit_nothing,
    a_failed_write_commits_nothing,
    a_lost_race_is_retried_a_bounded_number_of_times,
    concurrent_deposits_all_land,
    a_redelivered_message_is_not_applied_twice,
    projector_announces_and_rebuilds_reproduce_the_tables,
    served_as_a_command,
);
