//! What the native save path needs: whether the server has `SET … IFEQ`
//! (detected, and detected again after a reconnection or a failover), the
//! exact bytes stored for recently seen sessions (the comparison value of
//! `IFEQ`), and counters that tell which path saves took.
//!
//! Nothing here is needed for correctness: a remembered value is a hint that
//! `SET … IFEQ` checks atomically on the server. A wrong or stale hint only
//! makes the comparison fail, and the save then takes the script path, which
//! decides `NotFound` / `Conflict` / `Decode` exactly as before.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};

use bytes::Bytes;
use sessionkit_core::{Record, SessionId};

use crate::codec;

/// How a [`RedisStore`](crate::RedisStore) writes a save whose current
/// stored value it knows (see [`RedisStore::save_path`](crate::RedisStore::save_path)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SavePath {
    /// One native conditional write, `SET key value IFEQ <current value>
    /// PXAT <expiry>` (Valkey ≥ 8.1, Redis ≥ 8.4).
    Native,
    /// The compare-and-swap Lua script (the new value staged with a plain
    /// `SET`, moved into place by the script), on every server.
    Script,
}

/// Counters of the saves a [`RedisStore`](crate::RedisStore) (and its
/// clones) wrote, by path: see
/// [`RedisStore::save_stats`](crate::RedisStore::save_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SaveStats {
    /// Saves written by one `SET … IFEQ`.
    pub native: u64,
    /// `SET … IFEQ` attempts that did not write because the stored value
    /// was not the remembered one (saved or touched elsewhere, deleted,
    /// expired) or because the server refused the option; each then took
    /// the script path, which decided the outcome.
    pub native_missed: u64,
    /// Saves decided by the script (written, or refused with `NotFound`,
    /// `Conflict` or `Decode`): every save on a server without `IFEQ`, and
    /// on one with it, saves whose current value the store did not know.
    pub script: u64,
    /// Capability probes run (at connect, after a reconnection, a failover
    /// or `NOSCRIPT`, and periodically while on the script path).
    pub probes: u64,
}

/// The exact value stored for one session at one version, as two views:
/// the header and subject (`head`), and the payload. Neither is a copy of
/// the payload: a loaded value's views share the reply's buffer, a written
/// one's payload is the caller's `Bytes`.
#[derive(Clone)]
pub(crate) struct Known {
    pub(crate) id: SessionId,
    pub(crate) version: u64,
    pub(crate) expires_at: i64,
    head: Bytes,
    payload: Bytes,
}

impl Known {
    /// The value `record` is stored as at `version` (what a create or a
    /// save just wrote).
    pub(crate) fn written(record: &Record, version: u64, head: Bytes) -> Known {
        Known {
            id: record.id,
            version,
            expires_at: record.expires_at.as_millis(),
            head,
            payload: record.payload.clone(),
        }
    }

    /// The value a load just read (its views share the reply buffer).
    pub(crate) fn loaded(record: &Record, head: Bytes) -> Known {
        Known {
            id: record.id,
            version: record.version,
            expires_at: record.expires_at.as_millis(),
            head,
            payload: record.payload.clone(),
        }
    }

    /// The stored subject (`None`: none, or unreadable).
    pub(crate) fn subject(&self) -> Option<&str> {
        codec::head_subject(&self.head)
    }

    /// The length of the stored value.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// The same value with its expiry bytes rewritten (what `touch` does
    /// in place on the server).
    fn with_expiry(&self, expires_at: i64) -> Known {
        let mut head = self.head.to_vec();
        codec::set_head_expiry(&mut head, expires_at);
        Known {
            id: self.id,
            version: self.version,
            expires_at,
            head: Bytes::from(head),
            payload: self.payload.clone(),
        }
    }
}

impl redis::ToRedisArgs for Known {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        use std::io::Write as _;
        out.reserve_space_for_args([self.len()]);
        let mut w = out.writer_for_next_arg();
        // Writes into a growable in-memory buffer cannot fail.
        let _ = w.write_all(&self.head);
        let _ = w.write_all(&self.payload);
    }
}

