//! Key names. Nothing from a client reaches a key name unencoded: session IDs
//! are parsed strictly by [`SessionId::parse`] (URL-safe base64, 22
//! characters) and subjects are hashed (SHA-256, first 128 bits, hex).

use sessionkit_core::{Error, ID_LEN, Result, SessionId};
use sha2::{Digest, Sha256};

/// The longest accepted key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// Checks a key prefix: 1 to 64 bytes of `A–Z a–z 0–9 - _ . : /`.
///
/// Braces are refused on purpose: a `{` in the prefix would become the
/// Redis Cluster hash tag of every key and put all sessions on one node.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
    {
        return Err(Error::Config(format!(
            "RedisConfig: prefix must be 1 to {MAX_PREFIX_LEN} characters of A-Z a-z 0-9 - _ . : / (got {prefix:?})"
        )));
    }
    Ok(())
}

/// Builds the key names of one store.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Result<Self> {
        validate_prefix(prefix)?;
        Ok(Keys {
            prefix: prefix.to_owned(),
        })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:s:{<id>}`: one string per session; the hash tag is the ID,
    /// so sessions spread over the cluster's slots.
    pub(crate) fn session(&self, id: &SessionId) -> String {
        format!("{}:s:{{{}}}", self.prefix, id.as_str())
    }

    /// The session ID of a session key of this store (`None` for any other
    /// key).
    pub(crate) fn parse_session(&self, key: &[u8]) -> Option<SessionId> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        let id = rest.strip_prefix(b":s:{")?.strip_suffix(b"}")?;
        SessionId::parse(std::str::from_utf8(id).ok()?).ok()
    }

    /// The length of every session key of this store.
    pub(crate) fn session_len(&self) -> usize {
        self.prefix.len() + 5 + ID_LEN
    }

    /// [`Keys::session`] as a redis argument, written straight into the
    /// command buffer.
    pub(crate) fn session_arg<'a>(&'a self, id: &'a SessionId) -> SessionKey<'a> {
        SessionKey {
            prefix: &self.prefix,
            id,
        }
    }

    /// `{prefix}:t:{<id>}:<nonce>`: where a save puts the new value before
    /// its script moves it into place. Same hash tag as the session key, so
    /// both are in one slot on a cluster.
    pub(crate) fn staging(&self, id: &SessionId, nonce: u64) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 5 + ID_LEN + 17);
        key.push_str(&self.prefix);
        key.push_str(":t:{");
        key.push_str(id.as_str());
        key.push_str("}:");
        for shift in (0..16).rev() {
            key.push(char::from(HEX[((nonce >> (shift * 4)) & 0xf) as usize]));
        }
        key
    }

    /// `{prefix}:r:{<id>}`: the receipt of the last `compare_and_delete`
    /// that removed this session (its call's nonce and the subject tag),
    /// kept for a few seconds so that the call can tell, when it has to
    /// send its request again, that its first attempt already succeeded.
    /// Same hash tag as the session key, so both are in one slot on a
    /// cluster.
    pub(crate) fn receipt(&self, id: &SessionId) -> String {
        format!("{}:r:{{{}}}", self.prefix, id.as_str())
    }

    /// `{prefix}:u:{<hex>}`: the sorted set of a subject's session IDs,
    /// scored by expiry. `<hex>` is the first 128 bits of SHA-256 of the
    /// subject, so any subject (spaces, `*`, braces, non-ASCII…) yields a
    /// fixed-shape key.
    pub(crate) fn subject_index(&self, subject: &str) -> String {
        format!("{}:u:{{{}}}", self.prefix, subject_hash(subject))
    }

    /// `{prefix}:c:{<nonce>}`: the key a capability probe names (`SET …
    /// IFEQ` on a key that never exists: nothing is ever written to it).
    /// The nonce spreads probes over a cluster's slots.
    pub(crate) fn probe(&self, nonce: u64) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 5 + 16);
        key.push_str(&self.prefix);
        key.push_str(":c:{");
        for shift in (0..16).rev() {
            key.push(char::from(HEX[((nonce >> (shift * 4)) & 0xf) as usize]));
        }
        key.push('}');
        key
    }

    /// The pub/sub channel of the invalidation channel.
    pub(crate) fn channel(&self) -> String {
        format!("{}:invalidate", self.prefix)
    }
}

/// A session key as a redis argument (see [`Keys::session_arg`]).
pub(crate) struct SessionKey<'a> {
    prefix: &'a str,
    id: &'a SessionId,
}

impl redis::ToRedisArgs for SessionKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        use std::io::Write as _;
        let id = self.id.as_str();
        out.reserve_space_for_args([self.prefix.len() + 5 + id.len()]);
        let mut w = out.writer_for_next_arg();
        // Writes into a growable in-memory buffer cannot fail.
        let _ = w.write_all(self.prefix.as_bytes());
        let _ = w.write_all(b":s:{");
        let _ = w.write_all(id.as_bytes());
        let _ = w.write_all(b"}");
    }
}

fn subject_hash(subject: &str) -> String {
    let digest = Sha256::digest(subject.as_bytes());
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from(HEX[(b >> 4) as usize]));
        out.push(char::from(HEX[(b & 0xf) as usize]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for ok in ["sk", "app:sessions", "a-b_c.d/e", &"x".repeat(64)] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a{b", "a}b", "a b", "a*", "a\n", "ä", &"x".repeat(65)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_shapes() {
        let keys = Keys::new("sk").unwrap();
        let id = SessionId::generate();
        assert_eq!(keys.session(&id), format!("sk:s:{{{}}}", id.as_str()));
        assert_eq!(keys.session_len(), keys.session(&id).len());
        assert_eq!(
            keys.staging(&id, 0xab),
            format!("sk:t:{{{}}}:00000000000000ab", id.as_str())
        );
        assert_eq!(keys.receipt(&id), format!("sk:r:{{{}}}", id.as_str()));
        assert_eq!(keys.probe(0xab), "sk:c:{00000000000000ab}");
        assert_eq!(keys.parse_session(keys.session(&id).as_bytes()), Some(id));
        assert_eq!(keys.parse_session(keys.receipt(&id).as_bytes()), None);
        assert_eq!(keys.parse_session(b"sk:s:{short}"), None);
        assert_eq!(
            Keys::new("sk2")
                .unwrap()
                .parse_session(keys.session(&id).as_bytes()),
            None
        );
        assert_eq!(
            redis::ToRedisArgs::to_redis_args(&keys.session_arg(&id)),
            vec![keys.session(&id).into_bytes()]
        );
        let k = keys.subject_index("we{ir}d * subject\u{202e}");
        assert!(k.starts_with("sk:u:{") && k.ends_with('}'));
        assert_eq!(k.len(), "sk:u:{}".len() + 32);
        assert!(k[6..38].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(keys.subject_index("a"), keys.subject_index("b"));
    }
}
