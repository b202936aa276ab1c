//! Session identifiers.
//!
//! A [`SessionId`] is 128 bits from the operating system's CSPRNG, written in
//! exactly one canonical text form: URL-safe base64 without padding
//! (22 characters). Parsing is strict: any other length, any character
//! outside `A–Z a–z 0–9 - _`, or a non-canonical final character is
//! rejected with [`Error::InvalidId`] before the value reaches a store, so a
//! client-supplied ID can never smuggle anything into a Redis key or a SQL
//! statement.
//!
//! An ID is a bearer secret: its `Debug` form shows only a short prefix, and
//! it has no `Display` implementation. Use [`SessionId::as_str`] when the
//! whole value really must be written (a cookie, a storage key).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;

/// Number of random bytes in a [`SessionId`] (128 bits).
pub const ID_BYTES: usize = 16;
/// Length of the canonical text form of a [`SessionId`].
pub const ID_LEN: usize = 22;
/// How many leading characters `Debug` shows.
const SHOWN: usize = 4;

/// An unguessable session identifier (128 bits from the OS CSPRNG).
///
/// ```
/// use sessionkit_core::SessionId;
///
/// let id = SessionId::generate();
/// let text = id.as_str().to_owned();
/// assert_eq!(text.len(), 22);
/// assert_eq!(SessionId::parse(&text).unwrap(), id);
/// // Anything that is not exactly the canonical form is rejected.
/// assert!(SessionId::parse("not an id").is_err());
/// // Debug never prints the whole secret.
/// assert!(!format!("{id:?}").contains(&text));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    text: [u8; ID_LEN],
}

impl SessionId {
    /// Draws a new ID from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes at all
    /// (the same policy as `rand::rngs::OsRng`); use
    /// [`SessionId::try_generate`] to handle that case yourself.
    pub fn generate() -> Self {
        Self::try_generate().expect("the operating system's random number generator failed")
    }

    /// Draws a new ID from the operating system's CSPRNG, reporting a
    /// failure of the generator as [`Error::Backend`].
    pub fn try_generate() -> Result<Self, Error> {
        let mut raw = [0u8; ID_BYTES];
        getrandom::fill(&mut raw).map_err(|e| Error::backend(e, false))?;
        Ok(Self::from_bytes(raw))
    }

    /// Builds an ID from 16 raw bytes. The bytes must come from a CSPRNG;
    /// this exists for deterministic tests and for derived identifiers.
    pub fn from_bytes(raw: [u8; ID_BYTES]) -> Self {
        let mut text = [0u8; ID_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut text)
            .expect("22 bytes always hold 16 bytes of base64");
        debug_assert_eq!(written, ID_LEN);
        Self { text }
    }

    /// Parses the canonical text form, strictly.
    ///
    /// Returns [`Error::InvalidId`] for any input that [`SessionId::as_str`]
    /// could not have produced.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let bytes = input.as_bytes();
        if bytes.len() != ID_LEN
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err(Error::InvalidId);
        }
        // Canonical form only: 21 characters carry 126 bits, the last one
        // the remaining 2 bits and 4 zero bits, so it must be one of the
        // four characters whose low 4 bits are zero (values 0, 16, 32, 48).
        // `canonical_check_matches_the_decoder` checks this against base64.
        if !matches!(bytes[ID_LEN - 1], b'A' | b'Q' | b'g' | b'w') {
            return Err(Error::InvalidId);
        }
        let mut text = [0u8; ID_LEN];
        text.copy_from_slice(bytes);
        Ok(Self { text })
    }

    /// The whole canonical text form. This is the secret itself: write it
    /// only where it must go (a cookie, a storage key), never to logs.
    pub fn as_str(&self) -> &str {
        // Always ASCII: built by the base64 engine or checked in `parse`.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// The 16 random bytes behind the ID.
    pub fn to_bytes(&self) -> [u8; ID_BYTES] {
        let mut raw = [0u8; ID_BYTES];
        let _ = URL_SAFE_NO_PAD.decode_slice(self.text, &mut raw);
        raw
    }

    /// A short, non-secret prefix for logs and diagnostics.
    pub fn redacted(&self) -> String {
        format!("{}…", &self.as_str()[..SHOWN])
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.redacted())
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SessionId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 22-character URL-safe base64 session id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SessionId, E> {
                SessionId::parse(v).map_err(|_| E::custom("invalid session id"))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_check_matches_the_decoder() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let base = SessionId::generate();
        for &last in alphabet {
            let mut text = base.as_str().as_bytes().to_vec();
            text[ID_LEN - 1] = last;
            let text = String::from_utf8(text).unwrap();
            let mut raw = [0u8; ID_BYTES];
            let decodes = matches!(URL_SAFE_NO_PAD.decode_slice(&text, &mut raw), Ok(ID_BYTES));
            assert_eq!(SessionId::parse(&text).is_ok(), decodes, "{text}");
            if decodes {
                assert_eq!(SessionId::from_bytes(raw), SessionId::parse(&text).unwrap());
            }
        }
    }

    #[test]
    fn round_trip_and_strictness() {
        let id = SessionId::generate();
        assert_eq!(SessionId::parse(id.as_str()).unwrap(), id);
        assert_eq!(SessionId::from_bytes(id.to_bytes()), id);
        for bad in [
            "",
            "short",
            "AAAAAAAAAAAAAAAAAAAAA",   // 21
            "AAAAAAAAAAAAAAAAAAAAAAA", // 23
            "AAAAAAAAAAAAAAAAAAAA+A",  // standard alphabet
            "AAAAAAAAAAAAAAAAAAAA/A",
            "AAAAAAAAAAAAAAAAAAAA=A",
            "AAAAAAAAAAAAAAAAAAAA A",
            "AAAAAAAAAAAAAAAAAAAA*A",
            "AAAAAAAAAAAAAAAAAAAA\nA",
            "AAAAAAAAAAAAAAAAAAA{}A",
            "AAAAAAAAAAAAAAAAAAAAAB", // non-zero trailing bits: not canonical
            "ÄAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(
                matches!(SessionId::parse(bad), Err(Error::InvalidId)),
                "{bad:?}"
            );
        }
        assert!(SessionId::parse(&"A".repeat(10_000)).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let id = SessionId::generate();
        let dbg = format!("{id:?}");
        assert!(!dbg.contains(id.as_str()));
        assert!(dbg.contains(&id.as_str()[..SHOWN]));
    }

    #[test]
    fn serde_is_strict() {
        let id = SessionId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SessionId>("\"nope\"").is_err());
    }
}
