//! SQL-specific behaviour beyond the conformance suite: migrations (twice,
//! concurrently), index use shown by EXPLAIN, connections killed by the
//! server, statement timeouts, batched cleanup and the cleanup task.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "mysql"))]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Scoped;
use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};
use sessionkit_sql::{SqlStore, Statement, spawn_cleanup, sqlx};
use sqlx::Row;

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

/// Replaces the placeholders of a statement (`?` or `$n`) by literals, in
/// order, so that it can be EXPLAINed as plain text.
fn inline(sql: &str, values: &[&str]) -> String {
    if sql.contains("$1") {
        let mut out = sql.to_owned();
        for (i, v) in values.iter().enumerate().rev() {
            out = out.replace(&format!("${}", i + 1), v);
        }
        out
    } else {
        let mut parts = sql.split('?');
        let mut out = parts.next().unwrap_or_default().to_owned();
        for (part, v) in parts.zip(values.iter().chain(std::iter::repeat(&"NULL"))) {
            out.push_str(v);
            out.push_str(part);
        }
        out
    }
}

fn assert_transient_backend(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(
            e @ Error::Backend {
                transient: true, ..
            },
        ) => {
            eprintln!("{what}: got the expected transient error: {e}");
        }
        other => panic!("{what}: expected a transient backend error, got {other:?}"),
    }
}

fn assert_permanent_backend(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(
            e @ Error::Backend {
                transient: false, ..
            },
        ) => {
            assert!(!e.is_transient(), "{what}: {e} claims to be transient");
            eprintln!("{what}: got the expected non-transient error: {e}");
        }
        other => panic!("{what}: expected a non-transient backend error, got {other:?}"),
    }
}

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

// ---------------------------------------------------------------- migrations

#[tokio::test]
async fn invalid_table_names_are_rejected_before_any_sql() {
    for bad in [
        "",
        "1abc",
        "a-b",
        "sessions; DROP TABLE users",
        "sp ace",
        "ä",
        &"x".repeat(64),
    ] {
        let result = SqlStore::builder()
            .table(bad)
            .connect("sqlite::memory:")
            .await;
        assert!(
            matches!(result, Err(Error::Config(_))),
            "{bad:?} was accepted"
        );
    }
    let result = SqlStore::builder()
        .schema("app")
        .connect("sqlite::memory:")
        .await;
    assert!(
        matches!(result, Err(Error::Config(_))),
        "a schema on SQLite was accepted"
    );
}

async fn migrations_twice_and_concurrently(first: Scoped, second: Scoped, third: Scoped) {
    // `first` migrated when it was built; again is a no-op.
    first.migrate().await.expect("second migration run");
    first.migrate().await.expect("third migration run");
    let r = record(Some("m"), Timestamp::now() + HOUR);
    first.create(&r).await.expect("create after re-migration");
    assert_eq!(first.load(&r.id).await.expect("load").as_ref(), Some(&r));

    // `second` and `third` point at one fresh table through two pools and
    // were built without migrating: run both at once.
    assert_eq!(second.table(), third.table());
    let (a, b) = tokio::join!(second.migrate(), third.migrate());
    a.expect("concurrent migration A");
    b.expect("concurrent migration B");
    let r = record(None, Timestamp::now() + HOUR);
    second.create(&r).await.expect("create");
    assert_eq!(third.load(&r.id).await.expect("load").as_ref(), Some(&r));
}

#[tokio::test]
async fn migrations_sqlite() {
    let path = common::sqlite_path();
    let first = Scoped::new(
        common::options(&common::random_table())
            .connect_sqlite(common::sqlite_file_options(&path))
            .await
            .expect("sqlite"),
        common::Cleanup::SqliteFile(path.clone()),
    );
    let table = common::random_table();
    let mk = || async {
        common::options(&table)
            .migrate(false)
            .connect_sqlite(common::sqlite_file_options(&path))
            .await
            .expect("sqlite")
    };
    let (second, third) = (mk().await, mk().await);
    migrations_twice_and_concurrently(first, Scoped::unscoped(second), Scoped::unscoped(third))
        .await;
}

