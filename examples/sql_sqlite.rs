//! Stateful sessions in an embedded SQLite database: no server needed.
//!
//! ```text
//! cargo run -p sessionkit-examples --example sql_sqlite
//! ```
//!
//! The database is a file in a fresh temporary directory, removed at the end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::sql::{SqlStore, spawn_cleanup};
use sessionkit::{Error, SessionId, SessionManager, SessionStore};

/// The application's session data: any serde type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!(
        "sessionkit-example-{}",
        &SessionId::generate().as_str()[..8]
    ));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sessions.db");
    let result = run(&format!("sqlite://{}", path.display())).await;
    std::fs::remove_dir_all(&dir)?;
    result
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    // Creates the file and the `sessions` table (migrations run on connect).
    let store = SqlStore::builder()
        .table("sessions")
        .statement_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    println!("opened {url}, table {:?}", store.table());

    // Purge expired rows every minute until shutdown.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cleanup = spawn_cleanup(store.clone(), Duration::from_secs(60), async move {
        let _ = stopped.await;
    });

    let sessions = SessionManager::<Cart>::stateful(store.clone())
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(8 * 60 * 60))
        .build()?;

    // Create a session; the client keeps only the ticket (an opaque ID).
    let session = sessions.create(Some("alice"), Cart::default()).await?;
    let ticket = session.ticket().as_str().to_owned();
    println!(
        "created a session for alice (id {})",
        session.id().redacted()
    );

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

    // The session survives a restart: a new store on the same file sees it.
    store.close().await;
    let reopened = SqlStore::connect(url).await?;
    let sessions = SessionManager::<Cart>::stateful(reopened.clone()).build()?;
    let loaded = sessions.load(&ticket).await?.expect("still there");
    println!("after reopening the database: {:?}", loaded.data().items);

    // Log out everywhere, then purge what has expired.
    let removed = sessions.destroy_subject("alice").await?;
    println!("logged alice out everywhere: {removed} session(s) removed");
    println!(
        "expired rows purged now: {}",
        reopened.delete_expired().await?
    );

    // The cleanup task of the first store stops on request.
    let _ = stop.send(());
    cleanup.await?;
    Ok(())
}
