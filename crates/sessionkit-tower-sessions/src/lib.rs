//! # sessionkit-tower-sessions
//!
//! [tower-sessions]' `SessionStore` over any sessionkit
//! [`SessionStore`]: applications built on tower-sessions' `Session`, and
//! on [axum-login], which is built on it, keep their code and get
//! sessionkit's stores underneath — the bounded memory store, the coherent
//! `CachedStore`, Redis and Redis Cluster, SQLite, PostgreSQL and
//! MySQL/MariaDB.
//!
//! ```
//! use sessionkit_memory::MemoryStore;
//! use sessionkit_tower_sessions::TowerSessionsStore;
//! use tower_sessions::SessionManagerLayer;
//!
//! // Any sessionkit store: `RedisStore`, `SqlStore`, `CachedStore<…>`, …
//! let store = TowerSessionsStore::new(MemoryStore::new());
//! let layer = SessionManagerLayer::new(store).with_secure(false);
//! // `Router::new().route(..).layer(layer)`, or hand it to axum-login's
//! // `AuthManagerLayerBuilder::new(backend, layer)`.
//! # let _ = layer;
//! ```
//!
//! ## Supported versions
//!
//! The adapter implements the traits of **tower-sessions-core 0.14**
//! (re-exported as [`tower_sessions_core`]), which is what
//! **tower-sessions 0.14** is built on (it pins `=0.14.0`) and therefore
//! **axum-login 0.18** (it depends on tower-sessions 0.14). tower-sessions
//! 0.15 pins tower-sessions-core `=0.15.0`, a distinct crate version whose
//! trait is a different Rust trait (with the same methods): it is not
//! supported by this release.
//!
//! ## How a tower-sessions record is stored
//!
//! | tower-sessions `Record` | sessionkit [`Record`] |
//! |---|---|
//! | `id: Id(i128)` | `id`: [`store_id`]`(id)`, the first 16 bytes of SHA-256 over a domain tag and the ID |
//! | `data: HashMap<String, serde_json::Value>` | `payload`: that map as a JSON object |
//! | `expiry_date: OffsetDateTime` | `expires_at` (whole milliseconds, rounded down) |
//! | — | `subject`: `None`, or what [`TowerSessionsStore::with_subject`] derives from the data |
//! | — | `version`, `created_at`: kept by the store |
//!
//! The store never holds the tower-sessions ID itself, only its hash, so a
//! dump of the store (a Redis `SCAN`, a SQL backup, a log line with a key)
//! yields no cookie that would open a session: the ID is 128 random bits,
//! and the hash cannot be turned back into it. Use [`store_id`] to find the
//! stored record of a session whose cookie you hold (an admin tool, a test).
//!
//! ## Operations
//!
//! - `create` inserts with sessionkit's `create`, which never overwrites a
//!   live session: on a collision it draws a new `Id` and tries again, as
//!   tower-sessions asks of its stores (bounded, so a store that always
//!   answers "conflict" gives an error instead of a hang).
//! - `load` returns only live records (every sessionkit store guarantees
//!   it, whatever its expiry mechanism).
//! - `save` — see below.
//! - `delete` is sessionkit's `delete`: idempotent, removes the record from
//!   the subject index too.
//! - [`ExpiredDeletion::delete_expired`] is the store's `delete_expired`:
//!   SQL stores purge expired rows, stores with native expiry (Redis,
//!   memory) have nothing to do. With the `deletion-task` feature,
//!   tower-sessions' `continuously_delete_expired` task is available.
//!
//! ## Saves are blind
//!
//! tower-sessions' `save(&Record)` carries no version: the `Session` that
//! calls it has no notion of "the state I loaded". So no compare-and-swap
//! can go through its API, and two concurrent requests of one user that
//! both change the session still lose one of the two changes — the
//! adapter cannot see that they raced. What `save` does:
//!
//! 1. load the stored record's current version (`load`; on a retry
//!    `load_fresh`, so that a cache in front cannot hand it the same stale
//!    version again);
//! 2. write the whole record with sessionkit's compare-and-swap `save` on
//!    that version;
//! 3. if another write got in between (or the backend aborted the
//!    transaction), go back to 1, up to 8 times, then give up with a
//!    `Backend` error.
//!
//! This gives exactly tower-sessions' semantics for the data — **last
//! writer wins**, each save replaces the whole map — and:
//!
//! - **an ended session stays ended.** A `save` of a session that is no
//!   longer in the store (logged out by another request, ended by
//!   `delete_subject`, rotated away by `cycle_id`, expired) writes nothing
//!   and returns `Ok`: the next request with that cookie finds no session.
//!   tower-sessions' memory, moka and sqlx stores upsert instead, so with
//!   them a slow request that loaded the session before a logout writes it
//!   back afterwards, logged in.
//! - **one atomic write per save**: the data, the expiry and the subject
//!   change together, on every backend; a save never creates a record
//!   (only `create` does, with collision checks).
//!
//! Applications that need updates that are never lost under concurrency
//! should use sessionkit's own `SessionManager` (its `update` retries a
//! read-modify-write on conflict) for that data.
//!
//! ## What carries over from sessionkit
//!
//! - the stores and their guarantees: bounded memory, SQL with its
//!   migrations and timeouts, Redis and **Redis Cluster**, each passing
//!   sessionkit's conformance suite;
//! - the **coherent cache**: wrap any store in `CachedStore` (with an
//!   invalidation channel) and every instance's cache drops a session the
//!   moment another instance changes or deletes it — tower-sessions'
//!   `CachingSessionStore` has no cross-instance invalidation;
//! - **typed errors**, mapped without losing their text: encoding failures
//!   (and a payload over the store's size limit) become
//!   `session_store::Error::Encode`, unreadable stored records
//!   `Decode`, everything else `Backend`, with the whole source chain in
//!   the message;
//! - **expiry cleanup** through `ExpiredDeletion`;
//! - **log out everywhere**, with [`TowerSessionsStore::with_subject`]: the
//!   records are indexed by user, and `store().delete_subject(user)` ends
//!   every session of that user at once (`list_subject` lists them).
//!
//! ## What does not carry over
//!
//! - compare-and-swap and `update` retries (see above);
//! - sessionkit's typed, schema-versioned payloads and their encryption at
//!   rest: tower-sessions hands the store a JSON map, stored as is;
//! - the absolute timeout and the touch interval: tower-sessions computes
//!   the expiry itself and saves on every modified request (or on every
//!   request with `always_save`);
//! - sessionkit's session IDs and rotation: the cookie holds
//!   tower-sessions' ID, and `cycle_id` is tower-sessions' delete-then-create
//!   (not sessionkit's atomic rotation).
//!
//! [tower-sessions]: https://docs.rs/tower-sessions/0.14
//! [axum-login]: https://docs.rs/axum-login/0.18
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp, validate_subject};
use sha2::{Digest, Sha256};
use tower_sessions_core::session::{Id, Record as TowerRecord};
use tower_sessions_core::session_store::{self, ExpiredDeletion};

