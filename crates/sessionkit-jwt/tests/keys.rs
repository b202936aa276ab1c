//! Key loading for every supported algorithm, rotation and JWK set export.

mod common;

use common::*;
use sessionkit_core::{Error, TokenCodec, TokenRejection};
use sessionkit_jwt::{Algorithm, CryptoBackend, JwkSet, JwtCodec, Key, KeyRing};

fn pem_body_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn round_trip(signing: Key, verifying: Key) {
    let alg = signing.algorithm();
    let signer = JwtCodec::new(KeyRing::new(signing).unwrap()).unwrap();
    let claims = claims();
    let token = signer.encode(&claims).unwrap();
    let (header, _) = parts_json(&token);
    assert_eq!(header["alg"], serde_json::to_value(alg).unwrap());
    assert_eq!(header["typ"], "JWT");
    assert_eq!(signer.decode(&token).unwrap().jti, claims.jti);

    // A verifier that only holds the public key (or the same secret).
    let kid = verifying.kid().to_owned();
    let mut ring = KeyRing::new(hmac_key("unrelated", &SECRET_2)).unwrap();
    ring.add(verifying).unwrap();
    let verifier = JwtCodec::new(ring).unwrap();
    assert_eq!(header["kid"], kid);
    assert_eq!(verifier.decode(&token).unwrap().data, claims.data);
}

#[test]
fn hmac_algorithms_round_trip() {
    for (alg, len) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        let secret = vec![0x5a; len];
        round_trip(
            Key::secret("h", alg, &secret).unwrap(),
            Key::secret("h", alg, &secret).unwrap(),
        );
        // One byte short of the hash size is refused (RFC 7518 §3.2).
        assert!(matches!(
            Key::secret("h", alg, &secret[1..]),
            Err(Error::Config(_))
        ));
    }
}

#[test]
fn rs256_and_ps256_round_trip_from_pem() {
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        round_trip(
            Key::private_pem("r", alg, RSA_PRIVATE).unwrap(),
            Key::public_pem("r", alg, RSA_PUBLIC).unwrap(),
        );
    }
}

#[test]
fn es256_round_trips_from_pem() {
    round_trip(
        Key::private_pem("e", Algorithm::ES256, EC_PRIVATE).unwrap(),
        Key::public_pem("e", Algorithm::ES256, EC_PUBLIC).unwrap(),
    );
}

#[test]
fn eddsa_round_trips_from_pem() {
    round_trip(
        Key::private_pem("d", Algorithm::EdDSA, ED_PRIVATE).unwrap(),
        Key::public_pem("d", Algorithm::EdDSA, ED_PUBLIC).unwrap(),
    );
}

#[test]
fn keys_load_from_der() {
    // PKCS#8 DER for EC and Ed25519 private keys, straight from the PEM body.
    let ec = Key::private_der("e", Algorithm::ES256, &pem_body_der(EC_PRIVATE)).unwrap();
    let ed = Key::private_der("d", Algorithm::EdDSA, &pem_body_der(ED_PRIVATE)).unwrap();
    // Public DER forms: the raw point / raw key, as the JWK of the private
    // key carries them.
    let ec_pub = ec.public_jwk().unwrap().clone();
    let ed_pub = ed.public_jwk().unwrap().clone();
    let point = |jwk: &sessionkit_jwt::Jwk| -> Vec<u8> {
        match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p) => {
                let mut v = vec![4];
                v.extend(unb64(&p.x));
                v.extend(unb64(&p.y));
                v
            }
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => unb64(&p.x),
            _ => unreachable!(),
        }
    };
    round_trip(
        ec.clone(),
        Key::public_der("e", Algorithm::ES256, &point(&ec_pub)).unwrap(),
    );
    round_trip(
        ed.clone(),
        Key::public_der("d", Algorithm::EdDSA, &point(&ed_pub)).unwrap(),
    );
    // RSA from a PEM parsed back into its PKCS#1 form via the JWK route:
    // (n, e) from the private key, verified through a JWK.
    let rsa = Key::private_pem("r", Algorithm::RS256, RSA_PRIVATE).unwrap();
    let jwk = rsa.public_jwk().unwrap().clone();
    round_trip(
        rsa,
        Key::from_public_jwk("r", Algorithm::RS256, &jwk).unwrap(),
    );
}

#[test]
fn bad_key_material_is_a_config_error() {
    let config = |r: Result<Key, Error>| assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    // RSA keys under 2048 bits are refused (RFC 7518 §3.3).
    config(Key::private_pem("r", Algorithm::RS256, RSA1024_PRIVATE));
    // Garbage, the wrong family, a public key where a private one is needed.
    config(Key::private_pem("r", Algorithm::RS256, b"not a pem"));
    config(Key::private_pem("e", Algorithm::ES256, RSA_PRIVATE));
    config(Key::private_pem("e", Algorithm::ES256, EC_PUBLIC));
    config(Key::public_pem("d", Algorithm::EdDSA, EC_PUBLIC));
    config(Key::private_pem("h", Algorithm::HS256, RSA_PRIVATE));
    config(Key::secret("r", Algorithm::RS256, &[0; 64]));
    config(Key::public_der("e", Algorithm::ES256, &[4; 10]));
    // Key ids: not empty, printable, bounded.
    config(Key::secret("", Algorithm::HS256, &SECRET_1));
    config(Key::secret("a b", Algorithm::HS256, &SECRET_1));
    config(Key::secret("x".repeat(129), Algorithm::HS256, &SECRET_1));
}

