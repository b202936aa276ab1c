//! [`CachedStore`]: a read-through / write-through cache in front of any
//! [`SessionStore`], kept coherent across application instances by an
//! [`InvalidationChannel`].
//!
//! The guarantees are documented on [`CachedStore`]; this is how they are
//! kept.
//!
//! # How it stays coherent
//!
//! The hard part is the race between a slow load and a concurrent change:
//! a load may read version 1 from the backend, then a write (here, or on
//! another instance whose message arrives here) stores version 2 and evicts
//! the ID, and only then does the load put its version 1 into the cache,
//! where it would stay until `max_staleness`. To rule that out, the cache
//! keeps a logical clock and per-ID, per-subject and global *generations*:
//! every change (a local write, an invalidation message, a channel reset)
//! advances the generation of what it touches, and every entry is stamped
//! with the clock value observed *before* its backend read started. An
//! entry is only served while no generation it depends on has moved past
//! its stamp, so an entry that a change may have overtaken is never served,
//! however late it was inserted. Generations are kept in fixed arrays of
//! slots indexed by a hash, so their memory is bounded; two IDs sharing a
//! slot only cost an extra backend load.
//!
//! A local write advances the ID's generation before it goes to the backend
//! (so that loads overlapping the write are not kept), and after the
//! backend acknowledged it puts the new state into the cache only if
//! nothing else changed the ID meanwhile; otherwise it just evicts.
//!
//! The other race is between two backend reads of one ID on this instance
//! (a `load_fresh` next to a cached load, or a retry): they can complete
//! new-then-old, without any message to tell. Every backend read is
//! registered, per ID, from just before its backend call until its answer
//! is in the cache. A read that completes while another read of the same
//! ID is registered advances the ID's generation and stamps its own answer
//! with the new value, so every read that began earlier is overtaken:
//! whatever it brings back (possibly older) is neither cached nor returned,
//! and its caller reads again. A read that completes alone needs nothing:
//! any read that begins after it sees at least its state (the backend is
//! linearizable). Only reads of one ID that really overlap pay the extra
//! load; coalesced loads are a single read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use sessionkit_core::{
    BoxError, ChannelEvent, Error, Invalidation, InvalidationChannel, InvalidationMessage, Record,
    Result, SessionId, SessionStore, Timestamp, async_trait,
};

/// Default for [`CachedStoreBuilder::max_staleness`]: 10 seconds.
pub const CACHE_DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(10);
/// Default for [`CachedStoreBuilder::max_bytes`]: 64 MiB.
pub const CACHE_DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default for [`CachedStoreBuilder::publish_timeout`]: 1 second.
pub const CACHE_DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// The shortest `max_staleness` and `publish_timeout` accepted.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// Number of per-ID generation slots (a power of two).
const ID_SLOTS: usize = 1 << 14;
/// Number of per-subject generation slots (a power of two).
const SUBJECT_SLOTS: usize = 1 << 10;
/// Number of shards of the registry of backend reads in flight (a power of
/// two, at most `ID_SLOTS`).
const READ_SHARDS: usize = 64;
/// What an entry costs besides its payload and subject (key, record fields,
/// bookkeeping, moka's own node), for the byte weigher.
const ENTRY_OVERHEAD: usize = 192;
/// How many backend loads (its own or joined) a load tries before it reads
/// the backend on its own once more, when each was overtaken (see
/// `Shared::accept`); also how many reads a `load_fresh` makes at most.
const MAX_LOAD_ATTEMPTS: usize = 3;
/// Bounds of the pause between two subscription attempts.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// How fresh a record returned by [`CachedStore::load_with_status`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// From the backend, or from a cache entry that no known change has
    /// overtaken (the normal case).
    Fresh,
    /// The backend failed with a transient error and degraded reads are
    /// enabled, so this is a cached copy that may be out of date: it is no
    /// older than `max_staleness`, no known change to this ID has been seen
    /// since it was read, but the invalidation channel lost messages
    /// (reconnected) since then, so a change may have been missed.
    Degraded,
}

/// A snapshot of the cache's counters, from [`CachedStore::stats`].
///
/// Counters only grow, from the moment the store was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads answered from the cache (including cached "absent").
    pub hits: u64,
    /// Loads that read the backend themselves.
    pub misses: u64,
    /// Loads that found no entry and waited for another caller's backend
    /// load of the same ID instead of issuing their own.
    pub coalesced: u64,
    /// Loads answered with a possibly stale copy because the backend failed
    /// ([`Freshness::Degraded`]).
    pub degraded: u64,
    /// Entries removed by the cache itself: expired (record expiry or
    /// `max_staleness`) or evicted to stay within `max_bytes`.
    pub evictions: u64,
    /// Entries removed explicitly: after a write, a failed write, an
    /// invalidation message or a channel reset.
    pub removals: u64,
    /// Invalidation messages received from other instances.
    pub invalidations_received: u64,
    /// Cache clears caused by the channel (disconnections, reconnections,
    /// lagging). The first subscription counts as one.
    pub resets: u64,
    /// Invalidations that could not be published (the write itself
    /// succeeded; other instances see the change at the latest after
    /// `max_staleness`).
    pub publish_failures: u64,
    /// Calls of [`load_fresh`](SessionStore::load_fresh), each of which
    /// asked the backend.
    pub fresh_loads: u64,
    /// Backend reads whose answer was not kept because something newer may
    /// already have been seen (a write, an invalidation, or another read
    /// of the same ID that completed while it ran); the load read again.
    pub overtaken: u64,
    /// Entries in the cache now (approximate).
    pub entries: u64,
    /// Weighted size of the cache in bytes now (approximate).
    pub weighted_bytes: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    degraded: AtomicU64,
    evictions: AtomicU64,
    removals: AtomicU64,
    invalidations_received: AtomicU64,
    resets: AtomicU64,
    publish_failures: AtomicU64,
    fresh_loads: AtomicU64,
    overtaken: AtomicU64,
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

