//! Hybrid sessions: short-lived stateless access tokens plus rotating,
//! stateful refresh-token families with reuse detection.
//!
//! The trade-off between the two architectures is that stateless tokens
//! need no lookup but cannot be ended early, while stateful sessions can be
//! ended at once but cost a store round trip per request. The hybrid takes
//! the best of both:
//!
//! - an **access token** is a short-lived signed token (five minutes by
//!   default) issued by any [`TokenCodec`]; checking it costs the codec's
//!   verification plus the [`RevocationList`] check that stateless sessions
//!   already do, and no other lookup ([`HybridManager::verify`]);
//! - a **refresh token** is opaque and belongs to a *family*: one login on
//!   one device. The family is a record in any [`SessionStore`] (its subject
//!   is the user, so the user's families can be listed and ended together).
//!   Every use rotates the refresh token ([`HybridManager::refresh`]); the
//!   rotation is a compare-and-swap on the family record, so of N
//!   concurrent refreshes with one token exactly one wins.
//!
//! # Reuse detection (RFC 9700, section 4.14.2)
//!
//! A refresh token can be used once. Presenting an authentic refresh token
//! of an older generation means that two parties hold the family (the
//! legitimate client and a thief, in some order); the server cannot tell
//! which is which, so it ends the family: every refresh token *and every
//! access token* ever issued in it stop working, and both parties must log
//! in again. Two concurrent refreshes with one token count as reuse too
//! (one wins, the other presents a token that was just rotated), unless a
//! *reuse grace window* is configured ([`HybridBuilder::reuse_grace`], off
//! by default): within it, a duplicate refresh of the token that was just
//! rotated gets the family's current refresh token (the very same one the
//! winner got) and a fresh access token, instead of ending the family.
//!
//! # Refresh tokens
//!
//! A refresh token is 57 bytes in URL-safe base64 (76 characters): a format
//! byte, the family ID, the generation, and an HMAC-SHA256 over the three
//! keyed with a server secret ([`HybridBuilder::secret`]) and bound to a
//! random per-family key kept in the family record. So a token is useless
//! without the server (its secret *and* its store), a forged or tampered
//! token (another family ID, another generation, a flipped byte) is
//! rejected as [`RefreshRejection::Invalid`] without touching any family,
//! and only an authentic token of an older generation counts as reuse.
//! The store holds no refresh token, only the per-family key.
//!
//! # Killing a family
//!
//! Every access token of a family carries the family ID as its token ID
//! (`jti`) and the login instant as its session start. Ending a family
//! ([`logout`](HybridManager::logout), reuse,
//! [`revoke_family`](HybridManager::revoke_family)) revokes that token ID in
//! the revocation list until the last access token issued in the family has
//! expired, then deletes the family record; "log out everywhere"
//! ([`logout_everywhere`](HybridManager::logout_everywhere)) sets the
//! subject's not-before instant in the revocation list, which rejects every
//! access token of every family started before it, then deletes the
//! families. The revocation list may share the families' store: their
//! records never collide.
//!
//! # Instants and clocks
//!
//! Revocations are kept for the access-token lifetime plus the codec's
//! leeway plus one minute, which absorbs the duration of a kill and the
//! clock differences between application hosts: keep them NTP-synchronised.
//!
//! [`TokenCodec`]: crate::TokenCodec
//! [`RevocationList`]: crate::RevocationList
//! [`SessionStore`]: crate::SessionStore

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, TokenRejection};
use crate::id::{ID_BYTES, SessionId};
use crate::manager::{SessionData, retry_aborted};
use crate::record::{Record, validate_subject};
use crate::revocation::RevocationList;
use crate::store::SessionStore;
use crate::timestamp::Timestamp;
use crate::token::{TokenClaims, TokenCodec};

type HmacSha256 = Hmac<Sha256>;

/// The length of a refresh token's text form.
pub const REFRESH_TOKEN_LEN: usize = 76;
/// The shortest refresh secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const TOKEN_FORMAT: u8 = 1;
const MAC_LEN: usize = 32;
const FAMILY_KEY_LEN: usize = 32;
const TOKEN_BYTES: usize = 1 + ID_BYTES + 8 + MAC_LEN;
const MAC_DOMAIN: &[u8] = b"sessionkit/hybrid/refresh/v1\0";
const RECORD_DOMAIN: &[u8] = b"sessionkit/hybrid/family\0";
const FAMILY_KIND: &str = "sessionkit.family";
const ACCESS_KIND: &str = "sessionkit.access";
/// Every family payload starts with these bytes (serde writes the fields
/// in declaration order), so foreign records are skipped without parsing.
const FAMILY_PREFIX: &[u8] = b"{\"kind\":\"sessionkit.family\"";
/// Added to every revocation's lifetime: covers the duration of a kill and
/// clock differences between hosts.
const KILL_MARGIN: Duration = Duration::from_secs(60);
/// Compare-and-swap attempts of one refresh; after one lost race the
/// presented token is stale, so two suffice.
const REFRESH_ATTEMPTS: usize = 4;
/// How many times a store call the backend rolled back (a deadlock victim)
/// is run again.
const ABORTED_RETRIES: u32 = 100;
/// Passes of `delete_subject` in `logout_everywhere`.
const DELETE_SUBJECT_PASSES: usize = 4;
/// Longest client metadata field kept, in bytes.
pub const MAX_CLIENT_FIELD: usize = 256;

// ------------------------------------------------------------------ types

/// The ID of a refresh-token family: one login on one device.
///
/// Not a bearer secret (refresh tokens need the server's secret, and access
/// tokens carry it as their `jti`), but `Debug` shows only a prefix like
/// every ID in sessionkit. [`FamilyId::as_str`] gives the whole value, for
/// instance for a "sign out this device" button.
///
/// ```
/// use sessionkit_core::FamilyId;
/// assert!(FamilyId::parse("not a family").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FamilyId(SessionId);

