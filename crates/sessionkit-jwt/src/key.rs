//! Signing and verification keys, and the key ring that holds them.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sessionkit_core::{Error, Result};

use crate::backend::{install_process_default, provider};

/// Longest accepted key id, in bytes.
pub const MAX_KID_LEN: usize = 128;

/// RSA moduli shorter than this are refused (RFC 7518 §3.3).
const MIN_RSA_BITS: usize = 2048;

/// What a private key signs when it is loaded, to prove that the private
/// and the derived public part belong together.
const PROBE: &[u8] = b"sessionkit-jwt key check";

/// One key with its key id (`kid`) and the one algorithm it is used with.
///
/// The algorithm is part of the key: a token is verified only with the
/// algorithm of the key its header names, never with the algorithm the
/// token claims (no algorithm confusion). A key loaded from private material
/// can sign and verify; a key loaded from public material (or a JWK of
/// another service) can only verify.
///
/// Keys are cheap to clone (shared). `Debug` never shows key material.
///
/// ```
/// use sessionkit_jwt::{Algorithm, Key};
///
/// let key = Key::secret("2026-11", Algorithm::HS256, &[7u8; 32]).unwrap();
/// assert_eq!(key.kid(), "2026-11");
/// assert!(key.can_sign());
/// // HMAC secrets shorter than the hash output are refused (RFC 7518 §3.2).
/// assert!(Key::secret("short", Algorithm::HS256, b"too short").is_err());
/// ```
#[derive(Clone)]
pub struct Key {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    kid: String,
    alg: Algorithm,
    alg_name: &'static str,
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    /// Length of a signature in bytes (known once the key signed its probe).
    signature_len: Option<usize>,
    /// The public JWK, for asymmetric keys.
    jwk: Option<Jwk>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.inner.kid)
            .field("alg", &self.inner.alg)
            .field("can_sign", &self.can_sign())
            .finish_non_exhaustive()
    }
}

fn config(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

fn key_error(kid: &str, what: &str, e: impl fmt::Display) -> Error {
    config(format!("key {kid:?}: {what}: {e}"))
}

/// The JWA name of an algorithm, as it appears in a JWS header.
pub(crate) fn alg_name(alg: Algorithm) -> Option<&'static str> {
    Some(match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => return None,
    })
}