#[tokio::test]
async fn migrations_postgres() {
    let Some(first) = common::postgres_store().await else {
        return;
    };
    let table = common::random_table();
    let Some(second) =
        common::postgres_store_with(common::options(&table).migrate(false), &table).await
    else {
        return;
    };
    let Some(third) =
        common::postgres_store_with(common::options(&table).migrate(false), &table).await
    else {
        return;
    };
    migrations_twice_and_concurrently(first, second, third).await;
}

#[tokio::test]
async fn migrations_postgres_in_own_schema() {
    let schema = format!("skt_schema_{}", common::random_hex(6));
    let table = "sessions";
    let mk = |migrate: bool| {
        let schema = schema.clone();
        async move {
            common::options(table)
                .schema(schema)
                .migrate(migrate)
                .connect(&common::postgres_url())
                .await
        }
    };
    // Probes the server (and skips without one).
    if common::postgres_store().await.is_none() {
        return;
    }
    let first = mk(true).await.expect("build the store in its own schema");
    let (a, b) = tokio::join!(mk(true), mk(true));
    let (a, b) = (
        a.expect("concurrent build A"),
        b.expect("concurrent build B"),
    );
    let r = record(Some("s"), Timestamp::now() + HOUR);
    a.create(&r).await.expect("create");
    assert_eq!(b.load(&r.id).await.expect("load").as_ref(), Some(&r));
    let pool = first.postgres_pool().expect("pg pool");
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".sessionkit_migrations WHERE table_name = 'sessions'"
    )))
    .fetch_one(pool)
    .await
    .expect("count migrations");
    assert_eq!(rows, 1, "one migration row for the table");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .expect("drop schema");
}

#[tokio::test]
async fn migrations_mysql() {
    let Some(first) = common::mysql_store().await else {
        return;
    };
    let table = common::random_table();
    let Some(second) =
        common::mysql_store_with(common::options(&table).migrate(false), &table).await
    else {
        return;
    };
    let Some(third) =
        common::mysql_store_with(common::options(&table).migrate(false), &table).await
    else {
        return;
    };
    migrations_twice_and_concurrently(first, second, third).await;
}

// ------------------------------------------------------------------- EXPLAIN

/// Rows under many subjects, one in ten expired (as in a table that is
/// purged regularly), so that an index is the sensible plan: MariaDB rightly
/// scans the whole table when most rows would match.
async fn fill(store: &SqlStore) {
    let now = Timestamp::now();
    for i in 0..200u32 {
        let expires = if i % 10 == 0 { now - HOUR } else { now + HOUR };
        let r = record(Some(&format!("user-{i}")), expires);
        store.create(&r).await.expect("fill");
    }
}

#[tokio::test]
async fn explain_sqlite_uses_indexes() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    fill(&store).await;
    let pool = store.sqlite_pool().expect("sqlite pool");
    let table = store.table().to_owned();
    for (statement, index) in [
        (
            Statement::DeleteExpiredBatch,
            format!("{table}_expires_idx"),
        ),
        (Statement::ListSubject, format!("{table}_subject_idx")),
    ] {
        let sql = format!("EXPLAIN QUERY PLAN {}", store.sql(statement));
        let q = sqlx::query(sqlx::AssertSqlSafe(sql));
        let q = match statement {
            Statement::ListSubject => q.bind("user-4").bind(Timestamp::now().as_millis()),
            _ => q.bind(Timestamp::now().as_millis()).bind(1000i64),
        };
        let plan: Vec<String> = q
            .fetch_all(pool)
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        eprintln!("{statement:?}: {plan:?}");
        assert!(
            plan.iter().any(|line| line.contains(&index)),
            "{statement:?} does not use {index}: {plan:?}"
        );
    }
}

