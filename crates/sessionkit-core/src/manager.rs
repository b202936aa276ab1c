//! [`SessionManager`]: the one API applications use.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Envelope, PayloadCodec};
use crate::error::{Error, Result, TokenRejection};
use crate::events::{EventKind, EventReceiver, Events, observe};
use crate::id::SessionId;
use crate::record::{Record, validate_subject};
use crate::revocation::RevocationList;
use crate::store::SessionStore;
use crate::timestamp::Timestamp;
use crate::token::{TokenClaims, TokenCodec};

/// What a session type needs: serde both ways, shareable across tasks.
/// Implemented for every such type.
pub trait SessionData: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> SessionData for T {}

/// What the client holds: a session ID (stateful) or a signed token
/// (stateless). A secret: `Debug` shows only a prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket(String);

impl Ticket {
    /// The whole ticket, to be written into a cookie or a header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(4).collect();
        write!(f, "Ticket({shown}…)")
    }
}

/// A loaded or newly created session and its typed data.
pub struct Session<T> {
    ticket: Ticket,
    id: SessionId,
    subject: Option<String>,
    data: T,
    version: u64,
    created_at: Timestamp,
    expires_at: Timestamp,
    ticket_changed: bool,
    /// The subject the current ticket was issued for (differs from
    /// `subject` after `set_subject`, until the next save or rotation).
    issued_subject: Option<String>,
}

impl<T> Session<T> {
    /// What the client must present to find this session again (empty for
    /// a session from [`SessionManager::list_subject`]).
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }
    /// The ID the store keeps the session under (stateful: a hash of the
    /// ticket's ID unless hashing was turned off, so it is not a
    /// credential) or the token ID, `jti` (stateless). Stable until the
    /// session is rotated; use it to tell sessions apart and with
    /// [`SessionManager::destroy_id`].
    pub fn id(&self) -> SessionId {
        self.id
    }
    /// The principal this session belongs to, if any.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// Sets the principal (typically at login, right before
    /// [`SessionManager::rotate`]); written by the next save or rotate.
    pub fn set_subject(&mut self, subject: Option<&str>) -> Result<()> {
        if let Some(s) = subject {
            validate_subject(s)?;
        }
        self.subject = subject.map(str::to_owned);
        Ok(())
    }
    /// The typed data.
    pub fn data(&self) -> &T {
        &self.data
    }
    /// The typed data, for changing it before a save.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.data
    }
    /// Consumes the session, returning its data.
    pub fn into_data(self) -> T {
        self.data
    }
    /// The stored version this copy is based on (stateless: always 1).
    pub fn version(&self) -> u64 {
        self.version
    }
    /// When the session started (login time for a rotated session).
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When the session expires unless used again (the earlier of the idle
    /// and the absolute deadline).
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
    /// Whether the client must be sent [`Session::ticket`] again: true after
    /// create and rotate, and in stateless mode whenever a token was
    /// re-issued (save, or an idle extension on load).
    pub fn ticket_changed(&self) -> bool {
        self.ticket_changed
    }
}

impl<T> fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Counters kept by a [`SessionManager`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Sessions whose stored data could not be decoded (no upgrade path,
    /// corrupted bytes) and were treated as absent.
    pub undecodable: u64,
    /// Compare-and-swap conflicts that [`SessionManager::update`] retried.
    pub update_conflicts: u64,
    /// Idle-timeout extensions written on load.
    pub extensions: u64,
    /// Sessions written by a newer schema version than this instance's
    /// (during a rolling deployment or after a rollback). They are treated
    /// as absent here, and so never overwritten with data this instance
    /// could not fully understand; also counted in `undecodable`.
    pub newer_schema: u64,
    /// Lifecycle events dropped because a subscriber's queue was full.
    pub events_dropped: u64,
}

#[derive(Default)]
struct Counters {
    undecodable: AtomicU64,
    update_conflicts: AtomicU64,
    extensions: AtomicU64,
    newer_schema: AtomicU64,
}

/// Stored data of an older schema version, handed to an upgrade function.
enum OldBody<'a> {
    Bytes(PayloadCodec, &'a [u8]),
    Json(&'a serde_json::Value),
}

impl OldBody<'_> {
    fn decode<U: DeserializeOwned>(&self) -> Result<U> {
        match self {
            OldBody::Bytes(codec, bytes) => codec.decode(bytes),
            OldBody::Json(value) => U::deserialize(*value).map_err(Error::decode),
        }
    }
}

type Upgrade<T> = Box<dyn Fn(OldBody<'_>) -> Result<T> + Send + Sync>;

enum Mode {
    Stateful(Arc<dyn SessionStore>),
    Stateless {
        codec: Arc<dyn TokenCodec>,
        revocations: RevocationList,
    },
}

#[derive(Debug, Clone)]
struct Config {
    idle_timeout: Duration,
    absolute_timeout: Duration,
    touch_interval: Option<Duration>,
    max_payload: usize,
    codec: PayloadCodec,
    schema: u32,
    update_retries: u32,
    #[cfg(feature = "encryption")]
    keys: Option<crate::encryption::PayloadKeys>,
    /// Stores key records by a hash of the ticket's ID (`None`: by the ID).
    id_hash: Option<IdHash>,
    /// On a miss, also look for a record under the unhashed ID (and move it).
    read_unhashed: bool,
    /// At most this many live sessions per subject, and what gives way.
    limit: Option<(usize, SessionLimit)>,
}

/// What gives way when a subject would have more sessions than
/// [`ManagerBuilder::max_sessions_per_subject`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionLimit {
    /// The least recently used sessions of the subject are ended (the
    /// newest login wins, unless more than the limit log in at once;
    /// recency is kept to the millisecond, so logins in the same
    /// millisecond are ordered by ID, and one of them may be refused with
    /// [`Error::TooManySessions`]).
    EvictLeastRecentlyUsed,
    /// The new login is refused with [`Error::TooManySessions`] (its
    /// session, and a rotated anonymous one with it, is ended).
    RefuseNew,
}

/// How ticket IDs become store IDs: SHA-256 over a domain label, an
/// optional deployment secret and the ID, truncated to 128 bits.
#[derive(Clone)]
struct IdHash {
    key: Option<[u8; 32]>,
}

impl fmt::Debug for IdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdHash")
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

impl IdHash {
    fn apply(&self, id: &SessionId) -> SessionId {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"sessionkit/store-id/v1\0");
        if let Some(key) = &self.key {
            h.update(key);
        }
        h.update(id.to_bytes());
        let digest = h.finalize();
        let mut raw = [0u8; crate::id::ID_BYTES];
        raw.copy_from_slice(&digest[..crate::id::ID_BYTES]);
        SessionId::from_bytes(raw)
    }
}

impl Config {
    fn touch_interval(&self) -> Duration {
        self.touch_interval
            .unwrap_or_else(|| (self.idle_timeout / 10).min(Duration::from_secs(60)))
    }
}

struct Inner<T> {
    mode: Mode,
    config: Config,
    upgrades: HashMap<u32, Upgrade<T>>,
    counters: Counters,
    events: Events,
    /// The store's [`SessionStore::backend_name`], for spans and metrics.
    backend: &'static str,
}

