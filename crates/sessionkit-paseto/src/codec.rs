//! [`PasetoCodec`]: the [`TokenCodec`] over pasetors' v4.local.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pasetors::Local;
use pasetors::token::{TrustedToken, UntrustedToken};
use pasetors::version4::{LocalToken, V4};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sessionkit_core::{
    Error, Result, SessionId, Timestamp, TokenClaims, TokenCodec, TokenRejection, validate_subject,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::key::{Key, KeyRing};

/// Default maximum token size: 8 KiB, the request-header limit many proxies
/// and servers apply. A token carried in a cookie must in practice stay
/// below about 4 KiB (the per-cookie limit of browsers): set a lower limit
/// for the cookie transport.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;

/// Largest footer, in bytes after base64url decoding, that is looked at.
/// sessionkit's own footer is `{"kid":"…"}` with at most
/// [`MAX_KID_LEN`](crate::MAX_KID_LEN) bytes of key id.
pub const MAX_FOOTER_LEN: usize = 256;

/// The header (version and purpose) of every token: PASETO v4, `local`.
const HEADER: &str = "v4.local.";

/// Nonce (32) and tag (32) bytes that v4.local adds to the payload.
const OVERHEAD: usize = 64;

fn reject(reason: TokenRejection) -> Error {
    Error::InvalidToken(reason)
}

/// A clock: the current instant, for `exp`, `nbf` and `iat` checks.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Encrypts [`TokenClaims`] into PASETO v4.local tokens and decrypts and
/// verifies them; see the [crate documentation](crate) for the claims
/// layout, the checks, and what the encryption does and does not protect.
///
/// The key ring can be changed while the codec is in use (shared behind an
/// `Arc` by a `SessionManager`): [`rotate`](PasetoCodec::rotate),
/// [`add_key`](PasetoCodec::add_key), [`remove_key`](PasetoCodec::remove_key)
/// swap in a new ring atomically; tokens being decoded concurrently see
/// either the old or the new ring.
///
/// `Debug` shows key ids and settings, never key bytes.
///
/// ```
/// use std::time::Duration;
/// use sessionkit_core::{SessionId, Timestamp, TokenClaims, TokenCodec};
/// use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
///
/// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[42u8; 32])?))
///     .issuer("https://auth.example")
///     .audience("shop")
///     .leeway(Duration::from_secs(30))
///     .build()?;
///
/// let now = Timestamp::now();
/// let claims = TokenClaims {
///     jti: SessionId::generate(),
///     subject: Some("user-7".into()),
///     issued_at: now,
///     expires_at: now + Duration::from_secs(900),
///     not_before: None,
///     session_started_at: now,
///     schema: 1,
///     data: serde_json::json!({ "email": "user7@example.com" }),
/// };
/// let token = codec.encode(&claims)?;
/// assert!(token.starts_with("v4.local."));
/// assert!(!token.contains("user-7")); // encrypted, not just encoded
/// assert_eq!(codec.decode(&token)?.data, claims.data);
/// assert!(!format!("{codec:?}").contains("42, 42"));
/// # Ok::<(), sessionkit_core::Error>(())
/// ```
pub struct PasetoCodec {
    ring: RwLock<Arc<KeyRing>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_token_size: usize,
    allow_missing_kid: bool,
    implicit_assertion: Vec<u8>,
    clock: Clock,
}

impl fmt::Debug for PasetoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring();
        f.debug_struct("PasetoCodec")
            .field("active_kid", &ring.active().kid())
            .field("kids", &ring.keys().map(Key::kid).collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_token_size", &self.max_token_size)
            .field("allow_missing_kid", &self.allow_missing_kid)
            .field("implicit_assertion_len", &self.implicit_assertion.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`PasetoCodec`]; start with [`PasetoCodec::builder`].
///
/// ```
/// use std::time::Duration;
/// use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
///
/// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?))
///     .leeway(Duration::from_secs(5))
///     .max_token_size(4000)
///     .build()?;
/// assert_eq!(codec.max_token_size(), 4000);
/// # Ok::<(), sessionkit_core::Error>(())
/// ```
pub struct PasetoCodecBuilder {
    ring: KeyRing,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_token_size: usize,
    allow_missing_kid: bool,
    implicit_assertion: Vec<u8>,
    clock: Clock,
}

impl fmt::Debug for PasetoCodecBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasetoCodecBuilder")
            .field("ring", &self.ring)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_token_size", &self.max_token_size)
            .field("allow_missing_kid", &self.allow_missing_kid)
            .field("implicit_assertion_len", &self.implicit_assertion.len())
            .finish_non_exhaustive()
    }
}

