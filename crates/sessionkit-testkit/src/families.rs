//! Hybrid sessions on the store under test: refresh-token families
//! ([`HybridManager`]) rotated, replayed, raced, tampered with and ended.
//!
//! A family is a record in the store; a refresh rotates it with a
//! compare-and-swap `save`, reuse detection and "log out everywhere" delete
//! it, the devices page lists it by subject. So whether the guarantees hold
//! depends on the store: every function here runs a [`HybridManager`] whose
//! families *and* revocation list live in the store under test (sharing one
//! store is supported: their records never collide), and panics with a
//! message naming the broken guarantee:
//!
//! - rotation works and every refresh token is single use;
//! - an authentic, already-used refresh token ends the family and every
//!   access token ever issued in it, not only the last one;
//! - of 2 (in [`TRIALS`] trials) or 10 (in [`TEN_TRIALS`] trials)
//!   concurrent refreshes with one token, started together behind a barrier
//!   on a multi-threaded runtime, exactly one wins, never two, and no
//!   refresh fails with a server error; the losers detect reuse and the
//!   whole family is dead afterwards (the reuse grace window, when on, gives
//!   every duplicate the winner's refresh token instead);
//! - a tampered refresh token (a flipped MAC byte, another generation,
//!   another family) is refused as not authentic and ends nothing;
//! - logout, revoking one family, "log out everywhere" and the devices list.
//!
//! Access tokens are signed by [`InsecureTestCodec`], an unsigned codec for
//! tests only, so that the kit does not depend on a JWT library.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! use std::sync::Arc;
//! use sessionkit_core::testing::VecStore;
//!
//! sessionkit_testkit::families::refresh_reuse_ends_every_token(Arc::new(VecStore::default())).await;
//! # }
//! ```

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit_core::{
    ClientInfo, Error, HybridManager, PayloadCodec, Record, RefreshError, RefreshRejection, Result,
    RevocationList, SessionId, SessionStore, Timestamp, TokenClaims, TokenCodec, TokenPair,
    TokenRejection, async_trait,
};
use tokio::sync::Barrier;

use crate::cases::unique_subject;
use crate::interleavings::{Call, GatedStore};

/// Trials of 2 concurrent refreshes in [`refresh_race_of_two_one_winner`].
pub const TRIALS: usize = 200;
/// Trials of 10 concurrent refreshes in [`refresh_race_of_ten_one_winner`].
pub const TEN_TRIALS: usize = 50;
/// The secret the kit's managers authenticate refresh tokens with.
const SECRET: &[u8] = b"sessionkit-testkit refresh secret, tests only";
/// Bound on one refresh race: a hung store fails the test.
const STEP: Duration = Duration::from_secs(30);

/// The application data the kit's families carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// A display name.
    pub name: String,
}

fn profile() -> Profile {
    Profile {
        name: "Tess Kit".into(),
    }
}

/// **For tests only: tokens are not signed, anyone can forge them.** A
/// [`TokenCodec`] that writes the claims as hex-encoded JSON and checks
/// only their expiry, so that the kit can exercise [`HybridManager`]
/// without a JWT library. Applications use `sessionkit-jwt`'s `JwtCodec`.
///
/// ```
/// use sessionkit_core::{SessionId, Timestamp, TokenClaims, TokenCodec};
/// use sessionkit_testkit::families::InsecureTestCodec;
///
/// let now = Timestamp::now();
/// let claims = TokenClaims {
///     jti: SessionId::generate(),
///     subject: Some("alice".into()),
///     issued_at: now,
///     expires_at: now + std::time::Duration::from_secs(60),
///     not_before: None,
///     session_started_at: now,
///     schema: 1,
///     data: Default::default(),
/// };
/// let token = InsecureTestCodec.encode(&claims).unwrap();
/// assert_eq!(InsecureTestCodec.decode(&token).unwrap(), claims);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InsecureTestCodec;

#[derive(Serialize, Deserialize)]
struct Wire<V> {
    jti: SessionId,
    sub: Option<String>,
    iat: Timestamp,
    exp: Timestamp,
    nbf: Option<Timestamp>,
    started: Timestamp,
    schema: u32,
    data: V,
}

