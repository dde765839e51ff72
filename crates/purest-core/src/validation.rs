//! Validation with two paths that agree (docs/ARCHITECTURE.md §3): JSON from a wire is checked against the
//! type's compiled JSON Schema; a typed value handed over in-process is checked by its `garde`
//! rules — the same rules schemars writes into that schema — without any JSON round trip.

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;

use garde::i18n::{DefaultI18n, I18n as _};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::Body;
use crate::error::{BuildError, HandledError};

/// Marker: the type validates itself with `#[derive(garde::Validate)]`.
pub enum Garde {}
/// Marker: a type without value constraints (strings, numbers, booleans, JSON values, and
/// vectors, options and maps of them).
pub enum Unconstrained {}

/// Checks a typed value against the constraints its schema declares.
///
/// Implemented for every `garde::Validate` type (derive it on your payloads) and for plain types
/// without constraints. The marker `M` only lets both kinds coexist; it is always inferred.
///
/// ```
/// use purest_core::validation::{Garde, Validate};
/// #[derive(garde::Validate)]
/// struct NewUser {
///     #[garde(length(min = 1))]
///     name: String,
/// }
/// assert!(Validate::<Garde>::validate_value(&NewUser { name: "ann".into() }).is_ok());
/// let violations = Validate::<Garde>::validate_value(&NewUser { name: "".into() }).unwrap_err();
/// assert_eq!(violations[0].path, "/name");
/// ```
pub trait Validate<M> {
    /// `Ok` when the value satisfies every constraint; else each failing path with its reason.
    fn validate_value(&self) -> Result<(), Vec<Violation>>;
}

impl<T: garde::Validate> Validate<Garde> for T
where
    T::Context: Default,
{
    fn validate_value(&self) -> Result<(), Vec<Violation>> {
        garde::i18n::with_i18n(Wording, || garde::Validate::validate(self)).map_err(|report| {
            report
                .iter()
                .map(|(path, error)| Violation {
                    path: garde_path_to_pointer(path),
                    message: error.to_string(),
                })
                .collect()
        })
    }
}

/// One wording per rule on both paths: garde's, except where its text carries a detail that the
/// JSON Schema check cannot give (why an email or URL is invalid). [`wire_message`] words the
/// schema's verdicts the same way.
struct Wording;

impl garde::i18n::I18n for Wording {
    fn length_lower_than(&self, min: usize) -> Cow<'static, str> {
        DefaultI18n.length_lower_than(min)
    }
    fn length_greater_than(&self, max: usize) -> Cow<'static, str> {
        DefaultI18n.length_greater_than(max)
    }
    fn range_lower_than(&self, min: &dyn Display) -> Cow<'static, str> {
        DefaultI18n.range_lower_than(min)
    }
    fn range_greater_than(&self, max: &dyn Display) -> Cow<'static, str> {
        DefaultI18n.range_greater_than(max)
    }
    fn credit_card_invalid(&self, reason: garde::i18n::InvalidCreditCard) -> Cow<'static, str> {
        DefaultI18n.credit_card_invalid(reason)
    }
    fn pattern_no_match(&self, pattern: &dyn Display) -> Cow<'static, str> {
        DefaultI18n.pattern_no_match(pattern)
    }
    fn contains_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
        DefaultI18n.contains_missing(pattern)
    }
    fn url_invalid(&self, _reason: garde::i18n::InvalidUrl) -> Cow<'static, str> {
        Cow::Borrowed(NOT_A_URL)
    }
    fn prefix_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
        DefaultI18n.prefix_missing(pattern)
    }
    fn suffix_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
        DefaultI18n.suffix_missing(pattern)
    }
    fn phone_number_invalid(&self, reason: garde::i18n::InvalidPhoneNumber) -> Cow<'static, str> {
        DefaultI18n.phone_number_invalid(reason)
    }
    fn ip_invalid(&self, kind: garde::i18n::IpKind) -> Cow<'static, str> {
        DefaultI18n.ip_invalid(kind)
    }
    fn matches_field_mismatch(&self, field: &dyn Display) -> Cow<'static, str> {
        DefaultI18n.matches_field_mismatch(field)
    }
    fn email_invalid(&self, _reason: garde::i18n::InvalidEmail) -> Cow<'static, str> {
        Cow::Borrowed(NOT_AN_EMAIL)
    }
    fn ascii_invalid(&self) -> Cow<'static, str> {
        DefaultI18n.ascii_invalid()
    }
    fn alphanumeric_invalid(&self) -> Cow<'static, str> {
        DefaultI18n.alphanumeric_invalid()
    }
    fn required_not_set(&self) -> Cow<'static, str> {
        DefaultI18n.required_not_set()
    }
}

