//! The store logic, written once, generic over the sqlx database driver.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sessionkit_core::{Error, Record, Result, ScanCursor, ScanPage, SessionId, Timestamp};
use sqlx::pool::PoolConnection;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type,
};

use crate::dialect::{Dialect, Sql};
use crate::error;

/// What the generic logic needs from a driver beyond `sqlx::Database`.
pub(crate) trait Backend: Database {
    const DIALECT: Dialect;
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

#[cfg(feature = "sqlite")]
impl Backend for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

#[cfg(feature = "postgres")]
impl Backend for sqlx::Postgres {
    const DIALECT: Dialect = Dialect::Postgres;
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

#[cfg(feature = "mysql")]
impl Backend for sqlx::MySql {
    const DIALECT: Dialect = Dialect::MySql;
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// One store over one pool.
pub(crate) struct Core<DB: Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) sql: Arc<Sql>,
    pub(crate) batch_size: std::num::NonZeroU32,
    /// The limit the server enforces on one statement (the statement
    /// timeout this crate applied, SQLite's busy timeout), when known:
    /// reported by [`Error::Timeout`] when the server cancels a statement.
    pub(crate) server_timeout: Option<Duration>,
    /// The upper bound of one store call.
    pub(crate) call_timeout: Duration,
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Config(format!("version {v} does not fit in a BIGINT")))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::decode(format!("negative version {v} in the database")))
}

/// The first characters of a stored ID that is not a valid session ID, for
/// a log line (never the whole text: it may be most of a real ID).
fn redact_text(text: &str) -> String {
    let shown: String = text.chars().take(4).collect();
    format!("{shown}…")
}

/// An error with its sources, for a log line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Marks a scan cursor that carries the ID of a row that is not a session
/// ID (a corrupt row the scan skipped), hex-encoded. `~` is not in the
/// alphabet of session IDs, so the two forms cannot be confused.
const RAW_CURSOR: char = '~';

/// The cursor after a row with this ID: the ID itself when it is a session
/// ID (the normal case), else its bytes in lowercase hex after `~`.
fn cursor_after(raw: &[u8]) -> ScanCursor {
    match std::str::from_utf8(raw) {
        Ok(text) if SessionId::parse(text).is_ok() => ScanCursor::new(text),
        _ => {
            let mut text = String::with_capacity(1 + 2 * raw.len());
            text.push(RAW_CURSOR);
            for b in raw {
                text.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                text.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
            }
            ScanCursor::new(text)
        }
    }
}

