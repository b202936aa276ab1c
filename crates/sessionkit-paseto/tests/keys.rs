//! Keys, key ids and rotation of the key ring.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use pasetors::keys::SymmetricKey;
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::version4::V4;
use sessionkit_core::{Error, TokenCodec, TokenRejection};
use sessionkit_paseto::{Key, KeyRing, MAX_KID_LEN, PasetoCodec};

fn kid_of(token: &str) -> String {
    let footer = unb64(token.rsplit_once('.').unwrap().1);
    let footer: serde_json::Value = serde_json::from_slice(&footer).unwrap();
    footer["kid"].as_str().unwrap().to_owned()
}

#[test]
fn rotation_encrypts_with_the_new_key_and_still_opens_old_tokens() {
    let codec = codec();
    let old = codec.encode(&claims()).unwrap();
    assert_eq!(kid_of(&old), "k1");

    codec.rotate(key("k2", &KEY_2)).unwrap();
    assert_eq!(codec.active_kid(), "k2");
    let new = codec.encode(&claims()).unwrap();
    assert_eq!(kid_of(&new), "k2");
    // The new token really is under the new key, the old under the old.
    assert_eq!(open(&new, &KEY_2, b"").1, br#"{"kid":"k2"}"#);
    assert_eq!(open(&old, &KEY_1, b"").1, br#"{"kid":"k1"}"#);
    assert!(codec.decode(&old).is_ok());
    assert!(codec.decode(&new).is_ok());

    // Once the old key is dropped its tokens are UnknownKey; the new work.
    assert!(codec.remove_key("k1").unwrap());
    assert_rejected(codec.decode(&old), TokenRejection::UnknownKey);
    assert!(codec.decode(&new).is_ok());
}

#[test]
fn staged_rotation_across_two_instances() {
    // Two instances share keys. Step 1: both learn k2 (decrypt only).
    // Step 2: A starts encrypting with k2; B, still on k1, reads A's tokens.
    let a = codec();
    let b = codec();
    for instance in [&a, &b] {
        instance.add_key(key("k2", &KEY_2)).unwrap();
        assert_eq!(instance.active_kid(), "k1");
    }
    a.activate("k2").unwrap();
    let from_a = a.encode(&claims()).unwrap();
    let from_b = b.encode(&claims()).unwrap();
    assert_eq!(
        (kid_of(&from_a), kid_of(&from_b)),
        ("k2".into(), "k1".into())
    );
    for token in [&from_a, &from_b] {
        assert!(a.decode(token).is_ok());
        assert!(b.decode(token).is_ok());
    }
}

#[test]
fn the_ring_swaps_atomically_while_tokens_are_decoded() {
    // Readers decode tokens of the kept key while a writer rotates and
    // removes other keys in a loop: no reader ever sees a broken ring.
    let codec = Arc::new(codec());
    let token = codec.encode(&claims()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (codec, token, stop) = (Arc::clone(&codec), token.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) || n < 100 {
                    codec.decode(&token).expect("k1 stays in the ring");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..200 {
        let kid = format!("tmp-{i}");
        codec.rotate(key(&kid, &[i as u8; 32])).unwrap();
        codec.activate("k1").unwrap();
        assert!(codec.remove_key(&kid).unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() >= 100);
    }
    assert_eq!(codec.key_ring().len(), 1);
}

#[test]
fn set_key_ring_replaces_everything() {
    let codec = codec();
    let old = codec.encode(&claims()).unwrap();
    codec.set_key_ring(KeyRing::new(key("k2", &KEY_2)));
    assert_rejected(codec.decode(&old), TokenRejection::UnknownKey);
    assert!(codec.decode(&codec.encode(&claims()).unwrap()).is_ok());
}

#[test]
fn keys_are_exactly_32_bytes_and_kids_are_printable() {
    for len in [0, 16, 31, 33, 64] {
        assert!(
            matches!(Key::new("k", &vec![1; len]), Err(Error::Config(_))),
            "{len} bytes"
        );
    }
    for kid in [
        String::new(),
        "with space".into(),
        "tab\t".into(),
        "é".into(),
        "x".repeat(MAX_KID_LEN + 1),
    ] {
        assert!(
            matches!(Key::new(kid.clone(), &KEY_1), Err(Error::Config(_))),
            "{kid:?}"
        );
    }
    assert!(Key::new("x".repeat(MAX_KID_LEN), &KEY_1).is_ok());
}

#[test]
fn ring_misuse_is_a_configuration_error() {
    let mut ring = KeyRing::new(key("k1", &KEY_1));
    assert!(matches!(ring.add(key("k1", &KEY_2)), Err(Error::Config(_))));
    assert!(matches!(ring.activate("nope"), Err(Error::Config(_))));
    assert!(matches!(ring.remove("k1"), Err(Error::Config(_))));
    assert!(!ring.remove("nope").unwrap());
    ring.add(key("k2", &KEY_2)).unwrap();
    ring.add(key("k3", &[3; 32])).unwrap();
    ring.activate("k3").unwrap();
    assert!(ring.remove("k1").unwrap());
    assert_eq!(
        ring.active().kid(),
        "k3",
        "the active index follows removals"
    );
    let codec = PasetoCodec::new(ring).unwrap();
    assert!(matches!(codec.remove_key("k3"), Err(Error::Config(_))));
    assert!(matches!(
        codec.rotate(key("k2", &KEY_1)),
        Err(Error::Config(_))
    ));
    assert_eq!(
        codec.active_kid(),
        "k3",
        "a failed change leaves the ring as it was"
    );
}

#[test]
fn paserk_keys_and_ids_match_pasetors() {
    let paserk = {
        let mut s = String::new();
        SymmetricKey::<V4>::from(&KEY_1)
            .unwrap()
            .fmt(&mut s)
            .unwrap();
        s
    };
    assert!(paserk.starts_with("k4.local."));
    // A key from its PASERK opens the tokens of the same key from bytes.
    let from_bytes = PasetoCodec::new(KeyRing::new(key("k1", &KEY_1))).unwrap();
    let from_paserk =
        PasetoCodec::new(KeyRing::new(Key::from_paserk("k1", &paserk).unwrap())).unwrap();
    assert!(
        from_paserk
            .decode(&from_bytes.encode(&claims()).unwrap())
            .is_ok()
    );
    for wrong in [
        "k4.public.AAAA",
        "k3.local.ERERERERERERERERERERERERERERERERERERERERERE",
        "k4.local.short",
        "",
    ] {
        assert!(
            matches!(Key::from_paserk("k", wrong), Err(Error::Config(_))),
            "{wrong}"
        );
    }

    // The PASERK local ID is pasetors' ID operation on the same key.
    let mut expected = String::new();
    Id::from(&SymmetricKey::<V4>::from(&KEY_1).unwrap())
        .fmt(&mut expected)
        .unwrap();
    let lid = Key::with_paserk_id(&KEY_1).unwrap();
    assert_eq!(lid.kid(), expected);
    assert_eq!(key("anything", &KEY_1).paserk_id(), expected);
    assert_ne!(Key::with_paserk_id(&KEY_2).unwrap().kid(), expected);
    // And it works as a kid like any other.
    let codec = PasetoCodec::new(KeyRing::new(lid)).unwrap();
    let token = codec.encode(&claims()).unwrap();
    assert_eq!(kid_of(&token), expected);
    assert!(codec.decode(&token).is_ok());
}
