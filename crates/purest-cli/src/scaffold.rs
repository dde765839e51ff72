//! `purest new` and `purest add`: a project layout whose registration points are marked with
//! comments (`// purest:modules`, `// purest:services`, `// purest:commands`,
//! `// purest:subscriptions`), so code can be added and registered without parsing Rust.

use std::path::{Path, PathBuf};

use crate::CliError;

const MODULES: &str = "// purest:modules";
const SERVICES: &str = "// purest:services";
const COMMANDS: &str = "// purest:commands";
const SUBSCRIPTIONS: &str = "// purest:subscriptions";

/// `purest new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project (and package) name; the folder it is created in.
    pub name: String,
    /// Depend on purest at this path (a checkout's `crates/purest`). Default: the checkout this
    /// CLI was built from, while it is there.
    #[arg(long, conflicts_with = "purest_version")]
    pub purest_path: Option<PathBuf>,
    /// Depend on this version of purest from the registry (once it is published there).
    #[arg(long)]
    pub purest_version: Option<String>,
    /// Write into the folder even if it is not empty (existing files of the same names are
    /// replaced).
    #[arg(long)]
    pub force: bool,
}

/// `purest add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(subcommand)]
    pub what: AddWhat,
    /// The project folder.
    #[arg(long, global = true, default_value = ".")]
    pub project: PathBuf,
}

/// What `purest add` adds.
#[derive(Debug, clap::Subcommand)]
pub enum AddWhat {
    /// A service (version 1) with one command, registered in `src/services/mod.rs`.
    Service {
        /// The service name, e.g. `billing`.
        name: String,
    },
    /// A command in a service, registered in its builder.
    Command {
        /// The command name, e.g. `createInvoice`.
        name: String,
        /// The service's module, e.g. `billing`.
        #[arg(long)]
        service: String,
    },
    /// A subscription in a service, registered in its builder.
    Subscription {
        /// The subscription name, e.g. `sendInvoice`.
        name: String,
        /// The service's module.
        #[arg(long)]
        service: String,
        /// The event it runs for.
        #[arg(long)]
        event: String,
    },
}

/// `createInvoice` → `create_invoice`; `my-app` → `my_app`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// Names become Rust identifiers and file names: ASCII letters first, then letters, digits, `-`, `_`.
fn check_name(what: &str, name: &str) -> Result<(), CliError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(CliError::Scaffold(format!(
            "{what} name {name:?} is not usable: start with a letter, then letters, digits, `-` or `_`"
        )))
    }
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| CliError::Write {
            path: parent.display().to_string(),
            error,
        })?;
    }
    std::fs::write(path, text).map_err(|error| CliError::Write {
        path: path.display().to_string(),
        error,
    })
}

/// The `crates/purest` of the checkout this CLI was built from, if it is still there.
fn built_from_checkout() -> Option<PathBuf> {
    let facade = Path::new(env!("CARGO_MANIFEST_DIR")).join("../purest").canonicalize().ok()?;
    facade.join("Cargo.toml").is_file().then_some(facade)
}

/// Creates the project.
pub fn new_project(args: &NewArgs) -> Result<(), CliError> {
    check_name("project", &args.name)?;
    let root = PathBuf::from(&args.name);
    if root.exists() && !args.force && std::fs::read_dir(&root).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(CliError::Scaffold(format!(
            "{} exists and is not empty; choose another name, or pass --force to write into it",
            root.display()
        )));
    }
    let dependency = match &args.purest_path {
        Some(path) => {
            let path = path
                .canonicalize()
                .map_err(|e| CliError::Scaffold(format!("--purest-path {}: {e}", path.display())))?;
            if !path.join("Cargo.toml").is_file() {
                return Err(CliError::Scaffold(format!(
                    "--purest-path {}: no Cargo.toml there; give the path of crates/purest",
                    path.display()
                )));
            }
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        None => match (&args.purest_version, built_from_checkout()) {
            (Some(version), _) => format!("{version:?}"),
            (None, Some(path)) => {
                eprintln!(
                    "purest new: depending on purest at {} (the checkout this purest CLI was built from); \
                     --purest-version V uses a release from crates.io instead",
                    path.display()
                );
                format!("{{ path = {:?} }}", path.display().to_string())
            }
            (None, None) => {
                let version = env!("CARGO_PKG_VERSION");
                eprintln!(
                    "purest new: depending on purest {version} from crates.io; if it is not published there, \
                     pass --purest-path with a checkout's crates/purest"
                );
                format!("{version:?}")
            }
        },
    };
    let crate_name = snake(&args.name);
    write(
        &root.join("Cargo.toml"),
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A workspace of its own; add members here as the project grows.
[workspace]

[dependencies]
purest = {dependency}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread", "signal"] }}
serde = {{ version = "1", features = ["derive"] }}
schemars = "1"
garde = {{ version = "0.23", features = ["derive"] }}
"#,
            name = args.name
        ),
    )?;
    write(&root.join(".gitignore"), "/target\n")?;
    write(&root.join("README.md"), &readme(&args.name))?;
    write(
        &root.join("src/lib.rs"),
        &format!("//! {}: services built with purest.\n\npub mod services;\n", args.name),
    )?;
    write(
        &root.join("src/main.rs"),
        &format!(
            r#"//! Runs the services; which ones, on which bridge and with which HTTP address comes from
//! `purest.toml` and `PUREST_*` variables.

use std::process::ExitCode;

use purest::prelude::*;

#[tokio::main]
async fn main() -> ExitCode {{
    purest::logging::init();
    let mut app = App::new();
    for service in {crate_name}::services::all() {{
        app = app.service(service);
    }}
    match app.run().await {{
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {{
            eprintln!("error: {{error}}");
            ExitCode::from(2)
        }}
    }}
}}
"#
        ),
    )?;
    write(
        &root.join("src/services/mod.rs"),
        &format!(
            "//! The services of this app. `purest add service NAME` adds one here.\n\nuse purest::prelude::*;\n\npub mod greeter;\n{MODULES}\n\n/// Every service of the app.\npub fn all() -> Vec<Service> {{\n    vec![\n        greeter::service(),\n        {SERVICES}\n    ]\n}}\n"
        ),
    )?;
    write(&root.join("src/services/greeter.rs"), GREETER)?;
    println!(
        "created {}: `cd {} && cargo test` runs its tests, `cargo run` serves it (POST /api/v1/greetings on 127.0.0.1:8080)",
        root.display(),
        root.display()
    );
    Ok(())
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

