//! The SQL store at the edges (issue 13): compare-and-delete, deadlock
//! victims, two processes hammering one session, a server that stops
//! answering (call timeout), corrupt rows, and `scan` (past corrupt rows,
//! malformed cursors, resumed by another instance); on SQLite, PostgreSQL
//! and MariaDB.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "mysql"))]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Scoped;
use sessionkit_core::{
    Error, Record, Result, ScanCursor, SessionId, SessionManager, SessionStore, Timestamp,
    async_trait,
};
use sessionkit_sql::{Dialect, SqlStore, SqlStoreOptions, sqlx};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Barrier, watch};

const HOUR: Duration = Duration::from_secs(3600);

fn record(subject: Option<&str>, expires_at: Timestamp) -> Record {
    let now = Timestamp::now();
    Record::new(
        SessionId::generate(),
        subject.map(str::to_owned),
        Bytes::from_static(b"payload"),
        now,
        expires_at,
    )
}

fn unique_subject(tag: &str) -> String {
    format!("{tag}-{}", common::random_hex(6))
}

// --------------------------------------------------------- compare_and_delete

async fn compare_and_delete_semantics(store: Scoped) {
    let subject = unique_subject("cad");
    let now = Timestamp::now();

    // Stale version: Conflict, nothing removed.
    let mut r = record(Some(&subject), now + HOUR);
    store.create(&r).await.expect("create");
    r.version = store.save(&r).await.expect("save");
    assert_eq!(r.version, 2);
    assert!(matches!(
        store.compare_and_delete(&r.id, 1).await,
        Err(Error::Conflict)
    ));
    // A version no BIGINT holds cannot match a live row either.
    assert!(matches!(
        store.compare_and_delete(&r.id, u64::MAX).await,
        Err(Error::Conflict)
    ));
    assert_eq!(store.load(&r.id).await.expect("load").as_ref(), Some(&r));

    // Current version: removed, and gone from the subject's list.
    store
        .compare_and_delete(&r.id, 2)
        .await
        .expect("compare_and_delete of the current version");
    assert_eq!(store.load(&r.id).await.expect("load"), None);
    assert!(store.list_subject(&subject).await.expect("list").is_empty());
    // Again: NotFound.
    assert!(matches!(
        store.compare_and_delete(&r.id, 2).await,
        Err(Error::NotFound)
    ));
    // Never existed, or only an expired row: NotFound, and the expired row
    // is not removed by it (it is no business of compare_and_delete).
    assert!(matches!(
        store.compare_and_delete(&SessionId::generate(), 1).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store
            .compare_and_delete(&SessionId::generate(), u64::MAX)
            .await,
        Err(Error::NotFound)
    ));
    let expired = record(Some(&subject), now - HOUR);
    store.create(&expired).await.expect("create expired");
    assert!(matches!(
        store.compare_and_delete(&expired.id, 1).await,
        Err(Error::NotFound)
    ));

    // Of many concurrent compare-and-deletes of one version, exactly one
    // wins; the others see NotFound.
    for _ in 0..5 {
        let r = record(Some(&subject), Timestamp::now() + HOUR);
        store.create(&r).await.expect("create");
        let barrier = Arc::new(Barrier::new(8));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, barrier, id) = (store.store.clone(), Arc::clone(&barrier), r.id);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.compare_and_delete(&id, 1).await
            }));
        }
        let mut won = 0;
        for task in tasks {
            match task.await.expect("join") {
                Ok(()) => won += 1,
                Err(Error::NotFound) => {}
                Err(e) => panic!("a losing compare_and_delete failed with {e:?}"),
            }
        }
        assert_eq!(won, 1, "exactly one compare_and_delete of one version wins");
        assert_eq!(store.load(&r.id).await.expect("load"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_delete_sqlite() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    compare_and_delete_semantics(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_delete_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    compare_and_delete_semantics(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_delete_mysql() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    compare_and_delete_semantics(store).await;
}

// ---------------------------------------------------------------- contention

/// A store that counts how often `save` came back aborted (a deadlock
/// victim or another rollback the manager then retried).
#[derive(Clone)]
struct Observed {
    inner: SqlStore,
    aborted: Arc<AtomicU64>,
}

#[async_trait]
impl SessionStore for Observed {
    async fn create(&self, r: &Record) -> Result<()> {
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> Result<u64> {
        let result = self.inner.save(r).await;
        if matches!(result, Err(Error::Aborted(_))) {
            self.aborted.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
    async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
        self.inner.touch(id, t).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        self.inner.compare_and_delete(id, version).await
    }
    async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> Result<u64> {
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }
}

/// Tasks per instance: as in the report, two processes x 32 tasks.
const TASKS: u64 = 32;

/// Two store instances with separate pools (two processes) x 32 tasks, each
/// making `increments` `SessionManager::update` increments of ONE session.
/// No update may fail (deadlock victims are retried by the manager, and on
/// MariaDB the single-row statements must not deadlock at all), and the
/// counter must end at exactly the number of acknowledged increments. An
/// update that still ends in `Conflict` after the manager's retries (64
/// writers on one row can outlast them) is started again, as an
/// application would: that is the contract's "reload and retry", not a
/// failure.
async fn two_processes_hammer_one_session(a: SqlStore, b: SqlStore, increments: u64) {
    let dialect = a.dialect();
    let aborted = Arc::new(AtomicU64::new(0));
    let managers: Vec<SessionManager<u64>> = [a, b]
        .into_iter()
        .map(|inner| {
            let store = Observed {
                inner,
                aborted: Arc::clone(&aborted),
            };
            SessionManager::<u64>::stateful(store)
                .build()
                .expect("manager")
        })
        .collect();
    let session = managers[0]
        .create(Some(&unique_subject("contention")), 0)
        .await
        .expect("create the shared session");
    let ticket: Arc<str> = session.ticket().as_str().into();
    let acked = Arc::new(AtomicU64::new(0));
    let gave_up = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let barrier = Arc::new(Barrier::new(managers.len() * TASKS as usize));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for manager in &managers {
        for _ in 0..TASKS {
            let (manager, ticket, acked, gave_up, errors, barrier) = (
                manager.clone(),
                Arc::clone(&ticket),
                Arc::clone(&acked),
                Arc::clone(&gave_up),
                Arc::clone(&errors),
                Arc::clone(&barrier),
            );
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..increments {
                    for attempt in 1.. {
                        match manager.update(&ticket, |n| *n += 1).await {
                            Ok(_) => {
                                acked.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            // The manager's retry budget ran out: a
                            // "reload and retry" answer, not a failure.
                            Err(Error::Conflict) if attempt < 1000 => {
                                gave_up.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                errors.lock().expect("lock").push(format!("{e:?}"));
                                break;
                            }
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("a task panicked");
    }
    let acked = acked.load(Ordering::Relaxed);
    let errors = std::mem::take(&mut *errors.lock().expect("lock"));
    let aborted = aborted.load(Ordering::Relaxed);
    let retried: u64 = managers.iter().map(|m| m.stats().update_conflicts).sum();
    let gave_up = gave_up.load(Ordering::Relaxed);
    let total = 2 * TASKS * increments;
    eprintln!(
        "{dialect:?}: {acked} of {total} increments acknowledged in {:?}, {} errors, \
         {retried} manager retries, {aborted} aborted saves, {gave_up} updates started \
         again after Conflict",
        started.elapsed(),
        errors.len()
    );
    for manager in &managers {
        let value = *manager
            .load(&ticket)
            .await
            .expect("load")
            .expect("the session is live")
            .data();
        assert_eq!(
            value, acked,
            "{dialect:?}: the counter must equal the acknowledged increments"
        );
    }
    assert!(
        errors.is_empty(),
        "{dialect:?}: {} of {total} updates failed under contention, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(acked, total);
    if dialect == Dialect::MySql {
        assert_eq!(
            aborted, 0,
            "MariaDB: single-row statements lock by primary key only and cannot deadlock \
             each other; {aborted} saves were deadlock victims"
        );
    }
    let _ = managers[0].destroy(&ticket).await;
}

/// Pools big enough for the tasks of one instance.
fn contention_options(table: &str) -> SqlStoreOptions {
    common::options(table).max_connections(16)
}

async fn contention_sqlite(increments: u64) {
    let path = common::sqlite_path();
    let table = common::random_table();
    let mk = |migrate: bool| {
        let (path, table) = (path.clone(), table.clone());
        async move {
            contention_options(&table)
                .migrate(migrate)
                .connect_sqlite(common::sqlite_file_options(&path))
                .await
                .expect("sqlite")
        }
    };
    let a = Scoped::new(mk(true).await, common::Cleanup::SqliteFile(path.clone()));
    let b = mk(false).await;
    two_processes_hammer_one_session(a.store.clone(), b, increments).await;
}

async fn contention_postgres(increments: u64) {
    let table = common::random_table();
    let Some(a) = common::postgres_store_with(contention_options(&table), &table).await else {
        return;
    };
    let b = contention_options(&table)
        .migrate(false)
        .connect(&common::postgres_url())
        .await
        .expect("second pool");
    two_processes_hammer_one_session(a.store.clone(), b, increments).await;
}

async fn contention_mysql(increments: u64) {
    let table = common::random_table();
    let Some(a) = common::mysql_store_with(contention_options(&table), &table).await else {
        return;
    };
    let b = contention_options(&table)
        .migrate(false)
        .connect(&common::mysql_url())
        .await
        .expect("second pool");
    two_processes_hammer_one_session(a.store.clone(), b, increments).await;
}

/// Increments per task in CI: 2 x 32 x 5 = 320 updates per database, a few
/// seconds (the statements' plans are checked by EXPLAIN tests in sql.rs).
const CI_INCREMENTS: u64 = 5;
/// The volume of the original report: 2 x 32 x 200 = 12,800 updates.
const LONG_INCREMENTS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contention_two_processes_sqlite() {
    contention_sqlite(CI_INCREMENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contention_two_processes_postgres() {
    contention_postgres(CI_INCREMENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contention_two_processes_mysql() {
    contention_mysql(CI_INCREMENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: 12,800 updates per database; run with --ignored"]
async fn contention_two_processes_long_sqlite() {
    contention_sqlite(LONG_INCREMENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: 12,800 updates per database; run with --ignored"]
async fn contention_two_processes_long_postgres() {
    contention_postgres(LONG_INCREMENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: 12,800 updates per database; run with --ignored"]
async fn contention_two_processes_long_mysql() {
    contention_mysql(LONG_INCREMENTS).await;
}

// ---------------------------------------------------- deadlock victims

/// Polls `probe` every 20 ms for up to 10 s until it yields a value.
async fn poll<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two live rows of one subject, `a` before `b` in the order of every
/// index (ID, subject, expiry), so that a statement over both locks `a`
/// first.
async fn two_rows(store: &SqlStore, subject: &str) -> (Record, Record) {
    let now = Timestamp::now();
    let (mut a, mut b) = (
        record(Some(subject), now + HOUR),
        record(Some(subject), now + HOUR + HOUR),
    );
    if a.id.as_str() > b.id.as_str() {
        std::mem::swap(&mut a.id, &mut b.id);
    }
    store.create(&a).await.expect("create a");
    store.create(&b).await.expect("create b");
    (a, b)
}

/// A store statement that InnoDB picks as a deadlock victim (error 1213)
/// is `Error::Aborted`, and nothing of it was applied; `delete_subject`
/// (the one statement over many rows that can be a victim while callers
/// wait) runs it again, so the call succeeds. Ordered, not timed: another
/// transaction holds `b`; `delete_subject` deletes `a` and waits for `b`
/// (seen in INNODB_TRX); then the other transaction asks for `a`, closing
/// the cycle. It has changed more rows, so InnoDB rolls back the store's
/// statement, whose retry then waits until the holder rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "on MariaDB 10.11 here, in about a third of the test processes the \
            store's DELETE never shows as a lock wait in INNODB_TRX, so the \
            forced deadlock cannot be arranged; run with --ignored"]
async fn deadlock_victim_is_aborted_mysql() {
    let Some(probe) = common::mysql_store().await else {
        return;
    };
    let pool = sqlx::MySqlPool::connect(&common::mysql_url())
        .await
        .expect("second pool");
    let ballast = format!("{}_ballast", probe.table());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE `{ballast}` (n INT PRIMARY KEY) ENGINE=InnoDB"
    )))
    .execute(&pool)
    .await
    .expect("ballast table");
    let logged = Warnings::default();
    let _guard = tracing::subscriber::set_default(logged.clone());

    // A trial is conclusive when the store's DELETE is seen waiting for
    // `b` in INNODB_TRX. On this MariaDB, with some tables, it runs for
    // seconds without showing up there (in PROCESSLIST as "Updating", with
    // no InnoDB transaction listed), every time for that table; such a
    // trial proves nothing either way, so it is ended cleanly and another
    // one is run on a new table.
    let mut conclusive = false;
    for trial in 0..6 {
        let Some(store) = common::mysql_store().await else {
            return;
        };
        let t = store.table().to_owned();
        let subject = unique_subject("deadlock");
        let (a, b) = two_rows(&store, &subject).await;
        // A new pool (and so new connections) for the holder and the
        // probe of every trial.
        let pool = sqlx::MySqlPool::connect(&common::mysql_url())
            .await
            .expect("trial pool");
        let mut holder = pool.begin().await.expect("begin");
        // Weight: InnoDB rolls back the transaction that changed fewer rows.
        let values: Vec<String> = (1..=50).map(|n| format!("({n})")).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO `{ballast}` (n) VALUES {}",
            values.join(", ")
        )))
        .execute(&mut *holder)
        .await
        .expect("ballast rows");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM `{t}` WHERE id = ? FOR UPDATE"
        )))
        .bind(b.id.as_str())
        .execute(&mut *holder)
        .await
        .expect("lock b");

        // delete_subject runs on this thread (under the event collector)
        // while the holder closes the cycle.
        let holding = async {
            let pattern = format!("DELETE FROM `{t}`%");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            let mut waiting = false;
            while tokio::time::Instant::now() < deadline {
                waiting = sqlx::query_scalar::<_, i64>(
                    "SELECT 1 FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE ?",
                )
                .bind(&pattern)
                .fetch_optional(&pool)
                .await
                .expect("innodb_trx")
                .is_some();
                if waiting {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !waiting {
                holder.rollback().await.expect("rollback");
                return false;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT 1 FROM `{t}` WHERE id = ? FOR UPDATE"
            )))
            .bind(a.id.as_str())
            .execute(&mut *holder)
            .await
            .expect("the holder gets a once the store's statement is rolled back");
            // Nothing of the rolled-back statement was applied (its retry
            // now waits for the holder).
            assert_eq!(store.load(&a.id).await.expect("load a").as_ref(), Some(&a));
            assert_eq!(store.load(&b.id).await.expect("load b").as_ref(), Some(&b));
            holder.rollback().await.expect("rollback");
            true
        };
        let (result, seen) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(store.delete_subject(&subject), holding)
        })
        .await
        .expect("delete_subject returns");
        assert_eq!(
            result.expect("delete_subject runs a rolled-back statement again"),
            2
        );
        pool.close().await;
        if seen {
            conclusive = true;
            break;
        }
        eprintln!("trial {trial}: the DELETE never showed as waiting; trying again");
    }
    assert!(
        conclusive,
        "no trial saw the store's DELETE wait for the lock"
    );
    let retries = logged.at(tracing::Level::DEBUG);
    eprintln!("retries: {retries:#?}");
    assert!(
        retries
            .iter()
            .any(|e| e.contains("rolled back by the server") && e.contains("Deadlock")),
        "the deadlock victim was not seen as rolled back (Error::Aborted): {retries:#?}"
    );
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE `{ballast}`")))
        .execute(&pool)
        .await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_victim_is_aborted_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    let t = store.table().to_owned();
    let subject = unique_subject("deadlock");
    let (a, b) = two_rows(&store, &subject).await;
    let pool = sqlx::PgPool::connect(&common::postgres_url())
        .await
        .expect("second pool");
    let mut holder = pool.begin().await.expect("begin");
    // Needs a superuser; without one the store's earlier wait still makes
    // it the first to check.
    let _ = sqlx::query("SET LOCAL deadlock_timeout = '20s'")
        .execute(&mut *holder)
        .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM \"{t}\" WHERE id = $1 FOR UPDATE"
    )))
    .bind(b.id.as_str())
    .execute(&mut *holder)
    .await
    .expect("lock b");
    let logged = Warnings::default();
    let _guard = tracing::subscriber::set_default(logged.clone());
    let holding = async {
        let pattern = format!("DELETE FROM \"{t}\"%");
        poll("delete_subject to wait for b", || async {
            sqlx::query_scalar::<_, i32>(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND wait_event_type = 'Lock'",
            )
            .bind(&pattern)
            .fetch_optional(&pool)
            .await
            .expect("pg_stat_activity")
        })
        .await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM \"{t}\" WHERE id = $1 FOR UPDATE"
        )))
        .bind(a.id.as_str())
        .execute(&mut *holder)
        .await
        .expect("the holder gets a once the store's statement is rolled back");
        assert_eq!(store.load(&a.id).await.expect("load a").as_ref(), Some(&a));
        assert_eq!(store.load(&b.id).await.expect("load b").as_ref(), Some(&b));
        holder.rollback().await.expect("rollback");
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(store.delete_subject(&subject), holding)
    })
    .await
    .expect("delete_subject returns");
    assert_eq!(
        result.expect("delete_subject runs a rolled-back statement again"),
        2
    );
    let retries = logged.at(tracing::Level::DEBUG);
    eprintln!("retries: {retries:#?}");
    assert!(
        retries
            .iter()
            .any(|e| e.contains("rolled back by the server") && e.contains("deadlock")),
        "the deadlock victim was not seen as rolled back (Error::Aborted): {retries:#?}"
    );
    pool.close().await;
}

/// `delete_subject` on PostgreSQL is one atomic step even when a rotation
/// overtakes it. Ordered, not timed: a transaction deletes the old row (the
/// rotation's compare-and-delete, held open); `delete_subject` starts and
/// waits for that row (seen in pg_stat_activity); the rotation's new row is
/// inserted; the old row's deletion commits. The subject had a live
/// session at every moment of the `delete_subject` call, so it must remove
/// one and leave none. Under READ COMMITTED a plain `DELETE` skipped both
/// (the old row deleted under it, the new one newer than its snapshot) and
/// returned 0 with the new session alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_subject_overtaken_by_a_rotation_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    let t = store.table().to_owned();
    let subject = unique_subject("overtaken");
    let old = record(Some(&subject), Timestamp::now() + HOUR);
    store.create(&old).await.expect("create old");
    let pool = sqlx::PgPool::connect(&common::postgres_url())
        .await
        .expect("second pool");
    let mut rotation = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM \"{t}\" WHERE id = $1"
    )))
    .bind(old.id.as_str())
    .execute(&mut *rotation)
    .await
    .expect("the rotation's delete of the old row");
    let logout = {
        let (store, subject) = (store.store.clone(), subject.clone());
        tokio::spawn(async move { store.delete_subject(&subject).await })
    };
    let pattern = format!("DELETE FROM \"{t}\" WHERE subject%");
    poll("delete_subject to wait for the old row", || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND wait_event_type = 'Lock'",
        )
        .bind(&pattern)
        .fetch_optional(&pool)
        .await
        .expect("pg_stat_activity")
    })
    .await;
    let new = record(Some(&subject), Timestamp::now() + HOUR);
    store.create(&new).await.expect("the rotation's new row");
    rotation.commit().await.expect("commit the rotation");
    let removed = tokio::time::timeout(Duration::from_secs(10), logout)
        .await
        .expect("delete_subject returns")
        .expect("join")
        .expect("delete_subject");
    let left = store.list_subject(&subject).await.expect("list").len();
    assert_eq!(
        (removed, left),
        (1, 0),
        "delete_subject overtaken by a rotation: removed {removed}, left {left} alive"
    );
    assert_eq!(store.load(&new.id).await.expect("load"), None);
    pool.close().await;
}