/// The application-facing session API, the same for stateful and stateless
/// sessions. Cheap to clone (an `Arc` inside).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> sessionkit_core::Result<()> {
/// use sessionkit_core::{SessionManager, testing::VecStore};
///
/// #[derive(serde::Serialize, serde::Deserialize, Default)]
/// struct Cart { items: Vec<String> }
///
/// let manager = SessionManager::<Cart>::stateful(VecStore::default()).build()?;
/// let session = manager.create(Some("alice"), Cart::default()).await?;
/// let ticket = session.ticket().as_str().to_owned(); // goes into the cookie
///
/// // Read-modify-write that never loses a concurrent update:
/// manager.update(&ticket, |cart| cart.items.push("apple".into())).await?;
/// let loaded = manager.load(&ticket).await?.expect("live session");
/// assert_eq!(loaded.data().items, ["apple"]);
///
/// manager.destroy(&ticket).await?;
/// assert!(manager.load(&ticket).await?.is_none());
/// # Ok(()) }
/// ```
pub struct SessionManager<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for SessionManager<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for SessionManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field(
                "stateless",
                &matches!(self.inner.mode, Mode::Stateless { .. }),
            )
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Configures a [`SessionManager`]; see [`SessionManager::stateful`] and
/// [`SessionManager::stateless`].
#[must_use = "call .build() to get a SessionManager"]
pub struct ManagerBuilder<T> {
    mode: Mode,
    config: Config,
    upgrades: HashMap<u32, Upgrade<T>>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: SessionData> ManagerBuilder<T> {
    fn new(mode: Mode) -> Self {
        ManagerBuilder {
            mode,
            config: Config {
                idle_timeout: Duration::from_secs(30 * 60),
                absolute_timeout: Duration::from_secs(12 * 60 * 60),
                touch_interval: None,
                max_payload: 64 * 1024,
                codec: PayloadCodec::default(),
                schema: 1,
                update_retries: 100,
                #[cfg(feature = "encryption")]
                keys: None,
                id_hash: Some(IdHash { key: None }),
                read_unhashed: false,
                limit: None,
            },
            upgrades: HashMap::new(),
            _marker: PhantomData,
        }
    }

    /// A session unused for this long expires (default 30 minutes).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// A session expires this long after it was created, however active
    /// (default 12 hours). Rotation keeps the original creation time.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.config.absolute_timeout = timeout;
        self
    }

    /// How old the last idle extension must be before a load extends the
    /// expiry again (default: a tenth of the idle timeout, at most one
    /// minute). Loads in between cost no write.
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.config.touch_interval = Some(interval);
        self
    }

    /// Largest encoded session data, in bytes (default 64 KiB). Larger data
    /// is refused with [`Error::TooLarge`] before anything is written.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// The codec new payloads are written with (default: bincode when the
    /// feature is on). Payloads written by any compiled-in codec are read.
    pub fn codec(mut self, codec: PayloadCodec) -> Self {
        self.config.codec = codec;
        self
    }

    /// The schema version of `T` (default 1). Bump it when `T` changes
    /// incompatibly, and register an upgrade from the previous version.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.config.schema = version;
        self
    }

    /// Registers how to read data written with schema `version` as an `Old`
    /// and turn it into a `T`.
    ///
    /// ```
    /// # fn main() -> sessionkit_core::Result<()> {
    /// use sessionkit_core::{SessionManager, testing::VecStore};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct V1 { name: String }
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct V2 { first: String, visits: u32 }
    ///
    /// let manager = SessionManager::<V2>::stateful(VecStore::default())
    ///     .schema_version(2)
    ///     .upgrade_from::<V1>(1, |old| V2 { first: old.name, visits: 0 })
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn upgrade_from<Old: DeserializeOwned + 'static>(
        mut self,
        version: u32,
        upgrade: impl Fn(Old) -> T + Send + Sync + 'static,
    ) -> Self {
        self.upgrades.insert(
            version,
            Box::new(move |body: OldBody<'_>| body.decode::<Old>().map(&upgrade)),
        );
        self
    }

    /// Seals every payload this manager writes with `keys` (stateful mode;
    /// feature `encryption`): XChaCha20-Poly1305, the session ID and record
    /// version bound as associated data, previous keys readable. See
    /// [`PayloadKeys`](crate::PayloadKeys). Payloads written before it was
    /// turned on stay readable; each is sealed on its next save.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// use sessionkit_core::{PayloadKeys, SessionManager, testing::VecStore};
    ///
    /// let keys = PayloadKeys::new(1, [42u8; 32]); // from your secret manager
    /// let manager = SessionManager::<String>::stateful(VecStore::default())
    ///     .encrypt_payloads(keys)
    ///     .build()?;
    /// let s = manager.create(None, "card ending 4242".to_owned()).await?;
    /// assert_eq!(manager.load(s.ticket().as_str()).await?.unwrap().data(), "card ending 4242");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "encryption")]
    pub fn encrypt_payloads(mut self, keys: crate::encryption::PayloadKeys) -> Self {
        self.config.keys = Some(keys);
        self
    }

    /// Mixes a deployment secret into the hash that turns a ticket's ID
    /// into the ID the store keeps (stateful mode). Every instance of a
    /// deployment must use the same key; changing it logs everybody out.
    ///
    /// IDs are hashed at rest by default, without a key: the store (its
    /// keys, rows, dumps, replicas, logs, cache and invalidation messages)
    /// only ever sees SHA-256 of the ID, truncated to 128 bits, so a
    /// read-only copy of it holds no working ticket (a ticket has 128 random
    /// bits: its hash cannot be inverted). The key is defence in depth.
    ///
    /// ```
    /// # fn main() -> sessionkit_core::Result<()> {
    /// use sessionkit_core::{SessionManager, testing::VecStore};
    /// let manager = SessionManager::<u32>::stateful(VecStore::default())
    ///     .id_hash_key([7u8; 32]) // from your secret manager
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn id_hash_key(mut self, key: [u8; 32]) -> Self {
        self.config.id_hash = Some(IdHash { key: Some(key) });
        self
    }

    /// Whether the store keys records by a hash of the ticket's ID (default
    /// `true`). Turn it off only for a store nobody else can read (a
    /// process-local `MemoryStore`), to save the hash (a few hundred ns).
    pub fn hash_ids(mut self, on: bool) -> Self {
        match (on, &self.config.id_hash) {
            (true, None) => self.config.id_hash = Some(IdHash { key: None }),
            (false, _) => self.config.id_hash = None,
            (true, Some(_)) => {}
        }
        self
    }

    /// For a deployment switching to hashed IDs with live sessions in the
    /// store (changing the hash key instead logs everybody out): a ticket whose hashed ID finds
    /// nothing is also looked up under its plain ID, and a session found
    /// there is moved to its hashed ID (compare-and-swap intact, nothing
    /// lost). Keep it on for one idle timeout after the switch, then turn it
    /// off: by then every live session was moved or has expired. Default
    /// off (it costs a second lookup for every unknown ticket).
    pub fn read_unhashed_ids(mut self, on: bool) -> Self {
        self.config.read_unhashed = on;
        self
    }

    /// At most `limit` live sessions per subject (stateful mode), enforced
    /// when a session gets its subject (`create` with a subject, or a
    /// rotation or save after `set_subject`). Concurrent logins of one
    /// subject never leave more than `limit` sessions: every login lists the
    /// subject's sessions after writing its own and trims them to the same
    /// deterministic choice, so whichever looks last settles it.
    /// Stateless tokens cannot be counted: `build` refuses the option there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// use sessionkit_core::{Error, SessionLimit, SessionManager, testing::VecStore};
    /// let manager = SessionManager::<u32>::stateful(VecStore::default())
    ///     .max_sessions_per_subject(2, SessionLimit::RefuseNew)
    ///     .build()?;
    /// manager.create(Some("alice"), 1).await?;
    /// manager.create(Some("alice"), 2).await?;
    /// assert!(matches!(
    ///     manager.create(Some("alice"), 3).await,
    ///     Err(Error::TooManySessions { limit: 2 })
    /// ));
    /// # Ok(()) }
    /// ```
    pub fn max_sessions_per_subject(mut self, limit: usize, policy: SessionLimit) -> Self {
        self.config.limit = Some((limit, policy));
        self
    }

    /// How many times [`SessionManager::update`] retries after a
    /// compare-and-swap conflict before returning [`Error::Conflict`]
    /// (default 100, with jittered exponential backoff capped at 100 ms: enough for dozens of requests hammering one session at once).
    pub fn update_retries(mut self, retries: u32) -> Self {
        self.config.update_retries = retries;
        self
    }

    /// Checks the configuration and builds the manager.
    pub fn build(self) -> Result<SessionManager<T>> {
        let c = &self.config;
        if c.idle_timeout < Duration::from_millis(1)
            || c.absolute_timeout < Duration::from_millis(1)
        {
            return Err(Error::Config(
                "timeouts must be at least one millisecond".into(),
            ));
        }
        if c.touch_interval() >= c.idle_timeout {
            return Err(Error::Config(
                "touch_interval must be shorter than idle_timeout".into(),
            ));
        }
        if c.schema == 0 {
            return Err(Error::Config("schema versions start at 1".into()));
        }
        if let Some((limit, _)) = c.limit {
            if limit == 0 {
                return Err(Error::Config(
                    "max_sessions_per_subject must be at least 1".into(),
                ));
            }
            if matches!(self.mode, Mode::Stateless { .. }) {
                return Err(Error::Config(
                    "max_sessions_per_subject needs stateful sessions: tokens cannot be counted"
                        .into(),
                ));
            }
        }
        if let Some(v) = self.upgrades.keys().find(|v| **v >= c.schema) {
            return Err(Error::Config(format!(
                "an upgrade is registered from version {v}, which is not older than the current schema {}",
                c.schema
            )));
        }
        let backend = match &self.mode {
            Mode::Stateful(store) => store.backend_name(),
            Mode::Stateless { .. } => "stateless",
        };
        Ok(SessionManager {
            inner: Arc::new(Inner {
                mode: self.mode,
                config: self.config,
                upgrades: self.upgrades,
                counters: Counters::default(),
                events: Events::default(),
                backend,
            }),
        })
    }
}

