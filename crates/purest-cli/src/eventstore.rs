//! `purest eventstore`: the PostgreSQL event store's tables and readers, from outside the app —
//! apply the migrations, show every projection's and relay's position and lag, ask for a
//! rebuild (the running projection empties its read model and starts over).

use purest::eventstore::{Checkpoints, PgEventStore, PgOptions};

use crate::CliError;

/// What `purest eventstore` takes.
#[derive(Debug, clap::Args)]
pub struct EventstoreArgs {
    /// The database (`postgres://user:password@host:5432/database`); default: `DATABASE_URL`.
    #[arg(long, env = "DATABASE_URL")]
    database: String,
    /// The schema holding the store's tables.
    #[arg(long, default_value = "purest")]
    schema: String,
    #[command(subcommand)]
    action: EventstoreAction,
}

#[derive(Debug, clap::Subcommand)]
enum EventstoreAction {
    /// Create the schema and apply the migrations it lacks (apps also do this when they connect).
    Migrate,
    /// List every projection and relay with its position and how many events it has to go.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the projection NAME to empty its read model and apply every event again; the process
    /// running it does so at once (it is woken), or when it next starts.
    Rebuild {
        /// The projection's name.
        name: String,
    },
}

/// Runs one `purest eventstore` action.
pub fn run(args: &EventstoreArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Eventstore(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let options = PgOptions {
            schema: args.schema.clone(),
            pool_size: 2,
            ..PgOptions::default()
        };
        let failed = |e: purest::HandledError| CliError::Eventstore(e.message);
        // Connecting applies the migrations.
        let store = PgEventStore::connect(&args.database, options).await.map_err(failed)?;
        match &args.action {
            EventstoreAction::Migrate => println!("the event store's tables in schema {} are up to date", args.schema),
            EventstoreAction::Status { json } => {
                let readers = store.readers().await.map_err(failed)?;
                print!("{}", if *json { status_json(&readers) } else { status_table(&readers) });
            }
            EventstoreAction::Rebuild { name } => {
                let known = store.readers().await.map_err(failed)?.iter().any(|reader| &reader.name == name);
                if !known {
                    return Err(CliError::Eventstore(format!(
                        "no projection named {name} has run on schema {}; `purest eventstore status` lists those that have",
                        args.schema
                    )));
                }
                store.request_rebuild(name).await.map_err(failed)?;
                println!("asked projection {name} to rebuild");
            }
        }
        store.pool().close().await;
        Ok(())
    })
}

fn status_table(readers: &[purest::eventstore::ReaderStatus]) -> String {
    if readers.is_empty() {
        return "no projection or relay has run on this store yet\n".to_owned();
    }
    let mut table = format!(
        "{:<32} {:<16} {:>20} {:>10}  {}\n",
        "NAME", "CATEGORY", "POSITION", "BEHIND", "REBUILD"
    );
    for reader in readers {
        table.push_str(&format!(
            "{:<32} {:<16} {:>20} {:>10}  {}\n",
            reader.name,
            reader.category.as_deref().unwrap_or("(all)"),
            reader.position,
            reader.behind,
            if reader.rebuild_requested { "asked" } else { "-" }
        ));
    }
    table
}

fn status_json(readers: &[purest::eventstore::ReaderStatus]) -> String {
    let readers: Vec<serde_json::Value> = readers
        .iter()
        .map(|reader| {
            serde_json::json!({
                "name": reader.name,
                "category": reader.category,
                "position": reader.position,
                "behind": reader.behind,
                "rebuildRequested": reader.rebuild_requested,
                "updatedAt": reader.updated_at,
            })
        })
        .collect();
    format!("{}\n", serde_json::to_string_pretty(&readers).unwrap_or_default())
}
