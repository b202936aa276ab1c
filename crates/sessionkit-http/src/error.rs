//! The error → status table shared by the web integrations.

use http::{HeaderValue, StatusCode};
use sessionkit_core::{Error, TokenRejection};

/// The `Retry-After` value sent with every 503 (seconds).
pub const RETRY_AFTER: HeaderValue = HeaderValue::from_static("1");

/// Whether a failed session operation means that a concurrent request
/// changed, ended or rotated the session under this one: [`Error::Conflict`]
/// (saved meanwhile), [`Error::NotFound`], [`Error::Revoked`],
/// [`Error::Expired`], [`Error::InvalidToken`] with
/// [`TokenRejection::IssuedBeforeLogout`] (ended, rotated or logged out
/// everywhere meanwhile). Answered with 409 Conflict (or the configured
/// conflict status).
pub fn is_conflict(error: &Error) -> bool {
    matches!(
        error,
        Error::Conflict
            | Error::NotFound
            | Error::Revoked
            | Error::Expired
            | Error::InvalidToken(TokenRejection::IssuedBeforeLogout)
    )
}

/// Whether `error`, from a rotation of the request's session, means that
/// the session's ticket is dead (ended, rotated or expired by a concurrent
/// request), as opposed to saved meanwhile ([`Error::Conflict`]) or a
/// backend failure, after which the session is unchanged.
pub fn is_ended(error: &Error) -> bool {
    is_conflict(error) && !matches!(error, Error::Conflict)
}

/// The status a failed session operation is answered with:
///
/// | error | status |
/// |---|---|
/// | [`is_conflict`]: changed, ended or rotated by a concurrent request | 409 Conflict |
/// | [`Error::Backend`] with `transient`, [`Error::Timeout`], [`Error::Aborted`] ([`Error::is_transient`]) | 503 Service Unavailable, with `Retry-After: 1` ([`RETRY_AFTER`]) |
/// | anything else | 500 Internal Server Error |
///
/// ```
/// use http::StatusCode;
/// use sessionkit_core::Error;
///
/// assert_eq!(sessionkit_http::status_for(&Error::Conflict), StatusCode::CONFLICT);
/// assert_eq!(
///     sessionkit_http::status_for(&Error::Timeout(None)),
///     StatusCode::SERVICE_UNAVAILABLE
/// );
/// ```
pub fn status_for(error: &Error) -> StatusCode {
    match error {
        e if is_conflict(e) => StatusCode::CONFLICT,
        e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A short response body for a status, with no detail about the failure.
pub fn body_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::CONFLICT => "the session was changed by another request; try again",
        StatusCode::SERVICE_UNAVAILABLE => "sessions are temporarily unavailable; try again",
        _ => "session error",
    }
}

/// Whether a response with `status` gets `Retry-After: 1` ([`RETRY_AFTER`]).
pub fn needs_retry_after(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE
}

/// Logs a session error a handler returned, at the level it deserves
/// (a conflict is routine: info; anything else: warn). Only the error's
/// text is logged, which never contains a session ID or ticket.
pub fn log_handler_error(error: &Error, status: StatusCode) {
    if is_conflict(error) {
        tracing::info!(error = %error, "the session changed under the request; answering {status}");
    } else {
        tracing::warn!(
            error = %error,
            source = ?std::error::Error::source(error),
            "session operation failed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let transient = Error::Backend {
            source: "down".into(),
            transient: true,
        };
        let permanent = Error::Backend {
            source: "bad".into(),
            transient: false,
        };
        let cases = [
            (Error::Conflict, 409),
            (Error::NotFound, 409),
            (Error::Revoked, 409),
            (Error::Expired, 409),
            (Error::InvalidToken(TokenRejection::IssuedBeforeLogout), 409),
            (transient, 503),
            (Error::Timeout(None), 503),
            (Error::Aborted("deadlock".into()), 503),
            (permanent, 500),
        ];
        for (e, status) in cases {
            assert_eq!(status_for(&e).as_u16(), status, "{e:?}");
        }
        assert!(is_ended(&Error::NotFound));
        assert!(!is_ended(&Error::Conflict));
        assert!(needs_retry_after(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!needs_retry_after(StatusCode::CONFLICT));
    }
}
