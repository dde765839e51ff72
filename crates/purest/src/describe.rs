//! What an app is made of, as JSON — the protocol between an app's binary and the `purest` CLI.
//!
//! An app binary started with `PUREST_DESCRIBE=1` prints its description on stdout instead of
//! running: [`crate::App::run`] prints it and returns before connecting anything (a `main` that
//! starts the app itself asks [`crate::App::describe_if_asked`] first), so `purest openapi`, `purest asyncapi` and `purest graph` work on any purest app without a
//! running broker. An environment variable rather than a flag keeps the app's own arguments
//! its own.
//!
//! ```
//! use purest::prelude::*;
//! async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
//! let services = [Service::new("health", "1").command(Command::new("ping", ping).may_emit("pinged"))];
//! let description = purest::describe::describe(&services);
//! assert_eq!(description["services"][0]["commands"][0]["name"], "ping");
//! assert_eq!(description["services"][0]["commands"][0]["mayEmit"][0], "pinged");
//! ```

use purest_core::handler::TypeSchema;
use purest_core::{EventFilter, Links, Service};
use serde_json::{Value, json};

/// The variable that makes an app describe itself.
pub const DESCRIBE_VAR: &str = "PUREST_DESCRIBE";
/// The version of the description's shape.
pub const FORMAT_VERSION: u64 = 1;

/// The description of `services`: every command and subscription with its schemas, routes,
/// events and declared links, and (with the `http` feature) the OpenAPI document.
pub fn describe(services: &[Service]) -> Value {
    describe_with(services, &[])
}

/// [`describe`], with the OpenAPI document naming these security schemes.
fn describe_with(services: &[Service], security_schemes: &[(String, Value)]) -> Value {
    let described: Vec<Value> = services.iter().map(service).collect();
    #[cfg_attr(not(feature = "http"), allow(unused_mut))]
    let mut description = json!({"purestDescribe": FORMAT_VERSION, "services": described});
    #[cfg(feature = "http")]
    {
        description["openapi"] = purest_http::openapi::document(services, &Default::default(), security_schemes);
    }
    #[cfg(not(feature = "http"))]
    let _ = security_schemes;
    description
}

/// With `PUREST_DESCRIBE` set: prints the description of `services` and returns `true` (the
/// caller then stops); else `false`.
pub(crate) fn answer_if_asked(services: &[Service]) -> bool {
    if std::env::var_os(DESCRIBE_VAR).is_none() {
        return false;
    }
    #[cfg(feature = "http")]
    let schemes = crate::config::Settings::load()
        .ok()
        .and_then(|settings| {
            purest_http::config::HttpSettings::from_section(services, &settings.http)
                .ok()
                .flatten()
        })
        .map(|http| http.security_schemes())
        .unwrap_or_default();
    #[cfg(not(feature = "http"))]
    let schemes = Vec::new();
    let description = describe_with(services, &schemes);
    println!(
        "{}",
        serde_json::to_string_pretty(&description).unwrap_or_else(|_| description.to_string())
    );
    true
}

fn service(service: &Service) -> Value {
    let commands: Vec<Value> = service
        .commands()
        .iter()
        .map(|command| {
            let signature = command.signature();
            json!({
                "name": command.name(),
                "description": command.get_description(),
                "payload": schema(signature.payload.as_ref()),
                "params": schema(signature.params.as_ref()),
                "output": if signature.output_is_unit { Value::Null } else { schema(signature.output.as_ref()) },
                "successEvent": command.get_success_event(),
                "http": command.get_http().map(|route| json!({"method": route.method.as_str(), "path": route.path, "public": route.public})),
                "invokes": links(command.links()).0,
                "mayEmit": links(command.links()).1,
            })
        })
        .collect();
    let subscriptions: Vec<Value> = service
        .subscriptions()
        .iter()
        .map(|subscription| {
            json!({
                "name": subscription.name(),
                "description": subscription.get_description(),
                "filter": filter(subscription.filter()),
                "payload": schema(subscription.signature().payload.as_ref()),
                "durable": subscription.is_durable(),
                "deadLetter": subscription.is_durable().then(|| subscription.get_retry().dead_letter.to_string()),
                "emits": subscription.get_emits(),
                "invokes": links(subscription.links()).0,
                "mayEmit": links(subscription.links()).1,
            })
        })
        .collect();
    json!({
        "name": service.name(),
        "version": service.version(),
        "description": service.get_description(),
        "commands": commands,
        "subscriptions": subscriptions,
    })
}

fn schema(schema: Option<&TypeSchema>) -> Value {
    schema.map_or(Value::Null, |s| s.json.clone())
}

fn links(links: &Links) -> (Vec<&str>, Vec<&str>) {
    (
        links.invokes.iter().map(|n| &**n).collect(),
        links.may_emit.iter().map(|n| &**n).collect(),
    )
}

fn filter(filter: &EventFilter) -> Value {
    json!({
        "eventName": filter.event_name.as_deref(),
        "senderService": filter.sender_service.as_deref(),
        "senderVersion": filter.sender_version.as_deref(),
        "senderTarget": filter.sender_target.as_deref(),
        "messageType": filter.message_type.as_deref(),
    })
}
