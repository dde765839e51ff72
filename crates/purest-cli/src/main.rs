//! `purest`: scaffold a project (`new`), add services, commands and subscriptions (`add`), export
//! an app's OpenAPI and AsyncAPI documents, draw its topology (`graph`), and list what runs on a
//! bridge (`ps`).
//!
//! The exports read the app's own description: its binary run with `PUREST_DESCRIBE=1` prints
//! it (see `purest::describe`), so they need no broker and no running app.

mod asyncapi;
mod eventstore;
mod graph;
mod ps;
mod scaffold;
mod source;
mod topology;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use source::AppSource;

/// What went wrong, said so the user knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The app could not describe itself.
    #[error("cannot describe the app: {0}")]
    Describe(String),
    /// Scaffolding refused or failed.
    #[error("{0}")]
    Scaffold(String),
    /// `purest ps` could not look at the bridge.
    #[error("{0}")]
    Ps(String),
    /// `purest eventstore` could not do its work.
    #[error("{0}")]
    Eventstore(String),
    /// Writing the output failed.
    #[error("cannot write {path}: {error}")]
    Write {
        /// Where.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

#[derive(Parser)]
#[command(
    name = "purest",
    version,
    about = "The purest command line: new projects, API specs, the topology graph, what runs where"
)]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Create a new purest project: a workspace with one service, one command, one subscription
    /// and their tests.
    New(scaffold::NewArgs),
    /// Add a service, or a command or subscription to a service, and register it.
    Add(scaffold::AddArgs),
    /// Print the app's OpenAPI 3.1 document (its HTTP commands).
    Openapi {
        #[command(flatten)]
        app: AppSource,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print the app's AsyncAPI 3.0 document (its events and commands).
    Asyncapi {
        #[command(flatten)]
        app: AppSource,
        /// `info.title`.
        #[arg(long, default_value = "purest app")]
        title: String,
        /// `info.version`.
        #[arg(long, default_value = "1.0.0")]
        api_version: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print the topology: which command emits which event, which subscriptions consume it, which
    /// command invokes which (declared with `.invokes(..)` / `.may_emit(..)`).
    Graph {
        #[command(flatten)]
        app: AppSource,
        /// Mermaid or DOT.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: graph::Format,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List the services, instances, commands and subscriptions running on a bridge (NATS), from
    /// the info messages every instance sends.
    Ps(ps::PsArgs),
    /// The PostgreSQL event store: apply its migrations, show projections' positions and lag,
    /// ask a projection to rebuild.
    Eventstore(eventstore::EventstoreArgs),
}

fn emit(text: &str, output: Option<&PathBuf>) -> Result<(), CliError> {
    match output {
        Some(path) => std::fs::write(path, text).map_err(|error| CliError::Write {
            path: path.display().to_string(),
            error,
        }),
        None => {
            println!("{}", text.trim_end());
            Ok(())
        }
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Action::New(args) => scaffold::new_project(&args),
        Action::Add(args) => scaffold::add(&args),
        Action::Openapi { app, output } => {
            let description = app.describe()?;
            emit(&pretty(&description["openapi"]), output.as_ref())
        }
        Action::Asyncapi {
            app,
            title,
            api_version,
            output,
        } => {
            let topology = topology::Topology::of(&app.describe()?);
            emit(&pretty(&asyncapi::document(&topology, &title, &api_version)), output.as_ref())
        }
        Action::Graph { app, format, output } => {
            let topology = topology::Topology::of(&app.describe()?);
            emit(&graph::render(&topology, format), output.as_ref())
        }
        Action::Ps(args) => ps::run(&args),
        Action::Eventstore(args) => eventstore::run(&args),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
