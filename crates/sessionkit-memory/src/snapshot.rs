//! Snapshots of a [`MemoryStore`]: its live sessions written to one file
//! and loaded back on start, so that a single instance keeps its users
//! logged in across a graceful restart.
//!
//! The file format and the guarantees are documented in the crate
//! documentation (`lib.rs`, "Snapshots").

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sessionkit_core::{Record, SessionId, Timestamp};
use sha2::{Digest, Sha256};

use crate::store::{Inner, MemoryStore};

/// The first 8 bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"\x89SKSNAP\n";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

const HEADER_LEN: usize = 40;
const CHECKSUM_LEN: usize = 32;
const ID_TEXT_LEN: usize = sessionkit_core::ID_LEN;
/// The smallest encoded record: ID, version, two instants, the subject
/// length and the payload length.
const MIN_RECORD_LEN: usize = ID_TEXT_LEN + 8 + 8 + 8 + 4 + 8;
const NO_SUBJECT: u32 = u32::MAX;

/// Why a snapshot could not be written or read. Nothing was restored when
/// reading failed, and the previous snapshot file is untouched when writing
/// failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading, writing, syncing or renaming the file failed.
    #[error("session snapshot I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with [`SNAPSHOT_MAGIC`]: not a snapshot.
    #[error("not a sessionkit memory snapshot")]
    NotASnapshot,
    /// A snapshot in a format this build cannot read.
    #[error(
        "session snapshot format version {found} is not supported (this build reads {supported})"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads ([`SNAPSHOT_FORMAT_VERSION`]).
        supported: u32,
    },
    /// The file is shorter or longer than its header says: cut off while
    /// being copied, or something was appended.
    #[error(
        "session snapshot has {len} bytes where its header says {expected}: truncated or extended"
    )]
    Truncated {
        /// The file's length.
        len: u64,
        /// The length its header announces.
        expected: u64,
    },
    /// The checksum does not match the contents: the file is corrupt.
    #[error("session snapshot checksum mismatch: the file is corrupt")]
    ChecksumMismatch,
    /// The checksum matches but the contents do not make sense (written by
    /// something else, or forged).
    #[error("session snapshot is malformed: {0}")]
    Malformed(&'static str),
}

/// What [`MemoryStore::snapshot_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotSummary {
    /// Live sessions written.
    pub records: u64,
    /// Size of the file.
    pub bytes: u64,
}

/// What [`MemoryStore::restore_from`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Whether there was a snapshot file; `false` is a fresh start.
    pub found: bool,
    /// When the snapshot was written.
    pub written_at: Option<Timestamp>,
    /// Sessions put back into the store.
    pub restored: u64,
    /// Sessions in the file that had expired since: dropped.
    pub expired: u64,
    /// Sessions whose ID was already live in the store: the store's own
    /// record was kept.
    pub conflicts: u64,
    /// Sessions larger than this store's byte bound: dropped.
    pub too_large: u64,
}