Services built with [purest](https://github.com/purest-rs/purest).

```sh
cargo test        # the tests of the greeter service
cargo run         # serves it; then:
curl -s -X POST localhost:8080/api/v1/greetings -H 'content-type: application/json' -d '{{"name": "Ann"}}'
```

Grow it with `purest add service NAME`, `purest add command NAME --service SERVICE` and
`purest add subscription NAME --service SERVICE --event EVENT`. `purest openapi`,
`purest asyncapi` and `purest graph` describe it.
"#
    )
}

const GREETER: &str = r#"//! Service `greeter`, version 1: greets people, and logs every greeting.

use purest::prelude::*;

/// Input of `greet`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
pub struct Greet {
    /// Who to greet, 1–100 characters.
    #[garde(length(chars, min = 1, max = 100))]
    pub name: String,
}

/// Output of `greet`, and the `greeted` event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct Greeting {
    /// The greeting.
    pub text: String,
}

/// Command `greet`: its successful answers are also `greeted` events.
async fn greet(Payload(input): Payload<Greet>) -> Result<Greeting, HandledError> {
    Ok(Greeting {
        text: format!("Hello, {}!", input.name),
    })
}

/// Subscription `logGreeting`: runs for every `greeted` event.
async fn log_greeting(Payload(greeting): Payload<Greeting>) -> Result<(), HandledError> {
    println!("greeted: {}", greeting.text);
    Ok(())
}

/// Service `greeter`, version 1.
pub fn service() -> Service {
    Service::new("greeter", "1")
        .description("Greets people")
        .command(
            Command::new("greet", greet)
                .description("Greets someone by name")
                .success_event("greeted")
                .http(Method::POST, "greetings")
                .public(),
        )
        // purest:commands
        .subscription(Subscription::new("logGreeting", log_greeting).on_event("greeted"))
        // purest:subscriptions
}

#[cfg(test)]
mod tests {
    use super::*;
    use purest::testing::TestApp;

    #[tokio::test]
    async fn greet_answers_with_a_greeting() {
        let app = TestApp::new().service(service()).start().await;
        let greeting: Greeting = app.client().invoke("greeter/1/greet", Greet { name: "Ann".into() }).await.unwrap();
        assert_eq!(greeting.text, "Hello, Ann!");
        app.shutdown().await;
    }

    #[tokio::test]
    async fn greet_refuses_an_empty_name() {
        let app = TestApp::new().service(service()).start().await;
        let error = app.client().invoke::<Greeting>("greeter/1/greet", Greet { name: String::new() }).await.unwrap_err();
        assert_eq!(error.status, 400);
        app.shutdown().await;
    }

    #[tokio::test]
    async fn log_greeting_accepts_every_greeting() {
        let greeting = Greeting { text: "Hello, Bo!".into() };
        assert!(log_greeting(Payload(greeting)).await.is_ok());
    }
}
"#;

