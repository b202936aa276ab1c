//! Shared helpers for the sessionkit-jwt tests.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessionkit_core::{Error, SessionId, Timestamp, TokenClaims, TokenRejection};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};

pub(crate) const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
pub(crate) const RSA_PUBLIC: &[u8] = include_bytes!("../keys/rsa_public.pem");
pub(crate) const RSA1024_PRIVATE: &[u8] = include_bytes!("../keys/rsa1024_private.pem");
pub(crate) const EC_PRIVATE: &[u8] = include_bytes!("../keys/ec_private.pem");
pub(crate) const EC_PUBLIC: &[u8] = include_bytes!("../keys/ec_public.pem");
pub(crate) const ED_PRIVATE: &[u8] = include_bytes!("../keys/ed_private.pem");
pub(crate) const ED_PUBLIC: &[u8] = include_bytes!("../keys/ed_public.pem");

pub(crate) const SECRET_1: [u8; 32] = [0x11; 32];
pub(crate) const SECRET_2: [u8; 32] = [0x22; 32];

pub(crate) const ISSUER: &str = "https://auth.example";
pub(crate) const AUDIENCE: &str = "shop";

pub(crate) fn hmac_key(kid: &str, secret: &[u8]) -> Key {
    Key::secret(kid, Algorithm::HS256, secret).expect("valid HMAC key")
}

/// A codec with issuer, audience and 5 s leeway over one HS256 key "k1".
pub(crate) fn hs256_codec() -> JwtCodec {
    JwtCodec::builder(KeyRing::new(hmac_key("k1", &SECRET_1)).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A codec over the RSA fixture (RS256, kid "rsa-1").
pub(crate) fn rs256_codec() -> JwtCodec {
    let key = Key::private_pem("rsa-1", Algorithm::RS256, RSA_PRIVATE).unwrap();
    JwtCodec::builder(KeyRing::new(key).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

/// Claims valid for 15 minutes from now.
pub(crate) fn claims() -> TokenClaims {
    let now = Timestamp::now();
    TokenClaims {
        jti: SessionId::generate(),
        subject: Some("user-42".into()),
        issued_at: now,
        expires_at: now + Duration::from_secs(900),
        not_before: None,
        session_started_at: now - Duration::from_secs(60),
        schema: 3,
        data: serde_json::json!({ "cart": [1, 2, 3], "theme": "dark" }),
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// The three segments of a compact JWS.
pub(crate) fn split(token: &str) -> (String, String, String) {
    let mut parts = token.split('.');
    let h = parts.next().unwrap().to_owned();
    let p = parts.next().unwrap().to_owned();
    let s = parts.next().unwrap().to_owned();
    assert!(parts.next().is_none());
    (h, p, s)
}

/// Decoded header and payload JSON of a token.
pub(crate) fn parts_json(token: &str) -> (serde_json::Value, serde_json::Value) {
    let (h, p, _) = split(token);
    (
        serde_json::from_slice(&unb64(&h)).unwrap(),
        serde_json::from_slice(&unb64(&p)).unwrap(),
    )
}

/// Builds a token from JSON header and payload, signed with HMAC over
/// `secret` using `alg` — what an attacker holding `secret` could make.
/// (Uses jsonwebtoken's process-wide provider, which building any
/// sessionkit key installs.)
pub(crate) fn forge_hmac(
    header: &serde_json::Value,
    payload: &serde_json::Value,
    alg: Algorithm,
    secret: &[u8],
) -> String {
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(payload).unwrap())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret),
        alg,
    )
    .unwrap();
    format!("{input}.{signature}")
}

#[track_caller]
pub(crate) fn assert_rejected<T: std::fmt::Debug>(
    result: Result<T, Error>,
    reason: TokenRejection,
) {
    match result {
        Err(Error::InvalidToken(r)) => assert_eq!(r, reason, "wrong rejection reason"),
        other => panic!("expected InvalidToken({reason:?}), got {other:?}"),
    }
}
