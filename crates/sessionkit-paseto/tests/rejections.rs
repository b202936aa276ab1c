//! The round trip, and every way a token is rejected: one test each, each
//! asserting the specific `TokenRejection`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sessionkit_core::{Error, Timestamp, TokenCodec, TokenRejection};
use sessionkit_paseto::{Key, KeyRing, PasetoCodec};

#[test]
fn a_valid_token_round_trips() {
    let codec = codec();
    let claims = claims();
    let token = codec.encode(&claims).unwrap();
    assert!(token.starts_with("v4.local."));
    let decoded = codec.decode(&token).unwrap();
    // exp travels as whole seconds (rounded down); everything else exactly,
    // issued_at and the session start to the millisecond.
    let mut expected = claims.clone();
    expected.expires_at = Timestamp::from_secs(claims.expires_at.as_secs());
    assert_eq!(decoded, expected);
    assert_eq!(decoded.issued_at.as_millis(), claims.issued_at.as_millis());

    // No subject, a not-before in the past, null data.
    let mut other = claims.clone();
    other.subject = None;
    other.not_before = Some(Timestamp::from_secs(Timestamp::now().as_secs() - 10));
    other.data = serde_json::Value::Null;
    let decoded = codec.decode(&codec.encode(&other).unwrap()).unwrap();
    let mut expected = other.clone();
    expected.expires_at = Timestamp::from_secs(other.expires_at.as_secs());
    assert_eq!(decoded, expected);
}

