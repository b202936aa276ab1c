//! Payload codecs and the versioned payload envelope.
//!
//! The application's session type `T` becomes payload bytes through a
//! [`PayloadCodec`]:
//!
//! | codec | feature | notes |
//! |---|---|---|
//! | [`PayloadCodec::Bincode`] | `bincode` (default) | compact and fast. Pinned to 2.0.1, its last real release: the crate is now unmaintained (3.0.0 is an empty placeholder). Prefer postcard for new deployments that want a maintained binary format. |
//! | [`PayloadCodec::Postcard`] | `postcard` | maintained, compact, with a documented stable wire format. |
//! | [`PayloadCodec::Json`] | always available | interoperable and debuggable; self-describing, so it tolerates added or removed optional fields. |
//!
//! Every payload is wrapped in a seven-byte [`Envelope`] header that records
//! which codec and which schema version wrote it. A reader decodes with the
//! codec the writer used (if compiled in), so a fleet can switch codecs or
//! session schemas during a rolling deployment while old and new instances
//! read each other's sessions.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A serialization format for session payloads.
///
/// ```
/// use sessionkit_core::PayloadCodec;
/// let bytes = PayloadCodec::Json.encode(&vec![1u32, 2, 3]).unwrap();
/// let back: Vec<u32> = PayloadCodec::Json.decode(&bytes).unwrap();
/// assert_eq!(back, vec![1, 2, 3]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadCodec {
    /// bincode 2 (serde, standard configuration).
    #[cfg(feature = "bincode")]
    Bincode,
    /// postcard 1.
    #[cfg(feature = "postcard")]
    Postcard,
    /// JSON (serde_json).
    Json,
}

impl Default for PayloadCodec {
    /// bincode when compiled in, else postcard, else JSON.
    fn default() -> Self {
        #[cfg(feature = "bincode")]
        {
            PayloadCodec::Bincode
        }
        #[cfg(all(not(feature = "bincode"), feature = "postcard"))]
        {
            PayloadCodec::Postcard
        }
        #[cfg(all(not(feature = "bincode"), not(feature = "postcard")))]
        {
            PayloadCodec::Json
        }
    }
}

/// Largest input the bincode decoder accepts (guards allocation on hostile
/// length prefixes).
#[cfg(feature = "bincode")]
const BINCODE_LIMIT: usize = 64 * 1024 * 1024;

impl PayloadCodec {
    /// The byte that names this codec in an [`Envelope`].
    pub const fn id(self) -> u8 {
        match self {
            #[cfg(feature = "bincode")]
            PayloadCodec::Bincode => 1,
            #[cfg(feature = "postcard")]
            PayloadCodec::Postcard => 2,
            PayloadCodec::Json => 3,
        }
    }

    /// The codec named by `id`, if it is compiled in.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            #[cfg(feature = "bincode")]
            1 => Some(PayloadCodec::Bincode),
            #[cfg(feature = "postcard")]
            2 => Some(PayloadCodec::Postcard),
            3 => Some(PayloadCodec::Json),
            _ => None,
        }
    }

    /// Serializes `value`.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        match self {
            #[cfg(feature = "bincode")]
            PayloadCodec::Bincode => {
                bincode::serde::encode_to_vec(value, bincode::config::standard())
                    .map_err(Error::encode)
            }
            #[cfg(feature = "postcard")]
            PayloadCodec::Postcard => postcard::to_stdvec(value).map_err(Error::encode),
            PayloadCodec::Json => serde_json::to_vec(value).map_err(Error::encode),
        }
    }

    /// Deserializes a `T`; trailing bytes are an error.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            #[cfg(feature = "bincode")]
            PayloadCodec::Bincode => {
                let config = bincode::config::standard().with_limit::<BINCODE_LIMIT>();
                let (value, read) =
                    bincode::serde::decode_from_slice(bytes, config).map_err(Error::decode)?;
                if read != bytes.len() {
                    return Err(Error::decode("trailing bytes after the bincode payload"));
                }
                Ok(value)
            }
            #[cfg(feature = "postcard")]
            PayloadCodec::Postcard => {
                let (value, rest) = postcard::take_from_bytes(bytes).map_err(Error::decode)?;
                if !rest.is_empty() {
                    return Err(Error::decode("trailing bytes after the postcard payload"));
                }
                Ok(value)
            }
            PayloadCodec::Json => serde_json::from_slice(bytes).map_err(Error::decode),
        }
    }
}

