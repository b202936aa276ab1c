//! Stateful sessions in Redis.
//!
//! ```text
//! cargo run -p sessionkit-examples --example redis
//! REDIS_URL=redis://my-redis:6379/0 cargo run -p sessionkit-examples --example redis
//! ```
//!
//! Reads `REDIS_URL` (default `redis://127.0.0.1:6379`). Keys go under a
//! prefix of their own (`sessionkit-example:<random>`) and are deleted at the
//! end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::redis::{RedisConfig, RedisStore};
use sessionkit::{Error, SessionId, SessionManager};

/// The application's session data: any serde type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    // A prefix of our own, so the example never touches anyone's keys.
    let prefix = format!(
        "sessionkit-example:{}",
        &SessionId::generate().as_str()[..8]
    );
    let store = match RedisStore::standalone(
        &url,
        RedisConfig::new()
            .prefix(prefix.clone())
            .command_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(1)),
    )
    .await
    {
        Ok(store) => store,
        Err(err) => {
            eprintln!("cannot reach Redis at {url}: {err} (set REDIS_URL to point elsewhere)");
            std::process::exit(2);
        }
    };
    println!("connected to {url}; keys under {prefix}:");

    let sessions = SessionManager::<Cart>::stateful(store.clone())
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(8 * 60 * 60))
        .build()?;

    // Create a session for alice on two "devices".
    let phone = sessions.create(Some("alice"), Cart::default()).await?;
    let laptop = sessions.create(Some("alice"), Cart::default()).await?;
    let ticket = phone.ticket().as_str().to_owned();
    println!(
        "created two sessions for alice; Redis key of the first: {}",
        store
            .session_key(&phone.id())
            .replace(phone.id().as_str(), &phone.id().redacted())
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

    // Per-user listing and "log out everywhere" use the subject index.
    let listed = sessions.list_subject("alice").await?;
    println!("alice has {} live sessions", listed.len());
    let removed = sessions.destroy_subject("alice").await?;
    println!("logged alice out everywhere: {removed} sessions removed");
    assert!(sessions.load(laptop.ticket().as_str()).await?.is_none());

    // A client-supplied ticket that is not a well-formed ID never reaches
    // Redis.
    match sessions.load("*\r\nFLUSHALL").await {
        Err(Error::InvalidId) => println!("a malformed ticket was rejected before any command"),
        other => return Err(format!("expected InvalidId, got {other:?}").into()),
    }
    Ok(())
}
