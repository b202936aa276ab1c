//! In-process storage for sessionkit: [`MemoryStore`], a bounded session
//! store in this process's memory that can survive a restart through
//! snapshots, and [`CachedStore`], a coherent read-through /
//! write-through cache in front of any other store.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> sessionkit_core::Result<()> {
//! use std::time::Duration;
//! use sessionkit_core::{Record, SessionId, SessionStore, Timestamp};
//! use sessionkit_memory::MemoryStore;
//!
//! let store = MemoryStore::builder()
//!     .max_entries(200_000)
//!     .max_bytes(512 * 1024 * 1024)
//!     .build();
//! let now = Timestamp::now();
//! let record = Record::new(SessionId::generate(), Some("alice".into()), b"{}".to_vec(), now, now + Duration::from_secs(3600));
//! store.create(&record).await?;
//! assert_eq!(store.load(&record.id).await?, Some(record));
//! # Ok(()) }
//! ```
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
//! # `CachedStore`
//!
//! A cache of records in front of any store, kept coherent across
//! instances by an invalidation channel: see [`CachedStore`] for its
//! guarantees and `cache.rs` for how they are kept. It uses
//! [moka](https://docs.rs/moka), whose admission and expiry policies suit a
//! cache; a cache miss costs a backend round trip, which dwarfs moka's
//! overhead.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod snapshot;
mod store;

pub use cache::*;
pub use snapshot::*;
pub use store::*;
