//! Stateful sessions in PostgreSQL.
//!
//! ```text
//! cargo run -p sessionkit-examples --example sql_postgres
//! DATABASE_URL=postgres://app@db.internal/app cargo run -p sessionkit-examples --example sql_postgres
//! ```
//!
//! Reads `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! The sessions go to a table of their own (`sessionkit_example_<random>`),
//! dropped at the end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::sql::{SqlStore, spawn_cleanup, sqlx};
use sessionkit::{Error, SessionId, SessionManager};

/// The application's session data: any serde type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let table = format!(
        "sessionkit_example_{}",
        SessionId::generate().to_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let store = match SqlStore::builder()
        .table(table.clone())
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(2))
        .statement_timeout(Duration::from_secs(3))
        .connect(&url)
        .await
    {
        Ok(store) => store,
        Err(err) => {
            eprintln!(
                "cannot use PostgreSQL at {url}: {err} (set DATABASE_URL to point elsewhere)"
            );
            std::process::exit(2);
        }
    };
    println!("connected; sessions in table {table}");

    let result = run(&store).await;

    // Leave nothing behind.
    if let Some(pool) = store.postgres_pool() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS \"{table}\""
        )))
        .execute(pool)
        .await?;
        sqlx::query("DELETE FROM sessionkit_migrations WHERE table_name = $1")
            .bind(&table)
            .execute(pool)
            .await?;
    }
    result
}

async fn run(store: &SqlStore) -> Result<(), Box<dyn std::error::Error>> {
    // Purge expired rows every minute, in bounded batches, until shutdown.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cleanup = spawn_cleanup(store.clone(), Duration::from_secs(60), async move {
        let _ = stopped.await;
    });

    let sessions = SessionManager::<Cart>::stateful(store.clone())
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(8 * 60 * 60))
        .build()?;

    // Two devices of one user.
    let phone = sessions.create(Some("alice"), Cart::default()).await?;
    let laptop = sessions.create(Some("alice"), Cart::default()).await?;
    let ticket = phone.ticket().as_str().to_owned();

    // Read-modify-write with compare-and-swap: update() retries on conflict.
    let updated = sessions
        .update(&ticket, |cart| cart.items.push("apple".into()))
        .await?;
    println!(
        "cart after update: {:?} (version {})",
        updated.data().items,
        updated.version()
    );

    // A save based on a stale copy is refused instead of losing a write.
    let mut stale = sessions.load(&ticket).await?.expect("live");
    sessions
        .update(&ticket, |cart| cart.items.push("pear".into()))
        .await?;
    stale.data_mut().items.push("plum".into());
    match sessions.save(&mut stale).await {
        Err(Error::Conflict) => println!("a stale save was refused with Conflict"),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }

    // Per-user listing and "log out everywhere" use the subject index.
    println!(
        "alice has {} live sessions",
        sessions.list_subject("alice").await?.len()
    );
    let removed = sessions.destroy_subject("alice").await?;
    println!("logged alice out everywhere: {removed} sessions removed");
    assert!(sessions.load(laptop.ticket().as_str()).await?.is_none());

    // A client-supplied ticket that is not a well-formed ID never reaches SQL.
    match sessions.load("x' OR '1'='1").await {
        Err(Error::InvalidId) => println!("a malformed ticket was rejected before any statement"),
        other => return Err(format!("expected InvalidId, got {other:?}").into()),
    }

    let _ = stop.send(());
    cleanup.await?;
    Ok(())
}