// -------------------------------------------------------------- call timeout

#[tokio::test]
async fn call_timeout_zero_is_a_config_error() {
    let result = SqlStore::builder()
        .call_timeout(Duration::ZERO)
        .connect("sqlite::memory:")
        .await;
    assert!(
        matches!(result, Err(Error::Config(_))),
        "a zero call timeout was accepted: {result:?}"
    );
    let store = SqlStore::connect("sqlite::memory:").await.expect("default");
    assert_eq!(
        store.call_timeout(),
        Duration::from_secs(5),
        "on by default"
    );
    let store = SqlStore::builder()
        .call_timeout(Duration::from_millis(1))
        .connect("sqlite::memory:")
        .await
        .expect("1 ms is kept as given");
    assert_eq!(store.call_timeout(), Duration::from_millis(1));
}

/// Every out-of-range setting is refused when the store is built, before
/// connecting, with a message naming it; the smallest values in range
/// build a working store.
#[tokio::test]
async fn out_of_range_settings_are_config_errors() {
    let ms = Duration::from_millis(1);
    let cases = [
        (
            SqlStore::builder().max_connections(0),
            "SqlStore: max_connections must be at least 1 (got 0)",
        ),
        (
            SqlStore::builder().max_connections(1).min_connections(2),
            "SqlStore: min_connections must be at most max_connections (1) (got 2)",
        ),
        (
            SqlStore::builder().cleanup_batch_size(0),
            "SqlStore: cleanup_batch_size must be at least 1 (got 0)",
        ),
        (
            SqlStore::builder().statement_timeout(Duration::from_micros(500)),
            "SqlStore: statement_timeout must be at least 1ms (got 500µs)",
        ),
        (
            SqlStore::builder().statement_timeout(Duration::ZERO),
            "SqlStore: statement_timeout must be at least 1ms (got 0ns)",
        ),
        (
            SqlStore::builder().acquire_timeout(Duration::ZERO),
            "SqlStore: acquire_timeout must be at least 1ms (got 0ns)",
        ),
        (
            SqlStore::builder().idle_timeout(Some(Duration::ZERO)),
            "SqlStore: idle_timeout must be at least 1ms (got 0ns)",
        ),
        (
            SqlStore::builder().call_timeout(Duration::from_nanos(999_999)),
            "SqlStore: call_timeout must be at least 1ms (got 999.999µs)",
        ),
    ];
    for (options, expected) in cases {
        // A URL nothing listens on: the settings are checked first.
        for url in ["sqlite::memory:", "postgres://nobody@127.0.0.1:1/none"] {
            match options.clone().connect(url).await {
                Err(Error::Config(message)) => assert_eq!(message, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
    }

    let store = SqlStore::builder()
        .max_connections(1)
        .min_connections(1)
        .cleanup_batch_size(1)
        .statement_timeout(ms)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Some(ms))
        .connect("sqlite::memory:")
        .await
        .expect("the smallest values in range");
    // A batch of one row still purges everything.
    let past = Timestamp::now() + Duration::from_millis(20);
    for _ in 0..3 {
        store.create(&record(None, past)).await.expect("create");
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.delete_expired().await.expect("purge"), 3);
}

/// A TCP proxy on loopback between the store and a database server, which
/// can stop forwarding in both directions (a silent partition: the
/// connections stay open, nothing arrives) and start again.
struct Proxy {
    addr: SocketAddr,
    paused: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (paused, rx) = watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, rx.clone()),
                        pump(server_read, client_write, rx),
                    );
                });
            }
        });
        Proxy {
            addr,
            paused,
            accept,
        }
    }

    fn pause(&self) {
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies one direction; while paused, whatever was read is held back.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn resolve(host: &str, port: u16) -> SocketAddr {
    tokio::net::lookup_host((host, port))
        .await
        .expect("resolve the database host")
        .next()
        .expect("an address")
}

const CALL_LIMIT: Duration = Duration::from_millis(400);

/// Runs `call` against a paused server: it must fail with
/// `Error::Timeout(Some(CALL_LIMIT))` after about the limit.
async fn expect_call_timeout<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T>>,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(CALL_LIMIT + Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: the call hung past its call timeout"));
    let took = started.elapsed();
    match result {
        Err(Error::Timeout(Some(limit))) => assert_eq!(limit, CALL_LIMIT, "{what}"),
        other => panic!("{what}: expected Error::Timeout(Some({CALL_LIMIT:?})), got {other:?}"),
    }
    assert!(
        took >= CALL_LIMIT && took < CALL_LIMIT + Duration::from_secs(2),
        "{what}: returned after {took:?}, the limit is {CALL_LIMIT:?}"
    );
}

/// `store` talks to its server through `proxy`, which is forwarding.
/// `test_before_acquire` tells where the first call waits while paused: in
/// the pool's ping of an idle connection, or in the statement itself.
async fn paused_server(store: &SqlStore, proxy: &Proxy) {
    let subject = unique_subject("paused");
    let r = record(Some(&subject), Timestamp::now() + HOUR);
    store.create(&r).await.expect("create through the proxy");

    proxy.pause();
    expect_call_timeout("load", store.load(&r.id)).await;
    expect_call_timeout("save", store.save(&r)).await;
    expect_call_timeout("compare_and_delete", store.compare_and_delete(&r.id, 7)).await;
    expect_call_timeout("list_subject", store.list_subject(&subject)).await;
    expect_call_timeout("scan", store.scan(None, 10)).await;
    proxy.resume();

    // Works again: the connections cut off mid-call were closed, new ones
    // go through the proxy. (The timed-out save was held by the proxy and
    // may have been applied once it resumed: a timeout leaves that open.)
    let loaded = tokio::time::timeout(Duration::from_secs(10), store.load(&r.id))
        .await
        .expect("load after resume")
        .expect("load after resume")
        .expect("the record is still there");
    assert!(loaded.version == 1 || loaded.version == 2, "{loaded:?}");
    let next = store.save(&loaded).await.expect("save after resume");
    assert_eq!(next, loaded.version + 1);
    assert_eq!(store.list_subject(&subject).await.expect("list").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeout_against_a_paused_postgres() {
    // Probe (and skip without a server), and own the table's cleanup.
    let table = common::random_table();
    let Some(_scope) = common::postgres_store_with(common::options(&table), &table).await else {
        return;
    };
    let opts: sqlx::postgres::PgConnectOptions =
        common::postgres_url().parse().expect("postgres url");
    let proxy = Proxy::start(resolve(opts.get_host(), opts.get_port()).await).await;
    for ping in [true, false] {
        let store = common::options(&table)
            .migrate(false)
            .call_timeout(CALL_LIMIT)
            .test_before_acquire(ping)
            .connect_postgres(opts.clone().host("127.0.0.1").port(proxy.addr.port()))
            .await
            .expect("connect through the proxy");
        paused_server(&store, &proxy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeout_against_a_paused_mysql() {
    let table = common::random_table();
    let Some(_scope) = common::mysql_store_with(common::options(&table), &table).await else {
        return;
    };
    let opts: sqlx::mysql::MySqlConnectOptions = common::mysql_url().parse().expect("mysql url");
    let proxy = Proxy::start(resolve(opts.get_host(), opts.get_port()).await).await;
    for ping in [true, false] {
        let store = common::options(&table)
            .migrate(false)
            .call_timeout(CALL_LIMIT)
            .test_before_acquire(ping)
            .connect_mysql(opts.clone().host("127.0.0.1").port(proxy.addr.port()))
            .await
            .expect("connect through the proxy");
        paused_server(&store, &proxy).await;
    }
}

/// SQLite has no network, but a call can still wait: here on a write lock
/// another connection holds for longer than the call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeout_bounds_a_sqlite_call_waiting_for_a_lock() {
    use sqlx::Connection;
    let path = common::sqlite_path();
    let store = common::options(&common::random_table())
        .call_timeout(CALL_LIMIT)
        .connect_sqlite(common::sqlite_file_options(&path).busy_timeout(Duration::from_secs(30)))
        .await
        .expect("sqlite");
    let store = Scoped::new(store, common::Cleanup::SqliteFile(path.clone()));
    let r = record(None, Timestamp::now() + HOUR);
    store.create(&r).await.expect("create");
    let mut holder = sqlx::SqliteConnection::connect_with(&common::sqlite_file_options(&path))
        .await
        .expect("second connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("take the write lock");
    expect_call_timeout("save behind a write lock", store.save(&r)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
    holder.close().await.expect("close");
    let loaded = store.load(&r.id).await.expect("load").expect("live");
    assert_eq!(store.save(&loaded).await.expect("save"), loaded.version + 1);
}

// -------------------------------------------------------------- corrupt rows

/// Collects the level and fields of every event on this thread.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl Warnings {
    /// The fields of every event at `level`.
    fn at(&self, level: tracing::Level) -> Vec<String> {
        let events = self.0.lock().expect("lock");
        events
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, f)| f.clone())
            .collect()
    }
    /// The fields of every `WARN` event.
    fn warnings(&self) -> Vec<String> {
        self.at(tracing::Level::WARN)
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .expect("lock")
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A corrupt row, written with raw SQL.
struct Corrupt {
    id: String,
    /// Whether it is listed under the test's subject.
    listed: bool,
    /// Whether `load` by this ID reaches the decoder.
    loadable: bool,
}

/// The store's policy for rows it cannot decode: `load` fails with
/// `Error::Decode`, `list_subject` skips them with a warning that shows no
/// whole ID, `delete_subject` removes them with the rest.
async fn corrupt_rows(store: &Scoped, subject: &str, corrupt: &[Corrupt]) {
    let good = record(Some(subject), Timestamp::now() + HOUR);
    store.create(&good).await.expect("create the good row");
    for c in corrupt.iter().filter(|c| c.loadable) {
        let id = SessionId::parse(&c.id).expect("a valid ID");
        match store.load(&id).await {
            Err(Error::Decode(_)) => {}
            other => panic!("load of a corrupt row: expected Error::Decode, got {other:?}"),
        }
    }

    let warnings = Warnings::default();
    let listed = {
        let _guard = tracing::subscriber::set_default(warnings.clone());
        store.list_subject(subject).await
    };
    let listed = listed.expect("list_subject skips corrupt rows instead of failing");
    assert_eq!(listed, vec![good.clone()], "only the good row is listed");
    let warnings = warnings.warnings();
    let skipped = corrupt.iter().filter(|c| c.listed).count();
    assert_eq!(
        warnings.len(),
        skipped,
        "one warning per skipped row: {warnings:#?}"
    );
    for c in corrupt {
        assert!(
            !warnings.iter().any(|w| w.contains(&c.id)),
            "a warning shows a whole ID: {warnings:#?}"
        );
    }
    eprintln!("warnings: {warnings:#?}");

    let removed = store.delete_subject(subject).await.expect("delete_subject");
    assert_eq!(
        removed,
        1 + skipped as u64,
        "delete_subject removes corrupt rows too"
    );
    assert!(store.list_subject(subject).await.expect("list").is_empty());
}

fn corrupt(id: String, listed: bool, loadable: bool) -> Corrupt {
    Corrupt {
        id,
        listed,
        loadable,
    }
}

#[tokio::test]
async fn corrupt_rows_sqlite() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    let pool = store.sqlite_pool().expect("sqlite").clone();
    let (t, subject) = (store.table().to_owned(), unique_subject("corrupt"));
    let later = (Timestamp::now() + HOUR).as_millis();
    let (negative, text_version, text_expiry) = (
        SessionId::generate().as_str().to_owned(),
        SessionId::generate().as_str().to_owned(),
        SessionId::generate().as_str().to_owned(),
    );
    let insert = format!(
        "INSERT INTO \"{t}\" (id, subject, payload, version, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
    );
    let rows: Vec<(String, sqlx::query::Query<'_, sqlx::Sqlite, _>)> = vec![
        // A negative version.
        (
            negative.clone(),
            sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                .bind(negative.clone())
                .bind(subject.clone())
                .bind(b"p".to_vec())
                .bind(-3i64)
                .bind(0i64)
                .bind(later),
        ),
        // Text where an integer belongs (SQLite stores what it is given).
        (
            text_version.clone(),
            sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                .bind(text_version.clone())
                .bind(subject.clone())
                .bind(b"p".to_vec())
                .bind("seven")
                .bind(0i64)
                .bind(later),
        ),
        // A text expiry: compares as later than any number, so it is
        // "live" and reaches the decoder.
        (
            text_expiry.clone(),
            sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                .bind(text_expiry.clone())
                .bind(subject.clone())
                .bind(b"p".to_vec())
                .bind(1i64)
                .bind(0i64)
                .bind("tomorrow"),
        ),
        // Not a session ID at all.
        (
            "not-a-session-id".to_owned(),
            sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                .bind("not-a-session-id")
                .bind(subject.clone())
                .bind(b"p".to_vec())
                .bind(1i64)
                .bind(0i64)
                .bind(later),
        ),
    ];
    for (_, q) in rows {
        q.execute(&pool).await.expect("insert a corrupt row");
    }
    corrupt_rows(
        &store,
        &subject,
        &[
            corrupt(negative, true, true),
            corrupt(text_version, true, true),
            corrupt(text_expiry, true, true),
            corrupt("not-a-session-id".to_owned(), true, false),
        ],
    )
    .await;
}

#[tokio::test]
async fn corrupt_rows_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    let pool = store.postgres_pool().expect("pg").clone();
    let (t, subject) = (store.table().to_owned(), unique_subject("corrupt"));
    let later = (Timestamp::now() + HOUR).as_millis();
    let negative = SessionId::generate().as_str().to_owned();
    let insert = format!(
        "INSERT INTO \"{t}\" (id, subject, payload, version, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
    );
    for (id, version) in [(negative.as_str(), -3i64), ("not-a-session-id", 1)] {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(id)
            .bind(&subject)
            .bind(b"p".to_vec())
            .bind(version)
            .bind(0i64)
            .bind(later)
            .execute(&pool)
            .await
            .expect("insert a corrupt row");
    }
    corrupt_rows(
        &store,
        &subject,
        &[
            corrupt(negative, true, true),
            corrupt("not-a-session-id".to_owned(), true, false),
        ],
    )
    .await;
}

#[tokio::test]
async fn corrupt_rows_mysql() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    let pool = store.mysql_pool().expect("mysql").clone();
    let (t, subject) = (store.table().to_owned(), unique_subject("corrupt"));
    let later = (Timestamp::now() + HOUR).as_millis();
    let (negative, bad_utf8) = (
        SessionId::generate().as_str().to_owned(),
        SessionId::generate().as_str().to_owned(),
    );
    let insert = format!(
        "INSERT INTO `{t}` (id, subject, payload, version, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
    );
    for (id, subject, version) in [
        (negative.as_str(), subject.as_bytes().to_vec(), -3i64),
        ("not-a-session-id", subject.as_bytes().to_vec(), 1),
        // A subject that is not UTF-8 (VARBINARY holds any bytes): it must
        // not come back with the bad bytes replaced by `?`.
        (bad_utf8.as_str(), vec![0xff, 0xfe, b'x'], 1),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(id)
            .bind(subject)
            .bind(b"p".to_vec())
            .bind(version)
            .bind(0i64)
            .bind(later)
            .execute(&pool)
            .await
            .expect("insert a corrupt row");
    }
    corrupt_rows(
        &store,
        &subject,
        &[
            corrupt(negative, true, true),
            corrupt("not-a-session-id".to_owned(), true, false),
            corrupt(bad_utf8.clone(), false, true),
        ],
    )
    .await;
    // Not the test's subject, so still there: removed by ID.
    let id = SessionId::parse(&bad_utf8).expect("id");
    assert!(store.delete(&id).await.expect("delete a corrupt row by ID"));
}

/// The testkit's corrupt-record case, with a negative version written by
/// raw SQL as the corruption.
#[tokio::test]
async fn testkit_corrupt_record_case_sqlite() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    let pool = store.sqlite_pool().expect("sqlite").clone();
    let sql = format!("UPDATE \"{}\" SET version = -1 WHERE id = ?", store.table());
    sessionkit_testkit::cases::corrupt_record_is_skipped_by_list_subject(&store, |id| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str().to_owned())
            .execute(&pool)
            .await
            .expect("corrupt the row");
    })
    .await;
}

