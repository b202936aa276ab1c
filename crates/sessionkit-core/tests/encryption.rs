//! Payload encryption at rest: sealed in the store, bound to its session
//! and version, keys rotate, and nothing that fails to open is an error page.
#![cfg(feature = "encryption")]

use bytes::Bytes;
use sessionkit_core::testing::VecStore;
use sessionkit_core::{PayloadCodec, PayloadKeys, Record, SessionManager, SessionStore};

const SECRET: &str = "4111 1111 1111 1111";

fn manager(store: &VecStore, keys: Option<PayloadKeys>) -> SessionManager<String> {
    let builder = SessionManager::stateful(store.clone()).codec(PayloadCodec::Json);
    match keys {
        Some(keys) => builder.encrypt_payloads(keys),
        None => builder,
    }
    .build()
    .unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn payloads_are_sealed_in_the_store_and_read_back() {
    let store = VecStore::default();
    let m = manager(&store, Some(PayloadKeys::new(1, [1; 32])));
    let mut s = m.create(Some("ann"), SECRET.to_owned()).await.unwrap();
    let stored = store.load(&s.id()).await.unwrap().unwrap();
    assert!(
        !contains(&stored.payload, SECRET),
        "the payload is stored in clear"
    );
    assert!(!contains(&stored.payload, "4111"));
    *s.data_mut() = format!("{SECRET} (saved)");
    m.save(&mut s).await.unwrap();
    let stored = store.load(&s.id()).await.unwrap().unwrap();
    assert!(!contains(&stored.payload, SECRET));
    let back = m.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(back.data(), &format!("{SECRET} (saved)"));
    m.rotate(&mut s).await.unwrap();
    let back = m.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(back.data(), &format!("{SECRET} (saved)"));
    assert_eq!(m.stats().undecodable, 0);
}

/// Every way a sealed payload can fail to open is "no session", counted.
#[tokio::test]
async fn tampered_moved_replayed_truncated_or_foreign_payloads_do_not_open() {
    let store = VecStore::default();
    let keys = PayloadKeys::new(1, [1; 32]);
    let m = manager(&store, Some(keys.clone()));
    let a = m.create(Some("ann"), "a".into()).await.unwrap();
    let b = m.create(Some("bob"), "b".into()).await.unwrap();
    let a_v1 = store.load(&a.id()).await.unwrap().unwrap();
    let b_rec = store.load(&b.id()).await.unwrap().unwrap();

    let mut cases: Vec<(&str, Bytes)> = Vec::new();
    let mut flipped = a_v1.payload.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    cases.push(("a flipped tag bit", flipped.into()));
    let mut flipped = a_v1.payload.to_vec();
    flipped[40] ^= 0x80;
    cases.push(("a flipped ciphertext bit", flipped.into()));
    let mut header = a_v1.payload.to_vec();
    header[6] ^= 1; // the schema byte, bound as associated data
    cases.push(("a changed schema in the header", header.into()));
    cases.push(("a truncated payload", a_v1.payload.slice(..20)));
    cases.push(("another session's payload", b_rec.payload.clone()));
    let mut unknown_key = a_v1.payload.to_vec();
    unknown_key[7] = 9;
    cases.push(("an unknown key id", unknown_key.into()));

    for (i, (what, payload)) in cases.into_iter().enumerate() {
        // Stored at version 1 as the original was, with the bad payload.
        let mut record = a_v1.clone();
        record.payload = payload;
        store.delete(&a.id()).await.unwrap();
        store.create(&record).await.unwrap();
        assert!(
            m.load(a.ticket().as_str()).await.unwrap().is_none(),
            "{what} was accepted"
        );
        assert_eq!(m.stats().undecodable, i as u64 + 1, "{what}");
    }
    // The intact payload opens again at version 1 ...
    store.delete(&a.id()).await.unwrap();
    store.create(&a_v1).await.unwrap();
    assert!(m.load(a.ticket().as_str()).await.unwrap().is_some());
    // ... but not replayed as version 2 of the same session.
    store.save(&a_v1).await.unwrap();
    assert!(
        m.load(a.ticket().as_str()).await.unwrap().is_none(),
        "a payload replayed as another version opened"
    );

    // A manager without keys, or with other keys, does not read it.
    let fresh = m.create(None, "c".into()).await.unwrap();
    let plain = manager(&store, None);
    assert!(plain.load(fresh.ticket().as_str()).await.unwrap().is_none());
    let other = manager(&store, Some(PayloadKeys::new(1, [2; 32])));
    assert!(other.load(fresh.ticket().as_str()).await.unwrap().is_none());
    assert_eq!(
        (plain.stats().undecodable, other.stats().undecodable),
        (1, 1)
    );
}

/// New writes use the new key; old payloads stay readable through the
/// previous key until they are rewritten; a retired key reads nothing.
#[tokio::test]
async fn keys_rotate_without_downtime() {
    let store = VecStore::default();
    let old = manager(&store, Some(PayloadKeys::new(1, [1; 32])));
    let before = old.create(None, "before".into()).await.unwrap();
    let rotated = manager(
        &store,
        Some(
            PayloadKeys::new(2, [2; 32])
                .with_previous(1, [1; 32])
                .unwrap(),
        ),
    );
    let mut s = rotated
        .load(before.ticket().as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.data(), "before");
    rotated.save(&mut s).await.unwrap();
    assert_eq!(
        store.load(&s.id()).await.unwrap().unwrap().payload[7],
        2,
        "rewritten with the new key"
    );
    let after = rotated.create(None, "after".into()).await.unwrap();
    let retired = manager(&store, Some(PayloadKeys::new(2, [2; 32])));
    assert_eq!(
        retired
            .load(after.ticket().as_str())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "after"
    );
    assert_eq!(
        retired
            .load(s.ticket().as_str())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "before"
    );
    let untouched = old.create(None, "old key only".into()).await.unwrap();
    assert!(
        retired
            .load(untouched.ticket().as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        PayloadKeys::new(1, [1; 32]).with_previous(1, [2; 32]),
        Err(sessionkit_core::Error::Config(_))
    ));
}

/// Sessions written before encryption was turned on stay readable, and
/// are sealed on their next save.
#[tokio::test]
async fn turning_encryption_on_keeps_existing_sessions() {
    let store = VecStore::default();
    let plain = manager(&store, None);
    let s = plain.create(None, SECRET.to_owned()).await.unwrap();
    assert!(contains(
        &store.load(&s.id()).await.unwrap().unwrap().payload,
        SECRET
    ));
    let sealed = manager(&store, Some(PayloadKeys::new(1, [1; 32])));
    let mut loaded = sealed.load(s.ticket().as_str()).await.unwrap().unwrap();
    sealed.save(&mut loaded).await.unwrap();
    let stored: Record = store.load(&s.id()).await.unwrap().unwrap();
    assert!(!contains(&stored.payload, SECRET));
    assert_eq!(
        sealed
            .load(s.ticket().as_str())
            .await
            .unwrap()
            .unwrap()
            .data(),
        SECRET
    );
}
