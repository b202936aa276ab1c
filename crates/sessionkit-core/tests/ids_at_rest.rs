//! Session IDs at rest: the store only ever keeps a hash of a ticket's ID,
//! so a read-only copy of it (a dump, a replica, a log of keys) holds no
//! working ticket; and a deployment can switch without logging anyone out.

use std::sync::Arc;

use sessionkit_core::testing::VecStore;
use sessionkit_core::{Record, SessionId, SessionManager, SessionStore};

async fn dump(store: &VecStore, subject: &str) -> Vec<Record> {
    store.list_subject(subject).await.unwrap()
}

/// Everything a dump of the store shows, tried as a ticket: none works.
#[tokio::test]
async fn a_dump_of_the_store_holds_no_working_ticket() {
    let store = VecStore::default();
    let m = SessionManager::<String>::stateful(store.clone())
        .build()
        .unwrap();
    let mut tickets = Vec::new();
    for i in 0..20 {
        let s = m.create(Some("ann"), format!("session {i}")).await.unwrap();
        tickets.push(s.ticket().as_str().to_owned());
    }
    let mut rotated = m.load(&tickets[0]).await.unwrap().unwrap();
    m.rotate(&mut rotated).await.unwrap();
    tickets.push(rotated.ticket().as_str().to_owned());
    let records = dump(&store, "ann").await;
    assert_eq!(records.len(), 20);
    for record in &records {
        let key = record.id.as_str();
        assert!(
            !tickets.iter().any(|t| t == key),
            "the store keeps a ticket as a key"
        );
        assert!(
            m.load(key).await.unwrap().is_none(),
            "a stored key worked as a ticket"
        );
        let payload = String::from_utf8_lossy(&record.payload);
        assert!(!tickets.iter().any(|t| payload.contains(t.as_str())));
    }
    // The tickets themselves still work.
    for t in &tickets[1..] {
        assert!(m.load(t).await.unwrap().is_some());
    }
}

/// A keyed hash: another deployment's key finds nothing.
#[tokio::test]
async fn the_hash_key_is_part_of_the_store_id() {
    let store = VecStore::default();
    let a = SessionManager::<u32>::stateful(store.clone())
        .id_hash_key([1; 32])
        .build()
        .unwrap();
    let b = SessionManager::<u32>::stateful(store.clone())
        .id_hash_key([2; 32])
        .build()
        .unwrap();
    let s = a.create(Some("bob"), 1).await.unwrap();
    assert!(a.load(s.ticket().as_str()).await.unwrap().is_some());
    assert!(b.load(s.ticket().as_str()).await.unwrap().is_none());
}

/// Listed sessions carry no ticket; another device is ended by its ID.
#[tokio::test]
async fn listed_sessions_have_no_ticket_and_end_by_id() {
    let m = SessionManager::<u32>::stateful(VecStore::default())
        .build()
        .unwrap();
    let phone = m.create(Some("cat"), 1).await.unwrap();
    let laptop = m.create(Some("cat"), 2).await.unwrap();
    let listed = m.list_subject("cat").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s.ticket().as_str().is_empty()));
    let other = listed.iter().find(|s| s.id() != laptop.id()).unwrap();
    assert!(m.destroy_id(&other.id()).await.unwrap());
    assert!(m.load(phone.ticket().as_str()).await.unwrap().is_none());
    assert!(m.load(laptop.ticket().as_str()).await.unwrap().is_some());
    assert!(!m.destroy_id(&other.id()).await.unwrap());
}

/// Switching a live deployment to hashed IDs: with `read_unhashed_ids`,
/// sessions stored under their plain ID are found and moved, intact, and
/// concurrent first loads of one session agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_to_hashed_ids_logs_nobody_out() {
    let store = VecStore::default();
    let before = SessionManager::<String>::stateful(store.clone())
        .hash_ids(false)
        .build()
        .unwrap();
    let s = before
        .create(Some("dan"), "cart: 3 items".into())
        .await
        .unwrap();
    let plain: SessionId = SessionId::parse(s.ticket().as_str()).unwrap();

    let strict = SessionManager::<String>::stateful(store.clone())
        .build()
        .unwrap();
    assert!(
        strict.load(s.ticket().as_str()).await.unwrap().is_none(),
        "without the switch it is not found"
    );

    let after = Arc::new(
        SessionManager::<String>::stateful(store.clone())
            .read_unhashed_ids(true)
            .build()
            .unwrap(),
    );
    let (x, y) = tokio::join!(
        {
            let (m, t) = (after.clone(), s.ticket().as_str().to_owned());
            tokio::spawn(async move { m.load(&t).await })
        },
        {
            let (m, t) = (after.clone(), s.ticket().as_str().to_owned());
            tokio::spawn(async move { m.load(&t).await })
        },
    );
    let (x, y) = (x.unwrap().unwrap().unwrap(), y.unwrap().unwrap().unwrap());
    assert_eq!(x.data(), "cart: 3 items");
    assert_eq!(y.data(), "cart: 3 items");
    assert_eq!(x.id(), y.id());
    assert_ne!(x.id(), plain, "moved to its hashed ID");
    assert!(
        store.load(&plain).await.unwrap().is_none(),
        "the plain record was removed"
    );
    let records = dump(&store, "dan").await;
    assert_eq!(records.len(), 1);
    // From now on the ticket works without the switch too.
    assert_eq!(
        strict
            .load(s.ticket().as_str())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "cart: 3 items"
    );
    after
        .update(s.ticket().as_str(), |d| d.push('!'))
        .await
        .unwrap();
    assert_eq!(
        strict
            .load(s.ticket().as_str())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "cart: 3 items!"
    );
}
