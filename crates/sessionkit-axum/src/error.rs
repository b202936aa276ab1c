//! Turning session errors into responses.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use sessionkit_core::Error;

/// An error from a session operation in a handler, ready to be returned:
/// handlers can use `?` on [`SessionHandle`](crate::SessionHandle) calls
/// and return `Result<_, SessionError>`.
///
/// Status codes (the body is a short generic text; details are logged with
/// `tracing`, never sent to the client):
///
/// | error | status |
/// |---|---|
/// | [`Error::Conflict`] | 409 Conflict |
/// | [`Error::Backend`] with `retryable`, [`Error::Timeout`] | 503 Service Unavailable |
/// | anything else (backend down for good, too large, encoding, ...) | 500 Internal Server Error |
/// | the extractor used without the layer | 500 Internal Server Error |
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
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::Session(e) => status_for(e),
            SessionError::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The status for a failed session operation (see [`SessionError`]).
pub(crate) fn status_for(error: &Error) -> StatusCode {
    match error {
        Error::Conflict => StatusCode::CONFLICT,
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A short body for a status, with no detail about the failure.
pub(crate) fn body_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::CONFLICT => "the session was changed by another request; try again",
        StatusCode::SERVICE_UNAVAILABLE => "sessions are temporarily unavailable; try again",
        _ => "session error",
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            SessionError::Session(e) => tracing::warn!(
                error = %e,
                source = ?std::error::Error::source(e),
                "session operation failed"
            ),
            SessionError::MissingLayer => tracing::error!("{self}"),
        }
        let mut response = (status, body_for(status)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
