//! sessionkit in five minutes, on the in-memory store (no server needed).
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::memory::MemoryStore;
use sessionkit::{Error, SessionManager};

/// The application's session data: any serde type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let sessions = SessionManager::<Cart>::stateful(store.clone())
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(8 * 60 * 60))
        .build()?;

    // 1. Create: the ticket is what goes into the cookie.
    let session = sessions.create(None, Cart::default()).await?;
    let ticket = session.ticket().as_str().to_owned();
    println!(
        "1. created an anonymous session {:?} (the ID is a secret: logs only ever show a prefix)",
        session.ticket()
    );

    // 2. Load it back and change it.
    let mut cart = sessions.load(&ticket).await?.expect("just created");
    cart.data_mut().items.push("apple".into());
    sessions.save(&mut cart).await?;
    println!(
        "2. loaded it, added an apple and saved: version {} now",
        cart.version()
    );

    // 3. Two requests change the same session at once.
    let mut tab_a = sessions.load(&ticket).await?.expect("live");
    let mut tab_b = sessions.load(&ticket).await?.expect("live");
    tab_a.data_mut().items.push("pear".into());
    sessions.save(&mut tab_a).await?;
    tab_b.data_mut().items.push("plum".into());
    match sessions.save(&mut tab_b).await {
        Err(Error::Conflict) => println!(
            "3. a save based on a stale copy was refused (Conflict) instead of erasing the pear"
        ),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    let updated = sessions
        .update(&ticket, |cart| cart.items.push("plum".into()))
        .await?;
    println!(
        "   the same change through update() succeeds: {:?}",
        updated.data().items
    );

    // 4. Login: attach the user and rotate the ID (session fixation defence).
    let mut session = sessions.load(&ticket).await?.expect("live");
    session.set_subject(Some("alice"))?;
    sessions.rotate(&mut session).await?;
    let old_still_works = sessions.load(&ticket).await?.is_some();
    println!(
        "4. logged in as alice and rotated the ID: the old ID loads? {old_still_works}; the cart kept {} items",
        session.data().items.len()
    );
    assert!(!old_still_works);

    // 5. A short idle timeout lets an unused session expire by itself.
    let short = SessionManager::<Cart>::stateful(store.clone())
        .idle_timeout(Duration::from_millis(300))
        .build()?;
    let brief = short.create(None, Cart::default()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expired = short.load(brief.ticket().as_str()).await?.is_none();
    println!("5. a session idle for longer than its 300 ms timeout is gone: {expired}");
    assert!(expired);

    // 6. Alice logs in on two more devices, then logs out everywhere.
    sessions.create(Some("alice"), Cart::default()).await?;
    sessions.create(Some("alice"), Cart::default()).await?;
    let listed = sessions.list_subject("alice").await?.len();
    let removed = sessions.destroy_subject("alice").await?;
    let left = sessions.list_subject("alice").await?.len();
    println!("6. alice had {listed} sessions; log out everywhere removed {removed}; {left} left");
    assert_eq!(left, 0);

    println!("done.");
    Ok(())
}
