//! Mapping sqlx errors to `sessionkit_core::Error`.

use std::time::Duration;

use sessionkit_core::Error;

use crate::dialect::Dialect;

/// sqlx's default `busy_timeout` for SQLite connections.
const SQLITE_DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a database error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The server cancelled the statement because of a statement timeout.
    Timeout,
    /// Connection lost, server shutting down, lock contention, deadlock:
    /// another attempt may succeed.
    Retryable,
    /// Anything else (syntax, permissions, constraint).
    Permanent,
}

fn classify_database(dialect: Dialect, err: &dyn sqlx::error::DatabaseError) -> Class {
    let code = err.code();
    let code = code.as_deref().unwrap_or("");
    match dialect {
        Dialect::Postgres => match code {
            // query_canceled: statement_timeout (or a cancel request).
            "57014" => Class::Timeout,
            // admin_shutdown (pg_terminate_backend), crash_shutdown,
            // cannot_connect_now, serialization and deadlock failures,
            // too many connections, lock_not_available.
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300" | "55P03" => Class::Retryable,
            // Class 08: connection exception.
            c if c.starts_with("08") => Class::Retryable,
            _ => Class::Permanent,
        },
        Dialect::MySql => match mysql_number(err) {
            // MariaDB max_statement_time exceeded, MySQL max_execution_time exceeded.
            1969 | 3024 => Class::Timeout,
            // Lock wait timeout, deadlock, connection killed / interrupted,
            // server shutdown, too many connections, gone away / lost.
            1205 | 1213 | 1927 | 1317 | 1053 | 1040 | 1158 | 1159 | 1160 | 1161 | 2006 | 2013 => {
                Class::Retryable
            }
            _ => Class::Permanent,
        },
        Dialect::Sqlite => match code.parse::<u32>().map(|c| c & 0xff) {
            // SQLITE_BUSY (with its extended codes): another connection held
            // the lock for longer than the busy timeout.
            Ok(5) => Class::Timeout,
            // SQLITE_LOCKED: a conflict within a shared-cache database.
            Ok(6) => Class::Retryable,
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

/// Maps an sqlx error to the sessionkit error type. `timeout` is the
/// configured statement timeout, reported in [`Error::Timeout`].
pub(crate) fn map(dialect: Dialect, timeout: Option<Duration>, err: sqlx::Error) -> Error {
    let class = match &err {
        sqlx::Error::Database(db) => classify_database(dialect, db.as_ref()),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => Class::Retryable,
        _ => Class::Permanent,
    };
    match class {
        // Without a configured timeout: sqlx's default SQLite busy timeout,
        // or zero where the server's own setting (unknown here) applied.
        Class::Timeout => Error::Timeout(timeout.unwrap_or(match dialect {
            Dialect::Sqlite => SQLITE_DEFAULT_BUSY_TIMEOUT,
            Dialect::Postgres | Dialect::MySql => Duration::ZERO,
        })),
        Class::Retryable => Error::backend(err, true),
        Class::Permanent => Error::backend(err, false),
    }
}
