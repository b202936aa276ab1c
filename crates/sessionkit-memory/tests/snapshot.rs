//! `MemoryStore` snapshots: what a restart keeps, and that a bad file is
//! reported and never partly trusted.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};
use sessionkit_memory::{MemoryStore, SNAPSHOT_FORMAT_VERSION, SnapshotError};

const HOUR: Duration = Duration::from_secs(3600);

/// A fresh directory of its own for one test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sessionkit-snapshot-{name}-{}-{}",
            std::process::id(),
            SessionId::generate().as_str()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

/// Restores `path` into a fresh store: the error, and proof that nothing
/// was inserted.
async fn refused(path: &Path) -> SnapshotError {
    let store = MemoryStore::new();
    let err = match store.restore_from(path).await {
        Ok(report) => panic!("a bad snapshot was accepted: {report:?}"),
        Err(e) => e,
    };
    assert_eq!(
        store.entry_count(),
        0,
        "a refused snapshot inserted records"
    );
    err
}

/// A small snapshot (a few sessions) and its bytes.
async fn small_snapshot(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    let store = MemoryStore::new();
    for (i, subject) in [Some("ann"), None, Some("bob"), Some("ann")]
        .into_iter()
        .enumerate()
    {
        store
            .create(&record(subject, vec![i as u8; 3 * i], HOUR))
            .await
            .unwrap();
    }
    let path = dir.path("small.snap");
    store.snapshot_to(&path).await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_every_session_subject_and_version() {
    let dir = TempDir::new("round-trip");
    let path = dir.path("sessions.snap");
    let store = MemoryStore::new();
    let mut originals = Vec::new();
    for i in 0..2_000usize {
        let subject = (i % 5 != 0).then(|| format!("user-{}", i % 40));
        let len = match i % 100 {
            0 => 0,
            1 => 64 * 1024,
            _ => 10 + i % 300,
        };
        let mut r = record(subject.as_deref(), vec![(i % 251) as u8; len], HOUR);
        store.create(&r).await.unwrap();
        for _ in 0..i % 4 {
            r.version = store.save(&r).await.unwrap();
        }
        originals.push(r);
    }
    let summary = store.snapshot_to(&path).await.unwrap();
    assert_eq!(summary.records, 2_000);
    assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());

    let restarted = MemoryStore::new();
    let report = restarted.restore_from(&path).await.unwrap();
    assert!(report.found);
    assert_eq!(
        (
            report.restored,
            report.expired,
            report.conflicts,
            report.too_large
        ),
        (2_000, 0, 0, 0)
    );
    assert!(report.written_at.is_some());
    // Every field comes back exactly.
    for r in &originals {
        assert_eq!(restarted.load(&r.id).await.unwrap().as_ref(), Some(r));
    }
    // The subject index is rebuilt.
    let mut by_subject: HashMap<&str, BTreeSet<SessionId>> = HashMap::new();
    for r in &originals {
        if let Some(s) = &r.subject {
            by_subject.entry(s).or_default().insert(r.id);
        }
    }
    for (subject, ids) in &by_subject {
        let listed: BTreeSet<SessionId> = restarted
            .list_subject(subject)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(&listed, ids, "list_subject({subject}) after restore");
    }
    // Compare-and-swap goes on where it left off.
    let mut r = originals[7].clone();
    let stale = r.clone();
    r.payload = (&b"after restart"[..]).into();
    r.version = restarted.save(&r).await.unwrap();
    assert_eq!(r.version, stale.version + 1);
    assert!(matches!(restarted.save(&stale).await, Err(Error::Conflict)));
    let other = &originals[8];
    assert!(matches!(
        restarted
            .compare_and_delete(&other.id, other.version + 1)
            .await,
        Err(Error::Conflict)
    ));
    restarted
        .compare_and_delete(&other.id, other.version)
        .await
        .unwrap();
    let user3 = by_subject["user-3"].len() as u64;
    assert_eq!(restarted.delete_subject("user-3").await.unwrap(), user3);
    assert!(restarted.list_subject("user-3").await.unwrap().is_empty());
}

