//! Faults injected under a concurrent workload, on private servers on
//! loopback: Redis killed (-9) and restarted with `appendfsync always`,
//! Redis paused (SIGSTOP/SIGCONT), the cache's invalidation subscription
//! cut, and PostgreSQL / MariaDB connections terminated server-side.
//!
//! For each: no panic, every failed call is a typed transient error
//! (`Backend { transient: true }` or `Timeout`) returned within a bound
//! derived from the configured timeouts, the same store objects recover
//! without being rebuilt, and every acknowledged write is there at the end
//! (per-session counters: a counter below the acknowledged saves is a lost
//! write). The single-writer Redis kill/SIGSTOP tests of the Redis crate
//! (`crates/sessionkit-redis/tests/faults.rs`) and the single-statement SQL
//! kill tests (`crates/sessionkit-sql/tests/sql.rs`) are the basic versions;
//! these are the mixed-workload ones.
//!
//! `cargo test -p sessionkit-integration-tests --test reliability_faults`; the run length
//! of each phase is `SESSIONKIT_FAULT_SECS` (default 2).

mod reliability_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reliability_support::*;
use sessionkit::SessionStore;

/// Scheduling slack on a busy 2-core CI machine.
const SLACK: Duration = Duration::from_secs(3);

fn phase() -> Duration {
    env_secs("SESSIONKIT_FAULT_SECS", 2)
}

/// Polls `cond` every 20 ms until it holds; returns how long it took.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond().await {
            return t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {limit:?}");
}

fn assert_run(name: &str, rep: &Report, bound: Duration) {
    println!(
        "[{name}] ops {} ({:.0}/s): loads {} updates {} conflicts {} creates {} deletes {}; \
         transient errors {} (slowest {:?}); stale reads {}; unexpected {}",
        rep.ops,
        rep.ops_per_sec(),
        rep.loads,
        rep.updates,
        rep.conflicts,
        rep.creates,
        rep.deletes,
        rep.retryable_errors,
        rep.slowest_error,
        rep.stale_reads,
        rep.unexpected
    );
    assert_eq!(
        rep.unexpected, 0,
        "[{name}] unexpected outcomes: {:#?}",
        rep.first_unexpected
    );
    assert!(
        rep.slowest_error <= bound,
        "[{name}] a failed call took {:?} (bound {bound:?})",
        rep.slowest_error
    );
}

fn assert_verdict(name: &str, v: &Verdict) {
    println!(
        "[{name}] verified {} sessions: {} acknowledged saves, missing {}, lost {}, phantom {}, \
         in-doubt saves found applied {}",
        v.checked, v.acked_total, v.missing, v.lost_updates, v.phantom, v.applied_in_doubt
    );
    assert!(
        v.clean(),
        "[{name}] acknowledged writes lost: {:#?}",
        v.first
    );
}

mod redis_faults {
    use super::*;
    use sessionkit::redis::{RedisConfig, RedisStore};

    const TIMEOUT: Duration = Duration::from_millis(1000);