#[tokio::test]
async fn testkit_corrupt_record_case_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    let pool = store.postgres_pool().expect("pg").clone();
    let sql = format!(
        "UPDATE \"{}\" SET version = -1 WHERE id = $1",
        store.table()
    );
    sessionkit_testkit::cases::corrupt_record_is_skipped_by_list_subject(&store, |id| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str().to_owned())
            .execute(&pool)
            .await
            .expect("corrupt the row");
    })
    .await;
}

#[tokio::test]
async fn testkit_corrupt_record_case_mysql() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    let pool = store.mysql_pool().expect("mysql").clone();
    let sql = format!("UPDATE `{}` SET version = -1 WHERE id = ?", store.table());
    sessionkit_testkit::cases::corrupt_record_is_skipped_by_list_subject(&store, |id| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str().to_owned())
            .execute(&pool)
            .await
            .expect("corrupt the row");
    })
    .await;
}

// ---------------------------------------------------------------------- scan

/// Every page of a scan at `limit`, each cursor passed on through its text
/// (as a resumed copy would); fails if it does not end.
async fn scan_all(store: &SqlStore, limit: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cursor: Option<ScanCursor> = None;
    for _ in 0..10_000 {
        let page = store.scan(cursor.as_ref(), limit).await.expect("scan");
        assert!(page.records.len() <= limit, "a page exceeded its limit");
        out.extend(page.records);
        match page.next {
            Some(next) => cursor = Some(ScanCursor::new(next.as_str().to_owned())),
            None => return out,
        }
    }
    panic!("scan at limit {limit} did not end within 10000 pages");
}

