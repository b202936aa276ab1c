//! `CachedStore`: the conformance suite through the cache, and the cache's
//! own guarantees (coalescing, write-through, coherence across instances,
//! bounds, degraded reads), with in-process wrappers and channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use sessionkit_core::testing::VecStore;
use sessionkit_core::{
    ChannelEvent, Error, InvalidationChannel, InvalidationMessage, Record, Result, SessionId,
    SessionStore, Timestamp, async_trait,
};
use sessionkit_memory::{CachedStore, Freshness, MemoryStore};
use tokio::sync::{Notify, mpsc};

/// The whole conformance suite on `CachedStore<MemoryStore>`.
mod conformance_memory {
    use sessionkit_memory::{CachedStore, MemoryStore};

    async fn store() -> Option<CachedStore<MemoryStore>> {
        Some(CachedStore::new(MemoryStore::new()).expect("build the cache"))
    }

    sessionkit_testkit::conformance_suite!(store);
}

/// The suite again with a tiny byte bound (constant eviction) and a short
/// staleness bound: neither may break the contract.
mod conformance_memory_small {
    use std::time::Duration;

    use sessionkit_memory::{CachedStore, MemoryStore};

    async fn store() -> Option<CachedStore<MemoryStore>> {
        Some(
            CachedStore::builder(MemoryStore::new())
                .max_bytes(256 * 1024)
                .max_staleness(Duration::from_millis(200))
                .build()
                .expect("build the cache"),
        )
    }

    sessionkit_testkit::conformance_suite!(store);
}

// ---------------------------------------------------------------------------
// Test doubles.

/// Wraps a store: counts backend loads, can slow or hold loads, and can
/// make loads or writes fail with a transient backend error.
#[derive(Default)]
struct Probe<S> {
    inner: S,
    loads: AtomicU64,
    load_delay_ms: AtomicU64,
    write_delay_ms: AtomicU64,
    fail_loads: AtomicBool,
    /// Loads fail with `Error::Aborted` / `Error::Timeout(Some(LOAD_LIMIT))`.
    abort_loads: AtomicBool,
    time_out_loads: AtomicBool,
    fail_writes: AtomicBool,
    /// When set, a load reads the backend, then waits for `release` before
    /// returning what it read (to stage a slow load racing a write).
    hold_loads: AtomicBool,
    held: Notify,
    release: Notify,
}

impl<S: SessionStore> Probe<S> {
    fn new(inner: S) -> Self {
        Probe {
            inner,
            loads: AtomicU64::new(0),
            load_delay_ms: AtomicU64::new(0),
            write_delay_ms: AtomicU64::new(0),
            fail_loads: AtomicBool::new(false),
            abort_loads: AtomicBool::new(false),
            time_out_loads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            hold_loads: AtomicBool::new(false),
            held: Notify::new(),
            release: Notify::new(),
        }
    }

    fn down() -> Error {
        Error::backend(
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "backend down"),
            true,
        )
    }

    async fn before_write(&self) -> Result<()> {
        let delay = self.write_delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.fail_writes.load(SeqCst) {
            return Err(Self::down());
        }
        Ok(())
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Probe<S> {
    async fn create(&self, record: &Record) -> Result<()> {
        self.before_write().await?;
        self.inner.create(record).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.loads.fetch_add(1, SeqCst);
        let delay = self.load_delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.fail_loads.load(SeqCst) {
            return Err(Self::down());
        }
        if self.abort_loads.load(SeqCst) {
            return Err(Error::Aborted("deadlock victim, rolled back".into()));
        }
        if self.time_out_loads.load(SeqCst) {
            return Err(Error::Timeout(Some(LOAD_LIMIT)));
        }
        let found = self.inner.load(id).await;
        if self.hold_loads.load(SeqCst) {
            let released = self.release.notified();
            self.held.notify_one();
            released.await;
        }
        found
    }
    async fn save(&self, record: &Record) -> Result<u64> {
        self.before_write().await?;
        self.inner.save(record).await
    }
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        self.before_write().await?;
        self.inner.touch(id, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.before_write().await?;
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        self.before_write().await?;
        self.inner.compare_and_delete(id, version).await
    }
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.inner.list_subject(subject).await
    }
    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        self.before_write().await?;
        self.inner.delete_subject(subject).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }
}

/// An in-process invalidation channel that can lose messages or drop its
/// subscriptions on demand. A publish returns once every subscriber has
/// taken the message off its queue (the cache applies it in the same step),
/// so tests that check another instance right after a write do not depend
/// on scheduling.
struct Bus {
    subscribers: std::sync::Mutex<Vec<mpsc::Sender<ChannelEvent>>>,
    /// When false, published messages are silently lost.
    deliver: AtomicBool,
}

impl Bus {
    fn new() -> Arc<Self> {
        Arc::new(Bus {
            subscribers: std::sync::Mutex::new(Vec::new()),
            deliver: AtomicBool::new(true),
        })
    }

    fn live(&self) -> Vec<mpsc::Sender<ChannelEvent>> {
        let mut subscribers = self.subscribers.lock().unwrap();
        subscribers.retain(|tx| !tx.is_closed());
        subscribers.clone()
    }

    /// Ends every live subscription (like a dropped pub/sub connection).
    fn disconnect(&self) {
        self.subscribers.lock().unwrap().clear();
    }

    fn reset_all(&self) {
        for tx in self.live() {
            let _ = tx.try_send(ChannelEvent::Reset);
        }
    }
}

