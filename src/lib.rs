//! # sessionkit
//!
//! Sessions and externalized state for Rust web applications, with one API
//! for both architectures:
//!
//! - **stateful**: the client holds an opaque, unguessable ID; the session
//!   lives in a server-side store ([memory], [Redis](redis),
//!   [SQL](sql)). Sessions can be large, are invalidated the moment you
//!   delete them, and survive restarts of the application.
//! - **stateless**: the client holds a signed token ([JWT](jwt)) carrying the
//!   session itself; nothing is stored per session. Early logout uses a small
//!   [`RevocationList`] kept in any store.
//! - **cached**: any store can sit behind an in-process read-through /
//!   write-through cache (`memory::CachedStore`) whose entries are evicted on
//!   every instance when one instance writes.
//!
//! The application chooses by configuration and cargo features; handler code
//! sees the same [`SessionManager`] either way.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> sessionkit::Result<()> {
//! use sessionkit::{SessionManager, memory::MemoryStore};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Default)]
//! struct Visits { count: u32 }
//!
//! let sessions = SessionManager::<Visits>::stateful(MemoryStore::new()).build()?;
//! let session = sessions.create(Some("user-1"), Visits::default()).await?;
//! let ticket = session.ticket().as_str().to_owned(); // what the client keeps
//!
//! // A read-modify-write that never loses a concurrent update:
//! sessions.update(&ticket, |v| v.count += 1).await?;
//! assert_eq!(sessions.load(&ticket).await?.unwrap().data().count, 1);
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! | feature | what it adds |
//! |---|---|
//! | `memory` (default) | [`memory::MemoryStore`] and [`memory::CachedStore`] |
//! | `bincode` (default) | the bincode payload codec |
//! | `postcard` | the postcard payload codec (JSON is always available) |
//! | `encryption` | payloads sealed at rest with XChaCha20-Poly1305 (`PayloadKeys`) |
//! | `jwt` | [`jwt`]: stateless sessions as JWTs (pure-Rust crypto) |
//! | `jwt-aws-lc-rs` | the same on aws-lc-rs |
//! | `paseto` | [`paseto`]: stateless sessions as encrypted PASETO v4.local tokens |
//! | `redis` / `redis-cluster` | [`redis`]: Redis and Redis Cluster store, pub/sub invalidation |
//! | `sqlite` / `postgres` / `mysql` | [`sql`]: the SQL store on that database |
//! | `axum` | [`axum`]: tower layer and axum extractor |
//! | `actix` | [`actix`]: actix-web 4 middleware and extractor (same semantics as `axum`) |
//! | `tower-sessions` | [`tower_sessions`]: any sessionkit store as a tower-sessions 0.14 / axum-login 0.18 `SessionStore` |
//!
//! The crates behind the features can also be used on their own:
//! `sessionkit-core` (the contract), `sessionkit-memory`, `sessionkit-jwt`,
//! `sessionkit-redis`, `sessionkit-sql`, `sessionkit-axum`, and
//! `sessionkit-testkit`, the conformance suite for anyone writing a store.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use sessionkit_core::*;

/// In-process storage: [`MemoryStore`](memory::MemoryStore) and the
/// [`CachedStore`](memory::CachedStore) that fronts any other store.
#[cfg(feature = "memory")]
pub mod memory {
    pub use sessionkit_memory::*;
}

/// Stateless sessions as JWTs.
#[cfg(any(feature = "jwt", feature = "jwt-aws-lc-rs"))]
pub mod jwt {
    pub use sessionkit_jwt::*;
}

/// Stateless sessions as encrypted PASETO v4.local tokens.
#[cfg(feature = "paseto")]
pub mod paseto {
    pub use sessionkit_paseto::*;
}

/// Redis and Redis Cluster.
#[cfg(feature = "redis")]
pub mod redis {
    pub use sessionkit_redis::*;
}

/// SQLite, PostgreSQL and MySQL/MariaDB.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod sql {
    pub use sessionkit_sql::*;
}

/// The tower layer and axum extractor.
#[cfg(feature = "axum")]
pub mod axum {
    pub use sessionkit_axum::*;
}

/// The actix-web middleware and extractor.
#[cfg(feature = "actix")]
pub mod actix {
    pub use sessionkit_actix::*;
}

/// Any sessionkit store as a tower-sessions `SessionStore`, for
/// tower-sessions 0.14 and axum-login 0.18 applications.
#[cfg(feature = "tower-sessions")]
pub mod tower_sessions {
    pub use sessionkit_tower_sessions::*;
}