#[tokio::test]
async fn expired_sessions_are_dropped_on_restore_and_not_written() {
    let dir = TempDir::new("expired");
    let path = dir.path("sessions.snap");
    let store = MemoryStore::new();
    let long: Vec<Record> = (0..10).map(|_| record(Some("u"), vec![1], HOUR)).collect();
    let short: Vec<Record> = (0..10)
        .map(|_| record(Some("u"), vec![2], Duration::from_millis(100)))
        .collect();
    for r in long.iter().chain(&short) {
        store.create(r).await.unwrap();
    }
    // Written while all 20 are live ...
    assert_eq!(store.snapshot_to(&path).await.unwrap().records, 20);
    let past = short.iter().map(|r| r.expires_at).max().unwrap() + Duration::from_millis(5);
    tokio::time::sleep(past.remaining_from(Timestamp::now())).await;

    // ... restored after 10 of them expired.
    let restarted = MemoryStore::new();
    let report = restarted.restore_from(&path).await.unwrap();
    assert_eq!((report.restored, report.expired), (10, 10));
    assert_eq!(restarted.entry_count(), 10);
    for r in &short {
        assert_eq!(restarted.load(&r.id).await.unwrap(), None);
    }
    assert_eq!(restarted.list_subject("u").await.unwrap().len(), 10);

    // A snapshot taken now writes only the live ones.
    assert_eq!(store.snapshot_to(&path).await.unwrap().records, 10);
}

#[tokio::test]
async fn a_missing_file_is_a_fresh_start() {
    let dir = TempDir::new("missing");
    let store = MemoryStore::new();
    let report = store.restore_from(dir.path("none.snap")).await.unwrap();
    assert!(!report.found);
    assert_eq!(report.restored, 0);
    assert_eq!(store.entry_count(), 0);
}

#[tokio::test]
async fn a_truncated_or_extended_file_is_refused_at_every_length() {
    let dir = TempDir::new("truncated");
    let (_, full) = small_snapshot(&dir).await;
    let cut = dir.path("cut.snap");
    for len in 0..full.len() {
        std::fs::write(&cut, &full[..len]).unwrap();
        let err = refused(&cut).await;
        assert!(
            matches!(
                err,
                SnapshotError::Truncated { .. } | SnapshotError::ChecksumMismatch
            ),
            "cut at {len} of {}: {err:?}",
            full.len()
        );
    }
    let mut longer = full.clone();
    longer.push(0);
    std::fs::write(&cut, &longer).unwrap();
    assert!(matches!(
        refused(&cut).await,
        SnapshotError::Truncated { .. }
    ));
    // The intact file still restores.
    std::fs::write(&cut, &full).unwrap();
    assert_eq!(
        MemoryStore::new()
            .restore_from(&cut)
            .await
            .unwrap()
            .restored,
        4
    );
}

#[tokio::test]
async fn any_flipped_bit_is_detected() {
    let dir = TempDir::new("flipped");
    let (_, full) = small_snapshot(&dir).await;
    let bad = dir.path("bad.snap");
    for at in 0..full.len() {
        for mask in [0x01u8, 0x80] {
            let mut data = full.clone();
            data[at] ^= mask;
            std::fs::write(&bad, &data).unwrap();
            // Any error will do, as long as it is one and nothing went in.
            refused(&bad).await;
        }
    }
}