#[async_trait]
impl InvalidationChannel for Bus {
    async fn publish(&self, message: &InvalidationMessage) -> Result<()> {
        if !self.deliver.load(SeqCst) {
            return Ok(());
        }
        let subscribers = self.live();
        for tx in &subscribers {
            let _ = tx.send(ChannelEvent::Message(message.clone())).await;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for tx in &subscribers {
            while !tx.is_closed() && tx.capacity() < tx.max_capacity() && Instant::now() < deadline
            {
                tokio::task::yield_now().await;
            }
        }
        // The cache applies a message in the same step as it takes it.
        tokio::task::yield_now().await;
        Ok(())
    }

    async fn subscribe(&self) -> Result<mpsc::Receiver<ChannelEvent>> {
        let (tx, rx) = mpsc::channel(1024);
        self.subscribers.lock().unwrap().push(tx);
        Ok(rx)
    }
}

/// A channel driven by the test: one subscription at a time, whose events
/// the test sends itself (to script `Disconnected` and `Reset`).
#[derive(Default)]
struct Scripted {
    events: std::sync::Mutex<Option<mpsc::Sender<ChannelEvent>>>,
    subscriptions: AtomicU64,
}

impl Scripted {
    fn sender(&self) -> mpsc::Sender<ChannelEvent> {
        self.events.lock().unwrap().clone().expect("subscribed")
    }
}

#[async_trait]
impl InvalidationChannel for Scripted {
    async fn publish(&self, _: &InvalidationMessage) -> Result<()> {
        Ok(())
    }

    async fn subscribe(&self) -> Result<mpsc::Receiver<ChannelEvent>> {
        let (tx, rx) = mpsc::channel(16);
        *self.events.lock().unwrap() = Some(tx);
        self.subscriptions.fetch_add(1, SeqCst);
        Ok(rx)
    }
}

/// A channel whose every publish fails.
struct BrokenChannel;

#[async_trait]
impl InvalidationChannel for BrokenChannel {
    async fn publish(&self, _: &InvalidationMessage) -> Result<()> {
        Err(Error::backend("no route to the bus", true))
    }
    async fn subscribe(&self) -> Result<mpsc::Receiver<ChannelEvent>> {
        Err(Error::backend("no route to the bus", true))
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn record(subject: Option<&str>, payload: &str, ttl: Duration) -> Record {
    let now = Timestamp::now();
    Record::new(
        SessionId::generate(),
        subject.map(str::to_owned),
        payload.as_bytes().to_vec(),
        now,
        now + ttl,
    )
}

const HOUR: Duration = Duration::from_secs(3600);
/// The limit a timed-out backend load reports.
const LOAD_LIMIT: Duration = Duration::from_millis(1234);

fn payload(r: &Option<Record>) -> Option<String> {
    r.as_ref()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
}

/// Polls `check` every 2 ms until it holds or `limit` passes; returns the
/// time it took, or `None`.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

type Backend = Arc<Probe<VecStore>>;

fn backend() -> Backend {
    Arc::new(Probe::new(VecStore::default()))
}

async fn pair(backend: &Backend, bus: &Arc<Bus>) -> (CachedStore<Backend>, CachedStore<Backend>) {
    let make = || {
        CachedStore::builder(Arc::clone(backend))
            .channel(Arc::clone(bus) as Arc<dyn InvalidationChannel>)
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    assert!(a.wait_subscribed(Duration::from_secs(5)).await);
    assert!(b.wait_subscribed(Duration::from_secs(5)).await);
    (a, b)
}

// ---------------------------------------------------------------------------
// Read-through.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cold_loads_coalesce_into_one_backend_load() {
    let backend = backend();
    let r = record(Some("coalesce"), "v1", HOUR);
    backend.inner.create(&r).await.unwrap();
    // Slow backend, so that every task arrives while the first load runs.
    backend.load_delay_ms.store(100, SeqCst);
    let cache = Arc::new(CachedStore::new(Arc::clone(&backend)).unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, barrier, id) = (Arc::clone(&cache), Arc::clone(&barrier), r.id);
            tokio::spawn(async move {
                barrier.wait().await;
                cache.load(&id).await
            })
        })
        .collect();
    for task in tasks {
        let loaded = task.await.unwrap().unwrap();
        assert_eq!(payload(&loaded).as_deref(), Some("v1"));
    }
    assert_eq!(backend.loads.load(SeqCst), 1, "exactly one backend load");
    let stats = cache.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits + stats.coalesced, 199);
    assert!(stats.coalesced > 0, "{stats:?}");
    println!("coalescing: {stats:?}");
}

#[tokio::test]
async fn hits_and_negative_results_are_cached() {
    let backend = backend();
    let cache = CachedStore::new(Arc::clone(&backend)).unwrap();
    let r = record(None, "v1", HOUR);
    backend.inner.create(&r).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            payload(&cache.load(&r.id).await.unwrap()).as_deref(),
            Some("v1")
        );
    }
    // Absent IDs (most revocation lookups) are cached as absent.
    let absent = SessionId::generate();
    for _ in 0..3 {
        assert!(cache.load(&absent).await.unwrap().is_none());
    }
    assert_eq!(backend.loads.load(SeqCst), 2);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (4, 2));

    // Creating the absent ID through the cache replaces the negative entry.
    let mut created = record(None, "new", HOUR);
    created.id = absent;
    cache.create(&created).await.unwrap();
    assert_eq!(
        payload(&cache.load(&absent).await.unwrap()).as_deref(),
        Some("new")
    );
    assert_eq!(
        backend.loads.load(SeqCst),
        2,
        "served from the write-through entry"
    );
}