fn sorted(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    records
}

/// Creates `good` live records and one expired one through the store.
async fn good_records(store: &SqlStore, n: usize) -> Vec<Record> {
    let mut good = Vec::new();
    for _ in 0..n {
        let r = record(None, Timestamp::now() + HOUR);
        store.create(&r).await.expect("create");
        good.push(r);
    }
    let expired = record(None, Timestamp::now() - HOUR);
    store.create(&expired).await.expect("create expired");
    good
}

/// `scan` past corrupt rows written with raw SQL: at every page size (1:
/// each corrupt row is a page of its own, whose cursor must move past it)
/// it returns exactly the good live records, ends, and warns once per
/// skipped live row without showing a whole ID.
async fn scan_past_corrupt_rows(store: &SqlStore, good: &[Record], ids: &[String], warned: usize) {
    for limit in [1, 2, 3, 1000] {
        let warnings = Warnings::default();
        let seen = {
            let _guard = tracing::subscriber::set_default(warnings.clone());
            scan_all(store, limit).await
        };
        assert_eq!(
            sorted(seen),
            sorted(good.to_vec()),
            "limit {limit}: scan returns exactly the good live records"
        );
        let warnings = warnings.warnings();
        assert_eq!(
            warnings.len(),
            warned,
            "limit {limit}: one warning per skipped row: {warnings:#?}"
        );
        for id in ids {
            assert!(
                !warnings.iter().any(|w| w.contains(id.as_str())),
                "a warning shows a whole ID: {warnings:#?}"
            );
        }
    }
}