#[tokio::test]
async fn wrong_magic_and_unknown_versions_are_named() {
    let dir = TempDir::new("magic");
    let (_, full) = small_snapshot(&dir).await;
    let bad = dir.path("bad.snap");

    let mut data = full.clone();
    data[..8].copy_from_slice(b"SQLite f");
    std::fs::write(&bad, &data).unwrap();
    assert!(matches!(refused(&bad).await, SnapshotError::NotASnapshot));

    std::fs::write(&bad, b"{\"sessions\": []}").unwrap();
    assert!(matches!(refused(&bad).await, SnapshotError::NotASnapshot));

    let mut data = full.clone();
    data[8..12].copy_from_slice(&(SNAPSHOT_FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&bad, &data).unwrap();
    assert!(matches!(
        refused(&bad).await,
        SnapshotError::UnsupportedVersion { found, supported }
            if found == SNAPSHOT_FORMAT_VERSION + 1 && supported == SNAPSHOT_FORMAT_VERSION
    ));
}

#[tokio::test]
async fn a_failed_write_leaves_the_previous_snapshot() {
    let dir = TempDir::new("atomic");
    let path = dir.path("sessions.snap");
    let store = MemoryStore::new();
    let first = record(Some("a"), b"first".to_vec(), HOUR);
    store.create(&first).await.unwrap();
    store.snapshot_to(&path).await.unwrap();
    let before = std::fs::read(&path).unwrap();

    // The next snapshot cannot create its temporary file.
    store
        .create(&record(Some("a"), b"second".to_vec(), HOUR))
        .await
        .unwrap();
    let tmp = dir.path("sessions.snap.tmp");
    std::fs::create_dir(&tmp).unwrap();
    assert!(matches!(
        store.snapshot_to(&path).await,
        Err(SnapshotError::Io(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before, "the target changed");
    let restarted = MemoryStore::new();
    assert_eq!(restarted.restore_from(&path).await.unwrap().restored, 1);
    assert_eq!(restarted.load(&first.id).await.unwrap(), Some(first));

    // A crash mid-write leaves a partial temporary file: it is never read,
    // and the next snapshot replaces it.
    std::fs::remove_dir(&tmp).unwrap();
    std::fs::write(&tmp, &before[..before.len() / 2]).unwrap();
    assert_eq!(
        MemoryStore::new()
            .restore_from(&path)
            .await
            .unwrap()
            .restored,
        1
    );
    assert_eq!(store.snapshot_to(&path).await.unwrap().records, 2);
    assert!(!tmp.exists(), "the temporary file was left behind");
    assert_eq!(
        MemoryStore::new()
            .restore_from(&path)
            .await
            .unwrap()
            .restored,
        2
    );
}

#[tokio::test]
async fn restoring_keeps_live_sessions_already_there() {
    let dir = TempDir::new("conflict");
    let path = dir.path("sessions.snap");
    let store = MemoryStore::new();
    let r = record(Some("a"), b"from the file".to_vec(), HOUR);
    store.create(&r).await.unwrap();
    store.snapshot_to(&path).await.unwrap();

    let other = MemoryStore::new();
    let mine = Record {
        payload: (&b"already here"[..]).into(),
        ..r.clone()
    };
    other.create(&mine).await.unwrap();
    let report = other.restore_from(&path).await.unwrap();
    assert_eq!((report.restored, report.conflicts), (0, 1));
    assert_eq!(other.load(&r.id).await.unwrap(), Some(mine));
}

#[tokio::test]
async fn a_smaller_store_keeps_the_most_recently_active() {
    let dir = TempDir::new("smaller");
    let path = dir.path("sessions.snap");
    let store = MemoryStore::new();
    let now = Timestamp::now();
    let mut all = Vec::new();
    for i in 0..100u64 {
        // Later expiry = more recently active.
        let r = Record::new(
            SessionId::generate(),
            None,
            vec![1],
            now,
            now + HOUR + Duration::from_secs(i),
        );
        store.create(&r).await.unwrap();
        all.push(r);
    }
    store.snapshot_to(&path).await.unwrap();
    let small = MemoryStore::builder().max_entries(10).build().unwrap();
    small.restore_from(&path).await.unwrap();
    assert_eq!(small.entry_count(), 10);
    for r in &all[90..] {
        assert_eq!(small.load(&r.id).await.unwrap().as_ref(), Some(r));
    }
}

/// Polls `done` every few milliseconds for at most 10 seconds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_snapshots_write_until_stopped() {
    let dir = TempDir::new("periodic");
    let path = dir.path("sessions.snap");
    let store = MemoryStore::new();
    let first = record(Some("p"), b"1".to_vec(), HOUR);
    store.create(&first).await.unwrap();
    let task = store.spawn_snapshots(&path, Duration::from_millis(20));
    eventually("a first snapshot", || task.written() >= 1).await;
    let restored = MemoryStore::new();
    restored.restore_from(&path).await.unwrap();
    assert_eq!(restored.load(&first.id).await.unwrap(), Some(first.clone()));

    // A session created now is in a snapshot that starts later.
    let second = record(Some("p"), b"2".to_vec(), HOUR);
    store.create(&second).await.unwrap();
    let seen = task.written();
    eventually("a later snapshot", || task.written() >= seen + 2).await;
    let restored = MemoryStore::new();
    assert_eq!(restored.restore_from(&path).await.unwrap().restored, 2);
    assert_eq!(task.failed(), 0);

    task.stop().await;
    // Stopped: the file is no longer rewritten.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    store
        .create(&record(Some("p"), b"3".to_vec(), HOUR))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_snapshots_count_failures_and_end_with_the_store() {
    let dir = TempDir::new("periodic-fail");
    let store = MemoryStore::new();
    // The directory does not exist: every snapshot fails, and is counted.
    let task = store.spawn_snapshots(dir.path("missing/sessions.snap"), Duration::from_millis(10));
    eventually("failed snapshots", || task.failed() >= 2).await;
    assert_eq!(task.written(), 0);
    // The task does not keep the store alive, and ends with it.
    drop(store);
    eventually("the task to end", || task.is_finished()).await;
}
