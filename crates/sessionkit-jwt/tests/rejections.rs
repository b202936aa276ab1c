//! Every way a token is rejected, one test each, each asserting the
//! specific `TokenRejection`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sessionkit_core::{Error, Timestamp, TokenCodec, TokenRejection};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};

#[test]
fn a_valid_token_round_trips() {
    let codec = hs256_codec();
    let claims = claims();
    let token = codec.encode(&claims).unwrap();
    let decoded = codec.decode(&token).unwrap();
    // exp travels as whole seconds (rounded down); everything else exactly,
    // issued_at to the millisecond.
    let mut expected = claims.clone();
    expected.expires_at = Timestamp::from_secs(claims.expires_at.as_secs());
    assert_eq!(decoded, expected);
    assert_eq!(decoded.issued_at.as_millis(), claims.issued_at.as_millis());
}

#[test]
fn alg_none_is_rejected() {
    let codec = hs256_codec();
    let token = codec.encode(&claims()).unwrap();
    let (_, payload) = parts_json(&token);
    // An unsigned token naming a key that exists, in both usual spellings
    // of `none`, with and without an empty signature segment.
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "kid": "k1", "typ": "JWT" });
        let unsigned = format!(
            "{}.{}.",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(&payload).unwrap())
        );
        assert_rejected(codec.decode(&unsigned), TokenRejection::Algorithm);
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    // The classic algorithm confusion: the attacker knows the RSA public key
    // (it is published) and uses its PEM text as an HMAC secret, hoping the
    // verifier feeds the same bytes to HMAC because the token says HS256.
    let codec = rs256_codec();
    let token = codec.encode(&claims()).unwrap();
    let (mut header, payload) = parts_json(&token);
    assert_eq!(header["alg"], "RS256");
    header["alg"] = json!("HS256");
    let forged = forge_hmac(&header, &payload, Algorithm::HS256, RSA_PUBLIC);
    assert_rejected(codec.decode(&forged), TokenRejection::Algorithm);
}

#[test]
fn a_changed_header_is_rejected() {
    let codec = hs256_codec();
    let token = codec.encode(&claims()).unwrap();
    let (h, p, s) = split(&token);
    let mut header: serde_json::Value = serde_json::from_slice(&unb64(&h)).unwrap();
    header["typ"] = json!("at+jwt");
    let changed = format!("{}.{p}.{s}", b64(&serde_json::to_vec(&header).unwrap()));
    assert_rejected(codec.decode(&changed), TokenRejection::Signature);
}

#[test]
fn a_changed_payload_is_rejected() {
    let codec = hs256_codec();
    let token = codec.encode(&claims()).unwrap();
    let (h, p, s) = split(&token);
    let mut payload: serde_json::Value = serde_json::from_slice(&unb64(&p)).unwrap();
    payload["sub"] = json!("admin");
    let changed = format!("{h}.{}.{s}", b64(&serde_json::to_vec(&payload).unwrap()));
    assert_rejected(codec.decode(&changed), TokenRejection::Signature);
}

