//! In-process storage for sessionkit.
//!
//! - [`MemoryStore`]: a [`SessionStore`](sessionkit_core::SessionStore)
//!   that keeps sessions in this process's memory, in sharded hash maps,
//!   bounded by a number of entries and a number of bytes (least recently
//!   used evicted first), with per-record expiry, compare-and-swap saves,
//!   an exact subject index (`list_subject`, `delete_subject`) and optional
//!   snapshots to a file, to survive a graceful restart.
//! - [`CachedStore`]: a read-through / write-through cache of records in
//!   front of any other store (SQL, Redis, another `MemoryStore`), itself a
//!   `SessionStore`. It is kept coherent across application instances by an
//!   [`InvalidationChannel`](sessionkit_core::InvalidationChannel), never
//!   lets one instance's reads of a session go back in time, answers
//!   [`load_fresh`](sessionkit_core::SessionStore::load_fresh) from the
//!   backend for security decisions, and bounds how stale a copy can be
//!   when messages are lost (`max_staleness`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> sessionkit_core::Result<()> {
//! use std::time::Duration;
//! use sessionkit_core::{Record, SessionId, SessionStore, Timestamp};
//! use sessionkit_memory::{CachedStore, MemoryStore};
//!
//! // At most 200,000 sessions and about 512 MiB. A setting out of range
//! // is an error (`Error::Config`), never adjusted.
//! let store = MemoryStore::builder()
//!     .max_entries(200_000)
//!     .max_bytes(512 * 1024 * 1024)
//!     .build()?;
//! assert!(MemoryStore::builder().shards(3).build().is_err());
//!
//! let now = Timestamp::now();
//! let mut record = Record::new(SessionId::generate(), Some("alice".into()), b"{}".to_vec(), now, now + Duration::from_secs(3600));
//! store.create(&record).await?;
//! assert_eq!(store.load(&record.id).await?, Some(record.clone()));
//!
//! // A cache in front of a store; here the `MemoryStore` stands in for a
//! // shared SQL or Redis store, and there is no invalidation channel.
//! let cached = CachedStore::builder(store.clone())
//!     .max_staleness(Duration::from_secs(60))
//!     .build()?;
//! assert_eq!(cached.load(&record.id).await?.unwrap().version, 1); // now cached
//!
//! // A change the cache does not hear about (another instance, no channel)...
//! record.version = store.save(&record).await?;
//! // ...is not seen by cached reads, for at most `max_staleness`,
//! assert_eq!(cached.load(&record.id).await?.unwrap().version, 1);
//! // but `load_fresh` always asks the backend, and reads never go back.
//! assert_eq!(cached.load_fresh(&record.id).await?.unwrap().version, 2);
//! assert_eq!(cached.load(&record.id).await?.unwrap().version, 2);
//! # Ok(()) }
//! ```
//!
//! # Which one, and what to keep in mind
//!
//! | | `MemoryStore` | `CachedStore<S>` |
//! |---|---|---|
//! | source of truth | itself | the store `S` behind it |
//! | shared between processes | no | through `S`; the cache is per process, coherent through the channel |
//! | survives a restart | only through a snapshot | yes, if `S` does (the cache starts empty) |
//! | a read costs | a map lookup under a shard lock | a map lookup when cached; a round trip to `S` otherwise |
//! | use it for | development, tests, one-instance deployments | taking the round trip off repeated reads of a shared store |
//!
//! Caveats, all of them consequences of keeping data in one process:
//!
//! - **Memory only.** A `MemoryStore` loses every session when the process
//!   ends, unless it was snapshotted ([`MemoryStore::snapshot_to`]) and is
//!   restored on start; a crash loses what changed since the last snapshot.
//!   Users whose sessions were lost are logged out.
//! - **Per process.** Two processes with a `MemoryStore` each do not share
//!   sessions: behind a load balancer, a user logged in on one instance is
//!   a stranger to the others. Use a shared store (SQL, Redis) as soon as
//!   there is more than one instance, and a `CachedStore` in front of it if
//!   its round trips matter.
//! - **Bounded means evicting.** A full `MemoryStore` evicts the least
//!   recently used sessions, and to its owner an evicted session looks
//!   logged out: size `max_entries` and `max_bytes` for the peak.
//! - **A cache serves copies.** A `CachedStore` may serve a copy that
//!   another instance has already changed or ended, until that instance's
//!   invalidation message arrives, and for up to `max_staleness` if it is
//!   lost or there is no channel. Decisions that must not act on an ended
//!   session (privileged actions, password or e-mail changes, payments) use
//!   `load_fresh`.
//! - **The application's clock decides expiry**, as in every sessionkit
//!   store: keep hosts NTP-synchronised.
//!
//! # Configuration
//!
//! Both types have one shape: `builder()`, setters that store exactly what
//! they are given, and `build()`, which checks every setting and returns
//! [`Error::Config`](sessionkit_core::Error::Config) naming the setting,
//! the value given and the range allowed (for example "MemoryStore:
//! max_entries must be at least 1 (got 0)"), rather than rounding or
//! clamping a value into range: a bound that silently differs from the one
//! written in the configuration is found out in production.
//! [`MemoryStore::new`] (the defaults, which are in range) cannot fail.
//!
//! | setting | allowed | default |
//! |---|---|---|
//! | [`MemoryStoreBuilder::max_entries`] | at least 1 | [`DEFAULT_MAX_ENTRIES`] |
//! | [`MemoryStoreBuilder::max_bytes`] | at least 1 | [`DEFAULT_MAX_BYTES`] |
//! | [`MemoryStoreBuilder::shards`] | a power of two from 1 to [`MAX_SHARDS`] | one per 128 of `max_entries`, rounded up to a power of two, at most [`MAX_SHARDS`] |
//! | [`CachedStoreBuilder::max_staleness`] | at least 1 ms | [`CACHE_DEFAULT_MAX_STALENESS`] |
//! | [`CachedStoreBuilder::max_bytes`] | at least 1 | [`CACHE_DEFAULT_MAX_BYTES`] |
//! | [`CachedStoreBuilder::publish_timeout`] | at least 1 ms | [`CACHE_DEFAULT_PUBLISH_TIMEOUT`] |
//!
//! # Design of `MemoryStore`
//!
//! ## What it keeps
//!
//! Each [`Record`](sessionkit_core::Record) as it was given: ID, subject,
//! payload bytes (shared, not copied: a load hands out a reference-counted
//! view), version and instants. The ID is whatever the store is given: a
//! `SessionManager` (by default) gives it SHA-256 of the ticket's ID, never
//! the ticket itself.
//!
//! ## Layout
//!
//! The records live in up to [`MAX_SHARDS`] shards. A shard is a
//! `std::sync::Mutex` around a hash map from ID to a slot in a slab of
//! nodes, and the nodes form a doubly linked list in order of use. An
//! operation hashes the ID once (SipHash with per-process random keys, so
//! that nobody can choose IDs that collide), takes the shard from bits of
//! that hash, and reuses the same hash inside the map.
//!
//! **Why not moka** (which this store was built on until 0.1): moka is a
//! fine concurrent cache, but a compare-and-swap through its
//! `entry().and_compute_with` costs a key lock, a boxed future, a write to
//! its operation log and its housekeeping: measured with callgrind, 13,000
//! instructions for a `create` and 18,000 for a `save`, against about
//! 1,000 for either here, which is what made sessionkit slower than
//! tower-sessions' unbounded `Mutex<HashMap>` on create and save. The
//! critical sections here are a few dozen instructions: a map lookup, an
//! update in place, a few links.
//!
//! ## Guarantees and how they are kept
//!
//! - **Atomic per session.** Every operation on one ID runs in one
//!   critical section of its shard, and nothing in it awaits. `create`
//!   inserts only if no live record has the ID, `save` compares the
//!   version and writes in place, `compare_and_delete` removes only the
//!   given version, so concurrent writers never lose an update and of two
//!   compare-and-deletes of one version exactly one succeeds.
//! - **Bounded.** One weighted capacity covers both bounds, as moka's
//!   weigher did: a record weighs its payload and subject bytes plus a
//!   fixed overhead, and at least `max_bytes / max_entries`, so at most
//!   `max_entries` records and about `max_bytes` bytes are held. The total
//!   is one atomic counter; a write that pushes it over the capacity
//!   evicts least recently used records, from its own shard first, after
//!   leaving its critical section (so the bound can be exceeded by the
//!   records in flight, for a moment). A record larger than the capacity
//!   is refused with `Error::TooLarge`.
//! - **Expiry.** Every read and write checks `expires_at` (an expired
//!   record is never returned and never blocks a `create`), removes what it
//!   finds expired, and every write also removes up to two expired records
//!   from the least recently used end of its shard. `delete_expired` (and
//!   [`MemoryStore::run_pending_tasks`]) sweeps every shard and gives
//!   back the memory of shards that shrank a lot.
//! - **Subject index.** Sharded by subject and changed only inside the
//!   critical section of the record's shard (lock order: record shard,
//!   then subject shard), so it is exact: `list_subject` sees every
//!   session created before it began, and `delete_subject` removes them.
//! - **Scan.** Shard by shard, each in ID order; the cursor is the shard
//!   and the last ID, so sessions that come and go never make a scan skip
//!   a session that stays. A cursor from another instance of the store
//!   (after a restart) starts over: records may be returned twice, never
//!   missed.
//!
//! ## Trade-offs
//!
//! - The eviction order is exactly least recently used within a shard and
//!   approximately across shards. Small stores get few shards (one per 128
//!   of `max_entries`), so their order is close to exact; a store with one
//!   shard ([`MemoryStoreBuilder::shards`]) is exact LRU.
//! - Expired records that nothing touches hold memory until a write
//!   reaches them at the end of the LRU list, an eviction takes them, or
//!   `delete_expired` runs: call it periodically in a store whose traffic
//!   stops (the LRU end is normally where expired sessions are, since a
//!   session expires when it has not been used).
//! - A load moves the record to the front of its shard's list, so a load
//!   takes the same lock as a write.
//!
//! # Snapshots
//!
//! [`MemoryStore::snapshot_to`] writes every live session to a file;
//! [`MemoryStore::restore_from`] loads one on start;
//! [`MemoryStore::spawn_snapshots`] writes one periodically.
//!
//! ## File format (version 1)
//!
//! All integers little-endian.
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic ([`SNAPSHOT_MAGIC`], `\x89SKSNAP\n`) |
//! | 4 | format version ([`SNAPSHOT_FORMAT_VERSION`]) |
//! | 4 | flags (`0`) |
//! | 8 | written at (ms since the Unix epoch) |
//! | 8 | number of records |
//! | 8 | body length in bytes |
//! | body | the records, one after the other |
//! | 32 | SHA-256 of everything above |
//!
//! A record: the ID (22 bytes, its canonical text), the version (8), the
//! creation and expiry instants (8 + 8, ms), the subject (a 4-byte length,
//! `0xFFFF_FFFF` for none, then UTF-8) and the payload (an 8-byte length,
//! then the bytes exactly as stored: the manager's envelope, which carries
//! its codec and schema version, or a sealed payload). Records are written
//! least recently active first (by expiry), so a restore into a smaller
//! store evicts those first.
//!
//! ## Guarantees
//!
//! - **Atomic writes:** into `<path>.tmp`, synced, renamed over `path`, the
//!   directory synced. `path` always holds a whole snapshot; a failed
//!   write leaves the previous one untouched.
//! - **Never partly trusted:** a restore checks the magic, the version, the
//!   length and the checksum and decodes every record before inserting the
//!   first one. A missing file is a fresh start (`Ok`, nothing found); any
//!   other problem is a [`SnapshotError`] and nothing is restored: the
//!   caller decides whether to start empty or refuse to start. Sessions
//!   that expired while the process was down are dropped.
//!
//! ## What it is for
//!
//! Durability for **one instance across graceful restarts**
//! (deploys, reboots). What it is not: replication (two instances do not
//! share sessions), nor crash durability (sessions created or changed
//! after the last snapshot are lost when the process dies; periodic
//! snapshots bound how much). The file holds the store's IDs (hashed by
//! the manager unless hashing was turned off, in which case they are
//! working tickets) and the payloads (encrypted only if the manager seals
//! them): it is created readable by its owner only; keep it so. The
//! checksum detects corruption, not tampering: whoever can write the file
//! can plant sessions in it. One writer per path.
//!
//! # Design of `CachedStore`
//!
//! ## Why a cache, and why this one
//!
//! A shared store keeps instances interchangeable at the price of a round
//! trip on every request, and most requests only read their session. The
//! cache takes that round trip off repeated reads while the backend stays
//! the one truth: the cache only ever holds what the backend returned to a
//! load or acknowledged for a write, and it never decides anything the
//! backend should (compare-and-swap stays the backend's: a save based on a
//! stale copy gets the backend's `Conflict`, and the ID is evicted).
//!
//! ## What it does
//!
//! - **Reads** go through the cache: a miss loads from the backend and
//!   keeps the answer, including "absent" (so a flood of unknown IDs costs
//!   one backend read per ID), and concurrent misses for one ID wait for a
//!   single backend load.
//! - **Writes** go to the backend first; only the state it acknowledged
//!   (with the version it returned) is put into the cache. A failed,
//!   timed-out or cancelled write evicts the ID instead. `list_subject` and
//!   `delete_expired` go straight to the backend.
//! - **Invalidation across instances**: with a
//!   [`channel`](CachedStoreBuilder::channel), every write publishes a
//!   message and a background task evicts what other instances publish. A
//!   lost subscription clears the cache and
//!   [`is_subscribed`](CachedStore::is_subscribed) says so. A publish that
//!   fails is logged and counted ([`CacheStats::publish_failures`]), not
//!   returned: the write itself succeeded, and failing it would invite a
//!   retry of a write that already happened.
//! - **Staleness bound**: every entry is dropped at the latest
//!   `max_staleness` after the backend observation it comes from, and when
//!   the record expires. That is the bound on how stale a read can be when
//!   messages are lost or there is no channel; with a working channel, it
//!   is the message latency.
//! - **Monotonic reads per instance**: once an instance has returned a
//!   state of a session (a load, a `load_fresh`, the acknowledgment of its
//!   own write), every read of it that begins afterwards returns that state
//!   or a newer one ("absent" included: a late read never resurrects a
//!   logged-out session).
//! - **`load_fresh`** always asks the backend, never the cache nor a load
//!   in flight, and refreshes the cache with the answer.
//! - **Degraded reads** (off by default,
//!   [`degraded_reads`](CachedStoreBuilder::degraded_reads)): when the
//!   backend fails with a transient error, a load may answer with a cached
//!   copy, marked [`Freshness::Degraded`] by
//!   [`load_with_status`](CachedStore::load_with_status).
//!
//! ## How it is kept
//!
//! The hard race is a slow load overtaken by a change: the load reads
//! version 1, a write stores version 2 and evicts the ID, and only then
//! does the load put version 1 into the cache. The cache keeps a logical
//! clock and per-ID, per-subject and global generations (fixed arrays of
//! slots, so bounded memory); every change advances the generations it
//! touches, every entry is stamped with the clock read before its backend
//! read began, and an entry is served only while nothing it depends on has
//! moved past its stamp. Two backend reads of one ID that overlap on one
//! instance (a `load_fresh` next to a cached load) are registered, and the
//! one that completes while the other runs overtakes it, so an older answer
//! is neither cached nor returned. `cache.rs` has the details. The entries
//! live in [moka](https://docs.rs/moka), whose size-aware eviction and
//! per-entry expiry suit a cache; its per-operation cost, which made
//! `MemoryStore` drop it (above), is dwarfed here by the backend round trip
//! a miss costs.
//!
//! ## Trade-offs
//!
//! - Coherence across instances is as good as the channel: until a message
//!   arrives (milliseconds), or for up to `max_staleness` when it is lost,
//!   an instance may serve its older copy. A shorter `max_staleness` bounds
//!   that better and costs more backend reads.
//! - Each instance holds its own copy of the sessions it served, up to
//!   `max_bytes` (payload, subject and a fixed overhead per entry).
//! - Writes cost what they cost on the backend plus a publish; the cache
//!   speeds up reads only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod snapshot;
mod store;

pub use cache::*;
pub use snapshot::*;
pub use store::*;