#[tokio::test]
async fn explain_postgres_uses_indexes() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    fill(&store).await;
    let pool = store.postgres_pool().expect("pg pool");
    let table = store.table().to_owned();
    let mut conn = pool.acquire().await.expect("acquire");
    // On a table this small a sequential scan is cheapest, so the planner
    // would rightly not pick the index; disabling sequential scans for this
    // session shows that the index *can* serve the statement (it would be
    // chosen on a realistically large table).
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    let now = Timestamp::now().as_millis().to_string();
    for (statement, values, index) in [
        (
            Statement::DeleteExpiredBatch,
            vec![now.as_str(), "1000"],
            format!("{table}_expires_idx"),
        ),
        (
            Statement::ListSubject,
            vec!["'user-4'", now.as_str()],
            format!("{table}_subject_idx"),
        ),
    ] {
        let sql = format!("EXPLAIN {}", inline(store.sql(statement), &values));
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .expect("explain");
        eprintln!("{statement:?}: {plan:#?}");
        assert!(
            plan.iter().any(|line| line.contains(&index)),
            "{statement:?} does not use {index}: {plan:#?}"
        );
    }
}

#[tokio::test]
async fn explain_mysql_uses_indexes() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    fill(&store).await;
    let pool = store.mysql_pool().expect("mysql pool");
    let table = store.table().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE TABLE `{table}`")))
        .execute(pool)
        .await
        .expect("analyze");
    let now = Timestamp::now().as_millis().to_string();
    for (statement, values, index) in [
        (
            Statement::DeleteExpiredBatch,
            vec![now.as_str(), "1000"],
            format!("{table}_expires_idx"),
        ),
        (
            Statement::ListSubject,
            vec!["'user-4'", now.as_str()],
            format!("{table}_subject_idx"),
        ),
    ] {
        let sql = format!("EXPLAIN {}", inline(store.sql(statement), &values));
        let keys: Vec<Option<String>> = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .expect("explain")
            .iter()
            .map(|row| row.try_get::<Option<String>, _>("key").expect("key column"))
            .collect();
        eprintln!("{statement:?}: key = {keys:?}");
        assert!(
            keys.iter().flatten().any(|k| k == &index),
            "{statement:?} does not use {index}: {keys:?}"
        );
    }
}

// ------------------------------------------- single-row statements: by key

/// A bound value, typed as the store binds it.
enum P {
    Text(String),
    OptText(Option<String>),
    Bytes(Vec<u8>),
    Int(i64),
}

/// Binds `params` in order, with the types the store uses.
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                P::Text(v) => q.bind(v.clone()),
                P::OptText(v) => q.bind(v.clone()),
                P::Bytes(v) => q.bind(v.clone()),
                P::Int(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// Every statement that addresses one row by ID, with parameters as the
/// store binds them for the record `id` at version 1.
fn single_row_statements(id: &str) -> Vec<(Statement, Vec<P>)> {
    let now = Timestamp::now().as_millis();
    let later = (Timestamp::now() + HOUR).as_millis();
    let id = || P::Text(id.to_owned());
    vec![
        (Statement::Load, vec![id(), P::Int(now)]),
        (Statement::LiveVersion, vec![id(), P::Int(now)]),
        (
            Statement::Save,
            vec![
                P::OptText(Some("s".into())),
                P::Bytes(b"x".to_vec()),
                P::Int(2),
                P::Int(now),
                P::Int(later),
                id(),
                P::Int(1),
                P::Int(now),
            ],
        ),
        (Statement::Touch, vec![P::Int(later), id(), P::Int(now)]),
        (Statement::Delete, vec![id(), P::Int(now)]),
        (
            Statement::CompareAndDelete,
            vec![id(), P::Int(1), P::Int(now)],
        ),
        (Statement::ReclaimExpired, vec![id(), P::Int(now)]),
    ]
}

/// The single-row statements must find (and so lock) their row through the
/// primary key and nothing else: on MariaDB a range scan of the
/// `expires_at` index took that index entry's lock before the primary key's,
/// the opposite order of a concurrent update of the same row, and `update`
/// failed with deadlocks (error 1213) under contention. Checked on a table
/// of one live row (the contention case, where the old statements were
/// planned on `expires_at`) and on a filled one, with EXPLAIN run as a
/// prepared statement with the parameters bound exactly as the store binds
/// them.
#[tokio::test]
async fn explain_mysql_single_row_statements_use_only_the_primary_key() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    let pool = store.mysql_pool().expect("mysql pool");
    let table = store.table().to_owned();
    let live = record(Some("one"), Timestamp::now() + HOUR);
    store.create(&live).await.expect("create");
    store
        .create(&record(Some("one"), Timestamp::now() - HOUR))
        .await
        .expect("create expired");
    for filled in [false, true] {
        if filled {
            fill(&store).await;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE TABLE `{table}`")))
            .execute(pool)
            .await
            .expect("analyze");
        for (statement, params) in single_row_statements(live.id.as_str()) {
            let sql = format!("EXPLAIN {}", store.sql(statement));
            let q = bind_params!(sqlx::query(sqlx::AssertSqlSafe(sql)), &params);
            let rows = q.fetch_all(pool).await.expect("explain");
            assert_eq!(rows.len(), 1, "{statement:?}: one table");
            let column = |name: &str| {
                rows[0]
                    .try_get::<Option<String>, _>(name)
                    .expect("EXPLAIN column")
                    .unwrap_or_default()
            };
            let (possible, key, access) = (column("possible_keys"), column("key"), column("type"));
            eprintln!(
                "{statement:?} (filled: {filled}): type {access}, possible_keys {possible}, key {key}"
            );
            assert_eq!(key, "PRIMARY", "{statement:?} must use the primary key");
            assert_eq!(
                possible, "PRIMARY",
                "{statement:?}: no other index may be usable (it could take locks)"
            );
        }
    }
}

#[tokio::test]
async fn explain_postgres_single_row_statements_use_the_primary_key() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    let live = record(Some("one"), Timestamp::now() + HOUR);
    store.create(&live).await.expect("create");
    fill(&store).await;
    let pool = store.postgres_pool().expect("pg pool");
    let pkey = format!("{}_pkey", store.table());
    let mut conn = pool.acquire().await.expect("acquire");
    // As above: the table is small; show that the key can serve them.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    for (statement, params) in single_row_statements(live.id.as_str()) {
        let sql = format!("EXPLAIN {}", store.sql(statement));
        let q = bind_params!(
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)),
            &params
        );
        let plan: Vec<String> = q.fetch_all(&mut *conn).await.expect("explain");
        eprintln!("{statement:?}: {plan:#?}");
        assert!(
            plan.iter().any(|line| line.contains(&pkey)),
            "{statement:?} does not use {pkey}: {plan:#?}"
        );
    }
}

