//! Web integration for sessionkit: a tower layer and an axum extractor.
//!
//! [`SessionLayer`] wraps a [`SessionManager`](sessionkit_core::SessionManager)
//! (stateful or stateless: the same layer) and gives each request a
//! [`SessionHandle`], which handlers extract like any axum extractor. The
//! session is loaded only when a handler asks for it, saved after the
//! handler only if it changed (and never when the handler answered 5xx),
//! and its ticket is sent back only when it changed.
//!
//! ## Transport
//!
//! - **Cookie** (default, for browsers): [`CookieConfig`], with the safe
//!   defaults `Secure; HttpOnly; SameSite=Lax; Path=/`, no `Domain`, no
//!   `Max-Age` (a browser-session cookie), name `id`. Every attribute is
//!   configurable.
//! - **Bearer** (for API clients): [`BearerConfig`]. The client sends
//!   `Authorization: Bearer <ticket>`; a new ticket (new session, rotation,
//!   re-issued stateless token) comes back in the `x-session-token`
//!   response header (configurable), and after a logout that header is sent
//!   empty.
//!
//! ## Handlers
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use sessionkit_axum::{SessionError, SessionHandle, SessionLayer};
//! use sessionkit_core::{SessionManager, testing::VecStore};
//!
//! #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
//! struct App { user: Option<String>, cart: Vec<String> }
//!
//! async fn login(session: SessionHandle<App>) -> Result<&'static str, SessionError> {
//!     // ... check the credentials, then: new ID, principal set, data kept.
//!     session.login("alice", App::default).await?;
//!     session.modify(|app| app.user = Some("alice".into())).await?;
//!     Ok("welcome")
//! }
//!
//! async fn add(session: SessionHandle<App>) -> Result<&'static str, SessionError> {
//!     // Atomic: a concurrent request cannot make this change get lost.
//!     match session.update(|app| app.cart.push("apple".into())).await? {
//!         Some(()) => Ok("added"),
//!         None => Ok("no session"),
//!     }
//! }
//!
//! async fn logout(session: SessionHandle<App>) -> Result<&'static str, SessionError> {
//!     session.destroy().await?; // the record is gone, the cookie removed
//!     Ok("bye")
//! }
//!
//! # fn main() -> sessionkit_core::Result<()> {
//! let manager = SessionManager::<App>::stateful(VecStore::default()).build()?;
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/cart", post(add))
//!     .route("/logout", post(logout))
//!     .layer(SessionLayer::new(manager));
//! # let _ = app; Ok(()) }
//! ```
//!
//! ## Failure policy
//!
//! - A missing, unknown, malformed, expired or revoked ticket is an empty
//!   session: never an error page, and never adopted as a new session's
//!   ID (new sessions always get a server-generated ID).
//! - A backend failure while loading is returned by the [`SessionHandle`]
//!   method; returned from the handler as [`SessionError`] it becomes 503
//!   with `Retry-After: 1` when retryable (connection loss, timeout),
//!   otherwise 500. No session data is sent in either case.
//! - An automatic save that loses a compare-and-swap race (or finds the
//!   session deleted meanwhile) replaces the response with 409 Conflict
//!   ([`SessionLayer::conflict_status`]); a failing save with 503 or 500.
//!   The handler's changes are never silently dropped.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod handle;
mod layer;

pub use config::{BearerConfig, CookieConfig, Transport};
pub use cookie::SameSite;
pub use error::SessionError;
pub use handle::{DataMut, SessionHandle, SessionInfo};
pub use layer::{SessionLayer, SessionService};
