//! Hybrid sessions through the library: rotation, reuse detection, the
//! grace window, races, tampering, secret rotation, timeouts, and what
//! happens when a store fails half-way.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit_core::testing::VecStore;
use sessionkit_core::{
    ClientInfo, Error, HybridManager, Record, RefreshError, RefreshRejection, RevocationList,
    SessionId, SessionManager, SessionStore, Timestamp, TokenClaims, TokenCodec, TokenPair,
    TokenRejection, async_trait,
};
use tokio::sync::Barrier;

const SECRET: &[u8] = b"an example secret of at least 32 bytes!";

/// An unsigned codec (the real one is `sessionkit-jwt`): JSON claims,
/// expiry checked to the second like a JWT.
struct Plain;

#[derive(Serialize, Deserialize)]
struct Wire {
    jti: SessionId,
    sub: Option<String>,
    iat: Timestamp,
    exp: Timestamp,
    started: Timestamp,
    schema: u32,
    data: serde_json::Value,
}

impl TokenCodec for Plain {
    fn encode(&self, c: &TokenClaims) -> sessionkit_core::Result<String> {
        serde_json::to_string(&Wire {
            jti: c.jti,
            sub: c.subject.clone(),
            iat: c.issued_at,
            exp: c.expires_at,
            started: c.session_started_at,
            schema: c.schema,
            data: c.data.clone(),
        })
        .map_err(Error::encode)
    }
    fn decode(&self, token: &str) -> sessionkit_core::Result<TokenClaims> {
        let w: Wire = serde_json::from_str(token)
            .map_err(|_| Error::InvalidToken(TokenRejection::Malformed))?;
        if w.exp <= Timestamp::now() {
            return Err(Error::InvalidToken(TokenRejection::Expired));
        }
        Ok(TokenClaims {
            jti: w.jti,
            subject: w.sub,
            issued_at: w.iat,
            expires_at: w.exp,
            not_before: None,
            session_started_at: w.started,
            schema: w.schema,
            data: w.data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    admin: bool,
}

fn alice() -> User {
    User {
        name: "Alice".into(),
        admin: true,
    }
}

/// Which calls of a [`Faulty`] store fail, and how.
#[derive(Default, Clone, Copy)]
struct Faults {
    create: bool,
    save: bool,
    /// `save` is applied, but reported as a timeout (a lost acknowledgement).
    save_lost_ack: bool,
    delete: bool,
    load: bool,
}

/// A store whose calls fail on demand with transient backend errors.
#[derive(Clone, Default)]
struct Faulty {
    inner: VecStore,
    faults: Arc<Mutex<Faults>>,
}

impl Faulty {
    fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap());
    }
    fn get(&self) -> Faults {
        *self.faults.lock().unwrap()
    }
}

fn down() -> Error {
    Error::backend(std::io::Error::other("injected: store down"), true)
}

#[async_trait]
impl SessionStore for Faulty {
    async fn create(&self, r: &Record) -> sessionkit_core::Result<()> {
        if self.get().create {
            return Err(down());
        }
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> sessionkit_core::Result<Option<Record>> {
        // Let concurrent refreshes interleave (this store never waits).
        tokio::task::yield_now().await;
        if self.get().load {
            return Err(down());
        }
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> sessionkit_core::Result<u64> {
        tokio::task::yield_now().await;
        let f = self.get();
        if f.save {
            return Err(down());
        }
        let v = self.inner.save(r).await?;
        if f.save_lost_ack {
            return Err(Error::Timeout(Some(Duration::from_secs(1))));
        }
        Ok(v)
    }
    async fn touch(&self, id: &SessionId, at: Timestamp) -> sessionkit_core::Result<()> {
        self.inner.touch(id, at).await
    }
    async fn delete(&self, id: &SessionId) -> sessionkit_core::Result<bool> {
        if self.get().delete {
            return Err(down());
        }
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> sessionkit_core::Result<()> {
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> sessionkit_core::Result<Vec<Record>> {
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> sessionkit_core::Result<u64> {
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> sessionkit_core::Result<u64> {
        Ok(0)
    }
}

struct Setup {
    hybrid: HybridManager<User>,
    families: Faulty,
    revocations: Faulty,
}

fn setup_with(
    configure: impl FnOnce(sessionkit_core::HybridBuilder<User>) -> sessionkit_core::HybridBuilder<User>,
) -> Setup {
    let families = Faulty::default();
    let revocations = Faulty::default();
    let hybrid = configure(
        HybridManager::builder(
            families.clone(),
            Plain,
            RevocationList::new(revocations.clone()),
        )
        .secret(SECRET),
    )
    .build()
    .expect("build");
    Setup {
        hybrid,
        families,
        revocations,
    }
}

fn setup() -> Setup {
    setup_with(|b| b)
}

fn rejection(result: Result<TokenPair, RefreshError>) -> RefreshRejection {
    match result {
        Err(RefreshError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn live(h: &HybridManager<User>, access: &str) -> bool {
    match h.verify(access).await {
        Ok(_) => true,
        Err(e) if e.is_invalid_ticket() => false,
        Err(e) => panic!("verify failed with a server error: {e:?}"),
    }
}

#[tokio::test]
async fn login_verify_and_rotation() {
    let s = setup();
    let before = Timestamp::now();
    let first = s.hybrid.login("alice", &alice()).await.unwrap();
    assert_eq!(
        first.refresh_token().len(),
        sessionkit_core::REFRESH_TOKEN_LEN
    );
    assert_eq!(first.generation(), 1);
    let claims = s.hybrid.verify(first.access_token()).await.unwrap();
    assert_eq!(claims.subject, "alice");
    assert_eq!(claims.data, alice());
    assert_eq!(claims.family, first.family());
    assert!(claims.session_started_at >= before);
    assert!(claims.expires_at <= claims.issued_at + s.hybrid.access_ttl());
    assert!(first.access_expires_at() > before);
    assert!(first.refresh_expires_at() > first.access_expires_at());

    let second = s.hybrid.refresh(first.refresh_token()).await.unwrap();
    assert_eq!(second.generation(), 2);
    assert_eq!(second.family(), first.family());
    assert_ne!(second.refresh_token(), first.refresh_token());
    let claims2 = s.hybrid.verify(second.access_token()).await.unwrap();
    assert_eq!(
        claims2.session_started_at, claims.session_started_at,
        "the login instant is kept"
    );
    // Debug shows no secret.
    let dbg = format!("{second:?}");
    assert!(!dbg.contains(second.refresh_token()) && !dbg.contains(second.access_token()));
    assert_eq!(s.hybrid.stats().refreshed, 1);
}

#[tokio::test]
async fn reuse_kills_every_token_of_the_family() {
    let s = setup();
    let mut pairs = vec![s.hybrid.login("bob", &alice()).await.unwrap()];
    for _ in 0..4 {
        let next = s
            .hybrid
            .refresh(pairs.last().unwrap().refresh_token())
            .await
            .unwrap();
        pairs.push(next);
    }
    let other = s.hybrid.login("bob", &alice()).await.unwrap();
    assert_eq!(
        rejection(s.hybrid.refresh(pairs[2].refresh_token()).await),
        RefreshRejection::Reused
    );
    for (i, p) in pairs.iter().enumerate() {
        assert!(
            !live(&s.hybrid, p.access_token()).await,
            "access token {i} survived"
        );
        let r = rejection(s.hybrid.refresh(p.refresh_token()).await);
        assert_eq!(r, RefreshRejection::Ended, "refresh token {i}");
    }
    assert!(
        live(&s.hybrid, other.access_token()).await,
        "another family of the user was ended"
    );
    assert_eq!(s.hybrid.families("bob").await.unwrap().len(), 1);
    assert_eq!(s.hybrid.stats().reuse_detected, 1);
}

#[tokio::test]
async fn duplicate_refresh_is_reuse_when_the_grace_window_is_off() {
    let s = setup();
    assert!(s.hybrid.reuse_grace().is_zero(), "off by default");
    let first = s.hybrid.login("carol", &alice()).await.unwrap();
    let second = s.hybrid.refresh(first.refresh_token()).await.unwrap();
    assert_eq!(
        rejection(s.hybrid.refresh(first.refresh_token()).await),
        RefreshRejection::Reused
    );
    assert!(!live(&s.hybrid, second.access_token()).await);
}

#[tokio::test]
async fn grace_window_answers_a_duplicate_with_the_same_refresh_token_then_closes() {
    let s = setup_with(|b| b.reuse_grace(Duration::from_secs(1)));
    let first = s.hybrid.login("dave", &alice()).await.unwrap();
    let second = s.hybrid.refresh(first.refresh_token()).await.unwrap();
    let dup = s.hybrid.refresh(first.refresh_token()).await.unwrap();
    assert_eq!(
        dup.refresh_token(),
        second.refresh_token(),
        "the same current refresh token"
    );
    assert_eq!(dup.generation(), 2);
    assert!(live(&s.hybrid, dup.access_token()).await);
    assert!(live(&s.hybrid, second.access_token()).await);
    assert_eq!(s.hybrid.stats().grace_answers, 1);
    // Still exactly one family, still rotating normally.
    let third = s.hybrid.refresh(dup.refresh_token()).await.unwrap();
    assert_eq!(third.generation(), 3);
    // Two generations back: outside the window whatever its length.
    assert_eq!(
        rejection(s.hybrid.refresh(first.refresh_token()).await),
        RefreshRejection::Reused
    );
    assert!(!live(&s.hybrid, third.access_token()).await);

    // After the window has passed, a duplicate is reuse.
    let first = s.hybrid.login("dave", &alice()).await.unwrap();
    let second = s.hybrid.refresh(first.refresh_token()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        rejection(s.hybrid.refresh(first.refresh_token()).await),
        RefreshRejection::Reused
    );
    assert!(!live(&s.hybrid, second.access_token()).await);
}

/// Returns the successes and rejections of `n` refreshes with `token`
/// started together; panics on a server error.
async fn race(
    h: &HybridManager<User>,
    token: &str,
    n: usize,
) -> (Vec<TokenPair>, Vec<RefreshRejection>) {
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (h, b, t) = (h.clone(), Arc::clone(&barrier), token.to_owned());
            tokio::spawn(async move {
                b.wait().await;
                h.refresh(&t).await
            })
        })
        .collect();
    let (mut won, mut lost) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(p) => won.push(p),
            Err(RefreshError::Rejected(r)) => lost.push(r),
            Err(e) => panic!("server error in a refresh race: {e:?}"),
        }
    }
    (won, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_never_fork() {
    let s = setup();
    for (n, trials) in [(2, 200), (10, 50)] {
        for trial in 0..trials {
            let first = s.hybrid.login("erin", &alice()).await.unwrap();
            let (won, lost) = race(&s.hybrid, first.refresh_token(), n).await;
            assert_eq!(won.len(), 1, "{n}x trial {trial}: winners");
            assert!(
                lost.contains(&RefreshRejection::Reused),
                "{n}x trial {trial}: {lost:?}"
            );
            assert!(
                !live(&s.hybrid, won[0].access_token()).await,
                "{n}x trial {trial}: winner's access token survived"
            );
            assert!(!live(&s.hybrid, first.access_token()).await);
            assert!(s.hybrid.refresh(won[0].refresh_token()).await.is_err());
        }
    }
    assert!(s.hybrid.families("erin").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_within_the_grace_window_share_one_token() {
    let s = setup_with(|b| b.reuse_grace(Duration::from_secs(10)));
    for trial in 0..50 {
        let first = s.hybrid.login("fay", &alice()).await.unwrap();
        let (won, lost) = race(&s.hybrid, first.refresh_token(), 10).await;
        assert!(lost.is_empty(), "trial {trial}: {lost:?}");
        assert!(
            won.iter()
                .all(|p| p.refresh_token() == won[0].refresh_token()),
            "trial {trial}: forked"
        );
        // The shared token works exactly once more (then it is rotated).
        let next = s.hybrid.refresh(won[0].refresh_token()).await.unwrap();
        assert_eq!(next.generation(), 3);
    }
}

#[tokio::test]
async fn logout_logout_everywhere_and_revoke_family() {
    let s = setup();
    let a = s.hybrid.login("gus", &alice()).await.unwrap();
    let a2 = s.hybrid.refresh(a.refresh_token()).await.unwrap();
    // Logout with any authentic token of the family ends it all.
    assert!(s.hybrid.logout(a.refresh_token()).await.unwrap());
    assert!(!live(&s.hybrid, a.access_token()).await);
    assert!(!live(&s.hybrid, a2.access_token()).await);
    assert_eq!(
        rejection(s.hybrid.refresh(a2.refresh_token()).await),
        RefreshRejection::Ended
    );
    assert!(
        !s.hybrid.logout(a2.refresh_token()).await.unwrap(),
        "already ended"
    );
    assert!(matches!(
        s.hybrid.logout("nonsense").await,
        Err(RefreshError::Rejected(RefreshRejection::Malformed))
    ));

    let b = s.hybrid.login("gus", &alice()).await.unwrap();
    let c = s.hybrid.login("gus", &alice()).await.unwrap();
    let other = s.hybrid.login("hal", &alice()).await.unwrap();
    assert!(
        !s.hybrid.revoke_family("hal", &b.family()).await.unwrap(),
        "another subject's family"
    );
    assert!(live(&s.hybrid, b.access_token()).await);
    assert!(s.hybrid.revoke_family("gus", &b.family()).await.unwrap());
    assert!(!live(&s.hybrid, b.access_token()).await);
    assert!(live(&s.hybrid, c.access_token()).await);

    assert_eq!(s.hybrid.logout_everywhere("gus").await.unwrap(), 1);
    assert!(!live(&s.hybrid, c.access_token()).await);
    assert_eq!(
        rejection(s.hybrid.refresh(c.refresh_token()).await),
        RefreshRejection::Ended
    );
    assert!(live(&s.hybrid, other.access_token()).await);
    assert!(s.hybrid.families("gus").await.unwrap().is_empty());
}

#[tokio::test]
async fn devices_list_shows_client_metadata_and_skips_foreign_records() {
    let families = VecStore::default();
    let hybrid = HybridManager::<User>::builder(
        families.clone(),
        Plain,
        RevocationList::new(VecStore::default()),
    )
    .secret(SECRET)
    .build()
    .unwrap();
    // A plain stateful session of the same user in the same store.
    let stateful = SessionManager::<u32>::stateful(families.clone())
        .build()
        .unwrap();
    stateful.create(Some("ivy"), 1).await.unwrap();

    let phone = hybrid
        .login_with(
            "ivy",
            &alice(),
            ClientInfo::new()
                .with_name("phone")
                .with_user_agent("Phone/2")
                .with_address("198.51.100.1"),
        )
        .await
        .unwrap();
    let listed = hybrid.families("ivy").await.unwrap();
    assert_eq!(listed.len(), 1, "the stateful session is not a family");
    let f = &listed[0];
    assert_eq!(f.id, phone.family());
    assert_eq!(
        (f.client.name(), f.client.user_agent(), f.client.address()),
        (Some("phone"), Some("Phone/2"), Some("198.51.100.1"))
    );
    assert_eq!(f.generation, 1);
    assert_eq!(f.last_used, f.created_at);
    tokio::time::sleep(Duration::from_millis(5)).await;
    hybrid.refresh(phone.refresh_token()).await.unwrap();
    let f = &hybrid.families("ivy").await.unwrap()[0];
    assert_eq!(f.generation, 2);
    assert!(f.last_used > f.created_at);
}

#[tokio::test]
async fn tampered_or_forged_tokens_are_invalid_and_end_nothing() {
    let s = setup();
    let p = s.hybrid.login("jay", &alice()).await.unwrap();
    let token = p.refresh_token();
    // Every single-character change of the token.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in 0..token.len() {
        let c = token.as_bytes()[i];
        let sub = alphabet.bytes().find(|b| *b != c).unwrap();
        let mut t = token.as_bytes().to_vec();
        t[i] = sub;
        let t = String::from_utf8(t).unwrap();
        let r = rejection(s.hybrid.refresh(&t).await);
        assert!(
            matches!(
                r,
                RefreshRejection::Invalid | RefreshRejection::Malformed | RefreshRejection::Ended
            ),
            "position {i}: {r:?}"
        );
        assert!(s.hybrid.logout(&t).await.is_err() || !s.hybrid.logout(&t).await.unwrap());
    }
    // A server with another secret cannot use (or end) the family.
    let forger = HybridManager::<User>::builder(
        s.families.clone(),
        Plain,
        RevocationList::new(s.revocations.clone()),
    )
    .secret(b"another secret, also 32 bytes long")
    .build()
    .unwrap();
    assert_eq!(
        rejection(forger.refresh(token).await),
        RefreshRejection::Invalid
    );
    assert!(matches!(
        forger.logout(token).await,
        Err(RefreshError::Rejected(RefreshRejection::Invalid))
    ));
    assert!(s.hybrid.stats().invalid > 0);
    assert!(
        live(&s.hybrid, p.access_token()).await,
        "tampering ended the family"
    );
    s.hybrid
        .refresh(token)
        .await
        .expect("the untampered token still works");
}

#[tokio::test]
async fn secret_rotation_keeps_families_alive() {
    let s = setup();
    let p = s.hybrid.login("kim", &alice()).await.unwrap();
    let rotated = HybridManager::<User>::builder(
        s.families.clone(),
        Plain,
        RevocationList::new(s.revocations.clone()),
    )
    .secret(b"the new secret, at least 32 bytes.")
    .previous_secret(SECRET)
    .build()
    .unwrap();
    let p2 = rotated.refresh(p.refresh_token()).await.unwrap();
    // The new token is signed with the new secret only.
    assert_eq!(
        rejection(s.hybrid.refresh(p2.refresh_token()).await),
        RefreshRejection::Invalid
    );
    rotated.refresh(p2.refresh_token()).await.unwrap();
}

#[tokio::test]
async fn access_tokens_of_other_kinds_are_refused() {
    let revocations = RevocationList::new(VecStore::default());
    let hybrid = HybridManager::<User>::builder(VecStore::default(), Plain, revocations.clone())
        .secret(SECRET)
        .build()
        .unwrap();
    // A stateless session token signed with the same codec.
    let stateless = SessionManager::<User>::stateless(Plain, revocations)
        .build()
        .unwrap();
    let session = stateless.create(Some("lee"), alice()).await.unwrap();
    assert!(matches!(
        hybrid.verify(session.ticket().as_str()).await,
        Err(Error::InvalidToken(TokenRejection::Malformed))
    ));
    assert!(matches!(
        hybrid.verify("garbage").await,
        Err(Error::InvalidToken(_))
    ));
}

#[tokio::test]
async fn configuration_is_checked() {
    let b = || {
        HybridManager::<User>::builder(
            VecStore::default(),
            Plain,
            RevocationList::new(VecStore::default()),
        )
    };
    assert!(matches!(b().build(), Err(Error::Config(_))), "no secret");
    assert!(matches!(
        b().secret(b"short").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        b().secret(SECRET).previous_secret(b"short").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        b().secret(SECRET)
            .access_ttl(Duration::from_millis(500))
            .build(),
        Err(Error::Config(_))
    ));
    assert!(
        matches!(
            b().secret(SECRET)
                .absolute_timeout(Duration::from_secs(60))
                .build(),
            Err(Error::Config(_))
        ),
        "a family shorter than one access token"
    );
    assert!(b().secret(SECRET).build().is_ok());
}

#[tokio::test]
async fn too_much_data_is_refused_before_anything_is_stored() {
    let families = VecStore::default();
    let hybrid = HybridManager::<String>::builder(
        families.clone(),
        Plain,
        RevocationList::new(VecStore::default()),
    )
    .secret(SECRET)
    .max_data(100)
    .build()
    .unwrap();
    assert!(matches!(
        hybrid.login("max", &"x".repeat(200)).await,
        Err(Error::TooLarge { .. })
    ));
    assert!(families.list_subject("max").await.unwrap().is_empty());
    assert!(hybrid.login("max", &"x".repeat(50)).await.is_ok());
}

#[tokio::test]
async fn families_expire_when_idle_and_at_the_absolute_timeout() {
    let s = setup_with(|b| b.idle_timeout(Duration::from_millis(300)));
    let p = s.hybrid.login("ned", &alice()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        rejection(s.hybrid.refresh(p.refresh_token()).await),
        RefreshRejection::Ended
    );

    // Tokens carry whole seconds, so the absolute timeout is 2 s: a refresh
    // 200 ms after login is always inside it.
    let s = setup_with(|b| {
        b.idle_timeout(Duration::from_secs(60))
            .access_ttl(Duration::from_secs(1))
            .absolute_timeout(Duration::from_secs(2))
    });
    let after = Timestamp::now() + Duration::from_secs(2);
    let p = s.hybrid.login("ned", &alice()).await.unwrap();
    // Neither token outlives the family's absolute deadline.
    assert!(p.access_expires_at() <= after);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let p = s.hybrid.refresh(p.refresh_token()).await.unwrap();
    let deadline = Timestamp::now() + Duration::from_millis(1800);
    assert!(p.refresh_expires_at() <= deadline && p.access_expires_at() <= deadline);
    tokio::time::sleep(
        p.refresh_expires_at().remaining_from(Timestamp::now()) + Duration::from_millis(50),
    )
    .await;
    assert_eq!(
        rejection(s.hybrid.refresh(p.refresh_token()).await),
        RefreshRejection::Ended
    );
}

#[tokio::test]
async fn access_tokens_expire_after_their_lifetime() {
    let s = setup_with(|b| b.access_ttl(Duration::from_secs(1)));
    let p = s.hybrid.login("ola", &alice()).await.unwrap();
    let wait = p.access_expires_at().remaining_from(Timestamp::now()) + Duration::from_millis(20);
    tokio::time::sleep(wait).await;
    assert!(matches!(
        s.hybrid.verify(p.access_token()).await,
        Err(Error::InvalidToken(TokenRejection::Expired))
    ));
    // The family lives on: a refresh gives a fresh access token.
    let p2 = s.hybrid.refresh(p.refresh_token()).await.unwrap();
    assert!(live(&s.hybrid, p2.access_token()).await);
}

#[tokio::test]
async fn a_store_that_is_down_gets_a_transient_error_and_no_token() {
    let s = setup();
    s.families.set(|f| f.create = true);
    let e = s.hybrid.login("pam", &alice()).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(
        s.families
            .inner
            .list_subject("pam")
            .await
            .unwrap()
            .is_empty()
    );
    s.families.set(|f| f.create = false);

    let p = s.hybrid.login("pam", &alice()).await.unwrap();
    s.families.set(|f| f.save = true);
    let e = s.hybrid.refresh(p.refresh_token()).await.unwrap_err();
    assert!(e.is_transient() && e.rejection().is_none(), "{e:?}");
    s.families.set(|f| f.save = false);
    // Nothing was rotated: the same token still works, once.
    let p2 = s.hybrid.refresh(p.refresh_token()).await.unwrap();
    assert_eq!(p2.generation(), 2);

    s.families.set(|f| f.load = true);
    assert!(
        s.hybrid
            .refresh(p2.refresh_token())
            .await
            .unwrap_err()
            .is_transient()
    );
    assert!(
        s.hybrid
            .logout(p2.refresh_token())
            .await
            .unwrap_err()
            .is_transient()
    );
    assert!(
        s.hybrid.families("pam").await.is_ok(),
        "listing does not load"
    );
    s.families.set(|f| f.load = false);

    // The revocation list down: verification and refresh are transient
    // errors, never a pass.
    s.revocations.set(|f| f.load = true);
    let e = s.hybrid.verify(p2.access_token()).await.unwrap_err();
    assert!(e.is_transient() && !e.is_invalid_ticket(), "{e:?}");
    assert!(
        s.hybrid
            .refresh(p2.refresh_token())
            .await
            .unwrap_err()
            .is_transient()
    );
    s.revocations.set(|f| f.load = false);
    s.hybrid
        .refresh(p2.refresh_token())
        .await
        .expect("works again");
}

#[tokio::test]
async fn a_lost_acknowledgement_then_a_retry_is_reuse_unless_the_grace_window_covers_it() {
    for grace in [Duration::ZERO, Duration::from_secs(5)] {
        let s = setup_with(|b| b.reuse_grace(grace));
        let p = s.hybrid.login("quin", &alice()).await.unwrap();
        s.families.set(|f| f.save_lost_ack = true);
        assert!(
            s.hybrid
                .refresh(p.refresh_token())
                .await
                .unwrap_err()
                .is_transient()
        );
        s.families.set(|f| f.save_lost_ack = false);
        let retry = s.hybrid.refresh(p.refresh_token()).await;
        if grace.is_zero() {
            assert_eq!(rejection(retry), RefreshRejection::Reused);
        } else {
            let pair = retry.expect("the grace window absorbs the retry");
            assert_eq!(pair.generation(), 2);
            s.hybrid.refresh(pair.refresh_token()).await.unwrap();
        }
    }
}

#[tokio::test]
async fn an_interrupted_kill_never_lets_the_family_come_back() {
    let s = setup_with(|b| b.access_ttl(Duration::from_secs(1)));
    let p = s.hybrid.login("rae", &alice()).await.unwrap();
    s.families.set(|f| f.delete = true);
    let e = s.hybrid.logout(p.refresh_token()).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(
        !live(&s.hybrid, p.access_token()).await,
        "revoked before the delete"
    );
    s.families.set(|f| f.delete = false);
    // The revocation was extended to the family's own expiry (days, not
    // the access-token lifetime), so the record can never refresh again;
    // the next use refuses it as revoked and removes it.
    let revoked = s
        .revocations
        .inner
        .load(&p.family().token_id())
        .await
        .unwrap()
        .expect("a revocation record");
    assert!(revoked.expires_at > Timestamp::now() + Duration::from_secs(24 * 3600));
    assert_eq!(
        rejection(s.hybrid.refresh(p.refresh_token()).await),
        RefreshRejection::Revoked
    );
    assert!(
        s.families
            .inner
            .list_subject("rae")
            .await
            .unwrap()
            .is_empty(),
        "the family record was removed"
    );
    assert_eq!(
        rejection(s.hybrid.refresh(p.refresh_token()).await),
        RefreshRejection::Ended
    );
}
