//! SQL session store for sessionkit over [sqlx]: SQLite (embedded),
//! PostgreSQL and MySQL/MariaDB.
//!
//! Enable the database(s) you use with the cargo features `sqlite`,
//! `postgres` and `mysql` (MariaDB is served by `mysql`).
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn demo() -> sessionkit_core::Result<()> {
//! use std::time::Duration;
//! use sessionkit_core::{Record, SessionId, SessionStore, Timestamp};
//! use sessionkit_sql::SqlStore;
//!
//! let store = SqlStore::builder()
//!     .table("sessions")
//!     .max_connections(8)
//!     .statement_timeout(Duration::from_secs(2))
//!     .call_timeout(Duration::from_secs(5))
//!     .connect("sqlite://sessions.db")
//!     .await?;
//! let now = Timestamp::now();
//! let record = Record::new(SessionId::generate(), Some("alice".into()), b"{}".to_vec(), now, now + Duration::from_secs(3600));
//! store.create(&record).await?;
//! assert!(store.load(&record.id).await?.is_some());
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! ## Schema
//!
//! One table (default name `sessions`, configurable with
//! [`SqlStoreOptions::table`]; on PostgreSQL optionally in a schema set with
//! [`SqlStoreOptions::schema`]):
//!
//! | column       | type                         | notes                                  |
//! |--------------|------------------------------|----------------------------------------|
//! | `id`         | text                         | primary key; binary/`C` collation      |
//! | `subject`    | text, nullable               | indexed (`<table>_subject_idx`)        |
//! | `payload`    | `BYTEA` / `BLOB` / `LONGBLOB`| opaque bytes                           |
//! | `version`    | `BIGINT`                     | compare-and-swap counter               |
//! | `created_at` | `BIGINT`                     | milliseconds since the Unix epoch      |
//! | `expires_at` | `BIGINT`                     | milliseconds since the epoch; indexed (`<table>_expires_idx`) |
//!
//! The `id` is whatever ID the store is given: a `SessionManager` (by
//! default) gives it SHA-256 of the ticket's ID, truncated to 128 bits,
//! never the ticket, so a dump of the table holds no working ticket.
//!
//! Instants are integers, not database date types, so that the index on
//! `expires_at` serves range scans identically on every database and a
//! record survives a round trip bit for bit.
//!
//! Table and schema names are checked against
//! `^[A-Za-z_][A-Za-z0-9_]{0,62}$` before they ever reach SQL text; every
//! value is a bound parameter.
//!
//! ## Migrations
//!
//! The schema is created by versioned migrations embedded in the crate,
//! recorded per table in `sessionkit_migrations` (same schema). They run when
//! the store is built (unless [`SqlStoreOptions::migrate`] is `false`; then
//! call [`SqlStore::migrate`] yourself) and are safe to run again and from
//! several processes at once: every statement is `IF NOT EXISTS`, and the
//! whole run holds a lock: a transaction-scoped advisory lock on PostgreSQL
//! (where the DDL is transactional too), an immediate transaction on SQLite,
//! `GET_LOCK` on MySQL/MariaDB.
//!
//! ## Which clock decides expiry
//!
//! **The application's clock.** Every statement that must tell live from
//! expired compares `expires_at` with [`Timestamp::now`] taken by the
//! process and passed as a parameter; the database clock is never used. A
//! record is live while `expires_at > now`. Keep the application hosts'
//! clocks synchronised (NTP): a host running ahead sees sessions expire
//! early, one running behind sees them late, by its skew. This keeps the
//! rule identical on the three databases (which disagree on time functions)
//! and identical to the other sessionkit stores.
//!
//! ## What is atomic
//!
//! - `create` on SQLite and PostgreSQL is one statement:
//!   `INSERT … ON CONFLICT (id) DO UPDATE … WHERE expires_at <= now`; it
//!   inserts, or replaces a row with the same ID only if that row expired;
//!   zero rows affected means a live row holds the ID ([`Error::Conflict`]).
//!   On MySQL (whose `ON DUPLICATE KEY UPDATE` row count cannot tell
//!   "replaced" from "left alone") a plain insert that hits a duplicate key
//!   deletes the row only if it expired and inserts once more; a live row is
//!   never touched, and a concurrent creator wins with the other one seeing
//!   `Conflict`.
//! - `save` is one `UPDATE … WHERE id = ? AND version = ? AND expires_at > now`:
//!   a compare-and-swap without a read-then-write race. When it updates
//!   nothing, a follow-up read of the live version tells
//!   [`Error::Conflict`] (a live row with another version) from
//!   [`Error::NotFound`] (none).
//! - `compare_and_delete` is one
//!   `DELETE … WHERE id = ? AND version = ? AND expires_at > now`, so the
//!   version test and the removal cannot be separated (of two concurrent
//!   ones for one version exactly one removes the row); when it removes
//!   nothing, the same follow-up read as `save`'s tells `Conflict` from
//!   `NotFound`. The subject index is the row itself, so the record leaves
//!   `list_subject` with it.
//! - `touch`, `delete`, `delete_subject` are single statements restricted
//!   to live rows; `load`, `list_subject` and `scan` never return expired
//!   rows.
//! - `delete_subject` is one atomic step even against a rotation (insert
//!   the new row, then compare-and-delete the old one) that overtakes it.
//!   On PostgreSQL its `DELETE` runs in a `REPEATABLE READ` transaction:
//!   under `READ COMMITTED` a `DELETE` whose snapshot predates the new row
//!   and which finds the old row deleted under it skips both, removing
//!   nothing although the subject always had a live session; under
//!   `REPEATABLE READ` that is a serialization failure. A `delete_subject`
//!   statement the server rolls back (that failure, a deadlock victim)
//!   applied nothing, and is run again, up to 10 times within the call
//!   timeout, before [`Error::Aborted`] reaches the caller.
//!
//! ## Locking (MySQL/MariaDB)
//!
//! InnoDB locks the index entries a statement reads. Every statement that
//! addresses one row by ID (`load`, `save`, `touch`, `delete`,
//! `compare_and_delete`, the follow-up read) writes its liveness test as
//! `expires_at + 0 > ?`, which no index can serve, so the primary key is
//! the only index the optimizer can use and two of them lock one row in the
//! same order. (Planned as a range scan of the `expires_at` index, which
//! MariaDB chooses on small tables, an update locks that index entry before
//! the primary key, while one that found the row by its key locks them the
//! other way round: deadlocks under ordinary contention.) Statements over
//! many rows (`delete_subject`, `delete_expired`) can still be chosen as a
//! deadlock victim by InnoDB, and so can a row insert that waits on the
//! gap lock of a concurrent `delete_subject` (a login racing a
//! log-out-everywhere of the same user); that is [`Error::Aborted`]
//! (below), which `delete_subject` retries itself (above) and the session
//! manager retries for every call.
//!
//! ## Enumerating sessions (`scan`)
//!
//! [`SessionStore::scan`] (copying sessions to another store, audits) is
//! keyset pagination on the primary key:
//! `SELECT … WHERE id > ? AND <live> ORDER BY id LIMIT ?`, a range of the
//! primary key read in key order, so a page costs its own rows wherever it
//! starts ([`Statement::Scan`]; the liveness test is kept off the
//! `expires_at` index as above). The cursor is the text of the last ID the
//! page read: it needs no server-side state, survives a restart and
//! resumes in another process. A record live for the whole enumeration is
//! returned exactly once; expired rows never are. Each page is one call,
//! bounded by the call timeout. Corrupt rows are skipped with a warning as
//! by `list_subject`, and the cursor still moves past them (a row whose ID
//! is not a session ID gets a cursor of `~` and the ID's bytes in hex; on
//! SQLite a row whose ID is not text at all is not scanned). A cursor is
//! parsed strictly, before any SQL runs: the empty text (the
//! start), a session ID or that `~hex` form, anything else is
//! [`Error::Decode`]; it only ever reaches SQL as a bound value.
//!
//! ## Cleanup
//!
//! Expired rows are invisible at once but stay in the table until
//! [`SessionStore::delete_expired`] removes them, in batches of
//! [`SqlStoreOptions::cleanup_batch_size`] rows (default 1000) so that a
//! large purge never holds long locks; it loops until a batch comes back
//! short. [`spawn_cleanup`] runs it periodically on tokio, logs failures
//! through `tracing` and retries, and stops when its shutdown future
//! completes.
//!
//! ## Pool, timeouts, errors
//!
//! [`SqlStoreOptions`] sets the pool size, the acquire timeout, a statement
//! timeout (PostgreSQL `statement_timeout`, MariaDB `max_statement_time` /
//! MySQL `max_execution_time`, SQLite busy timeout) and the **call
//! timeout**.
//!
//! The call timeout ([`SqlStoreOptions::call_timeout`], default 5 s, always
//! on; zero is rejected with [`Error::Config`]) bounds every store call as a
//! whole, from waiting for a pooled connection to the last round trip. A
//! server that stops answering without closing the connection (a silent
//! network partition, a paused VM) therefore fails the call with
//! `Error::Timeout(Some(limit))` instead of hanging the request; the
//! connection the call was using is closed rather than put back in the
//! pool. `delete_expired` applies it to each batch; migrations are not
//! bounded by it. It needs a tokio runtime with the time driver enabled (as
//! sqlx does).
//!
//! Errors, by what the caller can do about them:
//!
//! | error | when | transient |
//! |-------|------|-----------|
//! | [`Error::Aborted`] | the server rolled the statement back and nothing was applied: deadlock victim (MySQL 1213, PostgreSQL `40P01`), serialization failure (`40001`), lock wait timeout (MySQL 1205, PostgreSQL `55P03`), SQLite `SQLITE_BUSY_SNAPSHOT` | yes; the session manager runs the call again (up to its retry limit), and `delete_subject` retries its own statement |
//! | [`Error::Timeout`] | the call timeout passed (`Some(call timeout)`); the server cancelled the statement at its statement timeout, or SQLite's busy timeout passed (`Some(limit)` when the store knows it: the statement timeout it applied, SQLite's busy timeout read from the connection; `None` for a limit set on the server) | yes; a write may have been applied |
//! | [`Error::Backend`] `{ transient: true }` | connection lost or reset, IO error, server shutting down or killing the connection, too many connections, pool exhausted (acquire timeout) | yes; a write may have been applied |
//! | [`Error::Backend`] `{ transient: false }` | a closed pool ([`SqlStore::close`]), TLS or configuration errors, SQL or schema errors, permissions | no: the same call fails again |
//! | [`Error::Decode`] | `load` of a corrupt row (below); `scan` with a malformed cursor | no |
//!
//! A lock wait timeout is [`Error::Aborted`], not a timeout: every
//! statement of this store runs on its own (autocommit), and InnoDB rolls
//! back at least the statement that timed out (the whole transaction with
//! `innodb_rollback_on_timeout`), which is all of it, so nothing was
//! applied and a retry may get the lock. (With InnoDB's default lock wait
//! of 50 s, the call timeout normally ends such a wait first.) A
//! connection killed by the server
//! is dropped from the pool, so the next call works on a fresh one.
//!
//! ## Corrupt rows
//!
//! A row the store cannot decode (a negative version, an ID that is not a
//! session ID, a subject that is not UTF-8, a value of the wrong type in
//! SQLite's dynamically typed columns) never makes a caller see a wrong
//! record: `load` of it fails with [`Error::Decode`]; `list_subject` skips
//! it with a `tracing` warning (showing only the first characters of its
//! ID), so one bad row does not hide the subject's other sessions (`scan`
//! skips it the same way); and `delete_subject` removes it with the rest
//! (it counts in the number returned). `delete` removes it by ID.
//!
//! With an in-memory SQLite database (`sqlite::memory:`) the pool is kept to
//! one connection that never expires: the database lives exactly as long as
//! that connection.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Without a database feature the store has no driver: it compiles, but
// building one fails with `Error::Config`.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(unused, dead_code)
)]

