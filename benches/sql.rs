//! SQL: `SqlStore` on SQLite (a file), PostgreSQL and MariaDB (MySQL) beside
//! raw sqlx running the same statements (`SqlStore::sql`) on the same table
//! through the same pool, and tower-sessions' `PostgresStore` / `MySqlStore`
//! (sqlx 0.8; its SQLite store cannot link beside sqlx 0.9); PostgreSQL and
//! MariaDB also at concurrency 64; SQLite load latency with N live rows
//! (`SESSIONKIT_BENCH_SCALE`); and the cost of `delete_expired` as expired
//! rows grow with live rows fixed (`SESSIONKIT_BENCH_EXPIRED`,
//! `SESSIONKIT_BENCH_LIVE`).
//!
//! PostgreSQL is `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), MariaDB `MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`; its groups need the `mysql` feature);
//! a server that does not answer makes its groups print `SKIPPED`. Every
//! table is created for the run and dropped after it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Contender, Op, Ops, Payload, Sess, Sk, Tower14};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sessionkit::sql::{SqlStore, Statement};
use sessionkit::{SessionId, SessionStore, Timestamp, async_trait};
use sqlx::Row;
use tokio::runtime::Runtime;

/// The statements of one store as `&'static str`, as a hand-written store
/// would have them.
#[derive(Clone, Copy)]
struct Stmts {
    create: &'static str,
    load: &'static str,
    save: &'static str,
    delete: &'static str,
}

impl Stmts {
    fn of(store: &SqlStore) -> Stmts {
        let leak =
            |s: Statement| -> &'static str { Box::leak(store.sql(s).to_owned().into_boxed_str()) };
        Stmts {
            create: leak(Statement::Create),
            load: leak(Statement::Load),
            save: leak(Statement::Save),
            delete: leak(Statement::Delete),
        }
    }
}

/// Raw sqlx: the store's own statements with plain binds. `$reclaim`: the
/// create statement ends with `expires_at <= ?` (the upsert of SQLite and
/// PostgreSQL; MySQL's is a plain insert).
macro_rules! raw_sql {
    ($name:ident, $pool:ty, $reclaim:expr) => {
        struct $name {
            pool: $pool,
            q: Stmts,
        }

        #[async_trait]
        impl Ops for $name {
            type H = (SessionId, i64, i64, Sess);
            async fn create(&self, data: &Sess) -> Self::H {
                let id = SessionId::generate();
                let now = Timestamp::now();
                let created = now.as_millis();
                let mut q = sqlx::query(self.q.create)
                    .bind(id.as_str())
                    .bind(None::<&str>)
                    .bind(common::encode(data))
                    .bind(1i64)
                    .bind(created)
                    .bind((now + common::IDLE).as_millis());
                if $reclaim {
                    q = q.bind(created);
                }
                let r = q.execute(&self.pool).await.expect("raw insert");
                assert_eq!(r.rows_affected(), 1);
                (id, 1, created, data.clone())
            }
            async fn load(&self, h: &Self::H) -> Sess {
                let row = sqlx::query(self.q.load)
                    .bind(h.0.as_str())
                    .bind(Timestamp::now().as_millis())
                    .fetch_optional(&self.pool)
                    .await
                    .expect("raw select")
                    .expect("live row");
                let payload: Vec<u8> = row.get(1);
                common::decode(&payload)
            }
            async fn save(&self, h: &mut Self::H) {
                let now = Timestamp::now();
                let r = sqlx::query(self.q.save)
                    .bind(None::<&str>)
                    .bind(common::encode(&h.3))
                    .bind(h.1 + 1)
                    .bind(h.2)
                    .bind((now + common::IDLE).as_millis())
                    .bind(h.0.as_str())
                    .bind(h.1)
                    .bind(now.as_millis())
                    .execute(&self.pool)
                    .await
                    .expect("raw update");
                assert_eq!(r.rows_affected(), 1);
                h.1 += 1;
            }
            async fn delete(&self, h: Self::H) {
                sqlx::query(self.q.delete)
                    .bind(h.0.as_str())
                    .bind(Timestamp::now().as_millis())
                    .execute(&self.pool)
                    .await
                    .expect("raw delete");
            }
        }
    };
}

raw_sql!(RawSqlite, sqlx::SqlitePool, true);
raw_sql!(RawPg, sqlx::PgPool, true);
raw_sql!(RawMy, sqlx::MySqlPool, false);

