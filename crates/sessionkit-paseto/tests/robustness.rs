//! Bounded fuzzing: random bytes, every truncation, every bit flip and
//! random well-formed-looking tokens. `decode` must return a typed
//! `InvalidToken` for each, never panic, never accept.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sessionkit_core::{Error, TokenCodec};
use sessionkit_paseto::{KeyRing, PasetoCodec};

#[track_caller]
fn assert_invalid(codec: &PasetoCodec, token: &str) {
    match codec.decode(token) {
        Err(Error::InvalidToken(_)) => {}
        other => panic!("{token:?}: expected InvalidToken, got {other:?}"),
    }
}

/// Codecs in both kid modes: the lenient one goes further into a token
/// without footer.
fn codecs() -> [PasetoCodec; 2] {
    [
        codec(),
        PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
            .allow_missing_kid(true)
            .build()
            .unwrap(),
    ]
}

#[test]
fn every_truncation_is_rejected() {
    for codec in codecs() {
        let token = codec.encode(&claims()).unwrap();
        for len in 0..token.len() {
            assert_invalid(&codec, &token[..len]);
        }
        // ...and every suffix.
        for start in 1..token.len() {
            assert_invalid(&codec, &token[start..]);
        }
    }
}

#[test]
fn every_bit_flip_is_rejected() {
    let codec = codec();
    let token = codec.encode(&claims()).unwrap();
    let mut tried = 0;
    for at in 0..token.len() {
        for bit in 0..8 {
            let mut bytes = token.clone().into_bytes();
            bytes[at] ^= 1 << bit;
            // Flips that leave UTF-8 cannot be passed as &str at all.
            if let Ok(mutated) = String::from_utf8(bytes) {
                assert_invalid(&codec, &mutated);
                tried += 1;
            }
        }
    }
    assert!(tried >= token.len() * 7, "{tried} flips tried");
}

#[test]
fn random_bytes_are_rejected() {
    let mut rng = StdRng::seed_from_u64(0x5e55_10c7);
    let [codec, lenient] = codecs();
    for _ in 0..5_000 {
        let len = rng.random_range(0..600);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let text = String::from_utf8_lossy(&bytes);
        assert_invalid(&codec, &text);
        assert_invalid(&lenient, &text);
    }
}

#[test]
fn random_tokens_past_the_structure_checks_are_rejected() {
    // Right header, base64url body of plausible length, a footer naming
    // the real key (or none, for the lenient codec): these reach the
    // authentication step, where they must fail.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = StdRng::seed_from_u64(0x9a5e_70c5);
    let [codec, lenient] = codecs();
    let footer = b64(br#"{"kid":"k1"}"#);
    for _ in 0..3_000 {
        let len = rng.random_range(80..400);
        let body: String = (0..len)
            .map(|_| ALPHABET[rng.random_range(0..64)] as char)
            .collect();
        assert_invalid(&codec, &format!("v4.local.{body}.{footer}"));
        assert_invalid(&lenient, &format!("v4.local.{body}"));
    }
}

#[test]
fn random_authentic_payloads_are_rejected_without_a_panic() {
    // A holder of the key encrypting random JSON-ish payloads: the claims
    // parser gets arbitrary input behind a valid tag.
    let mut rng = StdRng::seed_from_u64(0xc1a1_3500);
    let codec = codec();
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"jti\"",
        "\"exp\"",
        "\"iat\"",
        "\"ims\"",
        "\"sst\"",
        "\"sch\"",
        "\"dat\"",
        "\"sub\"",
        "\"aud\"",
        "\"iss\"",
        "\"nbf\"",
        "null",
        "true",
        "1",
        "-1",
        "1e400",
        "999999999999999999999",
        "\"2026-12-04T08:05:35Z\"",
        "\"9999-12-31T23:59:60Z\"",
        "\"0000-01-01T00:00:00-23:59\"",
        "\"\\u0000\"",
        "\"\"",
    ];
    for _ in 0..2_000 {
        let n = rng.random_range(1..30);
        let mut payload = String::new();
        for _ in 0..n {
            payload.push_str(pieces[rng.random_range(0..pieces.len())]);
        }
        let token = forge_raw(payload.as_bytes(), Some(br#"{"kid":"k1"}"#), &KEY_1, b"");
        assert_invalid(&codec, &token);
    }
}