#[tokio::test]
async fn explain_sqlite_single_row_statements_use_the_primary_key() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    let live = record(Some("one"), Timestamp::now() + HOUR);
    store.create(&live).await.expect("create");
    fill(&store).await;
    let pool = store.sqlite_pool().expect("sqlite pool");
    for (statement, params) in single_row_statements(live.id.as_str()) {
        let sql = format!("EXPLAIN QUERY PLAN {}", store.sql(statement));
        let q = bind_params!(sqlx::query(sqlx::AssertSqlSafe(sql)), &params);
        let plan: Vec<String> = q
            .fetch_all(pool)
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        eprintln!("{statement:?}: {plan:?}");
        // A TEXT primary key is served by its automatic unique index.
        assert!(
            plan.iter()
                .any(|line| line.contains("sqlite_autoindex") && line.contains("(id=?)")),
            "{statement:?} does not search by the primary key: {plan:?}"
        );
    }
}

// ------------------------------------------------- scan: a primary-key range

/// The parameters of one `scan` page as the store binds them: after the
/// smallest live ID (bytes on SQLite, text elsewhere), now, 16 rows.
async fn scan_params(store: &SqlStore, bytes: bool) -> Vec<P> {
    let page = store.scan(None, 1).await.expect("scan");
    let after = page.records[0].id.as_str().to_owned();
    let after = if bytes {
        P::Bytes(after.into_bytes())
    } else {
        P::Text(after)
    };
    vec![after, P::Int(Timestamp::now().as_millis()), P::Int(16)]
}

/// A `scan` page is a range of the primary key read in key order: no other
/// index, no sort of every live row per page.
#[tokio::test]
async fn explain_sqlite_scan_is_a_primary_key_range() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    fill(&store).await;
    let pool = store.sqlite_pool().expect("sqlite pool");
    let sql = format!("EXPLAIN QUERY PLAN {}", store.sql(Statement::Scan));
    let params = scan_params(&store, true).await;
    let q = bind_params!(sqlx::query(sqlx::AssertSqlSafe(sql)), &params);
    let plan: Vec<String> = q
        .fetch_all(pool)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect();
    eprintln!("Scan: {plan:?}");
    assert!(
        plan.iter()
            .any(|line| line.contains("sqlite_autoindex") && line.contains("(id>?)")),
        "scan is not a range of the primary key: {plan:?}"
    );
    assert!(
        !plan.iter().any(|line| line.contains("TEMP B-TREE")),
        "scan sorts its rows: {plan:?}"
    );
}