fn sqlite_url(tag: &str) -> String {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&dir).join("sessionkit-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    format!("sqlite://{}/bench-{tag}.sqlite", dir.display())
}

fn pg_url() -> String {
    common::env_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
}

fn mysql_url() -> String {
    common::env_url("MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
}

async fn sqlite_store(url: &str, table: &str) -> sessionkit::Result<SqlStore> {
    SqlStore::builder()
        .table(table)
        .max_connections(4)
        .statement_timeout(Duration::from_secs(10))
        .connect(url)
        .await
}

async fn pg_store(table: &str) -> sessionkit::Result<SqlStore> {
    SqlStore::builder()
        .table(table)
        .max_connections(16)
        .connect(&pg_url())
        .await
}

async fn mysql_store(table: &str) -> sessionkit::Result<SqlStore> {
    SqlStore::builder()
        .table(table)
        .max_connections(16)
        .connect(&mysql_url())
        .await
}

fn ops(c: &mut Criterion) {
    let rt = common::runtime();
    let payloads = Payload::both();
    let tag = common::run_tag();
    ops_sqlite(c, &rt, &payloads, &tag);
    ops_postgres(c, &rt, &payloads, &tag);
    ops_mysql(c, &rt, &payloads, &tag);
}

/// SQLite (a file in the target dir).
fn ops_sqlite(c: &mut Criterion, rt: &Runtime, payloads: &[Payload], tag: &str) {
    let url = sqlite_url(tag);
    if let Some(store) = common::probe(rt, "sqlite", sqlite_store(&url, "skb_ops")) {
        let raw = Arc::new(RawSqlite {
            pool: store.sqlite_pool().expect("sqlite pool").clone(),
            q: Stmts::of(&store),
        });
        let sk = Sk::new(store);
        common::compare_ops(
            c,
            rt,
            "sqlite",
            &[
                Contender::new("sessionkit", &sk),
                Contender::new("raw", &raw),
            ],
            payloads,
            &Op::ALL,
        );
    }
    remove_sqlite(&url);
}

/// sessionkit, raw sqlx and a tower-sessions store on one server: every
/// operation, then load and save at `SESSIONKIT_BENCH_TASKS` (64) tasks.
fn ops_server<R: Ops, T: Ops>(
    c: &mut Criterion,
    rt: &Runtime,
    backend: &str,
    payloads: &[Payload],
    sk: &Arc<Sk>,
    raw: &Arc<R>,
    tower: &Arc<T>,
) {
    let contenders = [
        Contender::new("sessionkit", sk),
        Contender::new("raw", raw),
        Contender::new("tower-sessions", tower),
    ];
    common::compare_ops(c, rt, backend, &contenders, payloads, &Op::ALL);
    let tasks = common::env_u64("SESSIONKIT_BENCH_TASKS", 64);
    common::compare_concurrent(c, rt, backend, &contenders, payloads, tasks);
}

/// PostgreSQL: `SqlStore`, raw sqlx and tower-sessions' `PostgresStore`.
fn ops_postgres(c: &mut Criterion, rt: &Runtime, payloads: &[Payload], tag: &str) {
    let table = format!("skb_{tag}");
    let Some(store) = common::probe(rt, "postgres", pg_store(&table)) else {
        return;
    };
    let pool = store.postgres_pool().expect("pg pool").clone();
    let raw = Arc::new(RawPg {
        pool: pool.clone(),
        q: Stmts::of(&store),
    });
    let sk = Sk::new(store);
    let tower_table = format!("tsb_{tag}");
    let tower = rt.block_on(async {
        use tower_sessions_sqlx_store::sqlx as sqlx08;
        let pool = sqlx08::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(&pg_url())
            .await
            .expect("sqlx 0.8 pool");
        let store = tower_sessions_sqlx_store::PostgresStore::new(pool)
            .with_table_name(&tower_table)
            .expect("table name");
        store.migrate().await.expect("tower migrate");
        Arc::new(Tower14(store))
    });
    ops_server(c, rt, "postgres", payloads, &sk, &raw, &tower);

    rt.block_on(async {
        for t in [
            format!("\"{table}\""),
            format!("\"tower_sessions\".\"{tower_table}\""),
        ] {
            let sql = format!("DROP TABLE IF EXISTS {t}");
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
                eprintln!("cleanup: {e}");
            }
        }
    });
}

