//! `invite-customer serve` (the default) and `invite-customer rebuild`: see the crate docs of
//! the library, or the README's "CQRS and LOW handlers" section.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use invite_customer::{DATABASE, RESOLVE_MS, app, database};
use invite_customer_functions::{CustomersProjector, InviteCustomerHandler, MemoryCustomers, ResolverSettings};
use purest::Error;
use purest::cqrs::{rebuild, rebuild_projector};
#[derive(Parser)]
#[command(about = "purest's invite-customer example: one set of LOW functions, deployed as configured")]
struct Args {
    #[command(subcommand)]
    command: Option<Task>,
}

#[derive(Subcommand)]
enum Task {
    /// Serves until SIGINT/SIGTERM (the default).
    Serve,
    /// Rebuilds the handler's registry and the customers read model from the event store
    /// (INVITE_DATABASE), creating dropped tables first. Stop the servers first.
    Rebuild,
}

#[tokio::main]
async fn main() -> ExitCode {
    purest::logging::init();
    let args = Args::parse();
    let result = match args.command.unwrap_or(Task::Serve) {
        Task::Serve => serve().await,
        Task::Rebuild => rebuild_tables().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> Result<(), Error> {
    let resolver = ResolverSettings {
        deadline: match std::env::var(RESOLVE_MS) {
            Ok(ms) => Duration::from_millis(
                ms.parse()
                    .map_err(|_| Error::msg(format!("{RESOLVE_MS}={ms:?} is not a number of milliseconds")))?,
            ),
            Err(_) => ResolverSettings::default().deadline,
        },
    };
    match database().await? {
        Some(db) => app(db, resolver).run().await,
        None => app(MemoryCustomers::default(), resolver).run().await,
    }
}

async fn rebuild_tables() -> Result<(), Error> {
    let Some(db) = database().await? else {
        return Err(Error::msg(format!(
            "set {DATABASE}: the in-memory tables are rebuilt at every start anyway"
        )));
    };
    db.create_tables().await?;
    let handler = rebuild(&InviteCustomerHandler, &db).await?;
    println!("registry: {} events written of {} read", handler.written, handler.read);
    let projector = rebuild_projector(CustomersProjector, db).await?;
    println!("customers: {} events written", projector.written);
    Ok(())
}
