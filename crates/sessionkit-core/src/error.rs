//! The one error type of sessionkit.
//!
//! Every variant is distinct and matchable, so that callers can tell "the
//! client sent garbage" from "the session changed under you" from "the
//! database is down, try again". Backend errors keep their source chain.

use std::time::Duration;

/// A boxed error from a backend, a codec or the operating system.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result<T, sessionkit_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Not a well-formed token at all (bad structure, bad base64, bad JSON,
    /// a claim of the wrong type).
    #[error("the token is malformed")]
    Malformed,
    /// Longer than the configured maximum; nothing was parsed.
    #[error("the token is larger than the configured maximum")]
    TooLarge,
    /// The header names an algorithm that the key behind its `kid` does not
    /// use (including `none`).
    #[error("the token's algorithm is not the one pinned for its key")]
    Algorithm,
    /// The header names a key id that is not (or no longer) in the key ring.
    #[error("the token's key id is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` is in the past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("the token's issuer is not accepted")]
    Issuer,
    /// `aud` does not contain the expected audience.
    #[error("the token's audience is not accepted")]
    Audience,
    /// A required claim is missing.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// The token belongs to a session that started at or before its
    /// subject's not-before instant ("log out everywhere").
    #[error("the token was issued before its subject was logged out everywhere")]
    IssuedBeforeLogout,
    /// `iat` (or the session start it carries) is later than now plus the
    /// leeway: the token claims to come from the future. A clock that lies
    /// never lets a token outlive "log out everywhere".
    #[error("the token's issue time is in the future")]
    IssuedInFuture,
    /// The header carries a `crit` parameter (with any value, `null`
    /// included): it names extensions this codec does not understand.
    #[error("the token's header has a critical parameter this codec does not understand")]
    CriticalHeader,
}

/// Everything that can go wrong in sessionkit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No live session with this ID (absent or expired). For `save` and
    /// `touch`: the record to update does not exist.
    #[error("session not found")]
    NotFound,
    /// The session changed since it was loaded (compare-and-swap failed,
    /// or it was rotated meanwhile), or `create` found a live session with
    /// the same ID. Repeating the same call will fail again: load the
    /// session again, reapply the change and save that (or use
    /// `SessionManager::update`, which does it for you).
    #[error("the session was changed concurrently; load it again and retry")]
    Conflict,
    /// The text is not a session ID in canonical form.
    #[error("invalid session id")]
    InvalidId,
    /// A subject is empty, longer than 256 bytes or contains control
    /// characters.
    #[error("invalid subject: must be 1 to 256 bytes without control characters")]
    InvalidSubject,
    /// A token was rejected; the reason says why.
    #[error("invalid token: {0}")]
    InvalidToken(#[source] TokenRejection),
    /// The token was revoked (logout).
    #[error("the token has been revoked")]
    Revoked,
    /// The session exists but is past its idle or absolute timeout.
    #[error("the session has expired")]
    Expired,
    /// A payload or token is larger than the configured limit; nothing was
    /// written.
    #[error("too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// The size that was attempted.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The session data could not be encoded.
    #[error("could not encode the session data")]
    Encode(#[source] BoxError),
    /// Stored bytes could not be decoded (corrupted, or written by an
    /// incompatible version with no registered upgrade).
    #[error("could not decode the stored session data")]
    Decode(#[source] BoxError),
    /// The backend failed. `transient` is true for failures that a later
    /// attempt of the same call may not see (lost connection, failover,
    /// pool exhausted); false for those it will see again (a closed pool, a
    /// missing table, a rejected command). Whether a transient failure
    /// applied the write is unknown.
    #[error("session backend error (transient: {transient})")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
        /// Whether the same call may succeed later.
        transient: bool,
    },
    /// The backend aborted the operation and rolled it back before applying
    /// anything (a deadlock victim, a serialization failure): nothing was
    /// written, and the same call may succeed now.
    /// `SessionManager` runs such a call again (with backoff, up to its
    /// retry limit) for every store call it makes, so it reaches the
    /// caller only when the backend keeps aborting.
    #[error("the session backend aborted the operation (nothing was written); retry it")]
    Aborted(#[source] BoxError),
    /// The backend did not answer in time: within the configured limit when
    /// one is known. Whether a write was applied is unknown.
    #[error("the session backend did not answer in time{}", match .0 {
        Some(limit) => format!(" (limit {limit:?})"),
        None => String::new(),
    })]
    Timeout(Option<Duration>),
    /// The subject already has as many sessions as the manager allows
    /// (`ManagerBuilder::max_sessions_per_subject` with
    /// `SessionLimit::RefuseNew`): log out another device first.
    #[error("the subject already has {limit} sessions, the most allowed")]
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// The operation is not available in this mode (for example listing the
    /// sessions of a subject with stateless tokens).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// Invalid configuration, found when building a component.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Wraps a backend error; `transient` when the same call may succeed
    /// later.
    pub fn backend(source: impl Into<BoxError>, transient: bool) -> Self {
        Error::Backend {
            source: source.into(),
            transient,
        }
    }

    /// Wraps a decoding error.
    pub fn decode(source: impl Into<BoxError>) -> Self {
        Error::Decode(source.into())
    }

    /// Wraps an encoding error.
    pub fn encode(source: impl Into<BoxError>) -> Self {
        Error::Encode(source.into())
    }

    /// Whether the *same call* may succeed if made again later: a transient
    /// backend failure (connection lost, failover, pool exhausted), a
    /// timeout, or an aborted transaction. Generic retry middleware may
    /// retry these (mind that a timed-out write may have been applied).
    ///
    /// A [`Error::Conflict`] is *not* transient: repeating a stale save
    /// fails forever. See [`Error::is_conflict`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use sessionkit_core::Error;
    /// assert!(Error::Timeout(Some(Duration::from_secs(1))).is_transient());
    /// assert!(!Error::Conflict.is_transient());
    /// assert!(!Error::InvalidId.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { transient, .. } => *transient,
            Error::Timeout(_) | Error::Aborted(_) => true,
            _ => false,
        }
    }

    /// Whether the session changed under the caller: load it again,
    /// reapply the change and save that (what `SessionManager::update`
    /// does). A web layer answers it with 409 Conflict.
    ///
    /// ```
    /// use sessionkit_core::Error;
    /// assert!(Error::Conflict.is_conflict());
    /// assert!(!Error::NotFound.is_conflict());
    /// ```
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict)
    }

    /// Whether the error means "the ticket the client presented is not a
    /// valid session" (malformed ID, rejected or revoked token, expired):
    /// a web layer answers these with an empty session, never an error page.
    pub fn is_invalid_ticket(&self) -> bool {
        matches!(
            self,
            Error::InvalidId
                | Error::InvalidToken(_)
                | Error::Revoked
                | Error::Expired
                | Error::NotFound
        )
    }
}
