//! The PASETO codec under the stateless `SessionManager`, unchanged:
//! create, load, save, rotate, destroy, destroy_subject, key rotation —
//! and no session data in clear in the token.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use sessionkit_core::{
    Error, RevocationList, SessionManager, Timestamp, TokenRejection, testing::VecStore,
};
use sessionkit_memory::MemoryStore;
use sessionkit_paseto::PasetoCodec;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Profile {
    email: String,
    roles: Vec<String>,
    cart: Vec<String>,
}

fn profile() -> Profile {
    Profile {
        email: "alice.secret@example.com".into(),
        roles: vec!["role-admin-7f3a".into()],
        cart: vec!["sku-blue-widget".into()],
    }
}

fn manager(codec: Arc<PasetoCodec>) -> SessionManager<Profile> {
    SessionManager::<Profile>::stateless(codec, RevocationList::new(MemoryStore::new()))
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

/// A secret may appear neither as text in the token nor anywhere in its
/// base64url-decoded body or footer (where a signed JWT would show it).
fn assert_hidden(token: &str, secrets: &[&str]) {
    let decoded: Vec<Vec<u8>> = token.split('.').skip(2).map(unb64).collect();
    assert_eq!(decoded.len(), 2, "body and footer");
    for secret in secrets {
        assert!(!token.contains(secret), "{secret:?} in clear in the token");
        for bytes in &decoded {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} readable in the decoded token"
            );
        }
    }
}

#[tokio::test]
async fn create_load_save_round_trip_without_data_in_clear() {
    let mgr = manager(Arc::new(codec()));
    let mut session = mgr.create(Some("alice"), profile()).await.unwrap();
    let first = session.ticket().as_str().to_owned();
    let jti = session.id();
    assert!(first.starts_with("v4.local."), "the ticket is a PASETO");
    assert_hidden(
        &first,
        &[
            "alice",
            "alice.secret@example.com",
            "role-admin-7f3a",
            "sku-blue-widget",
            jti.as_str(),
            ISSUER,
        ],
    );

    session.data_mut().cart.push("sku-red-gadget".into());
    mgr.save(&mut session).await.unwrap();
    let second = session.ticket().as_str().to_owned();
    assert_ne!(first, second, "save re-issues the token");
    assert_hidden(&second, &["sku-red-gadget", "alice.secret@example.com"]);

    let loaded = mgr.load(&second).await.unwrap().expect("live");
    assert_eq!(loaded.data().cart, ["sku-blue-widget", "sku-red-gadget"]);
    assert_eq!(loaded.data().email, "alice.secret@example.com");
    assert_eq!(loaded.subject(), Some("alice"));
    assert_eq!(loaded.id(), session.id());

    // Only the key holder reads it.
    let (payload, _) = open(&second, &KEY_1, b"");
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["dat"]["email"], "alice.secret@example.com");
}

#[tokio::test]
async fn update_re_issues_a_token() {
    let mgr = manager(Arc::new(codec()));
    let session = mgr.create(Some("amy"), profile()).await.unwrap();
    let updated = mgr
        .update(session.ticket().as_str(), |p| p.roles.clear())
        .await
        .unwrap();
    assert!(updated.ticket_changed());
    let loaded = mgr.load(updated.ticket().as_str()).await.unwrap().unwrap();
    assert!(loaded.data().roles.is_empty());
}

#[tokio::test]
async fn destroy_revokes_the_token() {
    // The revocation list over core's reference store.
    let mgr = SessionManager::<Profile>::stateless(
        Arc::new(codec()),
        RevocationList::new(VecStore::default()),
    )
    .build()
    .unwrap();
    let session = mgr.create(Some("bob"), profile()).await.unwrap();
    let ticket = session.ticket().as_str().to_owned();
    assert!(mgr.load(&ticket).await.unwrap().is_some());
    assert!(mgr.destroy(&ticket).await.unwrap());
    match mgr.load(&ticket).await {
        Err(Error::Revoked) => {}
        other => panic!("expected Revoked, got {other:?}"),
    }
}

#[tokio::test]
async fn destroy_subject_logs_out_every_token_of_the_subject() {
    let mgr = manager(Arc::new(codec()));
    let laptop = mgr.create(Some("carol"), profile()).await.unwrap();
    let phone = mgr.create(Some("carol"), profile()).await.unwrap();
    let other_user = mgr.create(Some("dave"), profile()).await.unwrap();
    clock_past(Timestamp::now()).await;

    mgr.destroy_subject("carol").await.unwrap();
    for session in [&laptop, &phone] {
        match mgr.load(session.ticket().as_str()).await {
            Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout)) => {}
            other => panic!("expected IssuedBeforeLogout, got {other:?}"),
        }
    }
    assert!(
        mgr.load(other_user.ticket().as_str())
            .await
            .unwrap()
            .is_some()
    );
    clock_past(Timestamp::now()).await;
    let fresh = mgr.create(Some("carol"), profile()).await.unwrap();
    assert!(mgr.load(fresh.ticket().as_str()).await.unwrap().is_some());
    // Stateless tokens cannot be listed.
    assert!(matches!(
        mgr.list_subject("carol").await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn rotate_issues_a_new_jti_and_revokes_the_old_one() {
    let mgr = manager(Arc::new(codec()));
    let mut session = mgr.create(Some("erin"), profile()).await.unwrap();
    let old_ticket = session.ticket().as_str().to_owned();
    let old_id = session.id();
    mgr.rotate(&mut session).await.unwrap();
    assert_ne!(session.id(), old_id);
    assert!(matches!(mgr.load(&old_ticket).await, Err(Error::Revoked)));
    let loaded = mgr.load(session.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(loaded.data(), &profile());
}

#[tokio::test]
async fn key_rotation_under_the_manager() {
    let codec = Arc::new(codec());
    let mgr = manager(Arc::clone(&codec));
    let before = mgr.create(Some("frank"), profile()).await.unwrap();
    codec.rotate(key("k2", &KEY_2)).unwrap();
    let after = mgr.create(Some("frank"), profile()).await.unwrap();
    assert!(mgr.load(before.ticket().as_str()).await.unwrap().is_some());
    assert!(mgr.load(after.ticket().as_str()).await.unwrap().is_some());
    codec.remove_key("k1").unwrap();
    match mgr.load(before.ticket().as_str()).await {
        Err(Error::InvalidToken(TokenRejection::UnknownKey)) => {}
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    assert!(mgr.load(after.ticket().as_str()).await.unwrap().is_some());
}

#[tokio::test]
async fn tampered_and_oversized_tickets() {
    let mgr = manager(Arc::new(codec()));
    let session = mgr.create(Some("gina"), profile()).await.unwrap();
    let mut ticket = session.ticket().as_str().to_owned();
    ticket.push('A');
    assert!(matches!(
        mgr.load(&ticket).await,
        Err(Error::InvalidToken(_))
    ));
    // Session data too big for an 8 KiB token.
    let big = Profile {
        cart: vec!["x".repeat(100); 100],
        ..profile()
    };
    match mgr.create(Some("gina"), big).await {
        Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, 8 * 1024),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