impl<T: SessionData> SessionManager<T> {
    /// Stateful sessions: the client holds an opaque ID; the data lives in
    /// `store`.
    pub fn stateful(store: impl SessionStore) -> ManagerBuilder<T> {
        ManagerBuilder::new(Mode::Stateful(Arc::new(store)))
    }

    /// Stateful sessions over a store that is already shared.
    pub fn stateful_shared(store: Arc<dyn SessionStore>) -> ManagerBuilder<T> {
        ManagerBuilder::new(Mode::Stateful(store))
    }

    /// Stateless sessions: the client holds a signed token carrying the
    /// data; `revocations` remembers what was logged out early.
    pub fn stateless(codec: impl TokenCodec, revocations: RevocationList) -> ManagerBuilder<T> {
        ManagerBuilder::new(Mode::Stateless {
            codec: Arc::new(codec),
            revocations,
        })
    }

    /// Whether this manager issues stateless tokens.
    pub fn is_stateless(&self) -> bool {
        matches!(self.inner.mode, Mode::Stateless { .. })
    }

    /// The counters kept so far.
    pub fn stats(&self) -> ManagerStats {
        let c = &self.inner.counters;
        ManagerStats {
            undecodable: c.undecodable.load(Ordering::Relaxed),
            update_conflicts: c.update_conflicts.load(Ordering::Relaxed),
            extensions: c.extensions.load(Ordering::Relaxed),
            newer_schema: c.newer_schema.load(Ordering::Relaxed),
            events_dropped: self.inner.events.dropped.load(Ordering::Relaxed),
        }
    }

