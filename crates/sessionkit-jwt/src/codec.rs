//! [`JwtCodec`]: the [`TokenCodec`] over jsonwebtoken.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sessionkit_core::{
    Error, Result, SessionId, Timestamp, TokenClaims, TokenCodec, TokenRejection, validate_subject,
};

use crate::backend::{install_process_default, provider};
use crate::key::{Key, KeyRing};

/// Default maximum token size: 8 KiB, the request-header limit many proxies
/// and servers apply. A token carried in a cookie must in practice stay
/// below about 4 KiB (the per-cookie limit of browsers): set a lower limit
/// for the cookie transport.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;

/// The `typ` header sessionkit writes (RFC 7519 §5.1).
const TYP: &str = "JWT";

fn reject(reason: TokenRejection) -> Error {
    Error::InvalidToken(reason)
}

/// A clock: the current instant, for `exp` and `nbf` checks.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Signs [`TokenClaims`] into JWTs and verifies them; see the
/// [crate documentation](crate) for the claims layout and the checks.
///
/// The key ring can be changed while the codec is in use (shared behind an
/// `Arc` by a `SessionManager`): [`rotate`](JwtCodec::rotate),
/// [`add_key`](JwtCodec::add_key), [`remove_key`](JwtCodec::remove_key)
/// swap in a new ring atomically; tokens being verified concurrently see
/// either the old or the new ring.
///
/// ```
/// use std::time::Duration;
/// use sessionkit_core::{SessionId, Timestamp, TokenClaims, TokenCodec};
/// use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};
///
/// let ring = KeyRing::new(Key::secret("k1", Algorithm::HS256, &[42u8; 32])?)?;
/// let codec = JwtCodec::builder(ring)
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
///     data: serde_json::json!({ "cart": [1, 2] }),
/// };
/// let token = codec.encode(&claims)?;
/// assert_eq!(codec.decode(&token)?.data, claims.data);
/// # Ok::<(), sessionkit_core::Error>(())
/// ```
pub struct JwtCodec {
    ring: RwLock<Arc<RingState>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_token_size: usize,
    allow_missing_kid: bool,
    clock: Clock,
}

impl fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("JwtCodec")
            .field("active_kid", &state.ring.active().kid())
            .field("kids", &state.ring.keys().map(Key::kid).collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_token_size", &self.max_token_size)
            .field("allow_missing_kid", &self.allow_missing_kid)
            .finish_non_exhaustive()
    }
}

/// The ring plus what encoding precomputes from its active key.
struct RingState {
    ring: KeyRing,
    /// BASE64URL of the active key's header JSON.
    header_b64: String,
}

impl RingState {
    fn new(ring: KeyRing) -> Result<Self> {
        #[derive(Serialize)]
        struct OutHeader<'a> {
            alg: &'a str,
            kid: &'a str,
            typ: &'a str,
        }
        let active = ring.active();
        let header = serde_json::to_vec(&OutHeader {
            alg: active.alg_name(),
            kid: active.kid(),
            typ: TYP,
        })
        .map_err(Error::encode)?;
        Ok(RingState {
            header_b64: URL_SAFE_NO_PAD.encode(header),
            ring,
        })
    }
}

/// Builds a [`JwtCodec`]; start with [`JwtCodec::builder`].
pub struct JwtCodecBuilder {
    ring: KeyRing,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_token_size: usize,
    allow_missing_kid: bool,
    clock: Clock,
}

impl fmt::Debug for JwtCodecBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtCodecBuilder")
            .field("ring", &self.ring)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_token_size", &self.max_token_size)
            .field("allow_missing_kid", &self.allow_missing_kid)
            .finish_non_exhaustive()
    }
}

