//! The `purest` binary as a user runs it: scaffolding, its refusals, and the exports from an
//! app's description.

use std::path::Path;
use std::process::{Command as Process, Output};

use purest::prelude::*;
use serde_json::Value;

fn purest(dir: &Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_purest"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run purest")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn facade_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../purest")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn new_without_flags_depends_on_the_checkout_the_cli_was_built_from_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let created = purest(dir.path(), &["new", "hello"]);
    assert!(created.status.success(), "{:?}", text(&created));
    let manifest = std::fs::read_to_string(dir.path().join("hello/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("purest = {{ path = {:?} }}", facade_path())),
        "{manifest}"
    );
    assert!(
        text(&created).1.contains("the checkout this purest CLI was built from"),
        "{:?}",
        text(&created)
    );

    let published = purest(dir.path(), &["new", "later", "--purest-version", "0.2.0"]);
    assert!(published.status.success(), "{:?}", text(&published));
    let manifest = std::fs::read_to_string(dir.path().join("later/Cargo.toml")).unwrap();
    assert!(manifest.contains("purest = \"0.2.0\""), "{manifest}");
}

#[test]
fn new_scaffolds_a_project_and_add_registers_code() {
    let dir = tempfile::tempdir().unwrap();
    let created = purest(dir.path(), &["new", "demo-app", "--purest-path", &facade_path()]);
    assert!(created.status.success(), "{:?}", text(&created));
    let root = dir.path().join("demo-app");
    for file in [
        "Cargo.toml",
        ".gitignore",
        "README.md",
        "src/main.rs",
        "src/lib.rs",
        "src/services/mod.rs",
        "src/services/greeter.rs",
    ] {
        assert!(root.join(file).is_file(), "{file}");
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]") && manifest.contains(&facade_path()), "{manifest}");
    assert!(
        std::fs::read_to_string(root.join("src/main.rs"))
            .unwrap()
            .contains("demo_app::services::all()")
    );

    let again = purest(dir.path(), &["new", "demo-app"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).1.contains("is not empty; choose another name, or pass --force"),
        "{:?}",
        text(&again)
    );
    assert!(
        purest(dir.path(), &["new", "demo-app", "--force", "--purest-path", &facade_path()])
            .status
            .success()
    );

    for args in [
        &["add", "service", "billing"][..],
        &["add", "command", "createInvoice", "--service", "billing"],
        &[
            "add",
            "subscription",
            "sendInvoice",
            "--service",
            "billing",
            "--event",
            "invoiceCreated",
        ],
    ] {
        let added = purest(&root, args);
        assert!(added.status.success(), "{args:?}: {:?}", text(&added));
    }
    let registry = std::fs::read_to_string(root.join("src/services/mod.rs")).unwrap();
    assert!(
        registry.contains("pub mod billing;\n// purest:modules") && registry.contains("billing::service(),\n        // purest:services"),
        "{registry}"
    );
    let billing = std::fs::read_to_string(root.join("src/services/billing.rs")).unwrap();
    assert!(
        billing.contains("async fn create_invoice(") && billing.contains(".command(Command::new(\"createInvoice\", create_invoice))"),
        "{billing}"
    );
    assert!(
        billing.contains(".subscription(Subscription::new(\"sendInvoice\", send_invoice).on_event(\"invoiceCreated\"))"),
        "{billing}"
    );

    let clash = purest(&root, &["add", "service", "billing"]);
    assert_eq!(clash.status.code(), Some(2));
    let bad_name = purest(&root, &["add", "command", "2fast", "--service", "billing"]);
    assert!(text(&bad_name).1.contains("start with a letter"), "{:?}", text(&bad_name));
}

#[test]
fn add_outside_a_project_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let refused = purest(dir.path(), &["add", "service", "billing"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).1.contains("is not a purest project made by `purest new`"),
        "{:?}",
        text(&refused)
    );
}

async fn register(Payload(name): Payload<String>) -> Result<String, HandledError> {
    Ok(name)
}

async fn welcome(Payload(_name): Payload<String>) -> Result<(), HandledError> {
    Ok(())
}

/// A saved description of two services, as `PUREST_DESCRIBE=1 app > file` writes it.
fn description_file(dir: &Path) -> std::path::PathBuf {
    let services = [
        Service::new("user", "1").command(
            Command::new("register", register)
                .success_event("userRegistered")
                .invokes("audit/1/record")
                .http(Method::POST, "users")
                .public(),
        ),
        Service::new("mail", "1").subscription(Subscription::new("welcome", welcome).on_event("userRegistered").durable()),
    ];
    let file = dir.join("app.json");
    std::fs::write(&file, purest::describe::describe(&services).to_string()).unwrap();
    file
}

#[test]
fn graph_asyncapi_and_openapi_come_from_the_description() {
    let dir = tempfile::tempdir().unwrap();
    let file = description_file(dir.path());
    let file = file.to_str().unwrap();

    let (mermaid, _) = text(&purest(dir.path(), &["graph", "--description", file]));
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
    assert!(mermaid.contains("user_v1_register -->|success| event_userRegistered"), "{mermaid}");
    assert!(mermaid.contains("event_userRegistered --> mail_v1_welcome"), "{mermaid}");
    assert!(mermaid.contains("user_v1_register -.->|invokes| audit_1_record"), "{mermaid}");
    let (dot, _) = text(&purest(dir.path(), &["graph", "--description", file, "--format", "dot"]));
    assert!(
        dot.starts_with("digraph purest {") && dot.contains("event_userRegistered -> mail_v1_welcome;"),
        "{dot}"
    );

    let (asyncapi, _) = text(&purest(dir.path(), &["asyncapi", "--description", file]));
    let asyncapi: Value = serde_json::from_str(&asyncapi).unwrap();
    assert_eq!(asyncapi["asyncapi"], "3.0.0");
    assert_eq!(asyncapi["channels"]["event_userRegistered"]["address"], "userRegistered");
    assert_eq!(asyncapi["operations"]["mail_v1_welcome"]["action"], "receive");
    assert_eq!(
        asyncapi["operations"]["user_v1_register"]["reply"]["channel"]["$ref"],
        "#/channels/user_v1_register_reply"
    );
    assert_eq!(
        asyncapi["components"]["messages"]["event_userRegistered"]["payload"]["type"],
        "string"
    );

    let (openapi, _) = text(&purest(dir.path(), &["openapi", "--description", file]));
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    assert_eq!(openapi["paths"]["/api/v1/users"]["post"]["operationId"], "user_v1_register");

    let missing = purest(dir.path(), &["graph", "--exe", "/nonexistent/app"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing).1.contains("cannot describe the app: cannot run /nonexistent/app"),
        "{:?}",
        text(&missing)
    );
}