/// FNV-1a: cheap and good enough to spread random IDs and subjects over
/// generation slots (a collision only costs an extra backend load).
fn slot(bytes: &[u8], slots: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash ^ (hash >> 32)) as usize & (slots - 1)
}

fn id_slot(id: &SessionId) -> usize {
    slot(id.as_str().as_bytes(), ID_SLOTS)
}

fn subject_slot(subject: &str) -> usize {
    slot(subject.as_bytes(), SUBJECT_SLOTS)
}

/// One cached state: a record or "absent", with the generation stamps and
/// the deadline that bound it.
struct EntryInner {
    record: Option<Record>,
    subject_slot: Option<usize>,
    /// Valid while the ID's generation is `<= stamp_id`.
    stamp_id: u64,
    /// Valid while the subject's and the global generation are `<= stamp_other`.
    stamp_other: u64,
    /// `max_staleness` after the backend observation, or the record's
    /// expiry, whichever comes first.
    deadline: Instant,
    weight: u32,
}

#[derive(Clone)]
struct Entry(Arc<EntryInner>);

impl Entry {
    fn new(
        record: Option<Record>,
        stamp_id: u64,
        stamp_other: u64,
        observed: Instant,
        max_staleness: Duration,
    ) -> Self {
        let mut deadline = observed + max_staleness;
        let mut weight = ENTRY_OVERHEAD;
        if let Some(r) = &record {
            let left = r.expires_at.remaining_from(Timestamp::now());
            deadline = deadline.min(Instant::now() + left);
            weight += r.payload.len() + r.subject.as_ref().map_or(0, String::len);
        }
        Entry(Arc::new(EntryInner {
            subject_slot: record
                .as_ref()
                .and_then(|r| r.subject.as_deref())
                .map(subject_slot),
            record,
            stamp_id,
            stamp_other,
            deadline,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        }))
    }

    /// Within its time bounds (staleness and record expiry) at this moment.
    fn in_bounds(&self) -> bool {
        self.0.deadline > Instant::now()
            && self
                .0
                .record
                .as_ref()
                .is_none_or(|r| r.is_live(Timestamp::now()))
    }

    /// The record (if any) is still live by the wall clock. The monotonic
    /// deadline needs no check on a cache read: moka never returns an entry
    /// past the deadline its [`Expiry`] gave it.
    fn live(&self) -> bool {
        self.0
            .record
            .as_ref()
            .is_none_or(|r| r.is_live(Timestamp::now()))
    }

    fn subject(&self) -> Option<&str> {
        self.0.record.as_ref().and_then(|r| r.subject.as_deref())
    }
}

/// Per-entry expiry for moka: the entry's own deadline.
struct EntryExpiry;

impl Expiry<SessionId, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &SessionId, value: &Entry, now: Instant) -> Option<Duration> {
        Some(value.0.deadline.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &SessionId,
        value: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.0.deadline.saturating_duration_since(now))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validity {
    /// No change seen since the entry's backend observation.
    Valid,
    /// Only a channel reset since: messages may have been lost. Never served
    /// normally; a degraded read may fall back to it.
    Suspect,
    /// A change to this ID or its subject may have overtaken it.
    Invalid,
}

/// What an in-flight backend load hands to every caller waiting on it when
/// it cannot be cached.
enum FetchError {
    /// The load succeeded but something newer may already have been seen
    /// (see [`Shared::accept`]): nobody returns it.
    Overtaken,
    /// The backend failed.
    Failed {
        error: Error,
        /// The suspect entry the loading caller found, for degraded reads.
        fallback: Option<Entry>,
    },
}

/// A backend error shared between coalesced callers: displays as the
/// original error's source and keeps its chain.
struct SharedError(Arc<FetchError>);

impl SharedError {
    fn error(&self) -> Option<&Error> {
        match &*self.0 {
            FetchError::Failed { error, .. } => Some(error),
            FetchError::Overtaken => None,
        }
    }

    fn inner_source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.error()? {
            Error::Backend { source, .. }
            | Error::Aborted(source)
            | Error::Decode(source)
            | Error::Encode(source) => Some(source.as_ref()),
            other => Some(other),
        }
    }
}

impl std::fmt::Debug for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner_source() {
            Some(e) => std::fmt::Debug::fmt(e, f),
            None => f.write_str("SharedError"),
        }
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner_source() {
            Some(e) => std::fmt::Display::fmt(e, f),
            None => f.write_str("backend load failed"),
        }
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner_source()?.source()
    }
}

/// Turns the shared outcome of a failed backend load into this caller's
/// own [`Error`], keeping the variant, the transient flag and the chain.
fn own_error(shared: Arc<FetchError>) -> Error {
    let shared = match Arc::try_unwrap(shared) {
        Ok(FetchError::Failed { error, .. }) => return error,
        Ok(FetchError::Overtaken) => {
            return Error::backend("cached load was overtaken by a change", true);
        }
        Err(shared) => shared,
    };
    let FetchError::Failed { error, .. } = &*shared else {
        return Error::backend("cached load was overtaken by a change", true);
    };
    let boxed = |s: Arc<FetchError>| -> BoxError { Box::new(SharedError(s)) };
    match error {
        Error::NotFound => Error::NotFound,
        Error::Conflict => Error::Conflict,
        Error::InvalidId => Error::InvalidId,
        Error::InvalidSubject => Error::InvalidSubject,
        Error::InvalidToken(r) => Error::InvalidToken(*r),
        Error::Revoked => Error::Revoked,
        Error::Expired => Error::Expired,
        Error::TooLarge { size, limit } => Error::TooLarge {
            size: *size,
            limit: *limit,
        },
        Error::Timeout(limit) => Error::Timeout(*limit),
        Error::Aborted(_) => Error::Aborted(boxed(shared.clone())),
        Error::Unsupported(s) => Error::Unsupported(s),
        Error::Config(s) => Error::Config(s.clone()),
        Error::Decode(_) => Error::Decode(boxed(shared.clone())),
        Error::Encode(_) => Error::Encode(boxed(shared.clone())),
        Error::Backend { transient, .. } => Error::Backend {
            transient: *transient,
            source: boxed(shared.clone()),
        },
        other => {
            let transient = other.is_transient();
            Error::Backend {
                source: boxed(shared.clone()),
                transient,
            }
        }
    }
}

