//! `JwtCodec::decode` (the `TokenCodec` a stateless `SessionManager` uses)
//! with a fixed key ring and a fixed clock. Three shapes of input, picked by
//! the first byte:
//! - 0: the rest is the token text, as a client would send it;
//! - 1: the rest is a claims object, signed with the ring's active key, so
//!   claim parsing behind a valid signature is reached;
//! - 2: the rest is a header, spliced onto a valid token's payload and
//!   signature (header tampering).
//!
//! Never panics; every rejection is `InvalidToken`; every accepted token
//! re-encodes to one that decodes to the same claims.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use sessionkit_core::{Error, Timestamp, TokenCodec};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};

const NOW_SECS: i64 = 1_700_000_000;

struct Fixture {
    codec: JwtCodec,
    valid: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ec = include_bytes!("../../crates/sessionkit-jwt/tests/keys/ec_public.pem");
        let ed = include_bytes!("../../crates/sessionkit-jwt/tests/keys/ed_public.pem");
        let ring = KeyRing::new(Key::secret("k1", Algorithm::HS256, &[7u8; 32]).unwrap())
            .unwrap()
            .with_key(Key::public_pem("ec", Algorithm::ES256, ec).unwrap())
            .unwrap()
            .with_key(Key::public_pem("ed", Algorithm::EdDSA, ed).unwrap())
            .unwrap();
        let codec = JwtCodec::builder(ring)
            .issuer("https://auth.example")
            .audience("shop")
            .leeway(std::time::Duration::from_secs(30))
            .clock(|| Timestamp::from_secs(NOW_SECS))
            .build()
            .unwrap();
        let claims = sessionkit_core::TokenClaims {
            jti: sessionkit_core::SessionId::from_bytes([9; 16]),
            subject: Some("user-7".into()),
            issued_at: Timestamp::from_millis(NOW_SECS * 1000 - 5_123),
            expires_at: Timestamp::from_secs(NOW_SECS + 900),
            not_before: None,
            session_started_at: Timestamp::from_secs(NOW_SECS - 60),
            schema: 1,
            data: serde_json::json!({"cart": [1, 2], "n": null}),
        };
        let valid = codec.encode(&claims).unwrap();
        Fixture { codec, valid }
    })
}

fn check(f: &Fixture, token: &str) {
    match f.codec.decode(token) {
        Ok(claims) => {
            // A hand-made header may be shorter than the canonical one, so
            // the re-encoded token may exceed the size limit: not a bug.
            let again = match f.codec.encode(&claims) {
                Err(Error::TooLarge { .. }) => return,
                other => other.expect("accepted claims must re-encode"),
            };
            let back = f
                .codec
                .decode(&again)
                .expect("re-encoded token must decode");
            assert_eq!(back, claims);
        }
        Err(e) => assert!(matches!(e, Error::InvalidToken(_)), "{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(f, token);
            }
        }
        1 => {
            let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(rest) else {
                return;
            };
            if let Ok(token) = f.codec.encode_json(&map) {
                check(f, &token);
            }
        }
        _ => {
            let mut parts = f.valid.splitn(2, '.');
            let _ = parts.next();
            let tail = parts.next().unwrap_or_default();
            let token = format!("{}.{tail}", URL_SAFE_NO_PAD.encode(rest));
            check(f, &token);
        }
    }
});