#[tokio::test]
async fn scan_past_corrupt_rows_sqlite() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    let good = good_records(&store, 4).await;
    let pool = store.sqlite_pool().expect("sqlite").clone();
    let t = store.table().to_owned();
    let later = (Timestamp::now() + HOUR).as_millis();
    let insert = |id_expr: &str| {
        format!(
            "INSERT INTO \"{t}\" (id, subject, payload, version, created_at, expires_at) \
             VALUES ({id_expr}, NULL, X'70', ?, 0, ?)"
        )
    };
    let (negative, text_version) = (
        SessionId::generate().as_str().to_owned(),
        SessionId::generate().as_str().to_owned(),
    );
    let not_an_id = "not-a-session-id-at-all".to_owned();
    for (id, version) in [(&negative, -3i64), (&text_version, 1), (&not_an_id, 1)] {
        sqlx::query(sqlx::AssertSqlSafe(insert("?")))
            .bind(id.clone())
            .bind(version)
            .bind(later)
            .execute(&pool)
            .await
            .expect("insert a corrupt row");
    }
    // Text where the version's integer belongs (SQLite stores what it is
    // given).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{t}\" SET version = 'seven' WHERE id = ?"
    )))
    .bind(text_version.clone())
    .execute(&pool)
    .await
    .expect("a text version");
    // An ID that is text but not UTF-8: its cursor carries the raw bytes.
    sqlx::query(sqlx::AssertSqlSafe(insert("CAST(? AS TEXT)")))
        .bind(b"ABCDEFGH\xffIJKL".to_vec())
        .bind(1i64)
        .bind(later)
        .execute(&pool)
        .await
        .expect("insert a non-UTF-8 ID");
    // An ID that is not text at all (a BLOB sorts after every text): not
    // scanned, and it must not make the scan go round in circles.
    sqlx::query(sqlx::AssertSqlSafe(insert("?")))
        .bind(b"\x00\xffblob-id".to_vec())
        .bind(1i64)
        .bind(later)
        .execute(&pool)
        .await
        .expect("insert a BLOB ID");
    scan_past_corrupt_rows(
        &store,
        &good,
        &[negative, text_version, not_an_id, "ABCDEFGH".to_owned()],
        4,
    )
    .await;
}

