//! A PostgreSQL for tests: the machine's (`PUREST_TEST_DATABASE_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in a schema of its own that is dropped
//! when the test passes.
#![allow(dead_code)]

use purest_eventstore::{PgEventStore, PgOptions};
use sqlx::Executor;

/// The test database's address.
pub fn database_url() -> String {
    std::env::var("PUREST_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store in a fresh schema, or `None` (the test skips) when PostgreSQL is not running and
/// `PUREST_REQUIRE_BROKERS` is not 1.
pub async fn fresh_store() -> Option<TestStore> {
    let schema = format!("test_{}", &purest_core::Id::random().to_string()[..16]);
    let options = PgOptions {
        schema: schema.clone(),
        ..PgOptions::default()
    };
    match PgEventStore::connect(&database_url(), options).await {
        Ok(store) => Some(TestStore { store }),
        Err(error) if std::env::var("PUREST_REQUIRE_BROKERS").as_deref() != Ok("1") => {
            eprintln!("skipped: PostgreSQL at {} is not usable: {error}", database_url());
            None
        }
        Err(error) => panic!("PostgreSQL at {} is not usable: {error}", database_url()),
    }
}

/// A store whose schema goes when the test is done with it ([`TestStore::finish`]).
pub struct TestStore {
    pub store: PgEventStore,
}

impl TestStore {
    /// Drops the test's schema. A failed test keeps it, to look at.
    pub async fn finish(self) {
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.store.schema());
        self.store.pool().execute(drop.as_str()).await.unwrap();
    }
}
