//! [`MemoryStore`]: sessions kept in this process, in sharded hash maps
//! with a per-shard LRU list and one global weight bound.
//!
//! How it is built (the crate documentation says why):
//!
//! - The records live in `shards.len()` shards (a power of two, at most
//!   [`MAX_SHARDS`]); a record's shard is picked by bits of a keyed SipHash
//!   of its ID, computed once per operation and reused as the hash-map hash
//!   (the map's hasher passes it through), so every operation hashes the ID
//!   exactly once.
//! - A shard is a `std::sync::Mutex` around a hash map from ID to a slot in
//!   a slab of nodes, and the nodes form a doubly linked list in order of
//!   use (head = most recently used). Every operation on one ID runs in one
//!   critical section of its shard: that is what makes `create`, `save`,
//!   `touch`, `delete` and `compare_and_delete` atomic. Nothing in a
//!   critical section allocates except a new subject string or a growing
//!   map, and nothing awaits.
//! - The bounds are one weighted capacity (as moka's weigher did before):
//!   a record weighs its payload and subject bytes plus [`ENTRY_OVERHEAD`],
//!   and at least `unit = max_bytes / max_entries`, so that the byte bound
//!   also bounds the number of records. The total is one atomic counter;
//!   a write that pushes it over the capacity evicts least recently used
//!   records, from its own shard first, after leaving its critical section.
//! - Expiry is checked on every read and write; expired records are
//!   removed when an operation finds them, from the LRU end of a shard on
//!   every write to it, and all at once by `delete_expired` /
//!   `run_pending_tasks`.
//! - The subject index is sharded by subject. It is only changed inside the
//!   critical section of the record's shard (lock order: record shard, then
//!   subject shard), so it is exact: an ID is indexed under a subject if
//!   and only if the store holds a record of that ID with that subject.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sessionkit_core::{
    Error, Record, Result, ScanCursor, ScanPage, SessionId, SessionStore, Timestamp, async_trait,
};

/// Default bound on the number of records in a [`MemoryStore`].
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default bound on the bytes held by a [`MemoryStore`] (256 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The most shards a [`MemoryStore`] has.
pub const MAX_SHARDS: usize = 64;
/// What one record is counted as beyond its payload and subject: the ID,
/// the timestamps, the version, its node, its hash-map slot.
const ENTRY_OVERHEAD: u64 = 160;
/// A store gets one shard per this many records of `max_entries` (rounded
/// to a power of two, at most [`MAX_SHARDS`]): small stores have few
/// shards, so that their LRU order is close to exact.
const ENTRIES_PER_SHARD: u64 = 128;
/// Expired records at the LRU end of a shard that one write removes.
const PURGE_PER_WRITE: usize = 2;
/// "No node" in the LRU links.
const NIL: u32 = u32::MAX;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in this module panics while holding a lock; if something
    // ever did, every critical section leaves the shard consistent before
    // it can panic (links are updated before the map), so use it anyway.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sessions kept in this process's memory: bounded, with per-record expiry,
/// compare-and-swap and a subject index.
///
/// - **Bounded**: at most [`max_entries`](MemoryStoreBuilder::max_entries)
///   records and about [`max_bytes`](MemoryStoreBuilder::max_bytes) bytes of
///   payload and subject (defaults: [`DEFAULT_MAX_ENTRIES`],
///   [`DEFAULT_MAX_BYTES`]). When full, the least recently used records are
///   evicted (exactly LRU within each shard, approximately across shards):
///   to its owner an evicted session looks logged out, as with any store
///   that runs out of memory. A single record larger than the byte bound is
///   refused with [`Error::TooLarge`].
/// - **Expiry**: a record is never returned once its `expires_at` has
///   passed. Expired records are removed when an operation meets them, from
///   the least recently used end on every write, and all at once by
///   [`delete_expired`] (which returns how many it removed) or
///   [`run_pending_tasks`](Self::run_pending_tasks). Until then they count
///   against the bounds, and the LRU eviction takes them first in practice
///   (an idle session is both the least recently used and the first to
///   expire).
/// - **Atomic**: every operation on one ID runs under its shard's lock:
///   `create` (insert if absent), `save` (compare-and-swap on the version)
///   and `compare_and_delete` (delete only the loaded version) never lose
///   an update, and of two concurrent compare-and-deletes of one version
///   exactly one succeeds.
/// - **Subject index** for `list_subject` and `delete_subject`, changed
///   under the same lock as the record, so it is exact.
/// - **Snapshots** (optional): [`snapshot_to`](Self::snapshot_to) writes the
///   live sessions to a file, [`restore_from`](Self::restore_from) loads
///   them on start, [`spawn_snapshots`](Self::spawn_snapshots) writes one
///   periodically. Durability for one instance across restarts, not
///   replication: see [the crate documentation](crate#snapshots).
///
/// Not shared between processes: use it for development, tests and
/// single-instance deployments, or as the local layer in front of a shared
/// store.
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// `shards.len() - 1`.
    mask: usize,
    /// Keys the ID and subject hashes (SipHash with per-process random
    /// keys), so that clients cannot choose IDs that collide.
    hasher: RandomState,
    index: SubjectIndex,
    /// The total weight of the records held.
    used: AtomicU64,
    /// The bound on `used`.
    capacity: u64,
    max_entries: u64,
    /// Every record weighs at least this much, so that the capacity also
    /// bounds the number of entries.
    unit: u64,
    /// Names this store instance in its scan cursors: a cursor of another
    /// instance (whose shards hash differently) restarts the scan.
    tag: u64,
    /// Serializes snapshot writes of this store (they share a temporary
    /// file name per target).
    pub(crate) snapshot_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Configures a [`MemoryStore`]: the setters store what they are given,
/// and [`build`](Self::build) checks it.
///
/// ```
/// use sessionkit_memory::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .max_entries(10_000)
///     .max_bytes(64 * 1024 * 1024)
///     .build()?;
/// assert_eq!(store.max_entries(), 10_000);
///
/// // Out-of-range settings are refused, not adjusted.
/// assert!(MemoryStore::builder().max_entries(0).build().is_err());
/// assert!(MemoryStore::builder().shards(3).build().is_err());
/// # Ok::<(), sessionkit_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_entries: u64,
    max_bytes: u64,
    shards: Option<usize>,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            shards: None,
        }
    }
}