/// A small direct-mapped table of [`Known`] values: slot = hash of the ID
/// (session IDs are uniformly random), one short `Mutex` per slot, no LRU
/// bookkeeping. A new value replaces whatever its slot held. Bounded by
/// `slots` entries of at most `max_len` bytes each.
pub(crate) struct KnownValues {
    slots: Box<[Mutex<Option<Known>>]>,
    mask: usize,
    max_len: usize,
}

impl KnownValues {
    pub(crate) fn new(entries: usize, max_len: usize) -> Self {
        let n = if entries == 0 {
            0
        } else {
            entries.next_power_of_two()
        };
        KnownValues {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            mask: n.saturating_sub(1),
            max_len,
        }
    }

    /// Whether the table holds anything at all (`entries > 0`).
    pub(crate) fn enabled(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Whether a value of `len` bytes would be remembered.
    pub(crate) fn accepts(&self, len: usize) -> bool {
        self.enabled() && len <= self.max_len
    }

    fn slot(&self, id: &SessionId) -> Option<&Mutex<Option<Known>>> {
        if self.slots.is_empty() {
            return None;
        }
        // The ID text is URL-safe base64 of 16 random bytes: its first 8
        // characters carry 48 random bits.
        let b = id.as_str().as_bytes();
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[..8]);
        let h = u64::from_le_bytes(x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.slots.get((h >> 32) as usize & self.mask)
    }

    fn lock(m: &Mutex<Option<Known>>) -> std::sync::MutexGuard<'_, Option<Known>> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The remembered value of `id` at `version`, if any.
    pub(crate) fn get(&self, id: &SessionId, version: u64) -> Option<Known> {
        let slot = self.slot(id)?;
        let guard = Self::lock(slot);
        guard
            .as_ref()
            .filter(|k| k.id == *id && k.version == version)
            .cloned()
    }

    /// Remembers `known`. Unless `force`, an entry of the same session at a
    /// later version is kept (a slow call must not replace what a later one
    /// saw). A value too large to remember forgets the session instead.
    pub(crate) fn put(&self, known: Known, force: bool) {
        let Some(slot) = self.slot(&known.id) else {
            return;
        };
        let mut guard = Self::lock(slot);
        if known.len() > self.max_len {
            if guard.as_ref().is_some_and(|k| k.id == known.id) {
                *guard = None;
            }
            return;
        }
        if !force
            && guard
                .as_ref()
                .is_some_and(|k| k.id == known.id && k.version > known.version)
        {
            return;
        }
        let old = guard.replace(known);
        drop(guard);
        // The old value's buffers are released outside the lock.
        drop(old);
    }

    /// Forgets `id` (at `version` only, when given).
    pub(crate) fn forget(&self, id: &SessionId, version: Option<u64>) {
        let Some(slot) = self.slot(id) else { return };
        let mut guard = Self::lock(slot);
        if guard
            .as_ref()
            .is_some_and(|k| k.id == *id && version.is_none_or(|v| k.version == v))
        {
            let old = guard.take();
            drop(guard);
            drop(old);
        }
    }

    /// Rewrites the remembered expiry of `id` (after a `touch`, which
    /// rewrites those bytes in place on the server).
    pub(crate) fn touched(&self, id: &SessionId, expires_at: i64) {
        let Some(slot) = self.slot(id) else { return };
        let mut guard = Self::lock(slot);
        if let Some(k) = guard.as_mut().filter(|k| k.id == *id) {
            *k = k.with_expiry(expires_at);
        }
    }
}

const MODE_SCRIPT: u8 = 0;
const MODE_NATIVE: u8 = 1;

/// Whether the server has `SET … IFEQ`, and when to find out again.
///
/// The mode starts as `Script` and is set by a probe: `SET <probe key> ""
/// IFEQ <x> PXAT <t>` on a key that never exists, which writes nothing
/// anywhere; a nil or `OK` reply means the option exists, `ERR` (syntax
/// error) means it does not. A probe is due
/// - after any store call ended in a transient error or a timeout (a
///   reconnection, a failover or a restart may follow: the server behind
///   the address may be another one now) or after a `NOSCRIPT` reply (a
///   server with an empty script cache is a new or restarted one);
/// - every [`REPROBE_MS`] while on the script path (a failover that kept
///   the connection, behind a proxy);
///
/// and runs in the background, started by the next save (at most one at a
/// time, at most one per [`PROBE_GAP_MS`]). On the native path, a server
/// that turns out not to have the option (an `ERR` reply to a native save:
/// nothing was written) switches the store to the script path at once, and
/// that save is written by the script.
pub(crate) struct Capability {
    enabled: bool,
    mode: AtomicU8,
    /// Bumped by every event after which a probe is due.
    triggers: AtomicU64,
    /// The `triggers` value the last successful probe started at.
    probed: AtomicU64,
    probing: AtomicBool,
    last_probe_ms: AtomicI64,
    last_attempt_ms: AtomicI64,
    pub(crate) native: AtomicU64,
    pub(crate) native_missed: AtomicU64,
    pub(crate) script: AtomicU64,
    pub(crate) probes: AtomicU64,
}

/// How often a store on the script path probes again.
pub(crate) const REPROBE_MS: i64 = 60_000;
/// The least time between two probe attempts.
pub(crate) const PROBE_GAP_MS: i64 = 1_000;

impl Capability {
    pub(crate) fn new(enabled: bool) -> Self {
        Capability {
            enabled,
            mode: AtomicU8::new(MODE_SCRIPT),
            // A probe is due until one succeeds.
            triggers: AtomicU64::new(1),
            probed: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            last_probe_ms: AtomicI64::new(i64::MIN / 2),
            last_attempt_ms: AtomicI64::new(i64::MIN / 2),
            native: AtomicU64::new(0),
            native_missed: AtomicU64::new(0),
            script: AtomicU64::new(0),
            probes: AtomicU64::new(0),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn path(&self) -> SavePath {
        if self.mode.load(Ordering::Relaxed) == MODE_NATIVE {
            SavePath::Native
        } else {
            SavePath::Script
        }
    }

    pub(crate) fn set_path(&self, path: SavePath) {
        let mode = match path {
            SavePath::Native if self.enabled => MODE_NATIVE,
            _ => MODE_SCRIPT,
        };
        let old = self.mode.swap(mode, Ordering::Relaxed);
        if old != mode {
            tracing::info!(save_path = ?path, "redis save path changed");
        }
    }

    /// Something happened after which the server may be another one.
    pub(crate) fn trigger(&self) {
        self.triggers.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a probe should start now; if so, marks it started and
    /// returns the trigger count it answers.
    pub(crate) fn begin_probe(&self, now_ms: i64) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let triggers = self.triggers.load(Ordering::Relaxed);
        let due = triggers > self.probed.load(Ordering::Relaxed)
            || (self.mode.load(Ordering::Relaxed) == MODE_SCRIPT
                && now_ms.saturating_sub(self.last_probe_ms.load(Ordering::Relaxed)) >= REPROBE_MS);
        if !due
            || now_ms.saturating_sub(self.last_attempt_ms.load(Ordering::Relaxed)) < PROBE_GAP_MS
            || self.probing.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        self.last_attempt_ms.store(now_ms, Ordering::Relaxed);
        Some(triggers)
    }

    /// The trigger count now (what a probe starting now answers).
    pub(crate) fn triggers(&self) -> u64 {
        self.triggers.load(Ordering::Relaxed)
    }

    /// Notes the outcome of a probe that started at trigger count
    /// `started_at` (`None`: it failed, and a probe stays due).
    pub(crate) fn record_probe(&self, started_at: u64, outcome: Option<SavePath>, now_ms: i64) {
        if let Some(path) = outcome {
            self.set_path(path);
            self.probed.fetch_max(started_at, Ordering::Relaxed);
            self.last_probe_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Ends a probe started by [`Capability::begin_probe`].
    pub(crate) fn end_probe(&self, started_at: u64, outcome: Option<SavePath>, now_ms: i64) {
        self.record_probe(started_at, outcome, now_ms);
        self.probing.store(false, Ordering::Release);
    }

    pub(crate) fn stats(&self) -> SaveStats {
        SaveStats {
            native: self.native.load(Ordering::Relaxed),
            native_missed: self.native_missed.load(Ordering::Relaxed),
            script: self.script.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionkit_core::Timestamp;

    fn known(id: SessionId, version: u64, payload: &'static [u8]) -> Known {
        let r = Record::new(
            id,
            Some("alice".into()),
            payload,
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
        );
        let head = codec::encoded(&r, version).unwrap().head();
        Known::written(&r, version, head)
    }

    #[test]
    fn table_keeps_later_versions_and_forgets() {
        let t = KnownValues::new(8, 1024);
        let id = SessionId::generate();
        t.put(known(id, 3, b"three"), false);
        assert!(t.get(&id, 3).is_some());
        assert!(t.get(&id, 2).is_none());
        t.put(known(id, 2, b"two"), false);
        assert!(t.get(&id, 3).is_some(), "an older version does not replace");
        t.put(known(id, 1, b"one"), true);
        assert!(t.get(&id, 1).is_some(), "a create replaces");
        t.forget(&id, Some(7));
        assert!(t.get(&id, 1).is_some());
        t.forget(&id, Some(1));
        assert!(t.get(&id, 1).is_none());
        t.put(known(id, 4, &[0u8; 2000]), true);
        assert!(t.get(&id, 4).is_none(), "too large to remember");
        let off = KnownValues::new(0, 1024);
        off.put(known(id, 1, b"x"), true);
        assert!(off.get(&id, 1).is_none());
    }

    #[test]
    fn touched_rewrites_the_expiry_bytes() {
        let t = KnownValues::new(4, 1024);
        let id = SessionId::generate();
        let k = known(id, 5, b"payload");
        let mut r = Record::new(
            id,
            Some("alice".into()),
            &b"payload"[..],
            Timestamp::from_millis(1),
            Timestamp::from_millis(99),
        );
        r.version = 5;
        t.put(k, true);
        t.touched(&id, 99);
        let got = t.get(&id, 5).unwrap();
        assert_eq!(got.expires_at, 99);
        assert_eq!(
            redis::ToRedisArgs::to_redis_args(&got),
            vec![codec::encode(&r, 5).unwrap()]
        );
        assert_eq!(got.subject(), Some("alice"));
    }

    #[test]
    fn probes_are_due_on_triggers_and_periodically() {
        let c = Capability::new(true);
        assert_eq!(c.path(), SavePath::Script);
        let started = c.begin_probe(0).expect("due at first");
        assert!(c.begin_probe(5_000).is_none(), "one at a time");
        c.end_probe(started, Some(SavePath::Native), 0);
        assert_eq!(c.path(), SavePath::Native);
        assert!(c.begin_probe(5_000).is_none(), "native: not periodic");
        c.trigger();
        assert!(c.begin_probe(500).is_none(), "rate limited");
        let s = c.begin_probe(5_000).expect("due after a trigger");
        c.end_probe(s, None, 5_000);
        let s = c.begin_probe(6_000).expect("a failed probe stays due");
        c.end_probe(s, Some(SavePath::Script), 6_000);
        assert!(c.begin_probe(7_000).is_none());
        assert!(
            c.begin_probe(6_000 + REPROBE_MS).is_some(),
            "periodic on scripts"
        );
        let off = Capability::new(false);
        assert!(off.begin_probe(0).is_none());
        off.set_path(SavePath::Native);
        assert_eq!(off.path(), SavePath::Script);
    }
}