impl FamilyId {
    fn generate() -> Result<Self> {
        SessionId::try_generate().map(FamilyId)
    }

    /// Parses the text form strictly ([`Error::InvalidId`] otherwise).
    pub fn parse(text: &str) -> Result<Self> {
        SessionId::parse(text).map(FamilyId)
    }

    /// The whole text form (22 characters, URL-safe base64).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The token ID (`jti`) that every access token of this family carries,
    /// and under which the revocation list revokes them.
    pub fn token_id(&self) -> SessionId {
        self.0
    }

    /// A short prefix for logs.
    pub fn redacted(&self) -> String {
        self.0.redacted()
    }

    /// The key of the family record: derived, so that it never collides
    /// with the revocation list's record for the same ID when both share a
    /// store.
    fn storage_key(&self) -> SessionId {
        let digest = Sha256::new()
            .chain_update(RECORD_DOMAIN)
            .chain_update(self.0.to_bytes())
            .finalize();
        let mut raw = [0u8; ID_BYTES];
        raw.copy_from_slice(&digest[..ID_BYTES]);
        SessionId::from_bytes(raw)
    }
}

impl fmt::Debug for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FamilyId({})", self.redacted())
    }
}

/// What the client gets at login and at every refresh: an access token and
/// the family's current refresh token. Both are secrets: `Debug` shows
/// neither.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    access_token: String,
    access_expires_at: Timestamp,
    refresh_token: String,
    refresh_expires_at: Timestamp,
    family: FamilyId,
    generation: u64,
}

impl TokenPair {
    /// The access token, for `Authorization: Bearer` (or a cookie).
    pub fn access_token(&self) -> &str {
        &self.access_token
    }
    /// When the access token expires (whole seconds, as tokens carry it).
    pub fn access_expires_at(&self) -> Timestamp {
        self.access_expires_at
    }
    /// The refresh token: single use, keep it where scripts cannot read it.
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }
    /// When the family expires unless refreshed again (the earlier of its
    /// idle and absolute deadlines).
    pub fn refresh_expires_at(&self) -> Timestamp {
        self.refresh_expires_at
    }
    /// The family this pair belongs to.
    pub fn family(&self) -> FamilyId {
        self.family
    }
    /// The refresh token's generation: 1 at login, +1 at every rotation.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("family", &self.family)
            .field("generation", &self.generation)
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

/// Optional description of the client a family was started from, shown on
/// a "your devices" page. Each field keeps at most [`MAX_CLIENT_FIELD`]
/// bytes (longer values are cut at a character boundary).
///
/// ```
/// use sessionkit_core::ClientInfo;
/// let client = ClientInfo::new()
///     .with_name("Alice's phone")
///     .with_user_agent("x".repeat(1000));
/// assert_eq!(client.name(), Some("Alice's phone"));
/// assert_eq!(client.user_agent().unwrap().len(), 256);
/// assert_eq!(client.address(), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

fn bounded(text: impl Into<String>) -> String {
    let mut text = text.into();
    if text.len() > MAX_CLIENT_FIELD {
        let mut end = MAX_CLIENT_FIELD;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl ClientInfo {
    /// No metadata.
    pub fn new() -> Self {
        Self::default()
    }
    /// A name for the device, chosen by the user or the application.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(bounded(name));
        self
    }
    /// The `User-Agent` the login came with.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(bounded(user_agent));
        self
    }
    /// The network address the login came from.
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(bounded(address));
        self
    }
    /// The device name, if set.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The user agent, if set.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }
    /// The network address, if set.
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }
}

/// One live family of a subject, for a "your devices" page
/// ([`HybridManager::families`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FamilyInfo {
    /// The family (compare it with [`AccessClaims::family`] to mark the
    /// current device; give it to [`HybridManager::revoke_family`]).
    pub id: FamilyId,
    /// The user.
    pub subject: String,
    /// The login.
    pub created_at: Timestamp,
    /// The last refresh (the login if none yet).
    pub last_used: Timestamp,
    /// When the family expires unless refreshed again.
    pub expires_at: Timestamp,
    /// How many refresh tokens the family has had (1 right after login).
    pub generation: u64,
    /// What the client said about itself at login.
    pub client: ClientInfo,
}

/// A verified access token ([`HybridManager::verify`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AccessClaims<T> {
    /// The family the token was issued in.
    pub family: FamilyId,
    /// The user.
    pub subject: String,
    /// The application's data, as given at login.
    pub data: T,
    /// When this access token was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// When the family started (the login).
    pub session_started_at: Timestamp,
}

/// Why a refresh token was refused. Every one is the client's problem (a
/// web layer answers 401 with [`RefreshRejection::as_str`] as the reason),
/// never a server error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshRejection {
    /// No refresh token was presented (used by web layers).
    #[error("no refresh token was presented")]
    Missing,
    /// Not a refresh token at all (wrong length, alphabet or format).
    #[error("the refresh token is malformed")]
    Malformed,
    /// Well-formed but not issued by this server for this family: forged
    /// or tampered (or signed with a secret that was since retired). No
    /// family was touched.
    #[error("the refresh token is not authentic")]
    Invalid,
    /// Its family no longer exists: it expired, was logged out, revoked or
    /// ended because of reuse.
    #[error("the refresh token's session has ended")]
    Ended,
    /// Its family was revoked or logged out everywhere (and is removed
    /// now).
    #[error("the refresh token's session was revoked")]
    Revoked,
    /// Its family is past its absolute timeout.
    #[error("the refresh token's session has expired")]
    Expired,
    /// An authentic refresh token that was already used: the family was
    /// ended just now, with every token issued in it.
    #[error("the refresh token was already used; its session was ended")]
    Reused,
}