/// State shared by the store and its background listener.
struct Shared {
    cache: Cache<SessionId, Entry>,
    /// The logical clock: every generation and stamp is a value drawn from it.
    clock: AtomicU64,
    id_gens: Box<[AtomicU64]>,
    subject_gens: Box<[AtomicU64]>,
    reset_gen: AtomicU64,
    /// How many backend reads of each ID are running (or have not yet put
    /// their answer into the cache), sharded by ID slot.
    reads: Box<[Mutex<HashMap<SessionId, u32>>]>,
    counters: Arc<Counters>,
    origin: u64,
    max_staleness: Duration,
    degraded_reads: bool,
    channel: Option<Arc<dyn InvalidationChannel>>,
    publish_timeout: Duration,
    subscribed: AtomicBool,
}

impl Shared {
    fn now(&self) -> u64 {
        self.clock.load(SeqCst)
    }

    /// Advances a generation to a fresh clock value, atomically: the new
    /// value is drawn after the current one was read, so generations only
    /// grow and every bump is one compare-and-swap.
    fn bump(&self, generation: &AtomicU64) -> u64 {
        let mut current = generation.load(SeqCst);
        loop {
            let next = self.clock.fetch_add(1, SeqCst) + 1;
            match generation.compare_exchange(current, next, SeqCst, SeqCst) {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }

    /// Advances a generation only if nobody advanced it since `from`.
    fn advance_from(&self, generation: &AtomicU64, from: u64) -> Option<u64> {
        let next = self.clock.fetch_add(1, SeqCst) + 1;
        generation
            .compare_exchange(from, next, SeqCst, SeqCst)
            .ok()
            .map(|_| next)
    }

    fn validity(&self, idx: usize, entry: &Entry) -> Validity {
        let e = &entry.0;
        let id_ok = self.id_gens[idx].load(SeqCst) <= e.stamp_id;
        let subject_ok = e
            .subject_slot
            .is_none_or(|s| self.subject_gens[s].load(SeqCst) <= e.stamp_other);
        if !(id_ok && subject_ok) {
            Validity::Invalid
        } else if self.reset_gen.load(SeqCst) <= e.stamp_other {
            Validity::Valid
        } else {
            Validity::Suspect
        }
    }

    fn reads_of(&self, id: &SessionId) -> std::sync::MutexGuard<'_, HashMap<SessionId, u32>> {
        // Nothing panics while holding this lock; a poisoned map of
        // counters is still usable.
        self.reads[id_slot(id) & (READ_SHARDS - 1)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn enter_read(&self, id: &SessionId) {
        *self.reads_of(id).entry(*id).or_insert(0) += 1;
    }

    fn leave_read(&self, id: &SessionId) {
        let mut reads = self.reads_of(id);
        if let Some(n) = reads.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                reads.remove(id);
            }
        }
    }

    /// Whether another backend read of `id` than the caller's is running.
    fn concurrent_reads(&self, id: &SessionId) -> bool {
        self.reads_of(id).get(id).is_some_and(|n| *n > 1)
    }

    /// Judges the answer of a backend read of `id` that began at clock
    /// value `stamp` (registered as a [`Read`] since before that):
    /// `Ok(entry)` when it may be cached and returned as this instance's
    /// newest knowledge of the ID, `Err(entry)` when it may be older than
    /// something this instance has already seen.
    ///
    /// - A change since `stamp` (a local write, an invalidation message, a
    ///   reset) overtook it, as before.
    /// - Another read of the same ID that is still running may have started
    ///   earlier and may come back later with an *older* state (two
    ///   overlapping reads can complete new-then-old). So when other reads
    ///   are running, the ID's generation is advanced here: every read that
    ///   began before this point is overtaken and will not be cached or
    ///   returned, while this answer is stamped with the new generation.
    ///   (Reads that begin after this point see at least this state.)
    fn accept(
        &self,
        id: &SessionId,
        stamp: u64,
        observed: Instant,
        record: Option<Record>,
    ) -> std::result::Result<Entry, Entry> {
        let idx = id_slot(id);
        let generation = &self.id_gens[idx];
        let current = generation.load(SeqCst);
        let stamp_id = if current > stamp {
            None
        } else if self.concurrent_reads(id) {
            self.advance_from(generation, current)
        } else {
            Some(stamp)
        };
        let entry = Entry::new(
            record,
            stamp_id.unwrap_or(stamp),
            stamp,
            observed,
            self.max_staleness,
        );
        match stamp_id {
            Some(_) if self.validity(idx, &entry) == Validity::Valid => Ok(entry),
            _ => {
                inc(&self.counters.overtaken);
                Err(entry)
            }
        }
    }

    async fn evict_id(&self, id: &SessionId) {
        self.bump(&self.id_gens[id_slot(id)]);
        self.cache.invalidate(id).await;
    }

    fn evict_subject(&self, subject: &str) {
        self.bump(&self.subject_gens[subject_slot(subject)]);
        let owned = subject.to_owned();
        if let Err(err) = self
            .cache
            .invalidate_entries_if(move |_, e| e.subject() == Some(owned.as_str()))
        {
            // The generation bump above already keeps those entries from
            // being served; they just stay in memory until they expire.
            tracing::warn!(error = %err, "could not register a subject invalidation");
        }
    }

    fn reset(&self, why: &str) {
        self.bump(&self.reset_gen);
        inc(&self.counters.resets);
        if !self.degraded_reads {
            self.cache.invalidate_all();
        }
        // With degraded reads, entries stay as fallbacks: the bump above
        // keeps them from ever being served as fresh.
        tracing::info!(why, "session cache reset");
    }

    async fn on_event(&self, event: ChannelEvent) {
        match event {
            ChannelEvent::Message(msg) if msg.origin == self.origin => {}
            ChannelEvent::Message(msg) => {
                inc(&self.counters.invalidations_received);
                match &msg.target {
                    Invalidation::Id(id) => {
                        tracing::debug!(id = %id.redacted(), "invalidation received");
                        self.evict_id(id).await;
                    }
                    Invalidation::Subject(subject) => {
                        tracing::debug!("subject invalidation received");
                        self.evict_subject(subject);
                    }
                }
            }
            ChannelEvent::Disconnected => {
                // Nothing arrives until a Reset: drop what a lost message
                // could make stale, and say so (in that order, so that
                // whoever sees `false` also sees the cleared cache).
                self.reset("the invalidation channel lost its subscription");
                self.subscribed.store(false, SeqCst);
            }
            ChannelEvent::Reset => {
                // Subscribed (again), but messages may have been lost: clear
                // first, then report the subscription as live.
                self.reset("the invalidation channel may have lost messages");
                self.subscribed.store(true, SeqCst);
            }
        }
    }

    async fn publish(&self, target: Invalidation) {
        let Some(channel) = &self.channel else {
            return;
        };
        let msg = InvalidationMessage {
            origin: self.origin,
            target,
        };
        let outcome = tokio::time::timeout(self.publish_timeout, channel.publish(&msg)).await;
        let failure = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.publish_timeout),
        };
        inc(&self.counters.publish_failures);
        tracing::warn!(
            error = %failure,
            "could not publish a cache invalidation; other instances may serve stale data for up to max_staleness"
        );
    }

    /// Publishes from a destructor (a cancelled write), if a runtime exists.
    fn publish_detached(self: &Arc<Self>, target: Invalidation) {
        if self.channel.is_none() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(self);
            handle.spawn(async move { shared.publish(target).await });
        }
    }
}