    fn config() -> RedisConfig {
        RedisConfig::new()
            .prefix("rel")
            .command_timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_kill9_and_restart_under_a_concurrent_workload_loses_no_acknowledged_write() {
        if !have("redis-server") {
            skip("redis-server binary", "not on PATH");
            return;
        }
        let mut server =
            RedisProc::start("kill", &["--appendonly", "yes", "--appendfsync", "always"]);
        let store: Arc<dyn SessionStore> = Arc::new(
            RedisStore::standalone(&server.url(), config())
                .await
                .expect("connect"),
        );
        let slots = populate(store.clone(), 500, "rel-kill").await;
        let mut w = Workload::new(store.clone(), slots.clone(), 16);
        w.faults = true;
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let (w, stop) = (w.clone(), stop.clone());
            tokio::spawn(async move { w.run(Duration::from_secs(600), stop).await })
        };
        let mut downtime = Vec::new();
        for round in 0..3 {
            tokio::time::sleep(phase()).await;
            server.kill9();
            let killed = Instant::now();
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.restart();
            let probe = slots[round].id;
            let back = eventually(
                "the same store answers again",
                Duration::from_secs(20),
                || {
                    let store = store.clone();
                    async move { store.load(&probe).await.is_ok() }
                },
            )
            .await;
            downtime.push(killed.elapsed());
            println!(
                "round {round}: killed, restarted, store answered again {back:?} after restart"
            );
        }
        tokio::time::sleep(phase()).await;
        stop.store(true, Ordering::Relaxed);
        let rep = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the workload stops: nothing hangs")
            .expect("no task panicked");
        println!("kill/restart windows: {downtime:?}");
        assert_run("redis kill -9", &rep, 2 * TIMEOUT + SLACK);
        assert!(rep.retryable_errors > 0, "the kills were seen");
        assert!(rep.updates > 0);
        let v = verify(store.as_ref(), &slots).await;
        assert_verdict("redis kill -9", &v);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_sigstop_under_a_concurrent_workload_times_out_in_bound_and_recovers() {
        if !have("redis-server") {
            skip("redis-server binary", "not on PATH");
            return;
        }
        let server = RedisProc::start("stop", &["--appendonly", "yes", "--appendfsync", "always"]);
        let store: Arc<dyn SessionStore> = Arc::new(
            RedisStore::standalone(&server.url(), config())
                .await
                .expect("connect"),
        );
        let slots = populate(store.clone(), 500, "rel-stop").await;
        let mut w = Workload::new(store.clone(), slots.clone(), 16);
        w.faults = true;
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let (w, stop) = (w.clone(), stop.clone());
            tokio::spawn(async move { w.run(Duration::from_secs(600), stop).await })
        };
        for round in 0..2 {
            tokio::time::sleep(phase()).await;
            server.pause();
            tokio::time::sleep(TIMEOUT * 5 / 2).await;
            server.resume();
            let probe = slots[round].id;
            let back = eventually("answers after SIGCONT", Duration::from_secs(20), || {
                let store = store.clone();
                async move { store.load(&probe).await.is_ok() }
            })
            .await;
            println!(
                "round {round}: paused {:?}, answering again {back:?} after SIGCONT",
                TIMEOUT * 5 / 2
            );
        }
        tokio::time::sleep(phase()).await;
        stop.store(true, Ordering::Relaxed);
        let rep = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the workload stops: nothing hangs")
            .expect("no task panicked");
        // A call may also wait for the reconnection (connect + command timeout).
        assert_run("redis SIGSTOP", &rep, 2 * TIMEOUT + SLACK);
        assert!(rep.retryable_errors > 0, "the pauses were seen");
        let v = verify(store.as_ref(), &slots).await;
        assert_verdict("redis SIGSTOP", &v);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cache_invalidation_subscription_cut_under_a_workload_resubscribes_and_loses_nothing() {
        use sessionkit::InvalidationChannel;
        use sessionkit::memory::CachedStore;
        use sessionkit::redis::RedisInvalidationChannel;

        if !have("redis-server") {
            skip("redis-server binary", "not on PATH");
            return;
        }
        let server = RedisProc::start("pubsub", &[]);
        let max_staleness = Duration::from_millis(500);
        let config = config().ping_interval(Duration::from_millis(200));
        let mut caches = Vec::new();
        for _ in 0..2 {
            let store = RedisStore::standalone(&server.url(), config.clone())
                .await
                .expect("connect");
            let channel = RedisInvalidationChannel::connect(&server.url(), config.clone())
                .await
                .expect("channel");
            let cache = CachedStore::builder(store)
                .channel(Arc::new(channel) as Arc<dyn InvalidationChannel>)
                .max_staleness(max_staleness)
                .build()
                .expect("cache");
            assert!(cache.wait_subscribed(Duration::from_secs(5)).await);
            caches.push(Arc::new(cache));
        }
        let (a, b) = (caches[0].clone(), caches[1].clone());
        let slots = populate(a.clone(), 300, "rel-pubsub").await;
        // Two application instances: each call goes through A or B.
        let mut w = Workload::new(a.clone(), slots.clone(), 16);
        w.stores.push(b.clone());
        w.stale_reads_ok = true;
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let (w, stop) = (w.clone(), stop.clone());
            tokio::spawn(async move { w.run(Duration::from_secs(600), stop).await })
        };
        let resets_before = (a.stats().resets, b.stats().resets);
        let cuts = 5;
        let mut worst_resubscribe = Duration::ZERO;
        for _ in 0..cuts {
            tokio::time::sleep(phase() / 4).await;
            let killed: i64 = server
                .cli(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .trim()
                .parse()
                .unwrap_or(0);
            assert!(killed >= 2, "both subscriptions cut ({killed})");
            let t = eventually("both caches resubscribed", Duration::from_secs(10), || {
                let (a, b) = (a.clone(), b.clone());
                async move {
                    a.stats().resets > resets_before.0
                        && b.stats().resets > resets_before.1
                        && a.is_subscribed()
                        && b.is_subscribed()
                }
            })
            .await;
            worst_resubscribe = worst_resubscribe.max(t);
        }
        tokio::time::sleep(phase()).await;
        stop.store(true, Ordering::Relaxed);
        let rep = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the workload stops")
            .expect("no task panicked");
        let (sa, sb) = (a.stats(), b.stats());
        println!("{cuts} cuts; slowest resubscription {worst_resubscribe:?}; A: {sa:?}; B: {sb:?}");
        assert!(sa.resets - resets_before.0 >= cuts && sb.resets - resets_before.1 >= cuts);
        // Cutting the subscription never fails a store call.
        assert_eq!(rep.retryable_errors, 0);
        assert_run("pubsub cut", &rep, SLACK);
        // Every acknowledged save is visible through both instances (B after
        // at most max_staleness, whatever it missed while cut).
        tokio::time::sleep(max_staleness).await;
        assert_verdict("pubsub cut via A", &verify(a.as_ref(), &slots).await);
        assert_verdict("pubsub cut via B", &verify(b.as_ref(), &slots).await);
    }
}

mod sql_faults {
    use super::*;
    use sessionkit::sql::SqlStore;