/// The error for a setting out of its range.
fn invalid(setting: &str, rule: &str, got: impl fmt::Display) -> Error {
    Error::Config(format!("MemoryStore: {setting} must be {rule} (got {got})"))
}

impl MemoryStoreBuilder {
    /// The most records kept at once; at least 1. Default
    /// [`DEFAULT_MAX_ENTRIES`].
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Same as [`max_entries`](Self::max_entries), under moka's name.
    pub fn max_capacity(self, max_entries: u64) -> Self {
        self.max_entries(max_entries)
    }

    /// About how many bytes of payload and subject (plus a fixed per-record
    /// overhead of 160 bytes) are kept at once; at least 1. Default
    /// [`DEFAULT_MAX_BYTES`]. A record heavier than this is refused with
    /// [`Error::TooLarge`].
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The number of shards: a power of two from 1 to [`MAX_SHARDS`].
    /// Default: one per 128 of `max_entries` (rounded up to a power of
    /// two), at most [`MAX_SHARDS`]. More shards let more threads write at
    /// once; with one shard the eviction order is exactly least recently
    /// used.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Checks the settings and builds the store (empty; see
    /// [`MemoryStore::restore_from`] to load a snapshot).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the setting, when `max_entries` or
    /// `max_bytes` is 0, or `shards` is not a power of two from 1 to
    /// [`MAX_SHARDS`].
    pub fn build(self) -> Result<MemoryStore> {
        if self.max_entries == 0 {
            return Err(invalid("max_entries", "at least 1", self.max_entries));
        }
        if self.max_bytes == 0 {
            return Err(invalid("max_bytes", "at least 1", self.max_bytes));
        }
        if let Some(shards) = self.shards
            && !(shards.is_power_of_two() && shards <= MAX_SHARDS)
        {
            return Err(invalid(
                "shards",
                &format!("a power of two from 1 to {MAX_SHARDS}"),
                shards,
            ));
        }
        Ok(self.assemble())
    }

    /// Builds the store from checked settings.
    fn assemble(self) -> MemoryStore {
        let max_entries = self.max_entries;
        // One weight scale for both bounds: each entry weighs at least
        // `unit`, so `capacity / unit <= max_entries` entries fit (exactly
        // `max_entries` small ones), and weights are bytes otherwise.
        let unit = (self.max_bytes / max_entries).max(1);
        let capacity = self.max_bytes.min(max_entries.saturating_mul(unit));
        let shards = self.shards.unwrap_or_else(|| {
            let wanted = (max_entries / ENTRIES_PER_SHARD).clamp(1, MAX_SHARDS as u64);
            (wanted as usize).next_power_of_two()
        });
        let hasher = RandomState::new();
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                mask: shards - 1,
                tag: hasher.hash_one(0xC0FFEE_u32),
                hasher,
                index: SubjectIndex::new(shards),
                used: AtomicU64::new(0),
                capacity,
                max_entries,
                unit,
                snapshot_lock: Arc::default(),
            }),
        }
    }
}

/// The weight of one record: its bytes, but at least `unit`.
fn weight(record: &Record, unit: u64) -> u64 {
    let bytes = record.payload.len() as u64
        + record.subject.as_ref().map_or(0, |s| s.len() as u64)
        + ENTRY_OVERHEAD;
    bytes.max(unit)
}