/// Marks a write on one ID as in progress; if the caller's future is
/// dropped before the backend answered, the outcome is unknown, so the ID is
/// invalidated here and on other instances.
struct WriteGuard<'a> {
    shared: &'a Arc<Shared>,
    id: SessionId,
    idx: usize,
    /// The ID's generation after the pre-write bump.
    pre: u64,
    armed: bool,
}

impl WriteGuard<'_> {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.bump(&self.shared.id_gens[self.idx]);
            self.shared.publish_detached(Invalidation::Id(self.id));
        }
    }
}

/// One backend read of an ID, registered in [`Shared::reads`] from just
/// before the backend call until its answer is in the cache (or the caller
/// gave up on it, including by being cancelled): while it is registered, a
/// read of the same ID that completes first overtakes it (see
/// [`Shared::accept`]).
struct Read<'a> {
    shared: &'a Shared,
    id: SessionId,
    started: AtomicBool,
}

impl<'a> Read<'a> {
    fn new(shared: &'a Shared, id: &SessionId) -> Self {
        Read {
            shared,
            id: *id,
            started: AtomicBool::new(false),
        }
    }

    /// Registers the read and returns its stamp: the clock value taken
    /// after registering, right before the backend call.
    fn start(&self) -> (u64, Instant) {
        if !self.started.swap(true, SeqCst) {
            self.shared.enter_read(&self.id);
        }
        (self.shared.now(), Instant::now())
    }

    fn started(&self) -> bool {
        self.started.load(SeqCst)
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if *self.started.get_mut() {
            self.shared.leave_read(&self.id);
        }
    }
}

/// Configures a [`CachedStore`]; from [`CachedStore::builder`].
pub struct CachedStoreBuilder<S> {
    inner: S,
    max_staleness: Duration,
    max_bytes: u64,
    channel: Option<Arc<dyn InvalidationChannel>>,
    degraded_reads: bool,
    publish_timeout: Duration,
}

impl<S: SessionStore> CachedStoreBuilder<S> {
    /// The longest any entry is kept after the backend observation it comes
    /// from (default [`CACHE_DEFAULT_MAX_STALENESS`]). This bounds how stale a
    /// read can be when invalidation messages are lost or not used at all.
    /// At least 1 ms.
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// The capacity of the cache, in bytes of payload, subject and a fixed
    /// per-entry overhead (default [`CACHE_DEFAULT_MAX_BYTES`]). Least useful
    /// entries are evicted beyond it. At least 1.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The channel that carries invalidations between instances (for
    /// example `sessionkit_redis::RedisInvalidationChannel`). Without one,
    /// the cache is coherent only within this instance, and other
    /// instances' changes show up after at most `max_staleness`.
    pub fn channel(mut self, channel: Arc<dyn InvalidationChannel>) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Whether a load may answer with a cached copy when the backend fails
    /// with a transient error (default `false`). See
    /// [`CachedStore::load_with_status`].
    pub fn degraded_reads(mut self, enabled: bool) -> Self {
        self.degraded_reads = enabled;
        self
    }

