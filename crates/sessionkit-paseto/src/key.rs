//! Symmetric v4.local keys with their key ids, and the ring that holds them.

use std::fmt;
use std::sync::Arc;

use pasetors::keys::SymmetricKey;
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::version4::V4;
use serde::Serialize;
use sessionkit_core::{Error, Result};

/// Length of a v4.local key in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// Longest accepted key id, in bytes.
pub const MAX_KID_LEN: usize = 128;

fn config(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

fn check_kid(kid: &str) -> Result<()> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(config(format!(
            "a key id must be 1 to {MAX_KID_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// One 32-byte v4.local key and the key id (`kid`) that tokens encrypted
/// with it carry in their footer.
///
/// A key both encrypts and decrypts (PASETO `local` is symmetric): anyone
/// holding it can read *and* mint tokens. The key id is written in clear
/// into every token, so it must not be derived from the key in any way
/// other than the PASERK ID operation ([`Key::with_paserk_id`]), which is
/// designed to be public.
///
/// Keys are cheap to clone (shared). `Debug` shows the key id only; the
/// key bytes are wiped from memory when the last clone is dropped.
///
/// ```
/// use sessionkit_paseto::Key;
///
/// let key = Key::new("2026-11", &[7u8; 32])?;
/// assert_eq!(key.kid(), "2026-11");
/// assert!(!format!("{key:?}").contains("7, 7"));
/// // Anything but exactly 32 bytes is refused.
/// assert!(Key::new("short", b"too short").is_err());
/// # Ok::<(), sessionkit_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Key {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    kid: String,
    key: SymmetricKey<V4>,
    /// The footer JSON written into every token of this key.
    footer: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.inner.kid)
            .finish_non_exhaustive()
    }
}

/// The footer as written: `{"kid":"…"}`.
#[derive(Serialize)]
struct OutFooter<'a> {
    kid: &'a str,
}

impl Key {
    /// A key from its 32 secret bytes, under an id of your choosing
    /// (1 to [`MAX_KID_LEN`] printable ASCII characters, e.g. `"2026-11"`).
    ///
    /// The bytes should come from a CSPRNG and from configuration (a
    /// secrets manager), never be generated at start-up, and be used for
    /// nothing else (not also as a JWT HMAC secret).
    ///
    /// ```
    /// let key = sessionkit_paseto::Key::new("2026-11", &[0x42; 32])?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn new(kid: impl Into<String>, secret: &[u8]) -> Result<Key> {
        let kid = kid.into();
        check_kid(&kid)?;
        if secret.len() != KEY_LEN {
            return Err(config(format!(
                "key {kid:?}: a v4.local key is exactly {KEY_LEN} bytes, got {}",
                secret.len()
            )));
        }
        let key = SymmetricKey::<V4>::from(secret)
            .map_err(|_| config(format!("key {kid:?}: not a v4.local key")))?;
        Self::finish(kid, key)
    }

    /// A key from its PASERK serialization (`k4.local.` followed by the
    /// base64url key bytes), under an id of your choosing. PASERK strings
    /// of any other type (`k4.public.`, `k3.local.`, …) are refused.
    ///
    /// ```
    /// use sessionkit_paseto::Key;
    ///
    /// let paserk = "k4.local.cHFyc3R1dnd4eXp7fH1-f4CBgoOEhYaHiImKi4yNjo8";
    /// let key = Key::from_paserk("2026-11", paserk)?;
    /// assert_eq!(key.kid(), "2026-11");
    /// assert!(Key::from_paserk("x", "k4.public.AAAA").is_err());
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn from_paserk(kid: impl Into<String>, paserk: &str) -> Result<Key> {
        let kid = kid.into();
        check_kid(&kid)?;
        let key = SymmetricKey::<V4>::try_from(paserk)
            .map_err(|_| config(format!("key {kid:?}: not a k4.local PASERK")))?;
        Self::finish(kid, key)
    }

    /// A key whose id is its PASERK local ID (`k4.lid.…`, PASERK's `ID`
    /// operation: a BLAKE2b hash of the key, safe to publish), the key-id
    /// form the PASETO specification recommends. Other PASETO libraries
    /// compute the same id from the same key.
    ///
    /// ```
    /// use sessionkit_paseto::Key;
    ///
    /// let key = Key::with_paserk_id(&[0x42; 32])?;
    /// assert!(key.kid().starts_with("k4.lid."));
    /// assert_eq!(key.kid(), key.paserk_id());
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn with_paserk_id(secret: &[u8]) -> Result<Key> {
        let probe = Key::new("probe", secret)?;
        Key::new(probe.paserk_id(), secret)
    }

    fn finish(kid: String, key: SymmetricKey<V4>) -> Result<Key> {
        let footer = serde_json::to_vec(&OutFooter { kid: &kid }).map_err(Error::encode)?;
        Ok(Key {
            inner: Arc::new(KeyInner { kid, key, footer }),
        })
    }

    /// The key id written into the footer of every token this key
    /// encrypts.
    ///
    /// ```
    /// assert_eq!(sessionkit_paseto::Key::new("k1", &[1; 32])?.kid(), "k1");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The PASERK local ID of this key (`k4.lid.` and 44 base64url
    /// characters), whatever its [`kid`](Key::kid): a one-way hash that
    /// identifies the key across PASETO implementations without revealing
    /// it.
    ///
    /// ```
    /// let key = sessionkit_paseto::Key::new("k1", &[1; 32])?;
    /// assert_eq!(key.paserk_id().len(), "k4.lid.".len() + 44);
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn paserk_id(&self) -> String {
        let mut id = String::new();
        // Writing into a String cannot fail.
        let _ = Id::from(&self.inner.key).fmt(&mut id);
        id
    }

    pub(crate) fn symmetric(&self) -> &SymmetricKey<V4> {
        &self.inner.key
    }

    pub(crate) fn footer(&self) -> &[u8] {
        &self.inner.footer
    }
}