    /// Subscribes to lifecycle events (see [`SessionEvent`](crate::SessionEvent)):
    /// each subscriber gets its own queue of `capacity` events; when it is
    /// full, further events are dropped for it and counted in
    /// [`ManagerStats::events_dropped`], so a slow subscriber never slows a
    /// request. Drop the receiver to unsubscribe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// use sessionkit_core::{EventKind, SessionManager, testing::VecStore};
    /// let manager = SessionManager::<u32>::stateful(VecStore::default()).build()?;
    /// let mut events = manager.subscribe(1024);
    /// let s = manager.create(Some("alice"), 1).await?;
    /// manager.destroy(s.ticket().as_str()).await?;
    /// assert_eq!(events.recv().await.unwrap().kind, EventKind::Created);
    /// assert_eq!(events.recv().await.unwrap().kind, EventKind::Destroyed);
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self, capacity: usize) -> EventReceiver {
        self.inner.events.subscribe(capacity)
    }

    /// The idle timeout in force.
    pub fn idle_timeout(&self) -> Duration {
        self.inner.config.idle_timeout
    }

    /// The absolute timeout in force.
    pub fn absolute_timeout(&self) -> Duration {
        self.inner.config.absolute_timeout
    }

    /// Starts a session for `subject` (or an anonymous one) holding `data`.
    /// The returned session's [`ticket`](Session::ticket) is what the client
    /// keeps.
    pub async fn create(&self, subject: Option<&str>, data: T) -> Result<Session<T>> {
        if let Some(s) = subject {
            validate_subject(s)?;
        }
        let now = Timestamp::now();
        let expires_at = self.deadline(now, now);
        let mut session = Session {
            ticket: Ticket(String::new()),
            // Drawn below: by `insert_new` (stateful) or as the token ID.
            id: SessionId::from_bytes([0; crate::id::ID_BYTES]),
            subject: subject.map(str::to_owned),
            data,
            version: 1,
            created_at: now,
            expires_at,
            ticket_changed: true,
            issued_subject: subject.map(str::to_owned),
        };
        match &self.inner.mode {
            Mode::Stateful(store) => {
                if let (Some(subject), Some((limit, SessionLimit::RefuseNew))) =
                    (&session.subject, self.inner.config.limit)
                {
                    // Refuse before writing anything when the subject is
                    // already at its limit; `enforce_limit` settles races.
                    let existing = observe(
                        self.inner.backend,
                        "list_subject",
                        store.list_subject(subject),
                    )
                    .await?;
                    if existing.len() >= limit {
                        return Err(Error::TooManySessions { limit });
                    }
                }
                let (ticket, id) = self
                    .insert_new(
                        store,
                        &session.subject,
                        session.created_at,
                        session.expires_at,
                        &session.data,
                    )
                    .await?;
                session.id = id;
                session.ticket = ticket;
                if let Some(subject) = &session.subject {
                    self.enforce_limit(store, subject, &session.id).await?;
                }
            }
            Mode::Stateless { codec, .. } => {
                session.id = SessionId::try_generate()?;
                self.issue(codec, &mut session, now)?;
            }
        }
        self.inner
            .events
            .emit(EventKind::Created, session.subject(), Some(&session.id));
        Ok(session)
    }

    /// Finds the live session for a ticket.
    ///
    /// `Ok(None)` when a well-formed ticket has no live session (unknown,
    /// expired, logged out, or data that cannot be decoded: counted in
    /// [`ManagerStats::undecodable`]). An error for a ticket that is not
    /// valid at all ([`Error::InvalidId`], [`Error::InvalidToken`],
    /// [`Error::Revoked`]; see [`Error::is_invalid_ticket`]) or when the
    /// backend fails.
    pub async fn load(&self, ticket: &str) -> Result<Option<Session<T>>> {
        self.load_from(ticket, false).await
    }

    /// Like [`SessionManager::load`], but asks the store's source of truth,
    /// past any cache: for security decisions (a privileged action, a
    /// password or e-mail change, a payment) that must not act on a session
    /// that another instance already logged out. With a cached store a
    /// plain `load` may serve a session up to the cache's staleness bound
    /// after another instance ended it; `load_fresh` never does. Stateless
    /// mode: the same as `load` (the revocation list is read as usual;
    /// give it an uncached store when revocations must be seen at once).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// # use sessionkit_core::{SessionManager, testing::VecStore};
    /// let manager = SessionManager::<u32>::stateful(VecStore::default()).build()?;
    /// let ticket = manager.create(Some("alice"), 7).await?.ticket().clone();
    /// let fresh = manager.load_fresh(ticket.as_str()).await?.expect("live");
    /// assert_eq!(*fresh.data(), 7);
    /// # Ok(()) }
    /// ```
    pub async fn load_fresh(&self, ticket: &str) -> Result<Option<Session<T>>> {
        self.load_from(ticket, true).await
    }

    async fn load_from(&self, ticket: &str, fresh: bool) -> Result<Option<Session<T>>> {
        let loaded = self.load_inner(ticket, fresh).await;
        if let Err(e) = &loaded {
            self.inner.events.rejected(e);
        }
        loaded
    }

    async fn load_inner(&self, ticket: &str, fresh: bool) -> Result<Option<Session<T>>> {
        let now = Timestamp::now();
        match &self.inner.mode {
            Mode::Stateful(store) => {
                let plain = SessionId::parse(ticket)?;
                let id = self.store_id(&plain);
                let record = match self.load_record(store, &id, fresh).await {
                    Ok(Some(record)) => record,
                    Ok(None) if id != plain && self.inner.config.read_unhashed => {
                        match self.load_record(store, &plain, fresh).await {
                            Ok(Some(legacy)) => {
                                return self.move_to_hashed(store, legacy, id, ticket, now).await;
                            }
                            Ok(None) => return Ok(None),
                            Err(e @ Error::Decode(_)) => return self.undecodable(&plain, e),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(None) => return Ok(None),
                    // The store could not read its own record back
                    // (corrupted bytes): no session, counted, never a 500.
                    Err(e @ Error::Decode(_)) => return self.undecodable(&id, e),
                    Err(e) => return Err(e),
                };
                self.session_from_record(store, record, now, true, Some(ticket))
                    .await
            }
            Mode::Stateless { codec, revocations } => {
                let claims = codec.decode(ticket)?;
                if fresh {
                    revocations.check_fresh(&claims).await?;
                } else {
                    revocations.check(&claims).await?;
                }
                if now >= claims.session_started_at + self.inner.config.absolute_timeout {
                    return Err(Error::Expired);
                }
                let data = match self.decode_json(claims.schema, &claims.data) {
                    Ok(data) => data,
                    Err(e) => return self.undecodable(&claims.jti, e),
                };
                let mut session = Session {
                    ticket: Ticket(ticket.to_owned()),
                    id: claims.jti,
                    issued_subject: claims.subject.clone(),
                    subject: claims.subject,
                    data,
                    version: 1,
                    created_at: claims.session_started_at,
                    expires_at: claims.expires_at,
                    ticket_changed: false,
                };
                if self
                    .idle_extension(claims.expires_at, claims.session_started_at, now)
                    .is_some()
                {
                    self.issue(codec, &mut session, now)?;
                    self.inner
                        .counters
                        .extensions
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(session))
            }
        }
    }

    /// Writes a changed session.
    ///
    /// Stateful: compare-and-swap on the version the session was loaded
    /// with; [`Error::Conflict`] when another request saved first (load
    /// again, or use [`SessionManager::update`]); [`Error::NotFound`] when it
    /// was deleted or expired meanwhile. Stateless: re-issues the token.
    pub async fn save(&self, session: &mut Session<T>) -> Result<()> {
        let now = Timestamp::now();
        match &self.inner.mode {
            Mode::Stateful(store) => {
                let record = Record {
                    id: session.id,
                    subject: session.subject.clone(),
                    // Written as the next version: sealed payloads are
                    // bound to the version they are stored as.
                    payload: self.encode(&session.data, &session.id, session.version + 1)?,
                    version: session.version,
                    created_at: session.created_at,
                    expires_at: self.deadline(now, session.created_at),
                };
                let subject_changed = session.subject != session.issued_subject;
                session.version = match self.call("save", || store.save(&record)).await {
                    Ok(version) => version,
                    Err(e) => {
                        if e.is_conflict() {
                            self.inner.events.emit(
                                EventKind::Conflict,
                                session.subject(),
                                Some(&session.id),
                            );
                        }
                        return Err(e);
                    }
                };
                session.expires_at = record.expires_at;
                session.issued_subject.clone_from(&session.subject);
                if subject_changed && let Some(subject) = &session.subject {
                    self.enforce_limit(store, subject, &session.id).await?;
                }
                Ok(())
            }
            Mode::Stateless { codec, .. } => self.issue(codec, session, now),
        }
    }

    /// Read-modify-write that loses no concurrent update: loads the session,
    /// applies `change`, saves with compare-and-swap, and on a conflict
    /// starts over (so `change` may run more than once) with jittered
    /// exponential backoff, up to the configured number of retries. A save
    /// the backend aborted without applying it ([`Error::Aborted`], such as
    /// a deadlock victim) is retried the same way; a timeout or a lost
    /// connection is not, since that save may have been applied.
    ///
    /// [`Error::NotFound`] when the ticket has no live session. In stateless
    /// mode there is nothing to compare against: the token is re-issued and
    /// the caller must send the returned ticket to the client.
    pub async fn update<F>(&self, ticket: &str, mut change: F) -> Result<Session<T>>
    where
        F: FnMut(&mut T) + Send,
    {
        let retries = self.inner.config.update_retries;
        let mut attempt = 0;
        loop {
            let mut session = self.load(ticket).await?.ok_or(Error::NotFound)?;
            change(&mut session.data);
            match self.save(&mut session).await {
                Ok(()) => return Ok(session),
                // An aborted save was already retried by `save`.
                Err(Error::Conflict) if attempt < retries => {
                    self.inner
                        .counters
                        .update_conflicts
                        .fetch_add(1, Ordering::Relaxed);
                    backoff(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the session a new ID (stateful) or token ID (stateless), the
    /// defence against session fixation: call it whenever privileges change,
    /// above all at login. The current data and subject are written with the
    /// new ID first; only then does the old ID die, so a failure never loses
    /// the session. The creation time (and so the absolute timeout) is kept,
    /// except for a stateless session whose subject changed since its token
    /// was issued (a login): its tokens start a new session then, so that a
    /// log-out-everywhere of that subject from before the login does not
    /// end it.
    ///
    /// A rotation is atomic against every concurrent end of the session:
    /// the old ID dies only if it is still the version this copy was loaded
    /// (or last saved) as. So of N concurrent rotations of one session
    /// exactly one wins, and a rotation that comes after a `destroy`, a
    /// `destroy_subject`, another rotation or (stateless) a revocation of the
    /// session fails and leaves nothing live:
    ///
    /// - [`Error::NotFound`] (stateful): the session was ended, expired or
    ///   rotated meanwhile;
    /// - [`Error::Conflict`] (stateful): it was saved meanwhile (load it
    ///   again and retry);
    /// - [`Error::Revoked`] or [`Error::InvalidToken`] with
    ///   [`TokenRejection::IssuedBeforeLogout`](crate::TokenRejection)
    ///   (stateless): the token was revoked, rotated, or its subject logged
    ///   out everywhere.
    ///
    /// On any error `session` is left exactly as it was: its ticket is still
    /// the old one, so a web layer never hands out a ticket that a failed
    /// rotation created.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// # use sessionkit_core::{Error, SessionManager, testing::VecStore};
    /// let manager = SessionManager::<u32>::stateful(VecStore::default()).build()?;
    /// let ticket = manager.create(Some("alice"), 1).await?.ticket().clone();
    /// let mut a = manager.load(ticket.as_str()).await?.expect("live");
    /// let mut b = manager.load(ticket.as_str()).await?.expect("live");
    /// manager.rotate(&mut a).await?;
    /// // b's rotation comes second: it fails, and forks nothing.
    /// assert!(matches!(manager.rotate(&mut b).await, Err(Error::NotFound)));
    /// assert_eq!(manager.list_subject("alice").await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn rotate(&self, session: &mut Session<T>) -> Result<()> {
        let old = session.id;
        let result = self.rotate_inner(session).await;
        let kind = match &result {
            Ok(()) => EventKind::Rotated,
            Err(
                Error::NotFound
                | Error::Conflict
                | Error::Revoked
                | Error::InvalidToken(TokenRejection::IssuedBeforeLogout),
            ) => EventKind::RotationRefused,
            Err(_) => return result,
        };
        let id = if result.is_ok() { session.id } else { old };
        self.inner.events.emit(kind, session.subject(), Some(&id));
        result
    }

    async fn rotate_inner(&self, session: &mut Session<T>) -> Result<()> {
        let now = Timestamp::now();
        match &self.inner.mode {
            Mode::Stateful(store) => {
                let old = session.id;
                let expires_at = self.deadline(now, session.created_at);
                let (ticket, new) = self
                    .insert_new(
                        store,
                        &session.subject,
                        session.created_at,
                        expires_at,
                        &session.data,
                    )
                    .await?;
                // The old ID dies only if nobody ended, rotated or saved it
                // since it was loaded; otherwise the new copy is taken back.
                if let Err(e) = self
                    .call("compare_and_delete", || {
                        store.compare_and_delete(&old, session.version)
                    })
                    .await
                {
                    if let Err(cleanup) = self.call("delete", || store.delete(&new)).await {
                        // Nobody holds its ticket; it expires by itself.
                        tracing::warn!(
                            session = %new.redacted(),
                            error = %cleanup,
                            "could not take back the copy of a failed rotation"
                        );
                    }
                    return Err(e);
                }
                let subject_changed = session.subject != session.issued_subject;
                session.ticket = ticket;
                session.id = new;
                session.version = 1;
                session.expires_at = expires_at;
                session.ticket_changed = true;
                session.issued_subject.clone_from(&session.subject);
                if subject_changed && let Some(subject) = &session.subject {
                    self.enforce_limit(store, subject, &session.id).await?;
                }
                Ok(())
            }
            Mode::Stateless { codec, revocations } => {
                // Refuse to rotate a token that was revoked or logged out
                // everywhere meanwhile.
                // everywhere meanwhile (asking past any cache: this is the
                // security decision). The old token is checked under the
                // subject it was issued for.
                revocations
                    .check_from(
                        &session.id,
                        session.issued_subject.as_deref(),
                        session.created_at,
                        true,
                    )
                    .await?;
                let old = session.id;
                let old_deadline = self.token_lifetime_end(session, codec.as_ref());
                // Sign the new token first, changing nothing: the session
                // changes only once the old token is revoked.
                let next_id = SessionId::try_generate()?;
                let started_at = self.token_start(session, now);
                let (ticket, expires_at) = self.sign(
                    codec,
                    &next_id,
                    session.subject.as_deref(),
                    started_at,
                    &session.data,
                    now,
                )?;
                // Exactly one of concurrent rotations revokes the old token
                // first; the others find it revoked.
                if !revocations.revoke_once(&old, old_deadline).await? {
                    return Err(Error::Revoked);
                }
                session.id = next_id;
                session.ticket = ticket;
                session.created_at = started_at;
                session.expires_at = expires_at;
                session.ticket_changed = true;
                session.issued_subject.clone_from(&session.subject);
                Ok(())
            }
        }
    }

    /// Ends the session behind `ticket` (logout). Stateful: deletes the
    /// record; `Ok(false)` if there was none. Stateless: revokes the token
    /// ID until the last token of the session would have expired.
    pub async fn destroy(&self, ticket: &str) -> Result<bool> {
        let (ended, id, subject) = match &self.inner.mode {
            Mode::Stateful(store) => {
                let id = self.store_id(&SessionId::parse(ticket)?);
                let ended = self.call("delete", || store.delete(&id)).await?;
                (ended, id, None)
            }
            Mode::Stateless { codec, revocations } => {
                let claims = codec.decode(ticket)?;
                let until = claims
                    .expires_at
                    .max(claims.session_started_at + self.inner.config.absolute_timeout)
                    + codec.leeway();
                revocations.revoke(&claims.jti, until).await?;
                (true, claims.jti, claims.subject)
            }
        };
        if ended {
            self.inner
                .events
                .emit(EventKind::Destroyed, subject.as_deref(), Some(&id));
        }
        Ok(ended)
    }

    /// Ends the session the store keeps under `id`: the
    /// [`Session::id`] of a session from [`SessionManager::list_subject`]
    /// (a "your devices" page ending another device), whose ticket this
    /// manager does not know. `Ok(false)` if it was gone. Stateful mode only
    /// ([`Error::Unsupported`] for stateless tokens: use `destroy` with the
    /// token, or `destroy_subject`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// # use sessionkit_core::{SessionManager, testing::VecStore};
    /// let manager = SessionManager::<u32>::stateful(VecStore::default()).build()?;
    /// manager.create(Some("alice"), 1).await?; // the phone
    /// let laptop = manager.create(Some("alice"), 2).await?;
    /// for device in manager.list_subject("alice").await? {
    ///     if device.id() != laptop.id() {
    ///         assert!(manager.destroy_id(&device.id()).await?); // log the phone out
    ///     }
    /// }
    /// assert_eq!(manager.list_subject("alice").await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn destroy_id(&self, id: &SessionId) -> Result<bool> {
        let Mode::Stateful(store) = &self.inner.mode else {
            return Err(Error::Unsupported(
                "stateless tokens are ended with destroy(token) or destroy_subject",
            ));
        };
        let ended = self.call("delete", || store.delete(id)).await?;
        if ended {
            self.inner.events.emit(EventKind::Destroyed, None, Some(id));
        }
        Ok(ended)
    }

    /// Ends every session of `subject` ("log out everywhere"). Stateful:
    /// deletes them and returns how many. Stateless: rejects every token of
    /// every session of the subject started until now (however often it
    /// was re-issued or rotated since), and returns 0 (tokens are not
    /// counted).
    ///
    /// A rotation racing this call never leaves a session alive: on a store
    /// whose `delete_subject` is not one atomic step, a rotation could
    /// write its new record after the subject's sessions were listed and
    /// remove the old one before they are deleted, so the deletion is
    /// repeated until a pass finds nothing (at most a few passes).
    pub async fn destroy_subject(&self, subject: &str) -> Result<u64> {
        let count = self.destroy_subject_inner(subject).await?;
        self.inner.events.emit(
            EventKind::LoggedOutEverywhere { count },
            Some(subject),
            None,
        );
        Ok(count)
    }

    async fn destroy_subject_inner(&self, subject: &str) -> Result<u64> {
        validate_subject(subject)?;
        match &self.inner.mode {
            Mode::Stateful(store) => {
                let mut total = 0;
                let mut aborted = 0;
                let mut passes = 0;
                while passes < DELETE_SUBJECT_PASSES {
                    let removed = match observe(
                        self.inner.backend,
                        "delete_subject",
                        store.delete_subject(subject),
                    )
                    .await
                    {
                        Ok(removed) => removed,
                        // Rolled back, nothing applied: run it again.
                        Err(Error::Aborted(_)) if aborted < self.inner.config.update_retries => {
                            aborted += 1;
                            backoff(aborted.min(7)).await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    passes += 1;
                    total += removed;
                    if removed == 0 {
                        break;
                    }
                }
                Ok(total)
            }
            Mode::Stateless { codec, revocations } => {
                let now = Timestamp::now();
                let keep = now + self.inner.config.absolute_timeout + codec.leeway();
                revocations.logout_everywhere(subject, now, keep).await?;
                Ok(0)
            }
        }
    }

    /// Every live session of `subject` (for a "your sessions" page).
    /// Their [`Session::ticket`] is empty: tickets are credentials, and the
    /// store keeps only a hash of each. End one with
    /// [`SessionManager::destroy_id`].
    /// Undecodable ones are skipped and counted. Stateless mode:
    /// [`Error::Unsupported`], since tokens live only with their clients.
    pub async fn list_subject(&self, subject: &str) -> Result<Vec<Session<T>>> {
        validate_subject(subject)?;
        let Mode::Stateful(store) = &self.inner.mode else {
            return Err(Error::Unsupported(
                "stateless tokens are held by clients and cannot be listed",
            ));
        };
        let now = Timestamp::now();
        let mut sessions = Vec::new();
        for record in observe(
            self.inner.backend,
            "list_subject",
            store.list_subject(subject),
        )
        .await?
        {
            if let Some(s) = self
                .session_from_record(store, record, now, false, None)
                .await?
            {
                sessions.push(s);
            }
        }
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    // ---- internals ----

    /// The earlier of the idle and the absolute deadline.
    fn deadline(&self, now: Timestamp, created_at: Timestamp) -> Timestamp {
        let c = &self.inner.config;
        (now + c.idle_timeout).min(created_at + c.absolute_timeout)
    }

    /// The expiry of a token signed now: the [deadline](Self::deadline) in
    /// whole seconds, rounded down, since that is what a token carries
    /// (`exp`). Comparing it with a decoded `exp` is then exact.
    fn token_deadline(&self, now: Timestamp, created_at: Timestamp) -> Timestamp {
        Timestamp::from_secs(self.deadline(now, created_at).as_secs())
    }

    /// The new expiry an idle extension at `now` writes, if one is due: the
    /// last extension (at `expires_at - idle`) is at least `touch_interval`
    /// old *and* the new deadline is later than the current one. Near the
    /// absolute timeout the deadline stops moving, and then nothing is
    /// written (or re-signed) however often the session is read. Shared by
    /// the stateful and the stateless path.
    fn idle_extension(
        &self,
        expires_at: Timestamp,
        created_at: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let c = &self.inner.config;
        let last_extended = expires_at - c.idle_timeout;
        if now < last_extended + c.touch_interval() {
            return None;
        }
        let next = match self.inner.mode {
            Mode::Stateful(_) => self.deadline(now, created_at),
            Mode::Stateless { .. } => self.token_deadline(now, created_at),
        };
        (next > expires_at).then_some(next)
    }

    /// The payload of the record `id` at `version`: the envelope, sealed
    /// when payload keys are configured.
    fn encode(&self, data: &T, id: &SessionId, version: u64) -> Result<Bytes> {
        self.encode_with(data, id, version, false)
    }

    /// `check`: before sealing, decode the encoded body back as `T` (see
    /// [`Self::encode_checked`]); done on the plain body, so a sealed
    /// payload is not decrypted again right after it was encrypted.
    fn encode_with(&self, data: &T, id: &SessionId, version: u64, check: bool) -> Result<Bytes> {
        let c = &self.inner.config;
        let body = c.codec.encode(data)?;
        if check && c.codec != PayloadCodec::Json {
            Self::reads_back(c.codec, &body)?;
        }
        let size = body.len() + Envelope::HEADER_LEN + self.seal_overhead();
        if size > c.max_payload {
            return Err(Error::TooLarge {
                size,
                limit: c.max_payload,
            });
        }
        let plain = Envelope::write(c.codec, c.schema, &body);
        Ok(self.seal(plain, id, version)?.into())
    }

    #[cfg(feature = "encryption")]
    fn seal_overhead(&self) -> usize {
        match self.inner.config.keys {
            Some(_) => crate::encryption::OVERHEAD,
            None => 0,
        }
    }

    #[cfg(not(feature = "encryption"))]
    fn seal_overhead(&self) -> usize {
        0
    }

    #[cfg(feature = "encryption")]
    fn seal(&self, plain: Vec<u8>, id: &SessionId, version: u64) -> Result<Vec<u8>> {
        match &self.inner.config.keys {
            Some(keys) => keys.seal(&plain, id, version),
            None => Ok(plain),
        }
    }

    #[cfg(not(feature = "encryption"))]
    fn seal(&self, plain: Vec<u8>, _: &SessionId, _: u64) -> Result<Vec<u8>> {
        Ok(plain)
    }

    /// The plain envelope of a stored payload (opened if it is sealed).
    #[cfg(feature = "encryption")]
    fn unseal<'a>(
        &self,
        payload: &'a [u8],
        id: &SessionId,
        version: u64,
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        if payload.get(1) == Some(&crate::encryption::SEALED_FORMAT) {
            let keys = self.inner.config.keys.as_ref();
            return crate::encryption::open_with(keys, payload, id, version)
                .map(std::borrow::Cow::Owned);
        }
        Ok(std::borrow::Cow::Borrowed(payload))
    }

    #[cfg(not(feature = "encryption"))]
    fn unseal<'a>(
        &self,
        payload: &'a [u8],
        _: &SessionId,
        _: u64,
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        Ok(std::borrow::Cow::Borrowed(payload))
    }

    /// Encodes `data` and checks that it decodes again: a type the codec
    /// can write but not read back (bincode and postcard cannot read
    /// `serde_json::Value`, `#[serde(flatten)]`, untagged enums…) is refused
    /// when the session is created, not turned into a session that later
    /// loads as `None`. JSON reads back whatever it writes.
    fn encode_checked(&self, data: &T, id: &SessionId, version: u64) -> Result<Bytes> {
        self.encode_with(data, id, version, true)
    }

    fn reads_back(codec: PayloadCodec, body: &[u8]) -> Result<()> {
        if let Err(e) = codec.decode::<T>(body) {
            return Err(Error::Encode(
                format!(
                    "the session type cannot be read back by the {codec:?} codec ({e}: {}); \
                     it probably relies on a self-describing format (serde_json::Value, \
                     #[serde(flatten)], untagged enums): use PayloadCodec::Json",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
                .into(),
            ));
        }
        Ok(())
    }

    /// Data of a newer schema is never read as the current type: it cannot
    /// be fully understood here, and a save would write it back without
    /// what it could not understand (a rollback must lose nothing).
    fn newer_schema(&self, schema: u32) -> Error {
        self.inner
            .counters
            .newer_schema
            .fetch_add(1, Ordering::Relaxed);
        Error::decode(format!(
            "written by schema version {schema}, newer than this instance's {}; \
             treated as no session so that it is never overwritten here",
            self.inner.config.schema
        ))
    }

    fn decode(&self, payload: &[u8], id: &SessionId, version: u64) -> Result<T> {
        let plain = self.unseal(payload, id, version)?;
        let envelope = Envelope::read(&plain)?;
        let codec = envelope.codec()?;
        if envelope.schema > self.inner.config.schema {
            return Err(self.newer_schema(envelope.schema));
        }
        if envelope.schema == self.inner.config.schema {
            return codec.decode(envelope.body);
        }
        match self.inner.upgrades.get(&envelope.schema) {
            Some(upgrade) => upgrade(OldBody::Bytes(codec, envelope.body)),
            None => Err(Error::decode(format!(
                "no upgrade registered from schema version {}",
                envelope.schema
            ))),
        }
    }

    fn decode_json(&self, schema: u32, value: &serde_json::Value) -> Result<T> {
        if schema > self.inner.config.schema {
            return Err(self.newer_schema(schema));
        }
        if schema == self.inner.config.schema {
            return T::deserialize(value).map_err(Error::decode);
        }
        match self.inner.upgrades.get(&schema) {
            Some(upgrade) => upgrade(OldBody::Json(value)),
            None => Err(Error::decode(format!(
                "no upgrade registered from schema version {schema}"
            ))),
        }
    }

    fn undecodable<R>(&self, id: &SessionId, error: Error) -> Result<Option<R>> {
        self.inner
            .counters
            .undecodable
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            session = %id.redacted(),
            error = %error,
            source = ?std::error::Error::source(&error),
            "session data cannot be decoded; treating it as no session"
        );
        Ok(None)
    }

    /// Stores a brand-new record of `data` under `id`, drawing a fresh
    /// ID in the (astronomically unlikely) case of a collision. The payload
    /// is checked to read back (see [`Self::encode_checked`]) and, when
    /// sealed, bound to the ID it is stored under.
    /// Returns the ticket the client keeps and the ID the store keeps.
    /// One store call, run again when the backend aborted it without
    /// applying anything ([`Error::Aborted`]: a deadlock victim, a
    /// serialization failure), with jittered backoff, up to the configured
    /// number of retries. Timeouts and lost connections are not retried
    /// here: such a call may have been applied.
    async fn call<R, F, Fut>(&self, op: &'static str, mut call: F) -> Result<R>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let backend = self.inner.backend;
        retry_aborted(self.inner.config.update_retries, || {
            observe(backend, op, call())
        })
        .await
    }

    async fn insert_new(
        &self,
        store: &Arc<dyn SessionStore>,
        subject: &Option<String>,
        created_at: Timestamp,
        expires_at: Timestamp,
        data: &T,
    ) -> Result<(Ticket, SessionId)> {
        let mut ticket = SessionId::try_generate()?;
        let id = self.store_id(&ticket);
        let mut record = Record {
            id,
            subject: subject.clone(),
            payload: self.encode_checked(data, &id, 1)?,
            version: 1,
            created_at,
            expires_at,
        };
        for _ in 0..3 {
            match self.call("create", || store.create(&record)).await {
                Ok(()) => return Ok((Ticket(ticket.as_str().to_owned()), record.id)),
                Err(Error::Conflict) => {
                    ticket = SessionId::try_generate()?;
                    record.id = self.store_id(&ticket);
                    record.payload = self.encode(data, &record.id, 1)?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    /// Trims `subject`'s sessions to the configured limit after `own` was
    /// written. Every caller computes the same choice from what it lists,
    /// so concurrent logins agree; the last to list settles it.
    async fn enforce_limit(
        &self,
        store: &Arc<dyn SessionStore>,
        subject: &str,
        own: &SessionId,
    ) -> Result<()> {
        let Some((limit, policy)) = self.inner.config.limit else {
            return Ok(());
        };
        let mut records = observe(
            self.inner.backend,
            "list_subject",
            store.list_subject(subject),
        )
        .await?;
        if records.len() <= limit && records.iter().any(|r| r.id == *own) {
            return Ok(());
        }
        match policy {
            // Most recently used first: the expiry moves on every use.
            SessionLimit::EvictLeastRecentlyUsed => {
                records.sort_by_key(|r| std::cmp::Reverse((r.expires_at, r.created_at, r.id)))
            }
            // Oldest first: the sessions that were there keep their place.
            SessionLimit::RefuseNew => records.sort_by_key(|r| (r.created_at, r.id)),
        }
        let kept = records.iter().take(limit).any(|r| r.id == *own);
        for extra in records.iter().skip(limit) {
            self.call("delete", || store.delete(&extra.id)).await?;
            if extra.id != *own {
                self.inner
                    .events
                    .emit(EventKind::Destroyed, Some(subject), Some(&extra.id));
            }
        }
        if !kept {
            // Refused, or evicted at once by more concurrent logins than
            // the limit; make sure our own record is gone either way.
            self.call("delete", || store.delete(own)).await?;
            return Err(Error::TooManySessions { limit });
        }
        Ok(())
    }

    /// The ID the store keeps for a ticket's ID.
    fn store_id(&self, ticket: &SessionId) -> SessionId {
        match &self.inner.config.id_hash {
            Some(hash) => hash.apply(ticket),
            None => *ticket,
        }
    }

    async fn load_record(
        &self,
        store: &Arc<dyn SessionStore>,
        id: &SessionId,
        fresh: bool,
    ) -> Result<Option<Record>> {
        if fresh {
            observe(self.inner.backend, "load_fresh", store.load_fresh(id)).await
        } else {
            observe(self.inner.backend, "load", store.load(id)).await
        }
    }

    /// Moves a session found under its plain ID to its hashed ID: a new
    /// record with the same data, subject and instants, then the old one
    /// removed only if nobody changed it meanwhile (as in a rotation). A
    /// request that loses the race finds the session at its new place.
    async fn move_to_hashed(
        &self,
        store: &Arc<dyn SessionStore>,
        legacy: Record,
        hashed: SessionId,
        ticket: &str,
        now: Timestamp,
    ) -> Result<Option<Session<T>>> {
        let Some(session) = self
            .session_from_record(store, legacy, now, false, Some(ticket))
            .await?
        else {
            return Ok(None);
        };
        let record = Record {
            id: hashed,
            subject: session.subject.clone(),
            payload: self.encode(&session.data, &hashed, 1)?,
            version: 1,
            created_at: session.created_at,
            expires_at: session.expires_at,
        };
        match self.call("create", || store.create(&record)).await {
            Ok(()) => {}
            // Another request moved it first.
            Err(Error::Conflict) => {
                return self
                    .load_hashed_after_move(store, &hashed, ticket, now)
                    .await;
            }
            Err(e) => return Err(e),
        }
        let plain = session.id;
        match self
            .call("compare_and_delete", || {
                store.compare_and_delete(&plain, session.version)
            })
            .await
        {
            Ok(()) => {
                self.session_from_record(store, record, now, false, Some(ticket))
                    .await
            }
            Err(e) => {
                // Changed or ended under its old ID meanwhile: keep that
                // outcome, take the copy back.
                let _ = self.call("delete", || store.delete(&hashed)).await;
                if matches!(e, Error::NotFound | Error::Conflict) {
                    return Ok(None);
                }
                Err(e)
            }
        }
    }

    async fn load_hashed_after_move(
        &self,
        store: &Arc<dyn SessionStore>,
        hashed: &SessionId,
        ticket: &str,
        now: Timestamp,
    ) -> Result<Option<Session<T>>> {
        match self.load_record(store, hashed, true).await? {
            Some(record) => {
                self.session_from_record(store, record, now, false, Some(ticket))
                    .await
            }
            None => Ok(None),
        }
    }

    /// `ticket`: what the client presented, when this record was found
    /// through it; `None` for records found otherwise (listed by subject),
    /// whose ticket this manager does not know.
    async fn session_from_record(
        &self,
        store: &Arc<dyn SessionStore>,
        record: Record,
        now: Timestamp,
        extend: bool,
        ticket: Option<&str>,
    ) -> Result<Option<Session<T>>> {
        if now >= record.created_at + self.inner.config.absolute_timeout {
            // Past the absolute timeout (for instance after the timeout was
            // shortened): gone for good.
            let _ = observe(self.inner.backend, "delete", store.delete(&record.id)).await;
            self.inner.events.emit(
                EventKind::Expired,
                record.subject.as_deref(),
                Some(&record.id),
            );
            return Ok(None);
        }
        let data = match self.decode(&record.payload, &record.id, record.version) {
            Ok(data) => data,
            Err(e) => return self.undecodable(&record.id, e),
        };
        let mut session = Session {
            ticket: Ticket(ticket.unwrap_or_default().to_owned()),
            id: record.id,
            issued_subject: record.subject.clone(),
            subject: record.subject,
            data,
            version: record.version,
            created_at: record.created_at,
            expires_at: record.expires_at,
            ticket_changed: false,
        };
        if extend && let Some(next) = self.idle_extension(record.expires_at, record.created_at, now)
        {
            match observe(self.inner.backend, "touch", store.touch(&record.id, next)).await {
                Ok(()) => {
                    session.expires_at = next;
                    self.inner
                        .counters
                        .extensions
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::NotFound) => return Ok(None),
                // The read succeeded; a failed extension only means the
                // session keeps its current expiry.
                Err(e) => tracing::warn!(
                    session = %record.id.redacted(),
                    error = %e,
                    "could not extend the idle timeout"
                ),
            }
        }
        Ok(Some(session))
    }

    /// Signs a token for `session` as it is now (stateless mode).
    fn issue(
        &self,
        codec: &Arc<dyn TokenCodec>,
        session: &mut Session<T>,
        now: Timestamp,
    ) -> Result<()> {
        let started_at = self.token_start(session, now);
        let (ticket, expires_at) = self.sign(
            codec,
            &session.id,
            session.subject.as_deref(),
            started_at,
            &session.data,
            now,
        )?;
        session.ticket = ticket;
        session.created_at = started_at;
        session.expires_at = expires_at;
        session.ticket_changed = true;
        session.issued_subject.clone_from(&session.subject);
        Ok(())
    }

    /// The session start a token signed now carries: kept across re-issues
    /// and rotations, but restarted when the subject changed (a login): the
    /// new subject's earlier log-out-everywhere must not end a session
    /// that authenticated after it, and an authentication starts the
    /// absolute timeout anew.
    fn token_start<U>(&self, session: &Session<U>, now: Timestamp) -> Timestamp {
        if session.subject == session.issued_subject {
            session.created_at
        } else {
            now
        }
    }

    /// Signs a token carrying `data` for the session `id` of `subject`
    /// that started at `started_at`, as of `now`; changes nothing. Returns
    /// the token and its expiry.
    fn sign(
        &self,
        codec: &Arc<dyn TokenCodec>,
        id: &SessionId,
        subject: Option<&str>,
        started_at: Timestamp,
        data: &T,
        now: Timestamp,
    ) -> Result<(Ticket, Timestamp)> {
        let c = &self.inner.config;
        let data = serde_json::to_value(data).map_err(Error::encode)?;
        let size = json_len(&data)?;
        if size > c.max_payload {
            return Err(Error::TooLarge {
                size,
                limit: c.max_payload,
            });
        }
        let expires_at = self.token_deadline(now, started_at);
        let claims = TokenClaims {
            jti: *id,
            subject: subject.map(str::to_owned),
            issued_at: now,
            expires_at,
            not_before: None,
            session_started_at: started_at,
            schema: c.schema,
            data,
        };
        Ok((Ticket(codec.encode(&claims)?), expires_at))
    }

    /// The last instant any token of this session can be valid.
    fn token_lifetime_end(&self, session: &Session<T>, codec: &dyn TokenCodec) -> Timestamp {
        session
            .expires_at
            .max(session.created_at + self.inner.config.absolute_timeout)
            + codec.leeway()
    }
}

/// Upper bound on `delete_subject` passes in `destroy_subject`: each pass
/// after the first only finds sessions rotated or created during the
/// previous one.
const DELETE_SUBJECT_PASSES: usize = 4;

/// The length of `value` serialized as JSON, counted without building it.
fn json_len(value: &serde_json::Value) -> Result<usize> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(Error::encode)?;
    Ok(count.0)
}

/// Full-jitter exponential backoff: up to 1 ms × 2^attempt, capped at 100 ms.
/// Runs `call` again, after a jittered backoff, while the backend reports
/// that it rolled the call back without applying it ([`Error::Aborted`]),
/// at most `retries` more times.
pub(crate) async fn retry_aborted<R, F, Fut>(retries: u32, mut call: F) -> Result<R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(Error::Aborted(_)) if attempt < retries => {
                backoff(attempt).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn backoff(attempt: u32) {
    let cap_us = (1_000u64 << attempt.min(7)).min(100_000);
    let wait = rand::rng().random_range(0..=cap_us);
    tokio::time::sleep(Duration::from_micros(wait)).await;
}

#[cfg(test)]
mod tests {
    use super::json_len;

    #[test]
    fn json_len_matches_the_serialized_length() {
        for v in [
            serde_json::json!(null),
            serde_json::json!({"user": "ü\"\\\n", "n": [1, 2.5, -3], "deep": {"a": {"b": []}}}),
            serde_json::json!("x".repeat(5000)),
        ] {
            assert_eq!(json_len(&v).unwrap(), serde_json::to_vec(&v).unwrap().len());
        }
    }
}