impl MemoryStore {
    /// Writes every live session to `path`, atomically: into `<path>.tmp`,
    /// flushed to disk, then renamed over `path` (and the directory synced),
    /// so that `path` always holds either the previous snapshot or this
    /// one, whatever happens meanwhile. On an error `path` is untouched.
    ///
    /// Each record is written as it was when its shard was read; sessions
    /// changed while the snapshot runs may be written before or after the
    /// change. Stop serving requests first for an exact shutdown snapshot.
    /// One writer per path: snapshots of this store are serialized, but two
    /// stores (or processes) must not write the same path.
    ///
    /// The file work runs on Tokio's blocking pool when called inside a
    /// Tokio runtime, inline otherwise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use sessionkit_core::{Record, SessionId, SessionStore, Timestamp};
    /// use sessionkit_memory::MemoryStore;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-{}.snap", std::process::id()));
    /// let store = MemoryStore::new();
    /// let now = Timestamp::now();
    /// let record = Record::new(SessionId::generate(), Some("alice".into()), &b"cart=3"[..], now, now + Duration::from_secs(1800));
    /// store.create(&record).await?;
    /// assert_eq!(store.snapshot_to(&path).await?.records, 1);
    ///
    /// // After a restart:
    /// let restarted = MemoryStore::new();
    /// let report = restarted.restore_from(&path).await?;
    /// assert_eq!(report.restored, 1);
    /// assert_eq!(restarted.load(&record.id).await?, Some(record));
    /// # std::fs::remove_file(&path)?;
    /// # Ok(()) }
    /// ```
    pub async fn snapshot_to(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<SnapshotSummary, SnapshotError> {
        let path = path.as_ref().to_owned();
        // Held until the file work is done, even if this future is dropped
        // meanwhile (the blocking part cannot be cancelled): the next
        // snapshot never writes the same temporary file at the same time.
        let guard = Arc::clone(&self.inner.snapshot_lock).lock_owned().await;
        let now = Timestamp::now();
        let mut records = self.live_records(now);
        // Least recently active first: a restore into a smaller store
        // evicts those first.
        records.sort_by_key(|r| r.expires_at);
        let work = move || {
            let summary = write_atomic(&path, |out| encode(out, now, &records));
            drop(guard);
            summary
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(work)
                .await
                .map_err(|e| SnapshotError::Io(io::Error::other(e)))?,
            Err(_) => work(),
        }
    }

    /// Loads the sessions of a snapshot written by
    /// [`snapshot_to`](Self::snapshot_to) into this store (normally empty,
    /// at start). Sessions that expired since are dropped; a session whose
    /// ID is already live here is skipped. IDs, subjects, payloads,
    /// versions and instants come back exactly, so compare-and-swap goes on
    /// where it left off and `list_subject` finds every restored session.
    ///
    /// A missing file is a fresh start: `Ok` with
    /// [`found`](RestoreReport::found) `false`. A file that is not a
    /// snapshot, of another format version, truncated, extended or corrupt
    /// is an error and nothing of it is restored: the whole file is checked
    /// before the first session is inserted. What to do then is the
    /// caller's choice: start empty (users log in again) or refuse to
    /// start.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use sessionkit_memory::MemoryStore;
    ///
    /// let path = std::env::temp_dir().join("sessions-that-do-not-exist.snap");
    /// let store = MemoryStore::new();
    /// match store.restore_from(&path).await {
    ///     Ok(report) if !report.found => { /* fresh start */ }
    ///     Ok(report) => println!("{} sessions restored, {} expired", report.restored, report.expired),
    ///     Err(e) => eprintln!("session snapshot unusable ({e}); starting with no sessions"),
    /// }
    /// # }
    /// ```
    pub async fn restore_from(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<RestoreReport, SnapshotError> {
        let path = path.as_ref().to_owned();
        let work = move || read(&path);
        let read = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(work)
                .await
                .map_err(|e| SnapshotError::Io(io::Error::other(e)))?,
            Err(_) => work(),
        }?;
        let Some((written_at, records)) = read else {
            return Ok(RestoreReport::default());
        };
        let mut report = RestoreReport {
            found: true,
            written_at: Some(written_at),
            ..RestoreReport::default()
        };
        let now = Timestamp::now();
        for record in &records {
            if !record.is_live(now) {
                report.expired += 1;
                continue;
            }
            let Ok(weight) = self.record_weight(record) else {
                report.too_large += 1;
                continue;
            };
            if self.insert_new(record, weight) {
                report.restored += 1;
            } else {
                report.conflicts += 1;
            }
        }
        Ok(report)
    }

    /// Writes a snapshot to `path` every `every` (the first one `every`
    /// from now) until the returned task is stopped or dropped, or the
    /// store is dropped (the task does not keep the store alive). A failed
    /// snapshot is logged as a `tracing` warning and counted; the next one
    /// is tried at the next tick. Must be called inside a Tokio runtime.
    ///
    /// At graceful shutdown, stop the task, then write a last snapshot:
    ///
    /// ```no_run
    /// # async fn demo(store: sessionkit_memory::MemoryStore) -> Result<(), sessionkit_memory::SnapshotError> {
    /// use std::time::Duration;
    /// let task = store.spawn_snapshots("/var/lib/myapp/sessions.snap", Duration::from_secs(60));
    /// // ... serve until told to stop, then:
    /// task.stop().await;
    /// store.snapshot_to("/var/lib/myapp/sessions.snap").await?;
    /// # Ok(()) }
    /// ```
    pub fn spawn_snapshots(&self, path: impl Into<PathBuf>, every: Duration) -> SnapshotTask {
        let path = path.into();
        let every = every.max(Duration::from_millis(1));
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let counts = Arc::new(TaskCounts::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task_counts = Arc::clone(&counts);
        let handle = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + every;
            let mut ticks = tokio::time::interval_at(start, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let store = MemoryStore { inner };
                match store.snapshot_to(&path).await {
                    Ok(_) => {
                        task_counts.written.fetch_add(1, Relaxed);
                    }
                    Err(error) => {
                        task_counts.failed.fetch_add(1, Relaxed);
                        tracing::warn!(%error, path = %path.display(), "periodic session snapshot failed");
                    }
                }
            }
        });
        SnapshotTask {
            handle: Some(handle),
            stop: Some(stop),
            counts,
        }
    }
}

