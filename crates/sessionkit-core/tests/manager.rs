//! SessionManager behaviour over the reference store.

mod common;

use common::PlainCodec;

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sessionkit_core::testing::VecStore;
use sessionkit_core::{
    Error, PayloadCodec, Record, RevocationList, SessionId, SessionManager, SessionStore,
    Timestamp, TokenRejection,
};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

fn manager(store: VecStore) -> SessionManager<Counter> {
    SessionManager::stateful(store).build().unwrap()
}

#[tokio::test]
async fn create_load_save_round_trip() {
    let store = VecStore::default();
    let mgr = manager(store.clone());
    let mut s = mgr.create(Some("alice"), Counter { n: 1 }).await.unwrap();
    assert!(s.ticket_changed());
    assert_eq!(s.version(), 1);
    s.data_mut().n = 2;
    mgr.save(&mut s).await.unwrap();
    assert_eq!(s.version(), 2);
    let loaded = mgr.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(loaded.data(), &Counter { n: 2 });
    assert_eq!(loaded.subject(), Some("alice"));
    assert!(!loaded.ticket_changed());
}

#[tokio::test]
async fn stale_save_is_a_conflict_and_update_succeeds() {
    let mgr = manager(VecStore::default());
    let s = mgr.create(None, Counter::default()).await.unwrap();
    let ticket = s.ticket().as_str().to_owned();
    let mut a = mgr.load(&ticket).await.unwrap().unwrap();
    let mut b = mgr.load(&ticket).await.unwrap().unwrap();
    a.data_mut().n += 1;
    mgr.save(&mut a).await.unwrap();
    b.data_mut().n += 1;
    assert!(matches!(mgr.save(&mut b).await, Err(Error::Conflict)));
    let updated = mgr.update(&ticket, |c| c.n += 1).await.unwrap();
    assert_eq!(updated.data().n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_lose_nothing() {
    let mgr = manager(VecStore::default());
    let s = mgr.create(None, Counter::default()).await.unwrap();
    let ticket = s.ticket().as_str().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (mgr, ticket) = (mgr.clone(), ticket.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                mgr.update(&ticket, |c| c.n += 1).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(mgr.load(&ticket).await.unwrap().unwrap().data().n, 400);
}

#[tokio::test]
async fn update_of_missing_session_is_not_found() {
    let mgr = manager(VecStore::default());
    let ticket = SessionId::generate();
    assert!(matches!(
        mgr.update(ticket.as_str(), |c| c.n += 1).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn malformed_ticket_is_invalid_id() {
    let mgr = manager(VecStore::default());
    for bad in [
        "",
        "x",
        "../../etc/passwd",
        "AAAA AAAA",
        &"A".repeat(10_000),
    ] {
        let err = mgr.load(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidId), "{bad:?}");
        assert!(err.is_invalid_ticket());
    }
}

#[tokio::test]
async fn too_large_payload_is_refused_before_writing() {
    let store = VecStore::default();
    let mgr = SessionManager::<Vec<u8>>::stateful(store.clone())
        .max_payload(1024)
        .build()
        .unwrap();
    let err = mgr.create(Some("big"), vec![7u8; 2048]).await.unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert!(store.list_subject("big").await.unwrap().is_empty());
    let mut s = mgr.create(Some("big"), vec![1u8; 10]).await.unwrap();
    *s.data_mut() = vec![0u8; 4096];
    assert!(matches!(
        mgr.save(&mut s).await,
        Err(Error::TooLarge { .. })
    ));
    let stored = mgr.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(stored.data().len(), 10, "the refused save wrote nothing");
}

#[tokio::test]
async fn undecodable_payload_is_no_session_and_counted() {
    let store = VecStore::default();
    // Records written straight into the store under the ticket's own ID.
    let mgr = SessionManager::<Counter>::stateful(store.clone())
        .hash_ids(false)
        .build()
        .unwrap();
    let now = Timestamp::now();
    for garbage in [
        &b""[..],
        b"garbage",
        b"S\x01\x01\0\0\0\x01\xff\xff\xff\xff\xff",
    ] {
        let id = SessionId::generate();
        let record = Record::new(
            id,
            None,
            Bytes::copy_from_slice(garbage),
            now,
            now + Duration::from_secs(60),
        );
        store.create(&record).await.unwrap();
        assert!(mgr.load(id.as_str()).await.unwrap().is_none());
    }
    assert_eq!(mgr.stats().undecodable, 3);
}

#[derive(Debug, Serialize, Deserialize)]
struct ProfileV1 {
    name: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ProfileV2 {
    first_name: String,
    visits: u32,
}

#[tokio::test]
async fn v1_session_is_read_as_v2_through_an_upgrade() {
    for codec in [PayloadCodec::default(), PayloadCodec::Json] {
        let store = VecStore::default();
        let old = SessionManager::<ProfileV1>::stateful(store.clone())
            .codec(codec)
            .build()
            .unwrap();
        let s = old
            .create(Some("ann"), ProfileV1 { name: "Ann".into() })
            .await
            .unwrap();
        let new = SessionManager::<ProfileV2>::stateful(store.clone())
            .schema_version(2)
            .upgrade_from::<ProfileV1>(1, |v1| ProfileV2 {
                first_name: v1.name,
                visits: 0,
            })
            .build()
            .unwrap();
        let mut loaded = new.load(s.ticket().as_str()).await.unwrap().unwrap();
        assert_eq!(
            loaded.data(),
            &ProfileV2 {
                first_name: "Ann".into(),
                visits: 0
            }
        );
        loaded.data_mut().visits += 1;
        new.save(&mut loaded).await.unwrap();
        assert_eq!(
            new.load(s.ticket().as_str())
                .await
                .unwrap()
                .unwrap()
                .data()
                .visits,
            1
        );
        // Without the upgrade the V1 bytes are "no session", not an error.
        let strict = SessionManager::<ProfileV2>::stateful(store.clone())
            .schema_version(3)
            .build()
            .unwrap();
        assert!(strict.load(s.ticket().as_str()).await.unwrap().is_none());
        assert_eq!(strict.stats().undecodable, 1);
    }
}

#[tokio::test]
async fn idle_timeout_expires_and_reads_extend_it_throttled() {
    let store = VecStore::default();
    let mgr = SessionManager::<Counter>::stateful(store.clone())
        .idle_timeout(Duration::from_millis(1000))
        .touch_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let s = mgr.create(None, Counter::default()).await.unwrap();
    let ticket = s.ticket().as_str().to_owned();
    // A read right away does not write.
    let first = mgr.load(&ticket).await.unwrap().unwrap();
    assert_eq!(first.expires_at(), s.expires_at());
    assert_eq!(mgr.stats().extensions, 0);
    // Keep it alive past the idle timeout by reading every 150 ms.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(mgr.load(&ticket).await.unwrap().is_some());
    }
    assert!(mgr.stats().extensions >= 3);
    // Then leave it idle.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(mgr.load(&ticket).await.unwrap().is_none());
}

#[tokio::test]
async fn absolute_timeout_wins_over_activity() {
    let mgr = SessionManager::<Counter>::stateful(VecStore::default())
        .idle_timeout(Duration::from_millis(800))
        .absolute_timeout(Duration::from_millis(1200))
        .touch_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let s = mgr.create(None, Counter::default()).await.unwrap();
    let ticket = s.ticket().as_str().to_owned();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1000) {
        assert!(mgr.load(&ticket).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(mgr.load(&ticket).await.unwrap().is_none());
}

#[tokio::test]
async fn rotate_moves_the_session_and_kills_the_old_id() {
    let mgr = manager(VecStore::default());
    let mut s = mgr.create(None, Counter { n: 5 }).await.unwrap();
    let old = s.ticket().as_str().to_owned();
    s.set_subject(Some("bob")).unwrap();
    mgr.rotate(&mut s).await.unwrap();
    assert_ne!(s.ticket().as_str(), old);
    assert!(mgr.load(&old).await.unwrap().is_none());
    let loaded = mgr.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(loaded.data().n, 5);
    assert_eq!(loaded.subject(), Some("bob"));
    assert_eq!(loaded.created_at(), s.created_at());
}

#[tokio::test]
async fn destroy_subject_logs_out_everywhere() {
    let mgr = manager(VecStore::default());
    let a = mgr.create(Some("carol"), Counter::default()).await.unwrap();
    let b = mgr.create(Some("carol"), Counter::default()).await.unwrap();
    let other = mgr.create(Some("dave"), Counter::default()).await.unwrap();
    assert_eq!(mgr.list_subject("carol").await.unwrap().len(), 2);
    assert_eq!(mgr.destroy_subject("carol").await.unwrap(), 2);
    assert!(mgr.load(a.ticket().as_str()).await.unwrap().is_none());
    assert!(mgr.load(b.ticket().as_str()).await.unwrap().is_none());
    assert!(mgr.load(other.ticket().as_str()).await.unwrap().is_some());
    assert!(matches!(
        mgr.destroy_subject("").await,
        Err(Error::InvalidSubject)
    ));
    assert!(matches!(
        mgr.create(Some("bad\nsubject"), Counter::default()).await,
        Err(Error::InvalidSubject)
    ));
}

#[test]
fn bad_configuration_is_refused() {
    let build = |b: sessionkit_core::ManagerBuilder<Counter>| b.build().map(|_| ());
    assert!(matches!(
        build(SessionManager::stateful(VecStore::default()).schema_version(0)),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        build(
            SessionManager::stateful(VecStore::default())
                .schema_version(2)
                .upgrade_from::<Counter>(2, |c| c)
        ),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        build(
            SessionManager::stateful(VecStore::default())
                .idle_timeout(Duration::from_secs(1))
                .touch_interval(Duration::from_secs(2))
        ),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn stateless_mode_has_the_same_api() {
    let mgr =
        SessionManager::<Counter>::stateless(PlainCodec, RevocationList::new(VecStore::default()))
            .build()
            .unwrap();
    assert!(mgr.is_stateless());
    let mut s = mgr.create(Some("erin"), Counter { n: 1 }).await.unwrap();
    let first = s.ticket().as_str().to_owned();
    s.data_mut().n = 2;
    mgr.save(&mut s).await.unwrap();
    assert_ne!(s.ticket().as_str(), first, "save re-issues the token");
    assert_eq!(
        mgr.load(s.ticket().as_str())
            .await
            .unwrap()
            .unwrap()
            .data()
            .n,
        2
    );

    // rotate: new jti, old one revoked
    let before = s.ticket().as_str().to_owned();
    mgr.rotate(&mut s).await.unwrap();
    assert!(matches!(mgr.load(&before).await, Err(Error::Revoked)));
    assert!(mgr.load(s.ticket().as_str()).await.unwrap().is_some());

    // destroy revokes
    let t = s.ticket().as_str().to_owned();
    assert!(mgr.destroy(&t).await.unwrap());
    assert!(matches!(mgr.load(&t).await, Err(Error::Revoked)));

    // logout everywhere rejects older tokens, not newer ones
    let old = mgr.create(Some("erin"), Counter::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    mgr.destroy_subject("erin").await.unwrap();
    assert!(matches!(
        mgr.load(old.ticket().as_str()).await,
        Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout))
    ));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fresh = mgr.create(Some("erin"), Counter::default()).await.unwrap();
    assert!(mgr.load(fresh.ticket().as_str()).await.unwrap().is_some());
    assert!(matches!(
        mgr.list_subject("erin").await,
        Err(Error::Unsupported(_))
    ));

    // update re-issues
    let u = mgr
        .update(fresh.ticket().as_str(), |c| c.n = 9)
        .await
        .unwrap();
    assert!(u.ticket_changed());
    assert_eq!(
        mgr.load(u.ticket().as_str())
            .await
            .unwrap()
            .unwrap()
            .data()
            .n,
        9
    );
}
