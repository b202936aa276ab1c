//! The store logic, written once, generic over the sqlx database driver.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sessionkit_core::{Error, Record, Result, SessionId, Timestamp};
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
    pub(crate) batch_size: u32,
    pub(crate) statement_timeout: Option<Duration>,
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Config(format!("version {v} does not fit in a BIGINT")))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::decode(format!("negative version {v} in the database")))
}

/// How long `save` retries when its compare-and-swap missed but the
/// follow-up read saw the expected version (a concurrent re-create between
/// the two statements).
const SAVE_ATTEMPTS: usize = 3;

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
    usize: ColumnIndex<DB::Row>,
{
    fn err(&self, e: sqlx::Error) -> Error {
        error::map(DB::DIALECT, self.statement_timeout, e)
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

    async fn execute(&self, query: sqlx::query::Query<'static, DB, DB::Arguments>) -> Result<u64> {
        query
            .execute(&self.pool)
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

    pub(crate) async fn create(&self, r: &Record) -> Result<()> {
        let now = Timestamp::now().as_millis();
        match DB::DIALECT {
            Dialect::Postgres | Dialect::Sqlite => {
                let q = self.insert_query(&self.sql.create, r)?.bind(now);
                match self.execute(q).await? {
                    0 => Err(Error::Conflict),
                    _ => Ok(()),
                }
            }
            Dialect::MySql => {
                // Plain insert; on a duplicate key, reclaim the ID from an
                // expired row (if it is one) and insert once more.
                for attempt in 0..2 {
                    let q = self.insert_query(&self.sql.create, r)?;
                    match q.execute(&self.pool).await {
                        Ok(_) => return Ok(()),
                        Err(e) if error::is_unique_violation(&e) => {
                            if attempt == 1 {
                                return Err(Error::Conflict);
                            }
                            let reclaim = Self::qs(&self.sql.reclaim_expired)
                                .bind(r.id.as_str())
                                .bind(now);
                            if self.execute(reclaim).await? == 0 {
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
        let now = Timestamp::now().as_millis();
        let row = Self::qs(&self.sql.load)
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let decode = |e: sqlx::Error| Error::decode(e);
        Ok(Some(Record {
            id: *id,
            subject: row.try_get::<Option<String>, _>(0).map_err(decode)?,
            payload: Bytes::from(row.try_get::<Vec<u8>, _>(1).map_err(decode)?),
            version: to_u64(row.try_get::<i64, _>(2).map_err(decode)?)?,
            created_at: Timestamp::from_millis(row.try_get::<i64, _>(3).map_err(decode)?),
            expires_at: Timestamp::from_millis(row.try_get::<i64, _>(4).map_err(decode)?),
        }))
    }

    pub(crate) async fn save(&self, r: &Record) -> Result<u64> {
        // A version beyond BIGINT (or whose successor is) cannot be stored,
        // so it cannot match either: only the follow-up read decides.
        let versions = i64::try_from(r.version)
            .ok()
            .and_then(|v| Some((v, v.checked_add(1)?)));
        for _ in 0..SAVE_ATTEMPTS {
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
                if self.execute(q).await? > 0 {
                    return to_u64(next);
                }
            }
            // Nothing matched: is there a live row at all?
            let live: Option<i64> = Self::qs(&self.sql.live_version)
                .bind(r.id.as_str())
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?
                .map(|row| row.try_get::<i64, _>(0))
                .transpose()
                .map_err(Error::decode)?;
            match (live, versions) {
                (None, _) => return Err(Error::NotFound),
                // The row changed between the two statements and now has
                // the expected version again: try the update once more.
                (Some(v), Some((expected, _))) if v == expected => continue,
                (Some(_), _) => return Err(Error::Conflict),
            }
        }
        Err(Error::Conflict)
    }

    pub(crate) async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        let q = Self::qs(&self.sql.touch)
            .bind(expires_at.as_millis())
            .bind(id.as_str())
            .bind(Timestamp::now().as_millis());
        match self.execute(q).await? {
            0 => Err(Error::NotFound),
            _ => Ok(()),
        }
    }

    pub(crate) async fn delete(&self, id: &SessionId) -> Result<bool> {
        let q = Self::qs(&self.sql.delete)
            .bind(id.as_str())
            .bind(Timestamp::now().as_millis());
        Ok(self.execute(q).await? > 0)
    }

    pub(crate) async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        let rows = Self::qs(&self.sql.list_subject)
            .bind(subject)
            .bind(Timestamp::now().as_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let decode = |e: sqlx::Error| Error::decode(e);
            let id: String = row.try_get(0).map_err(decode)?;
            out.push(Record {
                id: SessionId::parse(&id).map_err(Error::decode)?,
                subject: row.try_get::<Option<String>, _>(1).map_err(decode)?,
                payload: Bytes::from(row.try_get::<Vec<u8>, _>(2).map_err(decode)?),
                version: to_u64(row.try_get::<i64, _>(3).map_err(decode)?)?,
                created_at: Timestamp::from_millis(row.try_get::<i64, _>(4).map_err(decode)?),
                expires_at: Timestamp::from_millis(row.try_get::<i64, _>(5).map_err(decode)?),
            });
        }
        Ok(out)
    }

    pub(crate) async fn delete_subject(&self, subject: &str) -> Result<u64> {
        let q = Self::qs(&self.sql.delete_subject)
            .bind(subject)
            .bind(Timestamp::now().as_millis());
        self.execute(q).await
    }

    pub(crate) async fn delete_expired(&self) -> Result<u64> {
        // One instant for the whole purge: rows that expire while it runs
        // are left for the next one, so the loop always ends.
        let now = Timestamp::now().as_millis();
        let batch = i64::from(self.batch_size.max(1));
        let mut total = 0u64;
        loop {
            let q = Self::qs(&self.sql.delete_expired_batch)
                .bind(now)
                .bind(batch);
            let n = self.execute(q).await?;
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
                    return Err(Error::Timeout(Duration::from_secs(60)));
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
