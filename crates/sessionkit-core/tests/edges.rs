//! The manager's guarantees at the edges: rolling deploys and rollbacks,
//! types a codec cannot read back, stateless rotation against concurrent
//! logouts, tokens from the future, re-signing near the absolute timeout,
//! and which failures `update` retries.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit_core::testing::VecStore;
use sessionkit_core::{
    Error, PayloadCodec, Record, Result, RevocationList, SessionId, SessionManager, SessionStore,
    Timestamp, TokenClaims, TokenCodec, TokenRejection, async_trait,
};
use tokio::sync::Barrier;

use common::PlainCodec;

fn codecs() -> Vec<PayloadCodec> {
    let mut all = vec![PayloadCodec::Json];
    #[cfg(feature = "bincode")]
    all.push(PayloadCodec::Bincode);
    #[cfg(feature = "postcard")]
    all.push(PayloadCodec::Postcard);
    all
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct V1 {
    first: String,
    last: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct V2 {
    name: String,
    visits: u32,
}

fn v1_manager(store: &VecStore, codec: PayloadCodec) -> SessionManager<V1> {
    SessionManager::stateful(store.clone())
        .codec(codec)
        .build()
        .unwrap()
}

fn v2_manager(store: &VecStore, codec: PayloadCodec) -> SessionManager<V2> {
    SessionManager::stateful(store.clone())
        .codec(codec)
        .schema_version(2)
        .upgrade_from::<V1>(1, |v1| V2 {
            name: format!("{} {}", v1.first, v1.last),
            visits: 0,
        })
        .build()
        .unwrap()
}

/// A rolling deploy, and its rollback: V1 and V2 instances share one store
/// and interleave reads and updates. V1 never reads V2 data as its own type
/// (it is "no session" there, counted) and so never writes it back; at the
/// end V2 reads every session back intact.
#[tokio::test]
async fn rolling_deploy_both_ways_loses_nothing_on_every_codec() {
    for codec in codecs() {
        let store = VecStore::default();
        let v1 = v1_manager(&store, codec);
        let v2 = v2_manager(&store, codec);

        // Sessions written by each version.
        let old = v1
            .create(
                Some("ann"),
                V1 {
                    first: "Ann".into(),
                    last: "Lee".into(),
                },
            )
            .await
            .unwrap();
        let new = v2
            .create(
                Some("bob"),
                V2 {
                    name: "Alice".into(),
                    visits: 7,
                },
            )
            .await
            .unwrap();
        let new_bytes = store.load(&new.id()).await.unwrap().unwrap();

        // The old instance meets the new session: no session, not garbage.
        assert!(
            v1.load(new.ticket().as_str()).await.unwrap().is_none(),
            "{codec:?}: a V1 instance read V2 data as its own type"
        );
        assert_eq!(v1.stats().newer_schema, 1, "{codec:?}");
        assert_eq!(v1.stats().undecodable, 1, "{codec:?}");
        // ... and its read-modify-write cannot touch it.
        assert!(matches!(
            v1.update(new.ticket().as_str(), |d| d.last.clear()).await,
            Err(Error::NotFound)
        ));
        assert_eq!(
            store.load(&new.id()).await.unwrap().unwrap(),
            new_bytes,
            "{codec:?}: a V1 instance changed a V2 session"
        );

        // Interleaved traffic: V1 updates its session, V2 reads it
        // (upgraded), V2 updates the new one, V1 tries it again.
        for i in 0..5u32 {
            v1.update(old.ticket().as_str(), |d| d.last = format!("Lee{i}"))
                .await
                .unwrap();
            let seen = v2.load(old.ticket().as_str()).await.unwrap().unwrap();
            assert_eq!(seen.data().name, format!("Ann Lee{i}"), "{codec:?}");
            v2.update(new.ticket().as_str(), |d| d.visits += 1)
                .await
                .unwrap();
            assert!(v1.load(new.ticket().as_str()).await.unwrap().is_none());
        }

        // V2 takes the old session over; from then on V1 leaves it alone.
        v2.update(old.ticket().as_str(), |d| d.visits = 100)
            .await
            .unwrap();
        assert!(v1.load(old.ticket().as_str()).await.unwrap().is_none());
        assert!(matches!(
            v1.update(old.ticket().as_str(), |d| d.first.clear()).await,
            Err(Error::NotFound)
        ));

        // Everything reads back intact in V2.
        let new_back = v2.load(new.ticket().as_str()).await.unwrap().unwrap();
        assert_eq!(
            new_back.data(),
            &V2 {
                name: "Alice".into(),
                visits: 12
            },
            "{codec:?}"
        );
        let old_back = v2.load(old.ticket().as_str()).await.unwrap().unwrap();
        assert_eq!(
            old_back.data(),
            &V2 {
                name: "Ann Lee4".into(),
                visits: 100
            },
            "{codec:?}"
        );
        assert_eq!(v2.stats().undecodable, 0, "{codec:?}");
    }
}

/// The same for stateless tokens: an old instance does not read a newer
/// token's data, and so never re-signs it (an idle extension would write
/// it back as its own type).
#[tokio::test]
async fn stateless_rollback_never_rewrites_a_newer_token() {
    let revocations = RevocationList::new(VecStore::default());
    let v2 = SessionManager::<V2>::stateless(PlainCodec, revocations.clone())
        .schema_version(2)
        .build()
        .unwrap();
    let v1 = SessionManager::<V1>::stateless(PlainCodec, revocations)
        .idle_timeout(Duration::from_secs(60))
        .touch_interval(Duration::from_millis(1))
        .build()
        .unwrap();
    let token = v2
        .create(
            Some("ann"),
            V2 {
                name: "Alice".into(),
                visits: 3,
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(v1.load(token.ticket().as_str()).await.unwrap().is_none());
    assert_eq!(v1.stats().newer_schema, 1);
    assert_eq!(v1.stats().extensions, 0, "a newer token was re-signed");
    let back = v2.load(token.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(
        back.data(),
        &V2 {
            name: "Alice".into(),
            visits: 3
        }
    );
}

/// A session type the binary codecs can write but not read back is refused
/// at `create` with a clear error, not created and then loaded as `None`.
#[tokio::test]
async fn a_type_the_codec_cannot_read_back_fails_at_create() {
    for codec in codecs() {
        let store = VecStore::default();
        let manager = SessionManager::<serde_json::Value>::stateful(store.clone())
            .codec(codec)
            .build()
            .unwrap();
        let created = manager
            .create(None, serde_json::json!({"cart": ["apple"], "n": 1}))
            .await;
        if codec == PayloadCodec::Json {
            let s = created.expect("JSON reads back any JSON value");
            let back = manager.load(s.ticket().as_str()).await.unwrap().unwrap();
            assert_eq!(back.data()["cart"][0], "apple");
        } else {
            match created {
                Err(Error::Encode(source)) => {
                    let text = source.to_string();
                    assert!(text.contains("PayloadCodec::Json"), "{codec:?}: {text}");
                }
                other => panic!("{codec:?}: expected Error::Encode at create, got {other:?}"),
            }
            assert_eq!(store.list_subject("x").await.unwrap().len(), 0);
        }
    }
}

fn stateless(revocations: RevocationList) -> SessionManager<u32> {
    SessionManager::stateless(PlainCodec, revocations)
        .build()
        .unwrap()
}

/// Stateless rotation after a logout, a log-out-everywhere or another
/// rotation fails with a typed error, hands out no ticket and leaves the
/// session as it was.
#[tokio::test]
async fn stateless_rotation_after_an_end_fails_and_issues_nothing() {
    let m = stateless(RevocationList::new(VecStore::default()));

    let created = m.create(Some("ann"), 1).await.unwrap();
    let mut copy = m.load(created.ticket().as_str()).await.unwrap().unwrap();
    assert!(m.destroy(created.ticket().as_str()).await.unwrap());
    let before = copy.ticket().clone();
    assert!(matches!(m.rotate(&mut copy).await, Err(Error::Revoked)));
    assert_eq!(
        copy.ticket(),
        &before,
        "a failed rotation changed the ticket"
    );

    let created = m.create(Some("bob"), 1).await.unwrap();
    let mut copy = m.load(created.ticket().as_str()).await.unwrap().unwrap();
    m.destroy_subject("bob").await.unwrap();
    let before = copy.ticket().clone();
    assert!(matches!(
        m.rotate(&mut copy).await,
        Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout))
    ));
    assert_eq!(copy.ticket(), &before);

    let created = m.create(Some("cat"), 1).await.unwrap();
    let mut a = m.load(created.ticket().as_str()).await.unwrap().unwrap();
    let mut b = m.load(created.ticket().as_str()).await.unwrap().unwrap();
    m.rotate(&mut a).await.unwrap();
    let before = b.ticket().clone();
    assert!(matches!(m.rotate(&mut b).await, Err(Error::Revoked)));
    assert_eq!(b.ticket(), &before);
    assert!(m.load(a.ticket().as_str()).await.unwrap().is_some());
}

/// A token rotated (or re-signed) *after* log-out-everywhere started is
/// still rejected: the check follows the session's start, which every
/// token of the session carries.
#[tokio::test]
async fn log_out_everywhere_also_ends_tokens_rotated_during_it() {
    let m = stateless(RevocationList::new(VecStore::default()));
    let created = m.create(Some("dan"), 1).await.unwrap();
    let mut copy = m.load(created.ticket().as_str()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    // The rotation passes its checks, then the logout lands, then the new
    // token is used: it is rejected although it was issued after the logout.
    m.rotate(&mut copy).await.unwrap();
    m.destroy_subject("dan").await.unwrap();
    assert!(matches!(
        m.load(copy.ticket().as_str()).await,
        Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout))
    ));
}

/// Tokens whose `iat` lies in the future do not outlive log-out-everywhere
/// (even at `i64::MAX`).
#[tokio::test]
async fn a_token_from_the_future_does_not_survive_log_out_everywhere() {
    let m = stateless(RevocationList::new(VecStore::default()));
    let now = Timestamp::now();
    for (subject, iat) in [
        ("eve", now + Duration::from_secs(120)),
        ("eva", Timestamp::from_millis(i64::MAX)),
    ] {
        let token = PlainCodec
            .encode(&TokenClaims {
                jti: SessionId::generate(),
                subject: Some(subject.into()),
                issued_at: iat,
                expires_at: now + Duration::from_secs(600),
                not_before: None,
                session_started_at: now - Duration::from_secs(1),
                schema: 1,
                data: serde_json::json!(1),
            })
            .unwrap();
        assert!(m.load(&token).await.unwrap().is_some());
        m.destroy_subject(subject).await.unwrap();
        assert!(
            matches!(
                m.load(&token).await,
                Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout))
            ),
            "a token issued at {iat:?} survived log-out-everywhere"
        );
    }
}