#[tokio::test]
async fn scan_past_corrupt_rows_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    let good = good_records(&store, 4).await;
    let pool = store.postgres_pool().expect("pg").clone();
    let later = (Timestamp::now() + HOUR).as_millis();
    let negative = SessionId::generate().as_str().to_owned();
    let (not_an_id, unicode) = (
        "not-a-session-id-at-all".to_owned(),
        "ñandú-über-ID-🦀".to_owned(),
    );
    let insert = format!(
        "INSERT INTO \"{}\" (id, subject, payload, version, created_at, expires_at) \
         VALUES ($1, NULL, $2, $3, 0, $4)",
        store.table()
    );
    for (id, version) in [(&negative, -3i64), (&not_an_id, 1), (&unicode, 1)] {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(id.clone())
            .bind(b"p".to_vec())
            .bind(version)
            .bind(later)
            .execute(&pool)
            .await
            .expect("insert a corrupt row");
    }
    scan_past_corrupt_rows(&store, &good, &[negative, not_an_id, unicode], 3).await;
}

#[tokio::test]
async fn scan_past_corrupt_rows_mysql() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    let good = good_records(&store, 4).await;
    let pool = store.mysql_pool().expect("mysql").clone();
    let later = (Timestamp::now() + HOUR).as_millis();
    let (negative, bad_utf8) = (
        SessionId::generate().as_str().to_owned(),
        SessionId::generate().as_str().to_owned(),
    );
    let not_an_id = "not-a-session-id-at-all".to_owned();
    let insert = format!(
        "INSERT INTO `{}` (id, subject, payload, version, created_at, expires_at) \
         VALUES (?, ?, ?, ?, 0, ?)",
        store.table()
    );
    for (id, subject, version) in [
        (&negative, b"s".to_vec(), -3i64),
        (&not_an_id, b"s".to_vec(), 1),
        (&bad_utf8, vec![0xff, 0xfe, b'x'], 1),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(id.clone())
            .bind(subject)
            .bind(b"p".to_vec())
            .bind(version)
            .bind(later)
            .execute(&pool)
            .await
            .expect("insert a corrupt row");
    }
    scan_past_corrupt_rows(&store, &good, &[negative, not_an_id, bad_utf8], 3).await;
}

