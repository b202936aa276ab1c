//! Building a [`SqlStore`]: table, pool and timeout settings.

use std::num::NonZeroU32;
use std::time::Duration;

#[allow(unused_imports)]
use sessionkit_core::{Error, Result};

#[allow(unused_imports)]
use crate::{Dialect, SqlStore, dialect::Sql};

/// Settings for a [`SqlStore`], then one of the `connect*` / `with_*_pool`
/// methods to build it.
///
/// The setters store what they are given; building checks it, before
/// connecting, and fails with [`Error::Config`] naming the setting, the
/// value given and the range allowed. Nothing is rounded or clamped into
/// range.
///
/// | setting | allowed |
/// |---|---|
/// | [`max_connections`](Self::max_connections) | at least 1 |
/// | [`min_connections`](Self::min_connections) | at most `max_connections` |
/// | [`acquire_timeout`](Self::acquire_timeout), [`call_timeout`](Self::call_timeout), [`idle_timeout`](Self::idle_timeout), [`statement_timeout`](Self::statement_timeout) | at least 1 ms |
/// | [`cleanup_batch_size`](Self::cleanup_batch_size) | at least 1 |
/// | [`table`](Self::table), [`schema`](Self::schema) | [`validate_identifier`](crate::validate_identifier) |
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo() -> sessionkit_core::Result<()> {
/// use std::time::Duration;
/// use sessionkit_sql::SqlStore;
///
/// let store = SqlStore::builder()
///     .table("web_sessions")
///     .schema("auth")
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(2))
///     .statement_timeout(Duration::from_secs(3))
///     .call_timeout(Duration::from_secs(4))
///     .cleanup_batch_size(500)
///     .connect("postgres://postgres@127.0.0.1:5432/test")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqlStoreOptions {
    table: String,
    schema: Option<String>,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    statement_timeout: Option<Duration>,
    call_timeout: Duration,
    test_before_acquire: bool,
    batch_size: u32,
    migrate: bool,
}

/// The default upper bound of one store call.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for SqlStoreOptions {
    fn default() -> Self {
        SqlStoreOptions {
            table: "sessions".to_owned(),
            schema: None,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            statement_timeout: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            test_before_acquire: true,
            batch_size: 1000,
            migrate: true,
        }
    }
}