pub use tower_sessions_core;

/// How many times `create` draws a new ID after a collision (or retries an
/// aborted transaction) before it gives up.
const CREATE_ATTEMPTS: usize = 16;

/// How many times `save` reloads the version and writes again after a
/// concurrent write (or an aborted transaction) before it gives up.
const SAVE_ATTEMPTS: usize = 8;

/// Domain separation of the ID hash.
const ID_HASH_DOMAIN: &[u8] = b"sessionkit-tower-sessions/v1/id\0";

/// tower-sessions' session data: what `Session::insert` writes.
pub type Data = HashMap<String, serde_json::Value>;

type SubjectFn = dyn Fn(&Data) -> Option<String> + Send + Sync;

/// The key under which the session with tower-sessions ID `id` is stored:
/// the first 16 bytes of SHA-256 over a fixed domain tag and the ID's 16
/// little-endian bytes.
///
/// Deterministic and one-way: the store never holds a working
/// tower-sessions ID, and whoever holds the cookie can find the record.
///
/// ```
/// use sessionkit_tower_sessions::store_id;
/// use tower_sessions_core::session::Id;
///
/// let id = Id(42);
/// assert_eq!(store_id(&id), store_id(&Id(42)));
/// assert_ne!(store_id(&id), store_id(&Id(43)));
/// // Not the ID's own bytes:
/// assert_ne!(store_id(&id).to_bytes(), 42i128.to_le_bytes());
/// ```
pub fn store_id(id: &Id) -> SessionId {
    let digest = Sha256::new()
        .chain_update(ID_HASH_DOMAIN)
        .chain_update(id.0.to_le_bytes())
        .finalize();
    let mut raw = [0u8; sessionkit_core::ID_BYTES];
    raw.copy_from_slice(&digest[..sessionkit_core::ID_BYTES]);
    SessionId::from_bytes(raw)
}