impl RefreshRejection {
    /// A short machine-readable reason: `missing`, `malformed`, `invalid`,
    /// `ended`, `revoked`, `expired` or `reused`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RefreshRejection::Missing => "missing",
            RefreshRejection::Malformed => "malformed",
            RefreshRejection::Invalid => "invalid",
            RefreshRejection::Ended => "ended",
            RefreshRejection::Revoked => "revoked",
            RefreshRejection::Expired => "expired",
            RefreshRejection::Reused => "reused",
        }
    }
}

/// The error of [`HybridManager::refresh`] and [`HybridManager::logout`]:
/// either the presented token was refused (401), or the operation failed
/// (a backend error: 503 when [transient](RefreshError::is_transient)).
/// Whenever it is returned, no token was handed out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The refresh token was refused; the reason says why.
    #[error("refresh token refused: {0}")]
    Rejected(RefreshRejection),
    /// A store, the revocation list or the codec failed.
    #[error(transparent)]
    Session(#[from] Error),
}

impl From<RefreshRejection> for RefreshError {
    fn from(rejection: RefreshRejection) -> Self {
        RefreshError::Rejected(rejection)
    }
}

impl RefreshError {
    /// The rejection, when the token was refused.
    ///
    /// ```
    /// use sessionkit_core::{RefreshError, RefreshRejection};
    /// let e = RefreshError::from(RefreshRejection::Reused);
    /// assert_eq!(e.rejection(), Some(RefreshRejection::Reused));
    /// assert!(!e.is_transient());
    /// ```
    pub fn rejection(&self) -> Option<RefreshRejection> {
        match self {
            RefreshError::Rejected(r) => Some(*r),
            RefreshError::Session(_) => None,
        }
    }

    /// Whether the same call may succeed later (a transient backend
    /// failure, a timeout): a web layer answers 503 with `Retry-After`.
    pub fn is_transient(&self) -> bool {
        matches!(self, RefreshError::Session(e) if e.is_transient())
    }
}

/// Counters kept by a [`HybridManager`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HybridStats {
    /// Successful rotations.
    pub refreshed: u64,
    /// Families ended because an already-used refresh token came back.
    pub reuse_detected: u64,
    /// Duplicate refreshes answered within the reuse grace window.
    pub grace_answers: u64,
    /// Refresh tokens refused as not authentic (forged or tampered).
    pub invalid: u64,
}

#[derive(Default)]
struct Counters {
    refreshed: AtomicU64,
    reuse_detected: AtomicU64,
    grace_answers: AtomicU64,
    invalid: AtomicU64,
}

// ----------------------------------------------------------- stored state

/// The family record's payload (JSON).
#[derive(Serialize, Deserialize)]
struct FamilyState {
    kind: String,
    family: FamilyId,
    /// Per-family MAC key, URL-safe base64.
    key: String,
    generation: u64,
    /// When the last rotation happened (for the grace window).
    #[serde(default)]
    rotated_at: Option<Timestamp>,
    last_used: Timestamp,
    #[serde(default)]
    client: ClientInfo,
    data: serde_json::Value,
}

impl FamilyState {
    fn encode(&self) -> Result<Bytes> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(Error::encode)
    }

    fn decode(payload: &[u8]) -> Result<FamilyState> {
        let state: FamilyState = serde_json::from_slice(payload).map_err(Error::decode)?;
        if state.kind != FAMILY_KIND {
            return Err(Error::decode("not a refresh family record"));
        }
        Ok(state)
    }

    fn family_key(&self) -> Result<[u8; FAMILY_KEY_LEN]> {
        let raw = URL_SAFE_NO_PAD
            .decode(&self.key)
            .map_err(|_| Error::decode("malformed family key"))?;
        raw.try_into()
            .map_err(|_| Error::decode("malformed family key"))
    }
}

/// What an access token carries as its data: a marker, so that another
/// token signed with the same key (a stateless session) is never taken for
/// an access token, and the application's data.
#[derive(Serialize, Deserialize)]
struct AccessData<D> {
    kind: String,
    data: D,
}

/// A parsed refresh token.
struct Presented {
    family: FamilyId,
    generation: u64,
    mac: [u8; MAC_LEN],
}

fn parse_refresh(token: &str) -> std::result::Result<Presented, RefreshRejection> {
    let bytes = token.as_bytes();
    if bytes.len() != REFRESH_TOKEN_LEN
        || !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return Err(RefreshRejection::Malformed);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(bytes)
        .map_err(|_| RefreshRejection::Malformed)?;
    if raw.len() != TOKEN_BYTES || raw[0] != TOKEN_FORMAT {
        return Err(RefreshRejection::Malformed);
    }
    let mut id = [0u8; ID_BYTES];
    id.copy_from_slice(&raw[1..1 + ID_BYTES]);
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&raw[1 + ID_BYTES..1 + ID_BYTES + 8]);
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&raw[1 + ID_BYTES + 8..]);
    Ok(Presented {
        family: FamilyId(SessionId::from_bytes(id)),
        generation: u64::from_be_bytes(generation),
        mac,
    })
}

/// The server's refresh secrets: the current one signs, every one verifies.
struct Keys {
    current: HmacSha256,
    previous: Vec<HmacSha256>,
}

impl Keys {
    fn mac(key: &HmacSha256, family: FamilyId, generation: u64, family_key: &[u8]) -> HmacSha256 {
        let mut mac = key.clone();
        mac.update(MAC_DOMAIN);
        mac.update(&family.0.to_bytes());
        mac.update(&generation.to_be_bytes());
        mac.update(family_key);
        mac
    }