/// A hash-map key: the ID with its keyed hash, which the map's hasher
/// passes through unchanged.
#[derive(Clone, Copy)]
struct Key {
    hash: u64,
    id: SessionId,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.id == other.id
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a [`Key`]'s precomputed hash through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (by `Key`); fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One record and its place in the shard's LRU list.
struct Node {
    hash: u64,
    weight: u64,
    prev: u32,
    next: u32,
    record: Record,
}

/// One shard: a map from ID to a slot of `nodes`, and the LRU list
/// through the nodes (`head` most recently used, `tail` least).
struct Shard {
    map: HashMap<Key, u32, BuildHasherDefault<PassThrough>>,
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

impl Shard {
    fn find(&self, key: &Key) -> Option<u32> {
        self.map.get(key).copied()
    }

    fn node(&self, slot: u32) -> &Node {
        match &self.nodes[slot as usize] {
            Some(node) => node,
            None => unreachable!("a linked slot holds a node"),
        }
    }

    fn node_mut(&mut self, slot: u32) -> &mut Node {
        match &mut self.nodes[slot as usize] {
            Some(node) => node,
            None => unreachable!("a linked slot holds a node"),
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let n = self.node(slot);
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
    }

    fn push_front(&mut self, slot: u32) {
        let head = self.head;
        {
            let n = self.node_mut(slot);
            n.prev = NIL;
            n.next = head;
        }
        if head == NIL {
            self.tail = slot;
        } else {
            self.node_mut(head).prev = slot;
        }
        self.head = slot;
    }

    /// Marks `slot` as the most recently used.
    fn touch_lru(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    /// Inserts a node for `key` (not present) as the most recently used.
    fn insert(&mut self, key: Key, record: Record, weight: u64) -> u32 {
        let node = Node {
            hash: key.hash,
            weight,
            prev: NIL,
            next: NIL,
            record,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = Some(node);
                slot
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        self.push_front(slot);
        self.map.insert(key, slot);
        slot
    }

    /// Removes the node in `slot`.
    fn remove(&mut self, slot: u32) -> Node {
        self.unlink(slot);
        let node = match self.nodes[slot as usize].take() {
            Some(node) => node,
            None => unreachable!("a linked slot holds a node"),
        };
        self.map.remove(&Key {
            hash: node.hash,
            id: node.record.id,
        });
        self.free.push(slot);
        node
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// The slots from least to most recently used.
    fn lru_order(&self) -> Vec<u32> {
        let mut order = Vec::with_capacity(self.len());
        let mut slot = self.tail;
        while slot != NIL {
            order.push(slot);
            slot = self.node(slot).prev;
        }
        order
    }

    /// Gives back the memory of a shard that shrank a lot: rebuilds the
    /// slab densely, in LRU order.
    fn compact(&mut self) {
        let len = self.len();
        if self.nodes.len() <= 64 || len * 4 > self.nodes.len() {
            return;
        }
        let order = self.lru_order();
        let mut nodes = std::mem::take(&mut self.nodes);
        let mut fresh = Shard::default();
        fresh.nodes.reserve_exact(len);
        fresh.map.reserve(len);
        for slot in order {
            if let Some(node) = nodes[slot as usize].take() {
                let key = Key {
                    hash: node.hash,
                    id: node.record.id,
                };
                fresh.insert(key, node.record, node.weight);
            }
        }
        *self = fresh;
    }
}

/// One shard of the subject index: subject → IDs.
type SubjectShard = HashMap<String, HashSet<SessionId>>;

/// subject → IDs, sharded by a hash of the subject.
struct SubjectIndex {
    shards: Box<[Mutex<SubjectShard>]>,
}

impl SubjectIndex {
    fn new(shards: usize) -> Self {
        SubjectIndex {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
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
            .field("entries", &self.entry_count())
            .field("max_entries", &self.inner.max_entries)
            .field("max_bytes", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
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
        // The defaults are in range.
        MemoryStoreBuilder::default().assemble()
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
        self.inner.capacity
    }

    /// The number of records held, including expired ones not removed yet
    /// (see [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn entry_count(&self) -> u64 {
        self.inner.shards.iter().map(|s| lock(s).len() as u64).sum()
    }

    /// The bytes held, as counted against [`max_bytes`](Self::max_bytes).
    pub fn weighted_size(&self) -> u64 {
        self.inner.used.load(Relaxed)
    }

    /// Removes every expired record now and gives back the memory of
    /// shards that shrank a lot. Writes also remove expired records as they
    /// go; this is the complete sweep (`delete_expired` runs it too).
    pub async fn run_pending_tasks(&self) {
        self.sweep(Timestamp::now());
    }

    /// Removes every record expired at `now`; returns how many.
    fn sweep(&self, now: Timestamp) -> u64 {
        let mut removed = 0;
        for shard in self.inner.shards.iter() {
            let mut shard = lock(shard);
            for slot in shard.lru_order() {
                if !shard.node(slot).record.is_live(now) {
                    self.remove_node(&mut shard, slot);
                    removed += 1;
                }
            }
            shard.compact();
        }
        removed
    }

    fn check_size(&self, record: &Record) -> Result<u64> {
        let inner = &self.inner;
        let w = weight(record, inner.unit);
        if w > inner.capacity {
            let overhead = w.saturating_sub(record.payload.len() as u64);
            return Err(Error::TooLarge {
                size: record.payload.len(),
                limit: usize::try_from(inner.capacity.saturating_sub(overhead))
                    .unwrap_or(usize::MAX),
            });
        }
        Ok(w)
    }

    fn key(&self, id: &SessionId) -> Key {
        Key {
            hash: self.inner.hasher.hash_one(id),
            id: *id,
        }
    }

    fn shard_of(&self, key: &Key) -> usize {
        // Bits 32.. of the hash: the map uses the low bits for its bucket
        // and the top 7 for its control bytes, so the shard takes neither.
        (key.hash >> 32) as usize & self.inner.mask
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        lock(&self.inner.shards[index])
    }

    fn index_shard(&self, subject: &str) -> MutexGuard<'_, SubjectShard> {
        let i = (self.inner.hasher.hash_one(subject) >> 32) as usize & self.inner.mask;
        lock(&self.inner.index.shards[i])
    }

    /// Adds `id` under `subject`. Called with the record's shard locked.
    fn index_add(&self, subject: &str, id: SessionId) {
        let mut index = self.index_shard(subject);
        match index.get_mut(subject) {
            Some(ids) => {
                ids.insert(id);
            }
            None => {
                index.insert(subject.to_owned(), HashSet::from([id]));
            }
        }
    }

    /// Removes `id` from `subject`. Called with the record's shard locked.
    fn index_remove(&self, subject: &str, id: &SessionId) {
        let mut index = self.index_shard(subject);
        if let Some(ids) = index.get_mut(subject) {
            ids.remove(id);
            if ids.is_empty() {
                index.remove(subject);
            }
        }
    }

    fn indexed(&self, subject: &str) -> Vec<SessionId> {
        self.index_shard(subject)
            .get(subject)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Removes the node in `slot` with its index entry and weight.
    fn remove_node(&self, shard: &mut Shard, slot: u32) -> Record {
        let node = shard.remove(slot);
        if let Some(subject) = &node.record.subject {
            self.index_remove(subject, &node.record.id);
        }
        self.inner.used.fetch_sub(node.weight, Relaxed);
        node.record
    }

    /// Removes up to [`PURGE_PER_WRITE`] expired records from the LRU end
    /// of `shard`, keeping `keep`.
    fn purge_tail(&self, shard: &mut Shard, now: Timestamp, keep: u32) {
        for _ in 0..PURGE_PER_WRITE {
            let tail = shard.tail;
            if tail == NIL || tail == keep || shard.node(tail).record.is_live(now) {
                return;
            }
            self.remove_node(shard, tail);
        }
    }

    /// Evicts least recently used records until the weight fits the
    /// capacity, starting with shard `start`, never evicting `keep` (the
    /// record just written). Called with no shard locked.
    fn evict(&self, start: usize, keep: &SessionId) {
        let inner = &self.inner;
        let shards = inner.shards.len();
        let mut empty = 0;
        let mut at = start;
        while inner.used.load(Relaxed) > inner.capacity && empty < shards {
            let mut shard = self.shard(at);
            let mut victim = shard.tail;
            if victim != NIL && shard.node(victim).record.id == *keep {
                victim = shard.node(victim).prev;
            }
            if victim == NIL {
                empty += 1;
                at = (at + 1) & inner.mask;
            } else {
                empty = 0;
                self.remove_node(&mut shard, victim);
            }
        }
    }

    fn after_write(&self, shard: usize, id: &SessionId) {
        if self.inner.used.load(Relaxed) > self.inner.capacity {
            self.evict(shard, id);
        }
    }

    /// `create`'s insert-if-absent (also used to restore a snapshot):
    /// `false` when a live record with that ID is there (nothing changes).
    pub(crate) fn insert_new(&self, record: &Record, weight: u64) -> bool {
        let key = self.key(&record.id);
        let at = self.shard_of(&key);
        let now = Timestamp::now();
        {
            let mut shard = self.shard(at);
            let found = shard.find(&key);
            if let Some(slot) = found {
                if shard.node(slot).record.is_live(now) {
                    return false;
                }
                self.remove_node(&mut shard, slot);
            }
            if let Some(subject) = &record.subject {
                self.index_add(subject, record.id);
            }
            self.inner.used.fetch_add(weight, Relaxed);
            let slot = shard.insert(key, record.clone(), weight);
            self.purge_tail(&mut shard, now, slot);
        }
        self.after_write(at, &record.id);
        true
    }

    /// Every live record, least recently used first within each shard.
    pub(crate) fn live_records(&self, now: Timestamp) -> Vec<Record> {
        let mut records = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = lock(shard);
            records.reserve(shard.len());
            for slot in shard.lru_order() {
                let record = &shard.node(slot).record;
                if record.is_live(now) {
                    records.push(record.clone());
                }
            }
        }
        records
    }

    /// Parses a scan cursor: `<tag>.<shard>.<last ID or nothing>`. `None`
    /// (start over) for a cursor of another instance of the store.
    fn parse_cursor(&self, cursor: &ScanCursor) -> Result<Option<(usize, Option<SessionId>)>> {
        let mut parts = cursor.as_str().splitn(3, '.');
        let (Some(tag), Some(shard), Some(last)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::InvalidId);
        };
        let tag = u64::from_str_radix(tag, 16).map_err(|_| Error::InvalidId)?;
        let shard: usize = shard.parse().map_err(|_| Error::InvalidId)?;
        let last = match last {
            "" => None,
            id => Some(SessionId::parse(id)?),
        };
        if tag != self.inner.tag || shard >= self.inner.shards.len() {
            return Ok(None);
        }
        Ok(Some((shard, last)))
    }

    fn cursor(&self, shard: usize, last: Option<&SessionId>) -> ScanCursor {
        ScanCursor::new(format!(
            "{:016x}.{shard}.{}",
            self.inner.tag,
            last.map_or("", SessionId::as_str)
        ))
    }

    pub(crate) fn record_weight(&self, record: &Record) -> Result<u64> {
        self.check_size(record)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &Record) -> Result<()> {
        let w = self.check_size(record)?;
        if self.insert_new(record, w) {
            Ok(())
        } else {
            Err(Error::Conflict)
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        let key = self.key(id);
        let now = Timestamp::now();
        let mut shard = self.shard(self.shard_of(&key));
        let Some(slot) = shard.find(&key) else {
            return Ok(None);
        };
        if shard.node(slot).record.is_live(now) {
            shard.touch_lru(slot);
            Ok(Some(shard.node(slot).record.clone()))
        } else {
            self.remove_node(&mut shard, slot);
            Ok(None)
        }
    }

    async fn save(&self, record: &Record) -> Result<u64> {
        let w = self.check_size(record)?;
        let key = self.key(&record.id);
        let at = self.shard_of(&key);
        let now = Timestamp::now();
        let (grew, next) = {
            let mut shard = self.shard(at);
            let Some(slot) = shard.find(&key) else {
                return Err(Error::NotFound);
            };
            let (live, version, same_subject) = {
                let stored = &shard.node(slot).record;
                (
                    stored.is_live(now),
                    stored.version,
                    stored.subject == record.subject,
                )
            };
            if !live {
                self.remove_node(&mut shard, slot);
                return Err(Error::NotFound);
            }
            let next = match version.checked_add(1) {
                Some(next) if version == record.version => next,
                _ => return Err(Error::Conflict),
            };
            if !same_subject {
                if let Some(old) = &shard.node(slot).record.subject {
                    self.index_remove(old, &record.id);
                }
                if let Some(new) = &record.subject {
                    self.index_add(new, record.id);
                }
            }
            let node = shard.node_mut(slot);
            let stored = &mut node.record;
            if !same_subject {
                stored.subject.clone_from(&record.subject);
            }
            stored.payload = record.payload.clone();
            stored.version = next;
            stored.created_at = record.created_at;
            stored.expires_at = record.expires_at;
            let old = std::mem::replace(&mut node.weight, w);
            if w != old {
                if w > old {
                    self.inner.used.fetch_add(w - old, Relaxed);
                } else {
                    self.inner.used.fetch_sub(old - w, Relaxed);
                }
            }
            shard.touch_lru(slot);
            self.purge_tail(&mut shard, now, slot);
            (w > old, next)
        };
        if grew {
            self.after_write(at, &record.id);
        }
        Ok(next)
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        let key = self.key(id);
        let now = Timestamp::now();
        let mut shard = self.shard(self.shard_of(&key));
        let Some(slot) = shard.find(&key) else {
            return Err(Error::NotFound);
        };
        if !shard.node(slot).record.is_live(now) {
            self.remove_node(&mut shard, slot);
            return Err(Error::NotFound);
        }
        if expires_at > now {
            shard.node_mut(slot).record.expires_at = expires_at;
            shard.touch_lru(slot);
        } else {
            // Moved into the past: expired from now on.
            self.remove_node(&mut shard, slot);
        }
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let key = self.key(id);
        let now = Timestamp::now();
        let mut shard = self.shard(self.shard_of(&key));
        Ok(match shard.find(&key) {
            Some(slot) => self.remove_node(&mut shard, slot).is_live(now),
            None => false,
        })
    }

    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        let key = self.key(id);
        let now = Timestamp::now();
        // Under the shard's lock, like `save`: a concurrent save, delete,
        // delete_subject or compare_and_delete of this ID runs wholly
        // before or wholly after this.
        let mut shard = self.shard(self.shard_of(&key));
        let Some(slot) = shard.find(&key) else {
            return Err(Error::NotFound);
        };
        let (live, stored) = {
            let record = &shard.node(slot).record;
            (record.is_live(now), record.version)
        };
        if !live {
            // Expired: NotFound, and the expired record goes.
            self.remove_node(&mut shard, slot);
            return Err(Error::NotFound);
        }
        if stored != version {
            return Err(Error::Conflict);
        }
        // The same index removal as `delete`.
        self.remove_node(&mut shard, slot);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        let now = Timestamp::now();
        let mut records = Vec::new();
        for id in self.indexed(subject) {
            let key = self.key(&id);
            let mut shard = self.shard(self.shard_of(&key));
            match shard.find(&key) {
                Some(slot) if shard.node(slot).record.subject.as_deref() == Some(subject) => {
                    if shard.node(slot).record.is_live(now) {
                        records.push(shard.node(slot).record.clone());
                    } else {
                        self.remove_node(&mut shard, slot);
                    }
                }
                // Not (any more) a record of this subject: the index is
                // exact, so this is only a removal that raced with the
                // snapshot of IDs above; make sure nothing stays behind.
                _ => self.index_remove(subject, &id),
            }
        }
        Ok(records)
    }

    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        let mut removed = 0;
        for id in self.indexed(subject) {
            let key = self.key(&id);
            let now = Timestamp::now();
            let mut shard = self.shard(self.shard_of(&key));
            match shard.find(&key) {
                Some(slot) if shard.node(slot).record.subject.as_deref() == Some(subject) => {
                    let record = self.remove_node(&mut shard, slot);
                    removed += u64::from(record.is_live(now));
                }
                _ => self.index_remove(subject, &id),
            }
        }
        Ok(removed)
    }

    async fn delete_expired(&self) -> Result<u64> {
        Ok(self.sweep(Timestamp::now()))
    }

    /// Shard by shard, each shard in ID order: the cursor is the shard and
    /// the last ID returned from it, so records that come and go, LRU
    /// moves and compaction never make a scan skip a record that stays.
    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        let (mut at, mut after) = match cursor {
            Some(c) => self.parse_cursor(c)?.unwrap_or((0, None)),
            None => (0, None),
        };
        let now = Timestamp::now();
        let mut records = Vec::new();
        while records.len() < limit {
            let want = limit - records.len();
            let shard = self.shard(at);
            let mut ids: Vec<(SessionId, u32)> = shard
                .map
                .iter()
                .filter(|(key, _)| after.is_none_or(|a| key.id > a))
                .map(|(key, &slot)| (key.id, slot))
                .collect();
            let more = ids.len() > want;
            if more {
                ids.select_nth_unstable(want);
                ids.truncate(want);
            }
            ids.sort_unstable();
            for &(_, slot) in &ids {
                let record = &shard.node(slot).record;
                if record.is_live(now) {
                    records.push(record.clone());
                }
            }
            drop(shard);
            if more {
                // This shard goes on after the last ID looked at.
                let last = ids.last().map(|(id, _)| *id);
                return Ok(ScanPage::new(records, Some(self.cursor(at, last.as_ref()))));
            }
            if at + 1 == self.inner.shards.len() {
                return Ok(ScanPage::new(records, None));
            }
            at += 1;
            after = None;
        }
        Ok(ScanPage::new(
            records,
            Some(self.cursor(at, after.as_ref())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        store
            .inner
            .index
            .shards
            .iter()
            .map(|s| lock(s).values().map(HashSet::len).sum::<usize>())
            .sum()
    }

    fn subjects(store: &MemoryStore) -> Vec<String> {
        store
            .inner
            .index
            .shards
            .iter()
            .flat_map(|s| lock(s).keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Every shard's map, slab and LRU list agree, and the weight counter
    /// is the sum of the weights.
    fn check_invariants(store: &MemoryStore) {
        let mut total = 0;
        for shard in store.inner.shards.iter() {
            let shard = lock(shard);
            let order = shard.lru_order();
            assert_eq!(order.len(), shard.len(), "LRU list and map agree");
            let occupied = shard.nodes.iter().filter(|n| n.is_some()).count();
            assert_eq!(occupied, shard.len(), "slab and map agree");
            for (key, &slot) in &shard.map {
                assert_eq!(shard.node(slot).record.id, key.id);
                total += shard.node(slot).weight;
            }
        }
        assert_eq!(store.weighted_size(), total);
    }

    #[tokio::test]
    async fn entry_bound_is_enforced() {
        let store = MemoryStore::builder().max_entries(50).build().unwrap();
        let mut all = Vec::new();
        for i in 0..500 {
            let r = record(Some("bounded"), vec![i as u8; 10], HOUR);
            store.create(&r).await.unwrap();
            all.push(r);
        }
        assert_eq!(store.entry_count(), 50);
        let listed = store.list_subject("bounded").await.unwrap();
        assert_eq!(listed.len(), 50);
        // LRU (one shard at this size: exact): the 50 newest survive.
        for r in &all[450..] {
            assert_eq!(store.load(&r.id).await.unwrap().as_ref(), Some(r));
        }
        // The subject index lost the evicted records with them.
        assert_eq!(index_len(&store), 50);
        check_invariants(&store);
    }

    #[tokio::test]
    async fn eviction_takes_the_least_recently_used() {
        let store = MemoryStore::builder().max_entries(3).build().unwrap();
        let rs: Vec<Record> = (0..3).map(|_| record(None, vec![1], HOUR)).collect();
        for r in &rs {
            store.create(r).await.unwrap();
        }
        // Use the oldest: the second one is now the least recently used.
        store.load(&rs[0].id).await.unwrap().unwrap();
        store.create(&record(None, vec![2], HOUR)).await.unwrap();
        assert!(store.load(&rs[0].id).await.unwrap().is_some());
        assert!(store.load(&rs[1].id).await.unwrap().is_none());
        assert!(store.load(&rs[2].id).await.unwrap().is_some());
        check_invariants(&store);
    }

    #[tokio::test]
    async fn bound_holds_across_many_shards() {
        let store = MemoryStore::builder()
            .max_entries(100)
            .shards(64)
            .build()
            .unwrap();
        for _ in 0..2_000 {
            store
                .create(&record(Some("s"), vec![3; 8], HOUR))
                .await
                .unwrap();
        }
        assert_eq!(store.entry_count(), 100);
        assert_eq!(store.list_subject("s").await.unwrap().len(), 100);
        check_invariants(&store);
    }

    #[tokio::test]
    async fn byte_bound_is_enforced_and_oversized_records_are_refused() {
        let store = MemoryStore::builder()
            .max_entries(1_000)
            .max_bytes(100 * 1024)
            .build()
            .unwrap();
        for _ in 0..100 {
            store
                .create(&record(None, vec![7; 4096], HOUR))
                .await
                .unwrap();
        }
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

        // A save that grows a record evicts others, never the record.
        small.payload = vec![2; 90 * 1024].into();
        small.version = store.save(&small).await.unwrap();
        assert!(store.weighted_size() <= 100 * 1024);
        assert_eq!(store.load(&small.id).await.unwrap(), Some(small));
        check_invariants(&store);
    }

    #[tokio::test]
    async fn expired_records_are_purged_not_hidden() {
        let store = MemoryStore::new();
        let live = record(Some("purge"), b"live".to_vec(), HOUR);
        store.create(&live).await.unwrap();
        let mut short = Vec::new();
        for _ in 0..20 {
            let r = record(Some("purge"), b"short".to_vec(), Duration::from_millis(50));
            store.create(&r).await.unwrap();
            short.push(r);
        }
        assert_eq!(store.entry_count(), 21);
        assert_eq!(index_len(&store), 21);

        let deadline = short[19].expires_at + Duration::from_millis(5);
        tokio::time::sleep(deadline.remaining_from(Timestamp::now())).await;
        // Hidden at once ...
        assert_eq!(store.load(&short[0].id).await.unwrap(), None);
        // ... removed when met ...
        assert_eq!(store.entry_count(), 20);
        // ... and all of them, with their index entries, by the sweep.
        assert_eq!(store.delete_expired().await.unwrap(), 19);
        assert_eq!(store.entry_count(), 1);
        assert_eq!(index_len(&store), 1);
        assert_eq!(store.weighted_size(), weight(&live, store.inner.unit));
        for r in &short {
            assert_eq!(store.load(&r.id).await.unwrap(), None);
        }
        assert_eq!(store.list_subject("purge").await.unwrap(), vec![live]);
        check_invariants(&store);
    }

    #[tokio::test]
    async fn writes_purge_expired_records_at_the_lru_end() {
        let store = MemoryStore::builder().shards(1).build().unwrap();
        for _ in 0..10 {
            store
                .create(&record(None, vec![1], Duration::from_millis(20)))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Each write removes up to two expired records from the LRU end.
        for _ in 0..5 {
            store.create(&record(None, vec![1], HOUR)).await.unwrap();
        }
        assert_eq!(store.entry_count(), 5);
        check_invariants(&store);
    }

    #[tokio::test]
    async fn compaction_gives_memory_back() {
        let store = MemoryStore::builder().shards(1).build().unwrap();
        let rs: Vec<Record> = (0..1_000).map(|_| record(None, vec![1], HOUR)).collect();
        for r in &rs {
            store.create(r).await.unwrap();
        }
        for r in &rs[..990] {
            store.delete(&r.id).await.unwrap();
        }
        store.run_pending_tasks().await;
        assert!(lock(&store.inner.shards[0]).nodes.len() <= 64);
        for r in &rs[990..] {
            assert_eq!(store.load(&r.id).await.unwrap().as_ref(), Some(r));
        }
        check_invariants(&store);
    }

    #[tokio::test]
    async fn index_follows_subject_changes_and_deletes() {
        let store = MemoryStore::new();
        let mut r = record(Some("a"), b"x".to_vec(), HOUR);
        store.create(&r).await.unwrap();
        r.subject = Some("b".into());
        r.version = store.save(&r).await.unwrap();
        assert_eq!(subjects(&store), ["b"]);
        r.subject = None;
        r.version = store.save(&r).await.unwrap();
        assert!(subjects(&store).is_empty());
        r.subject = Some("c".into());
        r.version = store.save(&r).await.unwrap();
        assert_eq!(store.list_subject("c").await.unwrap(), vec![r.clone()]);
        store.delete(&r.id).await.unwrap();
        assert_eq!(index_len(&store), 0);
        assert!(subjects(&store).is_empty());
        check_invariants(&store);
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
        assert!(subjects(&store).is_empty());
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
        check_invariants(&store);
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
            check_invariants(&store);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_churn_keeps_every_structure_consistent() {
        // Many tasks create, save, load, delete and evict in a small store
        // with several shards; afterwards map, slab, LRU list, weight and
        // subject index must still agree.
        let store = MemoryStore::builder()
            .max_entries(200)
            .shards(8)
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let subject = format!("user-{}", t % 3);
                for i in 0..300 {
                    let mut r = record(Some(&subject), vec![i as u8; 16 + i % 64], HOUR);
                    store.create(&r).await.unwrap();
                    if i % 2 == 0 {
                        match store.save(&r).await {
                            Ok(v) => r.version = v,
                            Err(Error::NotFound) => continue, // evicted
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    if i % 3 == 0 {
                        store.delete(&r.id).await.unwrap();
                    }
                    if i % 50 == 0 {
                        store.list_subject(&subject).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        check_invariants(&store);
        assert!(store.entry_count() <= 200);
        let mut listed = 0;
        for s in 0..3 {
            listed += store
                .list_subject(&format!("user-{s}"))
                .await
                .unwrap()
                .len();
        }
        assert_eq!(listed as u64, store.entry_count());
        assert_eq!(index_len(&store) as u64, store.entry_count());
    }

    fn config_error(builder: MemoryStoreBuilder) -> String {
        match builder.build() {
            Err(Error::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn out_of_range_settings_are_refused_not_adjusted() {
        assert_eq!(
            config_error(MemoryStore::builder().max_entries(0)),
            "MemoryStore: max_entries must be at least 1 (got 0)"
        );
        assert_eq!(
            config_error(MemoryStore::builder().max_capacity(0)),
            "MemoryStore: max_entries must be at least 1 (got 0)"
        );
        assert_eq!(
            config_error(MemoryStore::builder().max_bytes(0)),
            "MemoryStore: max_bytes must be at least 1 (got 0)"
        );
        for shards in [0, 3, 6, 65, 96, 128, usize::MAX] {
            assert_eq!(
                config_error(MemoryStore::builder().shards(shards)),
                format!("MemoryStore: shards must be a power of two from 1 to 64 (got {shards})")
            );
        }
        // The Display form names the setting too.
        let err = MemoryStore::builder().max_entries(0).build().unwrap_err();
        assert!(err.to_string().contains("max_entries"), "{err}");
    }

    #[test]
    fn boundary_settings_are_kept_as_given() {
        let store = MemoryStore::builder()
            .max_entries(1)
            .max_bytes(1)
            .shards(1)
            .build()
            .unwrap();
        assert_eq!(store.max_entries(), 1);
        assert_eq!(store.inner.shards.len(), 1);
        assert_eq!(store.inner.capacity, 1);
        for shards in [1, 2, 4, 8, 16, 32, MAX_SHARDS] {
            let store = MemoryStore::builder().shards(shards).build().unwrap();
            assert_eq!(store.inner.shards.len(), shards);
        }
        let store = MemoryStore::builder()
            .max_entries(u64::MAX)
            .max_bytes(u64::MAX)
            .build()
            .unwrap();
        assert_eq!(store.max_entries(), u64::MAX);
        assert_eq!(store.inner.shards.len(), MAX_SHARDS);
    }

    #[tokio::test]
    async fn a_one_byte_store_refuses_every_record_loudly() {
        let store = MemoryStore::builder().max_bytes(1).build().unwrap();
        let r = record(None, vec![1], HOUR);
        assert!(matches!(
            store.create(&r).await,
            Err(Error::TooLarge { .. })
        ));
    }
}