#[test]
fn key_ring_rules() {
    let public = Key::public_pem("pub", Algorithm::RS256, RSA_PUBLIC).unwrap();
    // A verification-only key can never sign.
    assert!(matches!(
        KeyRing::new(public.clone()),
        Err(Error::Config(_))
    ));
    let mut ring = KeyRing::new(hmac_key("k1", &SECRET_1)).unwrap();
    ring.add(public.clone()).unwrap();
    assert!(matches!(ring.activate("pub"), Err(Error::Config(_))));
    assert!(matches!(ring.rotate(public), Err(Error::Config(_))));
    // Duplicate kids are refused.
    assert!(matches!(
        ring.add(hmac_key("k1", &SECRET_2)),
        Err(Error::Config(_))
    ));
    // The active key cannot be removed; unknown kids report false.
    assert!(matches!(ring.remove("k1"), Err(Error::Config(_))));
    assert!(!ring.remove("nope").unwrap());
    assert!(ring.remove("pub").unwrap());
    assert_eq!(ring.len(), 1);
    // Debug shows ids, never secrets.
    let debug = format!("{ring:?}");
    assert!(debug.contains("k1"));
    assert!(!debug.contains("17, 17"), "{debug}");
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_key_is_dropped() {
    let codec = hs256_codec();
    let before = codec.encode(&claims()).unwrap();
    assert_eq!(parts_json(&before).0["kid"], "k1");

    // Publish the next key first, then activate it (two-step rotation).
    codec.add_key(hmac_key("k2", &SECRET_2)).unwrap();
    assert_eq!(codec.active_kid(), "k1");
    codec.activate("k2").unwrap();
    let after = codec.encode(&claims()).unwrap();
    assert_eq!(parts_json(&after).0["kid"], "k2");

    // Both verify while both keys are kept.
    assert!(codec.decode(&before).is_ok());
    assert!(codec.decode(&after).is_ok());

    // Dropping the retired key ends its tokens, not the new ones.
    assert!(codec.remove_key("k1").unwrap());
    assert_rejected(codec.decode(&before), TokenRejection::UnknownKey);
    assert!(codec.decode(&after).is_ok());
    assert!(matches!(codec.remove_key("k2"), Err(Error::Config(_))));

    // One-step rotation.
    codec.rotate(hmac_key("k3", &SECRET_1)).unwrap();
    assert_eq!(codec.active_kid(), "k3");
    assert!(codec.decode(&after).is_ok());
}

#[test]
fn jwk_set_exports_public_keys_only() {
    let rsa = Key::private_pem("rsa-2026", Algorithm::PS256, RSA_PRIVATE).unwrap();
    let mut ring = KeyRing::new(rsa).unwrap();
    ring.add(hmac_key("secret-kid", &SECRET_1)).unwrap();
    ring.add(Key::public_pem("ec-old", Algorithm::ES256, EC_PUBLIC).unwrap())
        .unwrap();
    ring.add(Key::private_pem("ed", Algorithm::EdDSA, ED_PRIVATE).unwrap())
        .unwrap();
    let codec = JwtCodec::new(ring).unwrap();

    let json = codec.jwks_json();
    assert!(
        !json.contains("secret-kid"),
        "HMAC secrets are never published"
    );
    assert!(!json.contains("\"d\""), "no private parameters");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys = value["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let by_kid = |kid: &str| keys.iter().find(|k| k["kid"] == kid).unwrap().clone();
    let rsa = by_kid("rsa-2026");
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["alg"], "PS256");
    assert_eq!(rsa["use"], "sig");
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(unb64(rsa["n"].as_str().unwrap()).len(), 256);
    let ec = by_kid("ec-old");
    assert_eq!(
        (ec["kty"].as_str(), ec["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    let ed = by_kid("ed");
    assert_eq!(
        (ed["kty"].as_str(), ed["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );

    // Another service verifies our tokens with nothing but the JWK set.
    let token = codec.encode(&claims()).unwrap();
    let set: JwkSet = serde_json::from_str(&json).unwrap();
    let jwk = set.find("rsa-2026").unwrap();
    let remote = Key::from_public_jwk("rsa-2026", Algorithm::PS256, jwk).unwrap();
    let verifier = JwtCodec::new(
        KeyRing::new(hmac_key("own", &SECRET_2))
            .unwrap()
            .with_key(remote)
            .unwrap(),
    )
    .unwrap();
    assert!(verifier.decode(&token).is_ok());
    // ...and through plain jsonwebtoken, as a non-sessionkit service would.
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::PS256);
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.header.kid.as_deref(), Some("rsa-2026"));

    // A JWK for another algorithm than the one asked for is refused.
    assert!(matches!(
        Key::from_public_jwk("x", Algorithm::RS256, jwk),
        Err(Error::Config(_))
    ));
}

#[test]
fn the_selected_backend_follows_the_features() {
    let expected = if cfg!(feature = "aws_lc_rs") {
        CryptoBackend::AwsLcRs
    } else {
        CryptoBackend::RustCrypto
    };
    assert_eq!(CryptoBackend::selected(), expected);
}