/// The header in front of every payload the manager writes: the magic byte
/// `b'S'`, the envelope format (`1`), the codec id and the schema version as
/// a big-endian `u32` ([`Envelope::HEADER_LEN`] bytes in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The codec that wrote `body` (its id, which may not be compiled in).
    pub codec_id: u8,
    /// The application's schema version of `body`.
    pub schema: u32,
    /// The serialized session data.
    pub body: &'a [u8],
}

const MAGIC: u8 = b'S';
const FORMAT: u8 = 1;

impl<'a> Envelope<'a> {
    /// Bytes before the body: magic, format, codec id, schema (u32 BE).
    pub const HEADER_LEN: usize = 7;

    /// Writes header and body.
    ///
    /// ```
    /// use sessionkit_core::{Envelope, PayloadCodec};
    /// let bytes = Envelope::write(PayloadCodec::Json, 3, b"{}");
    /// let env = Envelope::read(&bytes).unwrap();
    /// assert_eq!((env.codec_id, env.schema, env.body), (PayloadCodec::Json.id(), 3, &b"{}"[..]));
    /// ```
    pub fn write(codec: PayloadCodec, schema: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_LEN + body.len());
        out.push(MAGIC);
        out.push(FORMAT);
        out.push(codec.id());
        out.extend_from_slice(&schema.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Splits stored bytes into header and body; anything that is not an
    /// envelope is [`Error::Decode`].
    pub fn read(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < Self::HEADER_LEN || bytes[0] != MAGIC || bytes[1] != FORMAT {
            return Err(Error::decode("the payload has no sessionkit envelope"));
        }
        Ok(Envelope {
            codec_id: bytes[2],
            schema: u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]),
            body: &bytes[Self::HEADER_LEN..],
        })
    }

    /// The codec that wrote the body, or [`Error::Decode`] if it is not
    /// compiled into this build.
    pub fn codec(&self) -> Result<PayloadCodec> {
        PayloadCodec::from_id(self.codec_id).ok_or_else(|| {
            Error::decode(format!(
                "payload written with codec id {} which this build does not include",
                self.codec_id
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct S {
        a: u32,
        b: String,
        c: Vec<u8>,
    }

    fn all() -> Vec<PayloadCodec> {
        vec![
            #[cfg(feature = "bincode")]
            PayloadCodec::Bincode,
            #[cfg(feature = "postcard")]
            PayloadCodec::Postcard,
            PayloadCodec::Json,
        ]
    }

    #[test]
    fn round_trip_every_codec() {
        let v = S {
            a: 7,
            b: "x".repeat(100),
            c: vec![0, 255],
        };
        for c in all() {
            let bytes = c.encode(&v).unwrap();
            assert_eq!(c.decode::<S>(&bytes).unwrap(), v, "{c:?}");
            assert_eq!(PayloadCodec::from_id(c.id()), Some(c));
        }
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        for c in all() {
            for bytes in [
                &b""[..],
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                b"{",
                b"\x05abc",
            ] {
                assert!(
                    matches!(c.decode::<S>(bytes), Err(Error::Decode(_))),
                    "{c:?}"
                );
            }
        }
        assert!(Envelope::read(b"xx").is_err());
        assert!(
            Envelope::read(b"S\x01\x63\0\0\0\x01")
                .unwrap()
                .codec()
                .is_err()
        );
    }
}
