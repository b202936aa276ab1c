//! The sessionkit contract: what every store, codec and integration agrees on.
//!
//! This crate does no I/O of its own and depends on no backend. It holds:
//!
//! - [`SessionId`]: 128 bits from the operating system's CSPRNG, one
//!   canonical text form, strict parsing, redacted `Debug`;
//! - [`Record`]: what a store keeps (subject, opaque payload, version,
//!   creation and expiry instants);
//! - [`SessionStore`]: the store contract — create never overwrites a live
//!   session, load never returns an expired one, save is compare-and-swap on
//!   the version, delete is idempotent, sessions can be listed and deleted by
//!   subject;
//! - [`TokenCodec`] and [`RevocationList`]: stateless sessions and their
//!   early invalidation ("log out" and "log out everywhere");
//! - [`PayloadCodec`], [`Envelope`] and [`Bag`]: how the application's data
//!   becomes bytes, with the codec and schema version recorded so that old
//!   and new versions of an application read each other's sessions;
//! - [`InvalidationChannel`]: how caches on several instances stay coherent;
//! - [`SessionManager`]: the API applications use, the same for both
//!   architectures.
//!
//! # Why compare-and-swap
//!
//! Two requests of one user routinely run at the same time (two tabs, a page
//! and its XHRs). If both load the session, change it and write it back, the
//! second write silently erases the first: the classic lost update that most
//! session libraries accept. Every sessionkit store refuses a save whose
//! version is stale with [`Error::Conflict`], and
//! [`SessionManager::update`] turns that into a retry loop, so a counter
//! incremented by a thousand concurrent requests ends at a thousand.
//!
//! # Timeouts
//!
//! A session has an *idle* timeout (it dies when unused for that long) and an
//! *absolute* timeout (it dies that long after login however active it is),
//! both enforced on the server. The stored expiry is always the earlier of
//! the two deadlines, so stores expire sessions by themselves. Extending the
//! idle deadline costs a write, so the manager only does it when the last
//! extension is older than the *touch interval*: most reads write nothing.
//!
//! # Stateless or stateful
//!
//! Stateless tokens need no lookup to verify (unless they are checked against
//! a revocation list), scale with no shared state and survive the loss of
//! every server; but they grow with the data they carry, travel with every
//! request, and end early only if the server remembers revocations. Stateful
//! sessions need a store round trip per request but can hold anything, end
//! the moment they are deleted, and can be listed per user. The `docs/` guide
//! of the repository compares them with measured figures.
//!
//! # Caveats
//!
//! - Instants have millisecond precision and come from this machine's clock
//!   ([`Timestamp::now`]); keep application hosts NTP-synchronised.
//! - A stateless session cannot offer compare-and-swap: the client holds the
//!   only copy, so two concurrent updates of one token both "win".
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bag;
mod codec;
mod error;
mod id;
mod invalidation;
mod manager;
mod record;
mod revocation;
mod store;
pub mod testing;
mod timestamp;
mod token;

pub use bag::Bag;
pub use codec::{Envelope, PayloadCodec};
pub use error::{BoxError, Error, Result, TokenRejection};
pub use id::{ID_BYTES, ID_LEN, SessionId};
pub use invalidation::{ChannelEvent, Invalidation, InvalidationChannel, InvalidationMessage};
pub use manager::{ManagerBuilder, ManagerStats, Session, SessionData, SessionManager, Ticket};
pub use record::{MAX_SUBJECT_LEN, Record, validate_subject};
pub use revocation::RevocationList;
pub use store::SessionStore;
pub use timestamp::Timestamp;
pub use token::{TokenClaims, TokenCodec};

/// Re-exported so that store implementations use the same `async_trait`.
pub use async_trait::async_trait;
