//! Shared helpers of the sessionkit-sql integration tests: server URLs,
//! random table names, and a store wrapper that drops its table when the
//! test is done.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessionkit_core::{
    Record, Result, ScanCursor, ScanPage, SessionId, SessionStore, Timestamp, async_trait,
};
use sessionkit_sql::{SqlStore, SqlStoreOptions, sqlx};

pub(crate) const POSTGRES_ENV: &str = "SESSIONKIT_POSTGRES_URL";
pub(crate) const MYSQL_ENV: &str = "SESSIONKIT_MYSQL_URL";

pub(crate) fn postgres_url() -> String {
    std::env::var(POSTGRES_ENV).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub(crate) fn mysql_url() -> String {
    std::env::var(MYSQL_ENV).unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// An error with its whole source chain, for skip messages.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Test tables are named `skt_<unix seconds>_<random hex>`: unique per call,
/// and old enough ones (left by a crashed run) can be recognised and reaped.
pub(crate) const TABLE_PREFIX: &str = "skt_";

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let raw = SessionId::generate().to_bytes();
    raw.iter().take(bytes).map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn random_table() -> String {
    format!("{TABLE_PREFIX}{}_{}", unix_secs(), random_hex(8))
}

/// Whether a test table name is older than an hour (a leftover).
fn is_stale(table: &str) -> bool {
    table
        .strip_prefix(TABLE_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|created| created + 3600 < unix_secs())
}

/// Runs `f` on a fresh current-thread runtime in its own thread: for cleanup
/// from `Drop`, where the test's runtime may be shutting down.
fn run_detached<F>(f: F)
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), f()).await;
            });
        }
    })
    .join();
}

/// What to remove when a [`Scoped`] store is dropped.
pub(crate) enum Cleanup {
    Nothing,
    SqliteFile(PathBuf),
    Postgres { url: String, table: String },
    MySql { url: String, table: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Nothing => {}
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::Postgres { url, table } => {
                let (url, table) = (url.clone(), table.clone());
                run_detached(move || {
                    Box::pin(async move {
                        if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                            drop_postgres_table(&pool, &table).await;
                            pool.close().await;
                        }
                    })
                })
            }
            Cleanup::MySql { url, table } => {
                let (url, table) = (url.clone(), table.clone());
                run_detached(move || {
                    Box::pin(async move {
                        if let Ok(pool) = sqlx::MySqlPool::connect(&url).await {
                            drop_mysql_table(&pool, &table).await;
                            pool.close().await;
                        }
                    })
                })
            }
        }
    }
}

pub(crate) async fn drop_postgres_table(pool: &sqlx::PgPool, table: &str) {
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS \"{table}\""
    )))
    .execute(pool)
    .await;
    let _ = sqlx::query("DELETE FROM sessionkit_migrations WHERE table_name = $1")
        .bind(table)
        .execute(pool)
        .await;
}

pub(crate) async fn drop_mysql_table(pool: &sqlx::MySqlPool, table: &str) {
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS `{table}`"
    )))
    .execute(pool)
    .await;
    let _ = sqlx::query("DELETE FROM sessionkit_migrations WHERE table_name = ?")
        .bind(table)
        .execute(pool)
        .await;
}

/// Drops test tables left over (older than an hour) by runs that crashed.
async fn reap_postgres(pool: &sqlx::PgPool) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'skt\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for t in tables.iter().filter(|t| is_stale(t)) {
        drop_postgres_table(pool, t).await;
    }
}

async fn reap_mysql(pool: &sqlx::MySqlPool) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'skt\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for t in tables.iter().filter(|t| is_stale(t)) {
        drop_mysql_table(pool, t).await;
    }
}

/// A store whose table (or file) is removed when it is dropped.
pub(crate) struct Scoped {
    pub store: SqlStore,
    _cleanup: Cleanup,
}

impl Scoped {
    pub(crate) fn new(store: SqlStore, cleanup: Cleanup) -> Self {
        Scoped {
            store,
            _cleanup: cleanup,
        }
    }

    /// A store whose table another `Scoped` cleans up.
    pub(crate) fn unscoped(store: SqlStore) -> Self {
        Scoped::new(store, Cleanup::Nothing)
    }
}

impl std::ops::Deref for Scoped {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

/// Test-friendly options: small pool, generous acquire timeout.
pub(crate) fn options(table: &str) -> SqlStoreOptions {
    SqlStore::builder()
        .table(table)
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(20))
}