/// A tower-sessions `SessionStore` (and `ExpiredDeletion`) over the
/// sessionkit store `S`.
///
/// `S` is any [`SessionStore`]; the default, `dyn SessionStore`, is for an
/// `Arc<dyn SessionStore>` chosen at run time ([`TowerSessionsStore::from_arc`]).
/// Cloning is cheap (two `Arc`s).
///
/// See the [crate documentation](crate) for what each operation does and
/// what a save guarantees.
///
/// ```
/// use std::sync::Arc;
/// use sessionkit_core::SessionStore;
/// use sessionkit_memory::MemoryStore;
/// use sessionkit_tower_sessions::TowerSessionsStore;
///
/// // Concrete:
/// let typed: TowerSessionsStore<MemoryStore> = TowerSessionsStore::new(MemoryStore::new());
/// // Chosen at run time:
/// let chosen: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
/// let dynamic: TowerSessionsStore = TowerSessionsStore::from_arc(chosen);
/// # let _ = (typed, dynamic);
/// ```
pub struct TowerSessionsStore<S: ?Sized = dyn SessionStore> {
    store: Arc<S>,
    subject: Option<Arc<SubjectFn>>,
}

impl<S: SessionStore> TowerSessionsStore<S> {
    /// Serves tower-sessions from `store`.
    pub fn new(store: S) -> Self {
        Self::from_arc(Arc::new(store))
    }
}

impl<S: SessionStore + ?Sized> TowerSessionsStore<S> {
    /// Serves tower-sessions from a shared store, for instance an
    /// `Arc<dyn SessionStore>` that sessionkit's own `SessionManager` also
    /// uses.
    pub fn from_arc(store: Arc<S>) -> Self {
        TowerSessionsStore {
            store,
            subject: None,
        }
    }

    /// Derives each record's subject (the user it belongs to) from the
    /// session data, on every `create` and `save`: the store then indexes
    /// sessions by user, and [`SessionStore::delete_subject`] on
    /// [`store()`](Self::store) logs a user out everywhere.
    ///
    /// The function returns `None` for a session without a user (before
    /// login, after logout). A subject that sessionkit refuses (empty,
    /// over 256 bytes, with control characters) fails the write with an
    /// `Encode` error, so a mistake shows at once.
    ///
    /// With axum-login, whose data lives under the builder's data key
    /// (`with_data_key`, `"axum-login.data"` by default) as
    /// `{"user_id": …, "auth_hash": …}`:
    ///
    /// ```
    /// use sessionkit_memory::MemoryStore;
    /// use sessionkit_tower_sessions::TowerSessionsStore;
    ///
    /// let store = TowerSessionsStore::new(MemoryStore::new()).with_subject(|data| {
    ///     let user_id = data.get("axum-login.data")?.get("user_id")?;
    ///     match user_id {
    ///         serde_json::Value::Null => None,
    ///         serde_json::Value::String(s) => Some(s.clone()),
    ///         other => Some(other.to_string()),
    ///     }
    /// });
    /// # let _ = store;
    /// ```
    pub fn with_subject<F>(mut self, subject: F) -> Self
    where
        F: Fn(&Data) -> Option<String> + Send + Sync + 'static,
    {
        self.subject = Some(Arc::new(subject));
        self
    }

    /// The sessionkit store underneath: for `delete_subject`,
    /// `list_subject`, or sessionkit's own `SessionManager` on the same
    /// store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    fn subject_of(&self, data: &Data) -> session_store::Result<Option<String>> {
        let Some(derive) = &self.subject else {
            return Ok(None);
        };
        match derive(data) {
            Some(subject) => match validate_subject(&subject) {
                Ok(()) => Ok(Some(subject)),
                Err(err) => Err(session_store::Error::Encode(format!(
                    "the subject derived from the session data is refused: {err}"
                ))),
            },
            None => Ok(None),
        }
    }
}

impl<S: ?Sized> Clone for TowerSessionsStore<S> {
    fn clone(&self) -> Self {
        TowerSessionsStore {
            store: Arc::clone(&self.store),
            subject: self.subject.clone(),
        }
    }
}

impl<S: SessionStore + ?Sized> fmt::Debug for TowerSessionsStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerSessionsStore")
            .field("backend", &self.store.backend_name())
            .field("subject", &self.subject.is_some())
            .finish()
    }
}

