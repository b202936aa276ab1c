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
//! # Rotation, logout and their races
//!
//! [`SessionManager::rotate`] writes the session under a new ID and then
//! removes the old one with [`SessionStore::compare_and_delete`], which
//! succeeds only while the old record is still the version this request
//! loaded. So a rotation is atomic against every concurrent end of the
//! session: of N concurrent rotations one wins, and a rotation that comes
//! after a logout, a log-out-everywhere, another rotation or a save fails
//! with a typed error ([`Error::NotFound`] or [`Error::Conflict`]) and
//! leaves nothing live. Stateless rotation revokes the old token ID with an
//! exclusive write ([`RevocationList::revoke_once`]), and log-out-everywhere
//! compares the session's *start*, which every re-signed or rotated token
//! keeps, so no token of a logged-out session survives however it was
//! re-issued. The `sessionkit-testkit` crate forces these races in their
//! worst order against every store.
//!
//! # Rolling deployments and rollbacks
//!
//! Each payload records the schema version that wrote it. An instance reads
//! older schemas through the upgrades registered with
//! [`ManagerBuilder::upgrade_from`], and never reads a *newer* schema as its
//! own type, whatever the codec: such a session is "no session" on that
//! instance (counted in [`ManagerStats::newer_schema`]), so the instance
//! cannot write it back with what it did not understand, and the newer
//! instances still find it intact. A session type that the chosen codec can
//! write but not read back (for instance `serde_json::Value` with bincode)
//! is refused at `create` with [`Error::Encode`].
//!
//! # Caveats
//!
//! - Instants have millisecond precision and come from this machine's clock
//!   ([`Timestamp::now`]); keep application hosts NTP-synchronised. Tokens
//!   carry their expiry in whole seconds.
//! - A stateless session cannot offer compare-and-swap: the client holds the
//!   only copy, so two concurrent updates of one token each get their own
//!   re-issued token and the last one the client keeps wins. Use stateful
//!   sessions for data that concurrent requests change.
//! - With a cache in front of the store, another instance may serve a
//!   session that was just ended until the invalidation reaches it (bounded
//!   by the cache's staleness limit); use [`SessionManager::load_fresh`] for
//!   security decisions.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bag;
mod codec;
#[cfg(feature = "encryption")]
mod encryption;
mod error;
mod events;
pub mod hybrid;
mod id;
mod invalidation;
mod manager;
pub mod migrate;
mod record;
mod revocation;
mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod timestamp;
mod token;

pub use bag::Bag;
pub use codec::{Envelope, PayloadCodec};
#[cfg(feature = "encryption")]
pub use encryption::PayloadKeys;
pub use error::{BoxError, Error, Result, TokenRejection};
pub use events::{EventKind, EventReceiver, SessionEvent};
pub use hybrid::{
    AccessClaims, ClientInfo, FamilyId, FamilyInfo, HybridBuilder, HybridManager, HybridStats,
    MAX_CLIENT_FIELD, MIN_SECRET_LEN, REFRESH_TOKEN_LEN, RefreshError, RefreshRejection, TokenPair,
};
pub use id::{ID_BYTES, ID_LEN, SessionId};
pub use invalidation::{ChannelEvent, Invalidation, InvalidationChannel, InvalidationMessage};
pub use manager::{
    ManagerBuilder, ManagerStats, Session, SessionData, SessionLimit, SessionManager, Ticket,
};
pub use record::{MAX_SUBJECT_LEN, Record, validate_subject};
pub use revocation::RevocationList;
pub use store::{ScanCursor, ScanPage, SessionStore};
pub use timestamp::Timestamp;
pub use token::{TokenClaims, TokenCodec};

/// Re-exported so that store implementations use the same `async_trait`.
pub use async_trait::async_trait;
