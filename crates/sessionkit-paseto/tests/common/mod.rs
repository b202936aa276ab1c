//! Shared helpers for the sessionkit-paseto tests.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pasetors::Local;
use pasetors::keys::SymmetricKey;
use pasetors::token::UntrustedToken;
use pasetors::version4::{LocalToken, V4};
use sessionkit_core::{Error, SessionId, Timestamp, TokenClaims, TokenCodec, TokenRejection};
use sessionkit_paseto::{Key, KeyRing, PasetoCodec};

pub(crate) const KEY_1: [u8; 32] = [0x11; 32];
pub(crate) const KEY_2: [u8; 32] = [0x22; 32];

pub(crate) const ISSUER: &str = "https://auth.example";
pub(crate) const AUDIENCE: &str = "shop";

pub(crate) fn key(kid: &str, secret: &[u8]) -> Key {
    Key::new(kid, secret).expect("valid key")
}

/// A codec with issuer, audience and 5 s leeway over one key "k1".
pub(crate) fn codec() -> PasetoCodec {
    PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(5))
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

/// Decrypts a token with `secret` (any footer, the given implicit
/// assertion) and returns its payload JSON and its footer bytes: what a
/// holder of the key sees.
pub(crate) fn open(token: &str, secret: &[u8], implicit: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let key = SymmetricKey::<V4>::from(secret).unwrap();
    let untrusted = UntrustedToken::<Local, V4>::try_from(token).unwrap();
    let trusted = LocalToken::decrypt(&key, &untrusted, None, Some(implicit)).unwrap();
    (
        serde_json::from_str(trusted.payload()).unwrap(),
        trusted.footer().to_vec(),
    )
}

/// Encrypts arbitrary payload and footer bytes with `secret`: what an
/// attacker holding the key (or another issuer) could make.
pub(crate) fn forge_raw(
    payload: &[u8],
    footer: Option<&[u8]>,
    secret: &[u8],
    implicit: &[u8],
) -> String {
    let key = SymmetricKey::<V4>::from(secret).unwrap();
    LocalToken::encrypt(&key, payload, footer, Some(implicit)).unwrap()
}

/// A token with this JSON payload under key "k1" (`KEY_1`), as sessionkit
/// would write it.
pub(crate) fn forge(payload: &serde_json::Value) -> String {
    forge_raw(
        &serde_json::to_vec(payload).unwrap(),
        Some(br#"{"kid":"k1"}"#),
        &KEY_1,
        b"",
    )
}

/// The payload a genuine token of `codec()` carries for `claims()`.
pub(crate) fn genuine_payload() -> serde_json::Value {
    open(&codec().encode(&claims()).unwrap(), &KEY_1, b"").0
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