impl SqlStoreOptions {
    /// The defaults: table `sessions`, no schema, 10 connections, 5 s
    /// acquire timeout, 10 min idle timeout, no statement timeout, 5 s call
    /// timeout, cleanup batches of 1000 rows, migrations run when the store
    /// is built.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table name; checked by [`validate_identifier`](crate::validate_identifier)
    /// when the store is built.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// A PostgreSQL schema for the table (created by the migrations if
    /// missing). Building fails on other databases.
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = Some(name.into());
        self
    }

    /// Largest number of pooled connections: at least 1 (default 10;
    /// forced to 1 for an in-memory SQLite database).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Connections kept open even when idle: at most `max_connections`
    /// (default 0).
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long a call waits for a free connection before failing with a
    /// transient backend error: at least 1 ms (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Idle connections above `min_connections` are closed after this long:
    /// at least 1 ms (default 10 min; `None` keeps them).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The longest one statement may run; the server cancels it after that
    /// and the call fails with [`Error::Timeout`]. Applied per connection:
    /// PostgreSQL `statement_timeout`, MariaDB `max_statement_time` (MySQL:
    /// `max_execution_time`, which covers reads only), SQLite busy timeout
    /// (how long to wait for a lock). Not applied to a pool you pass in.
    ///
    /// At least 1 ms; the servers count whole milliseconds, so a fraction
    /// of a millisecond beyond that is dropped (1.9 ms is applied as 1 ms).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// The upper bound of one store call, everything included: waiting for
    /// a pooled connection, every statement the call runs, every round trip
    /// (default 5 s). Past it the call fails with
    /// [`Error::Timeout`]`(Some(timeout))`, so a server that stopped
    /// answering (a silent network partition, a paused VM) cannot hang a
    /// request. Whether a write that timed out was applied is unknown; the
    /// connection it ran on is closed, not reused. `delete_expired` applies
    /// it to each batch, not to the whole purge; migrations are not bounded
    /// by it.
    ///
    /// Always on: a duration shorter than 1 ms is rejected when the store is
    /// built ([`Error::Config`]); for no practical bound, pass a very large
    /// one.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Whether a pooled connection is pinged before each use (default
    /// `true`, as in sqlx). Turning it off saves one round trip per call;
    /// the price is that a connection which died while idle (server
    /// restart, idle timeout in a firewall) fails one call with a transient
    /// error before the pool replaces it.
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.test_before_acquire = test;
        self
    }

    /// Rows deleted per statement by `delete_expired`: at least 1 (default
    /// 1000).
    pub fn cleanup_batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows;
        self
    }

    /// Whether building the store runs the migrations (default `true`).
    /// When `false`, call [`SqlStore::migrate`] before use.
    pub fn migrate(mut self, run: bool) -> Self {
        self.migrate = run;
        self
    }

    /// Connects to the database an URL names (`sqlite:…`, `postgres://…`,
    /// `mysql://…` / `mariadb://…`); the matching cargo feature must be on.
    /// A SQLite file is created if missing.
    pub async fn connect(self, url: &str) -> Result<SqlStore> {
        self.validate()?;
        let dialect = Dialect::from_url(url)
            .ok_or_else(|| Error::Config("unsupported database URL scheme".to_owned()))?;
        match dialect {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => {
                let opts: sqlx::sqlite::SqliteConnectOptions = url
                    .parse()
                    .map_err(|e| Error::Config(format!("bad SQLite URL: {e}")))?;
                self.connect_sqlite(opts.create_if_missing(true)).await
            }
            #[cfg(feature = "postgres")]
            Dialect::Postgres => {
                let opts: sqlx::postgres::PgConnectOptions = url
                    .parse()
                    .map_err(|e| Error::Config(format!("bad PostgreSQL URL: {e}")))?;
                self.connect_postgres(opts).await
            }
            #[cfg(feature = "mysql")]
            Dialect::MySql => {
                let opts: sqlx::mysql::MySqlConnectOptions = url
                    .parse()
                    .map_err(|e| Error::Config(format!("bad MySQL URL: {e}")))?;
                self.connect_mysql(opts).await
            }
            #[allow(unreachable_patterns)]
            other => Err(Error::Config(format!(
                "sessionkit-sql was built without the cargo feature for {other:?}"
            ))),
        }
    }

    #[allow(dead_code)]
    fn pool_options<DB: sqlx::Database>(&self) -> sqlx::pool::PoolOptions<DB> {
        sqlx::pool::PoolOptions::<DB>::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout)
            .test_before_acquire(self.test_before_acquire)
    }

    /// Checks every setting, before connecting.
    fn validate(&self) -> Result<()> {
        at_least_one("max_connections", self.max_connections)?;
        if self.min_connections > self.max_connections {
            return Err(invalid(
                "min_connections",
                &format!("at most max_connections ({})", self.max_connections),
                self.min_connections,
            ));
        }
        at_least_one("cleanup_batch_size", self.batch_size)?;
        at_least_a_millisecond("acquire_timeout", self.acquire_timeout)?;
        at_least_a_millisecond("call_timeout", self.call_timeout)?;
        if let Some(timeout) = self.idle_timeout {
            at_least_a_millisecond("idle_timeout", timeout)?;
        }
        if let Some(timeout) = self.statement_timeout {
            at_least_a_millisecond("statement_timeout", timeout)?;
        }
        crate::validate_identifier(&self.table)?;
        if let Some(schema) = &self.schema {
            crate::validate_identifier(schema)?;
        }
        Ok(())
    }

    /// Builds the store on a pool. `server_timeout` is the statement limit
    /// the server enforces on its connections, when known.
    #[allow(dead_code)]
    async fn finish<DB>(
        self,
        pool: sqlx::Pool<DB>,
        dialect: Dialect,
        server_timeout: Option<Duration>,
    ) -> Result<SqlStore>
    where
        DB: sqlx::Database,
        crate::Inner: From<std::sync::Arc<crate::core::Core<DB>>>,
    {
        let sql = Sql::new(dialect, &self.table, self.schema.as_deref())?;
        let core = crate::core::Core {
            pool,
            sql: std::sync::Arc::new(sql),
            batch_size: at_least_one("cleanup_batch_size", self.batch_size)?,
            server_timeout,
            call_timeout: self.call_timeout,
        };
        let store = SqlStore {
            inner: crate::Inner::from(std::sync::Arc::new(core)),
        };
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Connects to SQLite with these connection options. An in-memory
    /// database gets a pool of exactly one connection that is never closed
    /// (the database lives as long as it).
    #[cfg(feature = "sqlite")]
    pub async fn connect_sqlite(
        self,
        mut opts: sqlx::sqlite::SqliteConnectOptions,
    ) -> Result<SqlStore> {
        self.validate()?;
        let name = opts.get_filename().to_string_lossy().into_owned();
        let in_memory = name.starts_with("file:sqlx-in-memory") || name == ":memory:";
        if let Some(t) = self.statement_timeout {
            opts = opts.busy_timeout(t);
        }
        let mut pool = self.pool_options::<sqlx::Sqlite>();
        if in_memory {
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = pool
            .connect_with(opts)
            .await
            .map_err(|e| self.connect_error(Dialect::Sqlite, e))?;
        self.finish_sqlite(pool).await
    }

    /// Connects to PostgreSQL with these connection options.
    #[cfg(feature = "postgres")]
    pub async fn connect_postgres(
        self,
        mut opts: sqlx::postgres::PgConnectOptions,
    ) -> Result<SqlStore> {
        self.validate()?;
        if let Some(t) = self.statement_timeout {
            opts = opts.options([("statement_timeout", format!("{}ms", t.as_millis()))]);
        }
        let pool = self
            .pool_options::<sqlx::Postgres>()
            .connect_with(opts)
            .await
            .map_err(|e| self.connect_error(Dialect::Postgres, e))?;
        let applied = self.statement_timeout;
        self.finish(pool, Dialect::Postgres, applied).await
    }

    /// Connects to MySQL or MariaDB with these connection options.
    #[cfg(feature = "mysql")]
    pub async fn connect_mysql(self, opts: sqlx::mysql::MySqlConnectOptions) -> Result<SqlStore> {
        self.validate()?;
        let mut pool = self.pool_options::<sqlx::MySql>();
        if let Some(t) = self.statement_timeout {
            // Whole milliseconds, as on PostgreSQL (at least 1: validated).
            let millis = t.as_millis();
            let secs = format!("{}.{:03}", millis / 1000, millis % 1000);
            pool = pool.after_connect(move |conn, _meta| {
                let mariadb = format!("SET SESSION max_statement_time = {secs}");
                let mysql = format!("SET SESSION max_execution_time = {millis}");
                Box::pin(async move {
                    use sqlx::{AssertSqlSafe, Executor};
                    // MariaDB first; MySQL rejects the variable and has its own.
                    if conn.execute(AssertSqlSafe(mariadb)).await.is_err() {
                        conn.execute(AssertSqlSafe(mysql)).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(opts)
            .await
            .map_err(|e| self.connect_error(Dialect::MySql, e))?;
        let applied = self.statement_timeout;
        self.finish(pool, Dialect::MySql, applied).await
    }

    /// Uses an existing SQLite pool. The pool settings and the statement
    /// timeout of these options are not applied to it; the call timeout is.
    #[cfg(feature = "sqlite")]
    pub async fn with_sqlite_pool(self, pool: sqlx::SqlitePool) -> Result<SqlStore> {
        self.validate()?;
        self.finish_sqlite(pool).await
    }

    /// Uses an existing PostgreSQL pool. The pool settings and the
    /// statement timeout of these options are not applied to it; the call
    /// timeout is.
    #[cfg(feature = "postgres")]
    pub async fn with_postgres_pool(self, pool: sqlx::PgPool) -> Result<SqlStore> {
        self.validate()?;
        self.finish(pool, Dialect::Postgres, None).await
    }

    /// Uses an existing MySQL/MariaDB pool. The pool settings and the
    /// statement timeout of these options are not applied to it; the call
    /// timeout is.
    #[cfg(feature = "mysql")]
    pub async fn with_mysql_pool(self, pool: sqlx::MySqlPool) -> Result<SqlStore> {
        self.validate()?;
        self.finish(pool, Dialect::MySql, None).await
    }

    /// Builds a SQLite store, asking the database for the busy timeout its
    /// connections use (the limit a `SQLITE_BUSY` error reports).
    #[cfg(feature = "sqlite")]
    async fn finish_sqlite(self, pool: sqlx::SqlitePool) -> Result<SqlStore> {
        let millis: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&pool)
            .await
            .map_err(|e| self.connect_error(Dialect::Sqlite, e))?;
        let busy = u64::try_from(millis)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        self.finish(pool, Dialect::Sqlite, busy).await
    }

    #[allow(dead_code)]
    fn connect_error(&self, dialect: Dialect, e: sqlx::Error) -> Error {
        crate::error::map(dialect, self.statement_timeout, e)
    }
}

/// The error for a setting out of its range.
fn invalid(setting: &str, rule: &str, got: impl std::fmt::Debug) -> Error {
    Error::Config(format!("SqlStore: {setting} must be {rule} (got {got:?})"))
}

fn at_least_one(setting: &str, value: u32) -> Result<NonZeroU32> {
    NonZeroU32::new(value).ok_or_else(|| invalid(setting, "at least 1", value))
}

fn at_least_a_millisecond(setting: &str, value: Duration) -> Result<()> {
    if value < Duration::from_millis(1) {
        return Err(invalid(setting, "at least 1ms", value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(options: SqlStoreOptions) -> String {
        match options.validate() {
            Err(Error::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn out_of_range_settings_are_refused_not_adjusted() {
        let o = SqlStoreOptions::new;
        assert_eq!(
            config_error(o().max_connections(0)),
            "SqlStore: max_connections must be at least 1 (got 0)"
        );
        assert_eq!(
            config_error(o().max_connections(2).min_connections(3)),
            "SqlStore: min_connections must be at most max_connections (2) (got 3)"
        );
        assert_eq!(
            config_error(o().cleanup_batch_size(0)),
            "SqlStore: cleanup_batch_size must be at least 1 (got 0)"
        );
        let short = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(999),
        ];
        for t in short {
            for (setting, options) in [
                ("acquire_timeout", o().acquire_timeout(t)),
                ("call_timeout", o().call_timeout(t)),
                ("idle_timeout", o().idle_timeout(Some(t))),
                ("statement_timeout", o().statement_timeout(t)),
            ] {
                assert_eq!(
                    config_error(options),
                    format!("SqlStore: {setting} must be at least 1ms (got {t:?})")
                );
            }
        }
    }

    #[test]
    fn boundary_settings_are_accepted() {
        let ms = Duration::from_millis(1);
        let options = SqlStoreOptions::new()
            .max_connections(1)
            .min_connections(1)
            .cleanup_batch_size(1)
            .acquire_timeout(ms)
            .call_timeout(ms)
            .idle_timeout(Some(ms))
            .statement_timeout(ms);
        options.validate().expect("the smallest values in range");
        let options = SqlStoreOptions::new()
            .max_connections(u32::MAX)
            .min_connections(0)
            .cleanup_batch_size(u32::MAX)
            .idle_timeout(None);
        options.validate().expect("the largest values in range");
        assert_eq!(options.max_connections, u32::MAX);
        assert_eq!(options.batch_size, u32::MAX);
        SqlStoreOptions::new()
            .validate()
            .expect("the defaults are in range");
    }
}