/// Inserts `line` (indented like the marker) before the marker line of `file`.
fn insert_before_marker(file: &Path, marker: &str, line: &str) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| CliError::Scaffold(format!("cannot read {}: {e}", file.display())))?;
    let Some(at) = text.find(marker) else {
        return Err(CliError::Scaffold(format!(
            "{} has no `{marker}` line; add it where new entries belong",
            file.display()
        )));
    };
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[line_start..at];
    let updated = format!("{}{indent}{line}\n{}", &text[..line_start], &text[line_start..]);
    write(file, &updated)
}

/// Inserts `code` before the first line starting with `anchor` (or at the end).
fn insert_code_before(file: &Path, anchor: &str, code: &str) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| CliError::Scaffold(format!("cannot read {}: {e}", file.display())))?;
    let at = text.find(anchor).unwrap_or(text.len());
    write(file, &format!("{}{code}\n{}", &text[..at], &text[at..]))
}

/// The services folder of a project `purest new` made, or an error saying what is missing.
fn services_dir(project: &Path) -> Result<PathBuf, CliError> {
    let dir = project.join("src/services");
    let registry = dir.join("mod.rs");
    let marked = std::fs::read_to_string(&registry).is_ok_and(|text| text.contains(SERVICES));
    let depends = std::fs::read_to_string(project.join("Cargo.toml")).is_ok_and(|text| text.contains("purest"));
    if marked && depends {
        Ok(dir)
    } else {
        Err(CliError::Scaffold(format!(
            "{} is not a purest project made by `purest new` (no src/services/mod.rs with `{SERVICES}`, or no purest dependency); \
             run `purest new NAME` first, or pass --project",
            project.display()
        )))
    }
}

/// `purest add …`.
pub fn add(args: &AddArgs) -> Result<(), CliError> {
    let dir = services_dir(&args.project)?;
    match &args.what {
        AddWhat::Service { name } => {
            check_name("service", name)?;
            let module = snake(name);
            let file = dir.join(format!("{module}.rs"));
            if file.exists() {
                return Err(CliError::Scaffold(format!("{} exists already", file.display())));
            }
            write(
                &file,
                &format!(
                    "//! Service `{name}`, version 1.\n\nuse purest::prelude::*;\n\n/// Command `ping`: answers `pong`.\nasync fn ping() -> Result<String, HandledError> {{\n    Ok(\"pong\".into())\n}}\n\n/// Service `{name}`, version 1.\npub fn service() -> Service {{\n    Service::new(\"{name}\", \"1\")\n        .command(Command::new(\"ping\", ping))\n        {COMMANDS}\n        {SUBSCRIPTIONS}\n}}\n"
                ),
            )?;
            let registry = dir.join("mod.rs");
            insert_before_marker(&registry, MODULES, &format!("pub mod {module};"))?;
            insert_before_marker(&registry, SERVICES, &format!("{module}::service(),"))?;
            println!("added service {name} in {} and registered it", file.display());
        }
        AddWhat::Command { name, service } => {
            check_name("command", name)?;
            let file = service_file(&dir, service)?;
            let function = snake(name);
            insert_code_before(
                &file,
                "/// Service `",
                &format!(
                    "/// Command `{name}`.\nasync fn {function}(Payload(input): Payload<purest::serde_json::Value>) -> Result<purest::serde_json::Value, HandledError> {{\n    Ok(input)\n}}\n"
                ),
            )?;
            insert_before_marker(&file, COMMANDS, &format!(".command(Command::new(\"{name}\", {function}))"))?;
            println!("added command {name} to {} and registered it", file.display());
        }
        AddWhat::Subscription { name, service, event } => {
            check_name("subscription", name)?;
            let file = service_file(&dir, service)?;
            let function = snake(name);
            insert_code_before(
                &file,
                "/// Service `",
                &format!(
                    "/// Subscription `{name}`: runs for every `{event}` event.\nasync fn {function}(Payload(_event): Payload<purest::serde_json::Value>) -> Result<(), HandledError> {{\n    Ok(())\n}}\n"
                ),
            )?;
            insert_before_marker(
                &file,
                SUBSCRIPTIONS,
                &format!(".subscription(Subscription::new(\"{name}\", {function}).on_event({event:?}))"),
            )?;
            println!("added subscription {name} to {} and registered it", file.display());
        }
    }
    Ok(())
}

fn service_file(dir: &Path, service: &str) -> Result<PathBuf, CliError> {
    let file = dir.join(format!("{}.rs", snake(service)));
    if file.is_file() {
        Ok(file)
    } else {
        Err(CliError::Scaffold(format!(
            "no service module {} (the services are the files in {})",
            file.display(),
            dir.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        assert_eq!(snake("createInvoice"), "create_invoice");
        assert_eq!(snake("my-app"), "my_app");
        assert!(check_name("service", "billing-2").is_ok());
        assert!(check_name("service", "2fast").is_err());
        assert!(check_name("service", "a b").is_err());
    }
}
