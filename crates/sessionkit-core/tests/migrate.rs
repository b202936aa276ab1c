//! Moving sessions between stores with nobody logged out: a migrating
//! store under concurrent traffic, a bulk copy that is idempotent,
//! resumable and keeps every field, and nothing lost when the old side
//! changes during a move.

use std::collections::HashMap;
use std::sync::Arc;

use sessionkit_core::migrate::{MigratingStore, copy_sessions};
use sessionkit_core::testing::VecStore;
use sessionkit_core::{Record, SessionManager, SessionStore, Timestamp};
use tokio::sync::oneshot;

async fn all(store: &VecStore) -> HashMap<String, Record> {
    let mut out = HashMap::new();
    let mut cursor = None;
    loop {
        let page = store.scan(cursor.as_ref(), 7).await.unwrap();
        for r in page.records {
            out.insert(r.id.as_str().to_owned(), r);
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn copy_keeps_every_field_and_is_idempotent_and_resumable() {
    let (from, to) = (VecStore::default(), VecStore::default());
    let m = SessionManager::<u32>::stateful(from.clone())
        .build()
        .unwrap();
    for n in 0..50u32 {
        let s = m.create(Some(&format!("user-{}", n % 7)), n).await.unwrap();
        if n % 3 == 0 {
            m.update(s.ticket().as_str(), |v| *v += 1000).await.unwrap();
        }
    }
    // A first run over part of the source (as if it died half-way).
    let first_page = from.scan(None, 20).await.unwrap();
    for r in &first_page.records {
        to.create(r).await.unwrap();
    }
    // A full run over a partially filled target copies the rest only.
    let report = copy_sessions(&from, &to, 8, None, |_| {}).await.unwrap();
    assert_eq!(report.scanned, 50);
    assert_eq!((report.copied, report.already_there), (30, 20));
    assert_eq!(report.cursor, None);
    let again = copy_sessions(&from, &to, 8, None, |_| {}).await.unwrap();
    assert_eq!(
        (again.copied, again.already_there),
        (0, 50),
        "a second run is a no-op"
    );
    let (a, b) = (all(&from).await, all(&to).await);
    assert_eq!(
        a, b,
        "every id, version, subject, payload and instant copied"
    );
    // The copied sessions load, with their versions (CAS continues).
    let after = SessionManager::<u32>::stateful(to.clone()).build().unwrap();
    for n in 0..7 {
        for s in after.list_subject(&format!("user-{n}")).await.unwrap() {
            assert!(s.version() >= 1);
        }
    }
}

#[tokio::test]
async fn a_copy_resumes_from_its_last_cursor() {
    let (from, to) = (VecStore::default(), VecStore::default());
    let m = SessionManager::<u32>::stateful(from.clone())
        .build()
        .unwrap();
    for n in 0..30 {
        m.create(None, n).await.unwrap();
    }
    // Copy two pages by hand, remember the cursor, resume from it.
    let mut pages = 0;
    let mut resume = None;
    let partial = copy_sessions(&from, &to, 5, None, |p| {
        pages += 1;
        if pages == 2 {
            resume = p.cursor.clone();
        }
    })
    .await
    .unwrap();
    assert_eq!(partial.copied, 30);
    let fresh = VecStore::default();
    // Pretend the first run died after page 2: copy pages 1-2 then resume.
    let head = copy_sessions(&from, &fresh, 10, None, |_| {})
        .await
        .unwrap();
    assert_eq!(head.copied, 30);
    let resumed = copy_sessions(&from, &fresh, 5, resume, |_| {})
        .await
        .unwrap();
    assert_eq!(
        resumed.copied, 0,
        "everything after the cursor is already there"
    );
    assert_eq!(
        resumed.scanned, 20,
        "resuming skips the pages before the cursor"
    );
    assert_eq!(all(&to).await, all(&fresh).await);
}

/// During the move, instances read and write through the migrating store
/// while others still write the old store directly: every acknowledged
/// update is in the new store at the end, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migrating_store_under_traffic_loses_nothing() {
    let (old, new) = (VecStore::default(), VecStore::default());
    let before = SessionManager::<u32>::stateful(old.clone())
        .build()
        .unwrap();
    let mut tickets = Vec::new();
    for _ in 0..20 {
        tickets.push(
            before
                .create(Some("amy"), 0)
                .await
                .unwrap()
                .ticket()
                .clone(),
        );
    }
    let during = Arc::new(
        SessionManager::<u32>::stateful(MigratingStore::new(old.clone(), new.clone()))
            .build()
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for (i, t) in tickets.iter().enumerate() {
        for k in 0..4 {
            let (during, before, t) = (during.clone(), before.clone(), t.as_str().to_owned());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0u32;
                for _ in 0..10 {
                    // One in four writers is an instance not migrating yet;
                    // once the session moved it finds nothing (NotFound).
                    let m = if (i + k) % 4 == 0 { &before } else { &during };
                    if m.update(&t, |n| *n += 1).await.is_ok() {
                        ok += 1;
                    }
                }
                ok
            }));
        }
    }
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await.unwrap();
    }
    let moved = MigratingStore::new(old.clone(), new.clone())
        .move_sessions(16, None, |_| {})
        .await
        .unwrap();
    assert_eq!(moved.busy, 0);
    let after = SessionManager::<u32>::stateful(new.clone())
        .build()
        .unwrap();
    let mut total = 0;
    for t in &tickets {
        total += *after
            .load(t.as_str())
            .await
            .unwrap()
            .expect("every session is in the new store")
            .data();
    }
    assert_eq!(
        total, acknowledged,
        "an acknowledged update was lost in the move"
    );
    assert!(
        old.list_subject("amy").await.unwrap().is_empty(),
        "every session moved"
    );
    assert_eq!(after.list_subject("amy").await.unwrap().len(), 20);
}

