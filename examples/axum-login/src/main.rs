//! Runs the axum-login example on 127.0.0.1:3000 (or `PORT`).
//!
//! The store is `SESSIONKIT_STORE_URL` (`redis://…`, `sqlite:…`,
//! `postgres://…`, `mysql://…`), by default a SQLite file in the system's
//! temporary directory, so that no server is needed:
//!
//! ```text
//! cargo run -p sessionkit-example-axum-login
//! curl -i -c jar -d 'username=demo&password=correct horse battery staple' localhost:3000/login
//! curl -i -b jar localhost:3000/protected
//! curl -i -b jar -X POST localhost:3000/logout
//! ```
#![forbid(unsafe_code)]

use std::time::Duration;

use axum_login::tower_sessions::ExpiredDeletion;
use sessionkit_example_axum_login::{app, connect_store, tower_store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SESSIONKIT_STORE_URL").unwrap_or_else(|_| {
        let file = std::env::temp_dir().join("sessionkit-example-axum-login.sqlite");
        format!("sqlite://{}", file.display())
    });
    let store = tower_store(connect_store(&url).await?);

    // SQL stores purge expired rows on request (Redis expires them itself).
    let purge = store.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Err(err) = purge.delete_expired().await {
                eprintln!("expired-session purge failed: {err}");
            }
        }
    });

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on http://{} (sessions in {})",
        listener.local_addr()?,
        url.split('@').next_back().unwrap_or_default()
    );
    // Plain HTTP on loopback: the cookie cannot be `Secure` here. Behind
    // TLS, pass `true`.
    axum::serve(listener, app(store, false))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