mod cleanup;
mod core;
mod dialect;
mod error;
mod options;

use sessionkit_core::{
    Record, Result, ScanCursor, ScanPage, SessionId, SessionStore, Timestamp, async_trait,
};

pub use cleanup::spawn_cleanup;
pub use dialect::{Dialect, Statement, validate_identifier};
pub use options::SqlStoreOptions;
#[doc(no_inline)]
pub use sessionkit_core::Error;
/// The sqlx version this crate is built on, for building pools and options.
pub use sqlx;

/// A [`SessionStore`] in one table of a SQLite, PostgreSQL or MySQL/MariaDB
/// database. Cheap to clone (the pool is shared).
///
/// Build one with [`SqlStore::connect`] or [`SqlStore::builder`].
#[derive(Clone)]
pub struct SqlStore {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    #[cfg(feature = "sqlite")]
    Sqlite(std::sync::Arc<core::Core<sqlx::Sqlite>>),
    #[cfg(feature = "postgres")]
    Postgres(std::sync::Arc<core::Core<sqlx::Postgres>>),
    #[cfg(feature = "mysql")]
    MySql(std::sync::Arc<core::Core<sqlx::MySql>>),
}

#[cfg(feature = "sqlite")]
impl From<std::sync::Arc<core::Core<sqlx::Sqlite>>> for Inner {
    fn from(core: std::sync::Arc<core::Core<sqlx::Sqlite>>) -> Self {
        Inner::Sqlite(core)
    }
}