    fn token(&self, family: FamilyId, generation: u64, family_key: &[u8]) -> String {
        let tag = Self::mac(&self.current, family, generation, family_key)
            .finalize()
            .into_bytes();
        let mut raw = Vec::with_capacity(TOKEN_BYTES);
        raw.push(TOKEN_FORMAT);
        raw.extend_from_slice(&family.0.to_bytes());
        raw.extend_from_slice(&generation.to_be_bytes());
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Constant-time check of the presented MAC against every secret.
    fn verify(&self, presented: &Presented, family_key: &[u8]) -> bool {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| {
                Self::mac(key, presented.family, presented.generation, family_key)
                    .verify_slice(&presented.mac)
                    .is_ok()
            })
    }
}

// ---------------------------------------------------------------- builder

#[derive(Debug, Clone)]
struct Config {
    access_ttl: Duration,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    reuse_grace: Duration,
    max_data: usize,
}

struct Inner {
    store: Arc<dyn SessionStore>,
    codec: Arc<dyn TokenCodec>,
    revocations: RevocationList,
    keys: Keys,
    config: Config,
    counters: Counters,
}

/// Configures a [`HybridManager`]; see [`HybridManager::builder`].
#[must_use = "call .build() to get a HybridManager"]
pub struct HybridBuilder<T> {
    store: Arc<dyn SessionStore>,
    codec: Arc<dyn TokenCodec>,
    revocations: RevocationList,
    secret: Option<Vec<u8>>,
    previous: Vec<Vec<u8>>,
    config: Config,
    _marker: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for HybridBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> HybridBuilder<T> {
    /// The server secret that authenticates refresh tokens: at least
    /// [`MIN_SECRET_LEN`] (32) bytes from a CSPRNG, the same on every
    /// instance, kept out of the code (an environment variable, a secret
    /// manager). Required.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// A former secret that still verifies refresh tokens (new ones are
    /// signed with [`secret`](Self::secret)); for rotating the secret
    /// without logging everybody out. May be called several times.
    pub fn previous_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.previous.push(secret.as_ref().to_vec());
        self
    }

    /// How long an access token is valid (default 5 minutes, at least one
    /// second). This is also how long a revoked family's access tokens are
    /// remembered in the revocation list.
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.config.access_ttl = ttl;
        self
    }

    /// A family not refreshed for this long expires (default 14 days).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// A family expires this long after login however active (default 30
    /// days; at least the access-token lifetime). No access token outlives
    /// it.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.config.absolute_timeout = timeout;
        self
    }

    /// The reuse grace window (default: off). Within it after a rotation, a
    /// refresh with the token that was just rotated gets the family's
    /// current refresh token and a new access token instead of ending the
    /// family: this absorbs a client that sent the same refresh twice (two
    /// tabs, a retry after a lost response). A thief replaying a stolen
    /// token within the window gets the current pair too, so keep it to a
    /// few seconds. [`Duration::ZERO`] turns it off.
    pub fn reuse_grace(mut self, window: Duration) -> Self {
        self.config.reuse_grace = window;
        self
    }

    /// Largest application data, serialized as JSON, in bytes (default
    /// 4 KiB: it travels in every access token).
    pub fn max_data(mut self, bytes: usize) -> Self {
        self.config.max_data = bytes;
        self
    }

    /// Checks the configuration and builds the manager.
    pub fn build(self) -> Result<HybridManager<T>> {
        let c = &self.config;
        let Some(secret) = self.secret else {
            return Err(Error::Config(
                "a refresh secret is required (HybridBuilder::secret)".into(),
            ));
        };
        let key = |secret: &[u8]| -> Result<HmacSha256> {
            if secret.len() < MIN_SECRET_LEN {
                return Err(Error::Config(format!(
                    "a refresh secret must be at least {MIN_SECRET_LEN} bytes"
                )));
            }
            HmacSha256::new_from_slice(secret)
                .map_err(|_| Error::Config("unusable refresh secret".into()))
        };
        let keys = Keys {
            current: key(&secret)?,
            previous: self
                .previous
                .iter()
                .map(|s| key(s))
                .collect::<Result<_>>()?,
        };
        if c.access_ttl < Duration::from_secs(1) {
            return Err(Error::Config(
                "the access-token lifetime must be at least one second".into(),
            ));
        }
        if c.idle_timeout < Duration::from_millis(1) {
            return Err(Error::Config(
                "the idle timeout must be at least one millisecond".into(),
            ));
        }
        if c.absolute_timeout < c.access_ttl {
            return Err(Error::Config(
                "the absolute timeout must be at least the access-token lifetime".into(),
            ));
        }
        Ok(HybridManager {
            inner: Arc::new(Inner {
                store: self.store,
                codec: self.codec,
                revocations: self.revocations,
                keys,
                config: self.config,
                counters: Counters::default(),
            }),
            _marker: PhantomData,
        })
    }
}

// ---------------------------------------------------------------- manager