/// Logout and log-out-everywhere reach sessions on both sides.
#[tokio::test]
async fn deletes_and_subject_operations_reach_both_stores() {
    let (old, new) = (VecStore::default(), VecStore::default());
    let before = SessionManager::<u32>::stateful(old.clone())
        .build()
        .unwrap();
    let a = before.create(Some("bob"), 1).await.unwrap();
    let during = SessionManager::<u32>::stateful(MigratingStore::new(old.clone(), new.clone()))
        .build()
        .unwrap();
    let b = during.create(Some("bob"), 2).await.unwrap();
    assert_eq!(during.list_subject("bob").await.unwrap().len(), 2);
    assert!(during.destroy(a.ticket().as_str()).await.unwrap());
    assert!(before.load(a.ticket().as_str()).await.unwrap().is_none());
    let c = before.create(Some("bob"), 3).await.unwrap();
    assert_eq!(during.destroy_subject("bob").await.unwrap(), 2);
    for t in [b.ticket(), c.ticket()] {
        assert!(during.load(t.as_str()).await.unwrap().is_none());
    }
}

/// The old store, with a write from an instance that is not migrating yet
/// landing between the move's copy and its compare-and-delete.
#[derive(Clone, Default)]
struct Interfering {
    inner: VecStore,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

#[sessionkit_core::async_trait]
impl SessionStore for Interfering {
    async fn create(&self, r: &Record) -> sessionkit_core::Result<()> {
        self.inner.create(r).await
    }
    async fn load(
        &self,
        id: &sessionkit_core::SessionId,
    ) -> sessionkit_core::Result<Option<Record>> {
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> sessionkit_core::Result<u64> {
        self.inner.save(r).await
    }
    async fn touch(
        &self,
        id: &sessionkit_core::SessionId,
        t: Timestamp,
    ) -> sessionkit_core::Result<()> {
        self.inner.touch(id, t).await
    }
    async fn delete(&self, id: &sessionkit_core::SessionId) -> sessionkit_core::Result<bool> {
        self.inner.delete(id).await
    }
    async fn compare_and_delete(
        &self,
        id: &sessionkit_core::SessionId,
        v: u64,
    ) -> sessionkit_core::Result<()> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let mut r = self.inner.load(id).await?.expect("the record being moved");
            r.payload = bytes::Bytes::from_static(b"written on the old side");
            self.inner.save(&r).await?;
        }
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> sessionkit_core::Result<Vec<Record>> {
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> sessionkit_core::Result<u64> {
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> sessionkit_core::Result<u64> {
        Ok(0)
    }
}

/// A session changed on the old side while it is being moved keeps that
/// change: the copy is taken back and the move tried again.
#[tokio::test]
async fn a_write_on_the_old_side_during_a_move_wins() {
    let old = Interfering::default();
    let new = VecStore::default();
    let now = Timestamp::now();
    let record = Record::new(
        sessionkit_core::SessionId::generate(),
        Some("cat".into()),
        &b"original"[..],
        now,
        now + std::time::Duration::from_secs(60),
    );
    old.create(&record).await.unwrap();
    old.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let migrating = MigratingStore::new(old.clone(), new.clone());
    let moved = migrating.load(&record.id).await.unwrap().expect("found");
    assert_eq!(&moved.payload[..], b"written on the old side");
    assert_eq!(moved.version, 2);
    assert_eq!(new.load(&record.id).await.unwrap().unwrap(), moved);
    assert!(old.inner.load(&record.id).await.unwrap().is_none());
}

/// A source where a logout lands between the copy's read of a page and its
/// write: the first record of every page is deleted right after `scan`
/// returned it.
#[derive(Clone, Default)]
struct LogoutDuringCopy(VecStore);

#[sessionkit_core::async_trait]
impl SessionStore for LogoutDuringCopy {
    async fn create(&self, r: &Record) -> sessionkit_core::Result<()> {
        self.0.create(r).await
    }
    async fn load(
        &self,
        id: &sessionkit_core::SessionId,
    ) -> sessionkit_core::Result<Option<Record>> {
        self.0.load(id).await
    }
    async fn save(&self, r: &Record) -> sessionkit_core::Result<u64> {
        self.0.save(r).await
    }
    async fn touch(
        &self,
        id: &sessionkit_core::SessionId,
        t: Timestamp,
    ) -> sessionkit_core::Result<()> {
        self.0.touch(id, t).await
    }
    async fn delete(&self, id: &sessionkit_core::SessionId) -> sessionkit_core::Result<bool> {
        self.0.delete(id).await
    }
    async fn compare_and_delete(
        &self,
        id: &sessionkit_core::SessionId,
        v: u64,
    ) -> sessionkit_core::Result<()> {
        self.0.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> sessionkit_core::Result<Vec<Record>> {
        self.0.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> sessionkit_core::Result<u64> {
        self.0.delete_subject(s).await
    }
    async fn delete_expired(&self) -> sessionkit_core::Result<u64> {
        Ok(0)
    }
    async fn scan(
        &self,
        cursor: Option<&sessionkit_core::ScanCursor>,
        limit: usize,
    ) -> sessionkit_core::Result<sessionkit_core::ScanPage> {
        let page = self.0.scan(cursor, limit).await?;
        if let Some(first) = page.records.first() {
            self.0.delete(&first.id).await?;
        }
        Ok(page)
    }
}

/// A session logged out while its page is being copied is not brought back
/// to life in the target.
#[tokio::test]
async fn a_logout_during_the_copy_is_not_undone() {
    let from = LogoutDuringCopy::default();
    let to = VecStore::default();
    let m = SessionManager::<u32>::stateful(from.clone())
        .build()
        .unwrap();
    for n in 0..12 {
        m.create(Some("eve"), n).await.unwrap();
    }
    let report = copy_sessions(&from, &to, 5, None, |_| {}).await.unwrap();
    assert_eq!(report.expired, 3, "one logout per page of 5");
    assert_eq!(report.copied, 9);
    let mut live_from: Vec<_> = from
        .list_subject("eve")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut live_to: Vec<_> = to
        .list_subject("eve")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    live_from.sort();
    live_to.sort();
    assert_eq!(
        live_to, live_from,
        "the target holds exactly the sessions still live in the source"
    );
}

/// The old store, whose first `compare_and_delete` (the one that finishes a
/// move) tells the test it was reached and waits for the test's go.
#[derive(Clone, Default)]
struct GatedOld {
    inner: VecStore,
    #[allow(clippy::type_complexity)]
    gate: Arc<std::sync::Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>>,
}

impl GatedOld {
    /// Arms the gate: returns (reached, release).
    fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.gate.lock().unwrap() = Some((reached_tx, release_rx));
        (reached_rx, release_tx)
    }
}

#[sessionkit_core::async_trait]
impl SessionStore for GatedOld {
    async fn create(&self, r: &Record) -> sessionkit_core::Result<()> {
        self.inner.create(r).await
    }
    async fn load(
        &self,
        id: &sessionkit_core::SessionId,
    ) -> sessionkit_core::Result<Option<Record>> {
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> sessionkit_core::Result<u64> {
        self.inner.save(r).await
    }
    async fn touch(
        &self,
        id: &sessionkit_core::SessionId,
        t: Timestamp,
    ) -> sessionkit_core::Result<()> {
        self.inner.touch(id, t).await
    }
    async fn delete(&self, id: &sessionkit_core::SessionId) -> sessionkit_core::Result<bool> {
        self.inner.delete(id).await
    }
    async fn compare_and_delete(
        &self,
        id: &sessionkit_core::SessionId,
        v: u64,
    ) -> sessionkit_core::Result<()> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((reached, release)) = gate {
            reached.send(()).unwrap();
            release.await.unwrap();
        }
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> sessionkit_core::Result<Vec<Record>> {
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> sessionkit_core::Result<u64> {
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> sessionkit_core::Result<u64> {
        Ok(0)
    }
    async fn scan(
        &self,
        cursor: Option<&sessionkit_core::ScanCursor>,
        limit: usize,
    ) -> sessionkit_core::Result<sessionkit_core::ScanPage> {
        self.inner.scan(cursor, limit).await
    }
}

/// The worst order during a rolling deploy: a move has copied the session
/// and not yet removed the original; a migrating instance saves it, then an
/// instance still on the old store saves it too. Both saves were
/// acknowledged, so both survive the move (before, the first went to the
/// copy, the second to the original, and the move kept only the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_acknowledged_writes_on_both_sides_of_a_move_both_survive() {
    let (old, new) = (GatedOld::default(), VecStore::default());
    let before = SessionManager::<u32>::stateful(old.clone())
        .build()
        .unwrap();
    let during = SessionManager::<u32>::stateful(MigratingStore::new(old.clone(), new.clone()))
        .build()
        .unwrap();
    let ticket = before
        .create(Some("dan"), 0)
        .await
        .unwrap()
        .ticket()
        .clone();
    let (reached, release) = old.arm();
    let mover = tokio::spawn({
        let (during, ticket) = (during.clone(), ticket.clone());
        async move {
            during
                .load(ticket.as_str())
                .await
                .unwrap()
                .map(|s| *s.data())
        }
    });
    reached.await.unwrap(); // copied, original not yet removed
    let migrating = during.update(ticket.as_str(), |n| *n += 1).await.unwrap();
    assert_eq!(*migrating.data(), 1, "the migrating instance's save");
    let old_side = before.update(ticket.as_str(), |n| *n += 10).await.unwrap();
    assert_eq!(
        *old_side.data(),
        11,
        "the old instance's save sees the first"
    );
    release.send(()).unwrap();
    mover.await.unwrap();
    let after = SessionManager::<u32>::stateful(new.clone())
        .build()
        .unwrap();
    assert_eq!(
        *after.load(ticket.as_str()).await.unwrap().unwrap().data(),
        11,
        "both acknowledged writes are in the new store"
    );
    assert!(old.inner.list_subject("dan").await.unwrap().is_empty());
}

/// A logout on an instance that is not migrating yet, landing between a
/// move's copy and its removal of the original: the copy does not bring
/// the session back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_the_old_side_during_a_move_is_not_undone() {
    let (old, new) = (GatedOld::default(), VecStore::default());
    let before = SessionManager::<u32>::stateful(old.clone())
        .build()
        .unwrap();
    let during = SessionManager::<u32>::stateful(MigratingStore::new(old.clone(), new.clone()))
        .build()
        .unwrap();
    let ticket = before
        .create(Some("fay"), 5)
        .await
        .unwrap()
        .ticket()
        .clone();
    let (reached, release) = old.arm();
    let mover = tokio::spawn({
        let (during, ticket) = (during.clone(), ticket.clone());
        async move { during.load(ticket.as_str()).await.unwrap().is_some() }
    });
    reached.await.unwrap();
    assert!(new.list_subject("fay").await.unwrap().len() == 1, "copied");
    assert!(before.destroy(ticket.as_str()).await.unwrap());
    release.send(()).unwrap();
    assert!(!mover.await.unwrap(), "the move reports no session");
    assert!(during.load(ticket.as_str()).await.unwrap().is_none());
    assert!(new.list_subject("fay").await.unwrap().is_empty());
}

/// A move abandoned half-way (its request died after the copy) leaves a
/// copy beside the original; saves keep going to the original, and
/// `move_sessions` redoes the move once the copy has sat unchanged.
#[tokio::test]
async fn an_abandoned_move_is_redone_by_move_sessions() {
    let (old, new) = (VecStore::default(), VecStore::default());
    let before = SessionManager::<u32>::stateful(old.clone())
        .build()
        .unwrap();
    let during = SessionManager::<u32>::stateful(MigratingStore::new(old.clone(), new.clone()))
        .build()
        .unwrap();
    let ticket = before
        .create(Some("gil"), 1)
        .await
        .unwrap()
        .ticket()
        .clone();
    let original = old.list_subject("gil").await.unwrap().remove(0);
    new.create(&original).await.unwrap(); // the dead request's copy
    during.update(ticket.as_str(), |n| *n += 1).await.unwrap();
    let report = MigratingStore::new(old.clone(), new.clone())
        .abandoned_after(std::time::Duration::from_millis(20))
        .move_sessions(10, None, |_| {})
        .await
        .unwrap();
    assert_eq!((report.copied, report.busy), (1, 0), "{report:?}");
    assert!(old.list_subject("gil").await.unwrap().is_empty());
    let after = SessionManager::<u32>::stateful(new.clone())
        .build()
        .unwrap();
    assert_eq!(
        *after.load(ticket.as_str()).await.unwrap().unwrap().data(),
        2
    );
}