fn check_kid(kid: &str) -> Result<()> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(config(format!(
            "a key id must be 1 to {MAX_KID_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn check_family(kid: &str, alg: Algorithm, family: AlgorithmFamily) -> Result<()> {
    if alg.family() != family {
        return Err(config(format!(
            "key {kid:?}: algorithm {:?} does not fit a {family:?} key",
            alg
        )));
    }
    Ok(())
}

fn significant_bits(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

fn check_rsa_size(kid: &str, n: &[u8]) -> Result<()> {
    let bits = significant_bits(n);
    if bits < MIN_RSA_BITS {
        return Err(config(format!(
            "key {kid:?}: RSA modulus of {bits} bits, at least {MIN_RSA_BITS} are required"
        )));
    }
    Ok(())
}

fn check_ec_point(kid: &str, alg: Algorithm, point: &[u8]) -> Result<()> {
    let len = match alg {
        Algorithm::ES256 => 65,
        _ => 97,
    };
    if point.len() != len || point[0] != 4 {
        return Err(config(format!(
            "key {kid:?}: not an uncompressed {:?} public point",
            alg
        )));
    }
    Ok(())
}

impl Key {
    /// An HMAC key (`HS256`, `HS384`, `HS512`) from secret bytes.
    ///
    /// The secret must be at least as long as the hash output (32, 48 or 64
    /// bytes, RFC 7518 §3.2) and should come from a CSPRNG. It can sign and
    /// verify; it is never exported in a JWK set.
    pub fn secret(kid: impl Into<String>, alg: Algorithm, secret: &[u8]) -> Result<Key> {
        let kid = kid.into();
        check_kid(&kid)?;
        check_family(&kid, alg, AlgorithmFamily::Hmac)?;
        let min = match alg {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            _ => 64,
        };
        if secret.len() < min {
            return Err(config(format!(
                "key {kid:?}: an {:?} secret needs at least {min} bytes, got {}",
                alg,
                secret.len()
            )));
        }
        Self::finish(
            kid,
            alg,
            Some(EncodingKey::from_secret(secret)),
            DecodingKey::from_secret(secret),
        )
    }

    /// A signing key from a private key in PEM form.
    ///
    /// - RSA (`RS256`, `PS256`, …): `BEGIN PRIVATE KEY` (PKCS#8) or
    ///   `BEGIN RSA PRIVATE KEY` (PKCS#1), at least 2048 bits;
    /// - ECDSA (`ES256`, `ES384`): `BEGIN PRIVATE KEY` (PKCS#8);
    /// - `EdDSA` (Ed25519): `BEGIN PRIVATE KEY` (PKCS#8).
    ///
    /// `openssl genpkey -algorithm ED25519` (or `EC -pkeyopt
    /// ec_paramgen_curve:P-256`, or `RSA -pkeyopt rsa_keygen_bits:3072`)
    /// writes such a file. The public part is derived and checked against
    /// the private part by signing a probe.
    pub fn private_pem(kid: impl Into<String>, alg: Algorithm, pem: &[u8]) -> Result<Key> {
        let kid = kid.into();
        check_kid(&kid)?;
        let encoding = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(config(format!(
                    "key {kid:?}: HMAC keys are secrets, use Key::secret"
                )));
            }
        }
        .map_err(|e| key_error(&kid, "cannot read the private key PEM", e))?;
        Self::from_encoding_key(kid, alg, encoding)
    }

    /// A signing key from a private key in DER form: PKCS#1
    /// `RSAPrivateKey` for RSA, PKCS#8 for ECDSA and Ed25519.
    pub fn private_der(kid: impl Into<String>, alg: Algorithm, der: &[u8]) -> Result<Key> {
        let kid = kid.into();
        check_kid(&kid)?;
        let encoding = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_der(der),
            AlgorithmFamily::Ec => EncodingKey::from_ec_der(der),
            AlgorithmFamily::Ed => EncodingKey::from_ed_der(der),
            AlgorithmFamily::Hmac => {
                return Err(config(format!(
                    "key {kid:?}: HMAC keys are secrets, use Key::secret"
                )));
            }
        };
        Self::from_encoding_key(kid, alg, encoding)
    }

    /// A verification-only key from a public key in PEM form
    /// (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY` for RSA).
    pub fn public_pem(kid: impl Into<String>, alg: Algorithm, pem: &[u8]) -> Result<Key> {
        let kid = kid.into();
        check_kid(&kid)?;
        let decoding = match alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(config(format!(
                    "key {kid:?}: HMAC keys are secrets, use Key::secret"
                )));
            }
        }
        .map_err(|e| key_error(&kid, "cannot read the public key PEM", e))?;
        Self::from_public(kid, alg, decoding)
    }

    /// A verification-only key from a public key in DER form: PKCS#1
    /// `RSAPublicKey` for RSA, the uncompressed SEC1 point
    /// (`04 || x || y`) for ECDSA, the 32 raw bytes for Ed25519.
    pub fn public_der(kid: impl Into<String>, alg: Algorithm, der: &[u8]) -> Result<Key> {
        let kid = kid.into();
        check_kid(&kid)?;
        let decoding = match alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_der(der),
            AlgorithmFamily::Ec => DecodingKey::from_ec_der(der),
            AlgorithmFamily::Ed => DecodingKey::from_ed_der(der),
            AlgorithmFamily::Hmac => {
                return Err(config(format!(
                    "key {kid:?}: HMAC keys are secrets, use Key::secret"
                )));
            }
        };
        Self::from_public(kid, alg, decoding)
    }

    /// A verification-only key from a public JWK (`kty` `RSA`, `EC` or
    /// `OKP`), for example one entry of another service's JWK set.
    ///
    /// If the JWK names an algorithm (`alg`), it must be `alg`. Symmetric
    /// (`oct`) JWKs are refused: load secrets with [`Key::secret`].
    pub fn from_public_jwk(kid: impl Into<String>, alg: Algorithm, jwk: &Jwk) -> Result<Key> {
        use jsonwebtoken::jwk::{AlgorithmParameters, KeyAlgorithm};
        let kid = kid.into();
        check_kid(&kid)?;
        if let Some(named) = jwk.common.key_algorithm
            && named != KeyAlgorithm::from(alg)
        {
            return Err(config(format!(
                "key {kid:?}: the JWK is for {named}, not {alg:?}"
            )));
        }
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(config(format!(
                "key {kid:?}: a symmetric JWK is a secret, use Key::secret"
            )));
        }
        let decoding =
            DecodingKey::from_jwk(jwk).map_err(|e| key_error(&kid, "cannot read the JWK", e))?;
        Self::from_public(kid, alg, decoding)
    }

    fn from_encoding_key(kid: String, alg: Algorithm, encoding: EncodingKey) -> Result<Key> {
        install_process_default();
        check_family(&kid, alg, encoding.family())?;
        let utils = &provider().key_utils;
        let der = encoding.as_bytes();
        let decoding = match alg.family() {
            AlgorithmFamily::Rsa => {
                let (n, e) = (utils.rsa_pub_components_from_private_key)(der)
                    .map_err(|e| key_error(&kid, "not an RSA private key", e))?;
                check_rsa_size(&kid, &n)?;
                DecodingKey::from_rsa_raw_components(&n, &e)
            }
            AlgorithmFamily::Ec => {
                let (_curve, x, y) = (utils.ec_pub_components_from_private_key)(der, alg)
                    .map_err(|e| key_error(&kid, "not an ECDSA private key", e))?;
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                check_ec_point(&kid, alg, &point)?;
                DecodingKey::from_ec_der(&point)
            }
            AlgorithmFamily::Ed => {
                let x = (utils.ed_pub_components_from_private_key)(
                    der,
                    &jsonwebtoken::jwk::EllipticCurve::Ed25519,
                )
                .map_err(|e| key_error(&kid, "not an Ed25519 private key", e))?;
                DecodingKey::from_ed_der(&x)
            }
            AlgorithmFamily::Hmac => unreachable_hmac(&kid)?,
        };
        Self::finish(kid, alg, Some(encoding), decoding)
    }

    fn from_public(kid: String, alg: Algorithm, decoding: DecodingKey) -> Result<Key> {
        install_process_default();
        check_family(&kid, alg, decoding.family())?;
        // Normalise to the forms the JWK export reads without jsonwebtoken's
        // process-wide provider: RSA as (n, e), EC as the raw point.
        let decoding = match alg.family() {
            AlgorithmFamily::Rsa => {
                let (n, e) = match decoding.kind() {
                    jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => {
                        (n.clone(), e.clone())
                    }
                    jsonwebtoken::DecodingKeyKind::SecretOrDer(der) => {
                        (provider().key_utils.rsa_pub_components_from_public_key)(der)
                            .map_err(|e| key_error(&kid, "not an RSA public key", e))?
                    }
                };
                check_rsa_size(&kid, &n)?;
                DecodingKey::from_rsa_raw_components(&n, &e)
            }
            AlgorithmFamily::Ec => {
                let point = decoding
                    .try_get_as_bytes()
                    .map_err(|e| key_error(&kid, "not an ECDSA public key", e))?;
                check_ec_point(&kid, alg, point)?;
                decoding
            }
            AlgorithmFamily::Ed => {
                let raw = decoding
                    .try_get_as_bytes()
                    .map_err(|e| key_error(&kid, "not an Ed25519 public key", e))?;
                if raw.len() != 32 {
                    return Err(config(format!(
                        "key {kid:?}: an Ed25519 public key has 32 bytes"
                    )));
                }
                decoding
            }
            AlgorithmFamily::Hmac => unreachable_hmac(&kid)?,
        };
        Self::finish(kid, alg, None, decoding)
    }

    fn finish(
        kid: String,
        alg: Algorithm,
        signing: Option<EncodingKey>,
        verifying: DecodingKey,
    ) -> Result<Key> {
        install_process_default();
        let name = alg_name(alg)
            .ok_or_else(|| config(format!("key {kid:?}: algorithm {alg:?} is not supported")))?;
        let p = provider();
        let verifier = (p.verifier_factory)(&alg, &verifying)
            .map_err(|e| key_error(&kid, "unusable verification key", e))?;
        let signature_len = match &signing {
            Some(encoding) => {
                let signer = (p.signer_factory)(&alg, encoding)
                    .map_err(|e| key_error(&kid, "unusable signing key", e))?;
                let probe = signer
                    .try_sign(PROBE)
                    .map_err(|e| key_error(&kid, "cannot sign with the key", e))?;
                verifier.verify(PROBE, &probe).map_err(|_| {
                    config(format!(
                        "key {kid:?}: the derived public key does not verify the private key's signature"
                    ))
                })?;
                Some(probe.len())
            }
            None => None,
        };
        let jwk = if alg.family() == AlgorithmFamily::Hmac {
            None
        } else {
            let mut jwk = Jwk::from_decoding_key(&verifying, Some(alg))
                .map_err(|e| key_error(&kid, "cannot express the key as a JWK", e))?;
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            Some(jwk)
        };
        Ok(Key {
            inner: Arc::new(KeyInner {
                kid,
                alg,
                alg_name: name,
                signing,
                verifying,
                signature_len,
                jwk,
            }),
        })
    }

    /// The key id written into the header of every token this key signs.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The one algorithm this key signs and verifies with.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.alg
    }

    /// Whether the key holds private material (or is an HMAC secret).
    pub fn can_sign(&self) -> bool {
        self.inner.signing.is_some()
    }

    /// The public key as a JWK (with `kid`, `alg` and `use: sig`); `None`
    /// for HMAC secrets, which must never be published.
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.inner.jwk.as_ref()
    }

    pub(crate) fn alg_name(&self) -> &'static str {
        self.inner.alg_name
    }

    pub(crate) fn signing(&self) -> Option<&EncodingKey> {
        self.inner.signing.as_ref()
    }

    pub(crate) fn verifying(&self) -> &DecodingKey {
        &self.inner.verifying
    }

    pub(crate) fn signature_len(&self) -> Option<usize> {
        self.inner.signature_len
    }
}