const NOT_AN_EMAIL: &str = "not a valid email address";
const NOT_A_URL: &str = "not a valid URL";

/// A JSON Schema verdict in the words garde uses for the same rule (see [`Wording`]); other
/// verdicts (wrong type, missing field, …) in the validator's own words.
fn wire_message(error: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let number = |limit: &Value| limit.to_string();
    match error.kind() {
        Kind::MinLength { limit } | Kind::MinItems { limit } => DefaultI18n.length_lower_than(*limit as usize).into_owned(),
        Kind::MaxLength { limit } | Kind::MaxItems { limit } => DefaultI18n.length_greater_than(*limit as usize).into_owned(),
        Kind::Minimum { limit } => DefaultI18n.range_lower_than(&number(limit)).into_owned(),
        Kind::Maximum { limit } => DefaultI18n.range_greater_than(&number(limit)).into_owned(),
        Kind::Pattern { pattern } => DefaultI18n.pattern_no_match(pattern).into_owned(),
        Kind::Format { format } => match format.as_str() {
            "email" | "idn-email" => NOT_AN_EMAIL.to_owned(),
            "uri" | "url" | "iri" => NOT_A_URL.to_owned(),
            "ipv4" => DefaultI18n.ip_invalid(garde::i18n::IpKind::V4).into_owned(),
            "ipv6" => DefaultI18n.ip_invalid(garde::i18n::IpKind::V6).into_owned(),
            _ => error.to_string(),
        },
        _ => error.to_string(),
    }
}

/// garde names paths `a.b[0]`; JSON Schema uses JSON pointers `/a/b/0`. Both paths report the
/// pointer so callers see one format.
fn garde_path_to_pointer(path: &garde::Path) -> String {
    let mut pointer = String::new();
    // `__iter` is garde's only structured view of a path (doc-hidden, stable within 0.23).
    for (_, component) in path.__iter().rev() {
        pointer.push('/');
        pointer.push_str(&component.replace('~', "~0").replace('/', "~1"));
    }
    pointer
}

macro_rules! unconstrained {
    ($($t:ty),*) => {$(
        impl Validate<Unconstrained> for $t {
            fn validate_value(&self) -> Result<(), Vec<Violation>> { Ok(()) }
        }
    )*};
}
unconstrained!(
    String, bool, char, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, Value
);

macro_rules! unconstrained_tuples {
    ($(($($t:ident),+)),*) => {$(
        impl<$($t: Validate<Unconstrained>),+> Validate<Unconstrained> for ($($t,)+) {
            fn validate_value(&self) -> Result<(), Vec<Violation>> { Ok(()) }
        }
    )*};
}
unconstrained_tuples!((A), (A, B), (A, B, C), (A, B, C, D));

impl<T: Validate<Unconstrained>> Validate<Unconstrained> for Vec<T> {
    fn validate_value(&self) -> Result<(), Vec<Violation>> {
        Ok(())
    }
}
impl<T: Validate<Unconstrained>> Validate<Unconstrained> for Option<T> {
    fn validate_value(&self) -> Result<(), Vec<Violation>> {
        Ok(())
    }
}
impl<V: Validate<Unconstrained>> Validate<Unconstrained> for std::collections::HashMap<String, V> {
    fn validate_value(&self) -> Result<(), Vec<Violation>> {
        Ok(())
    }
}
impl<V: Validate<Unconstrained>> Validate<Unconstrained> for std::collections::BTreeMap<String, V> {
    fn validate_value(&self) -> Result<(), Vec<Violation>> {
        Ok(())
    }
}

/// One failing JSON path and why it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer to the failing value (`""` for the whole document, `/email`, `/items/0`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// A type's JSON Schema, compiled once when its service is built.
#[derive(Clone)]
pub struct Schema {
    json: Arc<Value>,
    compiled: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Schema").field(&self.json).finish()
    }
}

impl Schema {
    /// The JSON Schema (draft 2020-12) of `T`.
    pub fn json_of<T: JsonSchema>() -> Value {
        let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        generator.into_root_schema_for::<T>().to_value()
    }

    /// Compiles a JSON Schema; `what` names it in the error.
    pub fn compile(json: Value, what: &str) -> Result<Self, BuildError> {
        let compiled = jsonschema::options()
            .should_validate_formats(true)
            .build(&json)
            .map_err(|e| BuildError::Schema {
                what: what.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            json: Arc::new(json),
            compiled: Arc::new(compiled),
        })
    }