#[tokio::test]
async fn explain_postgres_scan_is_a_primary_key_range() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    fill(&store).await;
    let pool = store.postgres_pool().expect("pg pool");
    let pkey = format!("{}_pkey", store.table());
    let mut conn = pool.acquire().await.expect("acquire");
    // As above: the table is small; show that the key can serve it.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    let sql = format!("EXPLAIN {}", store.sql(Statement::Scan));
    let params = scan_params(&store, false).await;
    let q = bind_params!(
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)),
        &params
    );
    let plan: Vec<String> = q.fetch_all(&mut *conn).await.expect("explain");
    eprintln!("Scan: {plan:#?}");
    assert!(
        plan.iter()
            .any(|line| line.contains("Index Scan") && line.contains(&pkey)),
        "scan does not read {pkey} in order: {plan:#?}"
    );
    assert!(
        !plan
            .iter()
            .any(|line| line.trim_start().starts_with("Sort") || line.contains("-> Sort")),
        "scan sorts its rows: {plan:#?}"
    );
}

#[tokio::test]
async fn explain_mysql_scan_is_a_primary_key_range() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    fill(&store).await;
    let pool = store.mysql_pool().expect("mysql pool");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ANALYZE TABLE `{}`",
        store.table()
    )))
    .execute(pool)
    .await
    .expect("analyze");
    let sql = format!("EXPLAIN {}", store.sql(Statement::Scan));
    let params = scan_params(&store, false).await;
    let q = bind_params!(sqlx::query(sqlx::AssertSqlSafe(sql)), &params);
    let rows = q.fetch_all(pool).await.expect("explain");
    assert_eq!(rows.len(), 1, "one table");
    let column = |name: &str| {
        rows[0]
            .try_get::<Option<String>, _>(name)
            .expect("EXPLAIN column")
            .unwrap_or_default()
    };
    let (possible, key, access, extra) = (
        column("possible_keys"),
        column("key"),
        column("type"),
        column("Extra"),
    );
    eprintln!("Scan: type {access}, possible_keys {possible}, key {key}, extra {extra}");
    assert_eq!(key, "PRIMARY", "scan must read the primary key");
    assert_eq!(access, "range", "scan must be a range of the primary key");
    assert_eq!(possible, "PRIMARY", "no other index may serve scan");
    assert!(!extra.contains("filesort"), "scan sorts its rows: {extra}");
}

// ---------------------------------------------------- killed connections

/// Holds the row lock of `id` from another connection so that the store's
/// `save` waits inside the server, where it can be killed or time out.
#[tokio::test]
async fn postgres_connection_killed_mid_statement_is_transient() {
    let table = common::random_table();
    let Some(store) =
        common::postgres_store_with(common::options(&table).max_connections(1), &table).await
    else {
        return;
    };
    let r = record(Some("k"), Timestamp::now() + HOUR);
    store.create(&r).await.expect("create");

    let pool = sqlx::PgPool::connect(&common::postgres_url())
        .await
        .expect("second pool");
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM \"{table}\" WHERE id = $1 FOR UPDATE"
    )))
    .bind(r.id.as_str())
    .execute(&mut *holder)
    .await
    .expect("lock the row");

    let saver = {
        let (store, r) = (store.store.clone(), r.clone());
        tokio::spawn(async move { store.save(&r).await })
    };
    let pattern = format!("UPDATE \"{table}\"%");
    let pid: i32 = poll("the blocked UPDATE", || async {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND wait_event_type = 'Lock'",
        )
        .bind(&pattern)
        .fetch_optional(&pool)
        .await
        .expect("pg_stat_activity")
    })
    .await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .expect("terminate");
    assert!(killed);
    let result = tokio::time::timeout(Duration::from_secs(10), saver)
        .await
        .expect("save returns after the kill")
        .expect("join");
    assert_transient_backend(result, "save on a terminated connection");
    holder.rollback().await.expect("rollback");

    // The same store works on the next calls (a fresh connection).
    assert_eq!(
        store.load(&r.id).await.expect("load after kill").as_ref(),
        Some(&r)
    );
    assert_eq!(store.save(&r).await.expect("save after kill"), 2);
    pool.close().await;
}