fn unreachable_hmac(kid: &str) -> Result<DecodingKey> {
    Err(config(format!(
        "key {kid:?}: HMAC keys are secrets, use Key::secret"
    )))
}

/// One active signing key and any number of verification keys.
///
/// Every token is signed with the active key and carries its `kid`; a token
/// verifies while the key its `kid` names is in the ring. Rotation therefore
/// has three steps, each safe on its own:
///
/// 1. [`add`](KeyRing::add) the next key (verifiers that fetch the
///    [`jwks`](KeyRing::jwks) learn it before anything is signed with it);
/// 2. [`activate`](KeyRing::activate) it (or do 1 and 2 at once with
///    [`rotate`](KeyRing::rotate)): new tokens are signed with it, tokens
///    signed with the previous key still verify;
/// 3. once the longest token lifetime (plus leeway) has passed,
///    [`remove`](KeyRing::remove) the previous key: tokens it signed are
///    rejected from then on with `UnknownKey`.
///
/// ```
/// use sessionkit_jwt::{Algorithm, Key, KeyRing};
///
/// let mut ring = KeyRing::new(Key::secret("k1", Algorithm::HS256, &[1u8; 32])?)?;
/// ring.rotate(Key::secret("k2", Algorithm::HS256, &[2u8; 32])?)?;
/// assert_eq!(ring.active().kid(), "k2");
/// assert!(ring.get("k1").is_some()); // still verifies old tokens
/// assert!(ring.remove("k1")?);
/// assert!(ring.remove("k2").is_err()); // the active key cannot be removed
/// # Ok::<(), sessionkit_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
    active: usize,
}

