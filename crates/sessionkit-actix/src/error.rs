//! Turning session errors into responses.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use sessionkit_core::Error;

/// An error from a session operation in a handler, ready to be returned:
/// handlers can use `?` on [`SessionHandle`](crate::SessionHandle) calls
/// and return `Result<_, SessionError>`.
///
/// The statuses are the table of `sessionkit-http`
/// ([`status_for`](sessionkit_http::status_for)), the same as
/// `sessionkit-axum`'s (the body is a short generic text; details are
/// logged with `tracing`, never sent to the client):
///
/// | error | status |
/// |---|---|
/// | [`Error::Conflict`], [`Error::NotFound`], [`Error::Revoked`], [`Error::Expired`], [`Error::InvalidToken`] with `IssuedBeforeLogout`: the session was saved, ended, rotated or logged out everywhere by a concurrent request | 409 Conflict |
/// | [`Error::Backend`] with `transient`, [`Error::Timeout`], [`Error::Aborted`] | 503 Service Unavailable, `Retry-After: 1` |
/// | anything else | 500 Internal Server Error |
/// | the extractor used without the middleware | 500 Internal Server Error |
///
/// Inside a [`SessionMiddleware`](crate::SessionMiddleware), the 409 becomes
/// the middleware's [`conflict_status`](crate::SessionMiddleware::conflict_status)
/// when one is configured.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// A session operation failed.
    Session(Error),
    /// `SessionHandle<T>` was extracted in a route without a
    /// `SessionMiddleware<T>` for the same `T` (a programming error).
    MissingMiddleware,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Session(e) => e.fmt(f),
            SessionError::MissingMiddleware => {
                f.write_str("no SessionMiddleware for this session type wraps this route")
            }
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Session(e) => e.source(),
            SessionError::MissingMiddleware => None,
        }
    }
}

impl From<Error> for SessionError {
    fn from(e: Error) -> Self {
        SessionError::Session(e)
    }
}

impl SessionError {
    /// The status code this error is answered with (see the table above;
    /// a middleware's configured conflict status replaces 409 in the
    /// response).
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::Session(e) => to_actix(sessionkit_http::status_for(e)),
            SessionError::MissingMiddleware => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the session was changed, ended or rotated by a concurrent
    /// request (answered with 409 or the configured conflict status).
    pub fn is_conflict(&self) -> bool {
        matches!(self, SessionError::Session(e) if sessionkit_http::is_conflict(e))
    }
}

impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        match self {
            SessionError::Session(e) => sessionkit_http::log_handler_error(e, from_actix(status)),
            SessionError::MissingMiddleware => tracing::error!("{self}"),
        }
        let mut response = HttpResponse::build(status);
        if sessionkit_http::needs_retry_after(from_actix(status)) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        response
            .content_type("text/plain; charset=utf-8")
            .body(sessionkit_http::body_for(from_actix(status)))
    }
}

/// An `http` 1.x status as actix-web's.
pub(crate) fn to_actix(status: http::StatusCode) -> StatusCode {
    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An actix-web status as `http` 1.x's.
pub(crate) fn from_actix(status: StatusCode) -> http::StatusCode {
    http::StatusCode::from_u16(status.as_u16()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}
