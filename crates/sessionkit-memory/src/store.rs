//! [`MemoryStore`]: sessions kept in this process, in a bounded moka cache.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::ready;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use sessionkit_core::{Error, Record, Result, SessionId, SessionStore, Timestamp, async_trait};

/// Default bound on the number of records in a [`MemoryStore`].
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default bound on the bytes held by a [`MemoryStore`] (256 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// What one record is counted as beyond its payload and subject: the ID,
/// the timestamps, the version and the cache's own bookkeeping.
const ENTRY_OVERHEAD: u64 = 160;
/// Evicted index entries queued before a write checks them.
const EVICTED_BACKLOG: usize = 1024;

type SubjectIndex = HashMap<String, HashSet<SessionId>>;
type EvictedQueue = Arc<Mutex<Vec<(String, SessionId)>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in this module panics while holding a lock; if something
    // ever did, the data (sets of IDs) is still consistent enough to use.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sessions kept in this process's memory, in a bounded
/// [moka](https://docs.rs/moka) cache.
///
/// - **Bounded**: at most [`max_entries`](MemoryStoreBuilder::max_entries)
///   records and about [`max_bytes`](MemoryStoreBuilder::max_bytes) bytes of
///   payload and subject (defaults: [`DEFAULT_MAX_ENTRIES`],
///   [`DEFAULT_MAX_BYTES`]). When full, the least recently used records are
///   evicted: to its owner an evicted session looks logged out, as with any
///   store that runs out of memory. A single record larger than the byte
///   bound is refused with [`Error::TooLarge`].
/// - **Native expiry**: each record expires in the cache at its own
///   `expires_at`, so expired records are purged from memory, not merely
///   hidden; reads also check `expires_at`, so an expired record is never
///   returned even before the purge. [`delete_expired`] therefore returns 0;
///   it runs the cache's pending maintenance.
/// - **Atomic**: `create` (insert if absent), `save` (compare-and-swap on
///   the version) and `compare_and_delete` (delete only the loaded version)
///   run under the cache's per-ID lock, so concurrent writers of one
///   session never lose an update and of two concurrent compare-and-deletes
///   of one version exactly one succeeds.
/// - **Subject index** for `list_subject` and `delete_subject`, kept exact
///   by every write and pruned of evicted records.
///
/// Sessions do not survive a restart and are not shared between processes:
/// use it for development, tests and single-instance deployments, or as
/// the local cache layer in front of a shared store.
///
/// Cloning is cheap and shares the records.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> sessionkit_core::Result<()> {
/// use std::time::Duration;
/// use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};
/// use sessionkit_memory::MemoryStore;
///
/// let store = MemoryStore::new();
/// let now = Timestamp::now();
/// let mut record = Record::new(
///     SessionId::generate(),
///     Some("alice".into()),
///     &b"cart=3"[..],
///     now,
///     now + Duration::from_secs(1800),
/// );
/// store.create(&record).await?;
///
/// // Compare-and-swap: the save carries the version it read.
/// record.payload = (&b"cart=4"[..]).into();
/// record.version = store.save(&record).await?;
/// assert_eq!(record.version, 2);
/// let stale = Record { version: 1, ..record.clone() };
/// assert!(matches!(store.save(&stale).await, Err(Error::Conflict)));
///
/// assert_eq!(store.list_subject("alice").await?.len(), 1);
/// assert_eq!(store.delete_subject("alice").await?, 1);
/// assert!(store.load(&record.id).await?.is_none());
/// # Ok(()) }
/// ```
///
/// [`delete_expired`]: SessionStore::delete_expired
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache<SessionId, Arc<Record>>,
    /// subject → IDs. Exact for every write made through this store;
    /// records evicted by the cache are removed lazily (see `evicted`).
    index: Mutex<SubjectIndex>,
    /// (subject, id) of records the cache evicted on its own; checked and
    /// removed from `index` under the record's key lock.
    evicted: EvictedQueue,
    max_entries: u64,
    max_bytes: u64,
    /// Every record weighs at least this much, so that the byte bound also
    /// bounds the number of entries.
    unit: u64,
}

