//! Lifecycle events and metrics: every event a subscriber is promised, a
//! slow subscriber never blocks a request, and IDs never appear whole.

mod common;

use std::time::Duration;

use sessionkit_core::testing::VecStore;
use sessionkit_core::{
    Error, EventKind, RevocationList, SessionEvent, SessionManager, TokenRejection,
};

use common::PlainCodec;

fn next(rx: &mut sessionkit_core::EventReceiver) -> SessionEvent {
    rx.try_recv().expect("an event was queued")
}

#[tokio::test]
async fn stateful_lifecycle_events_arrive_in_order_without_whole_ids() {
    let m = SessionManager::<u32>::stateful(VecStore::default())
        .absolute_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    let mut rx = m.subscribe(64);

    let mut s = m.create(Some("ann"), 1).await.unwrap();
    let e = next(&mut rx);
    assert_eq!(e.kind, EventKind::Created);
    assert_eq!(e.subject.as_deref(), Some("ann"));
    let shown = e.session.expect("a redacted id");
    assert!(s.id().as_str().starts_with(shown.trim_end_matches('…')));
    assert!(
        !shown.contains(s.id().as_str()),
        "an event carried a whole session id"
    );

    let mut stale = m.load(s.ticket().as_str()).await.unwrap().unwrap();
    m.save(&mut s).await.unwrap();
    assert!(matches!(m.save(&mut stale).await, Err(Error::Conflict)));
    assert_eq!(next(&mut rx).kind, EventKind::Conflict);

    m.rotate(&mut s).await.unwrap();
    assert_eq!(next(&mut rx).kind, EventKind::Rotated);
    assert!(m.rotate(&mut stale).await.is_err());
    assert_eq!(next(&mut rx).kind, EventKind::RotationRefused);

    assert!(m.load("not-an-id").await.is_err());
    assert_eq!(
        next(&mut rx).kind,
        EventKind::TicketRejected {
            reason: None,
            revoked: false
        }
    );

    assert!(m.destroy(s.ticket().as_str()).await.unwrap());
    assert_eq!(next(&mut rx).kind, EventKind::Destroyed);
    assert!(!m.destroy(s.ticket().as_str()).await.unwrap());
    assert!(rx.try_recv().is_none(), "a no-op logout is not an event");

    m.create(Some("bob"), 1).await.unwrap();
    m.create(Some("bob"), 1).await.unwrap();
    let _ = (next(&mut rx), next(&mut rx));
    assert_eq!(m.destroy_subject("bob").await.unwrap(), 2);
    let e = next(&mut rx);
    assert_eq!(e.kind, EventKind::LoggedOutEverywhere { count: 2 });
    assert_eq!(e.subject.as_deref(), Some("bob"));
}

#[tokio::test]
async fn stateless_rejections_carry_their_reason() {
    let m = SessionManager::<u32>::stateless(PlainCodec, RevocationList::new(VecStore::default()))
        .build()
        .unwrap();
    let mut rx = m.subscribe(64);
    let s = m.create(Some("cat"), 1).await.unwrap();
    let _ = next(&mut rx);
    m.destroy(s.ticket().as_str()).await.unwrap();
    assert_eq!(next(&mut rx).kind, EventKind::Destroyed);
    assert!(matches!(
        m.load(s.ticket().as_str()).await,
        Err(Error::Revoked)
    ));
    assert_eq!(
        next(&mut rx).kind,
        EventKind::TicketRejected {
            reason: None,
            revoked: true
        }
    );
    assert!(m.load("{garbage").await.is_err());
    assert_eq!(
        next(&mut rx).kind,
        EventKind::TicketRejected {
            reason: Some(TokenRejection::Malformed),
            revoked: false
        }
    );
}

/// A subscriber that never reads: requests go on, its queue keeps the
/// first events, the rest are dropped and counted; a dropped receiver
/// unsubscribes.
#[tokio::test]
async fn a_slow_subscriber_never_blocks_and_drops_are_counted() {
    let m = SessionManager::<u32>::stateful(VecStore::default())
        .build()
        .unwrap();
    let mut slow = m.subscribe(2);
    let gone = m.subscribe(1);
    drop(gone);
    let started = std::time::Instant::now();
    for _ in 0..50 {
        m.create(None, 1).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(m.stats().events_dropped, 48);
    assert!(slow.try_recv().is_some() && slow.try_recv().is_some());
    assert!(slow.try_recv().is_none());
}

/// A session found past the absolute timeout (here: shortened since it was
/// created) is removed and reported as expired.
#[tokio::test]
async fn a_session_past_its_absolute_timeout_is_reported_expired() {
    let store = VecStore::default();
    let before = SessionManager::<u32>::stateful(store.clone())
        .build()
        .unwrap();
    let after = SessionManager::<u32>::stateful(store.clone())
        .absolute_timeout(Duration::from_millis(50))
        .idle_timeout(Duration::from_millis(40))
        .build()
        .unwrap();
    let mut rx = after.subscribe(8);
    let s = before.create(Some("dan"), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(after.load(s.ticket().as_str()).await.unwrap().is_none());
    let e = next(&mut rx);
    assert_eq!(e.kind, EventKind::Expired);
    assert_eq!(e.subject.as_deref(), Some("dan"));
    assert!(
        before.load(s.ticket().as_str()).await.unwrap().is_none(),
        "it was removed"
    );
}