    /// The schema as JSON.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Checks a JSON value; lists every violation.
    pub fn check(&self, value: &Value) -> Result<(), Vec<Violation>> {
        if self.compiled.is_valid(value) {
            return Ok(());
        }
        Err(self
            .compiled
            .iter_errors(value)
            .map(|e| Violation {
                path: e.instance_path().as_str().to_owned(),
                message: wire_message(&e),
            })
            .collect())
    }
}

/// The 400 a caller gets when `what` (payload, parameters) fails validation; `data` lists every
/// failing path with its reason.
pub fn invalid(what: &str, mut violations: Vec<Violation>) -> HandledError {
    // Both paths list violations in path order, so callers see the same error either way.
    violations.sort_by(|a, b| a.path.cmp(&b.path));
    let summary = violations
        .iter()
        .map(|v| format!("{} {}", if v.path.is_empty() { "/" } else { &v.path }, v.message))
        .collect::<Vec<_>>()
        .join("; ");
    HandledError::bad_request(format!("invalid {what}: {summary}")).with_data(serde_json::json!({ "violations": violations }))
}

/// Turns a body into a `T`, validating it on the path that fits:
///
/// - a typed `T` (in-process) by its garde rules;
/// - JSON text from a wire deserialized straight into `T`, then checked by its garde rules — the
///   verdicts the schema gives (the agreement tests hold both paths to that). Text that does not
///   deserialize takes the schema path below, which names every failing path, so bad input gets
///   the same 400 as before this shortcut existed;
/// - anything else (a JSON value, a value of another type) by the compiled schema, then
///   deserialized.
///
/// `schema == None` means validation is switched off.
pub fn take_validated<T, M>(body: Body, schema: Option<&Schema>, what: &str) -> Result<T, HandledError>
where
    T: Validate<M> + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let checked = |value: T| -> Result<T, HandledError> {
        if schema.is_some() {
            value.validate_value().map_err(|violations| invalid(what, violations))?;
        }
        Ok(value)
    };
    if body.is::<T>() {
        let value = body
            .into_typed::<T>()
            .map_err(|e| HandledError::bad_request(format!("invalid {what}: {e}")))?;
        return checked(value);
    }
    if let Body::Raw(raw) = &body
        && let Ok(value) = serde_json::from_slice::<T>(raw.text())
    {
        return checked(value);
    }
    let serialized;
    let json = match body.as_json() {
        Some(json) => json,
        None => {
            serialized = body
                .to_value()
                .map_err(|e| HandledError::bad_request(format!("invalid {what}: {e}")))?;
            &serialized
        }
    };
    if let Some(schema) = schema {
        schema.check(json).map_err(|violations| invalid(what, violations))?;
    }
    T::deserialize(json).map_err(|e| HandledError::bad_request(format!("invalid {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule kind the examples, the README and the templates use: `length` (bytes and
    /// chars), `email`, `range`, `dive`, `skip`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, garde::Validate)]
    struct NewUser {
        #[garde(length(min = 1, max = 20))]
        name: String,
        #[garde(email)]
        email: String,
        #[garde(range(min = 0, max = 150))]
        age: u8,
        #[garde(dive)]
        tags: Vec<Tag>,
        #[garde(length(chars, min = 2, max = 5))]
        nick: String,
        #[garde(skip)]
        note: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, garde::Validate)]
    struct Tag {
        #[garde(length(min = 2))]
        label: String,
    }

    fn schema() -> Schema {
        Schema::compile(Schema::json_of::<NewUser>(), "NewUser").unwrap()
    }

    fn user(name: &str, email: &str, age: u8, tags: &[&str]) -> NewUser {
        NewUser {
            name: name.into(),
            email: email.into(),
            age,
            tags: tags.iter().map(|t| Tag { label: (*t).into() }).collect(),
            nick: "ann".into(),
            note: String::new(),
        }
    }

    fn nick(nick: &str) -> NewUser {
        NewUser {
            nick: nick.into(),
            ..user("ann", "ann@example.com", 30, &[])
        }
    }

    /// All three paths must reach the same verdict, and report the same failing paths with the
    /// same messages: a typed value (in-process), JSON text from a wire (deserialized, then its
    /// garde rules), and a JSON value (the compiled schema).
    #[test]
    fn typed_and_json_paths_agree() {
        let schema = schema();
        let cases = [
            user("ann", "ann@example.com", 30, &["ok"]),
            user("", "ann@example.com", 30, &[]),
            user("ann", "not-an-email", 30, &[]),
            user("ann", "ann@", 30, &[]),
            user("a-name-that-is-far-too-long", "ann@example.com", 30, &[]),
            user("exactly-twenty-chars", "ann@example.com", 0, &[]),
            user("ann", "ann@example.com", 150, &[]),
            user("ann", "ann@example.com", 151, &[]),
            user("ann", "ann@example.com", 30, &["ok", "x"]),
            user("", "nope", 200, &["y"]),
            user("é", "ann@example.com", 30, &["éé"]),
            nick("a"),
            nick("ab"),
            nick("abcde"),
            nick("abcdef"),
            // Characters, not bytes: 5 two-byte characters pass, 6 do not, 1 four-byte one fails.
            nick("ééééé"),
            nick("éééééé"),
            nick("😀"),
            NewUser {
                note: "anything goes: skipped".into(),
                ..nick("")
            },
        ];
        for case in cases {
            let typed = take_validated::<NewUser, _>(Body::typed(case.clone()), Some(&schema), "payload");
            let text = Body::raw(bytes::Bytes::from(serde_json::to_vec(&case).unwrap()));
            let text = take_validated::<NewUser, _>(text, Some(&schema), "payload");
            let wire = take_validated::<NewUser, _>(Body::json(serde_json::to_value(&case).unwrap()), Some(&schema), "payload");
            assert_eq!(
                typed.is_ok(),
                wire.is_ok(),
                "verdicts differ for {case:?}: typed {typed:?}, schema {wire:?}"
            );
            assert_eq!(text.as_ref().ok(), typed.as_ref().ok(), "{case:?}");
            assert_eq!(
                text.as_ref().err().map(|e| (&e.message, &e.data)),
                typed.as_ref().err().map(|e| (&e.message, &e.data)),
                "{case:?}"
            );
            if let (Err(typed), Err(wire)) = (typed, wire) {
                // One wording for one rule: the same paths with the same messages.
                let violations = |e: &HandledError| {
                    let mut violations: Vec<(String, String)> = e.data.as_ref().unwrap()["violations"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| (v["path"].as_str().unwrap().to_owned(), v["message"].as_str().unwrap().to_owned()))
                        .collect();
                    violations.sort();
                    violations
                };
                assert_eq!(violations(&typed), violations(&wire), "violations differ for {case:?}");
                assert_eq!(typed.message, wire.message);
                assert_eq!(typed.status, 400);
            }
        }
    }

    /// Wire text that does not fit the type gets the schema's answer, which names every failing
    /// path — the same 400 a JSON value gets.
    #[test]
    fn wire_text_of_the_wrong_shape_gets_the_schemas_answer() {
        for json in [
            serde_json::json!({"name": 5}),
            serde_json::json!({"name": "", "email": "x", "age": 3, "tags": [], "nick": "a", "note": ""}),
            serde_json::json!({"name": "ann", "email": "ann@example.com", "age": 300, "tags": [{"label": 1}], "nick": "ann", "note": ""}),
            serde_json::json!([1, 2]),
            serde_json::json!(null),
        ] {
            let text = Body::raw(bytes::Bytes::from(serde_json::to_vec(&json).unwrap()));
            let text = take_validated::<NewUser, _>(text, Some(&schema()), "payload").unwrap_err();
            let value = take_validated::<NewUser, _>(Body::json(json.clone()), Some(&schema()), "payload").unwrap_err();
            assert_eq!(
                (text.status, &text.message, &text.data),
                (value.status, &value.message, &value.data),
                "{json}"
            );
        }
    }

    #[test]
    fn schema_failure_lists_each_path() {
        let err = take_validated::<NewUser, _>(
            Body::json(serde_json::json!({"name": "", "email": "x", "age": 3, "tags": []})),
            Some(&schema()),
            "payload",
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
        let violations: Vec<Violation> = serde_json::from_value(err.data.unwrap()["violations"].clone()).unwrap();
        let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"/name") && paths.contains(&"/email"), "{violations:?}");
    }

    #[test]
    fn wrong_shape_and_missing_fields_are_400() {
        let err = take_validated::<NewUser, _>(Body::json(serde_json::json!({"name": 5})), Some(&schema()), "payload").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("/name"), "{err}");
        assert!(err.message.contains("required"), "{err}");
    }

    #[test]
    fn switched_off_validation_lets_values_through() {
        let value = take_validated::<NewUser, _>(Body::typed(user("", "x", 1, &[])), None, "payload").unwrap();
        assert_eq!(value.name, "");
    }

    #[test]
    fn plain_types_validate_through_their_schema() {
        let schema = Schema::compile(Schema::json_of::<String>(), "String").unwrap();
        assert_eq!(
            take_validated::<String, _>(Body::typed("x".to_owned()), Some(&schema), "payload").unwrap(),
            "x"
        );
        assert_eq!(
            take_validated::<String, _>(Body::json(serde_json::json!(3)), Some(&schema), "payload")
                .unwrap_err()
                .status,
            400
        );
    }
}