impl TokenCodec for InsecureTestCodec {
    fn encode(&self, c: &TokenClaims) -> sessionkit_core::Result<String> {
        let json = PayloadCodec::Json.encode(&Wire {
            jti: c.jti,
            sub: c.subject.clone(),
            iat: c.issued_at,
            exp: c.expires_at,
            nbf: c.not_before,
            started: c.session_started_at,
            schema: c.schema,
            data: &c.data,
        })?;
        Ok(json.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn decode(&self, token: &str) -> sessionkit_core::Result<TokenClaims> {
        let malformed = || Error::InvalidToken(TokenRejection::Malformed);
        if !token.len().is_multiple_of(2) || token.len() > 64 * 1024 {
            return Err(malformed());
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| {
                token
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(malformed)?;
        let w: Wire<_> = PayloadCodec::Json.decode(&bytes).map_err(|_| malformed())?;
        if w.exp <= Timestamp::now() {
            return Err(Error::InvalidToken(TokenRejection::Expired));
        }
        Ok(TokenClaims {
            jti: w.jti,
            subject: w.sub,
            issued_at: w.iat,
            expires_at: w.exp,
            not_before: w.nbf,
            session_started_at: w.started,
            schema: w.schema,
            data: w.data,
        })
    }
}

/// A [`HybridManager`] whose families and revocation list both live in
/// `store`, access tokens signed by [`InsecureTestCodec`], reuse grace
/// window `grace` ([`Duration::ZERO`]: off).
pub fn hybrid(store: Arc<dyn SessionStore>, grace: Duration) -> HybridManager<Profile> {
    HybridManager::builder_shared(
        Arc::clone(&store),
        Arc::new(InsecureTestCodec),
        RevocationList::from_shared(store),
    )
    .secret(SECRET)
    .reuse_grace(grace)
    .build()
    .expect("a hybrid manager with a valid configuration")
}

async fn login(h: &HybridManager<Profile>, subject: &str) -> TokenPair {
    match h.login(subject, &profile()).await {
        Ok(pair) => pair,
        Err(e) => panic!("login failed: {e:?}"),
    }
}

async fn refreshed(h: &HybridManager<Profile>, token: &str) -> TokenPair {
    match h.refresh(token).await {
        Ok(pair) => pair,
        Err(e) => panic!("a refresh with the current refresh token failed: {e:?}"),
    }
}

/// The rejection of a refresh that must be refused; panics on a success
/// and on a server error.
async fn refused(h: &HybridManager<Profile>, token: &str, what: &str) -> RefreshRejection {
    match h.refresh(token).await {
        Ok(pair) => panic!("{what}: the refresh succeeded ({pair:?})"),
        Err(RefreshError::Rejected(r)) => r,
        Err(e) => panic!("{what}: a server error instead of a rejection: {e:?}"),
    }
}

async fn access_works(h: &HybridManager<Profile>, token: &str) -> bool {
    match h.verify(token).await {
        Ok(claims) => {
            assert_eq!(claims.data, profile(), "the access token's data");
            true
        }
        Err(e) if e.is_invalid_ticket() => false,
        Err(e) => panic!("verifying an access token failed with a server error: {e:?}"),
    }
}

async fn assert_all_dead(h: &HybridManager<Profile>, access: &[&str], refresh: &[&str], why: &str) {
    for (i, token) in access.iter().enumerate() {
        assert!(
            !access_works(h, token).await,
            "{why}: access token #{i} of the ended family still works"
        );
    }
    for (i, token) in refresh.iter().enumerate() {
        let r = refused(h, token, why).await;
        assert!(
            matches!(
                r,
                RefreshRejection::Ended | RefreshRejection::Revoked | RefreshRejection::Reused
            ),
            "{why}: refresh token #{i} of the ended family: unexpected rejection {r:?}"
        );
    }
}

// ------------------------------------------------- base64url (tampering)

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A refresh token's bytes: format (1), family (16), generation (8), MAC (32).
fn tamper(token: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut raw = b64_decode(token);
    assert_eq!(raw.len(), 57, "a refresh token is 57 bytes");
    change(&mut raw);
    b64_encode(&raw)
}

fn with_generation(token: &str, generation: u64) -> String {
    tamper(token, |raw| {
        raw[17..25].copy_from_slice(&generation.to_be_bytes())
    })
}

/// A store wrapper that yields to the scheduler a random number of times
/// (0 to 2) before each call, so that concurrent refreshes interleave even
/// on a store that answers without ever waiting (a store in memory);
/// networked stores interleave by themselves.
struct Jitter(Arc<dyn SessionStore>);

impl Jitter {
    async fn shuffle(&self) {
        for _ in 0..SessionId::generate().to_bytes()[0] % 3 {
            tokio::task::yield_now().await;
        }
    }
}

#[async_trait]
impl SessionStore for Jitter {
    async fn create(&self, record: &Record) -> Result<()> {
        self.shuffle().await;
        self.0.create(record).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.shuffle().await;
        self.0.load(id).await
    }
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        self.shuffle().await;
        self.0.load_fresh(id).await
    }
    async fn save(&self, record: &Record) -> Result<u64> {
        self.shuffle().await;
        self.0.save(record).await
    }
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        self.shuffle().await;
        self.0.touch(id, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.shuffle().await;
        self.0.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        self.shuffle().await;
        self.0.compare_and_delete(id, version).await
    }
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.shuffle().await;
        self.0.list_subject(subject).await
    }
    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        self.shuffle().await;
        self.0.delete_subject(subject).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.0.delete_expired().await
    }
}

// ------------------------------------------------------------------ cases

/// Login, then two refreshes: each gives a new refresh token of the next
/// generation and a working access token; the devices list follows.
pub async fn refresh_rotates_single_use(store: Arc<dyn SessionStore>) {
    let h = hybrid(store, Duration::ZERO);
    let subject = unique_subject("fam-rotate");
    let first = login(&h, &subject).await;
    assert_eq!(first.generation(), 1);
    let claims = h.verify(first.access_token()).await.expect("verify");
    assert_eq!(claims.subject, subject);
    assert_eq!(claims.family, first.family());
    let second = refreshed(&h, first.refresh_token()).await;
    assert_eq!(second.generation(), 2);
    assert_eq!(second.family(), first.family());
    assert_ne!(second.refresh_token(), first.refresh_token());
    assert!(access_works(&h, second.access_token()).await);
    let third = refreshed(&h, second.refresh_token()).await;
    assert_eq!(third.generation(), 3);
    let listed = h.families(&subject).await.expect("families");
    assert_eq!(listed.len(), 1, "one login is one family");
    assert_eq!(listed[0].generation, 3);
    assert_eq!(listed[0].id, first.family());
}

/// An authentic refresh token of an older generation ends the family: the
/// replay is `Reused`, and afterwards *every* access token issued in the
/// family (not only the last) and every refresh token are refused.
pub async fn refresh_reuse_ends_every_token(store: Arc<dyn SessionStore>) {
    let h = hybrid(store, Duration::ZERO);
    let subject = unique_subject("fam-reuse");
    let mut pairs = vec![login(&h, &subject).await];
    for _ in 0..3 {
        let next = refreshed(&h, pairs[pairs.len() - 1].refresh_token()).await;
        pairs.push(next);
    }
    for p in &pairs {
        assert!(
            access_works(&h, p.access_token()).await,
            "before the replay"
        );
    }
    let r = refused(&h, pairs[1].refresh_token(), "replay of generation 2").await;
    assert_eq!(r, RefreshRejection::Reused, "a replayed refresh token");
    let access: Vec<&str> = pairs.iter().map(TokenPair::access_token).collect();
    let refresh: Vec<&str> = pairs.iter().map(TokenPair::refresh_token).collect();
    assert_all_dead(&h, &access, &refresh, "after reuse detection").await;
    assert!(
        h.families(&subject).await.expect("families").is_empty(),
        "the ended family is still listed"
    );
    assert_eq!(h.stats().reuse_detected, 1);
}

/// Tampered refresh tokens (a flipped MAC byte, another generation with the
/// old MAC, another family's ID) are refused as not authentic, and neither
/// the family nor any other is ended: the current refresh token still works
/// afterwards.
pub async fn refresh_tampered_token_ends_nothing(store: Arc<dyn SessionStore>) {
    let h = hybrid(store, Duration::ZERO);
    let subject = unique_subject("fam-tamper");
    let victim_subject = unique_subject("fam-victim");
    let first = login(&h, &subject).await;
    let current = refreshed(&h, first.refresh_token()).await;
    let victim = login(&h, &victim_subject).await;
    let tampered = [
        (
            "flipped MAC byte (current)",
            tamper(current.refresh_token(), |r| r[40] ^= 1),
        ),
        (
            "flipped MAC byte (old)",
            tamper(first.refresh_token(), |r| r[56] ^= 0x80),
        ),
        (
            "old generation, current MAC",
            with_generation(current.refresh_token(), 1),
        ),
        (
            "next generation, current MAC",
            with_generation(current.refresh_token(), 3),
        ),
        (
            "huge generation",
            with_generation(current.refresh_token(), u64::MAX),
        ),
        (
            "another family's ID",
            tamper(current.refresh_token(), |r| {
                let other = b64_decode(victim.refresh_token());
                r[1..17].copy_from_slice(&other[1..17]);
            }),
        ),
        (
            "an old token of another family's ID",
            tamper(first.refresh_token(), |r| {
                let other = b64_decode(victim.refresh_token());
                r[1..17].copy_from_slice(&other[1..17]);
            }),
        ),
    ];
    for (what, token) in &tampered {
        assert_eq!(token.len(), first.refresh_token().len());
        let r = refused(&h, token, what).await;
        assert_eq!(r, RefreshRejection::Invalid, "{what}");
        match h.logout(token).await {
            Err(RefreshError::Rejected(RefreshRejection::Invalid)) => {}
            other => panic!("logout with a tampered token ({what}): {other:?}"),
        }
    }
    let unknown = tamper(current.refresh_token(), |r| r[5] ^= 0x10);
    assert_eq!(
        refused(&h, &unknown, "unknown family").await,
        RefreshRejection::Ended
    );
    for garbage in [
        "",
        "garbage",
        &"A".repeat(76),
        &format!("{}x", current.refresh_token()),
    ] {
        assert_eq!(
            refused(&h, garbage, "garbage").await,
            RefreshRejection::Malformed,
            "{garbage:?}"
        );
    }
    assert!(
        access_works(&h, current.access_token()).await,
        "tampering ended the family"
    );
    assert!(
        access_works(&h, victim.access_token()).await,
        "tampering ended another family"
    );
    refreshed(&h, current.refresh_token()).await;
    refreshed(&h, victim.refresh_token()).await;
}

/// One refresh race: `n` tasks refresh `token` at once. Returns the
/// successes and the rejections; panics on any server error.
async fn race(
    h: &HybridManager<Profile>,
    token: &str,
    n: usize,
) -> (Vec<TokenPair>, Vec<RefreshRejection>) {
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (h, barrier, token) = (h.clone(), Arc::clone(&barrier), token.to_owned());
            tokio::spawn(async move {
                barrier.wait().await;
                h.refresh(&token).await
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for task in tasks {
        match tokio::time::timeout(STEP, task).await {
            Ok(Ok(Ok(pair))) => won.push(pair),
            Ok(Ok(Err(RefreshError::Rejected(r)))) => lost.push(r),
            Ok(Ok(Err(e))) => panic!("a concurrent refresh failed with a server error: {e:?}"),
            Ok(Err(e)) => panic!("a refresh task panicked: {e}"),
            Err(_) => panic!("a concurrent refresh hung"),
        }
    }
    (won, lost)
}

/// `trials` trials of `n` concurrent refreshes with one token (grace window
/// off): exactly one wins, every loser is refused (at least one as reuse),
/// and afterwards the family is dead: every access token, the winner's
/// too, and every refresh token.
async fn concurrent_refreshes(store: Arc<dyn SessionStore>, n: usize, trials: usize) {
    let h = hybrid(Arc::new(Jitter(store)), Duration::ZERO);
    for trial in 0..trials {
        let subject = unique_subject("fam-race");
        let first = login(&h, &subject).await;
        let (won, lost) = race(&h, first.refresh_token(), n).await;
        assert!(
            won.len() <= 1,
            "trial {trial}: {} of {n} concurrent refreshes with one token won",
            won.len()
        );
        assert_eq!(won.len(), 1, "trial {trial}: no concurrent refresh won");
        assert!(
            lost.iter().all(|r| matches!(
                r,
                RefreshRejection::Reused | RefreshRejection::Ended | RefreshRejection::Revoked
            )),
            "trial {trial}: unexpected rejections {lost:?}"
        );
        assert!(
            lost.contains(&RefreshRejection::Reused),
            "trial {trial}: the duplicate refresh was not detected as reuse: {lost:?}"
        );
        let winner = &won[0];
        assert_all_dead(
            &h,
            &[first.access_token(), winner.access_token()],
            &[winner.refresh_token(), first.refresh_token()],
            &format!("trial {trial} after reuse was detected"),
        )
        .await;
    }
}

/// The worst order, forced: refresh A has loaded the family and is about
/// to write its rotation when refresh B, with the same token, rotates
/// first. A's compare-and-swap must fail, and A must then see its token as
/// reused and end the family (B's new tokens included). The same with a
/// logout in place of B: A must not rotate the ended family back to life.
pub async fn refresh_race_forced_order(store: Arc<dyn SessionStore>) {
    let b = hybrid(Arc::clone(&store), Duration::ZERO);
    for then in ["refresh", "logout"] {
        let gated = Arc::new(GatedStore::new(Arc::clone(&store)));
        let a = hybrid(Arc::clone(&gated) as Arc<dyn SessionStore>, Duration::ZERO);
        let subject = unique_subject("fam-forced");
        let first = login(&b, &subject).await;
        let gate = gated.arm(Call::Save);
        let task = tokio::spawn({
            let token = first.refresh_token().to_owned();
            async move { a.refresh(&token).await }
        });
        let stopped = gate.reached().await;
        let winner = if then == "refresh" {
            Some(refreshed(&b, first.refresh_token()).await)
        } else {
            assert!(b.logout(first.refresh_token()).await.expect("logout"));
            None
        };
        stopped.release();
        let a_result = tokio::time::timeout(STEP, task)
            .await
            .expect("refresh A finished")
            .expect("refresh A did not panic");
        match (&a_result, then) {
            (Err(RefreshError::Rejected(RefreshRejection::Reused)), "refresh") => {}
            (Err(RefreshError::Rejected(RefreshRejection::Ended)), "logout") => {}
            _ => panic!(
                "a refresh that lost its compare-and-swap to a concurrent {then}: {a_result:?}"
            ),
        }
        let mut access = vec![first.access_token()];
        let mut refresh = vec![first.refresh_token()];
        if let Some(w) = &winner {
            access.push(w.access_token());
            refresh.push(w.refresh_token());
        }
        assert_all_dead(
            &b,
            &access,
            &refresh,
            &format!("after a refresh lost to a {then}"),
        )
        .await;
    }
}

/// [`TRIALS`] trials of 2 concurrent refreshes with one token: never two
/// live winners, never a server error, and the detected reuse ends every
/// token of the family.
pub async fn refresh_race_of_two_one_winner(store: Arc<dyn SessionStore>) {
    concurrent_refreshes(store, 2, TRIALS).await;
}

/// [`TEN_TRIALS`] trials of 10 concurrent refreshes with one token; as
/// [`refresh_race_of_two_one_winner`].
pub async fn refresh_race_of_ten_one_winner(store: Arc<dyn SessionStore>) {
    concurrent_refreshes(store, 10, TEN_TRIALS).await;
}

/// With the reuse grace window on, concurrent refreshes with one token all
/// succeed with the *same* new refresh token (one rotation, never a fork):
/// afterwards that token works once, and the family stays alive.
pub async fn refresh_grace_window_same_token(store: Arc<dyn SessionStore>) {
    let h = hybrid(Arc::new(Jitter(store)), Duration::from_secs(30));
    for trial in 0..TEN_TRIALS {
        let subject = unique_subject("fam-grace");
        let first = login(&h, &subject).await;
        let (won, lost) = race(&h, first.refresh_token(), 4).await;
        assert!(
            lost.is_empty(),
            "trial {trial}: duplicates refused within the grace window: {lost:?}"
        );
        let tokens: HashSet<&str> = won.iter().map(TokenPair::refresh_token).collect();
        assert_eq!(
            tokens.len(),
            1,
            "trial {trial}: the family forked into {} refresh tokens",
            tokens.len()
        );
        assert!(
            won.iter().all(|p| p.generation() == 2),
            "trial {trial}: generations"
        );
        for p in &won {
            assert!(
                access_works(&h, p.access_token()).await,
                "trial {trial}: access token"
            );
        }
        let next = refreshed(&h, won[0].refresh_token()).await;
        assert_eq!(next.generation(), 3);
        // Two rotations back is outside the window whatever its length.
        assert_eq!(
            refused(&h, first.refresh_token(), "two generations back").await,
            RefreshRejection::Reused,
            "trial {trial}"
        );
    }
}

/// Ending one family (revoke_family, logout) ends every access token ever
/// issued in it, across several generations; revoke_family checks the
/// subject; logout twice is fine.
pub async fn family_end_kills_all_access_tokens(store: Arc<dyn SessionStore>) {
    let h = hybrid(store, Duration::ZERO);
    let subject = unique_subject("fam-kill");
    for how in ["revoke_family", "logout"] {
        let mut pairs = vec![login(&h, &subject).await];
        for _ in 0..4 {
            let next = refreshed(&h, pairs[pairs.len() - 1].refresh_token()).await;
            pairs.push(next);
        }
        let last = pairs[pairs.len() - 1].clone();
        let family = last.family();
        if how == "revoke_family" {
            assert!(
                !h.revoke_family("someone-else", &family)
                    .await
                    .expect("revoke"),
                "revoke_family ended a family of another subject"
            );
            assert!(access_works(&h, last.access_token()).await);
            assert!(h.revoke_family(&subject, &family).await.expect("revoke"));
            assert!(
                !h.revoke_family(&subject, &family)
                    .await
                    .expect("revoke again")
            );
        } else {
            assert!(h.logout(last.refresh_token()).await.expect("logout"));
            assert!(!h.logout(last.refresh_token()).await.expect("logout again"));
        }
        let access: Vec<&str> = pairs.iter().map(TokenPair::access_token).collect();
        assert_all_dead(&h, &access, &[last.refresh_token()], how).await;
    }
}

/// "Log out everywhere" ends every family of the subject and every access
/// token issued in them, leaves other subjects alone, and a login after it
/// works.
pub async fn family_logout_everywhere(store: Arc<dyn SessionStore>) {
    let h = hybrid(store, Duration::ZERO);
    let subject = unique_subject("fam-all");
    let other = unique_subject("fam-other");
    let mut mine = Vec::new();
    for _ in 0..3 {
        let p = login(&h, &subject).await;
        mine.push(refreshed(&h, p.refresh_token()).await);
        mine.push(p);
    }
    let theirs = login(&h, &other).await;
    assert_eq!(
        h.logout_everywhere(&subject)
            .await
            .expect("logout everywhere"),
        3
    );
    let after = Timestamp::now();
    let access: Vec<&str> = mine.iter().map(TokenPair::access_token).collect();
    let current: Vec<&str> = mine
        .iter()
        .step_by(2)
        .map(TokenPair::refresh_token)
        .collect();
    assert_all_dead(&h, &access, &current, "after log out everywhere").await;
    assert!(h.families(&subject).await.expect("families").is_empty());
    assert!(
        access_works(&h, theirs.access_token()).await,
        "another subject was logged out"
    );
    refreshed(&h, theirs.refresh_token()).await;
    // A login in a later millisecond is a new, live family.
    while Timestamp::now() <= after {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let again = login(&h, &subject).await;
    assert!(
        access_works(&h, again.access_token()).await,
        "a login after log out everywhere"
    );
    refreshed(&h, again.refresh_token()).await;
}

/// The devices list: one entry per live family, oldest first, with the
/// client metadata given at login, the generation and the last use; a
/// revoked family disappears from it.
pub async fn family_devices_list(store: Arc<dyn SessionStore>) {
    let h = hybrid(store, Duration::ZERO);
    let subject = unique_subject("fam-devices");
    let phone = h
        .login_with(
            &subject,
            &profile(),
            ClientInfo::new()
                .with_name("phone")
                .with_user_agent("Phone/1"),
        )
        .await
        .expect("login");
    tokio::time::sleep(Duration::from_millis(3)).await;
    let laptop = h
        .login_with(
            &subject,
            &profile(),
            ClientInfo::new()
                .with_name("laptop")
                .with_address("192.0.2.7"),
        )
        .await
        .expect("login");
    let laptop2 = refreshed(&h, laptop.refresh_token()).await;
    let listed = h.families(&subject).await.expect("families");
    assert_eq!(listed.len(), 2, "two logins, two families");
    assert_eq!(listed[0].id, phone.family());
    assert_eq!(listed[0].client.name(), Some("phone"));
    assert_eq!(listed[0].client.user_agent(), Some("Phone/1"));
    assert_eq!(listed[0].generation, 1);
    assert_eq!(listed[1].id, laptop.family());
    assert_eq!(listed[1].client.address(), Some("192.0.2.7"));
    assert_eq!(listed[1].generation, 2);
    assert!(listed[1].last_used >= listed[1].created_at);
    assert!(
        listed
            .iter()
            .all(|f| f.subject == subject && f.expires_at > Timestamp::now())
    );
    let claims = h.verify(laptop2.access_token()).await.expect("verify");
    assert_eq!(
        claims.family, listed[1].id,
        "the current device is recognisable"
    );
    assert!(
        h.revoke_family(&subject, &phone.family())
            .await
            .expect("revoke")
    );
    let listed = h.families(&subject).await.expect("families");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, laptop.family());
}
