//! Payload encryption at rest (feature `encryption`).
//!
//! A stateful session's payload sits in the store: in Redis memory and its
//! dumps, in SQL tables, replicas and backups. With [`PayloadKeys`] given to
//! [`ManagerBuilder::encrypt_payloads`](crate::ManagerBuilder::encrypt_payloads),
//! the manager seals every payload it writes with XChaCha20-Poly1305 (the
//! RustCrypto `chacha20poly1305` crate) before it reaches the store:
//!
//! - a fresh random 192-bit nonce per write (safe to draw at random at that
//!   size);
//! - the session ID and the record version the payload is written as are
//!   bound as associated data, with the envelope header (codec, schema, key
//!   id): a ciphertext copied to another session, or replayed as another
//!   version of the same session, does not open;
//! - a key id in each payload: [`PayloadKeys::with_previous`] keeps older
//!   keys readable while new writes use the active one, so keys rotate
//!   without downtime (old payloads are re-sealed with the new key on their
//!   next save, and the rest expire with their sessions).
//!
//! A payload that does not open (tampered, truncated, unknown or retired
//! key, moved to another session, or sealed while this manager has no keys)
//! is treated like any undecodable payload: no session, counted in
//! [`ManagerStats::undecodable`](crate::ManagerStats::undecodable), never an
//! error page and never a panic.
//!
//! What it does not protect: the session ID, subject and expiry stay
//! readable to whoever reads the store, and an attacker who can *write* to
//! the store can still delete or replace whole records.

use std::fmt;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use crate::error::{Error, Result};
use crate::id::SessionId;

/// Envelope format byte of a sealed payload (plain payloads are format 1).
pub(crate) const SEALED_FORMAT: u8 = 2;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// magic, format, codec id, schema (u32), key id.
const HEADER_LEN: usize = 8;
/// What sealing adds to a plain envelope: the key id, the nonce, the tag.
pub(crate) const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
const AAD_CONTEXT: &[u8] = b"sessionkit/payload/v1\0";

/// The keys that seal and open session payloads at rest: one active key
/// that new writes use, and any number of previous keys that stay
/// readable. Keys are 32 random bytes each, named by a one-byte key id
/// stored in every payload. `Debug` shows the key ids only.
///
/// ```
/// use sessionkit_core::PayloadKeys;
///
/// // Normally: 32 bytes from a secret manager, not from the source code.
/// let keys = PayloadKeys::new(2, [7u8; 32])
///     .with_previous(1, [9u8; 32])
///     .expect("distinct key ids");
/// assert_eq!(keys.active_key_id(), 2);
/// assert!(!format!("{keys:?}").contains('7'));
/// ```
#[derive(Clone)]
pub struct PayloadKeys {
    active: u8,
    keys: Arc<Vec<(u8, XChaCha20Poly1305)>>,
}

impl fmt::Debug for PayloadKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("PayloadKeys")
            .field("active", &self.active)
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

impl PayloadKeys {
    /// Keys whose active (writing) key is `key`, named `key_id`.
    pub fn new(key_id: u8, key: [u8; 32]) -> Self {
        PayloadKeys {
            active: key_id,
            keys: Arc::new(vec![(key_id, XChaCha20Poly1305::new(&key.into()))]),
        }
    }

    /// Adds a previous key: payloads sealed with it stay readable; nothing
    /// new is sealed with it. [`Error::Config`] when `key_id` is taken.
    pub fn with_previous(self, key_id: u8, key: [u8; 32]) -> Result<Self> {
        if self.keys.iter().any(|(id, _)| *id == key_id) {
            return Err(Error::Config(format!(
                "payload key id {key_id} is used twice"
            )));
        }
        let mut keys = Vec::clone(&self.keys);
        keys.push((key_id, XChaCha20Poly1305::new(&key.into())));
        Ok(PayloadKeys {
            active: self.active,
            keys: Arc::new(keys),
        })
    }

    /// The id of the key new payloads are sealed with.
    pub fn active_key_id(&self) -> u8 {
        self.active
    }

    fn key(&self, key_id: u8) -> Option<&XChaCha20Poly1305> {
        self.keys
            .iter()
            .find_map(|(id, key)| (*id == key_id).then_some(key))
    }

    /// Seals a plain envelope (`S`, 1, codec, schema, body) for the record
    /// `id` at `version`: `S`, 2, codec, schema, key id, nonce, ciphertext.
    pub(crate) fn seal(&self, plain: &[u8], id: &SessionId, version: u64) -> Result<Vec<u8>> {
        let (head, body) = plain.split_at(HEADER_LEN - 1);
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.extend_from_slice(head);
        out[1] = SEALED_FORMAT;
        out.push(self.active);
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        let aad = aad(&out[..HEADER_LEN], id, version);
        let key = self
            .key(self.active)
            .expect("the active key is in the ring");
        let sealed = key
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::encode("payload encryption failed"))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// Opens `sealed` with `keys`; without keys, a sealed payload is
/// [`Error::Decode`] saying so.
pub(crate) fn open_with(
    keys: Option<&PayloadKeys>,
    sealed: &[u8],
    id: &SessionId,
    version: u64,
) -> Result<Vec<u8>> {
    let keys = keys.ok_or_else(|| {
        Error::decode("the payload is encrypted and this manager has no payload keys")
    })?;
    if sealed.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(Error::decode("truncated encrypted payload"));
    }
    let key_id = sealed[HEADER_LEN - 1];
    let key = keys.key(key_id).ok_or_else(|| {
        Error::decode(format!(
            "the payload is sealed with key id {key_id}, which is not in the key ring"
        ))
    })?;
    let nonce = &sealed[HEADER_LEN..HEADER_LEN + NONCE_LEN];
    let aad = aad(&sealed[..HEADER_LEN], id, version);
    let body = key
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: &sealed[HEADER_LEN + NONCE_LEN..],
                aad: &aad,
            },
        )
        .map_err(|_| {
            Error::decode("the encrypted payload does not open (tampered, moved, or another key)")
        })?;
    let mut plain = Vec::with_capacity(HEADER_LEN - 1 + body.len());
    plain.extend_from_slice(&sealed[..HEADER_LEN - 1]);
    plain[1] = 1;
    plain.extend_from_slice(&body);
    Ok(plain)
}

fn aad(header: &[u8], id: &SessionId, version: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + 16 + 8 + HEADER_LEN);
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(&id.to_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(header);
    aad
}