/// [`TRIALS`] trials of four concurrent stateless rotations of one token:
/// exactly one wins, the others get `Revoked` and hand out nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stateless_rotations_have_one_winner() {
    const TRIALS: usize = 200;
    let m = stateless(RevocationList::new(VecStore::default()));
    for trial in 0..TRIALS {
        let created = m.create(Some("fay"), 1).await.unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut copy = m.load(created.ticket().as_str()).await.unwrap().unwrap();
            let (m, barrier) = (m.clone(), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let before = copy.ticket().clone();
                let result = m.rotate(&mut copy).await;
                (result, before == *copy.ticket(), copy)
            }));
        }
        let mut winners = 0;
        for task in tasks {
            let (result, unchanged, copy) = task.await.unwrap();
            match result {
                Ok(()) => {
                    winners += 1;
                    assert!(m.load(copy.ticket().as_str()).await.unwrap().is_some());
                }
                Err(Error::Revoked) => assert!(unchanged, "trial {trial}: a loser got a ticket"),
                Err(e) => panic!("trial {trial}: unexpected {e:?}"),
            }
        }
        assert_eq!(winners, 1, "trial {trial}: {winners} rotations won");
        assert!(matches!(
            m.load(created.ticket().as_str()).await,
            Err(Error::Revoked)
        ));
    }
}