impl PasetoCodecBuilder {
    /// The issuer (`iss`) written into every token and required of every
    /// token decoded. Without one, `iss` is neither written nor checked.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?))
    ///     .issuer("https://auth.example")
    ///     .build()?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The audience (`aud`, a string in PASETO) written into every token
    /// and required of every token decoded. Without one, a token that has
    /// an `aud` is rejected: it was meant for someone else.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?))
    ///     .audience("shop")
    ///     .build()?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock skew tolerated on `exp`, `nbf`, `iat` and the session start
    /// (default zero). A revoked token is remembered until `exp` plus this
    /// leeway.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sessionkit_core::TokenCodec;
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?))
    ///     .leeway(Duration::from_secs(30))
    ///     .build()?;
    /// assert_eq!(codec.leeway(), Duration::from_secs(30));
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Largest token, in bytes, that is encoded or even looked at when
    /// decoding (default [`DEFAULT_MAX_TOKEN_SIZE`], 8 KiB; at least 256).
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let builder = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?));
    /// assert!(builder.max_token_size(100).build().is_err()); // cannot hold a token
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// Whether a token without a footer `kid` is accepted when the ring
    /// holds exactly one key (default `false`: every token must name its
    /// key). Meant only for tokens from issuers that write no footer; as
    /// soon as the ring holds a second key such tokens are `UnknownKey`
    /// again, since which key made them is ambiguous.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?))
    ///     .allow_missing_kid(true)
    ///     .build()?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn allow_missing_kid(mut self, allow: bool) -> Self {
        self.allow_missing_kid = allow;
        self
    }

    /// A PASETO v4 implicit assertion (default empty): bytes that are
    /// authenticated with every token but never sent. A token made with
    /// other bytes, or none, fails to decrypt (`Signature`). Use it to bind
    /// tokens to their purpose or deployment (`b"shop-sessions/prod"`), so
    /// that a token minted with the same key for something else is not
    /// accepted as a session; every issuer and reader must use the same
    /// bytes.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?))
    ///     .implicit_assertion(b"shop-sessions/prod")
    ///     .build()?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn implicit_assertion(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.implicit_assertion = bytes.into();
        self
    }

    /// Replaces the clock used for `exp`, `nbf` and `iat` checks (default
    /// [`Timestamp::now`]); for tests and for checking old tokens at the
    /// instant they were used.
    ///
    /// ```
    /// # use sessionkit_core::Timestamp;
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?))
    ///     .clock(|| Timestamp::from_secs(1_800_000_000))
    ///     .build()?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the codec. An empty issuer or audience, or a size limit
    /// below 256 bytes, is `Error::Config`.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let builder = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?));
    /// assert!(builder.issuer("").build().is_err());
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn build(self) -> Result<PasetoCodec> {
        if self.max_token_size < 256 {
            return Err(Error::Config(format!(
                "max_token_size of {} bytes cannot hold a session token",
                self.max_token_size
            )));
        }
        for (what, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(Error::Config(format!("the {what} must not be empty")));
            }
        }
        Ok(PasetoCodec {
            ring: RwLock::new(Arc::new(self.ring)),
            issuer: self.issuer,
            audience: self.audience,
            leeway: self.leeway,
            max_token_size: self.max_token_size,
            allow_missing_kid: self.allow_missing_kid,
            implicit_assertion: self.implicit_assertion,
            clock: self.clock,
        })
    }
}

/// The claims as written: PASETO's registered names, then sessionkit's
/// private short names (see the crate documentation).
#[derive(Serialize)]
struct OutClaims<'a> {
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    iat: String,
    #[serde(skip_serializing_if = "is_zero")]
    ims: u16,
    exp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<String>,
    sst: i64,
    sch: u32,
    #[serde(skip_serializing_if = "Value::is_null")]
    dat: &'a Value,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