/// Hybrid sessions: short-lived access tokens and rotating refresh-token
/// families (see the [module documentation](self) for the design). Cheap
/// to clone.
///
/// ```
/// # use sessionkit_core::{Error, Result, SessionId, Timestamp, TokenClaims, TokenCodec};
/// # // For this example only: an unsigned codec. Use sessionkit-jwt's JwtCodec.
/// # struct Unsigned;
/// # impl TokenCodec for Unsigned {
/// #     fn encode(&self, c: &TokenClaims) -> Result<String> {
/// #         Ok(serde_json::json!([c.jti, c.subject, c.issued_at, c.expires_at,
/// #             c.session_started_at, c.schema, c.data]).to_string())
/// #     }
/// #     fn decode(&self, t: &str) -> Result<TokenClaims> {
/// #         type W = (SessionId, Option<String>, Timestamp, Timestamp, Timestamp, u32, serde_json::Value);
/// #         let (jti, subject, issued_at, expires_at, session_started_at, schema, data): W =
/// #             serde_json::from_str(t).map_err(|_| Error::InvalidToken(sessionkit_core::TokenRejection::Malformed))?;
/// #         Ok(TokenClaims { jti, subject, issued_at, expires_at, not_before: None, session_started_at, schema, data })
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use sessionkit_core::{HybridManager, RefreshRejection, RevocationList, testing::VecStore};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct User { name: String, admin: bool }
///
/// let hybrid = HybridManager::<User>::builder(
///     VecStore::default(),                       // the families
///     Unsigned,                                  // sessionkit-jwt's JwtCodec in an application
///     RevocationList::new(VecStore::default()),
/// )
/// .secret(b"32 random bytes from a secret store!")
/// .access_ttl(Duration::from_secs(300))
/// .build()?;
///
/// // Login (after checking the password):
/// let first = hybrid.login("alice", &User { name: "Alice".into(), admin: false }).await?;
/// // Every request: no store lookup beyond the revocation check.
/// let claims = hybrid.verify(first.access_token()).await?;
/// assert_eq!(claims.subject, "alice");
///
/// // The access token runs out: rotate.
/// let second = hybrid.refresh(first.refresh_token()).await?;
/// assert_eq!(second.generation(), 2);
///
/// // The old refresh token comes back (stolen?): the family is ended.
/// let replay = hybrid.refresh(first.refresh_token()).await.unwrap_err();
/// assert_eq!(replay.rejection(), Some(RefreshRejection::Reused));
/// assert!(hybrid.verify(second.access_token()).await.is_err());
/// assert!(hybrid.verify(first.access_token()).await.is_err());
/// # Ok(()) }
/// ```
pub struct HybridManager<T> {
    inner: Arc<Inner>,
    _marker: PhantomData<fn() -> T>,
}

impl<T> Clone for HybridManager<T> {
    fn clone(&self) -> Self {
        HybridManager {
            inner: Arc::clone(&self.inner),
            _marker: PhantomData,
        }
    }
}

