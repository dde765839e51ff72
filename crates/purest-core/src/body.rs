//! The payload of a message: JSON text as it came off a wire (kept as bytes until something reads
//! it), a JSON value (from a hook), or a typed Rust value passed in-process. Typed values travel as
//! `Arc<dyn Any>`: a receiver expecting the same type takes it without any serialization; only a
//! bridge that needs bytes, or a receiver of another type, pays for serde. Wire text is
//! deserialized straight into the type a handler asks for, never through a [`Value`].

use std::any::Any;
use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};

use bytes::Bytes;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A value that can travel in-process as itself and still be serialized when a bridge needs bytes.
///
/// Implemented for every `Serialize + Send + Sync + 'static` type; users never implement it.
pub trait DynValue: Any + Send + Sync + erased_serde::Serialize {
    /// The Rust type name, for error messages.
    fn type_name(&self) -> &'static str;
}

impl<T: Serialize + Send + Sync + 'static> DynValue for T {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

erased_serde::serialize_trait_object!(DynValue);

/// JSON text from a wire, checked to be one well-formed JSON value when its envelope was decoded.
/// It is read only when asked: straight into a type ([`Body::into_typed`]), or once into a
/// [`Value`] ([`RawJson::value`]) for code that looks at it as JSON.
pub struct RawJson {
    text: Bytes,
    value: OnceLock<Option<Value>>,
}

impl RawJson {
    /// The JSON text (a slice of the message's buffer: no copy).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The text as a [`Value`], parsed on first use and kept. `None` when it is not JSON, which
    /// only a body made by hand with [`Body::raw`] can be (decoders check the text).
    pub fn value(&self) -> Option<&Value> {
        self.value.get_or_init(|| serde_json::from_slice(&self.text).ok()).as_ref()
    }
}

/// The payload (or parameters) of a message.
#[derive(Clone)]
pub enum Body {
    /// JSON text as it came off a wire, not yet parsed.
    Raw(Arc<RawJson>),
    /// A JSON value (produced by a hook, or built by hand).
    Json(Arc<Value>),
    /// A Rust value handed over in-process.
    Typed(Arc<dyn DynValue>),
    /// `{}`, the parameters of most commands: no allocation, no reference count to touch.
    EmptyObject,
}

static EMPTY_OBJECT: LazyLock<Value> = LazyLock::new(|| Value::Object(Default::default()));

impl Body {
    /// Wraps a typed value.
    pub fn typed<T: Serialize + Send + Sync + 'static>(value: T) -> Self {
        Body::Typed(Arc::new(value))
    }

    /// Wraps a JSON value.
    pub fn json(value: Value) -> Self {
        Body::Json(Arc::new(value))
    }

    /// Wraps JSON text that is known to be one well-formed JSON value (a decoder checked it);
    /// `{}` becomes [`Body::EmptyObject`]. Text that is not JSON fails where it is read, with a
    /// 400 naming the problem, so this never lets bad input through.
    pub fn raw(text: Bytes) -> Self {
        if *text == *b"{}" {
            return Body::EmptyObject;
        }
        Body::Raw(Arc::new(RawJson {
            text,
            value: OnceLock::new(),
        }))
    }

    /// `{}`: the parameters of a command invoked without any.
    pub fn empty_object() -> Self {
        Body::EmptyObject
    }

    /// The body as JSON when it is JSON already (no serialization; wire text is parsed once, on
    /// first use).
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Body::Raw(raw) => raw.value(),
            Body::Json(value) => Some(value),
            Body::EmptyObject => Some(&EMPTY_OBJECT),
            Body::Typed(_) => None,
        }
    }

    /// The value as JSON; serializes a typed value.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Body::Raw(raw) => match raw.value.get() {
                Some(Some(value)) => Ok(value.clone()),
                _ => serde_json::from_slice(&raw.text),
            },
            Body::Json(value) => Ok(Value::clone(value)),
            Body::Typed(value) => serde_json::to_value(&**value),
            Body::EmptyObject => Ok(EMPTY_OBJECT.clone()),
        }
    }

    /// A reference to the typed value, if this body holds a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        match self {
            Body::Typed(value) => (&**value as &dyn Any).downcast_ref::<T>(),
            Body::Raw(_) | Body::Json(_) | Body::EmptyObject => None,
        }
    }

    /// Takes the value as a `T`: moved out (or cloned, when shared) if it already is one,
    /// deserialized straight from wire text, else converted through JSON.
    pub fn into_typed<T: DeserializeOwned + Clone + Send + Sync + 'static>(self) -> Result<T, serde_json::Error> {
        match self {
            Body::Typed(value) if (&*value as &dyn Any).is::<T>() => {
                let any: Arc<dyn Any + Send + Sync> = value;
                let typed = any.downcast::<T>().unwrap_or_else(|_| unreachable!("type checked above"));
                // Moved out when this was the last reference (commands); cloned when shared (events).
                Ok(Arc::try_unwrap(typed).unwrap_or_else(|shared| T::clone(&shared)))
            }
            Body::Typed(value) => T::deserialize(serde_json::to_value(&*value)?),
            Body::Raw(raw) => serde_json::from_slice(&raw.text),
            Body::Json(value) => T::deserialize(&*value),
            Body::EmptyObject => T::deserialize(&*EMPTY_OBJECT),
        }
    }

    /// Whether the body holds a typed `T` (so [`Body::into_typed`] will not touch serde).
    pub fn is<T: 'static>(&self) -> bool {
        self.downcast_ref::<T>().is_some()
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Raw(raw) => match std::str::from_utf8(&raw.text)
                .ok()
                .and_then(|text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok())
            {
                // Written as it came, when the serializer is serde_json's; other formats see a value.
                Some(text) => text.serialize(serializer),
                None => Err(serde::ser::Error::custom("a raw JSON body is not well-formed JSON")),
            },
            Body::Json(value) => value.serialize(serializer),
            Body::Typed(value) => value.serialize(serializer),
            Body::EmptyObject => EMPTY_OBJECT.serialize(serializer),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Raw(raw) => write!(f, "Raw({})", String::from_utf8_lossy(&raw.text)),
            Body::Json(value) => write!(f, "Json({value})"),
            Body::Typed(value) => write!(f, "Typed({})", value.type_name()),
            Body::EmptyObject => f.write_str("EmptyObject"),
        }
    }
}

