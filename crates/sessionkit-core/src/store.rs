//! The [`SessionStore`] contract that every backend implements.

use async_trait::async_trait;

use crate::error::Result;
use crate::id::SessionId;
use crate::record::Record;
use crate::timestamp::Timestamp;

/// Where stateful sessions live. Object safe: `Arc<dyn SessionStore>` works.
///
/// Every backend must pass the conformance suite in `sessionkit-testkit`,
/// which checks each rule below case by case, against a reference model, and
/// under concurrency.
///
/// Rules:
/// - a record is *live* while `expires_at > now`; an expired record is never
///   returned by any method, whatever the backend's TTL mechanism, and never
///   blocks a `create`;
/// - `create` inserts every field as given, the version included (so a copy
///   between stores keeps compare-and-swap intact); a live record with the
///   same ID is [`Error::Conflict`], never an overwrite;
/// - `save` is compare-and-swap on `version`: it succeeds only when the stored
///   version equals `record.version`, writes every field of `record` (except
///   `id`) with `version + 1`, and returns that new version; a different
///   stored version is [`Error::Conflict`]; a missing or expired record is
///   [`Error::NotFound`] (never a silent no-op, never a re-create);
/// - `touch` moves `expires_at` of a live record without touching its payload
///   or version; missing or expired is [`Error::NotFound`];
/// - `delete` is idempotent and reports whether a live record was removed;
/// - `compare_and_delete` removes a live record only while its stored
///   version is still the given one: a different version is
///   [`Error::Conflict`] and a missing or expired record is
///   [`Error::NotFound`], and in both cases nothing is removed. It must be
///   atomic against `save`, `delete`, `delete_subject` and other
///   `compare_and_delete` calls on the same ID: of two concurrent
///   compare-and-deletes of one version, exactly one returns `Ok`. It is
///   what makes a rotation atomic against every concurrent end of the
///   session (see `SessionManager::rotate`);
/// - `list_subject` / `delete_subject` see every live record of one subject
///   and only those; once `create` of a record with a subject has returned,
///   `list_subject` lists it (while it is live) and `delete_subject` removes
///   it, even when the two race;
/// - a stored record that cannot be read back (corrupted bytes, a row that
///   fails to decode) is an [`Error::Decode`] for `load`, and is skipped,
///   with a `tracing` warning, by `list_subject` (one bad record must not
///   hide a user's other sessions); `delete_subject` still removes it;
/// - `load_fresh` is `load`, answered by the backend itself: a store that
///   caches (such as a cached store in front of another) must not answer it
///   from the cache. The default implementation calls `load`, which is
///   right for every store that does not cache;
/// - `delete_expired` purges expired records for stores without native TTL
///   and returns how many it removed (stores with native expiry return 0).
///
/// [`Error::Conflict`]: crate::Error::Conflict
/// [`Error::NotFound`]: crate::Error::NotFound
/// [`Error::Decode`]: crate::Error::Decode
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a new record.
    async fn create(&self, record: &Record) -> Result<()>;

    /// Loads a live record.
    async fn load(&self, id: &SessionId) -> Result<Option<Record>>;

    /// Compare-and-swap write; returns the new version.
    async fn save(&self, record: &Record) -> Result<u64>;

    /// Moves the expiry of a live record.
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()>;

    /// Removes a record; `true` when a live record was removed.
    async fn delete(&self, id: &SessionId) -> Result<bool>;

    /// Removes a live record only if its stored version is `version`
    /// (compare-and-delete). [`Error::Conflict`](crate::Error::Conflict)
    /// when the stored version differs,
    /// [`Error::NotFound`](crate::Error::NotFound) when there is no live
    /// record; nothing is removed in either case.
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()>;

    /// A short, constant name of the backend ("memory", "redis",
    /// "postgres", …) for tracing spans and metrics labels. Default:
    /// `"custom"`.
    fn backend_name(&self) -> &'static str {
        "custom"
    }

    /// Loads a live record from the source of truth, bypassing any cache.
    /// For security decisions (a privileged action, a password change)
    /// that must not act on a session another instance already ended.
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        self.load(id).await
    }

    /// Every live record of `subject`.
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>>;

    /// Removes every record of `subject`; returns how many live ones were
    /// removed.
    async fn delete_subject(&self, subject: &str) -> Result<u64>;

    /// Purges expired records (stores without native expiry); returns how
    /// many were removed.
    async fn delete_expired(&self) -> Result<u64>;

    /// One page of the store's live records, for enumerating them all
    /// (copying sessions to another store, audits). Start with `None` and
    /// pass each page's [`ScanPage::next`] until it is `None`. A record live
    /// for the whole enumeration is returned at least once (possibly twice:
    /// consumers must be idempotent); records created or removed meanwhile
    /// may or may not appear; expired records never do. `limit` bounds the
    /// page (a store may return fewer, even none with a `next` cursor). A
    /// cursor is a plain string, so an interrupted enumeration can resume
    /// from the last one it saw, in another process.
    ///
    /// The default is [`Error::Unsupported`](crate::Error::Unsupported); every sessionkit store
    /// implements it.
    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        let _ = (cursor, limit);
        Err(crate::Error::Unsupported(
            "this store cannot enumerate its sessions",
        ))
    }
}

/// Where a [`SessionStore::scan`] goes on: opaque to callers, but a plain
/// string that can be saved and handed back later.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScanCursor(String);

impl ScanCursor {
    /// A cursor from its text (as saved from [`ScanCursor::as_str`]).
    pub fn new(text: impl Into<String>) -> Self {
        ScanCursor(text.into())
    }
    /// The cursor as text, to save for a later resume.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ScanCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A cursor may embed a (store-side) ID: show only a prefix.
        let shown: String = self.0.chars().take(6).collect();
        write!(f, "ScanCursor({shown}…)")
    }
}

/// One page of [`SessionStore::scan`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanPage {
    /// Live records of this page.
    pub records: Vec<Record>,
    /// Where the next page starts; `None` when the enumeration is complete.
    pub next: Option<ScanCursor>,
}

impl ScanPage {
    /// A page (for store implementations).
    pub fn new(records: Vec<Record>, next: Option<ScanCursor>) -> Self {
        ScanPage { records, next }
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    async fn create(&self, record: &Record) -> Result<()> {
        (**self).create(record).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        (**self).load(id).await
    }
    async fn save(&self, record: &Record) -> Result<u64> {
        (**self).save(record).await
    }
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        (**self).touch(id, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        (**self).delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        (**self).compare_and_delete(id, version).await
    }
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        (**self).load_fresh(id).await
    }
    fn backend_name(&self) -> &'static str {
        (**self).backend_name()
    }
    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        (**self).scan(cursor, limit).await
    }
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        (**self).list_subject(subject).await
    }
    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        (**self).delete_subject(subject).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        (**self).delete_expired().await
    }
}
