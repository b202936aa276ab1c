//! Early invalidation for stateless tokens.
//!
//! A signed token stays valid until it expires, wherever it is presented.
//! To end one sooner, the server has to remember something. The
//! [`RevocationList`] remembers two things, in any [`SessionStore`]
//! (memory, Redis, SQL, or a cached store in front of one of those):
//!
//! - a revoked token ID (`jti`), kept until the token would have expired
//!   anyway (plus the codec's leeway), so the list never grows without bound;
//! - a per-subject *not-before* instant: every token of a session of that
//!   subject that *started* at or before it is rejected ("log out
//!   everywhere"). The session start (`session_started_at`) is kept across
//!   re-issued and rotated tokens, so a token re-signed or rotated after
//!   the logout is rejected too, and a codec refuses start instants in the
//!   future, so no clock a token carries can outlive the logout.
//!
//! Nothing here is JWT-specific: it works with any [`TokenCodec`].
//!
//! [`TokenCodec`]: crate::TokenCodec

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, TokenRejection};
use crate::events::observe;
use crate::id::{ID_BYTES, SessionId};
use crate::record::{Record, validate_subject};
use crate::store::SessionStore;
use crate::timestamp::Timestamp;
use crate::token::TokenClaims;

/// How many compare-and-swap attempts `logout_everywhere` makes.
const CAS_ATTEMPTS: usize = 16;

/// Revoked token IDs and per-subject not-before instants, kept in a store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> sessionkit_core::Result<()> {
/// # use std::time::Duration;
/// # use sessionkit_core::{RevocationList, SessionId, Timestamp};
/// # let store = sessionkit_core::testing::VecStore::default();
/// let revocations = RevocationList::new(store);
/// let jti = SessionId::generate();
/// assert!(!revocations.is_revoked(&jti).await?);
/// revocations.revoke(&jti, Timestamp::now() + Duration::from_secs(600)).await?;
/// assert!(revocations.is_revoked(&jti).await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RevocationList {
    store: Arc<dyn SessionStore>,
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationList").finish_non_exhaustive()
    }
}

impl RevocationList {
    /// A revocation list kept in `store`. Give it a store (or a key prefix,
    /// table) of its own, not the one that holds stateful sessions.
    pub fn new(store: impl SessionStore) -> Self {
        Self {
            store: Arc::new(store),
        }
    }

    /// Same as [`RevocationList::new`], for a store that is already shared.
    pub fn from_shared(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }

    /// Revokes `jti` until `until` (give the token's `exp` plus leeway).
    /// Revoking twice is fine; the later `until` wins.
    pub async fn revoke(&self, jti: &SessionId, until: Timestamp) -> Result<()> {
        let now = Timestamp::now();
        if until <= now {
            return Ok(()); // the token is dead anyway
        }
        for _ in 0..CAS_ATTEMPTS {
            let record = Record::new(*jti, None, Bytes::new(), now, until);
            match observe(
                self.store.backend_name(),
                "create",
                self.store.create(&record),
            )
            .await
            {
                Ok(()) => return Ok(()),
                Err(Error::Conflict) => {}
                Err(e) => return Err(e),
            }
            match observe(self.store.backend_name(), "load", self.store.load(jti)).await? {
                Some(existing) if existing.expires_at >= until => return Ok(()),
                Some(_) => match observe(
                    self.store.backend_name(),
                    "touch",
                    self.store.touch(jti, until),
                )
                .await
                {
                    Ok(()) => return Ok(()),
                    Err(Error::NotFound) => continue,
                    Err(e) => return Err(e),
                },
                None => continue,
            }
        }
        Err(Error::Conflict)
    }

