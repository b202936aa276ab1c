//! The sessionkit contract.
//!
//! TODO(crate docs): written with the manager.
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