/// The claims as read. A duplicated member is an error (serde's derived
/// struct deserializer refuses it), as PASETO requires.
#[derive(Deserialize)]
struct InClaims<'a> {
    #[serde(borrow)]
    jti: Option<Cow<'a, str>>,
    sub: Option<String>,
    #[serde(borrow)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow)]
    aud: Option<Cow<'a, str>>,
    #[serde(borrow)]
    iat: Option<Cow<'a, str>>,
    ims: Option<u16>,
    #[serde(borrow)]
    exp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    nbf: Option<Cow<'a, str>>,
    sst: Option<i64>,
    sch: Option<u32>,
    #[serde(default)]
    dat: Value,
}

/// The footer as read: a flat object whose only member is `kid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InFooter<'a> {
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
}

/// A PASETO DateTime (RFC 3339, `Z` or a numeric offset) for whole seconds.
fn datetime(secs: i64) -> Result<String> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(Error::encode)?
        .format(&Rfc3339)
        .map_err(Error::encode)
}

/// Parses a PASETO DateTime into milliseconds since the epoch (sub-ms
/// digits truncated), and whether it had a sub-second part. Only an
/// uppercase `T` between date and time and an uppercase `Z` are accepted,
/// as PASETO requires (RFC 3339 parsers also take `t`, `z` or a space).
fn parse_datetime(text: &str) -> Result<(i64, bool)> {
    let malformed = || reject(TokenRejection::Malformed);
    // `YYYY-MM-DD` is always 10 bytes: the separator follows.
    if text.len() > 64
        || text.as_bytes().get(10) != Some(&b'T')
        || text.bytes().any(|b| b == b't' || b == b'z')
    {
        return Err(malformed());
    }
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| malformed())?;
    let ms =
        i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| malformed())?;
    Ok((ms, at.nanosecond() != 0))
}

/// Whether the first non-blank byte is `{`: PASETO payloads and
/// sessionkit footers are JSON objects (serde would also read an array
/// into a struct).
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The value of a base64url character (the alphabet was checked before).
fn b64_value(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    }
}

/// Unpadded base64url in canonical form: a possible length, and no bits
/// set in the unused low bits of the last character. Otherwise several
/// strings would decode to the same token.
fn canonical_b64(text: &str) -> bool {
    let unused_bits = match text.len() % 4 {
        0 => return true,
        1 => return false,
        2 => 4,
        _ => 2,
    };
    let last = text.as_bytes()[text.len() - 1];
    b64_value(last) & ((1 << unused_bits) - 1) == 0
}

