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
    let e = encoded(record, version)?;
    let mut out = Vec::with_capacity(e.len());
    out.extend_from_slice(&e.header());
    out.extend_from_slice(e.subject.as_bytes());
    out.extend_from_slice(&record.payload);
    Ok(out)
}

/// A record encoded straight into a command's argument buffer (no
/// intermediate copy of the payload): what [`encode`] returns, as a redis
/// argument. Built by [`encoded`], which checks the subject first.
pub(crate) struct Encoded<'a> {
    record: &'a Record,
    subject: &'a str,
    version: u64,
}

/// Checks `record` and returns its encoding with `version`, as a redis
/// argument.
pub(crate) fn encoded(record: &Record, version: u64) -> Result<Encoded<'_>> {
    let subject = record.subject.as_deref().unwrap_or("");
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(Error::InvalidSubject);
    }
    Ok(Encoded {
        record,
        subject,
        version,
    })
}

impl Encoded<'_> {
    fn header(&self) -> [u8; HEADER_LEN] {
        let r = self.record;
        let mut h = [0u8; HEADER_LEN];
        h[0] = MAGIC;
        h[1] = FORMAT;
        h[2..10].copy_from_slice(&self.version.to_be_bytes());
        h[10..18].copy_from_slice(&r.created_at.as_millis().to_be_bytes());
        h[18..26].copy_from_slice(&r.expires_at.as_millis().to_be_bytes());
        h[26] = if r.subject.is_some() { FLAG_SUBJECT } else { 0 };
        h[27..29].copy_from_slice(&(self.subject.len() as u16).to_be_bytes());
        h
    }

    /// The header and the subject (everything before the payload), as its
    /// own small buffer: with the record's payload, the exact stored value.
    pub(crate) fn head(&self) -> Bytes {
        let mut out = Vec::with_capacity(HEADER_LEN + self.subject.len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(self.subject.as_bytes());
        Bytes::from(out)
    }

    /// The encoded length in bytes.
    pub(crate) fn len(&self) -> usize {
        HEADER_LEN + self.subject.len() + self.record.payload.len()
    }
}

impl redis::ToRedisArgs for Encoded<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        use std::io::Write as _;
        out.reserve_space_for_args([self.len()]);
        let mut w = out.writer_for_next_arg();
        // Writes into a growable in-memory buffer cannot fail.
        let _ = w.write_all(&self.header());
        let _ = w.write_all(self.subject.as_bytes());
        let _ = w.write_all(&self.record.payload);
    }
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
    let (mut record, start) = decode_header(id, bytes)?;
    record.payload = Bytes::copy_from_slice(&bytes[start..]);
    Ok(record)
}

/// [`decode`] taking the value by ownership: the payload is a view into it,
/// not a copy.
pub(crate) fn decode_owned(id: SessionId, bytes: Vec<u8>) -> Result<Record> {
    let (mut record, start) = decode_header(id, &bytes)?;
    record.payload = Bytes::from(bytes).slice(start..);
    Ok(record)
}

/// [`decode_owned`] that also returns the value's head (header and
/// subject) as a view into the same buffer: with the payload, the exact
/// stored bytes, kept for a later `SET … IFEQ`.
pub(crate) fn decode_owned_with_head(id: SessionId, bytes: Vec<u8>) -> Result<(Record, Bytes)> {
    let (mut record, start) = decode_header(id, &bytes)?;
    let raw = Bytes::from(bytes);
    record.payload = raw.slice(start..);
    Ok((record, raw.slice(..start)))
}

/// The subject of a head built by [`Encoded::head`] or returned by
/// [`decode_owned_with_head`] (`None` without a subject).
pub(crate) fn head_subject(head: &[u8]) -> Option<&str> {
    if head.get(26) != Some(&FLAG_SUBJECT) {
        return None;
    }
    std::str::from_utf8(head.get(HEADER_LEN..)?).ok()
}

/// Rewrites the expiry bytes of a head (what the touch script does).
pub(crate) fn set_head_expiry(head: &mut [u8], expires_at: i64) {
    if let Some(b) = head.get_mut(18..26) {
        b.copy_from_slice(&expires_at.to_be_bytes());
    }
}

/// Decodes everything but the payload, and returns where the payload
/// starts.
fn decode_header(id: SessionId, bytes: &[u8]) -> Result<(Record, usize)> {
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
    let start = bytes.len() - payload.len();
    Ok((
        Record {
            id,
            subject,
            payload: Bytes::new(),
            version,
            created_at,
            expires_at,
        },
        start,
    ))
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
            assert_eq!(decode_owned(r.id, bytes.clone()).unwrap(), r);
            let args = redis::ToRedisArgs::to_redis_args(&encoded(&r, r.version).unwrap());
            assert_eq!(args, vec![bytes.clone()]);
            let tag = subject_tag(subject);
            assert_eq!(&bytes[26..26 + tag.len()], &tag[..]);
            // The head and the payload are the stored bytes, exactly.
            let head = encoded(&r, r.version).unwrap().head();
            assert_eq!([&head[..], &r.payload[..]].concat(), bytes);
            let (back, loaded_head) = decode_owned_with_head(r.id, bytes.clone()).unwrap();
            assert_eq!(back, r);
            assert_eq!(loaded_head, head);
            assert_eq!(head_subject(&head), subject);
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
            let _ = decode_owned(r.id, good[..n].to_vec());
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
