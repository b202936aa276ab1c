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
/// - `create` inserts; a live record with the same ID is [`Error::Conflict`],
///   never an overwrite;
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
