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
//!   `Max-Age` (a browser-session cookie), name `__Host-id` (so a sibling
//!   subdomain cannot plant one; `id` with `with_secure(false)`). Every attribute is
//!   configurable.
//! - **Bearer** (for API clients): [`BearerConfig`]. The client sends
//!   `Authorization: Bearer <ticket>`; a new ticket (new session, rotation,
//!   re-issued stateless token) comes back in the `x-session-token`
//!   response header (configurable), and after a logout that header is sent
//!   empty.
//!
//! The transport types, the save policy and the error → status table live
//! in `sessionkit-http`, shared with `sessionkit-actix` (the actix-web
//! integration), so both frameworks behave the same.
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
//!     // Stateful: atomic, a concurrent request cannot make this change get
//!     // lost. (Stateless: last writer wins per token; see below.)
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
//! Key-value sessions, in the manner of tower-sessions, are a
//! `SessionHandle<Bag>` (see [`SessionHandle::get`],
//! [`SessionHandle::insert`], [`SessionHandle::remove`]):
//!
//! ```
//! use sessionkit_axum::{SessionError, SessionHandle};
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
//!   with `Retry-After: 1` when transient (connection loss, timeout, a
//!   transaction the backend aborted without applying it), otherwise 500.
//!   No session data is sent in either case.
//! - Stateful: an automatic save that loses a compare-and-swap race (or
//!   finds the session deleted meanwhile) replaces the response with 409
//!   Conflict ([`SessionLayer::conflict_status`]); a failing save with 503
//!   or 500. A change the handler made is either stored or answered with an
//!   error status, never silently dropped. Stateless mode cannot promise
//!   that; see below.
//! - [`SessionHandle::login`] and [`SessionHandle::rotate`] are atomic
//!   against concurrent requests of the same session: when another request
//!   logged the session out, logged its user out everywhere, rotated it or
//!   (stateful) saved it after this request loaded it, they fail, the
//!   returned [`SessionError`] is a 409 (or the configured conflict
//!   status), nothing is live under a new ticket and no ticket is sent.
//!
//! ## What stateless mode can promise
//!
//! With a stateless manager the session *is* the token the client holds;
//! the server keeps no copy, so there is nothing to compare a change with.
//!
//! - Each request works on the data of the token it presented. A change
//!   (including [`SessionHandle::update`]) re-signs a new token and sends it
//!   back; the request succeeds.
//! - Concurrent requests with one token each get their own re-issued token,
//!   each built from that same starting point: 200 concurrent increments of
//!   a counter with one token all succeed, and every response carries a
//!   counter of 1. The client keeps whichever token it stores last: **last
//!   writer wins, per token**. No compare-and-swap is possible, so changes
//!   can be lost without any error; keep counters, carts and anything else
//!   that must not lose an update in a stateful session.
//! - What *is* enforced: signature, expiry, the idle and absolute timeouts,
//!   revocation (`destroy` revokes the token ID; a rotation revokes the old
//!   token, and of concurrent rotations of one token exactly one wins) and
//!   log-out-everywhere, each checked against the
//!   [`RevocationList`](sessionkit_core::RevocationList).
//!
//! ## Caches and security decisions
//!
//! With a `CachedStore` behind the manager (stateful sessions, or a
//! stateless manager's revocation list), an instance can still serve a
//! session that another instance just logged out, until the invalidation
//! message arrives: normally a few milliseconds, at most the cache's
//! `max_staleness` when publishing or delivering it fails. For a decision
//! that must not act on such a session (a privileged action, changing a
//! password or an e-mail address, a payment), call
//! [`SessionHandle::verify_fresh`] first: it asks the source of truth past
//! the cache.
//!
//! ```
//! use axum::http::StatusCode;
//! use sessionkit_axum::{SessionError, SessionHandle};
//!
//! # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
//! # struct App { user: Option<String> }
//! async fn change_password(session: SessionHandle<App>) -> Result<StatusCode, SessionError> {
//!     if !session.verify_fresh().await? {
//!         return Ok(StatusCode::UNAUTHORIZED); // logged out elsewhere
//!     }
//!     // ... the session is live in the store right now: go ahead.
//!     Ok(StatusCode::NO_CONTENT)
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod handle;
mod hybrid;
mod layer;

pub use config::{BearerConfig, CookieConfig, Transport};
pub use error::SessionError;
pub use handle::SessionHandle;
pub use hybrid::{
    AccessTransport, Authenticated, Hybrid, HybridConfig, HybridError, RefreshTransport,
    client_info,
};
pub use layer::{SessionLayer, SessionService};
pub use sessionkit_http::{SameSite, SessionInfo};