    const ACQUIRE: Duration = Duration::from_secs(2);
    const STATEMENT: Duration = Duration::from_secs(2);

    fn table() -> String {
        let hex: String = sessionkit::SessionId::generate().to_bytes()[..5]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sk_rel_{hex}")
    }

    /// Runs the workload on `store` while `kill` terminates its
    /// connections server-side every 300 ms for `rounds` rounds.
    async fn killed_mid_workload<K, Fut>(name: &str, store: SqlStore, rounds: usize, mut kill: K)
    where
        K: FnMut() -> Fut,
        Fut: std::future::Future<Output = u64>,
    {
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let slots = populate(store.clone(), 300, "rel-sql").await;
        let mut w = Workload::new(store.clone(), slots.clone(), 32);
        w.faults = true;
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let (w, stop) = (w.clone(), stop.clone());
            tokio::spawn(async move { w.run(Duration::from_secs(600), stop).await })
        };
        tokio::time::sleep(phase() / 2).await;
        let mut terminated = 0;
        for _ in 0..rounds {
            terminated += kill().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let probe = slots[0].id;
        let back = eventually("the same store answers", Duration::from_secs(20), || {
            let store = store.clone();
            async move { store.load(&probe).await.is_ok() }
        })
        .await;
        tokio::time::sleep(phase()).await;
        stop.store(true, Ordering::Relaxed);
        let rep = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the workload stops: nothing hangs")
            .expect("no task panicked");
        println!(
            "[{name}] {rounds} rounds terminated {terminated} server connections; answered again {back:?} after the last"
        );
        assert!(terminated > 0, "[{name}] no connection was terminated");
        assert_run(name, &rep, ACQUIRE + STATEMENT + SLACK);
        let v = verify(store.as_ref(), &slots).await;
        assert_verdict(name, &v);
        cleanup(store.as_ref(), &slots).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_connections_terminated_mid_workload() {
        let base = std::env::var("SESSIONKIT_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let admin = match sqlx::PgPool::connect(&base).await {
            Ok(p) => p,
            Err(e) => return skip("postgres", e),
        };
        let t = table();
        // The application name marks this store's connections, so that only
        // they are terminated (other tests share the server).
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}application_name={t}");
        let store = SqlStore::builder()
            .table(&t)
            .max_connections(8)
            .acquire_timeout(ACQUIRE)
            .statement_timeout(STATEMENT)
            .connect(&url)
            .await
            .expect("connect the store");
        killed_mid_workload("postgres terminate", store, 6, || {
            let (admin, t) = (admin.clone(), t.clone());
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid()) k",
                )
                .bind(&t)
                .fetch_one(&admin)
                .await
                .unwrap_or(0) as u64
            }
        })
        .await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS \"{t}\"")))
            .execute(&admin)
            .await;
        let _ = sqlx::query("DELETE FROM sessionkit_migrations WHERE table_name = $1")
            .bind(&t)
            .execute(&admin)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_connections_killed_mid_workload() {
        let base = std::env::var("SESSIONKIT_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let admin = match sqlx::MySqlPool::connect(&base).await {
            Ok(p) => p,
            Err(e) => return skip("mariadb", e),
        };
        let t = table();
        // A user of its own marks this store's connections.
        for host in ["%", "localhost"] {
            for stmt in [
                format!("CREATE USER IF NOT EXISTS '{t}'@'{host}'"),
                format!("GRANT ALL ON test.* TO '{t}'@'{host}'"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(stmt))
                    .execute(&admin)
                    .await
                    .expect("create the test user");
            }
        }
        let url = base.replacen("root@", &format!("{t}@"), 1);
        let store = SqlStore::builder()
            .table(&t)
            .max_connections(8)
            .acquire_timeout(ACQUIRE)
            .statement_timeout(STATEMENT)
            .connect(&url)
            .await
            .expect("connect the store as the test user");
        killed_mid_workload("mariadb kill", store, 6, || {
            let (admin, t) = (admin.clone(), t.clone());
            async move {
                let ids: Vec<u64> = sqlx::query_scalar(
                    "SELECT CAST(id AS UNSIGNED) FROM information_schema.processlist WHERE user = ?",
                )
                .bind(&t)
                .fetch_all(&admin)
                .await
                .unwrap_or_default();
                let mut n = 0;
                for id in ids {
                    if sqlx::query(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
                        .execute(&admin)
                        .await
                        .is_ok()
                    {
                        n += 1;
                    }
                }
                n
            }
        })
        .await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS `{t}`")))
            .execute(&admin)
            .await;
        let _ = sqlx::query("DELETE FROM sessionkit_migrations WHERE table_name = ?")
            .bind(&t)
            .execute(&admin)
            .await;
        for host in ["%", "localhost"] {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP USER IF EXISTS '{t}'@'{host}'"
            )))
            .execute(&admin)
            .await;
        }
    }
}