impl JwtCodecBuilder {
    /// The issuer (`iss`) written into every token and required of every
    /// token verified. Without one, `iss` is neither written nor checked.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The audience (`aud`) written into every token and required of every
    /// token verified (a token's `aud` may be a list that contains it).
    /// Without one, a token that has an `aud` is rejected (RFC 7519 §4.1.3).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default zero). A revoked
    /// token is remembered until `exp` plus this leeway.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Largest token, in bytes, that is encoded or even looked at when
    /// verifying (default [`DEFAULT_MAX_TOKEN_SIZE`], 8 KiB).
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// Whether a token without `kid` is accepted when the ring holds exactly
    /// one key (default `false`: every token must name its key). Meant only
    /// for interoperating with issuers that do not write `kid`; as soon as
    /// the ring holds a second key such tokens are rejected as
    /// `UnknownKey` again, since which key signed them is ambiguous.
    pub fn allow_missing_kid(mut self, allow: bool) -> Self {
        self.allow_missing_kid = allow;
        self
    }

    /// Replaces the clock used for `exp` and `nbf` (default
    /// [`Timestamp::now`]); for tests and for checking old tokens at the
    /// instant they were used.
    pub fn clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the codec.
    pub fn build(self) -> Result<JwtCodec> {
        install_process_default();
        if self.max_token_size < 64 {
            return Err(Error::Config(format!(
                "max_token_size of {} bytes cannot hold any token",
                self.max_token_size
            )));
        }
        for (what, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(Error::Config(format!("the {what} must not be empty")));
            }
        }
        Ok(JwtCodec {
            ring: RwLock::new(Arc::new(RingState::new(self.ring)?)),
            issuer: self.issuer,
            audience: self.audience,
            leeway: self.leeway,
            max_token_size: self.max_token_size,
            allow_missing_kid: self.allow_missing_kid,
            clock: self.clock,
        })
    }
}

/// The claims as written: registered names, then sessionkit's private
/// short names (see the crate documentation).
#[derive(Serialize)]
struct OutClaims<'a> {
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    iat: i64,
    #[serde(skip_serializing_if = "is_zero")]
    ims: u16,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    sst: i64,
    sch: u32,
    #[serde(skip_serializing_if = "Value::is_null")]
    dat: &'a Value,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

/// The claims as read from a sessionkit token.
#[derive(Deserialize)]
struct InClaims<'a> {
    #[serde(borrow)]
    jti: Option<Cow<'a, str>>,
    sub: Option<String>,
    #[serde(borrow)]
    iss: Option<Cow<'a, str>>,
    aud: Option<Audience>,
    iat: Option<i64>,
    ims: Option<u16>,
    exp: Option<i64>,
    nbf: Option<i64>,
    sst: Option<i64>,
    sch: Option<u32>,
    #[serde(default)]
    dat: Value,
}

/// The header fields sessionkit looks at.
#[derive(Deserialize)]
struct InHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    /// `Some` whenever the header has a `crit` member, whatever its value
    /// (`null` included).
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde::de::IgnoredAny>,
}

/// Deserializes any value, `null` included, as `Some`: so that a header
/// member's presence is seen even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<serde::de::IgnoredAny>, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(Some)
}

/// Whole seconds of a millisecond instant for `exp` / `nbf`: rounded down,
/// so a token never lives longer than asked.
fn secs(t: Timestamp) -> i64 {
    t.as_secs()
}

fn secs_to_ms(s: i64) -> i64 {
    s.saturating_mul(1000)
}

/// A NumericDate (RFC 7519 §2: seconds, possibly fractional) as ms.
fn numeric_date_ms(v: &Value) -> Result<i64> {
    let n = v.as_number().ok_or(reject(TokenRejection::Malformed))?;
    if let Some(i) = n.as_i64() {
        return Ok(secs_to_ms(i));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok((f * 1000.0).floor() as i64),
        _ => Err(reject(TokenRejection::Malformed)),
    }
}