/// The ID bytes a scan cursor continues after. Accepted, and nothing else:
/// the empty text (the start), a session ID, or `~` and the lowercase hex
/// of an ID the store itself wrote into a cursor (non-empty; on PostgreSQL
/// UTF-8 without NUL, on MySQL ASCII, as those columns hold). Anything else
/// is [`Error::Decode`]. The bytes are only ever bound as a parameter.
fn parse_cursor(dialect: Dialect, text: &str) -> Result<Vec<u8>> {
    let bad = || Error::decode("not a scan cursor of a SQL session store");
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(hex) = text.strip_prefix(RAW_CURSOR) else {
        return SessionId::parse(text)
            .map(|id| id.as_str().as_bytes().to_vec())
            .map_err(|_| bad());
    };
    if hex.is_empty() || hex.len() % 2 != 0 {
        return Err(bad());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let raw = hex
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let fits = match dialect {
        Dialect::Sqlite => true,
        Dialect::Postgres => std::str::from_utf8(&raw).is_ok() && !raw.contains(&0),
        Dialect::MySql => raw.is_ascii(),
    };
    if fits { Ok(raw) } else { Err(bad()) }
}

/// How often `save` and `compare_and_delete` retry when their conditional
/// statement matched nothing but the follow-up read saw the expected
/// version (the row changed back between the two statements).
const CAS_ATTEMPTS: usize = 3;

/// How often `delete_subject` runs its statement when the server rolls it
/// back (a deadlock victim, a serialization failure): nothing was applied,
/// so running it again is safe. All attempts share the call timeout.
const DELETE_SUBJECT_ATTEMPTS: u32 = 10;

/// A pooled connection held for one store call. A call dropped before it
/// finished (the call timeout fired, or the caller gave up) may have left
/// its statement in flight: the connection is then closed (gracefully, in
/// the background, bounded by sqlx) instead of going back to the pool,
/// where it would wait for the answer of a server that may be gone.
struct Conn<DB: Database> {
    conn: PoolConnection<DB>,
    finished: bool,
}

impl<DB: Database> std::ops::Deref for Conn<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> std::ops::DerefMut for Conn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> Drop for Conn<DB> {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// Runs `$body` (which may `.await` and `?`, and evaluates to a `Result`)
/// with `$conn: &mut DB::Connection` taken from the pool, within the call
/// timeout.
macro_rules! on_conn {
    ($self:ident, |$conn:ident| $body:expr) => {
        $self.bounded(async {
            let mut guard = $self.acquire().await?;
            let result = async {
                let $conn: &mut DB::Connection = &mut guard;
                $body
            }
            .await;
            guard.finished = true;
            result
        })
    };
}

impl<DB> Core<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
    for<'a> Option<String>: Decode<'a, DB> + Type<DB>,
    for<'a> Vec<u8>: Decode<'a, DB> + Type<DB>,
    for<'a> Option<Vec<u8>>: Decode<'a, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn err(&self, e: sqlx::Error) -> Error {
        error::map(DB::DIALECT, self.server_timeout, e)
    }

    fn q(sql: &str) -> sqlx::query::Query<'static, DB, DB::Arguments> {
        // Every statement was built from fixed text and validated
        // identifiers (see dialect.rs); values are always bound.
        sqlx::query(AssertSqlSafe(sql.to_owned()))
    }

    /// A hot-path statement, shared without copying its text.
    fn qs(sql: &Arc<str>) -> sqlx::query::Query<'static, DB, DB::Arguments> {
        sqlx::query(AssertSqlSafe(Arc::clone(sql)))
    }

    /// `fut` within the call timeout; past it [`Error::Timeout`] with the
    /// limit.
    async fn bounded<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(Some(self.call_timeout))),
        }
    }

    async fn acquire(&self) -> Result<Conn<DB>> {
        let conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
        Ok(Conn {
            conn,
            finished: false,
        })
    }

    async fn execute(
        &self,
        conn: &mut DB::Connection,
        query: sqlx::query::Query<'static, DB, DB::Arguments>,
    ) -> Result<u64> {
        query
            .execute(conn)
            .await
            .map(|r| DB::rows_affected(&r))
            .map_err(|e| self.err(e))
    }

    fn insert_query(
        &self,
        sql: &Arc<str>,
        r: &Record,
    ) -> Result<sqlx::query::Query<'static, DB, DB::Arguments>> {
        Ok(Self::qs(sql)
            .bind(r.id.as_str())
            .bind(r.subject.as_deref())
            .bind(&r.payload[..])
            .bind(to_i64(r.version)?)
            .bind(r.created_at.as_millis())
            .bind(r.expires_at.as_millis()))
    }

    /// The subject column: text on SQLite and PostgreSQL, bytes on MySQL
    /// (checked for UTF-8 here).
    fn decode_subject(row: &DB::Row, index: usize) -> Result<Option<String>> {
        match DB::DIALECT {
            Dialect::MySql => row
                .try_get::<Option<Vec<u8>>, _>(index)
                .map_err(Error::decode)?
                .map(|bytes| String::from_utf8(bytes).map_err(Error::decode))
                .transpose(),
            Dialect::Postgres | Dialect::Sqlite => row
                .try_get::<Option<String>, _>(index)
                .map_err(Error::decode),
        }
    }

    /// `subject, payload, version, created_at, expires_at` from column
    /// `first` on. Fails with [`Error::Decode`] on a corrupt row.
    fn decode_record(id: SessionId, row: &DB::Row, first: usize) -> Result<Record> {
        let int = |i: usize| row.try_get::<i64, _>(first + i).map_err(Error::decode);
        Ok(Record {
            id,
            subject: Self::decode_subject(row, first)?,
            payload: Bytes::from(
                row.try_get::<Vec<u8>, _>(first + 1)
                    .map_err(Error::decode)?,
            ),
            version: to_u64(int(2)?)?,
            created_at: Timestamp::from_millis(int(3)?),
            expires_at: Timestamp::from_millis(int(4)?),
        })
    }

    pub(crate) async fn create(&self, r: &Record) -> Result<()> {
        on_conn!(self, |conn| self.create_on(conn, r).await).await
    }

    async fn create_on(&self, conn: &mut DB::Connection, r: &Record) -> Result<()> {
        let now = Timestamp::now().as_millis();
        match DB::DIALECT {
            Dialect::Postgres | Dialect::Sqlite => {
                let q = self.insert_query(&self.sql.create, r)?.bind(now);
                match self.execute(conn, q).await? {
                    0 => Err(Error::Conflict),
                    _ => Ok(()),
                }
            }
            Dialect::MySql => {
                // Plain insert; on a duplicate key, reclaim the ID from an
                // expired row (if it is one) and insert once more.
                for attempt in 0..2 {
                    let q = self.insert_query(&self.sql.create, r)?;
                    match q.execute(&mut *conn).await {
                        Ok(_) => return Ok(()),
                        Err(e) if error::is_unique_violation(&e) => {
                            if attempt == 1 {
                                return Err(Error::Conflict);
                            }
                            let reclaim = Self::qs(&self.sql.reclaim_expired)
                                .bind(r.id.as_str())
                                .bind(now);
                            if self.execute(conn, reclaim).await? == 0 {
                                return Err(Error::Conflict);
                            }
                        }
                        Err(e) => return Err(self.err(e)),
                    }
                }
                Err(Error::Conflict)
            }
        }
    }

    pub(crate) async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        on_conn!(self, |conn| {
            let row = Self::qs(&self.sql.load)
                .bind(id.as_str())
                .bind(Timestamp::now().as_millis())
                .fetch_optional(conn)
                .await
                .map_err(|e| self.err(e))?;
            match row {
                Some(row) => Self::decode_record(*id, &row, 0).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// The version of the live row `id`, if there is one.
    async fn live_version(
        &self,
        conn: &mut DB::Connection,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<i64>> {
        Self::qs(&self.sql.live_version)
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(conn)
            .await
            .map_err(|e| self.err(e))?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()
            .map_err(Error::decode)
    }

    pub(crate) async fn save(&self, r: &Record) -> Result<u64> {
        on_conn!(self, |conn| self.save_on(conn, r).await).await
    }

    async fn save_on(&self, conn: &mut DB::Connection, r: &Record) -> Result<u64> {
        // A version beyond BIGINT (or whose successor is) cannot be stored,
        // so it cannot match either: only the follow-up read decides.
        let versions = i64::try_from(r.version)
            .ok()
            .and_then(|v| Some((v, v.checked_add(1)?)));
        for _ in 0..CAS_ATTEMPTS {
            let now = Timestamp::now().as_millis();
            if let Some((expected, next)) = versions {
                let q = Self::qs(&self.sql.save)
                    .bind(r.subject.as_deref())
                    .bind(&r.payload[..])
                    .bind(next)
                    .bind(r.created_at.as_millis())
                    .bind(r.expires_at.as_millis())
                    .bind(r.id.as_str())
                    .bind(expected)
                    .bind(now);
                if self.execute(conn, q).await? > 0 {
                    return to_u64(next);
                }
            }
            // Nothing matched: is there a live row at all?
            match (self.live_version(conn, &r.id, now).await?, versions) {
                (None, _) => return Err(Error::NotFound),
                // The row changed between the two statements and now has
                // the expected version again: try the update once more.
                (Some(v), Some((expected, _))) if v == expected => continue,
                (Some(_), _) => return Err(Error::Conflict),
            }
        }
        Err(Error::Conflict)
    }

    pub(crate) async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        on_conn!(self, |conn| self
            .compare_and_delete_on(conn, id, version)
            .await)
        .await
    }

    async fn compare_and_delete_on(
        &self,
        conn: &mut DB::Connection,
        id: &SessionId,
        version: u64,
    ) -> Result<()> {
        // A version beyond BIGINT cannot be stored, so it cannot match.
        let expected = i64::try_from(version).ok();
        for _ in 0..CAS_ATTEMPTS {
            let now = Timestamp::now().as_millis();
            if let Some(expected) = expected {
                // One statement: the version test and the removal are atomic.
                let q = Self::qs(&self.sql.compare_and_delete)
                    .bind(id.as_str())
                    .bind(expected)
                    .bind(now);
                if self.execute(conn, q).await? > 0 {
                    return Ok(());
                }
            }
            // Nothing removed: another version, or no live row at all?
            match (self.live_version(conn, id, now).await?, expected) {
                (None, _) => return Err(Error::NotFound),
                (Some(v), Some(expected)) if v == expected => continue,
                (Some(_), _) => return Err(Error::Conflict),
            }
        }
        Err(Error::Conflict)
    }

    pub(crate) async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        on_conn!(self, |conn| {
            let q = Self::qs(&self.sql.touch)
                .bind(expires_at.as_millis())
                .bind(id.as_str())
                .bind(Timestamp::now().as_millis());
            match self.execute(conn, q).await? {
                0 => Err(Error::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    pub(crate) async fn delete(&self, id: &SessionId) -> Result<bool> {
        on_conn!(self, |conn| {
            let q = Self::qs(&self.sql.delete)
                .bind(id.as_str())
                .bind(Timestamp::now().as_millis());
            Ok(self.execute(conn, q).await? > 0)
        })
        .await
    }

    /// Every live row of `subject` that decodes; a corrupt one is skipped
    /// with a warning (one bad row must not hide the subject's other
    /// sessions, and `delete_subject` still removes it).
    pub(crate) async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        let rows = on_conn!(self, |conn| {
            Self::qs(&self.sql.list_subject)
                .bind(subject)
                .bind(Timestamp::now().as_millis())
                .fetch_all(conn)
                .await
                .map_err(|e| self.err(e))
        })
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id = match row.try_get::<String, _>(0) {
                Ok(text) => match SessionId::parse(&text) {
                    Ok(id) => id,
                    Err(error) => {
                        tracing::warn!(
                            table = %self.sql.table,
                            id = %redact_text(&text),
                            error = %chain(&error),
                            "sessionkit-sql: skipping a row with an invalid session ID while listing a subject"
                        );
                        continue;
                    }
                },
                Err(error) => {
                    tracing::warn!(
                        table = %self.sql.table,
                        error = %chain(&error),
                        "sessionkit-sql: skipping a row whose ID cannot be read while listing a subject"
                    );
                    continue;
                }
            };
            match Self::decode_record(id, &row, 1) {
                Ok(record) => out.push(record),
                Err(error) => tracing::warn!(
                    table = %self.sql.table,
                    id = %id.redacted(),
                    error = %chain(&error),
                    "sessionkit-sql: skipping a corrupt session row while listing a subject"
                ),
            }
        }
        Ok(out)
    }

    /// The ID column of a row as bytes (whatever it holds), for a cursor.
    fn raw_id(row: &DB::Row) -> std::result::Result<Vec<u8>, sqlx::Error> {
        match DB::DIALECT {
            Dialect::Postgres => row.try_get::<String, _>(0).map(String::into_bytes),
            Dialect::MySql | Dialect::Sqlite => row.try_get::<Vec<u8>, _>(0),
        }
    }

    /// One page of live rows after the cursor, in ID order (keyset
    /// pagination on the primary key). The cursor is the ID of the last row
    /// read, corrupt rows included, so a page of corrupt rows still moves
    /// the scan on; those rows are skipped with a warning, as by
    /// `list_subject`.
    pub(crate) async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        let after = match cursor {
            Some(c) => parse_cursor(DB::DIALECT, c.as_str())?,
            None => Vec::new(),
        };
        if limit == 0 {
            let here = cursor.cloned().unwrap_or_else(|| ScanCursor::new(""));
            return Ok(ScanPage::new(Vec::new(), Some(here)));
        }
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = on_conn!(self, |conn| {
            let q = Self::qs(&self.sql.scan);
            let q = match DB::DIALECT {
                Dialect::Sqlite => q.bind(&after[..]),
                Dialect::Postgres | Dialect::MySql => {
                    q.bind(std::str::from_utf8(&after).map_err(Error::decode)?)
                }
            };
            q.bind(Timestamp::now().as_millis())
                .bind(fetch)
                .fetch_all(conn)
                .await
                .map_err(|e| self.err(e))
        })
        .await?;
        let full = rows.len() >= limit;
        let mut last = None;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let raw = match Self::raw_id(row) {
                Ok(raw) => raw,
                Err(error) => {
                    tracing::warn!(
                        table = %self.sql.table,
                        error = %chain(&error),
                        "sessionkit-sql: skipping a row whose ID cannot be read while scanning"
                    );
                    continue;
                }
            };
            let parsed = std::str::from_utf8(&raw)
                .map_err(Error::decode)
                .and_then(SessionId::parse);
            match parsed.and_then(|id| Self::decode_record(id, row, 1)) {
                Ok(record) => records.push(record),
                Err(error) => tracing::warn!(
                    table = %self.sql.table,
                    id = %redact_text(&String::from_utf8_lossy(&raw)),
                    error = %chain(&error),
                    "sessionkit-sql: skipping a corrupt session row while scanning"
                ),
            }
            last = Some(raw);
        }
        if !full {
            return Ok(ScanPage::new(records, None));
        }
        match last {
            Some(raw) => Ok(ScanPage::new(records, Some(cursor_after(&raw)))),
            // Not one ID of a full page could be read: no cursor moves past
            // them, and going round in circles is worse than failing.
            None => Err(Error::decode(
                "scan: no ID of a page of rows could be read, the scan cannot move on",
            )),
        }
    }

    /// Removes every live row of `subject` as one atomic step, retrying a
    /// statement the server rolled back (nothing was applied).
    ///
    /// On PostgreSQL the `DELETE` runs in a `REPEATABLE READ` transaction.
    /// Under the default `READ COMMITTED`, a `DELETE` whose snapshot
    /// predates a concurrent insert, and which then finds a row of its
    /// snapshot deleted meanwhile, skips both: with a rotation (insert the
    /// new row, then delete the old) racing it, it could remove nothing
    /// while the subject had a live session at every moment of its run.
    /// Under `REPEATABLE READ` that case is a serialization failure
    /// instead, and the retry, on a newer snapshot, sees the new row. MySQL
    /// (locking reads) and SQLite (one writer) do not have the anomaly, but
    /// an InnoDB `DELETE` over many rows can be a deadlock victim.
    pub(crate) async fn delete_subject(&self, subject: &str) -> Result<u64> {
        on_conn!(self, |conn| {
            let mut attempt = 1;
            loop {
                let result = self.delete_subject_on(conn, subject).await;
                match result {
                    Err(Error::Aborted(error)) if attempt < DELETE_SUBJECT_ATTEMPTS => {
                        tracing::debug!(
                            table = %self.sql.table,
                            attempt,
                            error = %chain(&*error),
                            "sessionkit-sql: delete_subject was rolled back by the server; running it again"
                        );
                        attempt += 1;
                        tokio::task::yield_now().await;
                    }
                    other => break other,
                }
            }
        })
        .await
    }

    async fn delete_subject_on(&self, conn: &mut DB::Connection, subject: &str) -> Result<u64> {
        let q = Self::qs(&self.sql.delete_subject)
            .bind(subject)
            .bind(Timestamp::now().as_millis());
        if DB::DIALECT != Dialect::Postgres {
            return self.execute(conn, q).await;
        }
        // A call dropped half-way closes its connection (see `Conn`), so
        // no transaction is ever left open in the pool.
        let raw = |sql: &'static str| sqlx::raw_sql(AssertSqlSafe(sql));
        raw("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        match self.execute(conn, q).await {
            Ok(n) => {
                raw("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(n)
            }
            Err(e) => {
                raw("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| self.err(e))?;
                Err(e)
            }
        }
    }

    /// Purges expired rows in batches; the call timeout bounds each batch
    /// (its own statement), not the whole purge, so that a large purge that
    /// makes progress is never cut short.
    pub(crate) async fn delete_expired(&self) -> Result<u64> {
        // One instant for the whole purge: rows that expire while it runs
        // are left for the next one, so the loop always ends.
        let now = Timestamp::now().as_millis();
        let batch = i64::from(self.batch_size.get());
        let mut total = 0u64;
        loop {
            let n = on_conn!(self, |conn| {
                let q = Self::qs(&self.sql.delete_expired_batch)
                    .bind(now)
                    .bind(batch);
                self.execute(conn, q).await
            })
            .await?;
            total += n;
            if n < batch as u64 {
                return Ok(total);
            }
        }
    }

    /// Runs the embedded migrations that this table has not seen yet, under
    /// a lock that serialises concurrent runs (several processes starting
    /// at once): a transaction-scoped advisory lock on PostgreSQL, an
    /// immediate (write-locking) transaction on SQLite, `GET_LOCK` on MySQL.
    pub(crate) async fn migrate(&self) -> Result<()> {
        match DB::DIALECT {
            Dialect::Postgres | Dialect::Sqlite => {
                let begin = if DB::DIALECT == Dialect::Sqlite {
                    "BEGIN IMMEDIATE"
                } else {
                    "BEGIN"
                };
                let mut tx = self.pool.begin_with(begin).await.map_err(|e| self.err(e))?;
                if DB::DIALECT == Dialect::Postgres {
                    // Released at commit or rollback, also if this future is
                    // dropped half-way.
                    Self::q("SELECT pg_advisory_xact_lock(hashtext('sessionkit_migrations'))")
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.err(e))?;
                }
                self.migrate_on(&mut *tx).await?;
                tx.commit().await.map_err(|e| self.err(e))
            }
            Dialect::MySql => {
                // DDL commits implicitly on MySQL, so a transaction would not
                // help; a named lock serialises the runs. The connection is
                // detached from the pool: if this future is dropped, closing
                // the socket releases the lock.
                let mut conn = self.pool.acquire().await.map_err(|e| self.err(e))?.detach();
                let got: Option<i64> = Self::q("SELECT GET_LOCK('sessionkit_migrations', 60)")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| self.err(e))?
                    .try_get(0)
                    .map_err(Error::decode)?;
                if got != Some(1) {
                    return Err(Error::Timeout(Some(Duration::from_secs(60))));
                }
                let result = self.migrate_on(&mut conn).await;
                let _ = Self::q("SELECT RELEASE_LOCK('sessionkit_migrations')")
                    .execute(&mut conn)
                    .await;
                let _ = sqlx::Connection::close(conn).await;
                result
            }
        }
    }

    async fn migrate_on(&self, conn: &mut DB::Connection) -> Result<()> {
        let sql = &*self.sql;
        if let Some(create_schema) = &sql.create_schema {
            Self::q(create_schema)
                .execute(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
        }
        Self::q(&sql.create_migrations_table)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        let applied: HashSet<i64> = Self::q(&sql.applied_migrations)
            .bind(sql.table.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()
            .map_err(Error::decode)?;
        for migration in &sql.migrations {
            if applied.contains(&migration.version) {
                continue;
            }
            for statement in &migration.statements {
                Self::q(statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            Self::q(&sql.record_migration)
                .bind(sql.table.as_str())
                .bind(migration.version)
                .bind(Timestamp::now().as_millis())
                .execute(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
            tracing::info!(table = %sql.table, version = migration.version, "sessionkit-sql: applied schema migration");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let id = SessionId::generate();
        let c = cursor_after(id.as_str().as_bytes());
        assert_eq!(c.as_str(), id.as_str());
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            assert_eq!(
                parse_cursor(dialect, c.as_str()).unwrap(),
                id.as_str().as_bytes()
            );
            assert_eq!(parse_cursor(dialect, "").unwrap(), b"");
        }
        let raw = b"not-a-session-id";
        let c = cursor_after(raw);
        assert_eq!(c.as_str(), "~6e6f742d612d73657373696f6e2d6964");
        assert_eq!(parse_cursor(Dialect::MySql, c.as_str()).unwrap(), raw);
        let odd = b"AB\xff\x00";
        let c = cursor_after(odd);
        assert_eq!(parse_cursor(Dialect::Sqlite, c.as_str()).unwrap(), odd);
        assert!(parse_cursor(Dialect::Postgres, c.as_str()).is_err());
        assert!(parse_cursor(Dialect::MySql, c.as_str()).is_err());
    }

    #[test]
    fn malformed_cursors_are_decode_errors() {
        for text in ["x", "~", "~a", "~AB", "~g0", "~ 0", "AAAA", "' OR 1=1 --"] {
            assert!(
                matches!(parse_cursor(Dialect::Sqlite, text), Err(Error::Decode(_))),
                "{text:?}"
            );
        }
    }
}