impl KeyRing {
    /// A ring whose active key is `active` (which must be able to sign).
    pub fn new(active: Key) -> Result<KeyRing> {
        if !active.can_sign() {
            return Err(config(format!(
                "key {:?} has no private part and cannot be the active key",
                active.kid()
            )));
        }
        Ok(KeyRing {
            keys: vec![active],
            active: 0,
        })
    }

    /// Adds a verification key (builder style).
    pub fn with_key(mut self, key: Key) -> Result<KeyRing> {
        self.add(key)?;
        Ok(self)
    }

    /// Adds a key that verifies tokens but does not sign yet. Key ids are
    /// unique in a ring: reusing one is a configuration error (a verifier
    /// that cached the old key under that id would reject the new tokens).
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

    /// Makes the key with this id the active signing key; the previously
    /// active key stays in the ring for verification.
    pub fn activate(&mut self, kid: &str) -> Result<()> {
        let index = self
            .position(kid)
            .ok_or_else(|| config(format!("key id {kid:?} is not in the key ring")))?;
        if !self.keys[index].can_sign() {
            return Err(config(format!(
                "key {kid:?} has no private part and cannot be the active key"
            )));
        }
        self.active = index;
        Ok(())
    }

    /// Adds `key` and makes it the active signing key in one step.
    pub fn rotate(&mut self, key: Key) -> Result<()> {
        if !key.can_sign() {
            return Err(config(format!(
                "key {:?} has no private part and cannot be the active key",
                key.kid()
            )));
        }
        let kid = key.kid().to_owned();
        self.add(key)?;
        self.activate(&kid)
    }

    /// Drops a key: tokens it signed no longer verify. Returns whether it
    /// was in the ring; removing the active key is a configuration error.
    pub fn remove(&mut self, kid: &str) -> Result<bool> {
        let Some(index) = self.position(kid) else {
            return Ok(false);
        };
        if index == self.active {
            return Err(config(format!(
                "key {kid:?} is the active signing key; activate another key first"
            )));
        }
        self.keys.remove(index);
        if index < self.active {
            self.active -= 1;
        }
        Ok(true)
    }

    /// The active signing key.
    pub fn active(&self) -> &Key {
        &self.keys[self.active]
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid() == kid)
    }

    fn position(&self, kid: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.kid() == kid)
    }

    /// Every key, the active one included, in the order they were added.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// Number of keys in the ring (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least its active key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public keys of the ring as a JWK set, for services that verify
    /// the tokens themselves (serve it as JSON, e.g. at
    /// `/.well-known/jwks.json`). HMAC secrets are never included.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self
                .keys
                .iter()
                .filter_map(|k| k.public_jwk().cloned())
                .collect(),
        }
    }
}