#[test]
fn the_payload_uses_paseto_datetimes_and_sessionkit_claim_names() {
    let mut c = claims();
    c.issued_at = Timestamp::from_millis(1_796_371_535_250);
    c.session_started_at = Timestamp::from_millis(1_796_371_500_001);
    c.expires_at = Timestamp::from_millis(1_796_372_435_999);
    c.not_before = Some(Timestamp::from_secs(1_796_371_530));
    let clocked = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .clock(|| Timestamp::from_secs(1_796_371_600))
        .build()
        .unwrap();
    let token = clocked.encode(&c).unwrap();
    let (payload, footer) = open(&token, &KEY_1, b"");
    assert_eq!(footer, br#"{"kid":"k1"}"#);
    assert_eq!(payload["iat"], "2026-12-04T08:05:35Z");
    assert_eq!(payload["ims"], 250);
    assert_eq!(payload["exp"], "2026-12-04T08:20:35Z", "rounded down");
    assert_eq!(payload["nbf"], "2026-12-04T08:05:30Z");
    assert_eq!(payload["sst"], 1_796_371_500_001i64);
    assert_eq!(payload["sch"], 3);
    assert_eq!(payload["jti"], c.jti.as_str());
    assert_eq!(payload["sub"], "user-42");
    assert_eq!(payload["iss"], ISSUER);
    assert_eq!(payload["aud"], AUDIENCE);
    assert_eq!(payload["dat"], c.data);
    assert_eq!(clocked.decode(&token).unwrap().issued_at, c.issued_at);
}

#[test]
fn another_version_or_purpose_is_an_algorithm_rejection() {
    let codec = codec();
    let token = codec.encode(&claims()).unwrap();
    let rest = token.strip_prefix("v4.local.").unwrap();
    for header in [
        "v4.public.",
        "v2.local.",
        "v3.local.",
        "v1.public.",
        "v9.local.",
    ] {
        assert_rejected(
            codec.decode(&format!("{header}{rest}")),
            TokenRejection::Algorithm,
        );
    }
    // Not PASETO at all.
    for header in ["v4.locale.", "V4.local.", "v4.", "4.local."] {
        assert_rejected(
            codec.decode(&format!("{header}{rest}")),
            TokenRejection::Malformed,
        );
    }
}

#[test]
fn a_changed_ciphertext_is_rejected() {
    let codec = codec();
    let token = codec.encode(&claims()).unwrap();
    let (head, footer) = token.rsplit_once('.').unwrap();
    // Change one character in the middle of the body (nonce, ciphertext
    // and tag alike), keeping it canonical base64url.
    for at in [12, head.len() / 2, head.len() - 5] {
        let mut bytes = head.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let changed = format!("{}.{footer}", String::from_utf8(bytes).unwrap());
        assert_rejected(codec.decode(&changed), TokenRejection::Signature);
    }
}

#[test]
fn a_changed_footer_is_rejected_even_when_it_names_the_same_key() {
    let codec = codec();
    let token = codec.encode(&claims()).unwrap();
    let (head, _) = token.rsplit_once('.').unwrap();
    // Same kid, other bytes: the footer is authenticated.
    let respelled = format!("{head}.{}", b64(br#"{ "kid": "k1" }"#));
    assert_rejected(codec.decode(&respelled), TokenRejection::Signature);
    // Footer moved to another key id that exists.
    codec.add_key(key("k2", &KEY_2)).unwrap();
    let moved = format!("{head}.{}", b64(br#"{"kid":"k2"}"#));
    assert_rejected(codec.decode(&moved), TokenRejection::Signature);
}

#[test]
fn a_token_of_another_key_under_the_same_kid_is_rejected() {
    let codec = codec();
    let other = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_2)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let foreign = other.encode(&claims()).unwrap();
    assert_rejected(codec.decode(&foreign), TokenRejection::Signature);
}

#[test]
fn another_implicit_assertion_is_rejected() {
    let plain = codec();
    let bound = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .implicit_assertion(&b"shop-sessions/prod"[..])
        .build()
        .unwrap();
    let other = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .implicit_assertion(&b"shop-sessions/staging"[..])
        .build()
        .unwrap();
    let bound_token = bound.encode(&claims()).unwrap();
    assert!(bound.decode(&bound_token).is_ok());
    assert_rejected(plain.decode(&bound_token), TokenRejection::Signature);
    assert_rejected(other.decode(&bound_token), TokenRejection::Signature);
    assert_rejected(
        bound.decode(&plain.encode(&claims()).unwrap()),
        TokenRejection::Signature,
    );
    // Never sent: the token does not contain it.
    assert!(
        !String::from_utf8_lossy(&unb64(
            bound_token
                .rsplit_once('.')
                .unwrap()
                .0
                .strip_prefix("v4.local.")
                .unwrap()
        ))
        .contains("shop-sessions")
    );
}

#[test]
fn expired_beyond_leeway_is_rejected() {
    let codec = codec(); // leeway 5 s
    let mut c = claims();
    c.issued_at = Timestamp::now() - Duration::from_secs(3600);
    c.session_started_at = c.issued_at;
    c.expires_at = Timestamp::now() - Duration::from_secs(60);
    assert_rejected(
        codec.decode(&codec.encode(&c).unwrap()),
        TokenRejection::Expired,
    );
}

#[test]
fn expired_within_leeway_is_still_accepted() {
    let codec = codec();
    let mut c = claims();
    c.expires_at = Timestamp::now() - Duration::from_secs(2);
    assert!(codec.decode(&codec.encode(&c).unwrap()).is_ok());
}

#[test]
fn the_injected_clock_decides_expiry() {
    // A token valid now, decoded by a codec whose clock is an hour ahead.
    let token = codec().encode(&claims()).unwrap();
    let later = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .clock(|| Timestamp::now() + Duration::from_secs(3600))
        .build()
        .unwrap();
    assert_rejected(later.decode(&token), TokenRejection::Expired);
}

#[test]
fn exp_is_required() {
    let codec = codec();
    let mut payload = genuine_payload();
    payload.as_object_mut().unwrap().remove("exp");
    assert_rejected(codec.decode(&forge(&payload)), TokenRejection::MissingClaim);
}

#[test]
fn every_sessionkit_claim_is_required() {
    let codec = codec();
    for claim in ["jti", "iat", "sst", "sch"] {
        let mut payload = genuine_payload();
        payload.as_object_mut().unwrap().remove(claim);
        match codec.decode(&forge(&payload)) {
            Err(Error::InvalidToken(TokenRejection::MissingClaim)) => {}
            other => panic!("without {claim}: expected MissingClaim, got {other:?}"),
        }
    }
}

#[test]
fn before_nbf_is_rejected() {
    let codec = codec();
    let mut c = claims();
    c.not_before = Some(Timestamp::now() + Duration::from_secs(120));
    assert_rejected(
        codec.decode(&codec.encode(&c).unwrap()),
        TokenRejection::NotYetValid,
    );
}

#[test]
fn wrong_issuer_is_rejected() {
    let codec = codec();
    let other = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer("https://evil.example")
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_rejected(
        codec.decode(&other.encode(&claims()).unwrap()),
        TokenRejection::Issuer,
    );
    let mut payload = genuine_payload();
    payload.as_object_mut().unwrap().remove("iss");
    assert_rejected(codec.decode(&forge(&payload)), TokenRejection::MissingClaim);
}

#[test]
fn wrong_audience_is_rejected() {
    let codec = codec();
    let other = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience("billing")
        .build()
        .unwrap();
    assert_rejected(
        codec.decode(&other.encode(&claims()).unwrap()),
        TokenRejection::Audience,
    );
    // A token with an audience, presented to a codec that has none.
    let no_audience = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .build()
        .unwrap();
    assert_rejected(
        no_audience.decode(&codec.encode(&claims()).unwrap()),
        TokenRejection::Audience,
    );
    // PASETO's aud is a string: a list is malformed.
    let mut payload = genuine_payload();
    payload["aud"] = json!([AUDIENCE]);
    assert_rejected(codec.decode(&forge(&payload)), TokenRejection::Malformed);
}

#[test]
fn unknown_kid_is_rejected() {
    let codec = codec();
    let other = PasetoCodec::builder(KeyRing::new(key("k9", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_rejected(
        codec.decode(&other.encode(&claims()).unwrap()),
        TokenRejection::UnknownKey,
    );
}

#[test]
fn missing_kid_is_rejected_by_default() {
    let codec = codec();
    let payload = serde_json::to_vec(&genuine_payload()).unwrap();
    let no_footer = forge_raw(&payload, None, &KEY_1, b"");
    assert_eq!(no_footer.split('.').count(), 3);
    let empty_object = forge_raw(&payload, Some(b"{}"), &KEY_1, b"");
    for token in [&no_footer, &empty_object] {
        assert_rejected(codec.decode(token), TokenRejection::UnknownKey);
    }

    // Opt-in: accepted while the ring holds exactly one key...
    let lenient = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .allow_missing_kid(true)
        .build()
        .unwrap();
    for token in [&no_footer, &empty_object] {
        assert!(lenient.decode(token).is_ok());
    }
    // ...and ambiguous, so rejected again, once there is a second key.
    lenient.add_key(key("k2", &KEY_2)).unwrap();
    for token in [&no_footer, &empty_object] {
        assert_rejected(lenient.decode(token), TokenRejection::UnknownKey);
    }
}

#[test]
fn kid_dropped_after_rotation_is_rejected() {
    let codec = codec();
    let old = codec.encode(&claims()).unwrap();
    codec.rotate(key("k2", &KEY_2)).unwrap();
    assert!(codec.decode(&old).is_ok(), "the kept key still decrypts");
    assert!(codec.remove_key("k1").unwrap());
    assert_rejected(codec.decode(&old), TokenRejection::UnknownKey);
}

#[test]
fn over_the_size_limit_is_rejected_before_parsing() {
    let codec = codec();
    // Not even base64: proves nothing is parsed before the size check.
    let huge = "!".repeat(8 * 1024 + 1);
    assert_rejected(codec.decode(&huge), TokenRejection::TooLarge);
    // A genuine token just over a smaller limit.
    let small = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .max_token_size(300)
        .build()
        .unwrap();
    let token = codec.encode(&claims()).unwrap();
    assert!(token.len() > 300);
    assert_rejected(small.decode(&token), TokenRejection::TooLarge);
}

#[test]
fn encoding_over_the_size_limit_is_too_large() {
    let codec = codec();
    let mut c = claims();
    c.data = json!({ "blob": "x".repeat(9000) });
    match codec.encode(&c) {
        Err(Error::TooLarge { size, limit }) => {
            assert_eq!(limit, 8 * 1024);
            assert!(size > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The largest blob that fits is accepted, one byte more is not: the
    // size is predicted exactly before encrypting.
    c.data = json!({ "blob": "" });
    let base = codec.encode(&c).unwrap().len();
    let mut room = (8 * 1024 - base) * 3 / 4;
    loop {
        c.data = json!({ "blob": "y".repeat(room + 1) });
        match codec.encode(&c) {
            Ok(_) => room += 1,
            Err(Error::TooLarge { size, .. }) => {
                assert!(size > 8 * 1024);
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    c.data = json!({ "blob": "y".repeat(room) });
    let token = codec.encode(&c).unwrap();
    assert!(token.len() <= 8 * 1024 && token.len() > 8 * 1024 - 4);
    assert!(codec.decode(&token).is_ok());
}

#[test]
fn bytes_that_are_not_a_token_are_malformed() {
    let codec = codec();
    let genuine = codec.encode(&claims()).unwrap();
    let (head, footer) = genuine.rsplit_once('.').unwrap();
    for garbage in [
        String::new(),
        "hello".into(),
        "v4.local.".into(),
        "v4.local..".into(),
        "v4.local.AAAA".into(),
        format!("v4.local.{}", "A".repeat(86)), // nonce and tag, no payload
        format!("{head}.{footer}.extra"),
        format!("{head}."),                   // empty footer segment
        format!("{head}.{footer}="),          // padding
        format!("{head}.not base64!"),        // characters outside base64url
        format!("{head}.{}", b64(b"kid=k1")), // footer that is not JSON
        format!("{head}.{}", b64(br#"["k1"]"#)),
        format!("{head}.{}", b64(br#"{"kid":1}"#)),
        format!("{head}.{}", b64(br#"{"kid":"k1","wpk":"x"}"#)), // unknown member
        format!("{head}.{}", b64(&[b'{'; 300])),                 // footer over the limit
        "\u{0}\u{1}\u{2}".into(),
        "ÿÿÿ.ÿÿÿ.ÿÿÿ".into(),
    ] {
        match codec.decode(&garbage) {
            Err(Error::InvalidToken(TokenRejection::Malformed)) => {}
            other => panic!("{garbage:?}: expected Malformed, got {other:?}"),
        }
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[test]
fn non_canonical_base64_is_malformed() {
    // A body whose length leaves unused bits in its last character, with
    // one of those bits set: it decodes to the same bytes, so without the
    // canonical-form check two spellings of one token would be accepted.
    let codec = codec();
    let mut seen = 0;
    for extra in 0..6 {
        let mut c = claims();
        c.data = json!({ "p": "x".repeat(extra) });
        let token = codec.encode(&c).unwrap();
        let (head, footer) = token.rsplit_once('.').unwrap();
        let body = head.strip_prefix("v4.local.").unwrap();
        if body.len() % 4 == 0 {
            continue;
        }
        seen += 1;
        let last = *body.as_bytes().last().unwrap();
        let value = ALPHABET.iter().position(|&c| c == last).unwrap();
        assert_eq!(value & 1, 0, "canonical to begin with");
        let respelled = format!(
            "v4.local.{}{}.{footer}",
            &body[..body.len() - 1],
            ALPHABET[value | 1] as char
        );
        assert_eq!(unb64_lenient(&respelled), unb64_lenient(&token));
        assert_rejected(codec.decode(&respelled), TokenRejection::Malformed);
    }
    assert!(seen >= 2, "lengths with unused bits were exercised");
    // The footer, too: `{"kid":"k12"}` is 13 bytes, 18 characters.
    let k12 = PasetoCodec::builder(KeyRing::new(key("k12", &KEY_1)))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let token = k12.encode(&claims()).unwrap();
    let (head, footer) = token.rsplit_once('.').unwrap();
    assert_eq!(unb64(footer), br#"{"kid":"k12"}"#);
    assert_eq!(footer.len() % 4, 2);
    let last = *footer.as_bytes().last().unwrap();
    let value = ALPHABET.iter().position(|&c| c == last).unwrap();
    let respelled = format!(
        "{head}.{}{}",
        &footer[..footer.len() - 1],
        ALPHABET[value | 1] as char
    );
    assert_rejected(k12.decode(&respelled), TokenRejection::Malformed);
}

/// The body bytes of a token, decoded without the canonical-form check.
fn unb64_lenient(token: &str) -> Vec<u8> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    );
    let body = token
        .strip_prefix("v4.local.")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    engine.decode(body).unwrap()
}

#[test]
fn an_authentic_payload_that_is_not_a_claims_object_is_malformed() {
    let codec = codec();
    let footer = Some(&br#"{"kid":"k1"}"#[..]);
    for payload in [
        &b"not json"[..],
        b"[1,2,3]",
        b"\"string\"",
        b"{\"jti\":",
        b"\xff\xfe{}", // not UTF-8
    ] {
        let token = forge_raw(payload, footer, &KEY_1, b"");
        match codec.decode(&token) {
            Err(Error::InvalidToken(TokenRejection::Malformed)) => {}
            other => panic!("{payload:?}: expected Malformed, got {other:?}"),
        }
    }
    // A claims array in the order of the fields (serde would read it into
    // a struct) is not an object either.
    let as_array = serde_json::to_vec(&json!(["x"])).unwrap();
    assert_rejected(
        codec.decode(&forge_raw(&as_array, footer, &KEY_1, b"")),
        TokenRejection::Malformed,
    );
}

#[test]
fn a_duplicated_claim_is_malformed() {
    let codec = codec();
    let genuine = serde_json::to_string(&genuine_payload()).unwrap();
    // The same object with a second `sub` appended.
    let doubled = format!("{},\"sub\":\"admin\"}}", &genuine[..genuine.len() - 1]);
    let token = forge_raw(doubled.as_bytes(), Some(br#"{"kid":"k1"}"#), &KEY_1, b"");
    assert_rejected(codec.decode(&token), TokenRejection::Malformed);
}

#[test]
fn a_jti_that_is_not_a_session_id_is_malformed() {
    let codec = codec();
    let mut payload = genuine_payload();
    payload["jti"] = json!("../../etc/passwd");
    assert_rejected(codec.decode(&forge(&payload)), TokenRejection::Malformed);
}

#[test]
fn a_claim_of_the_wrong_type_is_malformed() {
    let codec = codec();
    for (claim, value) in [
        ("exp", json!(1_900_000_000)), // a JWT NumericDate, not a DateTime
        ("exp", json!("tomorrow")),
        ("exp", json!("2026-12-04t08:05:35z")), // lowercase separators
        ("iat", json!(true)),
        ("nbf", json!("2026-12-04 08:05:35Z")),
        ("sst", json!("now")),
        ("sch", json!(-1)),
        ("sub", json!("")),
        ("ims", json!(1000)),
    ] {
        let mut payload = genuine_payload();
        payload[claim] = value.clone();
        match codec.decode(&forge(&payload)) {
            Err(Error::InvalidToken(TokenRejection::Malformed)) => {}
            other => panic!("{claim} = {value}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn fractional_datetimes_and_offsets_from_other_issuers_are_read() {
    let codec = codec();
    let c = claims();
    let secs = c.issued_at.as_secs();
    let mut payload = genuine_payload();
    let obj = payload.as_object_mut().unwrap();
    obj.remove("ims");
    // The issue instant with microseconds, in another offset.
    let at = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap())
        + time::Duration::microseconds(123_456);
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(text.ends_with(".123456+02:00"), "{text}");
    obj.insert("iat".into(), json!(text));
    let decoded = codec.decode(&forge(&payload)).unwrap();
    assert_eq!(decoded.issued_at.as_millis(), secs * 1000 + 123);
    // Both a sub-second iat and ims: ambiguous, malformed.
    payload["ims"] = json!(5);
    assert_rejected(codec.decode(&forge(&payload)), TokenRejection::Malformed);
}

#[test]
fn a_token_issued_in_the_future_is_rejected() {
    // An authentic token whose iat (or session start) is later than now
    // plus the leeway (5 s here): it would outlive log-out-everywhere.
    let codec = codec();
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
    // The far future, forged into the payload.
    let mut payload = genuine_payload();
    payload["iat"] = json!("9999-12-31T23:59:59Z");
    assert_rejected(
        codec.decode(&forge(&payload)),
        TokenRejection::IssuedInFuture,
    );
    let mut payload = genuine_payload();
    payload["sst"] = json!(i64::MAX);
    assert_rejected(
        codec.decode(&forge(&payload)),
        TokenRejection::IssuedInFuture,
    );
    // Within the leeway is fine (clock skew between hosts).
    let mut skewed = claims();
    skewed.issued_at = now + Duration::from_secs(2);
    assert!(codec.decode(&codec.encode(&skewed).unwrap()).is_ok());
}

#[test]
fn issued_at_round_trips_to_the_millisecond() {
    let codec = codec();
    for ms in [0, 1, 499, 999] {
        let mut c = claims();
        let base = Timestamp::from_secs(Timestamp::now().as_secs() - 1);
        c.issued_at = Timestamp::from_millis(base.as_millis() + ms);
        let token = codec.encode(&c).unwrap();
        let (payload, _) = open(&token, &KEY_1, b"");
        assert!(payload["iat"].as_str().unwrap().ends_with('Z'));
        assert_eq!(payload.get("ims").is_some(), ms != 0, "ims omitted when 0");
        assert_eq!(codec.decode(&token).unwrap().issued_at, c.issued_at);
    }
}

#[test]
fn an_invalid_subject_is_refused_when_encoding() {
    let mut c = claims();
    c.subject = Some("line\nbreak".into());
    assert!(matches!(codec().encode(&c), Err(Error::InvalidSubject)));
}

#[test]
fn every_rejection_is_an_invalid_ticket() {
    let err = codec().decode("nope").unwrap_err();
    assert!(err.is_invalid_ticket());
    assert!(!err.is_transient());
}

#[test]
fn the_codec_reports_its_leeway_for_revocation_retention() {
    assert_eq!(codec().leeway(), Duration::from_secs(5));
    assert_eq!(
        PasetoCodec::new(KeyRing::new(key("k1", &KEY_1)))
            .unwrap()
            .leeway(),
        Duration::ZERO
    );
}

#[test]
fn debug_output_never_shows_key_material() {
    let secret = [0xA7u8; 32];
    let k = Key::new("k-debug", &secret).unwrap();
    let paserk = format!("k4.local.{}", b64(&secret));
    let ring = KeyRing::new(k.clone());
    let builder = PasetoCodec::builder(ring.clone()).implicit_assertion(&b"secret-context"[..]);
    let rendered = [
        format!("{k:?}"),
        format!("{ring:?}"),
        format!("{builder:?}"),
        format!("{:?}", builder.build().unwrap()),
        format!("{:#?}", Key::from_paserk("k-p", &paserk).unwrap()),
    ];
    for text in rendered {
        assert!(text.contains("k-"), "{text}");
        for needle in ["167", "a7", "A7", &b64(&secret)[..12], "secret-context"] {
            assert!(!text.contains(needle), "{text:?} contains {needle:?}");
        }
    }
}

#[test]
fn builder_rejects_unusable_settings() {
    let ring = || KeyRing::new(key("k1", &KEY_1));
    for builder in [
        PasetoCodec::builder(ring()).max_token_size(255),
        PasetoCodec::builder(ring()).issuer(""),
        PasetoCodec::builder(ring()).audience(""),
    ] {
        assert!(matches!(builder.build(), Err(Error::Config(_))));
    }
}
