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
/// - `list_subject` / `delete_subject` see every live record of one subject
///   and only those;
/// - `delete_expired` purges expired records for stores without native TTL
///   and returns how many it removed (stores with native expiry return 0).
///
/// [`Error::Conflict`]: crate::Error::Conflict
/// [`Error::NotFound`]: crate::Error::NotFound
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