    /// How long a write waits for its invalidation to be published before
    /// counting a publish failure (default [`CACHE_DEFAULT_PUBLISH_TIMEOUT`]).
    /// At least 1 ms.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Builds the store. With a channel, this spawns the listener task on
    /// the current Tokio runtime; the task ends when the store is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the setting and the value given, when
    /// `max_staleness` or `publish_timeout` is shorter than 1 ms or
    /// `max_bytes` is 0; or when a channel is configured outside a Tokio
    /// runtime.
    pub fn build(self) -> Result<CachedStore<S>> {
        let invalid = |setting: &str, rule: &str, got: &dyn std::fmt::Debug| {
            Error::Config(format!(
                "CachedStore: {setting} must be {rule} (got {got:?})"
            ))
        };
        if self.max_staleness < MIN_DURATION {
            return Err(invalid(
                "max_staleness",
                "at least 1ms",
                &self.max_staleness,
            ));
        }
        if self.max_bytes == 0 {
            return Err(invalid("max_bytes", "at least 1", &self.max_bytes));
        }
        if self.publish_timeout < MIN_DURATION {
            return Err(invalid(
                "publish_timeout",
                "at least 1ms",
                &self.publish_timeout,
            ));
        }
        let runtime = match &self.channel {
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Config(
                    "a CachedStore with a channel must be built inside a Tokio runtime".into(),
                )
            })?),
            None => None,
        };
        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        let cache = Cache::builder()
            .max_capacity(self.max_bytes)
            .weigher(|_: &SessionId, e: &Entry| e.0.weight)
            .expire_after(EntryExpiry)
            .support_invalidation_closures()
            .eviction_listener(move |_, _, cause| match cause {
                RemovalCause::Expired | RemovalCause::Size => inc(&listener_counters.evictions),
                RemovalCause::Explicit => inc(&listener_counters.removals),
                RemovalCause::Replaced => {}
            })
            .build();
        let gens = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        let origin = SessionId::try_generate()
            .map(|id| {
                let b = id.to_bytes();
                u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            })
            .map_err(|e| Error::Config(format!("no randomness for the cache origin: {e}")))?;
        let shared = Arc::new(Shared {
            cache,
            clock: AtomicU64::new(1),
            id_gens: gens(ID_SLOTS),
            subject_gens: gens(SUBJECT_SLOTS),
            reset_gen: AtomicU64::new(0),
            reads: (0..READ_SHARDS).map(|_| Mutex::default()).collect(),
            counters,
            origin,
            max_staleness: self.max_staleness,
            degraded_reads: self.degraded_reads,
            channel: self.channel.clone(),
            publish_timeout: self.publish_timeout,
            subscribed: AtomicBool::new(false),
        });
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        if let (Some(channel), Some(runtime)) = (self.channel, runtime) {
            runtime.spawn(listen(Arc::clone(&shared), channel, shutdown_rx));
        }
        Ok(CachedStore {
            inner: self.inner,
            shared,
            _shutdown: shutdown,
        })
    }
}

/// The listener task: applies other instances' invalidations until the
/// store is dropped, resubscribing (and resetting) whenever the
/// subscription ends.
async fn listen(
    shared: Arc<Shared>,
    channel: Arc<dyn InvalidationChannel>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let mut pause = RESUBSCRIBE_MIN;
    loop {
        let subscription = tokio::select! {
            _ = &mut shutdown => return,
            s = channel.subscribe() => s,
        };
        match subscription {
            Ok(mut events) => {
                pause = RESUBSCRIBE_MIN;
                // Anything cached before this point may have missed messages.
                shared.reset("subscribed to the invalidation channel");
                shared.subscribed.store(true, SeqCst);
                loop {
                    let event = tokio::select! {
                        _ = &mut shutdown => return,
                        e = events.recv() => e,
                    };
                    match event {
                        Some(event) => shared.on_event(event).await,
                        None => break,
                    }
                }
                shared.reset("the invalidation subscription ended");
                shared.subscribed.store(false, SeqCst);
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?pause, "could not subscribe to the invalidation channel");
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RESUBSCRIBE_MAX);
    }
}

