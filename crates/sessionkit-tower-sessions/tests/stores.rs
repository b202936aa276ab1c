//! The adapter's tower-sessions store methods, called directly, on every
//! kind of sessionkit store: memory, a cache in front of memory, SQLite and
//! Redis (loopback; skipped when unreachable unless
//! `SESSIONKIT_REQUIRE_SERVICES=1`). Plus the save retry path and the error
//! mapping, with stores that misbehave on purpose.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sessionkit_core::{Error, Record, Result, SessionId, SessionStore, Timestamp, async_trait};
use sessionkit_memory::{CachedStore, MemoryStore};
use sessionkit_tower_sessions::{Data, TowerSessionsStore, store_id};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record as TowerRecord};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore as _};

fn data(pairs: &[(&str, serde_json::Value)]) -> Data {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn record(id: Id, data: Data, ttl: time::Duration) -> TowerRecord {
    TowerRecord {
        id,
        data,
        expiry_date: OffsetDateTime::now_utc() + ttl,
    }
}

/// `t` as the store keeps it: whole milliseconds.
fn millis(t: OffsetDateTime) -> OffsetDateTime {
    Timestamp::from(t).to_offset_date_time()
}

fn user_subject(d: &Data) -> Option<String> {
    d.get("user")?.as_str().map(str::to_owned)
}

/// Every adapter operation against one sessionkit store.
async fn exercise<S: SessionStore + Clone>(backend: S) {
    let store = TowerSessionsStore::new(backend.clone()).with_subject(user_subject);
    let hour = time::Duration::hours(1);

    // create + load.
    let mut a = record(Id::default(), data(&[("n", 1.into())]), hour);
    let original = a.id;
    store.create(&mut a).await.unwrap();
    assert_eq!(a.id, original, "no collision: the ID is kept");
    let loaded = store.load(&a.id).await.unwrap().expect("created");
    assert_eq!(loaded.id, a.id);
    assert_eq!(loaded.data, a.data);
    assert_eq!(loaded.expiry_date, millis(a.expiry_date));
    // Stored under the hashed ID only.
    assert!(backend.load(&store_id(&a.id)).await.unwrap().is_some());
    assert!(
        backend
            .load(&SessionId::from_bytes(a.id.0.to_le_bytes()))
            .await
            .unwrap()
            .is_none()
    );

    // create with a colliding ID draws a new one and overwrites nothing.
    let mut b = record(a.id, data(&[("n", 2.into())]), hour);
    store.create(&mut b).await.unwrap();
    assert_ne!(b.id, a.id, "a new ID after the collision");
    assert_eq!(store.load(&a.id).await.unwrap().unwrap().data, a.data);
    assert_eq!(store.load(&b.id).await.unwrap().unwrap().data, b.data);

    // save replaces the data and the expiry, keeps one record.
    let mut changed = a.clone();
    changed.data = data(&[("n", 3.into()), ("user", "alice".into())]);
    changed.expiry_date = OffsetDateTime::now_utc() + time::Duration::hours(2);
    store.save(&changed).await.unwrap();
    let loaded = store.load(&a.id).await.unwrap().unwrap();
    assert_eq!(loaded.data, changed.data);
    assert_eq!(loaded.expiry_date, millis(changed.expiry_date));
    let raw = backend.load(&store_id(&a.id)).await.unwrap().unwrap();
    assert_eq!(raw.version, 2, "one compare-and-swap write");
    assert_eq!(raw.subject.as_deref(), Some("alice"));

    // The subject index: log out everywhere through the sessionkit store.
    let mut c = record(Id::default(), data(&[("user", "alice".into())]), hour);
    store.create(&mut c).await.unwrap();
    assert_eq!(backend.list_subject("alice").await.unwrap().len(), 2);
    // A save that drops the user drops the subject.
    let mut anonymous = c.clone();
    anonymous.data = data(&[]);
    store.save(&anonymous).await.unwrap();
    assert_eq!(backend.list_subject("alice").await.unwrap().len(), 1);
    assert_eq!(backend.delete_subject("alice").await.unwrap(), 1);
    assert!(store.load(&a.id).await.unwrap().is_none());
    assert!(store.load(&c.id).await.unwrap().is_some());

    // A save of an ended session writes nothing back.
    store.save(&changed).await.unwrap();
    assert!(store.load(&a.id).await.unwrap().is_none());
    assert!(backend.load(&store_id(&a.id)).await.unwrap().is_none());

    // delete is idempotent.
    store.delete(&b.id).await.unwrap();
    assert!(store.load(&b.id).await.unwrap().is_none());
    store.delete(&b.id).await.unwrap();
    store.delete(&Id::default()).await.unwrap();

    // An unknown ID, an expired record.
    assert!(store.load(&Id::default()).await.unwrap().is_none());
    let mut expired = record(Id::default(), data(&[("n", 4.into())]), hour);
    store.create(&mut expired).await.unwrap();
    backend
        .touch(
            &store_id(&expired.id),
            Timestamp::now() - std::time::Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(store.load(&expired.id).await.unwrap().is_none());
    store.delete_expired().await.unwrap();
    assert!(
        backend
            .load(&store_id(&expired.id))
            .await
            .unwrap()
            .is_none()
    );

    // A stored record that is not a JSON map: a Decode error with the cause.
    let corrupt = Id::default();
    let now = Timestamp::now();
    backend
        .create(&Record::new(
            store_id(&corrupt),
            None,
            b"\x00not json".to_vec(),
            now,
            now + std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    match store.load(&corrupt).await {
        Err(session_store::Error::Decode(msg)) => assert!(msg.contains("JSON"), "{msg}"),
        other => panic!("expected a Decode error, got {other:?}"),
    }

    // A subject sessionkit refuses fails the write, as an Encode error.
    let mut bad = record(Id::default(), data(&[("user", "".into())]), hour);
    match store.create(&mut bad).await {
        Err(session_store::Error::Encode(msg)) => assert!(msg.contains("subject"), "{msg}"),
        other => panic!("expected an Encode error, got {other:?}"),
    }
    assert!(store.load(&bad.id).await.unwrap().is_none());
}

#[tokio::test]
async fn memory() {
    exercise(MemoryStore::new()).await;
}

#[tokio::test]
async fn cached_memory() {
    exercise(Arc::new(CachedStore::new(MemoryStore::new()).unwrap())).await;
}

#[tokio::test]
async fn sqlite() {
    let store = sessionkit_sql::SqlStore::connect("sqlite::memory:")
        .await
        .expect("an in-memory SQLite store");
    exercise(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let url = std::env::var("SESSIONKIT_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let random: String = SessionId::generate().to_bytes()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix = format!("sktest:tower:{random}");
    let config = sessionkit_redis::RedisConfig::new().prefix(prefix);
    let store = match sessionkit_redis::RedisStore::standalone(&url, config).await {
        Ok(store) => store,
        Err(err) => {
            return sessionkit_testkit::skip::<()>(&format!("redis at {url}"), err).unwrap_or(());
        }
    };
    exercise(store).await;
}

#[tokio::test]
async fn an_arc_dyn_store_chosen_at_run_time() {
    let chosen: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    exercise(chosen).await;
}

/// A memory store whose `save` first lets `interfere` more writes of the
/// same record through (as concurrent requests would), so the adapter's
/// compare-and-swap meets a newer version.
#[derive(Clone)]
struct Interfering {
    inner: MemoryStore,
    interfere: Arc<AtomicUsize>,
    saves: Arc<AtomicUsize>,
    fresh_loads: Arc<AtomicUsize>,
}

#[async_trait]
impl SessionStore for Interfering {
    async fn create(&self, record: &Record) -> Result<()> {
        self.inner.create(record).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.inner.load(id).await
    }
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        self.fresh_loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_fresh(id).await
    }
    async fn save(&self, record: &Record) -> Result<u64> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        let left = self.interfere.load(Ordering::SeqCst);
        if left > 0 {
            self.interfere.store(left - 1, Ordering::SeqCst);
            let current = self.inner.load(&record.id).await?.expect("live");
            let other = Record {
                payload: br#"{"by":"another request"}"#.to_vec().into(),
                ..current
            };
            self.inner.save(&other).await?;
        }
        self.inner.save(record).await
    }
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        self.inner.touch(id, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        self.inner.compare_and_delete(id, version).await
    }
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.inner.list_subject(subject).await
    }
    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        self.inner.delete_subject(subject).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }
}

fn interfering(times: usize) -> Interfering {
    Interfering {
        inner: MemoryStore::new(),
        interfere: Arc::new(AtomicUsize::new(times)),
        saves: Arc::new(AtomicUsize::new(0)),
        fresh_loads: Arc::new(AtomicUsize::new(0)),
    }
}

#[tokio::test]
async fn a_save_that_meets_a_concurrent_write_reloads_the_version_and_wins() {
    let backend = interfering(0);
    let store = TowerSessionsStore::new(backend.clone());
    let mut rec = record(
        Id::default(),
        data(&[("n", 1.into())]),
        time::Duration::hours(1),
    );
    store.create(&mut rec).await.unwrap();

    backend.interfere.store(2, Ordering::SeqCst);
    rec.data = data(&[("n", 2.into())]);
    store.save(&rec).await.unwrap();
    // Two conflicts, then the write: three CAS attempts, the retries on the
    // source of truth.
    assert_eq!(backend.saves.load(Ordering::SeqCst), 3);
    assert_eq!(backend.fresh_loads.load(Ordering::SeqCst), 2);
    // Last writer wins: this save, over the two interfering ones.
    assert_eq!(store.load(&rec.id).await.unwrap().unwrap().data, rec.data);
    let raw = backend.load(&store_id(&rec.id)).await.unwrap().unwrap();
    assert_eq!(raw.version, 4);
}

#[tokio::test]
async fn a_save_that_always_meets_a_concurrent_write_gives_up_with_a_backend_error() {
    let backend = interfering(0);
    let store = TowerSessionsStore::new(backend.clone());
    let mut rec = record(
        Id::default(),
        data(&[("n", 1.into())]),
        time::Duration::hours(1),
    );
    store.create(&mut rec).await.unwrap();

    backend.interfere.store(usize::MAX, Ordering::SeqCst);
    match store.save(&rec).await {
        Err(session_store::Error::Backend(msg)) => assert!(msg.contains("concurrent"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
    assert_eq!(backend.saves.load(Ordering::SeqCst), 8, "bounded retries");
}

/// A store whose every call fails the way `fail` says.
#[derive(Clone)]
struct Failing(fn() -> Error);

#[async_trait]
impl SessionStore for Failing {
    async fn create(&self, _: &Record) -> Result<()> {
        Err((self.0)())
    }
    async fn load(&self, _: &SessionId) -> Result<Option<Record>> {
        Err((self.0)())
    }
    async fn save(&self, _: &Record) -> Result<u64> {
        Err((self.0)())
    }
    async fn touch(&self, _: &SessionId, _: Timestamp) -> Result<()> {
        Err((self.0)())
    }
    async fn delete(&self, _: &SessionId) -> Result<bool> {
        Err((self.0)())
    }
    async fn compare_and_delete(&self, _: &SessionId, _: u64) -> Result<()> {
        Err((self.0)())
    }
    async fn list_subject(&self, _: &str) -> Result<Vec<Record>> {
        Err((self.0)())
    }
    async fn delete_subject(&self, _: &str) -> Result<u64> {
        Err((self.0)())
    }
    async fn delete_expired(&self) -> Result<u64> {
        Err((self.0)())
    }
}

#[derive(Debug)]
struct Cause(&'static str);
impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Cause {}

#[tokio::test]
async fn errors_keep_their_kind_and_their_whole_message() {
    type Case = (fn() -> Error, &'static str, &'static str);
    let cases: [Case; 5] = [
        (
            || Error::backend(Cause("connection reset"), true),
            "Backend",
            "connection reset",
        ),
        (|| Error::Timeout(None), "Backend", "did not answer in time"),
        (|| Error::decode(Cause("bad bytes")), "Decode", "bad bytes"),
        (|| Error::encode(Cause("no room")), "Encode", "no room"),
        (
            || Error::TooLarge { size: 10, limit: 5 },
            "Encode",
            "limit is 5 bytes",
        ),
    ];
    for (make, kind, text) in cases {
        let store = TowerSessionsStore::new(Failing(make));
        let mut rec = record(Id::default(), HashMap::new(), time::Duration::hours(1));
        let errors = [
            store.create(&mut rec).await.unwrap_err(),
            store.save(&rec).await.unwrap_err(),
            store.load(&rec.id).await.unwrap_err(),
            store.delete(&rec.id).await.unwrap_err(),
            store.delete_expired().await.unwrap_err(),
        ];
        for err in errors {
            let (got, msg) = match &err {
                session_store::Error::Backend(m) => ("Backend", m),
                session_store::Error::Decode(m) => ("Decode", m),
                session_store::Error::Encode(m) => ("Encode", m),
            };
            assert_eq!(got, kind, "{err:?}");
            assert!(msg.contains(text), "{msg:?} lacks {text:?}");
        }
    }
}