pub(crate) fn sqlite_path() -> PathBuf {
    std::env::temp_dir().join(format!("sessionkit-sql-test-{}.db", random_hex(8)))
}

pub(crate) fn sqlite_file_options(path: &std::path::Path) -> sqlx::sqlite::SqliteConnectOptions {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // Durability is not under test: skip the fsync per commit.
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
}

pub(crate) async fn sqlite_file_store() -> Option<Scoped> {
    let path = sqlite_path();
    let store = options(&random_table())
        .connect_sqlite(sqlite_file_options(&path))
        .await
        .expect("open a SQLite file in the temp dir");
    Some(Scoped {
        store,
        _cleanup: Cleanup::SqliteFile(path),
    })
}

pub(crate) async fn sqlite_memory_store() -> Option<Scoped> {
    let store = options(&random_table())
        .connect("sqlite::memory:")
        .await
        .expect("open an in-memory SQLite database");
    Some(Scoped {
        store,
        _cleanup: Cleanup::Nothing,
    })
}

/// Why a server was found unreachable, remembered so that the following
/// tests of this process skip at once.
static POSTGRES_DOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static MYSQL_DOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// One plain connection attempt (5 s at most), so that a missing server is
/// reported with its real cause at once instead of after the pool's
/// acquire timeout.
async fn probe<C: sqlx::Connection>(
    url: &str,
    down: &std::sync::OnceLock<String>,
) -> Option<String> {
    if let Some(why) = down.get() {
        return Some(why.clone());
    }
    let why = match tokio::time::timeout(Duration::from_secs(5), C::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return None;
        }
        Ok(Err(e)) => chain(&e),
        Err(_) => "no answer within 5 s".to_owned(),
    };
    Some(down.get_or_init(|| why).clone())
}

pub(crate) async fn postgres_store_with(opts: SqlStoreOptions, table: &str) -> Option<Scoped> {
    let url = postgres_url();
    if let Some(why) = probe::<sqlx::PgConnection>(&url, &POSTGRES_DOWN).await {
        return sessionkit_testkit::skip(&format!("PostgreSQL at {url}"), why);
    }
    match opts.connect(&url).await {
        Ok(store) => {
            if let Some(pool) = store.postgres_pool() {
                reap_postgres(pool).await;
            }
            Some(Scoped {
                store,
                _cleanup: Cleanup::Postgres {
                    url,
                    table: table.to_owned(),
                },
            })
        }
        Err(e) => sessionkit_testkit::skip(&format!("PostgreSQL at {url}"), chain(&e)),
    }
}

pub(crate) async fn postgres_store() -> Option<Scoped> {
    let table = random_table();
    postgres_store_with(options(&table), &table).await
}

pub(crate) async fn mysql_store_with(opts: SqlStoreOptions, table: &str) -> Option<Scoped> {
    let url = mysql_url();
    if let Some(why) = probe::<sqlx::MySqlConnection>(&url, &MYSQL_DOWN).await {
        return sessionkit_testkit::skip(&format!("MariaDB/MySQL at {url}"), why);
    }
    match opts.connect(&url).await {
        Ok(store) => {
            if let Some(pool) = store.mysql_pool() {
                reap_mysql(pool).await;
            }
            Some(Scoped {
                store,
                _cleanup: Cleanup::MySql {
                    url,
                    table: table.to_owned(),
                },
            })
        }
        Err(e) => sessionkit_testkit::skip(&format!("MariaDB/MySQL at {url}"), chain(&e)),
    }
}

pub(crate) async fn mysql_store() -> Option<Scoped> {
    let table = random_table();
    mysql_store_with(options(&table), &table).await
}

#[async_trait]
impl SessionStore for Scoped {
    async fn create(&self, r: &Record) -> Result<()> {
        self.store.create(r).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.store.load(id).await
    }
    async fn save(&self, r: &Record) -> Result<u64> {
        self.store.save(r).await
    }
    async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
        self.store.touch(id, t).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.store.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        self.store.compare_and_delete(id, version).await
    }
    async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
        self.store.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> Result<u64> {
        self.store.delete_subject(s).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.store.delete_expired().await
    }
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        self.store.load_fresh(id).await
    }
    fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }
    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        self.store.scan(cursor, limit).await
    }
}