/// A store whose `create` fails: a revocation list over it cannot revoke.
#[derive(Clone, Default)]
struct FailingCreate(VecStore);

#[async_trait]
impl SessionStore for FailingCreate {
    async fn create(&self, _: &Record) -> Result<()> {
        Err(Error::backend(std::io::Error::other("store down"), true))
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.0.load(id).await
    }
    async fn save(&self, r: &Record) -> Result<u64> {
        self.0.save(r).await
    }
    async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
        self.0.touch(id, t).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.0.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> Result<()> {
        self.0.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
        self.0.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> Result<u64> {
        self.0.delete_subject(s).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

/// A stateless rotation whose revocation fails leaves the session exactly
/// as it was: the web layer must never send a new ticket while the old
/// token stays valid.
#[tokio::test]
async fn a_failed_stateless_rotation_changes_nothing() {
    let m = stateless(RevocationList::new(FailingCreate::default()));
    let created = m.create(Some("gil"), 1).await.unwrap();
    let mut copy = m.load(created.ticket().as_str()).await.unwrap().unwrap();
    let (ticket, id, changed) = (copy.ticket().clone(), copy.id(), copy.ticket_changed());
    assert!(matches!(
        m.rotate(&mut copy).await,
        Err(Error::Backend { .. })
    ));
    assert_eq!(copy.ticket(), &ticket);
    assert_eq!(copy.id(), id);
    assert_eq!(copy.ticket_changed(), changed);
    assert!(m.load(ticket.as_str()).await.unwrap().is_some());
}

/// Near the end of its absolute lifetime a stateless session stops being
/// re-signed: the expiry cannot move, so nothing is gained by a new token.
#[tokio::test]
async fn stateless_tokens_are_not_resigned_once_the_expiry_cannot_move() {
    let m = SessionManager::<u32>::stateless(PlainCodec, RevocationList::new(VecStore::default()))
        .idle_timeout(Duration::from_millis(2000))
        .absolute_timeout(Duration::from_millis(4000))
        .touch_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let mut ticket = m.create(None, 1).await.unwrap().ticket().clone();
    let (mut loads, mut reissues) = (0, 0);
    let started = std::time::Instant::now();
    // Tokens carry whole seconds, so the absolute deadline is at least 3 s
    // away; from about 2 s on the idle deadline is capped by it.
    while started.elapsed() < Duration::from_millis(2900) {
        let s = m.load(ticket.as_str()).await.unwrap().expect("live");
        loads += 1;
        if s.ticket_changed() {
            reissues += 1;
            ticket = s.ticket().clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(loads >= 40, "only {loads} loads");
    // The expiry is kept in whole seconds: it moves at most three times
    // before it reaches the absolute deadline, then never again.
    assert!(reissues <= 3, "{reissues} re-issues in {loads} loads");
    assert_eq!(m.stats().extensions, reissues);
}

/// A store that aborts the first `n` saves (a deadlock victim) or times
/// them out.
struct Flaky {
    inner: VecStore,
    failures: AtomicU32,
    timeout: bool,
    saves: AtomicU32,
}

#[async_trait]
impl SessionStore for Flaky {
    async fn create(&self, r: &Record) -> Result<()> {
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> Result<u64> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(if self.timeout {
                Error::Timeout(Some(Duration::from_millis(5)))
            } else {
                Error::Aborted("deadlock victim".into())
            });
        }
        self.inner.save(r).await
    }
    async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
        self.inner.touch(id, t).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> Result<()> {
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> Result<u64> {
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

/// `update` absorbs a save the backend aborted without applying it, and
/// does not repeat one whose outcome is unknown (a timeout).
#[tokio::test]
async fn update_retries_aborted_saves_but_not_timeouts() {
    for timeout in [false, true] {
        let store = Arc::new(Flaky {
            inner: VecStore::default(),
            failures: AtomicU32::new(2),
            timeout,
            saves: AtomicU32::new(0),
        });
        let m = SessionManager::<u32>::stateful_shared(store.clone())
            .build()
            .unwrap();
        let s = m.create(None, 0).await.unwrap();
        let result = m.update(s.ticket().as_str(), |n| *n += 1).await;
        if timeout {
            assert!(matches!(result, Err(Error::Timeout(Some(_)))));
            assert_eq!(
                store.saves.load(Ordering::SeqCst),
                1,
                "a timed-out save was repeated"
            );
        } else {
            assert_eq!(*result.unwrap().data(), 1);
            assert_eq!(store.saves.load(Ordering::SeqCst), 3);
            // Rolled-back saves are repeated as they were, not counted as
            // conflicts (nobody else wrote).
            assert_eq!(m.stats().update_conflicts, 0);
        }
    }
}

#[test]
fn errors_tell_transient_from_conflict_and_never_claim_a_zero_limit() {
    assert!(
        !Error::Conflict.is_transient(),
        "a stale save never succeeds when repeated"
    );
    assert!(Error::Conflict.is_conflict());
    assert!(Error::Aborted("deadlock".into()).is_transient());
    assert!(Error::Timeout(None).is_transient());
    assert!(!Error::backend(std::io::Error::other("closed"), false).is_transient());
    let unknown = Error::Timeout(None).to_string();
    assert!(!unknown.contains("0ns"), "{unknown}");
    let known = Error::Timeout(Some(Duration::from_millis(250))).to_string();
    assert!(known.contains("250ms"), "{known}");
}

/// A store that cannot read its record back answers `Decode`.
struct Corrupted;

#[async_trait]
impl SessionStore for Corrupted {
    async fn create(&self, _: &Record) -> Result<()> {
        Ok(())
    }
    async fn load(&self, _: &SessionId) -> Result<Option<Record>> {
        Err(Error::decode("flags byte out of range"))
    }
    async fn save(&self, _: &Record) -> Result<u64> {
        Err(Error::NotFound)
    }
    async fn touch(&self, _: &SessionId, _: Timestamp) -> Result<()> {
        Err(Error::NotFound)
    }
    async fn delete(&self, _: &SessionId) -> Result<bool> {
        Ok(false)
    }
    async fn compare_and_delete(&self, _: &SessionId, _: u64) -> Result<()> {
        Err(Error::NotFound)
    }
    async fn list_subject(&self, _: &str) -> Result<Vec<Record>> {
        Ok(Vec::new())
    }
    async fn delete_subject(&self, _: &str) -> Result<u64> {
        Ok(0)
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

/// Corrupted stored bytes are "no session", counted — never an error page.
#[tokio::test]
async fn a_record_the_store_cannot_read_is_no_session_and_counted() {
    let m = SessionManager::<u32>::stateful(Corrupted).build().unwrap();
    let id = SessionId::generate();
    assert!(m.load(id.as_str()).await.unwrap().is_none());
    assert!(m.load_fresh(id.as_str()).await.unwrap().is_none());
    assert_eq!(m.stats().undecodable, 2);
}

/// A login (subject change, then rotation) of an anonymous stateless
/// session that started before the new subject's last log-out-everywhere:
/// the authentication starts a new session lineage, so it is not killed by
/// a logout that came before it.
#[tokio::test]
async fn a_stateless_login_after_log_out_everywhere_is_live() {
    let m = stateless(RevocationList::new(VecStore::default()));
    let anonymous = m.create(None, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    m.destroy_subject("zed").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let mut s = m.load(anonymous.ticket().as_str()).await.unwrap().unwrap();
    s.set_subject(Some("zed")).unwrap();
    m.rotate(&mut s).await.expect("the login is not refused");
    let loaded = m
        .load(s.ticket().as_str())
        .await
        .unwrap()
        .expect("the logged-in token is live");
    assert_eq!(loaded.subject(), Some("zed"));
    assert!(
        loaded.created_at() > anonymous.created_at(),
        "the login restarted the session"
    );
    assert!(matches!(
        m.load(anonymous.ticket().as_str()).await,
        Err(Error::Revoked)
    ));
    // And a later log-out-everywhere ends it.
    tokio::time::sleep(Duration::from_millis(3)).await;
    m.destroy_subject("zed").await.unwrap();
    assert!(m.load(s.ticket().as_str()).await.is_err());
}

/// A store whose `load` answers from a stale cache (never revoked) while
/// `load_fresh` asks the truth.
#[derive(Clone, Default)]
struct StaleCache(VecStore);

#[async_trait]
impl SessionStore for StaleCache {
    async fn create(&self, r: &Record) -> Result<()> {
        self.0.create(r).await
    }
    async fn load(&self, _: &SessionId) -> Result<Option<Record>> {
        Ok(None)
    }
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        self.0.load(id).await
    }
    async fn save(&self, r: &Record) -> Result<u64> {
        self.0.save(r).await
    }
    async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
        self.0.touch(id, t).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.0.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> Result<()> {
        self.0.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
        self.0.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> Result<u64> {
        self.0.delete_subject(s).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

/// Stateless fresh loads and rotations read the revocation list past its
/// cache: a logout another instance made a moment ago is seen.
#[tokio::test]
async fn stateless_fresh_loads_and_rotations_see_revocations_past_the_cache() {
    let m = stateless(RevocationList::new(StaleCache::default()));
    let s = m.create(Some("amy"), 1).await.unwrap();
    let mut copy = m.load(s.ticket().as_str()).await.unwrap().unwrap();
    m.destroy(s.ticket().as_str()).await.unwrap();
    assert!(
        m.load(s.ticket().as_str()).await.unwrap().is_some(),
        "the stale read (the test's premise)"
    );
    assert!(matches!(
        m.load_fresh(s.ticket().as_str()).await,
        Err(Error::Revoked)
    ));
    assert!(matches!(m.rotate(&mut copy).await, Err(Error::Revoked)));
    let other = m.create(Some("amy"), 1).await.unwrap();
    m.destroy_subject("amy").await.unwrap();
    assert!(matches!(
        m.load_fresh(other.ticket().as_str()).await,
        Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout))
    ));
}

/// A store whose `delete_subject` is a deadlock victim twice.
#[derive(Clone, Default)]
struct AbortingDeleteSubject(VecStore, Arc<AtomicU32>);

#[async_trait]
impl SessionStore for AbortingDeleteSubject {
    async fn create(&self, r: &Record) -> Result<()> {
        self.0.create(r).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.0.load(id).await
    }
    async fn save(&self, r: &Record) -> Result<u64> {
        self.0.save(r).await
    }
    async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
        self.0.touch(id, t).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.0.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> Result<()> {
        self.0.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
        self.0.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> Result<u64> {
        if self.1.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(Error::Aborted("deadlock victim".into()));
        }
        self.0.delete_subject(s).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

/// Log-out-everywhere absorbs a deletion the backend rolled back.
#[tokio::test]
async fn destroy_subject_retries_an_aborted_deletion() {
    let store = AbortingDeleteSubject::default();
    let m = SessionManager::<u32>::stateful(store.clone())
        .build()
        .unwrap();
    m.create(Some("ivy"), 1).await.unwrap();
    m.create(Some("ivy"), 2).await.unwrap();
    assert_eq!(m.destroy_subject("ivy").await.unwrap(), 2);
    assert!(store.0.list_subject("ivy").await.unwrap().is_empty());
}

/// A store on which every write is a deadlock victim the first time it is
/// tried (as InnoDB does to one of two statements that lock the same rows
/// in opposite orders).
#[derive(Clone, Default)]
struct AbortsEachWriteOnce {
    inner: VecStore,
    aborted: Arc<std::sync::Mutex<std::collections::HashSet<&'static str>>>,
}

impl AbortsEachWriteOnce {
    fn first_time(&self, op: &'static str) -> Result<()> {
        if self.aborted.lock().unwrap().insert(op) {
            return Err(Error::Aborted(format!("{op}: deadlock victim").into()));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for AbortsEachWriteOnce {
    async fn create(&self, r: &Record) -> Result<()> {
        self.first_time("create")?;
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> Result<u64> {
        self.first_time("save")?;
        self.inner.save(r).await
    }
    async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
        self.inner.touch(id, t).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.first_time("delete")?;
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> Result<()> {
        self.first_time("compare_and_delete")?;
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> Result<u64> {
        self.first_time("delete_subject")?;
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

/// A write the backend rolled back applied nothing, so the manager runs it
/// again: login, save, rotation, logout and log-out-everywhere each
/// succeed through one deadlock, and leave exactly what they promise.
#[tokio::test]
async fn every_write_survives_a_rolled_back_attempt() {
    let store = AbortsEachWriteOnce::default();
    let m = SessionManager::<u32>::stateful(store.clone())
        .build()
        .unwrap();
    let created = m.create(Some("kim"), 1).await.expect("create");
    let mut s = m.load(created.ticket().as_str()).await.unwrap().unwrap();
    *s.data_mut() = 2;
    m.save(&mut s).await.expect("save");
    let old = s.id();
    m.rotate(&mut s).await.expect("rotate");
    assert!(store.inner.load(&old).await.unwrap().is_none());
    let live = store.inner.list_subject("kim").await.unwrap();
    assert_eq!(live.len(), 1, "one session after the rotation");
    assert_eq!(live[0].id, s.id());
    assert!(m.destroy(s.ticket().as_str()).await.expect("destroy"));
    assert!(store.inner.list_subject("kim").await.unwrap().is_empty());
    m.create(Some("kim"), 3).await.unwrap();
    assert_eq!(m.destroy_subject("kim").await.expect("destroy_subject"), 1);
    assert!(store.inner.list_subject("kim").await.unwrap().is_empty());
    let tried = store.aborted.lock().unwrap().len();
    assert_eq!(tried, 5, "every kind of write was aborted once");
}
