//! Web integration for sessionkit on actix-web 4: a middleware and an
//! extractor.
//!
//! [`SessionMiddleware`] wraps a [`SessionManager`](sessionkit_core::SessionManager)
//! (stateful or stateless: the same middleware) and gives each request a
//! [`SessionHandle`], which handlers extract like any actix-web extractor.
//! The session is loaded only when a handler asks for it, saved after the
//! handler only if it changed (and never when the handler answered 5xx),
//! and its ticket is sent back only when it changed.
//!
//! The semantics are those of `sessionkit-axum`, by construction: the
//! transport, the per-request session, the save policy and the error →
//! status table are the code of `sessionkit-http`, which both integrations
//! wrap (neither depends on the other).
//!
//! ## Transport
//!
//! - **Cookie** (default, for browsers): [`CookieConfig`], with the safe
//!   defaults `Secure; HttpOnly; SameSite=Lax; Path=/`, no `Domain`, no
//!   `Max-Age` (a browser-session cookie), name `__Host-id` (so a sibling
//!   subdomain cannot plant one; `id` with `with_secure(false)`). Every attribute is
//!   configurable.
//! - **Bearer** (for API clients): [`BearerConfig`]. The client sends
//!   `Authorization: Bearer <ticket>`; a new ticket (new session, rotation,
//!   re-issued stateless token) comes back in the `x-session-token`
//!   response header (configurable with an `http` 1.x [`HeaderName`]), and
//!   after a logout that header is sent empty.
//!
//! ## Handlers
//!
//! ```
//! use actix_web::{App, web};
//! use sessionkit_actix::{SessionError, SessionHandle, SessionMiddleware};
//! use sessionkit_core::{SessionManager, testing::VecStore};
//!
//! #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
//! struct Shop { user: Option<String>, cart: Vec<String> }
//!
//! async fn login(session: SessionHandle<Shop>) -> Result<&'static str, SessionError> {
//!     // ... check the credentials, then: new ID, principal set, data kept.
//!     session.login("alice", Shop::default).await?;
//!     session.modify(|shop| shop.user = Some("alice".into())).await?;
//!     Ok("welcome")
//! }
//!
//! async fn add(session: SessionHandle<Shop>) -> Result<&'static str, SessionError> {
//!     // Stateful: atomic, a concurrent request cannot make this change get lost.
//!     match session.update(|shop| shop.cart.push("apple".into())).await? {
//!         Some(()) => Ok("added"),
//!         None => Ok("no session"),
//!     }
//! }
//!
//! async fn logout(session: SessionHandle<Shop>) -> Result<&'static str, SessionError> {
//!     session.destroy().await?; // the record is gone, the cookie removed
//!     Ok("bye")
//! }
//!
//! # fn main() -> sessionkit_core::Result<()> {
//! let manager = SessionManager::<Shop>::stateful(VecStore::default()).build()?;
//! let app = App::new()
//!     .route("/login", web::post().to(login))
//!     .route("/cart", web::post().to(add))
//!     .route("/logout", web::post().to(logout))
//!     .wrap(SessionMiddleware::new(manager));
//! # let _ = app; Ok(()) }
//! ```
//!
//! Key-value sessions, in the manner of tower-sessions, are a
//! `SessionHandle<Bag>` (see [`SessionHandle::get`],
//! [`SessionHandle::insert`], [`SessionHandle::remove`]):
//!
//! ```
//! use sessionkit_actix::{SessionError, SessionHandle};
//! use sessionkit_core::Bag;
//!
//! async fn counter(session: SessionHandle<Bag>) -> Result<String, SessionError> {
//!     let n: usize = session.get("counter").await?.unwrap_or_default();
//!     session.insert("counter", &(n + 1)).await?; // starts a session if needed
//!     Ok(n.to_string())
//! }
//! ```
//!
//! ## Failure policy
//!
//! - A missing, unknown, malformed, expired or revoked ticket is an empty
//!   session: never an error page, and never adopted as a new session's
//!   ID (new sessions always get a server-generated ID).
//! - A backend failure while loading is returned by the [`SessionHandle`]
//!   method; returned from the handler as [`SessionError`] it becomes 503
//!   with `Retry-After: 1` when transient, otherwise 500. No session data
//!   is sent in either case.
//! - Stateful: an automatic save that loses a compare-and-swap race (or
//!   finds the session deleted meanwhile) replaces the response with 409
//!   Conflict ([`SessionMiddleware::conflict_status`]); a failing save with
//!   503 or 500. A change the handler made is either stored or answered
//!   with an error status, never silently dropped.
//! - [`SessionHandle::login`] and [`SessionHandle::rotate`] are atomic
//!   against concurrent requests of the same session: when another request
//!   ended, rotated or (stateful) saved the session after this request
//!   loaded it, they fail with a [`SessionError`] answered with 409 (or
//!   the configured conflict status), nothing is live under a new ticket
//!   and no ticket is sent.
//! - An error returned by an inner service (`Err`, rather than an error
//!   response) is passed through untouched: nothing is saved and no
//!   ticket header is added.
//!
//! ## What stateless mode can promise
//!
//! With a stateless manager the session *is* the token the client holds;
//! there is no server copy to compare a change with. Each request works on
//! the data of the token it presented and a change re-signs a new token;
//! of concurrent requests with one token, the client keeps whichever new
//! token it stores last (**last writer wins, per token**, with no error).
//! Signature, expiry, the timeouts, revocation (`destroy`, a rotation: of
//! concurrent rotations of one token exactly one wins) and
//! log-out-everywhere are enforced. Keep anything that must not lose an
//! update in a stateful session.
//!
//! ## Caches and security decisions
//!
//! Behind a `CachedStore`, an instance can still serve a session another
//! instance just logged out until the invalidation arrives. Before a
//! security decision call [`SessionHandle::verify_fresh`], which asks the
//! source of truth past the cache.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod handle;
mod middleware;

pub use error::SessionError;
pub use handle::SessionHandle;
/// The `http` 1.x header name type [`BearerConfig::with_response_header`] takes
/// (actix-web 4 has its own `HeaderName`, from `http` 0.2).
pub use http::HeaderName;
pub use middleware::{SessionMiddleware, SessionService};
pub use sessionkit_http::{BearerConfig, CookieConfig, SameSite, SessionInfo, Transport};