/// The keys a [`PasetoCodec`](crate::PasetoCodec) knows: one active key
/// that encrypts new tokens, and any number of older keys that still
/// decrypt the tokens they made.
///
/// Key ids are unique in a ring. Cloning copies the list (the keys
/// themselves are shared). `Debug` lists key ids only.
///
/// ```
/// use sessionkit_paseto::{Key, KeyRing};
///
/// let mut ring = KeyRing::new(Key::new("2026-10", &[1; 32])?);
/// ring.rotate(Key::new("2026-11", &[2; 32])?)?; // new tokens use 2026-11
/// assert_eq!(ring.active().kid(), "2026-11");
/// assert!(ring.get("2026-10").is_some());          // old tokens still open
/// assert!(ring.remove("2026-10")?);                 // ...until removed
/// assert_eq!(ring.len(), 1);
/// # Ok::<(), sessionkit_core::Error>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
    active: usize,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active().kid())
            .field("kids", &self.keys.iter().map(Key::kid).collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// A ring whose active key is `active`.
    ///
    /// ```
    /// let ring = sessionkit_paseto::KeyRing::new(sessionkit_paseto::Key::new("k1", &[1; 32])?);
    /// assert_eq!(ring.active().kid(), "k1");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn new(active: Key) -> KeyRing {
        KeyRing {
            keys: vec![active],
            active: 0,
        }
    }

    /// Adds a decryption-only key (builder style); see [`add`](KeyRing::add).
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing};
    /// let ring = KeyRing::new(Key::new("new", &[2; 32])?).with_key(Key::new("old", &[1; 32])?)?;
    /// assert_eq!(ring.len(), 2);
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn with_key(mut self, key: Key) -> Result<KeyRing> {
        self.add(key)?;
        Ok(self)
    }

    /// Adds a key that decrypts tokens but does not encrypt new ones yet.
    /// Reusing a key id is a configuration error (tokens naming it would
    /// become ambiguous).
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing};
    /// let mut ring = KeyRing::new(Key::new("k1", &[1; 32])?);
    /// ring.add(Key::new("k2", &[2; 32])?)?;
    /// assert!(ring.add(Key::new("k2", &[3; 32])?).is_err());
    /// assert_eq!(ring.active().kid(), "k1");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn add(&mut self, key: Key) -> Result<()> {
        if self.get(key.kid()).is_some() {
            return Err(config(format!(
                "key id {:?} is already in the key ring",
                key.kid()
            )));
        }
        self.keys.push(key);
        Ok(())
    }

    /// Makes the key with this id the active key; the previously active
    /// key stays in the ring for decryption.
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing};
    /// let mut ring = KeyRing::new(Key::new("k1", &[1; 32])?).with_key(Key::new("k2", &[2; 32])?)?;
    /// ring.activate("k2")?;
    /// assert_eq!(ring.active().kid(), "k2");
    /// assert!(ring.activate("nope").is_err());
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn activate(&mut self, kid: &str) -> Result<()> {
        self.active = self
            .position(kid)
            .ok_or_else(|| config(format!("key id {kid:?} is not in the key ring")))?;
        Ok(())
    }

    /// Adds `key` and makes it the active key in one step.
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing};
    /// let mut ring = KeyRing::new(Key::new("k1", &[1; 32])?);
    /// ring.rotate(Key::new("k2", &[2; 32])?)?;
    /// assert_eq!((ring.active().kid(), ring.len()), ("k2", 2));
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn rotate(&mut self, key: Key) -> Result<()> {
        let kid = key.kid().to_owned();
        self.add(key)?;
        self.activate(&kid)
    }

    /// Drops a key: tokens it encrypted no longer open (`UnknownKey`).
    /// Returns whether it was in the ring; removing the active key is a
    /// configuration error.
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing};
    /// let mut ring = KeyRing::new(Key::new("k1", &[1; 32])?);
    /// ring.rotate(Key::new("k2", &[2; 32])?)?;
    /// assert!(ring.remove("k2").is_err()); // active
    /// assert!(ring.remove("k1")?);
    /// assert!(!ring.remove("k1")?);
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn remove(&mut self, kid: &str) -> Result<bool> {
        let Some(index) = self.position(kid) else {
            return Ok(false);
        };
        if index == self.active {
            return Err(config(format!(
                "key {kid:?} is the active key; activate another key first"
            )));
        }
        self.keys.remove(index);
        if index < self.active {
            self.active -= 1;
        }
        Ok(true)
    }

    /// The active key, which encrypts new tokens.
    ///
    /// ```
    /// let ring = sessionkit_paseto::KeyRing::new(sessionkit_paseto::Key::new("k1", &[1; 32])?);
    /// assert_eq!(ring.active().kid(), "k1");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn active(&self) -> &Key {
        &self.keys[self.active]
    }

    /// The key with this id.
    ///
    /// ```
    /// let ring = sessionkit_paseto::KeyRing::new(sessionkit_paseto::Key::new("k1", &[1; 32])?);
    /// assert!(ring.get("k1").is_some() && ring.get("k2").is_none());
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid() == kid)
    }

    fn position(&self, kid: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.kid() == kid)
    }

    /// Every key, the active one included, in the order they were added.
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing};
    /// let ring = KeyRing::new(Key::new("a", &[1; 32])?).with_key(Key::new("b", &[2; 32])?)?;
    /// assert_eq!(ring.keys().map(Key::kid).collect::<Vec<_>>(), ["a", "b"]);
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// Number of keys in the ring (at least one).
    ///
    /// ```
    /// let ring = sessionkit_paseto::KeyRing::new(sessionkit_paseto::Key::new("k1", &[1; 32])?);
    /// assert_eq!(ring.len(), 1);
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least its active key.
    ///
    /// ```
    /// let ring = sessionkit_paseto::KeyRing::new(sessionkit_paseto::Key::new("k1", &[1; 32])?);
    /// assert!(!ring.is_empty());
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
