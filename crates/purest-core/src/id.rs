//! Message, correlation and trace ids. purest makes 128 random bits written as 32 lowercase hex
//! chars, the form PURISTA uses, kept as a `u128` so creating and copying one never allocates.
//! PURISTA types ids as plain strings (its HTTP server passes a client's `x-trace-id` through), so
//! any other printable id up to [`Id::MAX_LEN`] bytes is accepted and sent back unchanged.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A message, correlation or trace id: 32 lowercase hex characters
/// (`"62f600d70b3057cd2e4b8e8f3c359a32"`) as purest makes them, or any other printable ASCII text
/// of 1 to [`Id::MAX_LEN`] bytes from another system (a UUID, say), kept as it came.
///
/// ```
/// use purest_core::Id;
/// let id = Id::random();
/// let text = id.to_string();
/// assert_eq!(text.len(), 32);
/// assert_eq!(text.parse::<Id>().unwrap(), id);
/// let uuid: Id = "3f2c5e0a-9b1d-4c8e-a7f6-2d4b8c9e1f03".parse().unwrap();
/// assert_eq!(uuid.to_string(), "3f2c5e0a-9b1d-4c8e-a7f6-2d4b8c9e1f03");
/// assert!(!uuid.is_hex());
/// assert!("".parse::<Id>().is_err());
/// assert!("two words".parse::<Id>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Repr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    /// The high and the low half: two `u64`s, not a `u128`, whose 16-byte alignment would pad
    /// every envelope (three ids each) and every copy of one.
    Hex(u64, u64),
    Text(Arc<str>),
}

impl Id {
    /// The longest id accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// A new random id. Ids must be unique, not secret: a fast per-thread generator suffices
    /// (and matters: every message takes one or two).
    pub fn random() -> Self {
        Id::from_u128(fastrand::u128(..))
    }

    /// The id written as these 128 bits.
    pub const fn from_u128(bits: u128) -> Self {
        Id(Repr::Hex((bits >> 64) as u64, bits as u64))
    }

    /// The 128 bits of a 32-hex id; `None` for an id in another form.
    pub fn as_u128(&self) -> Option<u128> {
        match self.0 {
            Repr::Hex(high, low) => Some(u128::from(high) << 64 | u128::from(low)),
            Repr::Text(_) => None,
        }
    }

    /// The 32 lowercase hex digits of an id in that form, written without formatting machinery
    /// (for headers on hot paths); `None` for an id in another form.
    pub fn hex_digits(&self) -> Option<[u8; 32]> {
        self.as_u128().map(hex_digits)
    }

    /// Whether the id is 32 lowercase hex characters (usable as a W3C trace id).
    pub fn is_hex(&self) -> bool {
        matches!(self.0, Repr::Hex(..))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            // Ids are written on every message and response header: not through `{:032x}`,
            // which costs several times more.
            Repr::Hex(..) => f.write_str(hex(self.as_u128().unwrap_or_default(), &mut [0; 32])),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

/// `bits` as 32 lowercase hex digits, written into `buf`.
fn hex(bits: u128, buf: &mut [u8; 32]) -> &str {
    *buf = hex_digits(bits);
    // The buffer only holds ASCII hex digits.
    std::str::from_utf8(buf).expect("hex is ascii")
}

/// `bits` as 32 lowercase hex digits, a byte (two digits) at a time.
pub(crate) fn hex_digits(bits: u128) -> [u8; 32] {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0; 2]; 256];
        let mut byte = 0;
        while byte < 256 {
            pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0xf]];
            byte += 1;
        }
        pairs
    };
    let mut digits = [0; 32];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(bits.to_be_bytes()) {
        pair.copy_from_slice(&PAIRS[usize::from(byte)]);
    }
    digits
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

/// Why a text is not an [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an id of 1 to 128 printable ASCII characters without spaces, got {0:?}")]
pub struct IdParseError(pub String);

impl FromStr for Id {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(bits) = parse_hex(s.as_bytes()) {
            return Ok(Id::from_u128(bits));
        }
        let printable = s.bytes().all(|byte| byte.is_ascii_graphic());
        if s.is_empty() || s.len() > Self::MAX_LEN || !printable {
            return Err(IdParseError(s.chars().take(64).collect()));
        }
        Ok(Id(Repr::Text(Arc::from(s))))
    }
}