#[derive(Default)]
struct TaskCounts {
    written: AtomicU64,
    failed: AtomicU64,
}

/// The periodic snapshots started by [`MemoryStore::spawn_snapshots`].
/// Dropping it stops them (a snapshot being written still completes, and
/// the file stays whole either way); [`stop`](Self::stop) also waits for
/// that.
pub struct SnapshotTask {
    handle: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    counts: Arc<TaskCounts>,
}

impl std::fmt::Debug for SnapshotTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTask")
            .field("written", &self.written())
            .field("failed", &self.failed())
            .finish()
    }
}

impl SnapshotTask {
    /// Snapshots written so far.
    pub fn written(&self) -> u64 {
        self.counts.written.load(Relaxed)
    }

    /// Snapshots that failed so far (each logged as a warning).
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Relaxed)
    }

    /// Whether the task has ended (stopped, or its store was dropped).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the periodic snapshots and waits until a snapshot in progress
    /// (if any) is complete.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for SnapshotTask {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// Writes a file through `<path>.tmp`: the whole contents, flushed and
/// synced, then renamed over `path` and the directory synced. On any
/// error the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomic(
    path: &Path,
    contents: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
) -> Result<SnapshotSummary, SnapshotError> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the snapshot path names no file",
        )
        .into());
    };
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| -> io::Result<SnapshotSummary> {
        let file = create_private(&tmp)?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let records = contents(&mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        fs::rename(&tmp, path)?;
        sync_parent(path)?;
        Ok(SnapshotSummary { records, bytes })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}

fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes the rename durable: syncs the directory that holds `path`.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A writer that hashes what goes through it.
struct Hashing<'a> {
    out: &'a mut dyn Write,
    hash: Sha256,
}

impl Hashing<'_> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }
}

fn encoded_len(record: &Record) -> u64 {
    (MIN_RECORD_LEN + record.subject.as_ref().map_or(0, String::len) + record.payload.len()) as u64
}

/// Writes the whole snapshot of `records`; returns how many.
fn encode(out: &mut dyn Write, written_at: Timestamp, records: &[Record]) -> io::Result<u64> {
    let body_len: u64 = records.iter().map(encoded_len).sum();
    let mut w = Hashing {
        out,
        hash: Sha256::new(),
    };
    w.put(&SNAPSHOT_MAGIC)?;
    w.put(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
    w.put(&0u32.to_le_bytes())?;
    w.put(&written_at.as_millis().to_le_bytes())?;
    w.put(&(records.len() as u64).to_le_bytes())?;
    w.put(&body_len.to_le_bytes())?;
    for r in records {
        let subject_len = match &r.subject {
            Some(s) => u32::try_from(s.len())
                .ok()
                .filter(|&n| n != NO_SUBJECT)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "subject too long"))?,
            None => NO_SUBJECT,
        };
        w.put(r.id.as_str().as_bytes())?;
        w.put(&r.version.to_le_bytes())?;
        w.put(&r.created_at.as_millis().to_le_bytes())?;
        w.put(&r.expires_at.as_millis().to_le_bytes())?;
        w.put(&subject_len.to_le_bytes())?;
        if let Some(s) = &r.subject {
            w.put(s.as_bytes())?;
        }
        w.put(&(r.payload.len() as u64).to_le_bytes())?;
        w.put(&r.payload)?;
    }
    let digest = w.hash.finalize();
    w.out.write_all(&digest)?;
    w.out.flush()?;
    Ok(records.len() as u64)
}

/// Reads and checks a snapshot file: `None` when there is none.
fn read(path: &Path) -> Result<Option<(Timestamp, Vec<Record>)>, SnapshotError> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    decode(&data).map(Some)
}