/// Whether `token` starts like a PASETO of another version or purpose
/// (`v2.local.`, `v4.public.`, …).
fn other_paseto_header(token: &str) -> bool {
    let mut parts = token.splitn(3, '.');
    let (Some(version), Some(purpose), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    version.len() > 1
        && version.starts_with('v')
        && version[1..].bytes().all(|b| b.is_ascii_digit())
        && (purpose == "local" || purpose == "public")
}

impl PasetoCodec {
    /// Starts a builder over a key ring.
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::builder(KeyRing::new(Key::new("k1", &[1; 32])?)).build()?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn builder(ring: KeyRing) -> PasetoCodecBuilder {
        PasetoCodecBuilder {
            ring,
            issuer: None,
            audience: None,
            leeway: Duration::ZERO,
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            allow_missing_kid: false,
            implicit_assertion: Vec::new(),
            clock: Arc::new(Timestamp::now),
        }
    }

    /// A codec with default settings: no issuer or audience, no leeway, no
    /// implicit assertion, 8 KiB maximum token size, `kid` required.
    ///
    /// ```
    /// use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// assert_eq!(codec.active_kid(), "k1");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn new(ring: KeyRing) -> Result<PasetoCodec> {
        Self::builder(ring).build()
    }

    fn ring(&self) -> Arc<KeyRing> {
        // A poisoned lock only means a writer panicked while holding it; the
        // Arc inside is always a complete ring, so keep using it.
        match self.ring.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn modify(&self, f: impl FnOnce(&mut KeyRing) -> Result<()>) -> Result<()> {
        let mut guard = match self.ring.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut ring = KeyRing::clone(&guard);
        f(&mut ring)?;
        *guard = Arc::new(ring);
        Ok(())
    }

    /// A snapshot of the current key ring.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// assert_eq!(codec.key_ring().len(), 1);
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn key_ring(&self) -> KeyRing {
        KeyRing::clone(&self.ring())
    }

    /// Replaces the whole key ring.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// codec.set_key_ring(KeyRing::new(Key::new("k9", &[9; 32])?));
    /// assert_eq!(codec.active_kid(), "k9");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn set_key_ring(&self, ring: KeyRing) {
        // Replacing cannot fail.
        let _ = self.modify(|r| {
            *r = ring;
            Ok(())
        });
    }

    /// Adds `key` and encrypts with it from now on; the previous active key
    /// keeps decrypting until [removed](PasetoCodec::remove_key).
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// codec.rotate(Key::new("k2", &[2; 32])?)?;
    /// assert_eq!(codec.active_kid(), "k2");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn rotate(&self, key: Key) -> Result<()> {
        self.modify(|r| r.rotate(key))
    }

    /// Adds a decryption-only key (see [`KeyRing::add`]): the first step
    /// of a rotation across several instances, so that every instance can
    /// read tokens of the new key before any instance makes them.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// codec.add_key(Key::new("k2", &[2; 32])?)?;
    /// assert_eq!(codec.active_kid(), "k1");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn add_key(&self, key: Key) -> Result<()> {
        self.modify(|r| r.add(key))
    }

    /// Makes a key of the ring the active key.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// codec.add_key(Key::new("k2", &[2; 32])?)?;
    /// codec.activate("k2")?;
    /// assert_eq!(codec.active_kid(), "k2");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn activate(&self, kid: &str) -> Result<()> {
        self.modify(|r| r.activate(kid))
    }

    /// Drops a key: tokens it encrypted are rejected with `UnknownKey` from
    /// now on. Removing the active key is a configuration error.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// codec.rotate(Key::new("k2", &[2; 32])?)?;
    /// assert!(codec.remove_key("k1")?);
    /// assert!(codec.remove_key("k2").is_err()); // the active key
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn remove_key(&self, kid: &str) -> Result<bool> {
        let mut removed = false;
        self.modify(|r| {
            removed = r.remove(kid)?;
            Ok(())
        })?;
        Ok(removed)
    }

    /// The id of the key new tokens are encrypted with.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// assert_eq!(codec.active_kid(), "k1");
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn active_kid(&self) -> String {
        self.ring().active().kid().to_owned()
    }

    /// The configured maximum token size in bytes.
    ///
    /// ```
    /// # use sessionkit_paseto::{Key, KeyRing, PasetoCodec, DEFAULT_MAX_TOKEN_SIZE};
    /// let codec = PasetoCodec::new(KeyRing::new(Key::new("k1", &[1; 32])?))?;
    /// assert_eq!(codec.max_token_size(), DEFAULT_MAX_TOKEN_SIZE);
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn max_token_size(&self) -> usize {
        self.max_token_size
    }

    /// Checks size, structure and footer, picks the key by `kid`, and
    /// decrypts: the authenticated plaintext, not yet parsed.
    fn open(&self, token: &str) -> Result<TrustedToken> {
        // Size first: nothing of an oversized token is parsed.
        if token.len() > self.max_token_size {
            return Err(reject(TokenRejection::TooLarge));
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(reject(TokenRejection::Malformed));
        }
        let Some(rest) = token.strip_prefix(HEADER) else {
            // No algorithm choice in PASETO: another version or purpose is
            // another algorithm, never tried with our keys.
            return Err(reject(if other_paseto_header(token) {
                TokenRejection::Algorithm
            } else {
                TokenRejection::Malformed
            }));
        };
        let (body, footer_b64) = match rest.split_once('.') {
            Some((body, footer)) => (body, Some(footer)),
            None => (rest, None),
        };
        // The body holds nonce, ciphertext of a non-empty payload and tag.
        if body.len() <= base64::encoded_len(OVERHEAD, false).unwrap_or(usize::MAX)
            || !canonical_b64(body)
        {
            return Err(reject(TokenRejection::Malformed));
        }
        let kid = match footer_b64 {
            None => None,
            Some(footer_b64) => {
                // An empty footer segment authenticates like no footer at
                // all: refused, so that each token has one spelling.
                if footer_b64.is_empty()
                    || footer_b64.contains('.')
                    || footer_b64.len()
                        > base64::encoded_len(MAX_FOOTER_LEN, false).unwrap_or(usize::MAX)
                {
                    return Err(reject(TokenRejection::Malformed));
                }
                let footer = URL_SAFE_NO_PAD
                    .decode(footer_b64)
                    .map_err(|_| reject(TokenRejection::Malformed))?;
                if !is_object(&footer) {
                    return Err(reject(TokenRejection::Malformed));
                }
                let footer: InFooter<'_> = serde_json::from_slice(&footer)
                    .map_err(|_| reject(TokenRejection::Malformed))?;
                footer.kid.map(Cow::into_owned)
            }
        };
        let ring = self.ring();
        let key = match kid.as_deref() {
            Some(kid) => ring.get(kid),
            None if self.allow_missing_kid && ring.len() == 1 => Some(ring.active()),
            None => None,
        }
        .ok_or(reject(TokenRejection::UnknownKey))?;
        let untrusted = UntrustedToken::<Local, V4>::try_from(token)
            .map_err(|_| reject(TokenRejection::Malformed))?;
        // The footer (with the kid) and the implicit assertion are
        // authenticated together with the ciphertext: a wrong key, a
        // changed byte anywhere, or another implicit assertion all fail
        // here, before anything is decrypted.
        let trusted = LocalToken::decrypt(
            key.symmetric(),
            &untrusted,
            None,
            Some(&self.implicit_assertion),
        )
        .map_err(|e| {
            reject(match e {
                pasetors::errors::Error::PayloadInvalidUtf8 => TokenRejection::Malformed,
                _ => TokenRejection::Signature,
            })
        })?;
        Ok(trusted)
    }

    /// An issue instant (ms) later than now plus the leeway is refused: a
    /// token from the future would outlive every not-before instant.
    fn check_not_future(&self, issued_ms: i64, now: i64) -> Result<()> {
        let leeway = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        if issued_ms > now.saturating_add(leeway) {
            return Err(reject(TokenRejection::IssuedInFuture));
        }
        Ok(())
    }
}