#[cfg(feature = "postgres")]
impl From<std::sync::Arc<core::Core<sqlx::Postgres>>> for Inner {
    fn from(core: std::sync::Arc<core::Core<sqlx::Postgres>>) -> Self {
        Inner::Postgres(core)
    }
}

#[cfg(feature = "mysql")]
impl From<std::sync::Arc<core::Core<sqlx::MySql>>> for Inner {
    fn from(core: std::sync::Arc<core::Core<sqlx::MySql>>) -> Self {
        Inner::MySql(core)
    }
}

/// Runs one expression on whichever driver the store uses: the logic exists
/// once, in `core::Core<DB>`.
macro_rules! dispatch {
    ($self:expr, $core:ident => $body:expr) => {
        match $self.inner {
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(ref $core) => $body,
            #[cfg(feature = "postgres")]
            Inner::Postgres(ref $core) => $body,
            #[cfg(feature = "mysql")]
            Inner::MySql(ref $core) => $body,
        }
    };
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect())
            .field("table", &self.table())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Options with defaults: table `sessions`, migrations on build, batch
    /// size 1000, 10 connections, 5 s acquire timeout, no statement timeout,
    /// 5 s call timeout.
    pub fn builder() -> SqlStoreOptions {
        SqlStoreOptions::new()
    }

    /// Connects with default options; the URL scheme picks the database
    /// (`sqlite:`, `postgres://`, `mysql://` / `mariadb://`).
    pub async fn connect(url: &str) -> Result<SqlStore> {
        SqlStoreOptions::new().connect(url).await
    }

    /// Runs the embedded schema migrations that this table has not seen
    /// yet. Idempotent; safe to call concurrently from several processes.
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self, c => c.migrate().await)
    }

    /// The database family.
    pub fn dialect(&self) -> Dialect {
        dispatch!(self, c => c.sql.dialect)
    }

    /// The (unqualified) table name.
    pub fn table(&self) -> &str {
        dispatch!(self, c => &c.sql.table)
    }

    /// The SQL text this store runs for one operation, with its placeholders,
    /// for example to check a query plan with `EXPLAIN`.
    pub fn sql(&self, statement: Statement) -> &str {
        dispatch!(self, c => c.sql.statement(statement))
    }

    /// The upper bound of one store call (see
    /// [`SqlStoreOptions::call_timeout`]).
    pub fn call_timeout(&self) -> std::time::Duration {
        dispatch!(self, c => c.call_timeout)
    }

    /// Closes the pool (waiting for the connections in use to come back);
    /// later calls fail with a non-transient [`Error::Backend`]: a closed
    /// pool stays closed.
    pub async fn close(&self) {
        dispatch!(self, c => c.pool.close().await)
    }

    /// The SQLite pool, if this store uses SQLite.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        #[allow(unreachable_patterns)]
        match self.inner {
            Inner::Sqlite(ref c) => Some(&c.pool),
            _ => None,
        }
    }

    /// The PostgreSQL pool, if this store uses PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        #[allow(unreachable_patterns)]
        match self.inner {
            Inner::Postgres(ref c) => Some(&c.pool),
            _ => None,
        }
    }

    /// The MySQL/MariaDB pool, if this store uses MySQL.
    #[cfg(feature = "mysql")]
    pub fn mysql_pool(&self) -> Option<&sqlx::MySqlPool> {
        #[allow(unreachable_patterns)]
        match self.inner {
            Inner::MySql(ref c) => Some(&c.pool),
            _ => None,
        }
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create(&self, record: &Record) -> Result<()> {
        dispatch!(self, c => c.create(record).await)
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        dispatch!(self, c => c.load(id).await)
    }

    async fn save(&self, record: &Record) -> Result<u64> {
        dispatch!(self, c => c.save(record).await)
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        dispatch!(self, c => c.touch(id, expires_at).await)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        dispatch!(self, c => c.delete(id).await)
    }

    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        dispatch!(self, c => c.compare_and_delete(id, version).await)
    }

    fn backend_name(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        dispatch!(self, c => c.list_subject(subject).await)
    }

    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        dispatch!(self, c => c.delete_subject(subject).await)
    }

    async fn delete_expired(&self) -> Result<u64> {
        dispatch!(self, c => c.delete_expired().await)
    }

    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        dispatch!(self, c => c.scan(cursor, limit).await)
    }
}