impl PartialEq for Body {
    /// Bodies are equal when their JSON forms are.
    fn eq(&self, other: &Self) -> bool {
        match (self.to_value(), other.to_value()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Ping {
        seq: u32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct OtherPing {
        seq: u32,
    }

    #[test]
    fn same_type_is_moved_without_serde() {
        let body = Body::typed(Ping { seq: 7 });
        assert!(body.is::<Ping>());
        assert_eq!(body.into_typed::<Ping>().unwrap(), Ping { seq: 7 });
    }

    #[test]
    fn sole_owner_is_moved_not_cloned() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CLONES: AtomicUsize = AtomicUsize::new(0);
        #[derive(Serialize, Deserialize)]
        struct Counted;
        impl Clone for Counted {
            fn clone(&self) -> Self {
                CLONES.fetch_add(1, Ordering::SeqCst);
                Counted
            }
        }
        Body::typed(Counted).into_typed::<Counted>().unwrap();
        assert_eq!(CLONES.load(Ordering::SeqCst), 0);
        let shared = Body::typed(Counted);
        let _other = shared.clone();
        shared.into_typed::<Counted>().unwrap();
        assert_eq!(CLONES.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn shared_typed_body_is_cloned() {
        let body = Body::typed(Ping { seq: 7 });
        let copy = body.clone();
        assert_eq!(body.into_typed::<Ping>().unwrap(), Ping { seq: 7 });
        assert_eq!(copy.into_typed::<Ping>().unwrap(), Ping { seq: 7 });
    }

    #[test]
    fn other_type_of_same_shape_converts_through_json() {
        let body = Body::typed(Ping { seq: 7 });
        assert_eq!(body.into_typed::<OtherPing>().unwrap(), OtherPing { seq: 7 });
    }

    #[test]
    fn wire_text_is_read_only_when_asked() {
        let body = Body::raw(Bytes::from_static(br#"{"seq": 3}"#));
        assert!(matches!(body, Body::Raw(_)));
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"seq": 3}"#, "written as it came");
        assert_eq!(body.as_json(), Some(&serde_json::json!({"seq": 3})));
        assert_eq!(body.clone().into_typed::<Ping>().unwrap(), Ping { seq: 3 });
        assert_eq!(body, Body::typed(Ping { seq: 3 }));
        assert!(Body::raw(Bytes::from_static(br#"{"seq": "x"}"#)).into_typed::<Ping>().is_err());
        assert!(matches!(Body::raw(Bytes::from_static(b"{}")), Body::EmptyObject));
        let not_json = Body::raw(Bytes::from_static(b"{oops"));
        assert_eq!(not_json.as_json(), None);
        assert!(not_json.to_value().is_err() && serde_json::to_string(&not_json).is_err());
    }

    #[test]
    fn json_body_deserializes_and_serializes() {
        let body = Body::json(serde_json::json!({"seq": 3}));
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"seq":3}"#);
        assert_eq!(body.clone().into_typed::<Ping>().unwrap(), Ping { seq: 3 });
        assert!(Body::json(serde_json::json!({"seq": "x"})).into_typed::<Ping>().is_err());
        assert_eq!(body, Body::typed(Ping { seq: 3 }));
    }
}