/// 32 lowercase hex digits as their 128 bits. Every message carries two or three ids: read eight
/// digits at a time.
fn parse_hex(bytes: &[u8]) -> Option<u128> {
    let bytes: &[u8; 32] = bytes.try_into().ok()?;
    let mut bits = 0u128;
    for chunk in bytes.chunks_exact(8) {
        bits = bits << 32 | u128::from(parse_hex8(u64::from_be_bytes(chunk.try_into().ok()?))?);
    }
    Some(bits)
}

/// Eight ASCII lowercase hex digits (the first in the high byte) as their 32 bits, `None` if any
/// byte is not one: each byte's range is checked with carry-free additions on all eight at once.
fn parse_hex8(word: u64) -> Option<u32> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    // The high bit of each byte of `x + ONES * (0x80 - n)` is set where the byte is ≥ n (bytes
    // below 0x80, which is checked first, cannot carry into their neighbours).
    let at_least = |n: u8| word.wrapping_add(ONES * u64::from(0x80 - n)) & HIGH;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if word & HIGH != 0 || (digit | letter) != HIGH {
        return None;
    }
    // '0'..'9' → 0..9 (low nibble); 'a'..'f' → 1..6 + 9 (their 0x40 bit marks them).
    let nibbles = (word & (ONES * 0x0f)) + ((word >> 6) & ONES) * 9;
    // Gather the eight nibbles, high byte first, into 32 bits.
    let pairs = (nibbles >> 4 | nibbles) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs >> 8 | pairs) & 0x0000_ffff_0000_ffff;
    Some((quads >> 16 | quads) as u32)
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Hex(..) => serializer.serialize_str(hex(self.as_u128().unwrap_or_default(), &mut [0; 32])),
            Repr::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, not `Cow<str>` (which serde always decodes owned): no allocation.
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id: 32 lowercase hex digits, or up to 128 printable ASCII characters")
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
        assert!(id.is_hex());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0e8cc5894a12c924ea66a95db1c1a223\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        assert_eq!(Id::from_u128(1).to_string(), "00000000000000000000000000000001");
        assert_eq!(
            Id::from_u128(u128::MAX).to_string().parse::<Id>().unwrap(),
            Id::from_u128(u128::MAX)
        );
        assert_eq!(
            "0123456789abcdef0123456789abcdef".parse::<Id>().unwrap().as_u128(),
            Some(0x0123456789abcdef0123456789abcdef)
        );
    }

    #[test]
    fn other_printable_ids_are_kept_as_they_came() {
        for text in [
            "0E8CC5894A12C924EA66A95DB1C1A223",
            "0e8cc5894a12c924ea66a95db1c1a22g",
            "abc",
            "3f2c5e0a-9b1d-4c8e-a7f6-2d4b8c9e1f03",
            "V1StGXR8_Z5jdHi6B-myT",
        ] {
            let id: Id = text.parse().unwrap();
            assert!(!id.is_hex(), "{text}");
            assert_eq!(id.to_string(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        }
    }

    #[test]
    fn empty_long_and_unprintable_ids_are_refused() {
        for text in ["", "two words", "tab\there", "éééé", &"x".repeat(Id::MAX_LEN + 1)] {
            assert!(text.parse::<Id>().is_err(), "{text:?}");
        }
        assert!("x".repeat(Id::MAX_LEN).parse::<Id>().is_ok());
        let err = serde_json::from_str::<Id>("\"a b\"").unwrap_err();
        assert!(err.to_string().contains("printable ASCII"), "{err}");
    }

    #[test]
    fn hex_is_read_eight_digits_at_a_time_exactly_like_one_at_a_time() {
        let one_at_a_time = |text: &[u8]| -> Option<u128> {
            text.iter().try_fold(0u128, |bits, &b| {
                let digit = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => return None,
                };
                Some(bits << 4 | u128::from(digit))
            })
        };
        let mut text = *b"0123456789abcdef0123456789abcdef";
        assert_eq!(parse_hex(&text), Some(0x0123456789abcdef0123456789abcdef));
        for position in 0..32 {
            for byte in 0..=255u8 {
                let mut changed = text;
                changed[position] = byte;
                assert_eq!(
                    parse_hex(&changed),
                    one_at_a_time(&changed),
                    "{:?}",
                    String::from_utf8_lossy(&changed)
                );
            }
        }
        for _ in 0..1000 {
            let bits = fastrand::u128(..);
            text = hex_digits(bits);
            assert_eq!(parse_hex(&text), Some(bits));
        }
        assert_eq!(parse_hex(b"0123"), None);
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(Id::random(), Id::random());
    }
}