/// A read-through / write-through cache in front of any [`SessionStore`],
/// itself a [`SessionStore`].
///
/// - **Reads** go to the cache first; on a miss, concurrent loads of one ID
///   are coalesced into one backend load (moka's `try_get_with`). Absent
///   IDs are cached too ("negative caching"), which matters for revocation
///   checks where most lookups find nothing. Reads are monotonic per
///   instance (see [Guarantees](#guarantees)).
/// - **[`load_fresh`](SessionStore::load_fresh)** always asks the backend
///   (never the cache, never a load in flight) and refreshes the cache with
///   the answer: the call for security decisions.
/// - **Writes** (`create`, `save`, `touch`, `delete`, `compare_and_delete`,
///   `delete_subject`) go to the backend first. Only after it acknowledged is the new state (with
///   the new version) put into the cache; a failed, timed-out or cancelled
///   write evicts the ID instead. Compare-and-swap stays the backend's job:
///   a `save` based on a stale copy gets [`Error::Conflict`] from the
///   backend, and the ID is evicted so the retry reads fresh data.
/// - **Bounds**: an entry lives at most `max_staleness` after the backend
///   observation it comes from and never past the record's `expires_at`;
///   the cache holds at most `max_bytes` (payload, subject and a fixed
///   overhead per entry).
/// - **Invalidation**: with a [`channel`](CachedStoreBuilder::channel),
///   every write publishes an [`InvalidationMessage`] with this instance's
///   random origin, and a background task evicts what other instances
///   publish; a [`ChannelEvent::Disconnected`] or [`ChannelEvent::Reset`]
///   clears the cache (and [`is_subscribed`](CachedStore::is_subscribed)
///   follows them). Until the message of a change made elsewhere arrives,
///   this instance may serve its older copy; if the message is lost, for
///   up to `max_staleness`. A publish that
///   fails is logged and counted in [`CacheStats::publish_failures`] but
///   not returned: the write itself succeeded and the backend holds it, so
///   failing the call would invite a retry of a write that already
///   happened. The price is that other instances may serve their old copy
///   until it reaches `max_staleness`, which is what that setting bounds.
/// - [`list_subject`](SessionStore::list_subject) and
///   [`delete_expired`](SessionStore::delete_expired) go straight to the
///   backend.
///
/// # Guarantees
///
/// - **The backend is the source of truth.** The cache only ever holds what
///   the backend returned to a load, or what it acknowledged for a write,
///   and every entry is dropped at the latest `max_staleness` after the
///   backend observation it comes from, and when the record expires.
/// - **This instance's own writes are seen at once** by its later reads
///   (write-through with the version the backend returned).
/// - **Other instances' changes are seen when their invalidation arrives.**
///   A session that another instance saved, rotated, logged out (`delete`,
///   `compare_and_delete`) or logged out everywhere (`delete_subject`) can
///   still be served from this instance's cache until that instance's
///   invalidation message arrives here (the pub/sub latency: milliseconds),
///   and for up to `max_staleness` after this instance read it if the
///   message is not published (publish failure), not delivered (lost, the
///   subscription is down), or there is no channel at all. That is the
///   bound; nothing shorter is promised.
/// - **Uncached answers on demand.** [`SessionStore::load_fresh`] (and
///   `SessionManager::load_fresh` on top of it) always asks the backend,
///   never the cache and never a load already in flight: use it for
///   security decisions (a privileged action, a password or e-mail change,
///   a payment) that must not act on a session another instance ended.
/// - **Monotonic reads per instance.** Reads of one session on one instance
///   never go back in time: once this instance has returned a state of a
///   session (from `load`, `load_with_status` or `load_fresh`, or as the
///   acknowledgment of its own write), every read of it that begins
///   afterwards returns that state or a newer one, and the cache never
///   serves an older one again. "Older" covers deletion and re-creation: a
///   session deleted and re-created under the same ID starts again at
///   version 1, so the rule rests on the order in which the backend
///   answered, not on versions; and "absent" is a state like any other (a
///   late read never resurrects a logged-out session). Reads that
///   run at the same time are concurrent and may return in either order,
///   but a read whose own backend answer was overtaken (a newer answer or a
///   change was seen while it ran) does not return that answer: it reads
///   again (at most three times; then its last read is returned, which began
///   after everything returned before the call). Degraded answers
///   ([`Freshness::Degraded`]) are possibly stale by definition and outside
///   this rule.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sessionkit_core::{InvalidationChannel, Result, SessionStore};
/// use sessionkit_memory::CachedStore;
///
/// fn cached<S: SessionStore>(store: S, channel: Arc<dyn InvalidationChannel>) -> Result<CachedStore<S>> {
///     CachedStore::builder(store)
///         .max_staleness(Duration::from_secs(5))
///         .max_bytes(32 * 1024 * 1024)
///         .channel(channel)
///         .build()
/// }
/// ```
pub struct CachedStore<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Dropping it stops the listener task.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl<S> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("origin", &self.shared.origin)
            .field("max_staleness", &self.shared.max_staleness)
            .field("degraded_reads", &self.shared.degraded_reads)
            .field("channel", &self.shared.channel.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> CachedStore<S> {
    /// Starts configuring a cache in front of `inner`.
    pub fn builder(inner: S) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            inner,
            max_staleness: CACHE_DEFAULT_MAX_STALENESS,
            max_bytes: CACHE_DEFAULT_MAX_BYTES,
            channel: None,
            degraded_reads: false,
            publish_timeout: CACHE_DEFAULT_PUBLISH_TIMEOUT,
        }
    }

    /// A cache with the default settings and no channel.
    ///
    /// # Errors
    ///
    /// Only if the operating system provides no randomness.
    pub fn new(inner: S) -> Result<Self> {
        Self::builder(inner).build()
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// This instance's random origin, as it appears in the messages it
    /// publishes.
    pub fn origin(&self) -> u64 {
        self.shared.origin
    }

    /// Whether the listener task currently holds a live subscription to the
    /// channel (always `false` without a channel), for health checks: `false`
    /// from a [`ChannelEvent::Disconnected`] (or the end of the subscription)
    /// until the next [`ChannelEvent::Reset`] (or a new subscription). While
    /// it is `false`, other instances' changes reach this one only through
    /// `max_staleness`.
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(SeqCst)
    }

    /// Waits until the listener task holds a subscription, at most
    /// `timeout`; returns whether it does. Until then, changes made by other
    /// instances are only bounded by `max_staleness`.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_subscribed() {
            if self.shared.channel.is_none() || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Drops every cached entry of this instance (no message is published).
    pub fn clear(&self) {
        self.shared.bump(&self.shared.reset_gen);
        self.shared.cache.invalidate_all();
    }

    /// Runs the cache's pending maintenance (expirations, evictions, size
    /// accounting) now instead of in the course of later operations; useful
    /// before reading [`CacheStats::entries`] or
    /// [`CacheStats::weighted_bytes`].
    pub async fn run_pending_tasks(&self) {
        self.shared.cache.run_pending_tasks().await;
    }

    /// The counters so far, plus the current size of the cache.
    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        CacheStats {
            hits: read(&c.hits),
            misses: read(&c.misses),
            coalesced: read(&c.coalesced),
            degraded: read(&c.degraded),
            evictions: read(&c.evictions),
            removals: read(&c.removals),
            invalidations_received: read(&c.invalidations_received),
            resets: read(&c.resets),
            publish_failures: read(&c.publish_failures),
            fresh_loads: read(&c.fresh_loads),
            overtaken: read(&c.overtaken),
            entries: self.shared.cache.entry_count(),
            weighted_bytes: self.shared.cache.weighted_size(),
        }
    }

    /// Emits the counters as one `tracing` event at INFO level (for a
    /// periodic report from the application).
    pub fn log_stats(&self) {
        let s = self.stats();
        tracing::info!(
            hits = s.hits,
            misses = s.misses,
            coalesced = s.coalesced,
            degraded = s.degraded,
            evictions = s.evictions,
            removals = s.removals,
            invalidations_received = s.invalidations_received,
            resets = s.resets,
            publish_failures = s.publish_failures,
            fresh_loads = s.fresh_loads,
            overtaken = s.overtaken,
            entries = s.entries,
            weighted_bytes = s.weighted_bytes,
            "session cache stats"
        );
    }

    /// Loads like [`SessionStore::load`], and tells whether the answer is
    /// [`Freshness::Fresh`] or a [`Freshness::Degraded`] fallback.
    ///
    /// A degraded answer needs [`degraded_reads`](CachedStoreBuilder::degraded_reads)
    /// and a backend failure that is transient, and is only ever a copy
    /// that:
    /// - is younger than `max_staleness` (entries are gone after that, so a
    ///   degraded read never extends staleness beyond the bound that holds
    ///   for normal reads when messages are lost), and whose record has not
    ///   expired;
    /// - has not been overtaken by any change this instance knows of (a
    ///   local write or an invalidation message for its ID or subject): it
    ///   was only set aside because the channel reset, so messages may have
    ///   been missed.
    ///
    /// Without degraded reads, a channel reset clears the cache.
    ///
    /// # Errors
    ///
    /// The backend's error when the ID is not cached and the backend fails
    /// (and no degraded answer applies).
    pub async fn load_with_status(&self, id: &SessionId) -> Result<(Option<Record>, Freshness)> {
        if let Some(record) = self.hit(id).await {
            return Ok((record, Freshness::Fresh));
        }
        Box::pin(self.load_slow(id)).await
    }

    /// A servable cached answer, if there is one. Kept apart from
    /// [`CachedStore::load_slow`] so that a hit runs a small future (the
    /// backend load, its coalescing and its fallbacks are boxed away).
    async fn hit(&self, id: &SessionId) -> Option<Option<Record>> {
        let shared = &self.shared;
        let entry = shared.cache.get(id).await?;
        if shared.validity(id_slot(id), &entry) == Validity::Valid && entry.live() {
            inc(&shared.counters.hits);
            tracing::debug!(id = %id.redacted(), found = entry.0.record.is_some(), "cache hit");
            return Some(entry.0.record.clone());
        }
        None
    }

    async fn load_slow(&self, id: &SessionId) -> Result<(Option<Record>, Freshness)> {
        let shared = &self.shared;
        let idx = id_slot(id);
        // Counted once per call, whatever number of backend reads it makes.
        let mut missed = false;
        let miss = |missed: &mut bool| {
            if !std::mem::replace(missed, true) {
                inc(&shared.counters.misses);
            }
        };
        for _ in 0..MAX_LOAD_ATTEMPTS {
            let mut fallback = None;
            if let Some(entry) = shared.cache.get(id).await {
                match shared.validity(idx, &entry) {
                    Validity::Valid if entry.live() => {
                        if !missed {
                            inc(&shared.counters.hits);
                        }
                        tracing::debug!(id = %id.redacted(), found = entry.0.record.is_some(), "cache hit");
                        return Ok((entry.0.record.clone(), Freshness::Fresh));
                    }
                    Validity::Suspect if shared.degraded_reads && entry.in_bounds() => {
                        fallback = Some(entry);
                    }
                    _ => {}
                }
                // Not servable: drop it so that the load below reads the
                // backend (it may remove a fresher entry inserted meanwhile,
                // which only costs a load).
                shared.cache.invalidate(id).await;
            }
            let read = Read::new(shared, id);
            let init = async {
                let (stamp, observed) = read.start();
                match self.inner.load(id).await {
                    Ok(record) => {
                        let record = record.filter(|r| r.is_live(Timestamp::now()));
                        shared
                            .accept(id, stamp, observed, record)
                            .map_err(|_| FetchError::Overtaken)
                    }
                    Err(error) => Err(FetchError::Failed {
                        error,
                        fallback: fallback.clone(),
                    }),
                }
            };
            let outcome = shared.cache.try_get_with(*id, init).await;
            let ran = read.started();
            // Only now that the cache holds the answer (if it was kept) may a
            // newer read stop treating this one as running.
            drop(read);
            match outcome {
                Ok(entry) if ran => {
                    miss(&mut missed);
                    tracing::debug!(id = %id.redacted(), found = entry.0.record.is_some(), "cache miss, loaded");
                    return Ok((entry.0.record.clone(), Freshness::Fresh));
                }
                Ok(entry) => {
                    if shared.validity(idx, &entry) == Validity::Valid && entry.in_bounds() {
                        inc(&shared.counters.coalesced);
                        tracing::debug!(id = %id.redacted(), "cache miss, joined a concurrent load");
                        return Ok((entry.0.record.clone(), Freshness::Fresh));
                    }
                }
                Err(failure) => match &*failure {
                    FetchError::Overtaken => {
                        // What this read (or the one it joined) saw may be
                        // older than a state this instance already returned
                        // or acknowledged: neither kept nor returned. Read
                        // again.
                        if ran {
                            miss(&mut missed);
                        }
                        tracing::debug!(id = %id.redacted(), "backend load overtaken, reading again");
                    }
                    FetchError::Failed {
                        error,
                        fallback: theirs,
                    } => {
                        if ran {
                            miss(&mut missed);
                        }
                        if shared.degraded_reads && error.is_transient() {
                            let candidate = fallback.or_else(|| theirs.clone()).filter(|e| {
                                e.in_bounds() && shared.validity(idx, e) != Validity::Invalid
                            });
                            if let Some(entry) = candidate {
                                inc(&shared.counters.degraded);
                                tracing::debug!(id = %id.redacted(), error = %error, "backend failed, serving a degraded cached copy");
                                // Keep it as a fallback for the next reads
                                // (it can never be served as fresh).
                                let _ = shared.cache.entry(*id).or_insert(entry.clone()).await;
                                return Ok((entry.0.record.clone(), Freshness::Degraded));
                            }
                        }
                        tracing::debug!(id = %id.redacted(), error = %error, "cache miss, backend failed");
                        return Err(own_error(failure));
                    }
                },
            }
        }
        // Overtaken on every attempt (an ID changed continuously): one more
        // read of its own, kept only if nothing overtook it. Its answer is
        // at least as new as anything this instance returned before it
        // began.
        miss(&mut missed);
        let (record, _) = self.read_backend(id, false).await?;
        Ok((record, Freshness::Fresh))
    }

    /// One backend read of `id` that joins no other load (`fresh` asks the
    /// backend's [`load_fresh`](SessionStore::load_fresh)). Its answer is
    /// cached when [`Shared::accept`] keeps it; returns the record and
    /// whether it was kept.
    async fn read_backend(&self, id: &SessionId, fresh: bool) -> Result<(Option<Record>, bool)> {
        let shared = &self.shared;
        let read = Read::new(shared, id);
        let (stamp, observed) = read.start();
        let loaded = if fresh {
            self.inner.load_fresh(id).await?
        } else {
            self.inner.load(id).await?
        };
        let record = loaded.filter(|r| r.is_live(Timestamp::now()));
        let outcome = match shared.accept(id, stamp, observed, record) {
            Ok(entry) => {
                if entry.in_bounds() {
                    shared.cache.insert(*id, entry.clone()).await;
                }
                (entry.0.record.clone(), true)
            }
            Err(entry) => (entry.0.record.clone(), false),
        };
        drop(read);
        Ok(outcome)
    }

    fn begin_write(&self, id: &SessionId) -> WriteGuard<'_> {
        let idx = id_slot(id);
        // Loads that overlap this write must not be kept.
        let pre = self.shared.bump(&self.shared.id_gens[idx]);
        WriteGuard {
            shared: &self.shared,
            id: *id,
            idx,
            pre,
            armed: true,
        }
    }

    /// After the backend acknowledged a write: caches `new_state` (the
    /// record, or `None` for "absent") if nothing else changed the ID since
    /// the write began, else evicts; then publishes.
    async fn finish_write(&self, mut guard: WriteGuard<'_>, new_state: Option<Option<Record>>) {
        guard.disarm();
        let shared = &self.shared;
        let id = guard.id;
        let generation = &shared.id_gens[guard.idx];
        let cached = match new_state {
            Some(state) => match shared.advance_from(generation, guard.pre) {
                Some(stamp_id) => {
                    let entry = Entry::new(
                        state,
                        stamp_id,
                        guard.pre,
                        Instant::now(),
                        shared.max_staleness,
                    );
                    if shared.validity(guard.idx, &entry) == Validity::Valid && entry.in_bounds() {
                        shared.cache.insert(id, entry).await;
                        true
                    } else {
                        shared.cache.invalidate(&id).await;
                        false
                    }
                }
                None => {
                    shared.evict_id(&id).await;
                    false
                }
            },
            None => {
                shared.evict_id(&id).await;
                false
            }
        };
        tracing::debug!(id = %id.redacted(), cached, "write acknowledged");
        shared.publish(Invalidation::Id(id)).await;
    }

    /// After a failed write: evicts, and publishes when the outcome is
    /// unknown (the backend may have applied it).
    async fn fail_write(&self, mut guard: WriteGuard<'_>, error: &Error) {
        guard.disarm();
        let id = guard.id;
        self.shared.evict_id(&id).await;
        tracing::debug!(id = %id.redacted(), error = %error, "write failed, evicted");
        if matches!(error, Error::Backend { .. } | Error::Timeout(_)) {
            self.shared.publish(Invalidation::Id(id)).await;
        }
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for CachedStore<S> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn create(&self, record: &Record) -> Result<()> {
        let guard = self.begin_write(&record.id);
        match self.inner.create(record).await {
            Ok(()) => {
                self.finish_write(guard, Some(Some(record.clone()))).await;
                Ok(())
            }
            Err(error) => {
                self.fail_write(guard, &error).await;
                Err(error)
            }
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        if let Some(record) = self.hit(id).await {
            return Ok(record);
        }
        Box::pin(self.load_slow(id)).await.map(|(record, _)| record)
    }

    /// Always asks the backend (its own `load_fresh`): never answered from
    /// the cache, never joined to a load in flight. The answer refreshes
    /// the cache under the monotonic-read rule (see [`CachedStore`]): if
    /// another read or a change overtook it, it reads again, at most three
    /// times, so it never returns a state older than one this instance had
    /// already returned when it began.
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        inc(&self.shared.counters.fresh_loads);
        let mut attempts = 1;
        loop {
            let (record, kept) = Box::pin(self.read_backend(id, true)).await?;
            if kept || attempts >= MAX_LOAD_ATTEMPTS {
                tracing::debug!(id = %id.redacted(), found = record.is_some(), kept, "fresh load");
                return Ok(record);
            }
            attempts += 1;
        }
    }

    async fn save(&self, record: &Record) -> Result<u64> {
        let guard = self.begin_write(&record.id);
        match self.inner.save(record).await {
            Ok(version) => {
                let mut stored = record.clone();
                stored.version = version;
                self.finish_write(guard, Some(Some(stored))).await;
                Ok(version)
            }
            Err(error) => {
                self.fail_write(guard, &error).await;
                Err(error)
            }
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        let guard = self.begin_write(id);
        match self.inner.touch(id, expires_at).await {
            Ok(()) => {
                // Only the expiry changed, but the cached copy (if any) may
                // not be the backend's current payload: evict.
                self.finish_write(guard, None).await;
                Ok(())
            }
            Err(error) => {
                self.fail_write(guard, &error).await;
                Err(error)
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let guard = self.begin_write(id);
        match self.inner.delete(id).await {
            Ok(deleted) => {
                self.finish_write(guard, Some(None)).await;
                Ok(deleted)
            }
            Err(error) => {
                self.fail_write(guard, &error).await;
                Err(error)
            }
        }
    }

    /// Through to the backend first. Removed: the ID is cached as absent
    /// here and the invalidation is published, like `delete`. `Conflict`
    /// or `NotFound`: the local copy was stale, so it is evicted (nothing
    /// changed in the backend, nothing is published). An error whose
    /// outcome is unknown evicts and publishes, like every write.
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        let guard = self.begin_write(id);
        match self.inner.compare_and_delete(id, version).await {
            Ok(()) => {
                self.finish_write(guard, Some(None)).await;
                Ok(())
            }
            Err(error) => {
                self.fail_write(guard, &error).await;
                Err(error)
            }
        }
    }

    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.inner.list_subject(subject).await
    }

    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        let outcome = self.inner.delete_subject(subject).await;
        let unknown = matches!(outcome, Err(Error::Backend { .. } | Error::Timeout(_)));
        if outcome.is_ok() || unknown {
            self.shared.evict_subject(subject);
            tracing::debug!(ok = outcome.is_ok(), "subject deleted, evicted");
            self.shared
                .publish(Invalidation::Subject(subject.to_owned()))
                .await;
        }
        outcome
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }

    /// Enumerates the backend (the source of truth), never the cache.
    async fn scan(
        &self,
        cursor: Option<&sessionkit_core::ScanCursor>,
        limit: usize,
    ) -> Result<sessionkit_core::ScanPage> {
        self.inner.scan(cursor, limit).await
    }
}