/// An error's message followed by its sources, `": "`-separated.
fn message(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Maps a sessionkit error onto tower-sessions' three kinds, keeping the
/// whole message.
fn to_tower(err: Error) -> session_store::Error {
    let text = message(&err);
    match err {
        Error::Encode(_) | Error::TooLarge { .. } | Error::InvalidSubject => {
            session_store::Error::Encode(text)
        }
        Error::Decode(_) => session_store::Error::Decode(text),
        _ => session_store::Error::Backend(text),
    }
}

fn encode(data: &Data) -> session_store::Result<Vec<u8>> {
    serde_json::to_vec(data).map_err(|e| {
        session_store::Error::Encode(format!("could not encode the session data as JSON: {e}"))
    })
}

fn decode(payload: &[u8]) -> session_store::Result<Data> {
    serde_json::from_slice(payload).map_err(|e| {
        session_store::Error::Decode(format!(
            "the stored session is not a tower-sessions JSON map: {e}"
        ))
    })
}

#[async_trait]
impl<S: SessionStore + ?Sized> session_store::SessionStore for TowerSessionsStore<S> {
    async fn create(&self, record: &mut TowerRecord) -> session_store::Result<()> {
        let template = Record::new(
            store_id(&record.id),
            self.subject_of(&record.data)?,
            encode(&record.data)?,
            Timestamp::now(),
            Timestamp::from(record.expiry_date),
        );
        for _ in 0..CREATE_ATTEMPTS {
            let stored = Record {
                id: store_id(&record.id),
                ..template.clone()
            };
            match self.store.create(&stored).await {
                Ok(()) => return Ok(()),
                Err(Error::Conflict) => {
                    // A live session already has this ID: draw another one.
                    tracing::warn!("tower-sessions ID collision; drawing a new ID");
                    record.id = Id::default();
                }
                // Nothing was written; the same call may succeed now.
                Err(Error::Aborted(_)) => {}
                Err(err) => return Err(to_tower(err)),
            }
        }
        Err(session_store::Error::Backend(format!(
            "could not create the session: {CREATE_ATTEMPTS} attempts met an existing \
             session or an aborted transaction"
        )))
    }

    async fn save(&self, record: &TowerRecord) -> session_store::Result<()> {
        let id = store_id(&record.id);
        let subject = self.subject_of(&record.data)?;
        let payload = encode(&record.data)?;
        let expires_at = Timestamp::from(record.expiry_date);
        let mut fresh = false;
        for _ in 0..SAVE_ATTEMPTS {
            let current = if fresh {
                self.store.load_fresh(&id).await
            } else {
                self.store.load(&id).await
            }
            .map_err(to_tower)?;
            let Some(current) = current else {
                tracing::debug!("save of a session that no longer exists: nothing written");
                return Ok(());
            };
            let next = Record {
                id,
                subject: subject.clone(),
                payload: payload.clone().into(),
                version: current.version,
                created_at: current.created_at,
                expires_at,
            };
            match self.store.save(&next).await {
                Ok(_) => return Ok(()),
                // Ended between the load and the save.
                Err(Error::NotFound) => {
                    tracing::debug!("save of a session that just ended: nothing written");
                    return Ok(());
                }
                // Another write got in between, or nothing was written:
                // load the version again, from the source of truth.
                Err(Error::Conflict | Error::Aborted(_)) => fresh = true,
                Err(err) => return Err(to_tower(err)),
            }
        }
        Err(session_store::Error::Backend(format!(
            "could not save the session: {SAVE_ATTEMPTS} attempts met a concurrent write \
             or an aborted transaction"
        )))
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<TowerRecord>> {
        let Some(stored) = self
            .store
            .load(&store_id(session_id))
            .await
            .map_err(to_tower)?
        else {
            return Ok(None);
        };
        Ok(Some(TowerRecord {
            id: *session_id,
            data: decode(&stored.payload)?,
            expiry_date: stored.expires_at.to_offset_date_time(),
        }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.store
            .delete(&store_id(session_id))
            .await
            .map(|_| ())
            .map_err(to_tower)
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> ExpiredDeletion for TowerSessionsStore<S> {
    async fn delete_expired(&self) -> session_store::Result<()> {
        let removed = self.store.delete_expired().await.map_err(to_tower)?;
        tracing::debug!(removed, "expired sessions purged");
        Ok(())
    }
}