/// Hex of text, as a `~` cursor carries an ID.
fn hex(text: &[u8]) -> String {
    text.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cursor is parsed strictly: anything but the start (empty), a session
/// ID or the store's own `~hex` form is `Error::Decode`, before any SQL
/// runs; a well-formed `~hex` cursor is only ever a bound value (SQL text
/// in it does nothing). A page of 0 rows leaves the cursor where it was.
async fn scan_cursors_are_parsed_strictly(store: &SqlStore, invalid_here: &[&str]) {
    let good = good_records(store, 5).await;
    let valid = SessionId::generate().as_str().to_owned();
    let mut bad: Vec<String> = [
        "garbage",
        "~",
        "~a",
        "~zz",
        "~4A",
        "~ 41",
        " ",
        "' OR '1'='1",
        "'; DROP TABLE x; --",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    bad.push(format!("{valid}x"));
    bad.push(valid[..valid.len() - 1].to_owned());
    bad.push(format!(" {valid}"));
    bad.extend(invalid_here.iter().map(|s| s.to_string()));
    for cursor in &bad {
        match store.scan(Some(&ScanCursor::new(cursor.clone())), 10).await {
            Err(Error::Decode(_)) => {}
            other => panic!("cursor {cursor:?}: expected Error::Decode, got {other:?}"),
        }
    }
    // Well formed, with SQL in it: a bound value like any other.
    let table = store.table().to_owned();
    for text in [
        format!("'; DROP TABLE \"{table}\"; --"),
        format!("'; DROP TABLE `{table}`; --"),
        "' OR '1'='1".to_owned(),
    ] {
        let cursor = ScanCursor::new(format!("~{}", hex(text.as_bytes())));
        let page = store.scan(Some(&cursor), 1000).await.expect("a hex cursor");
        assert!(
            page.records
                .iter()
                .all(|r| r.id.as_str().as_bytes() > text.as_bytes()),
            "a page after {text:?} holds an ID before it"
        );
    }
    // The empty cursor is the start; a page of 0 stays where it was.
    let all = store
        .scan(Some(&ScanCursor::new("")), 1000)
        .await
        .expect("scan from the empty cursor");
    assert_eq!(sorted(all.records), sorted(good.clone()));
    assert!(all.next.is_none());
    for cursor in [None, Some(ScanCursor::new(valid.clone()))] {
        let page = store.scan(cursor.as_ref(), 0).await.expect("a page of 0");
        assert!(page.records.is_empty());
        let next = page.next.expect("a page of 0 is not the end");
        assert_eq!(
            next.as_str(),
            cursor.as_ref().map_or("", ScanCursor::as_str)
        );
    }
    // Nothing was harmed.
    assert_eq!(sorted(scan_all(store, 2).await), sorted(good));
}

#[tokio::test]
async fn scan_cursors_are_parsed_strictly_sqlite() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    scan_cursors_are_parsed_strictly(&store, &[]).await;
}

#[tokio::test]
async fn scan_cursors_are_parsed_strictly_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    // Not UTF-8; a NUL (PostgreSQL text holds neither).
    scan_cursors_are_parsed_strictly(&store, &["~ff", "~4100"]).await;
}