/// MariaDB (MySQL): `SqlStore`, raw sqlx and tower-sessions' `MySqlStore`
/// (its table goes to the `tower_sessions` database, which its `migrate`
/// creates).
fn ops_mysql(c: &mut Criterion, rt: &Runtime, payloads: &[Payload], tag: &str) {
    let table = format!("skb_{tag}");
    let Some(store) = common::probe(rt, "mysql", mysql_store(&table)) else {
        return;
    };
    let pool = store.mysql_pool().expect("mysql pool").clone();
    let raw = Arc::new(RawMy {
        pool: pool.clone(),
        q: Stmts::of(&store),
    });
    let sk = Sk::new(store);
    let tower_table = format!("tsb_{tag}");
    let tower = rt.block_on(async {
        use tower_sessions_sqlx_store::sqlx as sqlx08;
        let pool = sqlx08::mysql::MySqlPoolOptions::new()
            .max_connections(16)
            .connect(&mysql_url())
            .await
            .expect("sqlx 0.8 pool");
        let store = tower_sessions_sqlx_store::MySqlStore::new(pool)
            .with_table_name(&tower_table)
            .expect("table name");
        store.migrate().await.expect("tower migrate");
        Arc::new(Tower14(store))
    });
    ops_server(c, rt, "mysql", payloads, &sk, &raw, &tower);

    rt.block_on(async {
        for t in [
            format!("`{table}`"),
            format!("`tower_sessions`.`{tower_table}`"),
        ] {
            let sql = format!("DROP TABLE IF EXISTS {t}");
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
                eprintln!("cleanup: {e}");
            }
        }
    });
}

fn remove_sqlite(url: &str) {
    let path = url.trim_start_matches("sqlite://");
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}

/// Rows inserted per statement when populating.
const BATCH: u64 = 500;

/// Inserts rows `from..to` (IDs derived from the index, so they never
/// collide) expiring at `expires_at`, in multi-row statements inside
/// transactions.
macro_rules! fill_fn {
    ($fn:ident, $db:ty, $pool:ty, $ph:expr) => {
        async fn $fn(pool: &$pool, table: &str, from: u64, to: u64, payload: &[u8], expires_at: i64, tag: u8) {
            let now = Timestamp::now().as_millis();
            let mut i = from;
            while i < to {
                let mut tx = pool.begin().await.expect("begin");
                let txn_end = (i + 50_000).min(to);
                while i < txn_end {
                    let end = (i + BATCH).min(txn_end);
                    let mut sql = format!(
                        "INSERT INTO \"{table}\" (id, subject, payload, version, created_at, expires_at) VALUES "
                    );
                    let mut n = 0usize;
                    for k in i..end {
                        if k > i {
                            sql.push(',');
                        }
                        sql.push('(');
                        for col in 0..6 {
                            if col > 0 {
                                sql.push(',');
                            }
                            n += 1;
                            sql.push_str(&$ph(n));
                        }
                        sql.push(')');
                    }
                    let mut q = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql));
                    for k in i..end {
                        let mut raw = [0u8; sessionkit::ID_BYTES];
                        raw[0] = tag;
                        raw[8..16].copy_from_slice(&k.to_be_bytes());
                        let id = SessionId::from_bytes(raw);
                        q = q
                            .bind(id.as_str().to_owned())
                            .bind(None::<String>)
                            .bind(payload.to_vec())
                            .bind(1i64)
                            .bind(now)
                            .bind(expires_at);
                    }
                    q.execute(&mut *tx).await.expect("batch insert");
                    i = end;
                }
                tx.commit().await.expect("commit");
            }
        }
    };
}

fill_fn!(fill_sqlite, sqlx::Sqlite, sqlx::SqlitePool, |_n: usize| "?"
    .to_owned());
fill_fn!(fill_pg, sqlx::Postgres, sqlx::PgPool, |n: usize| format!(
    "${n}"
));

