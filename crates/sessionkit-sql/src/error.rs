//! Mapping sqlx errors to `sessionkit_core::Error`.
//!
//! Every statement the store runs is one autocommit statement, so a
//! statement the server rolled back (a deadlock victim, a serialization
//! failure, a lock wait that timed out) applied nothing: that is
//! [`Error::Aborted`], which `SessionManager::update` retries. A lost
//! connection mid-statement may or may not have applied it: that is a
//! transient [`Error::Backend`]. A statement the server cancelled because of
//! its statement timeout (or SQLite's busy timeout) is [`Error::Timeout`].

use std::time::Duration;

use sessionkit_core::Error;

use crate::dialect::Dialect;

/// What a database error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The server cancelled the statement because of a statement timeout.
    Timeout,
    /// The server rolled the statement back before applying anything
    /// (deadlock victim, serialization failure, lock wait timeout): the same
    /// call may succeed at once.
    Aborted,
    /// Connection lost, server shutting down, pool exhausted: another
    /// attempt may succeed; whether this one applied a write is unknown.
    Transient,
    /// Anything else (syntax, permissions, constraint, closed pool): the
    /// same call will fail again.
    Permanent,
}

fn classify_database(dialect: Dialect, err: &dyn sqlx::error::DatabaseError) -> Class {
    let code = err.code();
    let code = code.as_deref().unwrap_or("");
    match dialect {
        Dialect::Postgres => match code {
            // query_canceled: statement_timeout (or a cancel request).
            "57014" => Class::Timeout,
            // serialization_failure, deadlock_detected: the transaction (our
            // one statement) was rolled back. lock_not_available
            // (lock_timeout, NOWAIT): the statement failed and its
            // autocommit transaction was rolled back.
            "40001" | "40P01" | "55P03" => Class::Aborted,
            // admin_shutdown (pg_terminate_backend), crash_shutdown,
            // cannot_connect_now, too many connections.
            "57P01" | "57P02" | "57P03" | "53300" => Class::Transient,
            // Class 08: connection exception.
            c if c.starts_with("08") => Class::Transient,
            _ => Class::Permanent,
        },
        Dialect::MySql => match mysql_number(err) {
            // MariaDB max_statement_time exceeded, MySQL max_execution_time exceeded.
            1969 | 3024 => Class::Timeout,
            // 1213: deadlock; InnoDB rolled back the victim's transaction.
            // 1205: lock wait timeout; InnoDB rolls back the statement (the
            // whole transaction with innodb_rollback_on_timeout), which for
            // an autocommit statement is everything: nothing was applied
            // either way, and a retry may get the lock.
            1213 | 1205 => Class::Aborted,
            // Connection killed / query interrupted, server shutdown, too
            // many connections, network read/write errors, gone away / lost,
            // disconnected for inactivity.
            1927 | 1317 | 1053 | 1040 | 1158 | 1159 | 1160 | 1161 | 2006 | 2013 | 4031 => {
                Class::Transient
            }
            _ => Class::Permanent,
        },
        Dialect::Sqlite => match code.parse::<u32>() {
            // SQLITE_BUSY_SNAPSHOT: a stale read snapshot could not be
            // upgraded to write; the statement did nothing.
            Ok(517) => Class::Aborted,
            // SQLITE_BUSY (with its other extended codes): another
            // connection held the lock for longer than the busy timeout.
            Ok(c) if c & 0xff == 5 => Class::Timeout,
            // SQLITE_LOCKED: a conflict within a shared-cache database.
            Ok(c) if c & 0xff == 6 => Class::Transient,
            _ => Class::Permanent,
        },
    }
}

/// The server's numeric error code (`code()` is the SQLSTATE, too coarse).
fn mysql_number(err: &dyn sqlx::error::DatabaseError) -> u16 {
    #[cfg(feature = "mysql")]
    if let Some(e) = err.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return e.number();
    }
    let _ = err;
    0
}

/// Whether a database error is a unique-key violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

fn classify(dialect: Dialect, err: &sqlx::Error) -> Class {
    match err {
        sqlx::Error::Database(db) => classify_database(dialect, db.as_ref()),
        // The connection broke (or a worker thread died with it): the pool
        // replaces it, a later call may work.
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => Class::Transient,
        // A closed pool stays closed; TLS errors are certificate or
        // configuration problems far more often than network ones; the
        // rest are programming, schema or decoding errors.
        _ => Class::Permanent,
    }
}

/// Maps an sqlx error to the sessionkit error type. `timeout` is the limit
/// the server enforces on one statement (statement timeout, SQLite busy
/// timeout) when it is known, reported in [`Error::Timeout`].
pub(crate) fn map(dialect: Dialect, timeout: Option<Duration>, err: sqlx::Error) -> Error {
    match classify(dialect, &err) {
        Class::Timeout => Error::Timeout(timeout),
        Class::Aborted => Error::Aborted(Box::new(err)),
        Class::Transient => Error::backend(err, true),
        Class::Permanent => Error::backend(err, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_errors() {
        let transient = |e: sqlx::Error| {
            matches!(
                map(Dialect::Postgres, None, e),
                Error::Backend {
                    transient: true,
                    ..
                }
            )
        };
        assert!(transient(sqlx::Error::PoolTimedOut));
        assert!(transient(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(transient(sqlx::Error::WorkerCrashed));
        assert!(transient(sqlx::Error::Protocol("unexpected".into())));
        assert!(!transient(sqlx::Error::PoolClosed));
        assert!(!transient(sqlx::Error::BeginFailed));
        assert!(!transient(sqlx::Error::RowNotFound));
        assert!(matches!(
            map(Dialect::Sqlite, None, sqlx::Error::PoolClosed),
            Error::Backend {
                transient: false,
                ..
            }
        ));
    }
}
