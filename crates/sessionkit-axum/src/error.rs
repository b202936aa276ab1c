//! Turning session errors into responses (the status table itself is
//! shared with `sessionkit-actix` through `sessionkit-http`).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use sessionkit_core::Error;
use sessionkit_http::{
    RETRY_AFTER, body_for, is_conflict, log_handler_error, needs_retry_after, status_for,
};

/// An error from a session operation in a handler, ready to be returned:
/// handlers can use `?` on [`SessionHandle`](crate::SessionHandle) calls
/// and return `Result<_, SessionError>`.
///
/// Status codes (the body is a short generic text; details are logged with
/// `tracing`, never sent to the client):
///
/// | error | status |
/// |---|---|
/// | [`Error::Conflict`]: the session was saved by a concurrent request | 409 Conflict |
/// | [`Error::NotFound`], [`Error::Revoked`], [`Error::Expired`], [`Error::InvalidToken`] with [`TokenRejection::IssuedBeforeLogout`](sessionkit_core::TokenRejection::IssuedBeforeLogout): the session was ended, rotated or logged out everywhere by a concurrent request (a lost [`login`](crate::SessionHandle::login) / [`rotate`](crate::SessionHandle::rotate), or a save that found it gone) | 409 Conflict |
/// | [`Error::Backend`] with `transient`, [`Error::Timeout`] | 503 Service Unavailable, `Retry-After: 1` |
/// | [`Error::Aborted`] (the backend rolled the operation back: a deadlock victim, a serialization failure; nothing was written) | 503 Service Unavailable, `Retry-After: 1` |
/// | anything else (backend down for good, too large, encoding, ...) | 500 Internal Server Error |
/// | the extractor used without the layer | 500 Internal Server Error |
///
/// Inside a [`SessionLayer`](crate::SessionLayer), the 409 becomes the
/// layer's [`conflict_status`](crate::SessionLayer::conflict_status) when
/// one is configured.
///
/// A 409 means "the session changed under this request: reload and decide
/// again" (repeating the same request may not help); a 503 means "nothing
/// is known to be wrong with the request: the same request may succeed in
/// a moment". [`Error::Aborted`] is answered with 503 because the backend
/// guarantees that nothing was applied, so the client may simply repeat
/// the request (it is transient, [`Error::is_transient`]), whereas a 409
/// would tell it to reload first.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A session operation failed.
    #[error(transparent)]
    Session(#[from] Error),
    /// `SessionHandle<T>` was extracted in a route without a
    /// `SessionLayer<T>` for the same `T` (a programming error).
    #[error("no SessionLayer for this session type is installed on this route")]
    MissingLayer,
}

impl SessionError {
    /// The status code this error is answered with (see the table above;
    /// a layer's configured [`conflict_status`](crate::SessionLayer::conflict_status)
    /// replaces 409 in the response).
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::Session(e) => status_for(e),
            SessionError::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the session was changed, ended or rotated by a concurrent
    /// request (answered with 409 or the configured conflict status).
    pub fn is_conflict(&self) -> bool {
        matches!(self, SessionError::Session(e) if is_conflict(e))
    }
}

/// Marks a response made from a [`SessionError`] that lost to a concurrent
/// request, so that the layer can answer it with its configured conflict
/// status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConflictResponse;

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            SessionError::Session(e) => log_handler_error(e, status),
            SessionError::MissingLayer => tracing::error!("{self}"),
        }
        let mut response = (status, body_for(status)).into_response();
        if needs_retry_after(status) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, RETRY_AFTER);
        }
        if self.is_conflict() {
            response.extensions_mut().insert(ConflictResponse);
        }
        response
    }
}
