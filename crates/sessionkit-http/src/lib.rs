//! The HTTP plumbing shared by sessionkit's web integrations
//! (`sessionkit-axum`, `sessionkit-actix`), with no web framework in it.
//!
//! Both integrations give the same guarantees because they run the same
//! code from this crate:
//!
//! - **Transport** ([`Transport`], [`CookieConfig`], [`BearerConfig`]): the
//!   safe cookie defaults (`Secure; HttpOnly; SameSite=Lax; Path=/`, no
//!   `Domain`, no `Max-Age`, name `__Host-id`: with that prefix a sibling subdomain or a plain-HTTP origin cannot plant a session cookie; `id` with `with_secure(false)`), the `Set-Cookie` and removal
//!   cookie, reading the ticket from the `Cookie` header (up to
//!   [`MAX_COOKIE_CANDIDATES`] same-name cookies tried, each at most
//!   [`MAX_TICKET_LEN`] bytes) or from `Authorization: Bearer`, and the
//!   response headers that hand a new ticket out ([`HeaderChange`]).
//! - **The request's session** ([`RequestSession`]): lazy load, the handle
//!   methods (`data`, `modify`, `modify_or_insert_with`, `set_data`,
//!   `login`, `rotate`, `destroy`, `update`, `verify_fresh`, ...; `get`,
//!   `insert` and `remove` of one key on a `Bag` session), and
//!   [`RequestSession::finish`], the
//!   save policy after the handler: save only if changed, never after a
//!   5xx ([`saves_after`]), compare-and-swap with the conflict status when
//!   the save lost, a new ticket sent only when it changed.
//! - **Errors** ([`status_for`]): 409 for a session changed, ended or
//!   rotated by a concurrent request ([`is_conflict`]); 503 with
//!   `Retry-After: 1` for a transient backend failure; 500 otherwise.
//!   Bodies are generic ([`body_for`]); details are only logged.
//!
//! The framework crates wrap [`RequestSession`] in their own extractor
//! type, translate header types, and never depend on each other.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod session;

pub use config::{
    BearerConfig, CookieConfig, HeaderChange, HeaderMode, MAX_COOKIE_CANDIDATES, MAX_TICKET_LEN,
    Transport,
};
pub use cookie::SameSite;
pub use error::{
    RETRY_AFTER, body_for, is_conflict, is_ended, log_handler_error, needs_retry_after, status_for,
};
pub use session::{Finish, RequestSession, SessionConfig, SessionInfo, saves_after};