/// Configures a [`MemoryStore`].
///
/// ```
/// use sessionkit_memory::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .max_entries(10_000)
///     .max_bytes(64 * 1024 * 1024)
///     .build();
/// assert_eq!(store.max_entries(), 10_000);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_entries: u64,
    max_bytes: u64,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl MemoryStoreBuilder {
    /// The most records kept at once (at least 1). Default
    /// [`DEFAULT_MAX_ENTRIES`].
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }

    /// Same as [`max_entries`](Self::max_entries), under moka's name.
    pub fn max_capacity(self, max_entries: u64) -> Self {
        self.max_entries(max_entries)
    }

    /// About how many bytes of payload and subject (plus a fixed per-record
    /// overhead) are kept at once (at least 1). Default
    /// [`DEFAULT_MAX_BYTES`].
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let max_entries = self.max_entries;
        // One weight scale for both bounds: each entry weighs at least
        // `unit`, so `capacity / unit <= max_entries` entries fit, and
        // weights are bytes otherwise.
        let unit = self
            .max_bytes
            .div_ceil(max_entries)
            .clamp(1, u64::from(u32::MAX));
        let capacity = self.max_bytes.min(max_entries.saturating_mul(unit));

        let evicted: EvictedQueue = Arc::default();
        let listener_queue = Arc::clone(&evicted);
        let cache = Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(move |_id: &SessionId, record: &Arc<Record>| {
                u32::try_from(weight(record, unit)).unwrap_or(u32::MAX)
            })
            .expire_after(RecordExpiry)
            .eviction_listener(move |id: Arc<SessionId>, record: Arc<Record>, cause| {
                if let (RemovalCause::Expired | RemovalCause::Size, Some(subject)) =
                    (cause, &record.subject)
                {
                    lock(&listener_queue).push((subject.clone(), *id));
                }
            })
            .build();
        MemoryStore {
            inner: Arc::new(Inner {
                cache,
                index: Mutex::default(),
                evicted,
                max_entries,
                max_bytes: capacity,
                unit,
            }),
        }
    }
}

/// The weight of one record in the cache: its bytes, but at least `unit`.
fn weight(record: &Record, unit: u64) -> u64 {
    let bytes = record.payload.len() as u64
        + record.subject.as_ref().map_or(0, |s| s.len() as u64)
        + ENTRY_OVERHEAD;
    bytes.max(unit)
}

/// Each record expires in the cache at its own `expires_at`.
struct RecordExpiry;

impl RecordExpiry {
    fn until(record: &Record) -> Option<Duration> {
        Some(record.expires_at.remaining_from(Timestamp::now()))
    }
}

impl Expiry<SessionId, Arc<Record>> for RecordExpiry {
    fn expire_after_create(
        &self,
        _id: &SessionId,
        record: &Arc<Record>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Self::until(record)
    }

    fn expire_after_update(
        &self,
        _id: &SessionId,
        record: &Arc<Record>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Self::until(record)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.inner.cache.entry_count())
            .field("max_entries", &self.inner.max_entries)
            .field("max_bytes", &self.inner.max_bytes)
            .finish()
    }
}

impl MemoryStore {
    /// A store with the default bounds ([`DEFAULT_MAX_ENTRIES`] records,
    /// [`DEFAULT_MAX_BYTES`] bytes).
    ///
    /// ```
    /// let store = sessionkit_memory::MemoryStore::new();
    /// assert_eq!(store.entry_count(), 0);
    /// ```
    pub fn new() -> Self {
        MemoryStoreBuilder::default().build()
    }

    /// A builder to choose the bounds.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// The configured bound on the number of records.
    pub fn max_entries(&self) -> u64 {
        self.inner.max_entries
    }