/// Checks the whole snapshot (magic, version, length, checksum, every
/// record) and only then returns its records.
pub(crate) fn decode(data: &[u8]) -> Result<(Timestamp, Vec<Record>), SnapshotError> {
    let magic_len = data.len().min(SNAPSHOT_MAGIC.len());
    if data[..magic_len] != SNAPSHOT_MAGIC[..magic_len] {
        return Err(SnapshotError::NotASnapshot);
    }
    let min_len = (HEADER_LEN + CHECKSUM_LEN) as u64;
    if data.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(SnapshotError::Truncated {
            len: data.len() as u64,
            expected: min_len,
        });
    }
    let mut header = Reader {
        data: &data[8..HEADER_LEN],
    };
    let version = header.u32()?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let flags = header.u32()?;
    let written_at = Timestamp::from_millis(header.i64()?);
    let count = header.u64()?;
    let body_len = header.u64()?;
    let expected = body_len.saturating_add(min_len);
    if data.len() as u64 != expected {
        return Err(SnapshotError::Truncated {
            len: data.len() as u64,
            expected,
        });
    }
    let (signed, checksum) = data.split_at(data.len() - CHECKSUM_LEN);
    if Sha256::digest(signed).as_slice() != checksum {
        return Err(SnapshotError::ChecksumMismatch);
    }
    if flags != 0 {
        return Err(SnapshotError::Malformed("unknown flags"));
    }
    let body = &signed[HEADER_LEN..];
    if count > (body.len() / MIN_RECORD_LEN) as u64 {
        return Err(SnapshotError::Malformed(
            "more records than the body can hold",
        ));
    }
    let mut r = Reader { data: body };
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = std::str::from_utf8(r.take(ID_TEXT_LEN)?)
            .ok()
            .and_then(|text| SessionId::parse(text).ok())
            .ok_or(SnapshotError::Malformed("invalid session id"))?;
        let version = r.u64()?;
        let created_at = Timestamp::from_millis(r.i64()?);
        let expires_at = Timestamp::from_millis(r.i64()?);
        let subject = match r.u32()? {
            NO_SUBJECT => None,
            len => {
                let bytes = r.take(len as usize)?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| SnapshotError::Malformed("subject is not UTF-8"))?;
                Some(text.to_owned())
            }
        };
        let payload_len =
            usize::try_from(r.u64()?).map_err(|_| SnapshotError::Malformed("payload length"))?;
        let payload = Bytes::copy_from_slice(r.take(payload_len)?);
        records.push(Record {
            id,
            subject,
            payload,
            version,
            created_at,
            expires_at,
        });
    }
    if !r.data.is_empty() {
        return Err(SnapshotError::Malformed("bytes after the last record"));
    }
    Ok((written_at, records))
}

/// Reads fields off the front of a byte slice, never past its end.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.data.len() {
            return Err(SnapshotError::Malformed(
                "a record runs past the end of the body",
            ));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        self.array().map(i64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sessionkit-snapshot-unit-{name}-{}-{}",
            std::process::id(),
            SessionId::generate().as_str()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A write that fails half-way (a full disk, an I/O error) leaves the
    /// previous file byte for byte, and no temporary file.
    #[test]
    fn a_write_failing_half_way_leaves_the_previous_file() {
        let dir = temp_dir("half");
        let path = dir.join("sessions.snap");
        write_atomic(&path, |out| out.write_all(b"previous").map(|()| 0)).unwrap();
        let err = write_atomic(&path, |out| {
            out.write_all(&[7; 300_000])?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(matches!(err, SnapshotError::Io(_)), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"previous");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A snapshot file is readable and writable by its owner only.
    #[cfg(unix)]
    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("mode");
        let path = dir.join("sessions.snap");
        write_atomic(&path, |out| out.write_all(b"x").map(|()| 0)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A forged file (correct checksum, absurd record count) is refused
    /// without allocating for the count.
    #[test]
    fn a_forged_count_is_refused() {
        let mut data = Vec::new();
        encode(&mut data, Timestamp::now(), &[]).unwrap();
        data[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let body_end = data.len() - CHECKSUM_LEN;
        let digest = Sha256::digest(&data[..body_end]);
        data[body_end..].copy_from_slice(&digest);
        assert!(matches!(decode(&data), Err(SnapshotError::Malformed(_))));
    }
}