impl JwtCodec {
    /// Starts a builder over a key ring.
    pub fn builder(ring: KeyRing) -> JwtCodecBuilder {
        JwtCodecBuilder {
            ring,
            issuer: None,
            audience: None,
            leeway: Duration::ZERO,
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            allow_missing_kid: false,
            clock: Arc::new(Timestamp::now),
        }
    }

    /// A codec with default settings: no issuer or audience, no leeway,
    /// 8 KiB maximum token size, `kid` required.
    pub fn new(ring: KeyRing) -> Result<JwtCodec> {
        Self::builder(ring).build()
    }

    fn state(&self) -> Arc<RingState> {
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
        let mut ring = guard.ring.clone();
        f(&mut ring)?;
        *guard = Arc::new(RingState::new(ring)?);
        Ok(())
    }

    /// A snapshot of the current key ring.
    pub fn key_ring(&self) -> KeyRing {
        self.state().ring.clone()
    }

    /// Replaces the whole key ring.
    pub fn set_key_ring(&self, ring: KeyRing) -> Result<()> {
        self.modify(|r| {
            *r = ring;
            Ok(())
        })
    }

    /// Adds `key` and signs with it from now on; the previous active key
    /// keeps verifying until [removed](JwtCodec::remove_key).
    pub fn rotate(&self, key: Key) -> Result<()> {
        self.modify(|r| r.rotate(key))
    }

    /// Adds a verification key (see [`KeyRing::add`]).
    pub fn add_key(&self, key: Key) -> Result<()> {
        self.modify(|r| r.add(key))
    }

    /// Makes a key of the ring the active signing key.
    pub fn activate(&self, kid: &str) -> Result<()> {
        self.modify(|r| r.activate(kid))
    }

    /// Drops a key: tokens signed with it are rejected with `UnknownKey`
    /// from now on. Removing the active key is a configuration error.
    pub fn remove_key(&self, kid: &str) -> Result<bool> {
        let mut removed = false;
        self.modify(|r| {
            removed = r.remove(kid)?;
            Ok(())
        })?;
        Ok(removed)
    }

    /// The id of the key new tokens are signed with.
    pub fn active_kid(&self) -> String {
        self.state().ring.active().kid().to_owned()
    }

    /// The public keys as a JWK set (see [`KeyRing::jwks`]).
    pub fn jwks(&self) -> JwkSet {
        self.state().ring.jwks()
    }

