//! Where an app's description comes from: its binary run with `PUREST_DESCRIBE=1` (built by cargo
//! or given as a path), or a description saved as JSON.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::CliError;

/// The app to describe.
#[derive(Debug, Clone, clap::Args)]
pub struct AppSource {
    /// An app binary already built.
    #[arg(long, conflicts_with_all = ["bin", "package", "description"])]
    pub exe: Option<PathBuf>,
    /// A description saved earlier (`PUREST_DESCRIBE=1 my-app > app.json`).
    #[arg(long, conflicts_with_all = ["bin", "package"])]
    pub description: Option<PathBuf>,
    /// The binary target to build and run with cargo (in the current cargo project).
    #[arg(long)]
    pub bin: Option<String>,
    /// The cargo package holding the binary.
    #[arg(long, short)]
    pub package: Option<String>,
}

impl AppSource {
    /// Runs the app (or reads the file) and returns its description.
    pub fn describe(&self) -> Result<Value, CliError> {
        let (what, output) = if let Some(path) = &self.description {
            let text = std::fs::read_to_string(path).map_err(|e| CliError::Describe(format!("cannot read {}: {e}", path.display())))?;
            return parse(&path.display().to_string(), &text);
        } else if let Some(exe) = &self.exe {
            let output = Command::new(exe)
                .env("PUREST_DESCRIBE", "1")
                .output()
                .map_err(|e| CliError::Describe(format!("cannot run {}: {e}", exe.display())))?;
            (exe.display().to_string(), output)
        } else {
            let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cargo.args(["run", "--quiet"]);
            if let Some(package) = &self.package {
                cargo.args(["--package", package]);
            }
            if let Some(bin) = &self.bin {
                cargo.args(["--bin", bin]);
            }
            // The first build of an app can take minutes; say why nothing else shows meanwhile.
            eprintln!(
                "purest: building and describing the app with `cargo run{}` (the first build can take minutes)…",
                self.package.as_ref().map(|p| format!(" --package {p}")).unwrap_or_default()
            );
            let output = cargo
                .env("PUREST_DESCRIBE", "1")
                .output()
                .map_err(|e| CliError::Describe(format!("cannot run cargo: {e}")))?;
            ("cargo run".to_owned(), output)
        };
        if !output.status.success() {
            return Err(CliError::Describe(format!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        parse(&what, &String::from_utf8_lossy(&output.stdout))
    }
}

fn parse(what: &str, text: &str) -> Result<Value, CliError> {
    let description: Value = serde_json::from_str(text).map_err(|e| {
        CliError::Describe(format!(
            "{what} did not print a description ({e}); is it a purest app whose main calls App::run (or App::describe_if_asked)?"
        ))
    })?;
    if description.get("purestDescribe").is_none() {
        return Err(CliError::Describe(format!("{what} printed JSON that is not a purest description")));
    }
    Ok(description)
}
