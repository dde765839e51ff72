//! The OpenAPI 3.1 description of the HTTP commands, built from the services' metadata and the
//! schemas schemars derives (JSON Schema 2020-12, which OpenAPI 3.1 takes as it is).

use std::collections::BTreeMap;

use purest_core::{HttpRoute, Service};
use serde_json::{Map, Value, json};

use crate::problem::{PROBLEM_JSON, problem_schema};
use crate::schema_util::resolve;

/// Title and version of the described API.
#[derive(Debug, Clone)]
pub struct ApiInfo {
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
}

impl Default for ApiInfo {
    fn default() -> Self {
        Self {
            title: "purest API".into(),
            version: "1".into(),
        }
    }
}

/// The OpenAPI 3.1 document of every command of `services` served over HTTP; `security_schemes`
/// are the accepted credentials (name, scheme object), any one of which authenticates.
///
/// ```
/// use purest_core::prelude::*;
/// async fn ping() -> Result<String, HandledError> { Ok("pong".into()) }
/// let services = [Service::new("health", "1").command(Command::new("ping", ping).http(Method::GET, "ping").public())];
/// let doc = purest_http::openapi::document(&services, &Default::default(), &[]);
/// assert_eq!(doc["openapi"], "3.1.0");
/// assert_eq!(doc["paths"]["/api/v1/ping"]["get"]["operationId"], "health_v1_ping");
/// ```
pub fn document(services: &[Service], info: &ApiInfo, security_schemes: &[(String, Value)]) -> Value {
    let mut components = Components::default();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    for service in services {
        for command in service.commands() {
            let Some(route) = command.get_http() else { continue };
            let description = service.get_description();
            let tag = tags.entry(service.name().to_owned()).or_default();
            if tag.is_empty() {
                description.clone_into(tag);
            }
            let operation = operation(service, command, route, &mut components, !security_schemes.is_empty());
            paths
                .entry(format!("/api/v{}/{}", service.version(), route.path))
                .or_default()
                .insert(route.method.as_str().to_ascii_lowercase(), operation);
        }
    }
    let mut schemas = components.schemas;
    schemas.insert("Problem".into(), problem_schema());
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": info.title, "version": info.version},
        "tags": tags.into_iter().map(|(name, description)| {
            if description.is_empty() { json!({"name": name}) } else { json!({"name": name, "description": description}) }
        }).collect::<Vec<_>>(),
        "paths": paths,
        "components": {"schemas": schemas},
    });
    if !security_schemes.is_empty() {
        let schemes: Map<String, Value> = security_schemes.iter().cloned().collect();
        doc["components"]["securitySchemes"] = Value::Object(schemes);
        doc["security"] = security_schemes.iter().map(|(name, _)| json!({ name: [] })).collect();
    }
    doc
}

fn operation(service: &Service, command: &purest_core::Command, route: &HttpRoute, components: &mut Components, secured: bool) -> Value {
    let signature = command.signature();
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(format!("{}_v{}_{}", service.name(), service.version(), command.name())),
    );
    let description = command.get_description();
    let summary = description.lines().next().filter(|line| !line.is_empty()).unwrap_or(command.name());
    op.insert("summary".into(), json!(summary));
    if !description.is_empty() {
        op.insert("description".into(), json!(description));
    }
    op.insert("tags".into(), json!([service.name()]));

    let mut parameters = Vec::new();
    let params_schema = signature.params.as_ref().map(|p| components.adopt(&p.json));
    let path_params: Vec<&str> = route.path_params().collect();
    let (properties, required) = match &params_schema {
        Some((root, schema)) => object_properties(root, schema),
        None => (Map::new(), Vec::new()),
    };
    for name in &path_params {
        let schema = properties.get(*name).cloned().unwrap_or_else(|| json!({"type": "string"}));
        parameters.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
    }
    for (name, schema) in &properties {
        if path_params.contains(&name.as_str()) {
            continue;
        }
        parameters.push(json!({"name": name, "in": "query", "required": required.contains(name), "schema": schema}));
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }

    let has_body = route.method.has_body() && signature.payload.is_some();
    if let Some(payload) = signature.payload.as_ref().filter(|_| has_body) {
        let (_, schema) = components.adopt(&payload.json);
        op.insert(
            "requestBody".into(),
            json!({"required": !accepts_null(&schema), "content": {"application/json": {"schema": schema}}}),
        );
    }

    let mut responses = Map::new();
    if signature.output_is_unit {
        responses.insert("204".into(), json!({"description": "done"}));
    } else {
        let schema = signature
            .output
            .as_ref()
            .map_or_else(|| json!({}), |output| components.adopt(&output.json).1);
        responses.insert(
            "200".into(),
            json!({"description": "the command's result", "content": {"application/json": {"schema": schema}}}),
        );
    }
    let mut errors: Vec<(u16, String)> = vec![(400, "the input is malformed or fails its schema".into())];
    if !route.public {
        errors.push((401, "credentials are missing or refused".into()));
        errors.push((403, "the caller may not do this".into()));
    }
    if route.method.has_body() {
        errors.push((413, "the body is larger than the gateway accepts".into()));
        errors.push((415, "the body is not JSON".into()));
    }
    errors.extend(route.errors.iter().cloned());
    errors.push((500, "an internal error (details are in the logs, under the trace id)".into()));
    errors.push((503, "no running instance serves the command".into()));
    errors.push((504, "the command did not answer in time".into()));
    for (status, meaning) in errors {
        let key = status.to_string();
        if !responses.contains_key(&key) {
            let response = match status {
                202 => accepted_response(&meaning),
                _ => problem_response(&meaning),
            };
            responses.insert(key, response);
        }
    }
    responses.insert("default".into(), problem_response("any other error"));
    op.insert("responses".into(), Value::Object(responses));
    if route.public && secured {
        op.insert("security".into(), json!([]));
    }
    Value::Object(op)
}