impl TokenCodec for PasetoCodec {
    fn encode(&self, claims: &TokenClaims) -> Result<String> {
        if let Some(subject) = &claims.subject {
            validate_subject(subject)?;
        }
        let issued = claims.issued_at.as_millis();
        let out = OutClaims {
            jti: claims.jti.as_str(),
            sub: claims.subject.as_deref(),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
            iat: datetime(issued.div_euclid(1000))?,
            // rem_euclid(1000) is always in 0..1000.
            ims: issued.rem_euclid(1000) as u16,
            // Whole seconds, rounded down: a token never outlives what was asked.
            exp: datetime(claims.expires_at.as_secs())?,
            nbf: claims
                .not_before
                .map(|t| datetime(t.as_secs()))
                .transpose()?,
            sst: claims.session_started_at.as_millis(),
            sch: claims.schema,
            dat: &claims.data,
        };
        let payload = serde_json::to_vec(&out).map_err(Error::encode)?;
        let ring = self.ring();
        let key = ring.active();
        let size = HEADER.len()
            + base64::encoded_len(OVERHEAD + payload.len(), false).unwrap_or(usize::MAX)
            + 1
            + base64::encoded_len(key.footer().len(), false).unwrap_or(usize::MAX);
        if size > self.max_token_size {
            return Err(Error::TooLarge {
                size,
                limit: self.max_token_size,
            });
        }
        let token = LocalToken::encrypt(
            key.symmetric(),
            &payload,
            Some(key.footer()),
            Some(&self.implicit_assertion),
        )
        .map_err(|e| Error::encode(format!("PASETO v4.local encryption failed: {e:?}")))?;
        if token.len() > self.max_token_size {
            return Err(Error::TooLarge {
                size: token.len(),
                limit: self.max_token_size,
            });
        }
        Ok(token)
    }