    /// The JWK set as JSON text, ready to be served.
    pub fn jwks_json(&self) -> String {
        // Serializing plain strings and enums cannot fail.
        serde_json::to_string(&self.jwks()).unwrap_or_else(|_| String::from(r#"{"keys":[]}"#))
    }

    /// The configured maximum token size in bytes.
    pub fn max_token_size(&self) -> usize {
        self.max_token_size
    }

    /// Signs an arbitrary JSON object with the active key. Registered
    /// claims are written as given: use this for tokens that are not
    /// sessions; sessions go through [`TokenCodec::encode`].
    pub fn encode_json(&self, claims: &serde_json::Map<String, Value>) -> Result<String> {
        let payload = serde_json::to_vec(claims).map_err(Error::encode)?;
        self.sign(&payload)
    }

    fn sign(&self, payload: &[u8]) -> Result<String> {
        let state = self.state();
        let key = state.ring.active();
        let encoding = key
            .signing()
            .ok_or_else(|| Error::Config("the active key cannot sign".into()))?;
        let sig_len = key.signature_len().unwrap_or(0);
        let size = state.header_b64.len()
            + 1
            + base64::encoded_len(payload.len(), false).unwrap_or(usize::MAX)
            + 1
            + base64::encoded_len(sig_len, false).unwrap_or(usize::MAX);
        if size > self.max_token_size {
            return Err(Error::TooLarge {
                size,
                limit: self.max_token_size,
            });
        }
        let mut token = String::with_capacity(size);
        token.push_str(&state.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signer =
            (provider().signer_factory)(&key.algorithm(), encoding).map_err(Error::encode)?;
        let signature = signer.try_sign(token.as_bytes()).map_err(Error::encode)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        if token.len() > self.max_token_size {
            return Err(Error::TooLarge {
                size: token.len(),
                limit: self.max_token_size,
            });
        }
        Ok(token)
    }

    /// Checks size, structure, header, key and signature of a compact JWS
    /// and returns its payload bytes. **No claim is checked** (not even
    /// `exp`): this is the signature layer under [`decode_json`] and
    /// [`TokenCodec::decode`], public for payloads that are not JWT claims.
    ///
    /// [`decode_json`]: JwtCodec::decode_json
    pub fn verify_signature(&self, token: &str) -> Result<Vec<u8>> {
        // Size first: nothing of an oversized token is parsed.
        if token.len() > self.max_token_size {
            return Err(reject(TokenRejection::TooLarge));
        }
        // Structure before anything is decoded: three segments of the
        // base64url alphabet (the signature may be empty, as in `alg: none`
        // tokens, which are then refused for their algorithm).
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(reject(TokenRejection::Malformed));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(reject(TokenRejection::Malformed));
        };
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(reject(TokenRejection::Malformed));
        }
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| reject(TokenRejection::Malformed))?;
        let header: InHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| reject(TokenRejection::Malformed))?;
        // `none` is never acceptable, whatever key the kid names (RFC 8725 §3.1).
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(reject(TokenRejection::Algorithm));
        }
        // We understand no header extension, so any `crit` must be refused
        // (RFC 7515 §4.1.11), whatever its value.
        if header.crit.is_some() {
            return Err(reject(TokenRejection::CriticalHeader));
        }
        let state = self.state();
        let key = match header.kid.as_deref() {
            Some(kid) => state.ring.get(kid),
            None if self.allow_missing_kid && state.ring.len() == 1 => Some(state.ring.active()),
            None => None,
        }
        .ok_or(reject(TokenRejection::UnknownKey))?;
        // The algorithm is pinned by the key, never taken from the token.
        if header.alg != key.alg_name() {
            return Err(reject(TokenRejection::Algorithm));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| reject(TokenRejection::Malformed))?;
        let verifier = (provider().verifier_factory)(&key.algorithm(), key.verifying())
            .map_err(|_| reject(TokenRejection::Signature))?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        verifier
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| reject(TokenRejection::Signature))?;
        URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| reject(TokenRejection::Malformed))
    }

    /// Verifies a token like [`TokenCodec::decode`] — signature, `exp`
    /// (required), `nbf`, `iss`, `aud` — and returns its claims as a JSON
    /// object, without interpreting sessionkit's own claims. For tokens
    /// another issuer signed with a key of this ring.
    pub fn decode_json(&self, token: &str) -> Result<serde_json::Map<String, Value>> {
        let payload = self.verify_signature(token)?;
        let claims: serde_json::Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| reject(TokenRejection::Malformed))?;
        let exp = claims.get("exp").map(numeric_date_ms).transpose()?;
        let nbf = claims.get("nbf").map(numeric_date_ms).transpose()?;
        if let Some(iat) = claims.get("iat").map(numeric_date_ms).transpose()? {
            self.check_not_future(iat)?;
        }
        let iss = match claims.get("iss") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(reject(TokenRejection::Malformed)),
        };
        let aud = claims
            .get("aud")
            .map(|v| Audience::deserialize(v).map_err(|_| reject(TokenRejection::Malformed)))
            .transpose()?;
        self.check_registered(exp, nbf, iss, aud.as_ref())?;
        Ok(claims)
    }

    /// An issue instant (ms) later than now plus the leeway is refused: a
    /// token from the future would outlive every not-before instant.
    fn check_not_future(&self, issued_ms: i64) -> Result<()> {
        let now = (self.clock)().as_millis();
        let leeway = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        if issued_ms > now.saturating_add(leeway) {
            return Err(reject(TokenRejection::IssuedInFuture));
        }
        Ok(())
    }

    /// `exp` (required), `nbf`, `iss`, `aud`, all instants in ms.
    fn check_registered(
        &self,
        exp: Option<i64>,
        nbf: Option<i64>,
        iss: Option<&str>,
        aud: Option<&Audience>,
    ) -> Result<()> {
        let now = (self.clock)().as_millis();
        let leeway = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        let exp = exp.ok_or(reject(TokenRejection::MissingClaim))?;
        // Valid only while now < exp (RFC 7519 §4.1.4), give or take leeway.
        if now >= exp.saturating_add(leeway) {
            return Err(reject(TokenRejection::Expired));
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(reject(TokenRejection::NotYetValid));
        }
        if let Some(expected) = &self.issuer {
            match iss {
                None => return Err(reject(TokenRejection::MissingClaim)),
                Some(iss) if iss != expected => return Err(reject(TokenRejection::Issuer)),
                Some(_) => {}
            }
        }
        match (&self.audience, aud) {
            (Some(_), None) => return Err(reject(TokenRejection::MissingClaim)),
            (Some(expected), Some(aud)) if !aud.contains(expected) => {
                return Err(reject(TokenRejection::Audience));
            }
            // A token meant for some audience, presented to a codec that
            // belongs to none, is not for us (RFC 7519 §4.1.3).
            (None, Some(_)) => return Err(reject(TokenRejection::Audience)),
            _ => {}
        }
        Ok(())
    }
}