#[tokio::test]
async fn mysql_connection_killed_mid_statement_is_transient() {
    let table = common::random_table();
    let Some(store) =
        common::mysql_store_with(common::options(&table).max_connections(1), &table).await
    else {
        return;
    };
    let r = record(Some("k"), Timestamp::now() + HOUR);
    store.create(&r).await.expect("create");

    let pool = sqlx::MySqlPool::connect(&common::mysql_url())
        .await
        .expect("second pool");
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM `{table}` WHERE id = ? FOR UPDATE"
    )))
    .bind(r.id.as_str())
    .execute(&mut *holder)
    .await
    .expect("lock the row");

    let saver = {
        let (store, r) = (store.store.clone(), r.clone());
        tokio::spawn(async move { store.save(&r).await })
    };
    let pattern = format!("UPDATE `{table}`%");
    let id: u64 = poll("the blocked UPDATE", || async {
        sqlx::query_scalar(
            "SELECT CAST(id AS UNSIGNED) FROM information_schema.processlist WHERE info LIKE ? AND command <> 'Sleep'",
        )
        .bind(&pattern)
        .fetch_optional(&pool)
        .await
        .expect("processlist")
    })
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("KILL {id}")))
        .execute(&pool)
        .await
        .expect("kill");
    let result = tokio::time::timeout(Duration::from_secs(10), saver)
        .await
        .expect("save returns after the kill")
        .expect("join");
    assert_transient_backend(result, "save on a killed connection");
    holder.rollback().await.expect("rollback");

    assert_eq!(
        store.load(&r.id).await.expect("load after kill").as_ref(),
        Some(&r)
    );
    assert_eq!(store.save(&r).await.expect("save after kill"), 2);
    pool.close().await;
}

// ---------------------------------------------------- statement timeouts

#[tokio::test]
async fn postgres_statement_timeout_is_typed() {
    let table = common::random_table();
    let opts = common::options(&table).statement_timeout(Duration::from_millis(300));
    let Some(store) = common::postgres_store_with(opts, &table).await else {
        return;
    };
    let r = record(None, Timestamp::now() + HOUR);
    store.create(&r).await.expect("create");

    let pool = sqlx::PgPool::connect(&common::postgres_url())
        .await
        .expect("second pool");
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM \"{table}\" WHERE id = $1 FOR UPDATE"
    )))
    .bind(r.id.as_str())
    .execute(&mut *holder)
    .await
    .expect("lock the row");
    let result = tokio::time::timeout(Duration::from_secs(10), store.save(&r))
        .await
        .expect("the server cancels the statement");
    assert!(
        matches!(result, Err(Error::Timeout(Some(d))) if d == Duration::from_millis(300)),
        "expected Error::Timeout(300ms), got {result:?}"
    );
    holder.rollback().await.expect("rollback");
    assert_eq!(store.save(&r).await.expect("save after the timeout"), 2);
    pool.close().await;
}

#[tokio::test]
async fn mysql_statement_timeout_is_typed() {
    let table = common::random_table();
    let opts = common::options(&table).statement_timeout(Duration::from_millis(300));
    let Some(store) = common::mysql_store_with(opts, &table).await else {
        return;
    };
    let r = record(None, Timestamp::now() + HOUR);
    store.create(&r).await.expect("create");

    let pool = sqlx::MySqlPool::connect(&common::mysql_url())
        .await
        .expect("second pool");
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM `{table}` WHERE id = ? FOR UPDATE"
    )))
    .bind(r.id.as_str())
    .execute(&mut *holder)
    .await
    .expect("lock the row");
    let result = tokio::time::timeout(Duration::from_secs(10), store.save(&r))
        .await
        .expect("the server cancels the statement");
    assert!(
        matches!(result, Err(Error::Timeout(Some(d))) if d == Duration::from_millis(300)),
        "expected Error::Timeout(300ms), got {result:?}"
    );
    holder.rollback().await.expect("rollback");
    assert_eq!(store.save(&r).await.expect("save after the timeout"), 2);
    pool.close().await;
}