#[test]
fn a_changed_signature_is_rejected() {
    let codec = hs256_codec();
    let token = codec.encode(&claims()).unwrap();
    let (h, p, s) = split(&token);
    let mut sig = unb64(&s);
    sig[7] ^= 0x01;
    let changed = format!("{h}.{p}.{}", b64(&sig));
    assert_rejected(codec.decode(&changed), TokenRejection::Signature);
    // A signature from another key of the same algorithm.
    let other = JwtCodec::builder(KeyRing::new(hmac_key("k1", &SECRET_2)).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let foreign = other.encode(&claims()).unwrap();
    assert_rejected(codec.decode(&foreign), TokenRejection::Signature);
}

#[test]
fn expired_beyond_leeway_is_rejected() {
    let codec = hs256_codec(); // leeway 5 s
    let mut c = claims();
    c.issued_at = Timestamp::now() - Duration::from_secs(3600);
    c.expires_at = Timestamp::now() - Duration::from_secs(60);
    let token = codec.encode(&c).unwrap();
    assert_rejected(codec.decode(&token), TokenRejection::Expired);
}

#[test]
fn expired_within_leeway_is_still_accepted() {
    // The other side of the leeway: 2 s past exp with 5 s leeway is fine.
    let codec = hs256_codec();
    let mut c = claims();
    c.expires_at = Timestamp::now() - Duration::from_secs(2);
    let token = codec.encode(&c).unwrap();
    assert!(codec.decode(&token).is_ok());
}

#[test]
fn exp_is_required() {
    let codec = hs256_codec();
    let token = codec.encode(&claims()).unwrap();
    let (header, mut payload) = parts_json(&token);
    payload.as_object_mut().unwrap().remove("exp");
    let forged = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
    assert_rejected(codec.decode(&forged), TokenRejection::MissingClaim);
}

#[test]
fn before_nbf_is_rejected() {
    let codec = hs256_codec();
    let mut c = claims();
    c.not_before = Some(Timestamp::now() + Duration::from_secs(120));
    let token = codec.encode(&c).unwrap();
    assert_rejected(codec.decode(&token), TokenRejection::NotYetValid);
}

#[test]
fn wrong_issuer_is_rejected() {
    let codec = hs256_codec();
    let other = JwtCodec::builder(KeyRing::new(hmac_key("k1", &SECRET_1)).unwrap())
        .issuer("https://evil.example")
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let token = other.encode(&claims()).unwrap();
    assert_rejected(codec.decode(&token), TokenRejection::Issuer);
}

#[test]
fn wrong_audience_is_rejected() {
    let codec = hs256_codec();
    let other = JwtCodec::builder(KeyRing::new(hmac_key("k1", &SECRET_1)).unwrap())
        .issuer(ISSUER)
        .audience("billing")
        .build()
        .unwrap();
    let token = other.encode(&claims()).unwrap();
    assert_rejected(codec.decode(&token), TokenRejection::Audience);

    // An audience list that contains ours is accepted.
    let (header, mut payload) = parts_json(&codec.encode(&claims()).unwrap());
    payload["aud"] = json!(["billing", AUDIENCE]);
    let listed = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
    assert!(codec.decode(&listed).is_ok());
}

#[test]
fn unknown_kid_is_rejected() {
    let codec = hs256_codec();
    let other = JwtCodec::builder(KeyRing::new(hmac_key("k9", &SECRET_1)).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let token = other.encode(&claims()).unwrap();
    assert_rejected(codec.decode(&token), TokenRejection::UnknownKey);
}

#[test]
fn missing_kid_is_rejected_by_default() {
    let codec = hs256_codec();
    let (mut header, payload) = parts_json(&codec.encode(&claims()).unwrap());
    header.as_object_mut().unwrap().remove("kid");
    let token = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
    assert_rejected(codec.decode(&token), TokenRejection::UnknownKey);

    // Opt-in interop mode: accepted while the ring holds exactly one key...
    let lenient = JwtCodec::builder(KeyRing::new(hmac_key("k1", &SECRET_1)).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .allow_missing_kid(true)
        .build()
        .unwrap();
    assert!(lenient.decode(&token).is_ok());
    // ...and ambiguous, so rejected again, once there is a second key.
    lenient.add_key(hmac_key("k2", &SECRET_2)).unwrap();
    assert_rejected(lenient.decode(&token), TokenRejection::UnknownKey);
}

#[test]
fn kid_dropped_after_rotation_is_rejected() {
    let codec = hs256_codec();
    let old = codec.encode(&claims()).unwrap();
    codec.rotate(hmac_key("k2", &SECRET_2)).unwrap();
    assert!(codec.decode(&old).is_ok(), "kept key still verifies");
    assert!(codec.remove_key("k1").unwrap());
    assert_rejected(codec.decode(&old), TokenRejection::UnknownKey);
}

#[test]
fn over_the_size_limit_is_rejected_before_parsing() {
    let codec = hs256_codec();
    // Not even valid base64: proves nothing is parsed before the size check.
    let huge = "!".repeat(8 * 1024 + 1);
    assert_rejected(codec.decode(&huge), TokenRejection::TooLarge);
    // A genuine token just over a smaller limit.
    let small = JwtCodec::builder(KeyRing::new(hmac_key("k1", &SECRET_1)).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .max_token_size(256)
        .build()
        .unwrap();
    let token = codec.encode(&claims()).unwrap();
    assert!(token.len() > 256);
    assert_rejected(small.decode(&token), TokenRejection::TooLarge);
}

#[test]
fn encoding_over_the_size_limit_is_too_large() {
    let codec = hs256_codec();
    let mut c = claims();
    c.data = json!({ "blob": "x".repeat(9000) });
    match codec.encode(&c) {
        Err(Error::TooLarge { size, limit }) => {
            assert_eq!(limit, 8 * 1024);
            assert!(size > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Exactly at the limit is fine: find the largest blob that fits.
    let mut c = claims();
    c.data = json!({ "blob": "" });
    let base = codec.encode(&c).unwrap().len();
    let room = (8 * 1024 - base) * 3 / 4;
    c.data = json!({ "blob": "y".repeat(room) });
    let token = codec.encode(&c).unwrap();
    assert!(token.len() <= 8 * 1024);
    assert!(codec.decode(&token).is_ok());
}

#[test]
fn bytes_that_are_not_a_jwt_are_malformed() {
    let codec = hs256_codec();
    for garbage in [
        "",
        "hello",
        "a.b",
        "a.b.c.d",
        "...",
        "not base64!.eyJ9.sig",
        "eyJhbGciOiJIUzI1NiJ9.%%%.abc",
        // Header is base64 of `[1,2]`, not an object.
        "WzEsMl0.e30.c2ln",
        "\u{0}\u{1}\u{2}",
        "ÿÿÿ.ÿÿÿ.ÿÿÿ",
    ] {
        match codec.decode(garbage) {
            Err(Error::InvalidToken(TokenRejection::Malformed)) => {}
            other => panic!("{garbage:?}: expected Malformed, got {other:?}"),
        }
    }
    // A correctly signed token whose payload is not JSON.
    let (header, _) = parts_json(&codec.encode(&claims()).unwrap());
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&header).unwrap()),
        b64(b"not json")
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(&SECRET_1),
        Algorithm::HS256,
    )
    .unwrap();
    assert_rejected(
        codec.decode(&format!("{input}.{sig}")),
        TokenRejection::Malformed,
    );
}

#[test]
fn a_jti_that_is_not_a_session_id_is_malformed() {
    let codec = hs256_codec();
    let (header, mut payload) = parts_json(&codec.encode(&claims()).unwrap());
    payload["jti"] = json!("../../etc/passwd");
    let token = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
    assert_rejected(codec.decode(&token), TokenRejection::Malformed);
}

#[test]
fn a_claim_of_the_wrong_type_is_malformed() {
    let codec = hs256_codec();
    let (header, mut payload) = parts_json(&codec.encode(&claims()).unwrap());
    payload["exp"] = json!("tomorrow");
    let token = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
    assert_rejected(codec.decode(&token), TokenRejection::Malformed);
}

#[test]
fn a_critical_header_is_rejected_whatever_its_value() {
    // We understand no extension, so `crit` with any value is refused —
    // `null` and an empty list included (RFC 7515 §4.1.11).
    let codec = hs256_codec();
    let (header, payload) = parts_json(&codec.encode(&claims()).unwrap());
    for crit in [
        json!(["b64"]),
        json!(null),
        json!([]),
        json!("exp"),
        json!({}),
    ] {
        let mut header = header.clone();
        header["crit"] = crit.clone();
        header["b64"] = json!(false);
        let token = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
        assert_rejected(codec.decode(&token), TokenRejection::CriticalHeader);
        assert!(
            codec.decode_json(&token).is_err(),
            "decode_json accepted crit = {crit}"
        );
    }
}

#[test]
fn a_token_issued_in_the_future_is_rejected() {
    // A validly signed token whose iat (or session start) is later than now
    // plus the leeway (5 s here): it would outlive log-out-everywhere.
    let codec = hs256_codec();
    let now = Timestamp::now();
    let mut ahead = claims();
    ahead.issued_at = now + Duration::from_secs(120);
    assert_rejected(
        codec.decode(&codec.encode(&ahead).unwrap()),
        TokenRejection::IssuedInFuture,
    );
    let mut started_ahead = claims();
    started_ahead.session_started_at = now + Duration::from_secs(120);
    assert_rejected(
        codec.decode(&codec.encode(&started_ahead).unwrap()),
        TokenRejection::IssuedInFuture,
    );
    // The far future, forged into the payload as a raw number.
    let (header, mut payload) = parts_json(&codec.encode(&claims()).unwrap());
    payload["iat"] = json!(i64::MAX / 1000);
    let forged = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
    assert_rejected(codec.decode(&forged), TokenRejection::IssuedInFuture);
    assert!(codec.decode_json(&forged).is_err());
    // Within the leeway is fine (clock skew between hosts).
    let mut skewed = claims();
    skewed.issued_at = now + Duration::from_secs(2);
    assert!(codec.decode(&codec.encode(&skewed).unwrap()).is_ok());
}

#[test]
fn an_algorithm_other_than_the_keys_is_rejected_even_in_the_same_family() {
    // HS512 over the right secret, but the key is pinned to HS256.
    let codec = hs256_codec();
    let (mut header, payload) = parts_json(&codec.encode(&claims()).unwrap());
    header["alg"] = json!("HS512");
    let token = forge_hmac(&header, &payload, Algorithm::HS512, &SECRET_1);
    assert_rejected(codec.decode(&token), TokenRejection::Algorithm);
}

#[test]
fn every_rejection_is_an_invalid_ticket() {
    let codec = hs256_codec();
    let err = codec.decode("nope").unwrap_err();
    assert!(err.is_invalid_ticket());
    assert!(!err.is_transient());
}

#[test]
fn a_key_only_in_another_ring_does_not_verify() {
    // Same kid, same algorithm, different RSA key: Signature, not accepted.
    let ec = Key::private_pem("rsa-1", Algorithm::ES256, EC_PRIVATE).unwrap();
    let other = JwtCodec::builder(KeyRing::new(ec).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let token = other.encode(&claims()).unwrap();
    // The kid exists in rs256_codec's ring but is pinned to RS256.
    assert_rejected(rs256_codec().decode(&token), TokenRejection::Algorithm);
}

#[test]
fn issued_at_round_trips_to_the_millisecond_and_iat_stays_whole_seconds() {
    let codec = hs256_codec();
    for ms in [0, 1, 499, 999] {
        let mut c = claims();
        let base = Timestamp::from_secs(Timestamp::now().as_secs());
        c.issued_at = Timestamp::from_millis(base.as_millis() + ms);
        let token = codec.encode(&c).unwrap();
        let (_, payload) = parts_json(&token);
        assert_eq!(payload["iat"], base.as_secs(), "iat is a plain NumericDate");
        assert_eq!(payload.get("ims").is_some(), ms != 0, "ims omitted when 0");
        assert_eq!(codec.decode(&token).unwrap().issued_at, c.issued_at);
    }
    // An out-of-range millisecond part is malformed, not silently carried.
    let (header, mut payload) = parts_json(&codec.encode(&claims()).unwrap());
    payload["ims"] = json!(1000);
    let token = forge_hmac(&header, &payload, Algorithm::HS256, &SECRET_1);
    assert_rejected(codec.decode(&token), TokenRejection::Malformed);
}

#[test]
fn the_codec_reports_its_leeway_for_revocation_retention() {
    assert_eq!(hs256_codec().leeway(), Duration::from_secs(5));
    assert_eq!(rs256_codec().leeway(), Duration::ZERO);
}