#[tokio::test]
async fn an_entry_never_outlives_its_record() {
    let backend = backend();
    let cache = CachedStore::new(Arc::clone(&backend)).unwrap();
    let r = record(None, "short", Duration::from_millis(150));
    cache.create(&r).await.unwrap();
    assert!(cache.load(&r.id).await.unwrap().is_some());
    let gone = within(Duration::from_secs(2), || async {
        cache.load(&r.id).await.unwrap().is_none()
    })
    .await;
    assert!(gone.is_some());
    assert!(Timestamp::now() >= r.expires_at, "not before its expiry");
}

#[tokio::test]
async fn capacity_is_bounded_in_bytes() {
    let backend = backend();
    let max = 64 * 1024;
    let cache = CachedStore::builder(Arc::clone(&backend))
        .max_bytes(max)
        .build()
        .unwrap();
    let big = "x".repeat(4096);
    for _ in 0..100 {
        cache.create(&record(None, &big, HOUR)).await.unwrap();
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(stats.weighted_bytes <= max, "{stats:?}");
    assert!(stats.entries < 20, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
}

// ---------------------------------------------------------------------------
// Write-through.

#[tokio::test]
async fn writes_go_through_with_the_new_version() {
    let backend = backend();
    let cache = CachedStore::new(Arc::clone(&backend)).unwrap();
    let mut r = record(Some("wt"), "v1", HOUR);
    cache.create(&r).await.unwrap();
    r.payload = "v2".into();
    r.version = cache.save(&r).await.unwrap();
    assert_eq!(r.version, 2);
    let loaded = cache.load(&r.id).await.unwrap().unwrap();
    assert_eq!((loaded.version, &loaded.payload[..]), (2, &b"v2"[..]));
    assert_eq!(backend.loads.load(SeqCst), 0, "no backend read needed");
    assert_eq!(backend.inner.load(&r.id).await.unwrap().unwrap().version, 2);

    assert!(cache.delete(&r.id).await.unwrap());
    assert!(cache.load(&r.id).await.unwrap().is_none());
    assert_eq!(backend.loads.load(SeqCst), 0, "deletion cached as absent");
}

#[tokio::test]
async fn a_failed_backend_write_leaves_no_new_data_in_the_cache() {
    let backend = backend();
    let cache = CachedStore::new(Arc::clone(&backend)).unwrap();
    let r = record(Some("fail"), "v1", HOUR);
    cache.create(&r).await.unwrap();
    assert!(cache.load(&r.id).await.unwrap().is_some());

    backend.fail_writes.store(true, SeqCst);
    let mut changed = r.clone();
    changed.payload = "v2".into();
    assert!(matches!(
        cache.save(&changed).await,
        Err(Error::Backend {
            transient: true,
            ..
        })
    ));
    assert!(
        cache
            .touch(&r.id, Timestamp::now() + HOUR * 2)
            .await
            .is_err()
    );
    assert!(cache.delete(&r.id).await.is_err());
    let other = record(None, "never", HOUR);
    assert!(cache.create(&other).await.is_err());
    backend.fail_writes.store(false, SeqCst);

    let loads = backend.loads.load(SeqCst);
    let loaded = cache.load(&r.id).await.unwrap().unwrap();
    assert_eq!((loaded.version, &loaded.payload[..]), (1, &b"v1"[..]));
    assert_eq!(
        backend.loads.load(SeqCst),
        loads + 1,
        "the entry was evicted, not kept"
    );
    assert!(cache.load(&other.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_stale_save_conflicts_and_the_retry_reads_fresh_data() {
    let backend = backend();
    let (a, b) = (
        CachedStore::new(Arc::clone(&backend)).unwrap(),
        CachedStore::new(Arc::clone(&backend)).unwrap(),
    );
    let r = record(None, "v1", HOUR);
    a.create(&r).await.unwrap();
    let mut on_b = b.load(&r.id).await.unwrap().unwrap();
    let mut on_a = a.load(&r.id).await.unwrap().unwrap();
    on_a.payload = "from a".into();
    a.save(&on_a).await.unwrap();
    // B has no channel: its copy is stale, and CAS catches it.
    on_b.payload = "from b".into();
    assert!(matches!(b.save(&on_b).await, Err(Error::Conflict)));
    let fresh = b.load(&r.id).await.unwrap().unwrap();
    assert_eq!((fresh.version, &fresh.payload[..]), (2, &b"from a"[..]));
    let mut retry = fresh;
    retry.payload = "from b".into();
    assert_eq!(b.save(&retry).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_evicts() {
    let backend = backend();
    let cache = CachedStore::new(Arc::clone(&backend)).unwrap();
    let r = record(None, "v1", HOUR);
    cache.create(&r).await.unwrap();
    assert!(cache.load(&r.id).await.unwrap().is_some());
    backend.write_delay_ms.store(200, SeqCst);
    let mut changed = r.clone();
    changed.payload = "v2".into();
    let cancelled = tokio::time::timeout(Duration::from_millis(20), cache.save(&changed)).await;
    assert!(cancelled.is_err());
    backend.write_delay_ms.store(0, SeqCst);
    let loads = backend.loads.load(SeqCst);
    cache.load(&r.id).await.unwrap();
    assert_eq!(
        backend.loads.load(SeqCst),
        loads + 1,
        "outcome unknown: re-read"
    );
}

// ---------------------------------------------------------------------------
// Coherence.

/// A slow load that read the old state must not put it into the cache after
/// a write acknowledged the new one (here and on another instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_load_never_caches_data_a_write_overtook() {
    let backend = backend();
    let bus = Bus::new();
    let (a, b) = pair(&backend, &bus).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let r = record(None, "v1", HOUR);
    backend.inner.create(&r).await.unwrap();

    for (reader, writer) in [(&a, &a), (&b, &a)] {
        reader.clear();
        let current = backend.inner.load(&r.id).await.unwrap().unwrap();
        backend.hold_loads.store(true, SeqCst);
        let held = backend.held.notified();
        let slow = {
            let (reader, id) = (Arc::clone(reader), r.id);
            tokio::spawn(async move { reader.load(&id).await })
        };
        held.await; // the slow load has read `current` from the backend
        backend.hold_loads.store(false, SeqCst);
        let mut next = current.clone();
        next.payload = format!("after v{}", current.version).into();
        let version = writer.save(&next).await.unwrap();
        // Let the other instance apply the invalidation.
        tokio::time::sleep(Duration::from_millis(20)).await;
        backend.release.notify_one();
        // Its backend read saw the old state, but the write (acknowledged
        // on this instance, or announced to it) overtook it: the load reads
        // again rather than return a state older than one already seen.
        let slow = slow.await.unwrap().unwrap().unwrap();
        assert_eq!(
            slow.version, version,
            "the overtaken load returned the state the write replaced"
        );
        let seen = reader.load(&r.id).await.unwrap().unwrap();
        assert_eq!(seen.version, version, "the old state was not kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_instance_sees_saves_and_deletes_within_50ms() {
    let backend = backend();
    let bus = Bus::new();
    let (a, b) = pair(&backend, &bus).await;
    let mut worst = Duration::ZERO;
    for round in 0..20 {
        let mut r = record(Some("coherent"), "v1", HOUR);
        a.create(&r).await.unwrap();
        assert!(b.load(&r.id).await.unwrap().is_some());
        r.payload = format!("v2-{round}").into();
        r.version = a.save(&r).await.unwrap();
        let took = within(Duration::from_millis(50), || async {
            b.load(&r.id).await.unwrap().map(|x| x.version) == Some(r.version)
        })
        .await
        .expect("B saw the save within 50 ms");
        worst = worst.max(took);
        a.delete(&r.id).await.unwrap();
        let took = within(Duration::from_millis(50), || async {
            b.load(&r.id).await.unwrap().is_none()
        })
        .await
        .expect("B saw the delete within 50 ms");
        worst = worst.max(took);
    }
    println!("worst invalidation delay seen: {worst:?}");
    let stats = b.stats();
    assert!(stats.invalidations_received >= 40, "{stats:?}");
    // A ignores its own messages.
    assert_eq!(a.stats().invalidations_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subject_deletion_and_touch_reach_other_instances() {
    let backend = backend();
    let bus = Bus::new();
    let (a, b) = pair(&backend, &bus).await;
    let records: Vec<_> = (0..3)
        .map(|_| record(Some("everywhere"), "x", HOUR))
        .collect();
    let bystander = record(Some("someone-else"), "y", HOUR);
    for r in records.iter().chain([&bystander]) {
        a.create(r).await.unwrap();
        assert!(b.load(&r.id).await.unwrap().is_some());
    }
    assert_eq!(a.delete_subject("everywhere").await.unwrap(), 3);
    for r in &records {
        let gone = within(Duration::from_millis(500), || async {
            b.load(&r.id).await.unwrap().is_none()
        })
        .await;
        assert!(gone.is_some());
    }
    assert!(b.load(&bystander.id).await.unwrap().is_some());

    let later = Timestamp::now() + HOUR * 5;
    a.touch(&bystander.id, later).await.unwrap();
    let moved = within(Duration::from_millis(500), || async {
        b.load(&bystander.id).await.unwrap().map(|r| r.expires_at) == Some(later)
    })
    .await;
    assert!(moved.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_messages_staleness_is_bounded_by_max_staleness() {
    let backend = backend();
    let bus = Bus::new();
    let max_staleness = Duration::from_millis(300);
    let make = || {
        CachedStore::builder(Arc::clone(&backend))
            .channel(Arc::clone(&bus) as Arc<dyn InvalidationChannel>)
            .max_staleness(max_staleness)
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    assert!(a.wait_subscribed(Duration::from_secs(5)).await);
    assert!(b.wait_subscribed(Duration::from_secs(5)).await);
    let mut r = record(None, "v1", HOUR);
    a.create(&r).await.unwrap();
    assert!(b.load(&r.id).await.unwrap().is_some());
    let cached_at = Instant::now();
    bus.deliver.store(false, SeqCst); // messages are lost
    r.payload = "v2".into();
    r.version = a.save(&r).await.unwrap();
    let took = within(Duration::from_secs(3), || async {
        b.load(&r.id).await.unwrap().map(|x| x.version) == Some(r.version)
    })
    .await
    .expect("B caught up");
    let stale_for = cached_at.elapsed();
    println!("lost message: B stale for {took:?} (entry age {stale_for:?})");
    assert!(stale_for <= max_staleness + Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_subscription_clears_the_cache_and_resubscribes() {
    let backend = backend();
    let bus = Bus::new();
    let (a, b) = pair(&backend, &bus).await;
    let r = record(None, "v1", HOUR);
    a.create(&r).await.unwrap();
    b.load(&r.id).await.unwrap();
    let resets = b.stats().resets;
    bus.deliver.store(false, SeqCst);
    let mut next = r.clone();
    next.payload = "v2".into();
    a.save(&next).await.unwrap();
    bus.deliver.store(true, SeqCst);
    bus.disconnect(); // the connection drops: messages may be lost
    let resubscribed = within(Duration::from_secs(3), || async {
        b.stats().resets > resets && b.is_subscribed()
    })
    .await;
    assert!(resubscribed.is_some());
    assert_eq!(b.load(&r.id).await.unwrap().unwrap().version, 2);

    // An explicit reset from the channel clears too.
    let resets = b.stats().resets;
    bus.reset_all();
    assert!(
        within(Duration::from_secs(1), || async {
            b.stats().resets > resets
        })
        .await
        .is_some()
    );
}

#[tokio::test]
async fn publish_failures_are_counted_not_returned() {
    let backend = backend();
    let cache = CachedStore::builder(Arc::clone(&backend))
        .channel(Arc::new(BrokenChannel))
        .build()
        .unwrap();
    let r = record(None, "v1", HOUR);
    cache.create(&r).await.unwrap();
    cache.delete(&r.id).await.unwrap();
    assert_eq!(cache.stats().publish_failures, 2);
    assert!(!cache.is_subscribed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_stops_when_the_store_is_dropped() {
    let bus = Bus::new();
    let cache = CachedStore::builder(backend())
        .channel(Arc::clone(&bus) as Arc<dyn InvalidationChannel>)
        .build()
        .unwrap();
    assert!(cache.wait_subscribed(Duration::from_secs(5)).await);
    assert_eq!(bus.live().len(), 1);
    drop(cache);
    let stopped = within(Duration::from_secs(2), || async { bus.live().is_empty() }).await;
    assert!(stopped.is_some());
}

// ---------------------------------------------------------------------------
// Degraded reads.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn degraded_reads_serve_a_bounded_copy_and_say_so() {
    let backend = backend();
    let bus = Bus::new();
    let max_staleness = Duration::from_millis(400);
    let make = |degraded| {
        CachedStore::builder(Arc::clone(&backend))
            .channel(Arc::clone(&bus) as Arc<dyn InvalidationChannel>)
            .max_staleness(max_staleness)
            .degraded_reads(degraded)
            .build()
            .unwrap()
    };
    let (strict, lenient) = (make(false), make(true));
    assert!(strict.wait_subscribed(Duration::from_secs(5)).await);
    assert!(lenient.wait_subscribed(Duration::from_secs(5)).await);
    let r = record(None, "v1", HOUR);
    backend.inner.create(&r).await.unwrap();
    let deleted = record(None, "gone", HOUR);
    backend.inner.create(&deleted).await.unwrap();
    for store in [&strict, &lenient] {
        assert_eq!(
            store.load_with_status(&r.id).await.unwrap().1,
            Freshness::Fresh
        );
        store.load(&deleted.id).await.unwrap();
    }
    // A known change (here: a delete announced on the channel) is never
    // served, even degraded.
    let other = make(false);
    assert!(other.wait_subscribed(Duration::from_secs(5)).await);
    other.delete(&deleted.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;

    // The backend and the channel go down together.
    backend.fail_loads.store(true, SeqCst);
    bus.reset_all();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(matches!(
        strict.load(&r.id).await,
        Err(Error::Backend {
            transient: true,
            ..
        })
    ));
    for _ in 0..3 {
        let (found, freshness) = lenient.load_with_status(&r.id).await.unwrap();
        assert_eq!(freshness, Freshness::Degraded);
        assert_eq!(payload(&found).as_deref(), Some("v1"));
    }
    assert!(lenient.load(&deleted.id).await.is_err());
    assert_eq!(lenient.stats().degraded, 3);

    // Never beyond max_staleness.
    tokio::time::sleep(max_staleness).await;
    assert!(lenient.load_with_status(&r.id).await.is_err());

    backend.fail_loads.store(false, SeqCst);
    let (found, freshness) = lenient.load_with_status(&r.id).await.unwrap();
    assert_eq!(
        (payload(&found).as_deref(), freshness),
        (Some("v1"), Freshness::Fresh)
    );
}

// ---------------------------------------------------------------------------
// Concurrency through two cached instances.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cached_instances_lose_no_update() {
    for with_channel in [true, false] {
        let backend = backend();
        let bus = Bus::new();
        let (a, b) = if with_channel {
            pair(&backend, &bus).await
        } else {
            (
                CachedStore::new(Arc::clone(&backend)).unwrap(),
                CachedStore::new(Arc::clone(&backend)).unwrap(),
            )
        };
        let (a, b) = (Arc::new(a), Arc::new(b));
        let r = record(None, "0", HOUR);
        a.create(&r).await.unwrap();
        const TASKS: u64 = 8;
        const INCREMENTS: u64 = 25;
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let store = if i % 2 == 0 {
                    Arc::clone(&a)
                } else {
                    Arc::clone(&b)
                };
                let id = r.id;
                tokio::spawn(async move {
                    let mut conflicts = 0u64;
                    for _ in 0..INCREMENTS {
                        loop {
                            let mut current = store.load(&id).await.unwrap().unwrap();
                            let n: u64 = std::str::from_utf8(&current.payload)
                                .unwrap()
                                .parse()
                                .unwrap();
                            current.payload = (n + 1).to_string().into();
                            match store.save(&current).await {
                                Ok(_) => break,
                                Err(Error::Conflict) => conflicts += 1,
                                Err(e) => panic!("{e}"),
                            }
                            assert!(conflicts < 100_000);
                        }
                    }
                    conflicts
                })
            })
            .collect();
        let mut conflicts = 0;
        for t in tasks {
            conflicts += t.await.unwrap();
        }
        let last = backend.inner.load(&r.id).await.unwrap().unwrap();
        assert_eq!(
            &last.payload[..],
            (TASKS * INCREMENTS).to_string().as_bytes()
        );
        assert_eq!(last.version, 1 + TASKS * INCREMENTS);
        println!("channel={with_channel}: {conflicts} conflicts retried");
    }
}

/// The testkit's two-instance concurrency test (32 tasks x 50 manager
/// updates, alternating instances) through two caches over one
/// `MemoryStore` joined by the invalidation channel. (Without a channel,
/// no update is lost either, see `two_cached_instances_lose_no_update`, but
/// the second instance may read its own older copy for up to
/// `max_staleness`, which the testkit's final cross-check rightly refuses.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_two_instances_through_two_caches() {
    let shared = MemoryStore::new();
    let bus = Bus::new();
    let make = || {
        CachedStore::builder(shared.clone())
            .channel(Arc::clone(&bus) as Arc<dyn InvalidationChannel>)
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    assert!(a.wait_subscribed(Duration::from_secs(5)).await);
    assert!(b.wait_subscribed(Duration::from_secs(5)).await);
    let report = sessionkit_testkit::concurrent_updates_two_instances(a, b).await;
    assert_eq!(
        report.final_value,
        sessionkit_testkit::TASKS * sessionkit_testkit::INCREMENTS
    );
    println!("{report:?}");
}

#[tokio::test]
async fn pass_through_operations() {
    let cache = CachedStore::new(MemoryStore::new()).unwrap();
    let r = record(Some("smoke"), "v1", HOUR);
    cache.create(&r).await.unwrap();
    assert_eq!(cache.list_subject("smoke").await.unwrap().len(), 1);
    assert_eq!(cache.delete_expired().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------
// Monotonic reads, load_fresh, compare_and_delete, subscription health.

/// What a test compares: payload and version (the version alone cannot
/// tell a re-created session from the deleted one).
fn state(r: &Option<Record>) -> Option<(String, u64)> {
    r.as_ref()
        .map(|r| (String::from_utf8_lossy(&r.payload).into_owned(), r.version))
}

/// The bug of issue 13: two overlapping backend reads of one session on one
/// instance complete new-then-old. L1 (a cache miss) reads the old state
/// and is held; another writer changes the backend (no message reaches
/// this instance); L2 (`load_fresh`) reads the new state and returns it;
/// only then is L1 released. Neither L1 nor any later load may return the
/// older state, and it must not be cached. Ordered by the backend's
/// held/release handshake, not by timing; for a save, a delete (no
/// resurrection of a logged-out session), a delete and re-create of the
/// same ID (version 1 again), and a create of an absent ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_are_monotonic_when_overlapping_backend_reads_complete_new_then_old() {
    #[derive(Debug, Clone, Copy)]
    enum Change {
        Save,
        Delete,
        Recreate,
        Create,
    }
    for change in [
        Change::Save,
        Change::Delete,
        Change::Recreate,
        Change::Create,
    ] {
        let backend = backend();
        let mut r = record(Some("monotonic"), "first life", HOUR);
        if !matches!(change, Change::Create) {
            backend.inner.create(&r).await.unwrap();
        }
        let cache = Arc::new(CachedStore::new(Arc::clone(&backend)).unwrap());

        // L1: a cache miss whose backend read is held after reading.
        backend.hold_loads.store(true, SeqCst);
        let held = backend.held.notified();
        let l1 = {
            let (cache, id) = (Arc::clone(&cache), r.id);
            tokio::spawn(async move { cache.load(&id).await })
        };
        held.await;
        backend.hold_loads.store(false, SeqCst);

        // Another writer changes the backend; no message reaches `cache`.
        let expected = match change {
            Change::Save => {
                r.payload = "second state".into();
                r.version = backend.inner.save(&r).await.unwrap();
                Some(("second state".to_owned(), 2))
            }
            Change::Delete => {
                assert!(backend.inner.delete(&r.id).await.unwrap());
                None
            }
            Change::Recreate => {
                assert!(backend.inner.delete(&r.id).await.unwrap());
                let now = Timestamp::now();
                let again = Record::new(r.id, r.subject.clone(), "second life", now, now + HOUR);
                backend.inner.create(&again).await.unwrap();
                Some(("second life".to_owned(), 1))
            }
            Change::Create => {
                backend.inner.create(&r).await.unwrap();
                Some(("first life".to_owned(), 1))
            }
        };

        // L2 asks the backend itself and completes while L1 is held. (The
        // timeout only bounds a failure: a load_fresh that joined L1 would
        // wait for the release below.)
        let mut l2 = {
            let (cache, id) = (Arc::clone(&cache), r.id);
            tokio::spawn(async move { cache.load_fresh(&id).await })
        };
        let early = tokio::time::timeout(Duration::from_secs(5), &mut l2).await;
        let l2_completed_first = early.is_ok();
        backend.release.notify_one();
        let fresh = match early {
            Ok(joined) => joined.unwrap().unwrap(),
            Err(_) => l2.await.unwrap().unwrap(),
        };
        let l1 = l1.await.unwrap().unwrap();

        // Every violation, so that a failure shows the whole story.
        let mut violations = Vec::new();
        if !l2_completed_first {
            violations.push("load_fresh waited for the cached load in flight".to_owned());
        }
        if state(&fresh) != expected {
            violations.push(format!("load_fresh returned {:?}", state(&fresh)));
        }
        if state(&l1) != expected {
            violations.push(format!(
                "the overtaken load L1 returned {:?} after a newer state was returned",
                state(&l1)
            ));
        }
        let loads = backend.loads.load(SeqCst);
        for i in 0..3 {
            let later = state(&cache.load(&r.id).await.unwrap());
            if later != expected {
                violations.push(format!("load #{i} afterwards served {later:?}"));
            }
        }
        if backend.loads.load(SeqCst) != loads {
            violations.push("the newest state was not served from the cache".to_owned());
        }
        assert!(
            violations.is_empty(),
            "{change:?}: expected {expected:?} from every read once L2 returned it; {violations:#?}"
        );
        assert!(
            cache.stats().overtaken >= 1,
            "{change:?}: {:?}",
            cache.stats()
        );
    }
}

#[tokio::test]
async fn load_fresh_asks_the_backend_and_refreshes_the_cache() {
    let backend = backend();
    let cache = CachedStore::new(Arc::clone(&backend)).unwrap();
    let mut r = record(Some("fresh"), "v1", HOUR);
    cache.create(&r).await.unwrap();
    assert_eq!(cache.load(&r.id).await.unwrap().unwrap().version, 1);

    // Another instance saves; its message never arrives here.
    r.payload = "v2".into();
    r.version = backend.inner.save(&r).await.unwrap();
    assert_eq!(
        cache.load(&r.id).await.unwrap().unwrap().version,
        1,
        "setup: the cached copy is stale"
    );
    let loads = backend.loads.load(SeqCst);
    assert_eq!(cache.load_fresh(&r.id).await.unwrap().unwrap().version, 2);
    assert_eq!(backend.loads.load(SeqCst), loads + 1, "asked the backend");
    assert_eq!(cache.load(&r.id).await.unwrap().unwrap().version, 2);
    assert_eq!(
        backend.loads.load(SeqCst),
        loads + 1,
        "and refreshed the cache"
    );

    // Another instance logs the session out: a fresh load sees it at once.
    backend.inner.delete(&r.id).await.unwrap();
    assert!(cache.load(&r.id).await.unwrap().is_some(), "setup: stale");
    assert!(cache.load_fresh(&r.id).await.unwrap().is_none());
    assert!(cache.load(&r.id).await.unwrap().is_none());
    assert_eq!(cache.stats().fresh_loads, 2);

    // A backend failure is returned, never answered from the cache.
    let other = record(None, "x", HOUR);
    cache.create(&other).await.unwrap();
    backend.fail_loads.store(true, SeqCst);
    assert!(cache.load(&other.id).await.unwrap().is_some());
    assert!(matches!(
        cache.load_fresh(&other.id).await,
        Err(Error::Backend {
            transient: true,
            ..
        })
    ));
}

/// `SessionManager::load_fresh` over a cached store: the way to act on a
/// logout made by another instance whose message has not arrived.
#[tokio::test]
async fn manager_load_fresh_sees_a_logout_the_cache_does_not_know_yet() {
    let backend = backend();
    let here = sessionkit_core::SessionManager::<u32>::stateful(
        CachedStore::new(Arc::clone(&backend)).unwrap(),
    )
    .build()
    .unwrap();
    let elsewhere = sessionkit_core::SessionManager::<u32>::stateful(Arc::clone(&backend))
        .build()
        .unwrap();
    let ticket = here
        .create(Some("alice"), 7)
        .await
        .unwrap()
        .ticket()
        .clone();
    assert!(here.load(ticket.as_str()).await.unwrap().is_some());
    assert!(elsewhere.destroy(ticket.as_str()).await.unwrap());
    // Documented bound: a plain load may still serve it (until the
    // invalidation arrives, here never: no channel, so max_staleness).
    assert!(here.load(ticket.as_str()).await.unwrap().is_some());
    assert!(here.load_fresh(ticket.as_str()).await.unwrap().is_none());
    assert!(here.load(ticket.as_str()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_delete_goes_through_caches_absent_and_reaches_other_instances() {
    let backend = backend();
    let bus = Bus::new();
    let (a, b) = pair(&backend, &bus).await;
    let r = record(Some("cad"), "v1", HOUR);
    a.create(&r).await.unwrap();
    assert!(a.load(&r.id).await.unwrap().is_some());
    assert!(b.load(&r.id).await.unwrap().is_some());

    assert!(matches!(
        a.compare_and_delete(&r.id, 7).await,
        Err(Error::Conflict)
    ));
    assert!(backend.inner.load(&r.id).await.unwrap().is_some());

    a.compare_and_delete(&r.id, 1).await.unwrap();
    assert!(backend.inner.load(&r.id).await.unwrap().is_none());
    let loads = backend.loads.load(SeqCst);
    assert!(a.load(&r.id).await.unwrap().is_none());
    assert_eq!(backend.loads.load(SeqCst), loads, "cached as absent");
    // The publish returned after B applied it.
    assert!(b.load(&r.id).await.unwrap().is_none());
    assert!(b.stats().invalidations_received >= 2, "{:?}", b.stats());
    assert!(matches!(
        a.compare_and_delete(&r.id, 1).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn compare_and_delete_failures_evict_the_stale_copy() {
    let backend = backend();
    let cache = CachedStore::new(Arc::clone(&backend)).unwrap();
    let mut r = record(None, "v1", HOUR);
    cache.create(&r).await.unwrap();

    // Conflict: another instance saved meanwhile; the copy here is stale.
    r.payload = "v2".into();
    backend.inner.save(&r).await.unwrap();
    assert_eq!(cache.load(&r.id).await.unwrap().unwrap().version, 1);
    assert!(matches!(
        cache.compare_and_delete(&r.id, 1).await,
        Err(Error::Conflict)
    ));
    assert_eq!(cache.load(&r.id).await.unwrap().unwrap().version, 2);

    // NotFound: another instance deleted it; the copy here is stale.
    backend.inner.delete(&r.id).await.unwrap();
    assert!(cache.load(&r.id).await.unwrap().is_some());
    assert!(matches!(
        cache.compare_and_delete(&r.id, 2).await,
        Err(Error::NotFound)
    ));
    assert!(cache.load(&r.id).await.unwrap().is_none());

    // Unknown outcome: evicted, like every failed write.
    let other = record(None, "x", HOUR);
    cache.create(&other).await.unwrap();
    backend.fail_writes.store(true, SeqCst);
    assert!(matches!(
        cache.compare_and_delete(&other.id, 1).await,
        Err(Error::Backend { .. })
    ));
    backend.fail_writes.store(false, SeqCst);
    let loads = backend.loads.load(SeqCst);
    assert!(cache.load(&other.id).await.unwrap().is_some());
    assert_eq!(backend.loads.load(SeqCst), loads + 1, "re-read");
}

/// Polls (bounded) until `check` holds; panics with `what` otherwise.
async fn eventually<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_subscribed_follows_disconnected_and_reset_and_each_clears_the_cache() {
    let backend = backend();
    let channel = Arc::new(Scripted::default());
    let cache = CachedStore::builder(Arc::clone(&backend))
        .channel(Arc::clone(&channel) as Arc<dyn InvalidationChannel>)
        .build()
        .unwrap();
    assert!(cache.wait_subscribed(Duration::from_secs(5)).await);
    let r = record(None, "v1", HOUR);
    backend.inner.create(&r).await.unwrap();
    let cached = async || {
        let loads = backend.loads.load(SeqCst);
        assert!(cache.load(&r.id).await.unwrap().is_some());
        backend.loads.load(SeqCst) == loads
    };
    cache.load(&r.id).await.unwrap();
    assert!(cached().await, "setup: cached");

    // The subscription is lost; the receiver stays open (as with a channel
    // that reconnects by itself), so only the event can tell.
    let resets = cache.stats().resets;
    channel
        .sender()
        .send(ChannelEvent::Disconnected)
        .await
        .unwrap();
    eventually("unsubscribed after Disconnected", || {
        !cache.is_subscribed() && cache.stats().resets > resets
    })
    .await;
    assert!(!cache.is_subscribed());
    assert!(!cached().await, "Disconnected cleared the cache");

    // Subscribed again: messages may have been lost, so clear again.
    let resets = cache.stats().resets;
    channel.sender().send(ChannelEvent::Reset).await.unwrap();
    eventually("subscribed after Reset", || cache.is_subscribed()).await;
    assert!(cache.stats().resets > resets);
    assert!(!cached().await, "Reset cleared the cache");
    assert!(cached().await);
    assert_eq!(
        channel.subscriptions.load(SeqCst),
        1,
        "one subscription throughout"
    );
}

/// Coalesced callers of a failed backend load each get the backend's own
/// error variant: `Aborted` stays `Aborted` (retryable by the manager), a
/// timeout keeps its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coalesced_callers_get_the_backend_error_variant() {
    let backend = backend();
    let r = record(None, "v1", HOUR);
    backend.inner.create(&r).await.unwrap();
    let cache = Arc::new(CachedStore::new(Arc::clone(&backend)).unwrap());
    backend.load_delay_ms.store(100, SeqCst);
    for abort in [true, false] {
        backend.abort_loads.store(abort, SeqCst);
        backend.time_out_loads.store(!abort, SeqCst);
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, barrier, id) = (Arc::clone(&cache), Arc::clone(&barrier), r.id);
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache.load(&id).await
                })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                Err(Error::Aborted(_)) if abort => {}
                Err(Error::Timeout(Some(limit))) if !abort => assert_eq!(limit, LOAD_LIMIT),
                other => panic!("abort={abort}: {other:?}"),
            }
        }
    }
    println!("{:?}", cache.stats());
}

// ---------------------------------------------------------------------------
// Configuration: refused, not adjusted.

fn config_error(result: Result<CachedStore<MemoryStore>>) -> String {
    match result {
        Err(Error::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn out_of_range_settings_are_refused() {
    let build = || CachedStore::builder(MemoryStore::new());
    assert_eq!(
        config_error(build().max_bytes(0).build()),
        "CachedStore: max_bytes must be at least 1 (got 0)"
    );
    assert_eq!(
        config_error(build().max_staleness(Duration::ZERO).build()),
        "CachedStore: max_staleness must be at least 1ms (got 0ns)"
    );
    assert_eq!(
        config_error(build().max_staleness(Duration::from_micros(999)).build()),
        "CachedStore: max_staleness must be at least 1ms (got 999µs)"
    );
    assert_eq!(
        config_error(build().publish_timeout(Duration::ZERO).build()),
        "CachedStore: publish_timeout must be at least 1ms (got 0ns)"
    );
    assert_eq!(
        config_error(build().publish_timeout(Duration::from_nanos(1)).build()),
        "CachedStore: publish_timeout must be at least 1ms (got 1ns)"
    );
}

#[test]
fn boundary_settings_are_accepted() {
    let cache = CachedStore::builder(MemoryStore::new())
        .max_bytes(1)
        .max_staleness(Duration::from_millis(1))
        .publish_timeout(Duration::from_millis(1))
        .build()
        .expect("the smallest values in range");
    assert!(
        format!("{cache:?}").contains("max_staleness: 1ms"),
        "{cache:?}"
    );
}