/// A resolver's `202 Accepted` (declared with `.http_error(202, meaning)`): where the result will be.
fn accepted_response(description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"Location": {"description": "where the result will be", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["status", "detail", "location"],
            "properties": {
                "status": {"type": "integer", "const": 202},
                "detail": {"type": "string"},
                "location": {"type": "string"}
            }
        }}}
    })
}

fn problem_response(description: &str) -> Value {
    json!({"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// The top-level properties of an object schema (refs kept, so they point into components)
/// and its required names.
fn object_properties(root: &Value, schema: &Value) -> (Map<String, Value>, Vec<String>) {
    let object = resolve(root, schema);
    let properties = object.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let required = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    (properties, required)
}

/// Whether `null` is a valid instance, judged from the schema's `type` (what schemars writes for
/// `Option<T>`).
fn accepts_null(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        _ => schema
            .get("anyOf")
            .and_then(Value::as_array)
            .is_some_and(|options| options.iter().any(accepts_null)),
    }
}

/// A document's shared `components.schemas` (OpenAPI 3.1 and AsyncAPI 3.0 both keep them there):
/// the `$defs` of every schema adopted, hoisted so that every use refers to one copy.
///
/// ```
/// use serde_json::json;
/// let mut components = purest_http::openapi::Components::default();
/// let schema = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
///     "properties": {"tag": {"$ref": "#/$defs/Tag"}}, "$defs": {"Tag": {"type": "string"}}});
/// let adopted = components.schema(&schema);
/// assert_eq!(adopted["properties"]["tag"]["$ref"], "#/components/schemas/Tag");
/// assert_eq!(components.into_schemas()["Tag"], json!({"type": "string"}));
/// ```
#[derive(Debug, Default)]
pub struct Components {
    schemas: Map<String, Value>,
}

impl Components {
    /// `schema` with its `$defs` moved into the components and its refs pointing there.
    pub fn schema(&mut self, schema: &Value) -> Value {
        self.adopt(schema).1
    }

    /// The collected `components.schemas`.
    pub fn into_schemas(self) -> Map<String, Value> {
        self.schemas
    }

    /// Moves `schema`'s `$defs` into the components (a clash of two different definitions of one
    /// name gets a numbered name) and returns (the components as a root for `$ref` lookups, the
    /// schema with its refs pointing there).
    fn adopt(&mut self, schema: &Value) -> (Value, Value) {
        let mut schema = schema.clone();
        let mut renames = BTreeMap::new();
        let defs = match schema.as_object_mut().and_then(|s| s.remove("$defs")) {
            Some(Value::Object(defs)) => defs,
            _ => Map::new(),
        };
        for (name, definition) in &defs {
            let mut probe = definition.clone();
            rewrite_refs(&mut probe, &BTreeMap::new());
            let mut chosen = name.clone();
            let mut n = 2;
            while self.schemas.get(&chosen).is_some_and(|existing| *existing != probe) {
                chosen = format!("{name}{n}");
                n += 1;
            }
            renames.insert(name.clone(), chosen);
        }
        for (name, mut definition) in defs {
            rewrite_refs(&mut definition, &renames);
            self.schemas.insert(renames[&name].clone(), definition);
        }
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
        }
        rewrite_refs(&mut schema, &renames);
        let root = json!({"components": {"schemas": self.schemas.clone()}});
        (root, schema)
    }
}

/// Points `#/$defs/Name` refs at `#/components/schemas/<renamed>`.
fn rewrite_refs(value: &mut Value, renames: &BTreeMap<String, String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("$ref")
                && let Some(name) = reference.strip_prefix("#/$defs/")
            {
                let target = renames.get(name).cloned().unwrap_or_else(|| name.to_owned());
                *reference = format!("#/components/schemas/{target}");
            }
            object.values_mut().for_each(|v| rewrite_refs(v, renames));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, renames)),
        _ => {}
    }
}
