//! Small helpers over the JSON Schemas schemars produces.

use serde_json::Value;

/// Follows a local `$ref` (`#/$defs/Name` or `#/definitions/Name`) of `schema` inside `root`;
/// anything else is returned as it is.
pub(crate) fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut current = schema;
    // A bounded walk: a chain of refs longer than this is a cycle.
    for _ in 0..16 {
        let Some(pointer) = current.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) else {
            return current;
        };
        match root.pointer(pointer) {
            Some(target) => current = target,
            None => return current,
        }
    }
    current
}