#[tokio::test]
async fn scan_cursors_are_parsed_strictly_mysql() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    // Not ASCII (the ID column is).
    scan_cursors_are_parsed_strictly(&store, &["~c3b1"]).await;
}

/// An enumeration interrupted half-way resumes in another instance (another
/// pool, as another process would) from the cursor's text alone, and
/// misses nothing.
async fn scan_resumes_in_another_instance(a: &SqlStore, b: &SqlStore) {
    let good = good_records(a, 10).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..2 {
        let page = a.scan(cursor.as_ref(), 3).await.expect("scan");
        seen.extend(page.records);
        cursor = page.next;
    }
    let saved = cursor.expect("more pages").as_str().to_owned();
    let mut cursor = Some(ScanCursor::new(saved));
    while let Some(c) = cursor {
        let page = b.scan(Some(&c), 3).await.expect("resumed scan");
        seen.extend(page.records);
        cursor = page.next;
    }
    assert_eq!(sorted(seen), sorted(good));
}

#[tokio::test]
async fn scan_resumes_in_another_instance_sqlite() {
    let path = common::sqlite_path();
    let table = common::random_table();
    let a = common::options(&table)
        .connect_sqlite(common::sqlite_file_options(&path))
        .await
        .expect("sqlite");
    let a = Scoped::new(a, common::Cleanup::SqliteFile(path.clone()));
    let b = common::options(&table)
        .connect_sqlite(common::sqlite_file_options(&path))
        .await
        .expect("sqlite, second pool");
    scan_resumes_in_another_instance(&a, &b).await;
}

#[tokio::test]
async fn scan_resumes_in_another_instance_postgres() {
    let table = common::random_table();
    let Some(a) = common::postgres_store_with(common::options(&table), &table).await else {
        return;
    };
    let Some(b) = common::postgres_store_with(common::options(&table), &table).await else {
        return;
    };
    scan_resumes_in_another_instance(&a, &b).await;
}

#[tokio::test]
async fn scan_resumes_in_another_instance_mysql() {
    let table = common::random_table();
    let Some(a) = common::mysql_store_with(common::options(&table), &table).await else {
        return;
    };
    let Some(b) = common::mysql_store_with(common::options(&table), &table).await else {
        return;
    };
    scan_resumes_in_another_instance(&a, &b).await;
}
