//! Published example tokens verify: RFC 7515 Appendix A.1 (HS256) and A.3
//! (ES256), RFC 8037 Appendix A.4 (Ed25519).
//!
//! The RFC 7515 tokens carry `"exp":1300819380` (2011-03-22T18:43:00Z) and
//! no `kid`. Rather than switching the expiry check off, the codec here
//! reads its clock as 2011-03-22T18:00:00Z — the time the example was
//! written for — so `exp` is still checked, and fails honestly one second
//! after it. `allow_missing_kid` is the documented interop mode for issuers
//! that do not write `kid`, with exactly one key in the ring.

mod common;

use common::*;
use sessionkit_core::{Timestamp, TokenCodec, TokenRejection};
use sessionkit_jwt::{Algorithm, Jwk, JwtCodec, Key, KeyRing};

const RFC_EXP: i64 = 1_300_819_380;
/// 43 minutes before the examples' `exp`.
const RFC_NOW_MS: i64 = 1_300_816_800_000;

const A1_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const A1_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

const A3_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const A3_JWK: &str = r#"{"kty":"EC","crv":"P-256",
    "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

const RFC8037_TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn rfc_codec(key: Key, now_ms: i64) -> JwtCodec {
    JwtCodec::builder(KeyRing::new(key).unwrap())
        .issuer("joe")
        .allow_missing_kid(true)
        .clock(move || Timestamp::from_millis(now_ms))
        .build()
        .unwrap()
}

#[test]
fn rfc7515_a1_hs256_verifies() {
    let key = Key::secret("rfc7515-a1", Algorithm::HS256, &unb64(A1_K)).unwrap();
    let codec = rfc_codec(key.clone(), RFC_NOW_MS);
    let claims = codec.decode_json(A1_TOKEN).unwrap();
    assert_eq!(claims["iss"], "joe");
    assert_eq!(claims["exp"], RFC_EXP);
    assert_eq!(claims["http://example.com/is_root"], true);

    // At exp the token is expired: the clock above is what made it pass.
    let late = rfc_codec(key.clone(), RFC_EXP * 1000);
    assert_rejected(late.decode_json(A1_TOKEN), TokenRejection::Expired);
    // And today, of course.
    let today = JwtCodec::builder(KeyRing::new(key).unwrap())
        .issuer("joe")
        .allow_missing_kid(true)
        .build()
        .unwrap();
    assert_rejected(today.decode_json(A1_TOKEN), TokenRejection::Expired);
}

/// The RFC's ES256 key pair as a PKCS#8 DER private key, so that the ring
/// can be headed by it (its public half is checked against the RFC's x, y).
fn rfc7515_a3_private_der() -> Vec<u8> {
    // PKCS#8 wrapping of an ECPrivateKey (RFC 5915) on P-256 without the
    // optional public key: fixed prefix, then the 32-byte scalar d.
    let mut der = hex("3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420");
    der.extend(unb64("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"));
    der
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc7515_a3_es256_verifies() {
    // The ring is headed by the RFC's private key (d); its derived public
    // key must be exactly the RFC's public JWK (x, y).
    let private =
        Key::private_der("rfc7515-a3", Algorithm::ES256, &rfc7515_a3_private_der()).unwrap();
    let jwk: Jwk = serde_json::from_str(A3_JWK).unwrap();
    let derived = private.public_jwk().unwrap();
    assert_eq!(derived.algorithm, jwk.algorithm, "RFC 7515 A.3 key pair");

    let codec = rfc_codec(private, RFC_NOW_MS);
    let rfc_claims = codec.decode_json(A3_TOKEN).unwrap();
    assert_eq!(rfc_claims["iss"], "joe");
    assert_eq!(rfc_claims["exp"], RFC_EXP);
    let (h, p, s) = split(A3_TOKEN);
    assert_eq!(unb64(&p), codec.verify_signature(A3_TOKEN).unwrap());
    // One bit of the signature flipped: rejected.
    let mut sig = unb64(&s);
    sig[63] ^= 1;
    let tampered = format!("{h}.{p}.{}", b64(&sig));
    assert_rejected(codec.decode_json(&tampered), TokenRejection::Signature);

    // The RFC's public JWK alone verifies what that key signs.
    let public = Key::from_public_jwk("rfc7515-a3", Algorithm::ES256, &jwk).unwrap();
    let token = codec.encode(&claims()).unwrap();
    let verifier = JwtCodec::new(
        KeyRing::new(hmac_key("own", &SECRET_1))
            .unwrap()
            .with_key(public)
            .unwrap(),
    )
    .unwrap();
    assert!(verifier.decode(&token).is_ok());
}

/// PKCS#8 wrapping of an Ed25519 seed (RFC 8410): fixed prefix, then d.
fn ed25519_pkcs8(d: &[u8]) -> Vec<u8> {
    let mut der = hex("302e020100300506032b657004220420");
    der.extend_from_slice(d);
    der
}

#[test]
fn rfc8037_a4_ed25519_verifies() {
    // The payload is the text "Example of Ed25519 signing", not JWT claims,
    // so this example is checked at the signature layer.
    let private = Key::private_der(
        "rfc8037",
        Algorithm::EdDSA,
        &ed25519_pkcs8(&unb64(RFC8037_D)),
    )
    .unwrap();
    let derived = serde_json::to_value(private.public_jwk().unwrap()).unwrap();
    assert_eq!(derived["x"], RFC8037_X, "RFC 8037 A.2 public key");

    let codec = JwtCodec::builder(KeyRing::new(private).unwrap())
        .allow_missing_kid(true)
        .build()
        .unwrap();
    let payload = codec.verify_signature(RFC8037_TOKEN).unwrap();
    assert_eq!(payload, b"Example of Ed25519 signing");

    // A bit flipped in the signature: rejected.
    let (h, p, s) = split(RFC8037_TOKEN);
    let mut sig = unb64(&s);
    sig[0] ^= 1;
    assert_rejected(
        codec.verify_signature(&format!("{h}.{p}.{}", b64(&sig))),
        TokenRejection::Signature,
    );

    // The public JWK alone (as RFC 8037 A.2 gives it) verifies what the
    // RFC key signs.
    let jwk: Jwk = serde_json::from_str(&format!(
        r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#
    ))
    .unwrap();
    let public = Key::from_public_jwk("rfc8037", Algorithm::EdDSA, &jwk).unwrap();
    let token = codec.encode(&claims()).unwrap();
    let verifier = JwtCodec::new(
        KeyRing::new(hmac_key("own", &SECRET_1))
            .unwrap()
            .with_key(public)
            .unwrap(),
    )
    .unwrap();
    assert!(verifier.decode(&token).is_ok());
}