impl TokenCodec for JwtCodec {
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
            iat: issued.div_euclid(1000),
            // rem_euclid(1000) is always in 0..1000.
            ims: issued.rem_euclid(1000) as u16,
            exp: secs(claims.expires_at),
            nbf: claims.not_before.map(secs),
            sst: claims.session_started_at.as_millis(),
            sch: claims.schema,
            dat: &claims.data,
        };
        let payload = serde_json::to_vec(&out).map_err(Error::encode)?;
        self.sign(&payload)
    }

    fn decode(&self, token: &str) -> Result<TokenClaims> {
        let payload = self.verify_signature(token)?;
        let c: InClaims<'_> =
            serde_json::from_slice(&payload).map_err(|_| reject(TokenRejection::Malformed))?;
        self.check_registered(
            c.exp.map(secs_to_ms),
            c.nbf.map(secs_to_ms),
            c.iss.as_deref(),
            c.aud.as_ref(),
        )?;
        let missing = || reject(TokenRejection::MissingClaim);
        let jti = SessionId::parse(&c.jti.ok_or_else(missing)?)
            .map_err(|_| reject(TokenRejection::Malformed))?;
        if let Some(subject) = &c.sub {
            validate_subject(subject).map_err(|_| reject(TokenRejection::Malformed))?;
        }
        let ims = c.ims.unwrap_or(0);
        if ims >= 1000 {
            return Err(reject(TokenRejection::Malformed));
        }
        let iat = c.iat.ok_or_else(missing)?;
        let issued_at = secs_to_ms(iat).saturating_add(i64::from(ims));
        let session_started_at = c.sst.ok_or_else(missing)?;
        // Neither the token nor its session may claim to start later than
        // now: log-out-everywhere compares the session start.
        self.check_not_future(issued_at)?;
        self.check_not_future(session_started_at)?;
        Ok(TokenClaims {
            jti,
            subject: c.sub,
            issued_at: Timestamp::from_millis(issued_at),
            // exp is present: check_registered requires it.
            expires_at: Timestamp::from_secs(c.exp.ok_or_else(missing)?),
            not_before: c.nbf.map(Timestamp::from_secs),
            session_started_at: Timestamp::from_millis(session_started_at),
            schema: c.sch.ok_or_else(missing)?,
            data: c.dat,
        })
    }

    fn leeway(&self) -> Duration {
        self.leeway
    }
}