#[tokio::test]
async fn sqlite_busy_timeout_is_typed() {
    let path = common::sqlite_path();
    let store = common::options(&common::random_table())
        .statement_timeout(Duration::from_millis(200))
        .connect_sqlite(common::sqlite_file_options(&path).busy_timeout(Duration::from_secs(10)))
        .await
        .expect("sqlite");
    let store = Scoped::new(store, common::Cleanup::SqliteFile(path.clone()));
    let r = record(None, Timestamp::now() + HOUR);
    store.create(&r).await.expect("create");

    // Another connection takes the write lock and keeps it.
    use sqlx::Connection;
    let mut holder = sqlx::SqliteConnection::connect_with(&common::sqlite_file_options(&path))
        .await
        .expect("second connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("take the write lock");
    let result = tokio::time::timeout(Duration::from_secs(10), store.save(&r))
        .await
        .expect("the busy timeout ends the wait");
    assert!(
        matches!(result, Err(Error::Timeout(Some(d))) if d == Duration::from_millis(200)),
        "expected Error::Timeout(200ms), got {result:?}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
    holder.close().await.expect("close");
    assert_eq!(
        store.save(&r).await.expect("save after the lock is gone"),
        2
    );
}

/// The limit a timeout reports is the real one or none: a statement
/// timeout set on a pool the store did not configure is unknown to it
/// (`None`, never a made-up zero); SQLite's busy timeout is read from the
/// connection even when only the connect options set it.
#[tokio::test]
async fn timeout_limits_are_real_or_none() {
    // PostgreSQL: statement_timeout set by the application's own pool.
    let table = common::random_table();
    let Some(scope) = common::postgres_store_with(common::options(&table), &table).await else {
        return;
    };
    let opts: sqlx::postgres::PgConnectOptions =
        common::postgres_url().parse().expect("postgres url");
    let own_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts.options([("statement_timeout", "300ms")]))
        .await
        .expect("own pool");
    let store = common::options(&table)
        .migrate(false)
        .with_postgres_pool(own_pool)
        .await
        .expect("store on the own pool");
    let r = record(None, Timestamp::now() + HOUR);
    store.create(&r).await.expect("create");
    let pool = scope.postgres_pool().expect("pg pool");
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM \"{table}\" WHERE id = $1 FOR UPDATE"
    )))
    .bind(r.id.as_str())
    .execute(&mut *holder)
    .await
    .expect("lock the row");
    let result = store.save(&r).await;
    assert!(
        matches!(result, Err(Error::Timeout(None))),
        "expected Error::Timeout(None), got {result:?}"
    );
    holder.rollback().await.expect("rollback");

    // SQLite: the busy timeout of the connect options, no statement timeout.
    use sqlx::Connection;
    let path = common::sqlite_path();
    let store = common::options(&common::random_table())
        .connect_sqlite(common::sqlite_file_options(&path).busy_timeout(Duration::from_millis(250)))
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
    let result = store.save(&r).await;
    assert!(
        matches!(result, Err(Error::Timeout(Some(d))) if d == Duration::from_millis(250)),
        "expected Error::Timeout(Some(250ms)), got {result:?}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
    holder.close().await.expect("close");
}

// ------------------------------------------------------------------ cleanup

async fn batched_purge(store: Scoped) {
    let now = Timestamp::now();
    let expired: Vec<Record> = (0..23).map(|_| record(Some("purge"), now - HOUR)).collect();
    let live: Vec<Record> = (0..3).map(|_| record(Some("purge"), now + HOUR)).collect();
    for r in expired.iter().chain(&live) {
        store.create(r).await.expect("create");
    }
    assert_eq!(store.delete_expired().await.expect("purge"), 23);
    assert_eq!(store.delete_expired().await.expect("purge again"), 0);
    for r in &live {
        assert_eq!(store.load(&r.id).await.expect("load").as_ref(), Some(r));
    }
}