    fn decode(&self, token: &str) -> Result<TokenClaims> {
        let trusted = self.open(token)?;
        let payload = trusted.payload();
        let malformed = || reject(TokenRejection::Malformed);
        let missing = || reject(TokenRejection::MissingClaim);
        if !is_object(payload.as_bytes()) {
            return Err(malformed());
        }
        let c: InClaims<'_> = serde_json::from_str(payload).map_err(|_| malformed())?;
        let now = (self.clock)().as_millis();
        let leeway = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);

        // Registered claims, in the order JwtCodec checks them.
        let (exp, _) = parse_datetime(&c.exp.ok_or_else(missing)?)?;
        let nbf = c.nbf.as_deref().map(parse_datetime).transpose()?;
        let iat = c.iat.as_deref().map(parse_datetime).transpose()?;
        // Valid only while now < exp, give or take leeway.
        if now >= exp.saturating_add(leeway) {
            return Err(reject(TokenRejection::Expired));
        }
        if let Some((nbf, _)) = nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(reject(TokenRejection::NotYetValid));
        }
        if let Some(expected) = &self.issuer {
            match c.iss.as_deref() {
                None => return Err(missing()),
                Some(iss) if iss != expected => return Err(reject(TokenRejection::Issuer)),
                Some(_) => {}
            }
        }
        match (&self.audience, c.aud.as_deref()) {
            (Some(_), None) => return Err(missing()),
            (Some(expected), Some(aud)) if aud != expected => {
                return Err(reject(TokenRejection::Audience));
            }
            // A token meant for some audience, presented to a codec that
            // belongs to none, is not for us.
            (None, Some(_)) => return Err(reject(TokenRejection::Audience)),
            _ => {}
        }

        // sessionkit's claims.
        let jti = SessionId::parse(&c.jti.ok_or_else(missing)?).map_err(|_| malformed())?;
        if let Some(subject) = &c.sub {
            validate_subject(subject).map_err(|_| malformed())?;
        }
        let (iat, iat_has_fraction) = iat.ok_or_else(missing)?;
        let issued_at = match c.ims {
            None => iat,
            // The milliseconds are either in `iat` or in `ims`, never both.
            Some(ims) if ims < 1000 && !iat_has_fraction => iat.saturating_add(i64::from(ims)),
            Some(_) => return Err(malformed()),
        };
        let session_started_at = c.sst.ok_or_else(missing)?;
        // Neither the token nor its session may claim to start later than
        // now: log-out-everywhere compares these instants.
        self.check_not_future(issued_at, now)?;
        self.check_not_future(session_started_at, now)?;
        Ok(TokenClaims {
            jti,
            subject: c.sub,
            issued_at: Timestamp::from_millis(issued_at),
            expires_at: Timestamp::from_millis(exp),
            not_before: nbf.map(|(ms, _)| Timestamp::from_millis(ms)),
            session_started_at: Timestamp::from_millis(session_started_at),
            schema: c.sch.ok_or_else(missing)?,
            data: c.dat,
        })
    }

    fn leeway(&self) -> Duration {
        self.leeway
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_base64_tails() {
        assert!(canonical_b64("AAAA"));
        assert!(canonical_b64("AA"));
        assert!(!canonical_b64("AB")); // low 4 bits set
        assert!(canonical_b64("AAA"));
        assert!(!canonical_b64("AAB")); // low 2 bits set
        assert!(!canonical_b64("AAAAA"));
    }

    #[test]
    fn datetimes_parse_strictly() {
        assert_eq!(
            parse_datetime("2026-12-04T08:05:35Z").unwrap(),
            (1_796_371_535_000, false)
        );
        assert_eq!(
            parse_datetime("2026-12-04T09:05:35.1239+01:00").unwrap(),
            (1_796_371_535_123, true)
        );
        for bad in [
            "2026-12-04t08:05:35Z",
            "2026-12-04T08:05:35z",
            "2026-12-04 08:05:35Z",
            "1796371535",
            "",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
        assert_eq!(datetime(1_796_371_535).unwrap(), "2026-12-04T08:05:35Z");
    }

    #[test]
    fn other_headers() {
        assert!(other_paseto_header("v4.public.abc"));
        assert!(other_paseto_header("v2.local.abc"));
        assert!(!other_paseto_header("v4.secret.abc"));
        assert!(!other_paseto_header("x4.local.abc"));
        assert!(!other_paseto_header("v.local.abc"));
    }
}