    /// The configured bound on bytes held.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// The number of records held, including expired ones not purged yet.
    /// Approximate until [`run_pending_tasks`](Self::run_pending_tasks) has
    /// run, like every moka count.
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// The bytes held, as counted against [`max_bytes`](Self::max_bytes).
    /// Approximate like [`entry_count`](Self::entry_count).
    pub fn weighted_size(&self) -> u64 {
        self.inner.cache.weighted_size()
    }

    /// Runs the cache's pending maintenance now: purges expired records,
    /// applies the capacity bound and updates the counts. The cache also
    /// does this on its own as it is used.
    pub async fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks().await;
        self.prune_evicted().await;
    }

    fn check_size(&self, record: &Record) -> Result<()> {
        let inner = &self.inner;
        let w = weight(record, inner.unit);
        if w > inner.max_bytes || w > u64::from(u32::MAX) {
            let overhead = w.saturating_sub(record.payload.len() as u64);
            return Err(Error::TooLarge {
                size: record.payload.len(),
                limit: usize::try_from(inner.max_bytes.saturating_sub(overhead))
                    .unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }

    fn index_add(&self, subject: &Option<String>, id: SessionId) {
        if let Some(subject) = subject {
            lock(&self.inner.index)
                .entry(subject.clone())
                .or_default()
                .insert(id);
        }
    }

    fn index_remove(&self, subject: &Option<String>, id: &SessionId) {
        if let Some(subject) = subject {
            let mut index = lock(&self.inner.index);
            if let Some(ids) = index.get_mut(subject) {
                ids.remove(id);
                if ids.is_empty() {
                    index.remove(subject);
                }
            }
        }
    }

    fn indexed(&self, subject: &str) -> Vec<SessionId> {
        lock(&self.inner.index)
            .get(subject)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Removes `id` from `subject`'s index entry unless it is (again) a
    /// live record of that subject; runs under the record's key lock, so
    /// it cannot race with a write of the same ID.
    async fn prune(&self, subject: &str, id: SessionId) {
        let now = Timestamp::now();
        self.inner
            .cache
            .entry(id)
            .and_compute_with(|entry| {
                let current = entry.map(|e| e.into_value());
                let keep = current
                    .as_ref()
                    .is_some_and(|r| r.is_live(now) && r.subject.as_deref() == Some(subject));
                if !keep {
                    self.index_remove(&Some(subject.to_owned()), &id);
                }
                match current {
                    Some(r) if !r.is_live(now) => {
                        self.index_remove(&r.subject, &id);
                        ready(Op::Remove)
                    }
                    _ => ready(Op::Nop),
                }
            })
            .await;
    }

    /// Removes the index entries of records the cache evicted by itself.
    async fn prune_evicted(&self) {
        let evicted = std::mem::take(&mut *lock(&self.inner.evicted));
        for (subject, id) in evicted {
            self.prune(&subject, id).await;
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &Record) -> Result<()> {
        self.check_size(record)?;
        if lock(&self.inner.evicted).len() >= EVICTED_BACKLOG {
            self.prune_evicted().await;
        }
        let now = Timestamp::now();
        let mut outcome = Ok(());
        self.inner
            .cache
            .entry(record.id)
            .and_compute_with(|entry| {
                let op = match entry.map(|e| e.into_value()) {
                    Some(current) if current.is_live(now) => {
                        outcome = Err(Error::Conflict);
                        Op::Nop
                    }
                    expired => {
                        if let Some(old) = expired {
                            self.index_remove(&old.subject, &record.id);
                        }
                        self.index_add(&record.subject, record.id);
                        Op::Put(Arc::new(record.clone()))
                    }
                };
                ready(op)
            })
            .await;
        outcome
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        let now = Timestamp::now();
        Ok(self
            .inner
            .cache
            .get(id)
            .await
            .filter(|r| r.is_live(now))
            .map(|r| Record::clone(&r)))
    }

    async fn save(&self, record: &Record) -> Result<u64> {
        self.check_size(record)?;
        let now = Timestamp::now();
        let mut outcome = Err(Error::NotFound);
        self.inner
            .cache
            .entry(record.id)
            .and_compute_with(|entry| {
                let op = match entry.map(|e| e.into_value()) {
                    Some(current) if current.is_live(now) => match current.version.checked_add(1) {
                        Some(next) if current.version == record.version => {
                            if current.subject != record.subject {
                                self.index_remove(&current.subject, &record.id);
                                self.index_add(&record.subject, record.id);
                            }
                            outcome = Ok(next);
                            Op::Put(Arc::new(Record {
                                version: next,
                                ..record.clone()
                            }))
                        }
                        _ => {
                            outcome = Err(Error::Conflict);
                            Op::Nop
                        }
                    },
                    _ => Op::Nop,
                };
                ready(op)
            })
            .await;
        outcome
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        let now = Timestamp::now();
        let mut outcome = Err(Error::NotFound);
        self.inner
            .cache
            .entry(*id)
            .and_compute_with(|entry| {
                let op = match entry.map(|e| e.into_value()) {
                    Some(current) if current.is_live(now) => {
                        outcome = Ok(());
                        if expires_at > now {
                            Op::Put(Arc::new(Record {
                                expires_at,
                                ..Record::clone(&current)
                            }))
                        } else {
                            // Moved into the past: expired from now on.
                            self.index_remove(&current.subject, id);
                            Op::Remove
                        }
                    }
                    _ => Op::Nop,
                };
                ready(op)
            })
            .await;
        outcome
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let now = Timestamp::now();
        // One atomic removal; the index is updated after it. A write racing
        // with the delete finds no record (NotFound), so it cannot put the
        // ID back into an index.
        Ok(match self.inner.cache.remove(id).await {
            Some(removed) => {
                self.index_remove(&removed.subject, id);
                removed.is_live(now)
            }
            None => false,
        })
    }

    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        let now = Timestamp::now();
        let mut outcome = Err(Error::NotFound);
        // Under the record's key lock, like `save`: a concurrent save,
        // delete, delete_subject or compare_and_delete of this ID runs
        // wholly before or wholly after this closure.
        self.inner
            .cache
            .entry(*id)
            .and_compute_with(|entry| {
                let op = match entry.map(|e| e.into_value()) {
                    Some(current) if current.is_live(now) => {
                        if current.version == version {
                            // The same index removal as `delete`.
                            self.index_remove(&current.subject, id);
                            outcome = Ok(());
                            Op::Remove
                        } else {
                            outcome = Err(Error::Conflict);
                            Op::Nop
                        }
                    }
                    // Missing or expired: NotFound, nothing removed.
                    _ => Op::Nop,
                };
                ready(op)
            })
            .await;
        outcome
    }

    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        let now = Timestamp::now();
        let mut records = Vec::new();
        for id in self.indexed(subject) {
            match self.inner.cache.get(&id).await {
                Some(r) if r.is_live(now) && r.subject.as_deref() == Some(subject) => {
                    records.push(Record::clone(&r));
                }
                _ => self.prune(subject, id).await,
            }
        }
        Ok(records)
    }

    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        let mut removed = 0;
        for id in self.indexed(subject) {
            let now = Timestamp::now();
            let mut hit = false;
            self.inner
                .cache
                .entry(id)
                .and_compute_with(|entry| {
                    let op = match entry.map(|e| e.into_value()) {
                        Some(current) if current.subject.as_deref() == Some(subject) => {
                            hit = current.is_live(now);
                            self.index_remove(&current.subject, &id);
                            Op::Remove
                        }
                        Some(current) if !current.is_live(now) => {
                            self.index_remove(&current.subject, &id);
                            self.index_remove(&Some(subject.to_owned()), &id);
                            Op::Remove
                        }
                        _ => {
                            // Gone, or now belongs to another subject.
                            self.index_remove(&Some(subject.to_owned()), &id);
                            Op::Nop
                        }
                    };
                    ready(op)
                })
                .await;
            removed += u64::from(hit);
        }
        Ok(removed)
    }

    async fn delete_expired(&self) -> Result<u64> {
        // Expiry is native: the cache purges expired records itself. Run
        // its pending maintenance now and drop their index entries.
        self.run_pending_tasks().await;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(subject: Option<&str>, payload: Vec<u8>, ttl: Duration) -> Record {
        let now = Timestamp::now();
        Record::new(
            SessionId::generate(),
            subject.map(str::to_owned),
            payload,
            now,
            now + ttl,
        )
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn index_len(store: &MemoryStore) -> usize {
        lock(&store.inner.index).values().map(HashSet::len).sum()
    }

    #[tokio::test]
    async fn entry_bound_is_enforced() {
        let store = MemoryStore::builder().max_entries(50).build();
        let mut last = None;
        for i in 0..500 {
            let r = record(Some("bounded"), vec![i as u8; 10], HOUR);
            store.create(&r).await.unwrap();
            last = Some(r);
        }
        store.run_pending_tasks().await;
        assert!(
            store.entry_count() <= 50,
            "{} entries held",
            store.entry_count()
        );
        let listed = store.list_subject("bounded").await.unwrap();
        assert!(!listed.is_empty() && listed.len() <= 50, "{}", listed.len());
        // LRU: the newest record survives.
        let last = last.unwrap();
        assert_eq!(store.load(&last.id).await.unwrap(), Some(last));
        // The subject index is pruned of evicted records.
        assert!(index_len(&store) <= 50, "index holds {}", index_len(&store));
    }

    #[tokio::test]
    async fn byte_bound_is_enforced_and_oversized_records_are_refused() {
        let store = MemoryStore::builder()
            .max_entries(1_000)
            .max_bytes(100 * 1024)
            .build();
        for _ in 0..100 {
            store
                .create(&record(None, vec![7; 4096], HOUR))
                .await
                .unwrap();
        }
        store.run_pending_tasks().await;
        assert!(
            store.weighted_size() <= 100 * 1024,
            "{}",
            store.weighted_size()
        );
        assert!(store.entry_count() <= 25, "{}", store.entry_count());

        let huge = record(None, vec![0; 200 * 1024], HOUR);
        assert!(matches!(
            store.create(&huge).await,
            Err(Error::TooLarge { size, .. }) if size == 200 * 1024
        ));
        assert_eq!(store.load(&huge.id).await.unwrap(), None);

        let mut small = record(None, vec![1; 10], HOUR);
        store.create(&small).await.unwrap();
        small.payload = vec![0; 200 * 1024].into();
        assert!(matches!(
            store.save(&small).await,
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(store.load(&small.id).await.unwrap().unwrap().version, 1);
    }

    #[tokio::test]
    async fn expired_records_are_purged_not_hidden() {
        let store = MemoryStore::new();
        let live = record(Some("purge"), b"live".to_vec(), HOUR);
        store.create(&live).await.unwrap();
        let mut short = Vec::new();
        for _ in 0..20 {
            let r = record(Some("purge"), b"short".to_vec(), Duration::from_millis(200));
            store.create(&r).await.unwrap();
            short.push(r);
        }
        store.run_pending_tasks().await;
        assert_eq!(store.entry_count(), 21);
        assert_eq!(index_len(&store), 21);

        let deadline = short[19].expires_at + Duration::from_millis(100);
        tokio::time::sleep(deadline.remaining_from(Timestamp::now())).await;
        // Hidden at once ...
        for r in &short {
            assert_eq!(store.load(&r.id).await.unwrap(), None);
        }
        // ... and purged from memory and from the subject index by the
        // cache's maintenance (moka's timer wheel ticks about once a
        // second, so poll, bounded).
        let mut purged = false;
        for _ in 0..50 {
            assert_eq!(store.delete_expired().await.unwrap(), 0);
            if store.entry_count() == 1 && index_len(&store) == 1 {
                purged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            purged,
            "expired records still held: {} entries, {} indexed",
            store.entry_count(),
            index_len(&store)
        );
        for r in &short {
            assert_eq!(store.load(&r.id).await.unwrap(), None);
        }
        assert_eq!(store.list_subject("purge").await.unwrap(), vec![live]);
    }

    #[tokio::test]
    async fn index_follows_subject_changes_and_deletes() {
        let store = MemoryStore::new();
        let mut r = record(Some("a"), b"x".to_vec(), HOUR);
        store.create(&r).await.unwrap();
        r.subject = Some("b".into());
        r.version = store.save(&r).await.unwrap();
        assert_eq!(lock(&store.inner.index).keys().collect::<Vec<_>>(), ["b"]);
        store.delete(&r.id).await.unwrap();
        assert_eq!(index_len(&store), 0);
        assert!(lock(&store.inner.index).is_empty());
    }

    #[tokio::test]
    async fn compare_and_delete_removes_only_the_given_version_and_its_index_entry() {
        let store = MemoryStore::new();
        let mut r = record(Some("cad"), b"x".to_vec(), HOUR);
        store.create(&r).await.unwrap();
        r.version = store.save(&r).await.unwrap();
        // A stale version: Conflict, nothing removed, still indexed.
        assert!(matches!(
            store.compare_and_delete(&r.id, 1).await,
            Err(Error::Conflict)
        ));
        assert_eq!(store.load(&r.id).await.unwrap().unwrap().version, 2);
        assert_eq!(index_len(&store), 1);
        // The current version: removed, and gone from the subject index.
        store.compare_and_delete(&r.id, 2).await.unwrap();
        assert_eq!(store.load(&r.id).await.unwrap(), None);
        assert!(lock(&store.inner.index).is_empty());
        assert!(store.list_subject("cad").await.unwrap().is_empty());
        // Gone: NotFound.
        assert!(matches!(
            store.compare_and_delete(&r.id, 2).await,
            Err(Error::NotFound)
        ));
        // Expired: NotFound, and never a removal of a live record.
        let short = record(Some("cad"), b"y".to_vec(), Duration::from_millis(20));
        store.create(&short).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(matches!(
            store.compare_and_delete(&short.id, 1).await,
            Err(Error::NotFound)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_compare_and_deletes_and_saves_admit_exactly_one() {
        for _ in 0..50 {
            let store = MemoryStore::new();
            let r = record(Some("race"), b"0".to_vec(), HOUR);
            store.create(&r).await.unwrap();
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let mut tasks = Vec::new();
            for i in 0..8 {
                let (store, r, barrier) = (store.clone(), r.clone(), Arc::clone(&barrier));
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    if i % 2 == 0 {
                        store.compare_and_delete(&r.id, 1).await.is_ok()
                    } else {
                        store.save(&r).await.is_ok()
                    }
                }));
            }
            let mut winners = 0;
            for t in tasks {
                winners += usize::from(t.await.unwrap());
            }
            assert_eq!(winners, 1, "exactly one of the version-1 writers wins");
            let left = store.load(&r.id).await.unwrap();
            let listed = store.list_subject("race").await.unwrap();
            assert_eq!(listed.len(), usize::from(left.is_some()));
            assert_eq!(index_len(&store), usize::from(left.is_some()));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_of_one_id_admit_exactly_one() {
        let store = MemoryStore::new();
        let id = SessionId::generate();
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let now = Timestamp::now();
                let r = Record::new(id, None, vec![i], now, now + HOUR);
                store.create(&r).await.is_ok()
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_cas_saves_admit_exactly_one_per_version() {
        let store = MemoryStore::new();
        let r = record(None, b"0".to_vec(), HOUR);
        store.create(&r).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = store.clone();
            let r = r.clone();
            tasks.push(tokio::spawn(async move { store.save(&r).await }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(v) => {
                    assert_eq!(v, 2);
                    ok += 1;
                }
                Err(Error::Conflict) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(ok, 1);
    }
}