#[tokio::test]
async fn delete_expired_in_small_batches_sqlite() {
    let path = common::sqlite_path();
    let store = common::options(&common::random_table())
        .cleanup_batch_size(5)
        .connect_sqlite(common::sqlite_file_options(&path))
        .await
        .expect("sqlite");
    batched_purge(Scoped::new(store, common::Cleanup::SqliteFile(path))).await;
}

#[tokio::test]
async fn delete_expired_in_small_batches_postgres() {
    let table = common::random_table();
    let Some(store) =
        common::postgres_store_with(common::options(&table).cleanup_batch_size(5), &table).await
    else {
        return;
    };
    batched_purge(store).await;
}

#[tokio::test]
async fn delete_expired_in_small_batches_mysql() {
    let table = common::random_table();
    let Some(store) =
        common::mysql_store_with(common::options(&table).cleanup_batch_size(5), &table).await
    else {
        return;
    };
    batched_purge(store).await;
}

async fn row_count(store: &SqlStore) -> i64 {
    let sql = format!("SELECT count(*) FROM \"{}\"", store.table());
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.sqlite_pool().expect("sqlite"))
        .await
        .expect("count")
}

#[tokio::test]
async fn cleanup_task_purges_and_stops_on_shutdown() {
    let Some(store) = common::sqlite_memory_store().await else {
        return;
    };
    let now = Timestamp::now();
    for _ in 0..10 {
        store
            .create(&record(None, now - HOUR))
            .await
            .expect("create");
    }
    let live = record(None, now + HOUR);
    store.create(&live).await.expect("create");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = spawn_cleanup(store.store.clone(), Duration::from_millis(20), async move {
        let _ = stopped.await;
    });
    poll("the cleanup task to purge", || async {
        (row_count(&store).await == 1).then_some(())
    })
    .await;
    assert!(store.load(&live.id).await.expect("load").is_some());
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task stops on shutdown")
        .expect("the task did not panic");
}

#[tokio::test]
async fn cleanup_task_survives_errors() {
    let Some(store) = common::sqlite_memory_store().await else {
        return;
    };
    // A closed pool makes every purge fail: the task must keep running
    // (logging and retrying) until it is told to stop.
    store.close().await;
    assert_permanent_backend(store.delete_expired().await, "purge on a closed pool");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = spawn_cleanup(store.store.clone(), Duration::from_millis(10), async move {
        let _ = stopped.await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !task.is_finished(),
        "the cleanup task exited after an error"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task stops on shutdown")
        .expect("the task did not panic");
}

// ------------------------------------------------------------- closed pool

/// A closed pool stays closed: every call fails with a backend error that
/// does not claim a retry could succeed.
async fn closed_pool_is_not_transient(store: Scoped) {
    let r = record(Some("closed"), Timestamp::now() + HOUR);
    store.create(&r).await.expect("create before close");
    store.close().await;
    assert_permanent_backend(
        store.create(&record(None, Timestamp::now() + HOUR)).await,
        "create",
    );
    assert_permanent_backend(store.load(&r.id).await, "load");
    assert_permanent_backend(store.save(&r).await, "save");
    assert_permanent_backend(store.touch(&r.id, Timestamp::now() + HOUR).await, "touch");
    assert_permanent_backend(store.delete(&r.id).await, "delete");
    assert_permanent_backend(
        store.compare_and_delete(&r.id, 1).await,
        "compare_and_delete",
    );
    assert_permanent_backend(store.list_subject("closed").await, "list_subject");
    assert_permanent_backend(store.delete_subject("closed").await, "delete_subject");
    assert_permanent_backend(store.delete_expired().await, "delete_expired");
}

#[tokio::test]
async fn closed_pool_is_not_transient_sqlite() {
    let Some(store) = common::sqlite_file_store().await else {
        return;
    };
    closed_pool_is_not_transient(store).await;
}

#[tokio::test]
async fn closed_pool_is_not_transient_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    closed_pool_is_not_transient(store).await;
}

#[tokio::test]
async fn closed_pool_is_not_transient_mysql() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    closed_pool_is_not_transient(store).await;
}
