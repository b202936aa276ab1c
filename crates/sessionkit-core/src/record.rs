//! What a store keeps for one session.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::timestamp::Timestamp;

/// The longest subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;

/// One stored session. Stores persist every field and never interpret the
/// payload.
///
/// ```
/// use std::time::Duration;
/// use sessionkit_core::{Record, SessionId, Timestamp};
///
/// let now = Timestamp::now();
/// let record = Record::new(SessionId::generate(), Some("alice".into()), b"data".to_vec(), now, now + Duration::from_secs(3600));
/// assert_eq!(record.version, 1);
/// assert!(record.is_live(now));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The session's ID.
    pub id: SessionId,
    /// The principal the session belongs to, for per-user listing and
    /// revocation.
    pub subject: Option<String>,
    /// Opaque payload bytes.
    pub payload: Bytes,
    /// Starts at 1; a successful `save` stores `version + 1`.
    pub version: u64,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When the record stops being live (absolute instant).
    pub expires_at: Timestamp,
}

impl Record {
    /// A new record at version 1.
    pub fn new(
        id: SessionId,
        subject: Option<String>,
        payload: impl Into<Bytes>,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Self {
        Record {
            id,
            subject,
            payload: payload.into(),
            version: 1,
            created_at,
            expires_at,
        }
    }

    /// Whether the record is still live at `now` (`expires_at > now`).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at > now
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("payload_len", &self.payload.len())
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Checks a subject: 1 to [`MAX_SUBJECT_LEN`] bytes, no control characters.
///
/// ```
/// use sessionkit_core::validate_subject;
/// assert!(validate_subject("user-42").is_ok());
/// assert!(validate_subject("").is_err());
/// assert!(validate_subject("a\nb").is_err());
/// ```
pub fn validate_subject(subject: &str) -> Result<()> {
    if subject.is_empty()
        || subject.len() > MAX_SUBJECT_LEN
        || subject.chars().any(char::is_control)
    {
        return Err(Error::InvalidSubject);
    }
    Ok(())
}
