//! The JWT codec under the stateless `SessionManager`: revocation of one
//! token, log out everywhere, rotation, re-issue on save.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use sessionkit_core::{Error, RevocationList, SessionManager, Timestamp, TokenRejection};
use sessionkit_jwt::JwtCodec;
use sessionkit_memory::MemoryStore;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

fn manager(codec: Arc<JwtCodec>) -> SessionManager<Cart> {
    SessionManager::<Cart>::stateless(codec, RevocationList::new(MemoryStore::new()))
        .idle_timeout(Duration::from_secs(900))
        .absolute_timeout(Duration::from_secs(8 * 3600))
        .build()
        .unwrap()
}

/// Waits (bounded) until the wall clock has moved past `t`, so that an
/// instant taken afterwards is strictly later than anything issued at `t`.
async fn clock_past(t: Timestamp) {
    for _ in 0..1000 {
        if Timestamp::now() > t {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the clock did not advance");
}

#[tokio::test]
async fn create_load_save_round_trip() {
    let mgr = manager(Arc::new(hs256_codec()));
    let mut session = mgr.create(Some("alice"), Cart::default()).await.unwrap();
    let first = session.ticket().as_str().to_owned();
    assert_eq!(first.split('.').count(), 3, "the ticket is a JWT");

    session.data_mut().items.push("apple".into());
    mgr.save(&mut session).await.unwrap();
    let second = session.ticket().as_str().to_owned();
    assert_ne!(first, second, "save re-issues the token");

    let loaded = mgr.load(&second).await.unwrap().expect("live");
    assert_eq!(loaded.data().items, ["apple"]);
    assert_eq!(loaded.subject(), Some("alice"));
    assert_eq!(loaded.id(), session.id());
}

#[tokio::test]
async fn a_revoked_jti_is_rejected() {
    let mgr = manager(Arc::new(hs256_codec()));
    let session = mgr.create(Some("bob"), Cart::default()).await.unwrap();
    let ticket = session.ticket().as_str().to_owned();
    assert!(mgr.load(&ticket).await.unwrap().is_some());

    assert!(mgr.destroy(&ticket).await.unwrap());
    match mgr.load(&ticket).await {
        Err(Error::Revoked) => {}
        other => panic!("expected Revoked, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_issued_before_the_subjects_not_before_is_rejected() {
    let mgr = manager(Arc::new(hs256_codec()));
    let laptop = mgr.create(Some("carol"), Cart::default()).await.unwrap();
    let phone = mgr.create(Some("carol"), Cart::default()).await.unwrap();
    let other_user = mgr.create(Some("dave"), Cart::default()).await.unwrap();
    clock_past(Timestamp::now()).await;

    mgr.destroy_subject("carol").await.unwrap();
    for session in [&laptop, &phone] {
        match mgr.load(session.ticket().as_str()).await {
            Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout)) => {}
            other => panic!("expected IssuedBeforeLogout, got {other:?}"),
        }
    }
    // Other subjects are untouched; a login after the logout works.
    assert!(
        mgr.load(other_user.ticket().as_str())
            .await
            .unwrap()
            .is_some()
    );
    clock_past(Timestamp::now()).await;
    let fresh = mgr.create(Some("carol"), Cart::default()).await.unwrap();
    assert!(mgr.load(fresh.ticket().as_str()).await.unwrap().is_some());
}

#[tokio::test]
async fn rotate_issues_a_new_jti_and_revokes_the_old_one() {
    let mgr = manager(Arc::new(hs256_codec()));
    let mut session = mgr.create(Some("erin"), Cart::default()).await.unwrap();
    let old_ticket = session.ticket().as_str().to_owned();
    let old_id = session.id();
    mgr.rotate(&mut session).await.unwrap();
    assert_ne!(session.id(), old_id);
    assert!(matches!(mgr.load(&old_ticket).await, Err(Error::Revoked)));
    assert!(mgr.load(session.ticket().as_str()).await.unwrap().is_some());
}

#[tokio::test]
async fn key_rotation_under_the_manager() {
    let codec = Arc::new(hs256_codec());
    let mgr = manager(Arc::clone(&codec));
    let before = mgr.create(Some("frank"), Cart::default()).await.unwrap();
    codec.rotate(hmac_key("k2", &SECRET_2)).unwrap();
    let after = mgr.create(Some("frank"), Cart::default()).await.unwrap();
    assert!(mgr.load(before.ticket().as_str()).await.unwrap().is_some());
    assert!(mgr.load(after.ticket().as_str()).await.unwrap().is_some());
    codec.remove_key("k1").unwrap();
    match mgr.load(before.ticket().as_str()).await {
        Err(Error::InvalidToken(TokenRejection::UnknownKey)) => {}
        other => panic!("expected UnknownKey, got {other:?}"),
    }
}

#[tokio::test]
async fn tampered_and_oversized_tickets() {
    let mgr = manager(Arc::new(hs256_codec()));
    let session = mgr.create(Some("gina"), Cart::default()).await.unwrap();
    let mut ticket = session.ticket().as_str().to_owned();
    ticket.push('A');
    assert!(matches!(
        mgr.load(&ticket).await,
        Err(Error::InvalidToken(_))
    ));
    // Session data too big for an 8 KiB token.
    let big = Cart {
        items: vec!["x".repeat(100); 100],
    };
    match mgr.create(Some("gina"), big).await {
        Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, 8 * 1024),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
