//! Secrets at rest (issue 18, section 1) on SQLite, PostgreSQL and MariaDB:
//! a read-only dump of the session table holds no working ticket.
//!
//! Sessions are made through a `SessionManager` with its default
//! configuration (IDs hashed at rest); every row is then read straight from
//! the table with sqlx (`SELECT id, payload FROM <table>`, not through the
//! store), and each `id` found there is tried as a ticket through the
//! manager: none loads, while the real tickets do. A control run with
//! hashing turned off shows that the same check catches a table keyed by
//! the tickets themselves.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "mysql"))]

mod common;

use common::Scoped;
use sessionkit_core::{SessionId, SessionManager, SessionStore};
use sessionkit_sql::{Dialect, SqlStore, sqlx};

/// Every row of the store's table, read with sqlx, bypassing the store.
async fn dump(store: &SqlStore) -> Vec<(String, Vec<u8>)> {
    let t = store.table();
    let rows = match store.dialect() {
        Dialect::Sqlite => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, payload FROM \"{t}\""
            )))
            .fetch_all(store.sqlite_pool().expect("sqlite pool"))
            .await
        }
        Dialect::Postgres => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, payload FROM \"{t}\""
            )))
            .fetch_all(store.postgres_pool().expect("pg pool"))
            .await
        }
        Dialect::MySql => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, payload FROM `{t}`"
            )))
            .fetch_all(store.mysql_pool().expect("mysql pool"))
            .await
        }
        other => panic!("no dump for {other:?}"),
    };
    rows.expect("read the raw table")
}

/// Live sessions made the ways an application makes them (anonymous and
/// with a subject, rotated, updated): `(ticket, data)` of each live one,
/// and the ticket the rotation ended.
async fn make_sessions(m: &SessionManager<String>) -> (Vec<(String, String)>, String) {
    let subject = format!("at-rest-{}", common::random_hex(6));
    let mut live = Vec::new();
    for i in 0..6 {
        let subject = (i % 2 == 0).then_some(subject.as_str());
        let data = format!("data-{i}");
        let s = m.create(subject, data.clone()).await.expect("create");
        live.push((s.ticket().as_str().to_owned(), data));
    }
    let mut s = m.load(&live[0].0).await.expect("load").expect("live");
    m.rotate(&mut s).await.expect("rotate");
    let ended = std::mem::replace(&mut live[0].0, s.ticket().as_str().to_owned());
    m.update(&live[1].0, |d| d.push_str("+1"))
        .await
        .expect("update");
    live[1].1.push_str("+1");
    (live, ended)
}

/// The raw-dump check: the table holds exactly the live sessions, under
/// keys that are no ticket, and no payload holds a ticket.
async fn raw_dump_holds_no_ticket(store: &Scoped) {
    let m: SessionManager<String> = SessionManager::stateful(store.store.clone())
        .build()
        .expect("a manager with the default configuration");
    let (live, ended) = make_sessions(&m).await;
    let rows = dump(store).await;
    assert_eq!(rows.len(), live.len(), "one row per live session");
    let mut tickets: Vec<&str> = live.iter().map(|(t, _)| t.as_str()).collect();
    tickets.push(&ended);
    for (key, payload) in &rows {
        // The row is a real session record (so the check is not vacuous)...
        let id = SessionId::parse(key).expect("a stored key is an ID");
        assert!(
            store.load(&id).await.expect("store load").is_some(),
            "a dumped row is not a live record"
        );
        // ...but its key is no ticket, and works as none.
        assert!(
            !tickets.contains(&key.as_str()),
            "the table keeps a ticket as its key"
        );
        assert!(
            m.load(key).await.expect("load").is_none(),
            "an ID read from the table worked as a ticket"
        );
        assert!(
            m.load_fresh(key).await.expect("load_fresh").is_none(),
            "an ID read from the table worked as a ticket (load_fresh)"
        );
        for ticket in &tickets {
            assert!(
                !payload
                    .windows(ticket.len())
                    .any(|w| w == ticket.as_bytes()),
                "a payload holds a ticket"
            );
        }
    }
    // The tickets themselves work, with their data; the rotated-away one
    // does not.
    for (ticket, data) in &live {
        let s = m
            .load(ticket)
            .await
            .expect("load")
            .expect("a ticket loads its session");
        assert_eq!(s.data(), data);
    }
    assert!(m.load(&ended).await.expect("load").is_none());
}

/// Control: with hashing off the table's keys ARE the tickets, and the
/// same dump finds every one of them working. Shows the check above would
/// catch the leak it is about.
async fn control_unhashed_dump_leaks(store: &Scoped) {
    let m: SessionManager<String> = SessionManager::stateful(store.store.clone())
        .hash_ids(false)
        .build()
        .expect("a manager without hashed IDs");
    let (live, _) = make_sessions(&m).await;
    let rows = dump(store).await;
    assert_eq!(rows.len(), live.len());
    for (key, _) in &rows {
        assert!(live.iter().any(|(t, _)| t == key));
        assert!(m.load(key).await.expect("load").is_some());
    }
}

#[tokio::test]
async fn raw_dump_holds_no_ticket_sqlite() {
    let (Some(store), Some(control)) = (
        common::sqlite_file_store().await,
        common::sqlite_file_store().await,
    ) else {
        return;
    };
    raw_dump_holds_no_ticket(&store).await;
    control_unhashed_dump_leaks(&control).await;
}

#[tokio::test]
async fn raw_dump_holds_no_ticket_postgres() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    let Some(control) = common::postgres_store().await else {
        return;
    };
    raw_dump_holds_no_ticket(&store).await;
    control_unhashed_dump_leaks(&control).await;
}

#[tokio::test]
async fn raw_dump_holds_no_ticket_mysql() {
    let Some(store) = common::mysql_store().await else {
        return;
    };
    let Some(control) = common::mysql_store().await else {
        return;
    };
    raw_dump_holds_no_ticket(&store).await;
    control_unhashed_dump_leaks(&control).await;
}
