//! Redis and Redis Cluster backend for sessionkit.
//!
//! - [`RedisStore`], a [`SessionStore`](sessionkit_core::SessionStore) over a
//!   standalone server ([`redis::aio::ConnectionManager`], one multiplexed
//!   connection that reconnects by itself) or, with the `cluster` feature,
//!   over Redis Cluster ([`redis::cluster_async::ClusterConnection`]). Both
//!   run the same code: the store talks to one internal connection type that
//!   wraps either.
//! - [`RedisInvalidationChannel`], an
//!   [`InvalidationChannel`](sessionkit_core::InvalidationChannel) over Redis
//!   pub/sub, for `CachedStore` instances that must evict what other
//!   instances changed. It reports a lost subscription at once
//!   (`ChannelEvent::Disconnected`: the connection dropped or a health-check
//!   ping went unanswered) and a renewed one (`ChannelEvent::Reset`), so a
//!   cache's `is_subscribed()` tells the truth.
//!
//! ```no_run
//! # async fn run() -> sessionkit_core::Result<()> {
//! use std::time::Duration;
//! use sessionkit_core::{Record, SessionId, SessionStore, Timestamp};
//! use sessionkit_redis::{RedisConfig, RedisStore};
//!
//! let store = RedisStore::standalone(
//!     "redis://127.0.0.1:6379",
//!     RedisConfig::new()
//!         .prefix("myapp:sessions")
//!         .command_timeout(Duration::from_millis(500)),
//! )
//! .await?;
//! let now = Timestamp::now();
//! let record = Record::new(SessionId::generate(), Some("alice".into()), b"{}".to_vec(), now, now + Duration::from_secs(3600));
//! store.create(&record).await?;
//! assert_eq!(store.load(&record.id).await?.unwrap().version, 1);
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! ## Key layout
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<prefix>:s:{<id>}` | string | one session (the encoding below), with `PXAT` expiry |
//! | `<prefix>:t:{<id>}:<nonce>` | string | a save's new value, for the moment between its two commands (30 s expiry) |
//! | `<prefix>:r:{<id>}` | string | the receipt of the `compare_and_delete` that removed the session: its call's nonce and the subject (expires after twice the command timeout + 1 s, at most a day) |
//! | `<prefix>:u:{<subject hash>}` | sorted set | the IDs of a subject's sessions, scored by expiry (ms) rounded up to the minute |
//! | `<prefix>:c:{<nonce>}` | — | named by the capability probe (`SET … IFEQ` on a key that does not exist); never written |
//! | `<prefix>:invalidate` | pub/sub channel | invalidation messages |
//!
//! `<prefix>` is configurable ([`RedisConfig::prefix`]) and restricted to
//! `A–Z a–z 0–9 - _ . : /`: no braces, so the prefix can never become a
//! cluster hash tag. `<id>` is the session ID's canonical text, which
//! [`SessionId::parse`](sessionkit_core::SessionId::parse) accepts only in
//! its exact 22-character URL-safe base64 form; every store method takes a
//! parsed `SessionId`, so no client text reaches a key unchecked. A subject
//! is application data of any shape (spaces, `*`, braces, Unicode), so it
//! never goes into a key: the index key uses the first 128 bits of its
//! SHA-256 in hex, and the subject itself is stored inside each session
//! value, where [`list_subject`](sessionkit_core::SessionStore::list_subject)
//! checks it (a hash collision therefore cannot mix two subjects).
//!
//! The braces are Redis Cluster hash tags: a session key hashes by its ID
//! and an index key by its subject hash, so sessions and indexes spread over
//! all slots.
//!
//! ## Value encoding
//!
//! A session value is a fixed 29-byte header followed by the subject and the
//! payload: magic `b'S'`, format `1`, version (u64 BE), created_at and
//! expires_at (i64 ms BE), a flags byte (subject present), the subject
//! length (u16 BE), the subject (UTF-8), then the payload bytes, untouched.
//! The Lua scripts read the version and the expiry at fixed offsets without
//! parsing the rest. Decoding checks every length and never panics: a
//! corrupted value is [`Error::Decode`](sessionkit_core::Error::Decode).
//! The scripts check the header and the subject exactly as the decoder does
//! (lengths, flags, UTF-8), so a value that would not decode is never
//! written over or removed by mistake. The policy for corrupted values:
//! `load`, `save`, `touch` and `compare_and_delete` fail with
//! `Error::Decode` and leave the value as it is; `list_subject` skips it
//! with a `tracing` warning, so that one bad value does not hide a user's
//! other sessions; `delete` and `delete_subject` remove it (and count it as
//! removed).
//!
//! ## Expiry
//!
//! Every write sets the key's absolute expiry with `PXAT expires_at`, so
//! Redis removes sessions by itself and
//! [`delete_expired`](sessionkit_core::SessionStore::delete_expired)
//! returns 0. Reads also compare `expires_at` with the application's clock,
//! so an expired record is never returned even if the clocks of Redis and
//! the application differ slightly. A write whose `expires_at` is already
//! past stores nothing (the record would not be live).
//!
//! ## Operations and atomicity
//!
//! - `create`: `SET key value NX PXAT expires_at`; an existing live key makes
//!   it fail with `Conflict`, never an overwrite.
//! - `save`, native path (servers with conditional `SET`, see "Servers and
//!   save paths"): one command, `SET key value IFEQ <current value> PXAT
//!   expires_at`, when the store knows the exact bytes stored for the
//!   version being saved (below); the server compares the whole stored
//!   value with them (a `memcmp`) and writes only if they are equal.
//!   Equal bytes mean equal version, subject and expiry, so a write that
//!   happens is exactly the compare-and-swap on the version. A refused
//!   comparison (nil) writes nothing, and the save goes on by the script
//!   path, which tells `NotFound`, `Conflict` and `Decode` apart exactly
//!   (and writes, when only a `touch` elsewhere had changed the bytes).
//! - `save`, script path (every server; on a native-capable one, saves whose
//!   current bytes the store does not know): one pipeline of two commands.
//!   `SET {prefix}:t:{<id>}:<nonce> value PX 30000` stages the new value
//!   under a key of its own (same hash slot as the session), then a Lua
//!   script on the session key compares the stored version with the
//!   expected one, checks the record is live, and moves the staged value
//!   into place (`RENAME`, then `PEXPIREAT`), or deletes it and answers
//!   `NotFound` / `Conflict`. The payload never goes through Lua: the
//!   script reads only the header and subject (`GETRANGE`), and when
//!   version and subject match (the common case) it costs two string
//!   comparisons. A staged value whose script never runs (the connection
//!   dropped between the two) expires after 30 s.
//! - The save cache ([`RedisConfig::save_cache`]; 4096 entries of at most
//!   8 KiB by default) holds, per session, the exact stored bytes of the
//!   last version this store (or a clone) loaded, created or saved: the
//!   header and subject, and the payload as a view that shares the loaded
//!   reply's buffer or the saved record's `Bytes` (no copy). It is a small
//!   direct-mapped table (slot = hash of the ID; a new value replaces its
//!   slot's). It is a hint, never trusted: the server checks it with
//!   `IFEQ`, so a stale or evicted entry only sends that save down the
//!   script path. A save of a session the cache does not hold (loaded by
//!   another instance, evicted, larger than the limit) takes the script
//!   path. Neither path sends a save again after a lost reply.
//! - `touch`: a Lua script that rewrites only the expiry (header bytes and
//!   `PXAT`). No `WATCH`/`MULTI` (unsafe on multiplexed connections).
//! - Scripts run with `EVALSHA`; after a `NOSCRIPT` (a restarted or new
//!   server, a failover) the store loads the script ([`redis::Script`]) and
//!   runs it again, so nothing has to be preloaded. A `NOSCRIPT` also makes
//!   a capability probe due (see "Servers and save paths").
//! - Values and keys are written straight into the command buffer, and a
//!   loaded payload is a view into the reply, not a copy.
//! - `load`: `GET`. `delete`: `GETDEL`, then `ZREM` from the subject index.
//! - `compare_and_delete`: a Lua script that reads the header and subject
//!   (`GETRANGE`), answers `NotFound` (absent or expired), `Conflict`
//!   (another version) or `Decode` (corrupted) without deleting anything,
//!   and otherwise deletes the session and leaves a receipt (see "Timeouts
//!   and retries"); then, like `delete`, `ZREM` from the subject index. Of
//!   concurrent compare-and-deletes of one version exactly one succeeds.
//! - `scan`: standalone, `SCAN … MATCH <prefix>:s:{*`, then `MGET`; on a
//!   cluster, slot by slot (`CLUSTER GETKEYSINSLOT` on each slot's master,
//!   at most 100 000 keys of any prefix per slot), so a failover or a slot
//!   migration between pages loses nothing. A batch larger than the page
//!   leaves its remaining IDs in the cursor (which therefore holds stored
//!   session IDs: keep it as private as the store). Corrupted values are
//!   skipped with a warning, like `list_subject`.
//!
//! Every script touches the keys of **one** session (its key, and for a
//! save the staged value, for a compare-and-delete the receipt, which
//! share its hash slot), so on a standalone server *and* on a cluster,
//! each change to one session (create, CAS save, touch, delete,
//! compare-and-delete) is atomic. The subject index lives in another slot than the
//! session keys (a subject's sessions are spread over the cluster), so on a
//! cluster no script could update both, and the index is maintained by
//! separate commands — on a standalone server too, so that both deployments
//! behave the same:
//!
//! - the index entry is written with the session, in the same round trip
//!   (`create`, `save`: the index command is sent first, both run
//!   concurrently), with `ZADD GT` so scores only grow: every live session
//!   is in its subject's index with a score at least its expiry rounded up
//!   to the next whole minute. A save whose subject did not change and
//!   whose new expiry is within the minute the entry already covers sends
//!   no index command at all (the common case: a sliding expiry moves by
//!   seconds), so it costs the same commands as a save without a subject.
//!   On the native path the store knows the stored expiry and subject
//!   exactly (the write happens only if the bytes are the remembered
//!   ones); on the script path it predicts them from the save cache, the
//!   script checks the prediction against the stored expiry, and a wrong
//!   one (a `touch` elsewhere, a lagging entry) is repaired by an index
//!   command right after the write. Without a prediction the index command
//!   goes in the same round trip as before. If the
//!   index command fails and the session write succeeded, `create` deletes
//!   the new session again and returns the error, and `save` raises the
//!   entry once more before it returns (the error, if that fails too: the
//!   write was applied, like any write whose reply is lost). `touch` raises the
//!   score right after its script (the subject is known only then); if that
//!   second command fails, `touch` returns the error, and a retry or the
//!   next `list_subject` (which raises entries scored below their session's
//!   expiry) repairs it;
//! - the index may hold extra entries (a failed write, a session deleted or
//!   moved to another subject): `list_subject` loads the listed sessions
//!   (`MGET`) and returns only live ones whose stored subject is the one
//!   asked for, then prunes entries whose score has passed and whose session
//!   is gone, with a script that re-checks the score, so an entry raised by
//!   a concurrent write is kept. The index key expires with its latest
//!   entry;
//! - `delete_subject` deletes each listed session with a one-key script that
//!   checks the stored subject first (a session moved to another subject
//!   survives; a corrupted one is removed), then removes the entries. It is
//!   not one atomic step, so it makes passes: a listed session that a pass
//!   finds already gone was removed by someone else meanwhile — such as the
//!   `compare_and_delete` of a rotation, whose new session was created and
//!   indexed before the old one went — so it reads the index again and
//!   removes what appeared (until a pass sees nothing vanish that the
//!   previous one had not already found gone; at most 8 passes). A session
//!   rotated during a log-out everywhere does not survive it; a session
//!   *created* (a new login) while it runs may, and is then listed;
//! - create against delete_subject: `create`'s index entry carries the
//!   session's (rounded) expiry as its score, and an index entry is only pruned once
//!   its score has passed or after its session was deleted, so a
//!   `delete_subject` or `list_subject` that runs between `create`'s two
//!   writes (in either order) keeps the entry; once `create` has returned,
//!   the session is listed while it loads, and `delete_subject` removes
//!   it.
//!
//! ## Servers and save paths
//!
//! | server | save path |
//! | --- | --- |
//! | Valkey ≥ 8.1 (standalone and cluster) | native: `SET … IFEQ … PXAT` |
//! | Redis ≥ 8.4 (it has `SET … IFEQ`; detected the same way, not in this crate's CI) | native |
//! | Redis 7.x, Redis 8.0–8.2, Valkey 7.2–8.0 | script |
//! | any of these, `RedisConfig::native_saves(false)` | script |
//!
//! Every path gives the same [`SessionStore`](sessionkit_core::SessionStore)
//! semantics; the whole testkit runs against Redis 7.0 and Valkey 8.1, each
//! standalone and as a three-master cluster. Redis 7.0 or newer (or any
//! Valkey) is required on every path: `PXAT`, `GETDEL`, `ZADD GT`.
//!
//! The store finds out by asking, not by version numbers: a probe sends
//! `SET {prefix}:c:{<nonce>} "" IFEQ <x> PXAT <t>` on a key that never
//! exists, which writes nothing anywhere; a nil reply means the server has
//! the option, `ERR syntax error` that it has not. The store probes
//! ([`RedisStore::save_path`], [`RedisStore::save_stats`] tell the result):
//!
//! - when it connects ([`RedisStore::standalone`], [`RedisStore::cluster`];
//!   a store built from an existing connection starts on the script path
//!   and probes on its first save);
//! - again, in the background from the next save, after any call ended in
//!   a transient error or a timeout (a reconnection, a restart or a
//!   failover may have put another server behind the address) or got
//!   `NOSCRIPT` (an empty script cache: a new or restarted server), and
//!   every minute while on the script path (a failover that kept the
//!   connection, behind a proxy); at most one probe at a time, one per
//!   second;
//! - and on the native path, a server without the option answers a native
//!   save with `ERR` without executing it: the store switches to the
//!   script path at once, and that save is written by the script. A
//!   cluster being upgraded node by node thus saves by script until every
//!   node it meets has the option.
//!
//! [`RedisStore::detect_save_path`] probes on demand.
//!
//! ## Timeouts and retries
//!
//! [`RedisConfig::connect_timeout`] bounds each connection attempt and
//! [`RedisConfig::command_timeout`] bounds each whole store call (all its
//! commands, and waiting for a reconnection), enforced by the client and by
//! an outer `tokio::time::timeout`, so no call hangs on a dead or paused
//! server: it fails with `Error::Timeout`. Lost connections, I/O errors,
//! cluster redirection failures and `LOADING`/`READONLY`/`TRYAGAIN` replies
//! are `Error::Backend { transient: true, .. }`; a timeout is
//! `Error::Timeout(Some(limit))` with the configured limit.
//!
//! A dead connection is found out only when a command is sent on it: after
//! a Redis restart, the first command of an idle store fails with a broken
//! pipe while the connection manager starts reconnecting. Calls that are
//! safe to send again — `load`, `load_fresh`, `list_subject`, `touch`
//! (it sets an absolute expiry), `delete`, `delete_subject` and
//! `compare_and_delete` — are then sent once more, on the new connection
//! and within the same command timeout, but only after an I/O error (a
//! broken pipe, a reset, a connection closed before the reply, a refused
//! reconnection): never after a timeout or an answer of the server. Such a
//! request may still have been applied before the connection died; then
//! `delete` reports `false` and `delete_subject` does not count what the
//! first attempt removed. `compare_and_delete` is made safe to send again
//! by its receipt: each call carries a random nonce, the script stores it
//! next to the session it deletes, and a second attempt that finds the
//! session gone and its own nonce there reports the success of the first
//! (another call's receipt is `NotFound`, so exactly one compare-and-delete
//! of a version still wins). `create` and `save` are never sent again: the
//! outcome of a write whose reply was lost is unknown (a second `create`
//! would report a `Conflict` with itself; a CAS retry belongs to
//! `SessionManager::update`). The connection manager reconnects in the
//! background, so the same store works again once the server is back.
//!
//! On a cluster, the redis crate's (1.x) async cluster connection follows
//! `MOVED`/`ASK`, refreshes its slot map and retries by itself
//! ([`RedisConfig::reconnect_attempts`] retries a request, with a response
//! timeout of [`RedisConfig::command_timeout`]). Under load during a slot
//! migration (`redis-cli --cluster reshard`/`rebalance`) that connection can
//! wedge for good, so every later command times out without reaching a
//! server (most likely its single driver task waits, in a slot refresh, for
//! its connection map's write lock, which requests it stops polling during
//! the refresh hold or queue for). The command timeout does not matter (seen
//! with 1 s and 10 s) and we found no client setting that prevents it. A
//! store built with
//! [`RedisStore::cluster`] therefore replaces its cluster connection: after
//! 3 store calls in a row end in `Error::Timeout` (any other outcome resets
//! the count), it builds a new connection from its `ClusterClient` in the
//! background (bounded by `connect_timeout + command_timeout`, at most once
//! per `max(command_timeout, 1 s)`), swaps it in and logs a warning; calls
//! already running finish on the old one. A wedge thus costs about one
//! command timeout of `Error::Timeout` for the calls in flight, then the same
//! store works again. A store built with
//! [`RedisStore::from_cluster_connection`] has no client and is never
//! rebuilt. Standalone stores are unaffected.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channel;
mod codec;
mod config;
mod conn;
mod keys;
mod native;
mod store;

pub use channel::RedisInvalidationChannel;
pub use config::RedisConfig;
pub use keys::MAX_PREFIX_LEN;
pub use native::{SavePath, SaveStats};
pub use store::RedisStore;

/// The redis crate this backend is built on, for
/// [`RedisStore::from_connection_manager`].
pub use redis;

/// The stored value format, reachable only for the fuzz targets in `fuzz/`.
/// Not part of the API: it may change in any release.
#[doc(hidden)]
pub mod __fuzz {
    use sessionkit_core::{Record, Result, SessionId};

    /// Decodes a stored session value (what `GET` returns for a session key).
    pub fn decode_record(id: SessionId, bytes: &[u8]) -> Result<Record> {
        crate::codec::decode(id, bytes)
    }

    /// Encodes `record` as stored, with `version`.
    pub fn encode_record(record: &Record, version: u64) -> Result<Vec<u8>> {
        crate::codec::encode(record, version)
    }

    /// Parses the subject tag the Lua scripts return.
    pub fn parse_subject_tag(tag: &[u8]) -> Result<Option<String>> {
        crate::codec::parse_subject_tag(tag)
    }
}
