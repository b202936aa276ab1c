//! The stored value of one session: a fixed binary header, the subject and
//! the payload.
//!
//! ```text
//! offset  size  field
//!      0     1  magic b'S'
//!      1     1  format version (1)
//!      2     8  version      u64, big-endian
//!     10     8  created_at   i64 ms since the epoch, big-endian
//!     18     8  expires_at   i64 ms since the epoch, big-endian
//!     26     1  flags        bit 0: a subject is present
//!     27     2  subject_len  u16, big-endian (at most 256)
//!     29     n  subject      UTF-8
//!   29+n     …  payload      opaque bytes
//! ```
//!
//! The Lua scripts read `version` and `expires_at` at these fixed offsets
//! (`string.sub` and `struct.unpack('>i8', …)`), so the whole payload never
//! has to be parsed on the server. Decoding in Rust checks every length and
//! never panics: anything malformed is [`Error::Decode`].

use bytes::Bytes;
use sessionkit_core::{Error, MAX_SUBJECT_LEN, Record, Result, SessionId, Timestamp};

pub(crate) const MAGIC: u8 = b'S';
pub(crate) const FORMAT: u8 = 1;
/// Length of the fixed header (before the subject).
pub(crate) const HEADER_LEN: usize = 29;
const FLAG_SUBJECT: u8 = 1;

/// Encodes `record` with `version` (which may differ from `record.version`:
/// a save stores `record.version + 1`).
pub(crate) fn encode(record: &Record, version: u64) -> Result<Vec<u8>> {
    let subject = record.subject.as_deref().unwrap_or("");
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(Error::InvalidSubject);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + subject.len() + record.payload.len());
    out.push(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&record.created_at.as_millis().to_be_bytes());
    out.extend_from_slice(&record.expires_at.as_millis().to_be_bytes());
    out.push(if record.subject.is_some() {
        FLAG_SUBJECT
    } else {
        0
    });
    out.extend_from_slice(&(subject.len() as u16).to_be_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(&record.payload);
    Ok(out)
}

/// The subject part as the scripts see it: flags, length and subject bytes
/// (bytes 26..29+n of the value).
pub(crate) fn subject_tag(subject: Option<&str>) -> Vec<u8> {
    let s = subject.unwrap_or("");
    let mut out = Vec::with_capacity(3 + s.len());
    out.push(if subject.is_some() { FLAG_SUBJECT } else { 0 });
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

/// Parses what [`subject_tag`] produces (returned by the scripts).
pub(crate) fn parse_subject_tag(tag: &[u8]) -> Result<Option<String>> {
    let (subject, rest) = split_subject(tag)?;
    if !rest.is_empty() {
        return Err(corrupt("trailing bytes after the subject"));
    }
    Ok(subject)
}

fn split_subject(bytes: &[u8]) -> Result<(Option<String>, &[u8])> {
    let (&flags, rest) = bytes
        .split_first()
        .ok_or_else(|| corrupt("missing subject flags"))?;
    let len = rest
        .get(..2)
        .ok_or_else(|| corrupt("missing subject length"))?;
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    if len > MAX_SUBJECT_LEN {
        return Err(corrupt("subject too long"));
    }
    let subject = rest
        .get(2..2 + len)
        .ok_or_else(|| corrupt("truncated subject"))?;
    let rest = &rest[2 + len..];
    match flags {
        0 if len == 0 => Ok((None, rest)),
        FLAG_SUBJECT => {
            let s = std::str::from_utf8(subject).map_err(|_| corrupt("subject is not UTF-8"))?;
            Ok((Some(s.to_owned()), rest))
        }
        _ => Err(corrupt("unknown flags")),
    }
}

fn corrupt(what: &'static str) -> Error {
    Error::decode(format!("corrupted session value: {what}"))
}

fn be_u64(bytes: &[u8], at: usize) -> Result<u64> {
    let raw = bytes
        .get(at..at + 8)
        .ok_or_else(|| corrupt("truncated header"))?;
    let mut buf = [0u8; 8];
    buf.copy_from_slice(raw);
    Ok(u64::from_be_bytes(buf))
}

/// Decodes a stored value. Never panics.
pub(crate) fn decode(id: SessionId, bytes: &[u8]) -> Result<Record> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("shorter than the header"));
    }
    if bytes[0] != MAGIC || bytes[1] != FORMAT {
        return Err(corrupt("unknown magic or format"));
    }
    let version = be_u64(bytes, 2)?;
    let created_at = Timestamp::from_millis(be_u64(bytes, 10)? as i64);
    let expires_at = Timestamp::from_millis(be_u64(bytes, 18)? as i64);
    let (subject, payload) = split_subject(&bytes[26..])?;
    Ok(Record {
        id,
        subject,
        payload: Bytes::copy_from_slice(payload),
        version,
        created_at,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(subject: Option<&str>) -> Record {
        let mut r = Record::new(
            SessionId::generate(),
            subject.map(str::to_owned),
            b"payload bytes".to_vec(),
            Timestamp::from_millis(1_700_000_000_000),
            Timestamp::from_millis(1_700_000_360_000),
        );
        r.version = 41;
        r
    }

    #[test]
    fn round_trip() {
        for subject in [None, Some(""), Some("alice"), Some("ü{*} x")] {
            let r = sample(subject);
            let bytes = encode(&r, r.version).unwrap();
            assert_eq!(decode(r.id, &bytes).unwrap(), r);
            let tag = subject_tag(subject);
            assert_eq!(&bytes[26..26 + tag.len()], &tag[..]);
            assert_eq!(parse_subject_tag(&tag).unwrap(), subject.map(str::to_owned));
        }
    }

    #[test]
    fn negative_and_extreme_timestamps() {
        let mut r = sample(Some("bob"));
        r.created_at = Timestamp::from_millis(-5);
        r.expires_at = Timestamp::from_millis(i64::MAX);
        r.version = u64::MAX;
        let bytes = encode(&r, r.version).unwrap();
        assert_eq!(decode(r.id, &bytes).unwrap(), r);
    }

    #[test]
    fn corrupted_values_never_panic() {
        let r = sample(Some("carol"));
        let good = encode(&r, 1).unwrap();
        // Every truncation.
        for n in 0..good.len() {
            let _ = decode(r.id, &good[..n]);
        }
        // Every single-byte corruption of the header and subject.
        for i in 0..(HEADER_LEN + 5) {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = decode(r.id, &bad);
            }
        }
        assert!(matches!(decode(r.id, b""), Err(Error::Decode(_))));
        assert!(matches!(decode(r.id, b"garbage"), Err(Error::Decode(_))));
        let mut long_subject = good.clone();
        long_subject[27] = 0xff;
        assert!(matches!(decode(r.id, &long_subject), Err(Error::Decode(_))));
        let mut bad_flags = good;
        bad_flags[26] = 9;
        assert!(matches!(decode(r.id, &bad_flags), Err(Error::Decode(_))));
        assert!(parse_subject_tag(b"").is_err());
        assert!(parse_subject_tag(&[1, 0, 9, b'a']).is_err());
    }
}
