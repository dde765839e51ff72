//! The functions' tables in PostgreSQL, next to the event store: deployment (b) and (c).

use std::sync::Arc;

use invite_customer_functions::{Customer, CustomerRegistry, CustomerViews};
use purest::HandledError;
use purest::cqrs::{Datastore, PgUnit};
use purest::eventstore::sqlx::{self, Row};
use purest::eventstore::{Checkpoints, EventStore, PgEventStore, PgOptions, database_error};

/// The registry and the `customers` read model in the event store's schema.
#[derive(Clone)]
pub struct PgCustomers {
    store: PgEventStore,
    sql: Arc<Statements>,
}

struct Statements {
    create: [String; 2],
    drop: String,
    customer_with_email: String,
    register: String,
    clear_registry: String,
    customer: String,
    put_customer: String,
    clear_customers: String,
    dump: String,
}

impl PgCustomers {
    /// Connects to `url`, with the event store and the tables in `schema`, creating them if need
    /// be.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, HandledError> {
        let options = PgOptions {
            schema: schema.to_owned(),
            ..PgOptions::default()
        };
        let store = PgEventStore::connect(url, options).await?;
        let s = format!("\"{schema}\"");
        let customers = Self {
            store,
            sql: Arc::new(Statements {
                create: [
                    format!("CREATE TABLE IF NOT EXISTS {s}.customer_registry (email text PRIMARY KEY, customer_id text NOT NULL)"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {s}.customers (email text PRIMARY KEY, id text NOT NULL, name text NOT NULL, invited_at bigint NOT NULL)"
                    ),
                ],
                drop: format!("DROP TABLE IF EXISTS {s}.customer_registry, {s}.customers"),
                customer_with_email: format!("SELECT customer_id FROM {s}.customer_registry WHERE email = $1"),
                register: format!("INSERT INTO {s}.customer_registry (email, customer_id) VALUES ($1, $2)"),
                clear_registry: format!("DELETE FROM {s}.customer_registry"),
                customer: format!("SELECT id, email, name, invited_at FROM {s}.customers WHERE email = $1"),
                put_customer: format!(
                    "INSERT INTO {s}.customers (email, id, name, invited_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (email) DO UPDATE SET id = excluded.id, name = excluded.name, invited_at = excluded.invited_at"
                ),
                clear_customers: format!("DELETE FROM {s}.customers"),
                dump: format!(
                    "SELECT 'registry ' || email || ' ' || customer_id FROM {s}.customer_registry \
                     UNION ALL SELECT 'customer ' || email || ' ' || id || ' ' || name || ' ' || invited_at FROM {s}.customers ORDER BY 1"
                ),
            }),
        };
        customers.create_tables().await?;
        Ok(customers)
    }

    /// Creates the tables that are missing.
    pub async fn create_tables(&self) -> Result<(), HandledError> {
        for statement in &self.sql.create {
            sqlx::query(statement)
                .execute(self.store.pool())
                .await
                .map_err(|e| database_error("create the customer tables", &e))?;
        }
        Ok(())
    }

    /// Drops both tables (the rebuild's test starts from nothing).
    pub async fn drop_tables(&self) -> Result<(), HandledError> {
        sqlx::query(&self.sql.drop)
            .execute(self.store.pool())
            .await
            .map_err(|e| database_error("drop the customer tables", &e))?;
        Ok(())
    }

    /// Every row of both tables, one line each, sorted: what a rebuild must reproduce.
    pub async fn dump(&self) -> Result<Vec<String>, HandledError> {
        sqlx::query_scalar(&self.sql.dump)
            .fetch_all(self.store.pool())
            .await
            .map_err(|e| database_error("read the customer tables", &e))
    }

    /// The event store.
    pub fn store(&self) -> &PgEventStore {
        &self.store
    }
}

impl Datastore for PgCustomers {
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

impl CustomerRegistry for PgCustomers {
    async fn customer_with_email(&self, email: &str) -> Result<Option<String>, HandledError> {
        sqlx::query_scalar(&self.sql.customer_with_email)
            .bind(email)
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| database_error("look up an email", &e))
    }

    async fn register_customer(&self, unit: &mut PgUnit, customer_id: &str, email: &str) -> Result<(), HandledError> {
        match sqlx::query(&self.sql.register)
            .bind(email)
            .bind(customer_id)
            .execute(unit.conn())
            .await
        {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                Err(HandledError::conflict(format!("{email} belongs to another customer")))
            }
            Err(e) => Err(database_error("register a customer", &e)),
        }
    }

    async fn clear_registry(&self, unit: &mut PgUnit) -> Result<(), HandledError> {
        sqlx::query(&self.sql.clear_registry)
            .execute(unit.conn())
            .await
            .map_err(|e| database_error("empty the registry", &e))?;
        Ok(())
    }
}

impl CustomerViews for PgCustomers {
    async fn customer(&self, email: &str) -> Result<Option<Customer>, HandledError> {
        let row = sqlx::query(&self.sql.customer)
            .bind(email)
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| database_error("read a customer", &e))?;
        let Some(row) = row else { return Ok(None) };
        let decode = |e| database_error("read a customer", &e);
        Ok(Some(Customer {
            id: row.try_get("id").map_err(decode)?,
            email: row.try_get("email").map_err(decode)?,
            name: row.try_get("name").map_err(decode)?,
            invited_at: row.try_get::<i64, _>("invited_at").map_err(decode)? as u64,
        }))
    }

    async fn put_customer(&self, unit: &mut PgUnit, customer: &Customer) -> Result<(), HandledError> {
        sqlx::query(&self.sql.put_customer)
            .bind(&customer.email)
            .bind(&customer.id)
            .bind(&customer.name)
            .bind(i64::try_from(customer.invited_at).unwrap_or(i64::MAX))
            .execute(unit.conn())
            .await
            .map_err(|e| database_error("write a customer", &e))?;
        Ok(())
    }

    async fn clear_customers(&self, unit: &mut PgUnit) -> Result<(), HandledError> {
        sqlx::query(&self.sql.clear_customers)
            .execute(unit.conn())
            .await
            .map_err(|e| database_error("empty the customers", &e))?;
        Ok(())
    }
}