/// SQLite load latency with N live rows (200-byte payload).
fn scale(c: &mut Criterion) {
    let rt = common::runtime();
    let sizes = common::env_sizes("SESSIONKIT_BENCH_SCALE", &[1_000, 100_000]);
    let p = Payload::sized("200B", 200);
    let tag = common::run_tag();
    let url = sqlite_url(&format!("scale-{tag}"));
    let Some(store) = common::probe(&rt, "sqlite", sqlite_store(&url, "skb_scale")) else {
        return;
    };
    let pool = store.sqlite_pool().expect("pool").clone();
    let payload = sessionkit::Envelope::write(common::codec(), 1, &common::encode(&p.data));
    let expires = (Timestamp::now() + common::IDLE).as_millis();
    let sk = Sk::new(store);
    let mut have = 0u64;
    let mut g = c.benchmark_group("scale/load");
    for &n in &sizes {
        let (_, took) = rt.block_on(common::timed(fill_sqlite(
            &pool,
            "skb_scale",
            have,
            n.max(have),
            &payload,
            expires,
            1,
        )));
        eprintln!("sqlite: populated {n} rows in {took:?}");
        have = have.max(n);
        g.bench_function(BenchmarkId::new("sqlite", n), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| common::time_op(&*sk, Op::Load, &p.data, iters));
        });
    }
    g.finish();
    drop(sk);
    rt.block_on(pool.close());
    remove_sqlite(&url);
}

/// `delete_expired` with a fixed number of live rows
/// (`SESSIONKIT_BENCH_LIVE`, default `10000`; a list gives several levels)
/// and a growing number of expired rows (`SESSIONKIT_BENCH_EXPIRED`): each
/// point is the median of 3 runs, each on freshly inserted expired rows.
/// Written to `criterion/sessionkit-extra/delete_expired.json`.
fn delete_expired(_c: &mut Criterion) {
    let rt = common::runtime();
    let lives = common::env_sizes("SESSIONKIT_BENCH_LIVE", &[10_000]);
    let expired = common::env_sizes("SESSIONKIT_BENCH_EXPIRED", &[1_000, 10_000, 50_000]);
    let p = Payload::sized("200B", 200);
    let payload = sessionkit::Envelope::write(common::codec(), 1, &common::encode(&p.data));
    let tag = common::run_tag();
    let mut points = Vec::new();

    let url = sqlite_url(&format!("gc-{tag}"));
    if let Some(store) = common::probe(&rt, "sqlite", sqlite_store(&url, "skb_gc")) {
        let pool = store.sqlite_pool().expect("pool").clone();
        gc_series(
            &rt,
            "sqlite",
            &store,
            &lives,
            &expired,
            &mut points,
            |from, to, exp, t| {
                let pool = pool.clone();
                let payload = payload.clone();
                async move { fill_sqlite(&pool, "skb_gc", from, to, &payload, exp, t).await }
            },
        );
        rt.block_on(pool.close());
    }
    remove_sqlite(&url);

    let table = format!("skb_gc_{tag}");
    if let Some(store) = common::probe(&rt, "postgres", pg_store(&table)) {
        let pool = store.postgres_pool().expect("pool").clone();
        gc_series(
            &rt,
            "postgres",
            &store,
            &lives,
            &expired,
            &mut points,
            |from, to, exp, t| {
                let pool = pool.clone();
                let payload = payload.clone();
                let table = table.clone();
                async move { fill_pg(&pool, &table, from, to, &payload, exp, t).await }
            },
        );
        rt.block_on(async {
            let sql = format!("DROP TABLE IF EXISTS \"{table}\"");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        });
    }
    common::write_extra("delete_expired", format!("[{}]", points.join(",")));
}

/// One backend's `delete_expired` series; `fill(from, to, expires_at, tag)`
/// inserts rows.
fn gc_series<F, Fut>(
    rt: &Runtime,
    backend: &str,
    store: &SqlStore,
    lives: &[u64],
    expired: &[u64],
    points: &mut Vec<String>,
    fill: F,
) where
    F: Fn(u64, u64, i64, u8) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let future = (Timestamp::now() + common::IDLE).as_millis();
    let past = (Timestamp::now() - Duration::from_secs(60)).as_millis();
    let mut have_live = 0;
    let mut next = 0;
    for &live in lives {
        if live > have_live {
            rt.block_on(fill(have_live, live, future, 1));
            have_live = live;
        }
        for &e in expired {
            let mut runs = Vec::new();
            for _ in 0..3 {
                rt.block_on(fill(next, next + e, past, 2));
                next += e;
                let (n, took) = rt.block_on(common::timed(store.delete_expired()));
                assert_eq!(n.expect("delete_expired"), e);
                runs.push(took);
            }
            let ns = common::median_ns(runs);
            eprintln!(
                "{backend} delete_expired: live {live}, expired {e}: {:.3} ms",
                ns / 1e6
            );
            points.push(format!(
                "{{\"backend\":\"{backend}\",\"live\":{live},\"expired\":{e},\"ns\":{ns}}}"
            ));
        }
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = ops, scale, delete_expired
}
criterion_main!(benches);
