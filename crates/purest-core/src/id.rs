//! Message, correlation and trace ids: 128 random bits written as 32 lowercase hex chars, the
//! form PURISTA uses on the wire. Kept as a `u128` so creating and copying one never allocates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 128-bit id, serialized as 32 lowercase hex characters (`"62f600d70b3057cd2e4b8e8f3c359a32"`).
///
/// ```
/// use purest_core::Id;
/// let id = Id::random();
/// let text = id.to_string();
/// assert_eq!(text.len(), 32);
/// assert_eq!(text.parse::<Id>().unwrap(), id);
/// assert!("not-hex".parse::<Id>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub u128);

impl Id {
    /// A new random id. Ids must be unique, not secret: a fast per-thread generator suffices
    /// (and matters: every message takes one or two).
    pub fn random() -> Self {
        Id(fastrand::u128(..))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({:032x})", self.0)
    }
}

/// Why a text is not an [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an id of 32 lowercase hex characters, got {0:?}")]
pub struct IdParseError(pub String);

/// The value of each lowercase hex digit; 0xff for every other byte.
const HEX_DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl FromStr for Id {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Every message carries two or three ids: decoded branch-free, a half at a time.
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(IdParseError(s.chars().take(64).collect()));
        }
        let (mut high, mut low, mut invalid) = (0u64, 0u64, 0u8);
        for (half, out) in [(&bytes[..16], &mut high), (&bytes[16..], &mut low)] {
            for &byte in half {
                let digit = HEX_DIGITS[usize::from(byte)];
                invalid |= digit;
                *out = *out << 4 | u64::from(digit & 0x0f);
            }
        }
        if invalid & 0xf0 != 0 {
            return Err(IdParseError(s.chars().take(64).collect()));
        }
        Ok(Id(u128::from(high) << 64 | u128::from(low)))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        let hex = b"0123456789abcdef";
        for (i, slot) in buf.iter_mut().enumerate() {
            *slot = hex[((self.0 >> (124 - 4 * i)) & 0xf) as usize];
        }
        // The buffer only holds ASCII hex digits.
        serializer.serialize_str(std::str::from_utf8(&buf).expect("hex is ascii"))
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, not `Cow<str>` (which serde always decodes owned): no allocation.
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id of 32 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Id, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_32_lowercase_hex_and_back() {
        let id: Id = "0e8cc5894a12c924ea66a95db1c1a223".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0e8cc5894a12c924ea66a95db1c1a223\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        assert_eq!(Id(1).to_string(), "00000000000000000000000000000001");
    }

    #[test]
    fn rejects_wrong_length_and_uppercase() {
        assert!("0E8CC5894A12C924EA66A95DB1C1A223".parse::<Id>().is_err());
        assert!("abc".parse::<Id>().is_err());
        assert!("0e8cc5894a12c924ea66a95db1c1a22g".parse::<Id>().is_err(), "a non-hex last digit");
        assert!("éééééééééééééééé".parse::<Id>().is_err(), "32 bytes that are not ASCII");
        assert_eq!(Id(u128::MAX).to_string().parse::<Id>().unwrap(), Id(u128::MAX));
        assert_eq!(
            "0123456789abcdef0123456789abcdef".parse::<Id>().unwrap().0,
            0x0123456789abcdef0123456789abcdef
        );
        let err = serde_json::from_str::<Id>("\"xyz\"").unwrap_err();
        assert!(err.to_string().contains("32 lowercase hex"), "{err}");
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(Id::random(), Id::random());
    }
}
