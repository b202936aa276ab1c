//! The [`TokenCodec`] contract for stateless sessions.

use std::time::Duration;

use crate::error::Result;
use crate::id::SessionId;
use crate::timestamp::Timestamp;

/// What a stateless session token carries.
///
/// A codec must round-trip every field: `jti`, `subject`, `schema` and `data`
/// exactly, `issued_at` to the millisecond (log-out-everywhere compares it
/// with a millisecond instant), the other instants at least to the second.
#[derive(Clone, PartialEq)]
pub struct TokenClaims {
    /// Token ID (`jti`): identifies the session for revocation.
    pub jti: SessionId,
    /// The principal (`sub`).
    pub subject: Option<String>,
    /// When this token was issued (`iat`).
    pub issued_at: Timestamp,
    /// When this token stops being valid (`exp`).
    pub expires_at: Timestamp,
    /// Not valid before (`nbf`).
    pub not_before: Option<Timestamp>,
    /// When the session started (first login); bounds the absolute timeout
    /// across re-issued tokens.
    pub session_started_at: Timestamp,
    /// The schema version of `data`.
    pub schema: u32,
    /// The application's session data.
    pub data: serde_json::Value,
}

impl std::fmt::Debug for TokenClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClaims")
            .field("jti", &self.jti)
            .field("subject", &self.subject)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("not_before", &self.not_before)
            .field("session_started_at", &self.session_started_at)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Turns claims into a client-held token and back.
///
/// `decode` verifies everything before returning: size limit, structure,
/// algorithm, signature, expiry, not-before, issuer, audience. It reports
/// each failure as [`Error::InvalidToken`](crate::Error::InvalidToken) with
/// its [`TokenRejection`](crate::TokenRejection). Revocation is not the
/// codec's job: the [`SessionManager`](crate::SessionManager) checks the
/// [`RevocationList`](crate::RevocationList) after `decode`.
pub trait TokenCodec: Send + Sync + 'static {
    /// Signs `claims` into a token. A token larger than the codec's limit
    /// is [`Error::TooLarge`](crate::Error::TooLarge).
    fn encode(&self, claims: &TokenClaims) -> Result<String>;

    /// Verifies and decodes a token.
    fn decode(&self, token: &str) -> Result<TokenClaims>;

    /// The clock leeway the codec applies to `exp` and `nbf`; a revoked
    /// `jti` is remembered until `exp` plus this leeway.
    fn leeway(&self) -> Duration {
        Duration::ZERO
    }
}

impl<C: TokenCodec + ?Sized> TokenCodec for std::sync::Arc<C> {
    fn encode(&self, claims: &TokenClaims) -> Result<String> {
        (**self).encode(claims)
    }
    fn decode(&self, token: &str) -> Result<TokenClaims> {
        (**self).decode(token)
    }
    fn leeway(&self) -> Duration {
        (**self).leeway()
    }
}