impl<T> fmt::Debug for HybridManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridManager")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> HybridManager<T> {
    /// Starts the configuration: families live in `families` (a store of
    /// their own is best: "log out everywhere" deletes every record of the
    /// subject in it), access tokens are signed by `codec` (sessionkit-jwt's
    /// `JwtCodec`; give it an audience of its own if the same key signs
    /// other tokens), and ended families are remembered in `revocations`
    /// (share it with a stateless `SessionManager` to make "log out
    /// everywhere" end both).
    pub fn builder(
        families: impl SessionStore,
        codec: impl TokenCodec,
        revocations: RevocationList,
    ) -> HybridBuilder<T> {
        Self::builder_shared(Arc::new(families), Arc::new(codec), revocations)
    }

    /// [`HybridManager::builder`] for a store and a codec already shared.
    pub fn builder_shared(
        families: Arc<dyn SessionStore>,
        codec: Arc<dyn TokenCodec>,
        revocations: RevocationList,
    ) -> HybridBuilder<T> {
        HybridBuilder {
            store: families,
            codec,
            revocations,
            secret: None,
            previous: Vec::new(),
            config: Config {
                access_ttl: Duration::from_secs(5 * 60),
                idle_timeout: Duration::from_secs(14 * 24 * 3600),
                absolute_timeout: Duration::from_secs(30 * 24 * 3600),
                reuse_grace: Duration::ZERO,
                max_data: 4096,
            },
            _marker: PhantomData,
        }
    }

    /// The access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.inner.config.access_ttl
    }

    /// The reuse grace window ([`Duration::ZERO`]: off).
    pub fn reuse_grace(&self) -> Duration {
        self.inner.config.reuse_grace
    }

    /// The counters kept so far.
    pub fn stats(&self) -> HybridStats {
        let c = &self.inner.counters;
        HybridStats {
            refreshed: c.refreshed.load(Ordering::Relaxed),
            reuse_detected: c.reuse_detected.load(Ordering::Relaxed),
            grace_answers: c.grace_answers.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
        }
    }

    /// Starts a family for `subject` (after the application checked the
    /// credentials) and returns its first pair. The family is stored before
    /// anything is returned: on error, no token exists.
    pub async fn login(&self, subject: &str, data: &T) -> Result<TokenPair> {
        self.login_with(subject, data, ClientInfo::default()).await
    }

    /// [`HybridManager::login`], recording what the client said about
    /// itself (shown by [`HybridManager::families`]).
    pub async fn login_with(
        &self,
        subject: &str,
        data: &T,
        client: ClientInfo,
    ) -> Result<TokenPair> {
        validate_subject(subject)?;
        let data = serde_json::to_value(data).map_err(Error::encode)?;
        let limit = self.inner.config.max_data;
        let size = serde_json::to_vec(&data).map_err(Error::encode)?.len();
        if size > limit {
            return Err(Error::TooLarge { size, limit });
        }
        let now = Timestamp::now();
        let mut key = [0u8; FAMILY_KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| Error::backend(e, false))?;
        let mut state = FamilyState {
            kind: FAMILY_KIND.to_owned(),
            family: FamilyId::generate()?,
            key: URL_SAFE_NO_PAD.encode(key),
            generation: 1,
            rotated_at: None,
            last_used: now,
            client,
            data,
        };
        for _ in 0..3 {
            // Sign first: a token that cannot be signed (too large) must
            // not leave a family behind.
            let (access_token, access_expires_at) =
                self.sign_access(state.family, subject, now, &state.data, now)?;
            let record = Record::new(
                state.family.storage_key(),
                Some(subject.to_owned()),
                state.encode()?,
                now,
                self.deadline(now, now),
            );
            match retry_aborted(ABORTED_RETRIES, || self.inner.store.create(&record)).await {
                Ok(()) => {
                    return Ok(TokenPair {
                        access_token,
                        access_expires_at,
                        refresh_token: self.inner.keys.token(state.family, 1, &key),
                        refresh_expires_at: record.expires_at,
                        family: state.family,
                        generation: 1,
                    });
                }
                // An astronomically unlikely collision: draw another ID.
                Err(Error::Conflict) => state.family = FamilyId::generate()?,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    /// Rotates a refresh token: returns a new pair, and the presented
    /// refresh token stops working.
    ///
    /// - Of N concurrent refreshes with one token exactly one rotates the
    ///   family (compare-and-swap on the family record); the others present
    ///   a token that was just rotated, which is reuse: the family is ended
    ///   ([`RefreshRejection::Reused`]) unless the reuse grace window is on,
    ///   in which case they get the winner's refresh token.
    /// - An authentic refresh token of an older generation ends the family
    ///   and every access token issued in it ([`RefreshRejection::Reused`]).
    /// - A malformed, forged or tampered token is refused
    ///   ([`RefreshRejection::Malformed`], [`RefreshRejection::Invalid`])
    ///   and no family is touched.
    /// - A token of a family that no longer exists, was revoked or is past
    ///   its absolute timeout: [`RefreshRejection::Ended`],
    ///   [`RefreshRejection::Revoked`], [`RefreshRejection::Expired`].
    /// - A backend failure is [`RefreshError::Session`]; no token is handed
    ///   out whose rotation the store did not record. (A rotation whose
    ///   acknowledgement was lost may still have been applied: the client's
    ///   retry then presents the rotated token, which ends the family unless
    ///   the grace window covers it.)
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let presented = parse_refresh(refresh_token)?;
        let family = presented.family;
        let storage_key = family.storage_key();
        let store = &self.inner.store;
        let mut checked = false;
        for _ in 0..REFRESH_ATTEMPTS {
            let Some(record) = store.load_fresh(&storage_key).await? else {
                return Err(RefreshRejection::Ended.into());
            };
            let (state, family_key, subject) = self.open(&record, &presented)?;
            if !checked {
                self.check_alive(&family, &subject, &record).await?;
                checked = true;
            }
            let now = Timestamp::now();
            // Past the absolute timeout, or so close to it that an access
            // token (whole seconds) would be dead on arrival.
            let end = record.created_at + self.inner.config.absolute_timeout;
            if Timestamp::from_secs(end.as_secs()) <= now {
                return Err(RefreshRejection::Expired.into());
            }
            if presented.generation == state.generation {
                let generation = state.generation + 1;
                let (access_token, access_expires_at) =
                    self.sign_access(family, &subject, record.created_at, &state.data, now)?;
                let expires_at = self.deadline(now, record.created_at);
                let next = FamilyState {
                    generation,
                    rotated_at: Some(now),
                    last_used: now,
                    ..state
                };
                let update = Record {
                    payload: next.encode()?,
                    expires_at,
                    ..record
                };
                match store.save(&update).await {
                    Ok(_) => {
                        self.inner
                            .counters
                            .refreshed
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok(TokenPair {
                            access_token,
                            access_expires_at,
                            refresh_token: self.inner.keys.token(family, generation, &family_key),
                            refresh_expires_at: expires_at,
                            family,
                            generation,
                        });
                    }
                    // Another refresh rotated first: look again (the
                    // presented token is now the rotated one). A save the
                    // backend rolled back applied nothing: look again too.
                    Err(Error::Conflict | Error::Aborted(_)) => continue,
                    Err(Error::NotFound) => return Err(RefreshRejection::Ended.into()),
                    Err(e) => return Err(e.into()),
                }
            }
            if self.within_grace(&presented, &state, now) {
                // A duplicate of the refresh that just rotated: the current
                // refresh token (the winner's) and a fresh access token.
                let (access_token, access_expires_at) =
                    self.sign_access(family, &subject, record.created_at, &state.data, now)?;
                // A kill that started after the load revokes the family
                // first: never hand out a token it may not cover.
                if self
                    .inner
                    .revocations
                    .is_revoked(&family.token_id())
                    .await?
                {
                    return Err(RefreshRejection::Revoked.into());
                }
                self.inner
                    .counters
                    .grace_answers
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(TokenPair {
                    access_token,
                    access_expires_at,
                    refresh_token: self.inner.keys.token(family, state.generation, &family_key),
                    refresh_expires_at: record.expires_at,
                    family,
                    generation: state.generation,
                });
            }
            // An authentic token of another generation: reuse (or a store
            // that lost a rotation). End the family.
            self.kill(family, record.expires_at).await?;
            self.inner
                .counters
                .reuse_detected
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                family = %family.redacted(),
                presented = presented.generation,
                current = state.generation,
                "refresh token reuse detected: the family was ended"
            );
            return Err(RefreshRejection::Reused.into());
        }
        Err(Error::Conflict.into())
    }

    /// Verifies an access token: the codec's checks (signature, expiry…),
    /// then the revocation list (its family revoked, its subject logged out
    /// everywhere). No other lookup.
    ///
    /// Errors as for a stateless session: [`Error::InvalidToken`] with the
    /// reason, [`Error::Revoked`] (the family was ended), a backend error of
    /// the revocation list; [`Error::is_invalid_ticket`] tells the first
    /// kinds (401) from the last (503 / 500). Data that no longer
    /// deserializes as `T` is [`Error::Decode`].
    pub async fn verify(&self, access_token: &str) -> Result<AccessClaims<T>> {
        let claims = self.inner.codec.decode(access_token)?;
        let malformed = || Error::InvalidToken(TokenRejection::Malformed);
        let wrapper =
            AccessData::<serde_json::Value>::deserialize(&claims.data).map_err(|_| malformed())?;
        if wrapper.kind != ACCESS_KIND {
            return Err(malformed());
        }
        let subject = claims
            .subject
            .clone()
            .ok_or(Error::InvalidToken(TokenRejection::MissingClaim))?;
        self.inner.revocations.check(&claims).await?;
        let data = T::deserialize(wrapper.data).map_err(Error::decode)?;
        Ok(AccessClaims {
            family: FamilyId(claims.jti),
            subject,
            data,
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
            session_started_at: claims.session_started_at,
        })
    }

    /// Logout with a refresh token (of any generation of the family): ends
    /// the family and every access token issued in it. `Ok(true)` when it
    /// was ended now, `Ok(false)` when it had already ended. A malformed or
    /// forged token is refused and ends nothing.
    pub async fn logout(&self, refresh_token: &str) -> Result<bool, RefreshError> {
        let presented = parse_refresh(refresh_token)?;
        let Some(record) = self
            .inner
            .store
            .load_fresh(&presented.family.storage_key())
            .await?
        else {
            return Ok(false);
        };
        self.open(&record, &presented)?;
        self.kill(presented.family, record.expires_at).await?;
        Ok(true)
    }

    /// Ends every family of `subject` and every access token issued in them
    /// (and, through the shared revocation list, every stateless token of
    /// the subject); returns how many families were deleted. A family
    /// started in the same millisecond is ended too.
    pub async fn logout_everywhere(&self, subject: &str) -> Result<u64> {
        validate_subject(subject)?;
        let c = &self.inner.config;
        let now = Timestamp::now();
        // Kept as long as a family started before now can live, so that a
        // family whose deletion raced this call can never refresh again.
        let keep =
            now + c.absolute_timeout + c.access_ttl + self.inner.codec.leeway() + KILL_MARGIN;
        self.inner
            .revocations
            .logout_everywhere(subject, now, keep)
            .await?;
        let mut total = 0;
        for _ in 0..DELETE_SUBJECT_PASSES {
            let removed =
                retry_aborted(ABORTED_RETRIES, || self.inner.store.delete_subject(subject)).await?;
            total += removed;
            if removed == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// The live families of `subject`, oldest first: a "your devices" page.
    /// Records of the store that are not families are skipped, as are
    /// unreadable ones (with a warning).
    pub async fn families(&self, subject: &str) -> Result<Vec<FamilyInfo>> {
        validate_subject(subject)?;
        let (records, not_before) = tokio::join!(
            self.inner.store.list_subject(subject),
            self.inner.revocations.not_before(subject)
        );
        let not_before = not_before?;
        let mut families = Vec::new();
        for record in records? {
            if !record.payload.starts_with(FAMILY_PREFIX) {
                continue;
            }
            let state = match FamilyState::decode(&record.payload) {
                Ok(state) if state.family.storage_key() == record.id => state,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(record = %record.id.redacted(), error = %e, "unreadable refresh family skipped");
                    continue;
                }
            };
            if not_before.is_some_and(|nb| record.created_at <= nb) {
                continue; // logged out everywhere, deletion pending
            }
            families.push(FamilyInfo {
                id: state.family,
                subject: subject.to_owned(),
                created_at: record.created_at,
                last_used: state.last_used,
                expires_at: record.expires_at,
                generation: state.generation,
                client: state.client,
            });
        }
        families.sort_by_key(|f| f.created_at);
        Ok(families)
    }

    /// Ends one family of `subject` (a "sign out this device" button) and
    /// every access token issued in it. `Ok(false)` when `subject` has no
    /// such live family: the subject is checked, so an ID taken from a
    /// request can only end the requester's own families.
    pub async fn revoke_family(&self, subject: &str, family: &FamilyId) -> Result<bool> {
        validate_subject(subject)?;
        let Some(record) = self.inner.store.load_fresh(&family.storage_key()).await? else {
            return Ok(false);
        };
        if record.subject.as_deref() != Some(subject) {
            return Ok(false);
        }
        self.kill(*family, record.expires_at).await?;
        Ok(true)
    }

    // ---- internals ----

    /// The earlier of the idle and the absolute deadline.
    fn deadline(&self, now: Timestamp, created_at: Timestamp) -> Timestamp {
        let c = &self.inner.config;
        (now + c.idle_timeout).min(created_at + c.absolute_timeout)
    }

    /// Decodes a family record and authenticates the presented token
    /// against it.
    fn open(
        &self,
        record: &Record,
        presented: &Presented,
    ) -> Result<(FamilyState, [u8; FAMILY_KEY_LEN], String), RefreshError> {
        let state = FamilyState::decode(&record.payload)?;
        let family_key = state.family_key()?;
        if state.family != presented.family || !self.inner.keys.verify(presented, &family_key) {
            self.inner.counters.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                family = %presented.family.redacted(),
                "a refresh token that is not authentic was refused"
            );
            return Err(RefreshRejection::Invalid.into());
        }
        let subject = record
            .subject
            .clone()
            .ok_or_else(|| Error::decode("a refresh family without a subject"))?;
        Ok((state, family_key, subject))
    }

    /// Refuses a family that was revoked or logged out everywhere and whose
    /// record is still there (its deletion failed or is under way), and
    /// completes its deletion.
    async fn check_alive(
        &self,
        family: &FamilyId,
        subject: &str,
        record: &Record,
    ) -> Result<(), RefreshError> {
        match self
            .inner
            .revocations
            .check_session(&family.token_id(), Some(subject), record.created_at)
            .await
        {
            Ok(()) => Ok(()),
            Err(Error::Revoked | Error::InvalidToken(TokenRejection::IssuedBeforeLogout)) => {
                if let Err(e) = self.inner.store.delete(&record.id).await {
                    tracing::warn!(family = %family.redacted(), error = %e, "could not delete a revoked family");
                }
                Err(RefreshRejection::Revoked.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn within_grace(&self, presented: &Presented, state: &FamilyState, now: Timestamp) -> bool {
        let grace = self.inner.config.reuse_grace;
        !grace.is_zero()
            && presented.generation.checked_add(1) == Some(state.generation)
            && state.rotated_at.is_some_and(|at| now < at + grace)
    }

    /// How long a revocation issued at `now` must last: past the expiry of
    /// any access token signed until now.
    fn revocation_until(&self, now: Timestamp) -> Timestamp {
        now + self.inner.config.access_ttl + self.inner.codec.leeway() + KILL_MARGIN
    }

    /// Ends a family: revokes its access tokens, then deletes the record.
    ///
    /// A rotation that wins its compare-and-swap before the deletion signed
    /// its access token before that, so within the revocation's lifetime
    /// (checked: a slow kill revokes again after the deletion). Should the
    /// deletion fail, the revocation is extended to the record's own expiry
    /// so the family cannot come back, and refresh refuses revoked families.
    async fn kill(&self, family: FamilyId, record_expires_at: Timestamp) -> Result<()> {
        let revocations = &self.inner.revocations;
        let jti = family.token_id();
        let start = Timestamp::now();
        revocations
            .revoke(&jti, self.revocation_until(start))
            .await?;
        let key = family.storage_key();
        if let Err(e) = retry_aborted(ABORTED_RETRIES, || self.inner.store.delete(&key)).await {
            let until = self.revocation_until(record_expires_at.max(start));
            if let Err(again) = revocations.revoke(&jti, until).await {
                tracing::warn!(family = %family.redacted(), error = %again, "could not extend a family's revocation");
            }
            return Err(e);
        }
        let end = Timestamp::now();
        if end > start + KILL_MARGIN / 2 {
            revocations.revoke(&jti, self.revocation_until(end)).await?;
        }
        Ok(())
    }

    /// Signs an access token of `family` carrying `data`, as of `now`.
    fn sign_access(
        &self,
        family: FamilyId,
        subject: &str,
        started_at: Timestamp,
        data: &serde_json::Value,
        now: Timestamp,
    ) -> Result<(String, Timestamp)> {
        let c = &self.inner.config;
        let wrapped = serde_json::to_value(AccessData {
            kind: ACCESS_KIND.to_owned(),
            data,
        })
        .map_err(Error::encode)?;
        let end = (now + c.access_ttl).min(started_at + c.absolute_timeout);
        let expires_at = Timestamp::from_secs(end.as_secs());
        let claims = TokenClaims {
            jti: family.token_id(),
            subject: Some(subject.to_owned()),
            issued_at: now,
            expires_at,
            not_before: None,
            session_started_at: started_at,
            schema: 1,
            data: wrapped,
        };
        Ok((self.inner.codec.encode(&claims)?, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            current: HmacSha256::new_from_slice(&[7u8; 32]).unwrap(),
            previous: vec![HmacSha256::new_from_slice(&[9u8; 32]).unwrap()],
        }
    }

    #[test]
    fn refresh_tokens_round_trip_and_are_strict() {
        let keys = keys();
        let family = FamilyId::generate().unwrap();
        let fk = [3u8; FAMILY_KEY_LEN];
        let token = keys.token(family, 42, &fk);
        assert_eq!(token.len(), REFRESH_TOKEN_LEN);
        let p = parse_refresh(&token).ok().unwrap();
        assert_eq!(p.family, family);
        assert_eq!(p.generation, 42);
        assert!(keys.verify(&p, &fk));
        assert!(!keys.verify(&p, &[4u8; FAMILY_KEY_LEN]));
        for bad in [
            String::new(),
            "x".repeat(REFRESH_TOKEN_LEN),
            format!("{token}A"),
            token[1..].to_owned(),
            token.replace('A', "+"),
        ] {
            if bad == token {
                continue;
            }
            assert!(
                matches!(parse_refresh(&bad), Err(RefreshRejection::Malformed))
                    || !keys.verify(&parse_refresh(&bad).ok().unwrap(), &fk),
                "{bad}"
            );
        }
    }

    #[test]
    fn previous_secrets_verify_but_do_not_sign() {
        let old = Keys {
            current: HmacSha256::new_from_slice(&[9u8; 32]).unwrap(),
            previous: vec![],
        };
        let family = FamilyId::generate().unwrap();
        let fk = [1u8; FAMILY_KEY_LEN];
        let token = old.token(family, 1, &fk);
        let p = parse_refresh(&token).ok().unwrap();
        assert!(keys().verify(&p, &fk));
        assert_ne!(keys().token(family, 1, &fk), token);
    }

    #[test]
    fn storage_key_differs_from_the_token_id() {
        let f = FamilyId::generate().unwrap();
        assert_ne!(f.storage_key(), f.token_id());
        assert_eq!(f.storage_key(), f.storage_key());
    }

    #[test]
    fn family_payload_starts_with_the_prefix() {
        let state = FamilyState {
            kind: FAMILY_KIND.into(),
            family: FamilyId::generate().unwrap(),
            key: URL_SAFE_NO_PAD.encode([0u8; 32]),
            generation: 1,
            rotated_at: None,
            last_used: Timestamp::now(),
            client: ClientInfo::default(),
            data: serde_json::Value::Null,
        };
        assert!(state.encode().unwrap().starts_with(FAMILY_PREFIX));
    }

    #[test]
    fn client_fields_are_cut_at_a_char_boundary() {
        let c = ClientInfo::new().with_name("é".repeat(200));
        let n = c.name().unwrap();
        assert!(n.len() <= MAX_CLIENT_FIELD && n.len() >= MAX_CLIENT_FIELD - 1);
    }
}