    /// Revokes `jti` until `until` unless it is revoked already: `Ok(true)`
    /// when this call revoked it, `Ok(false)` when it already was. Of
    /// several concurrent calls for one `jti` exactly one returns `true`
    /// (the store's `create` never overwrites a live record): this is what
    /// makes a stateless rotation atomic.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// # use std::time::Duration;
    /// # use sessionkit_core::{RevocationList, SessionId, Timestamp};
    /// # let revocations = RevocationList::new(sessionkit_core::testing::VecStore::default());
    /// let jti = SessionId::generate();
    /// let until = Timestamp::now() + Duration::from_secs(600);
    /// assert!(revocations.revoke_once(&jti, until).await?);
    /// assert!(!revocations.revoke_once(&jti, until).await?);
    /// # Ok(()) }
    /// ```
    pub async fn revoke_once(&self, jti: &SessionId, until: Timestamp) -> Result<bool> {
        let now = Timestamp::now();
        if until <= now {
            // Already dead: nothing to remember, and nobody can win with it.
            return Ok(false);
        }
        let record = Record::new(*jti, None, Bytes::new(), now, until);
        match observe(
            self.store.backend_name(),
            "create",
            self.store.create(&record),
        )
        .await
        {
            Ok(()) => Ok(true),
            Err(Error::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `jti` is currently revoked.
    pub async fn is_revoked(&self, jti: &SessionId) -> Result<bool> {
        Ok(self.read(jti, false).await?.is_some())
    }

    /// A marker, from the store's source of truth when `fresh` (past any
    /// cache in front of it).
    async fn read(&self, key: &SessionId, fresh: bool) -> Result<Option<Record>> {
        let backend = self.store.backend_name();
        if fresh {
            observe(backend, "load_fresh", self.store.load_fresh(key)).await
        } else {
            observe(backend, "load", self.store.load(key)).await
        }
    }

    /// Rejects every token of every session of `subject` that started at or
    /// before `at` (so a login in the same millisecond as the logout is
    /// rejected too), however and whenever its tokens were re-issued or
    /// rotated; the marker is kept until `keep_until` (give the longest
    /// lifetime a session can have). The not-before instant only ever moves
    /// forward.
    pub async fn logout_everywhere(
        &self,
        subject: &str,
        at: Timestamp,
        keep_until: Timestamp,
    ) -> Result<()> {
        validate_subject(subject)?;
        let key = subject_key(subject);
        let now = Timestamp::now();
        for _ in 0..CAS_ATTEMPTS {
            match observe(self.store.backend_name(), "load", self.store.load(&key)).await? {
                None => {
                    let record = Record::new(key, None, encode_instant(at), now, keep_until);
                    match observe(
                        self.store.backend_name(),
                        "create",
                        self.store.create(&record),
                    )
                    .await
                    {
                        Ok(()) => return Ok(()),
                        Err(Error::Conflict) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some(existing) => {
                    let current = decode_instant(&existing.payload)?;
                    if current >= at && existing.expires_at >= keep_until {
                        return Ok(());
                    }
                    let mut next = existing.clone();
                    next.payload = encode_instant(current.max(at));
                    next.expires_at = existing.expires_at.max(keep_until);
                    match observe(self.store.backend_name(), "save", self.store.save(&next)).await {
                        Ok(_) => return Ok(()),
                        Err(Error::Conflict | Error::NotFound) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(Error::Conflict)
    }

    /// The subject's not-before instant, if one is set.
    pub async fn not_before(&self, subject: &str) -> Result<Option<Timestamp>> {
        self.not_before_from(subject, false).await
    }

    async fn not_before_from(&self, subject: &str, fresh: bool) -> Result<Option<Timestamp>> {
        validate_subject(subject)?;
        match self.read(&subject_key(subject), fresh).await? {
            Some(record) => Ok(Some(decode_instant(&record.payload)?)),
            None => Ok(None),
        }
    }

    /// Checks decoded claims: [`Error::Revoked`] when the `jti` is revoked,
    /// [`Error::InvalidToken`] with [`TokenRejection::IssuedBeforeLogout`]
    /// when the token's session started at or before its subject's
    /// not-before instant. The two lookups run concurrently.
    pub async fn check(&self, claims: &TokenClaims) -> Result<()> {
        self.check_from(
            &claims.jti,
            claims.subject.as_deref(),
            claims.session_started_at,
            false,
        )
        .await
    }

    /// [`RevocationList::check`] answered by the store's source of truth,
    /// past any cache in front of it: for security decisions that must see
    /// a logout made on another instance a moment ago.
    pub async fn check_fresh(&self, claims: &TokenClaims) -> Result<()> {
        self.check_from(
            &claims.jti,
            claims.subject.as_deref(),
            claims.session_started_at,
            true,
        )
        .await
    }

    /// [`RevocationList::check`] for a session known by its token ID,
    /// subject and start instant.
    pub async fn check_session(
        &self,
        jti: &SessionId,
        subject: Option<&str>,
        started_at: Timestamp,
    ) -> Result<()> {
        self.check_from(jti, subject, started_at, false).await
    }

    pub(crate) async fn check_from(
        &self,
        jti: &SessionId,
        subject: Option<&str>,
        started_at: Timestamp,
        fresh: bool,
    ) -> Result<()> {
        let not_before = async {
            match subject {
                Some(subject) => self.not_before_from(subject, fresh).await,
                None => Ok(None),
            }
        };
        let revoked = async { Ok::<_, Error>(self.read(jti, fresh).await?.is_some()) };
        let (revoked, not_before) = tokio::join!(revoked, not_before);
        if revoked? {
            return Err(Error::Revoked);
        }
        if let Some(nb) = not_before?
            && started_at <= nb
        {
            return Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout));
        }
        Ok(())
    }
}

/// The storage key of a subject's not-before marker: a hash of the subject,
/// so that any subject maps to a valid, fixed-size ID.
fn subject_key(subject: &str) -> SessionId {
    let digest = Sha256::new()
        .chain_update(b"sessionkit/revocation/not-before\0")
        .chain_update(subject.as_bytes())
        .finalize();
    let mut raw = [0u8; ID_BYTES];
    raw.copy_from_slice(&digest[..ID_BYTES]);
    SessionId::from_bytes(raw)
}

fn encode_instant(at: Timestamp) -> Bytes {
    Bytes::copy_from_slice(&at.as_millis().to_be_bytes())
}

fn decode_instant(bytes: &[u8]) -> Result<Timestamp> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::decode("malformed not-before marker"))?;
    Ok(Timestamp::from_millis(i64::from_be_bytes(raw)))
}
