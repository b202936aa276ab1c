//! Per-database SQL text. Everything dialect-specific about the store lives
//! here as data: the Rust logic in `core.rs` exists once.

use std::fmt::Write as _;
use std::sync::Arc;

use sessionkit_core::{Error, Result};

/// The SQL database family a [`SqlStore`](crate::SqlStore) talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite (embedded, a file or in memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Dialect {
    /// The database family an URL names, from its scheme
    /// (`sqlite:`, `postgres://` / `postgresql://`, `mysql://` / `mariadb://`).
    ///
    /// ```
    /// use sessionkit_sql::Dialect;
    /// assert_eq!(Dialect::from_url("sqlite::memory:"), Some(Dialect::Sqlite));
    /// assert_eq!(Dialect::from_url("postgres://127.0.0.1/test"), Some(Dialect::Postgres));
    /// assert_eq!(Dialect::from_url("mariadb://root@127.0.0.1/test"), Some(Dialect::MySql));
    /// assert_eq!(Dialect::from_url("redis://127.0.0.1"), None);
    /// ```
    pub fn from_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            _ => None,
        }
    }

    fn quote(self, ident: &str) -> String {
        match self {
            Dialect::MySql => format!("`{ident}`"),
            Dialect::Sqlite | Dialect::Postgres => format!("\"{ident}\""),
        }
    }

    /// Rewrites `?` placeholders to `$1, $2, …` for PostgreSQL. The
    /// statements below contain no string literals, so every `?` is a
    /// placeholder.
    fn placeholders(self, sql: String) -> String {
        if self != Dialect::Postgres {
            return sql;
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                let _ = write!(out, "${n}");
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// The statements a store runs, for inspection with `EXPLAIN` (see
/// [`SqlStore::sql`](crate::SqlStore::sql)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Statement {
    /// `create`: the insert (on SQLite and PostgreSQL an upsert that only
    /// replaces an expired row).
    Create,
    /// `create` on MySQL, after a duplicate key: removes an expired row with
    /// the same ID before the insert is retried.
    ReclaimExpired,
    /// `load`: one live row by ID.
    Load,
    /// `save`: the compare-and-swap update.
    Save,
    /// After a `save` that updated nothing: the live version, to tell
    /// `Conflict` from `NotFound`.
    LiveVersion,
    /// `touch`.
    Touch,
    /// `delete`.
    Delete,
    /// `compare_and_delete`: removes the live row only at the given version.
    CompareAndDelete,
    /// `list_subject`.
    ListSubject,
    /// `delete_subject`.
    DeleteSubject,
    /// One batch of `delete_expired`.
    DeleteExpiredBatch,
    /// One page of `scan`: live rows after an ID, in ID order (a range of
    /// the primary key).
    Scan,
}

/// Longest identifier accepted (PostgreSQL truncates beyond 63 bytes).
const MAX_IDENT: usize = 63;

/// Checks an identifier against `^[A-Za-z_][A-Za-z0-9_]{0,62}$`.
///
/// ```
/// use sessionkit_sql::validate_identifier;
/// assert!(validate_identifier("sessions").is_ok());
/// assert!(validate_identifier("app_sessions_2").is_ok());
/// assert!(validate_identifier("1sessions").is_err());
/// assert!(validate_identifier("sessions; DROP TABLE users").is_err());
/// assert!(validate_identifier(&"a".repeat(64)).is_err());
/// ```
pub fn validate_identifier(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_IDENT
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid SQL identifier {name:?}: expected 1 to 63 characters of [A-Za-z0-9_], not starting with a digit"
        )))
    }
}

/// FNV-1a, to derive short, stable index names from long table names.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `{table}_{suffix}`, shortened with a hash when it would exceed the
/// identifier limit (index names share a namespace per schema on
/// PostgreSQL and per database on SQLite).
fn index_name(table: &str, suffix: &str) -> String {
    let name = format!("{table}_{suffix}");
    if name.len() <= MAX_IDENT {
        return name;
    }
    let keep = MAX_IDENT - suffix.len() - 10;
    format!("{}_{:08x}_{suffix}", &table[..keep], fnv1a(table))
}

/// One schema migration: statements run in order, inside the migration lock.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) statements: Vec<String>,
}

/// Every statement of one store, built once from the dialect and the
/// (validated) table name.
pub(crate) struct Sql {
    pub(crate) dialect: Dialect,
    pub(crate) table: String,
    pub(crate) create: Arc<str>,
    pub(crate) reclaim_expired: Arc<str>,
    pub(crate) load: Arc<str>,
    pub(crate) save: Arc<str>,
    pub(crate) live_version: Arc<str>,
    pub(crate) touch: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) compare_and_delete: Arc<str>,
    pub(crate) list_subject: Arc<str>,
    pub(crate) delete_subject: Arc<str>,
    pub(crate) delete_expired_batch: Arc<str>,
    pub(crate) scan: Arc<str>,
    pub(crate) create_schema: Option<String>,
    pub(crate) create_migrations_table: String,
    pub(crate) applied_migrations: String,
    pub(crate) record_migration: String,
    pub(crate) migrations: Vec<Migration>,
}

/// The name of the bookkeeping table, one per schema, keyed by table name.
pub(crate) const MIGRATIONS_TABLE: &str = "sessionkit_migrations";

impl Sql {
    pub(crate) fn new(dialect: Dialect, table: &str, schema: Option<&str>) -> Result<Sql> {
        validate_identifier(table)?;
        if let Some(schema) = schema {
            validate_identifier(schema)?;
            if dialect != Dialect::Postgres {
                return Err(Error::Config(
                    "a schema can only be set for PostgreSQL".to_owned(),
                ));
            }
        }
        let qualify = |name: &str| match schema {
            Some(s) => format!("{}.{}", dialect.quote(s), dialect.quote(name)),
            None => dialect.quote(name),
        };
        let t = qualify(table);
        let migrations_table = qualify(MIGRATIONS_TABLE);
        let idx_subject = dialect.quote(&index_name(table, "subject_idx"));
        let idx_expires = dialect.quote(&index_name(table, "expires_idx"));
        let p = |s: String| Arc::<str>::from(dialect.placeholders(s));

        const COLS: &str = "id, subject, payload, version, created_at, expires_at";
        // MySQL keeps the subject as bytes (VARBINARY: its text collations
        // ignore trailing spaces); the store reads them as bytes and checks
        // the UTF-8 itself (a CAST would turn invalid bytes into `?`).
        let subject_col = "subject";
        let create = match dialect {
            // One atomic statement: insert, or replace a row with the same ID
            // only if that row has expired. Zero rows affected = a live row
            // holds the ID.
            Dialect::Postgres => format!(
                "INSERT INTO {t} AS cur ({COLS}) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET subject = EXCLUDED.subject, \
                 payload = EXCLUDED.payload, version = EXCLUDED.version, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
                 WHERE cur.expires_at <= ?"
            ),
            Dialect::Sqlite => format!(
                "INSERT INTO {t} ({COLS}) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET subject = excluded.subject, \
                 payload = excluded.payload, version = excluded.version, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at \
                 WHERE {t}.expires_at <= ?"
            ),
            // MySQL's `ON DUPLICATE KEY UPDATE` cannot report "replaced" apart
            // from "left alone" when sqlx counts matched rows (CLIENT_FOUND_ROWS),
            // so MySQL inserts plainly and, on a duplicate key, reclaims the ID
            // only from an expired row (`reclaim_expired`) and inserts again.
            Dialect::MySql => format!("INSERT INTO {t} ({COLS}) VALUES (?, ?, ?, ?, ?, ?)"),
        };
        // Every statement that addresses one row by ID must lock that row
        // through the primary key only. InnoDB locks the index entries a
        // statement reads: planned as a range scan of the `expires_at` index
        // (which MariaDB does on small tables, the estimates being equal),
        // an UPDATE locks that index entry and then the primary key, while a
        // concurrent UPDATE of the same row that found it by primary key
        // holds the key and then needs the `expires_at` entry it rewrites:
        // opposite orders, a deadlock. On MySQL the liveness test is
        // therefore written `expires_at + 0 > ?`, an expression no index can
        // serve, which leaves the primary key as the only usable index (a
        // single-table DELETE accepts no index hint there). PostgreSQL locks
        // rows, not index entries, and SQLite locks the whole database, so
        // they keep the plain predicate.
        let live = match dialect {
            Dialect::MySql => "expires_at + 0 > ?",
            Dialect::Postgres | Dialect::Sqlite => "expires_at > ?",
        };
        let expired = match dialect {
            Dialect::MySql => "expires_at + 0 <= ?",
            Dialect::Postgres | Dialect::Sqlite => "expires_at <= ?",
        };
        let reclaim_expired = format!("DELETE FROM {t} WHERE id = ? AND {expired}");
        let load = format!(
            "SELECT {subject_col}, payload, version, created_at, expires_at FROM {t} \
             WHERE id = ? AND {live}"
        );
        let save = format!(
            "UPDATE {t} SET subject = ?, payload = ?, version = ?, created_at = ?, expires_at = ? \
             WHERE id = ? AND version = ? AND {live}"
        );
        let live_version = format!("SELECT version FROM {t} WHERE id = ? AND {live}");
        let touch = format!("UPDATE {t} SET expires_at = ? WHERE id = ? AND {live}");
        let delete = format!("DELETE FROM {t} WHERE id = ? AND {live}");
        let compare_and_delete = format!("DELETE FROM {t} WHERE id = ? AND version = ? AND {live}");
        let list_subject = format!(
            "SELECT id, {subject_col}, payload, version, created_at, expires_at FROM {t} \
             WHERE subject = ? AND expires_at > ? ORDER BY created_at, id"
        );
        let delete_subject = format!("DELETE FROM {t} WHERE subject = ? AND expires_at > ?");
        let delete_expired_batch = match dialect {
            // MySQL does not allow LIMIT in an IN subquery, but has DELETE … LIMIT.
            Dialect::MySql => {
                format!("DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?")
            }
            Dialect::Postgres | Dialect::Sqlite => format!(
                "DELETE FROM {t} WHERE id IN \
                 (SELECT id FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
            ),
        };
        // Keyset pagination on the primary key: rows after the cursor's ID,
        // in ID order, so that the primary key serves both the range and the
        // order (a page costs its own rows, not the rows before it). The
        // liveness test is kept off the `expires_at` index (the MySQL
        // `expires_at + 0` of above, SQLite's `+expires_at`), whose range
        // scan would need every live row sorted for each page. On SQLite the
        // cursor is bound as bytes and read back as text (so that an ID that
        // is not valid UTF-8 can still be passed), and only text IDs are
        // scanned: a BLOB sorts after every text, so a cursor could never
        // move past one.
        let scan = match dialect {
            Dialect::MySql => format!(
                "SELECT id, {subject_col}, payload, version, created_at, expires_at FROM {t} \
                 WHERE id > ? AND expires_at + 0 > ? ORDER BY id LIMIT ?"
            ),
            Dialect::Postgres => format!(
                "SELECT id, {subject_col}, payload, version, created_at, expires_at FROM {t} \
                 WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?"
            ),
            Dialect::Sqlite => format!(
                "SELECT id, {subject_col}, payload, version, created_at, expires_at FROM {t} \
                 WHERE id > CAST(? AS TEXT) AND typeof(id) = 'text' AND +expires_at > ? \
                 ORDER BY id LIMIT ?"
            ),
        };

        let create_schema =
            schema.map(|s| format!("CREATE SCHEMA IF NOT EXISTS {}", dialect.quote(s)));
        let create_migrations_table = match dialect {
            Dialect::MySql => format!(
                "CREATE TABLE IF NOT EXISTS {migrations_table} (\
                 table_name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
                 version BIGINT NOT NULL, applied_at BIGINT NOT NULL, \
                 PRIMARY KEY (table_name, version)) ENGINE=InnoDB"
            ),
            Dialect::Postgres | Dialect::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {migrations_table} (\
                 table_name TEXT NOT NULL, version BIGINT NOT NULL, applied_at BIGINT NOT NULL, \
                 PRIMARY KEY (table_name, version))"
            ),
        };
        let applied_migrations =
            format!("SELECT version FROM {migrations_table} WHERE table_name = ?");
        let record_migration = format!(
            "INSERT INTO {migrations_table} (table_name, version, applied_at) VALUES (?, ?, ?)"
        );

        let v1 = match dialect {
            Dialect::Postgres => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     id TEXT COLLATE \"C\" PRIMARY KEY, subject TEXT COLLATE \"C\", \
                     payload BYTEA NOT NULL, version BIGINT NOT NULL, \
                     created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)"
                ),
                format!("CREATE INDEX IF NOT EXISTS {idx_subject} ON {t} (subject)"),
                format!("CREATE INDEX IF NOT EXISTS {idx_expires} ON {t} (expires_at)"),
            ],
            Dialect::Sqlite => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\
                     id TEXT NOT NULL PRIMARY KEY, subject TEXT, payload BLOB NOT NULL, \
                     version INTEGER NOT NULL, created_at INTEGER NOT NULL, \
                     expires_at INTEGER NOT NULL)"
                ),
                format!("CREATE INDEX IF NOT EXISTS {idx_subject} ON {t} (subject)"),
                format!("CREATE INDEX IF NOT EXISTS {idx_expires} ON {t} (expires_at)"),
            ],
            // MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB has): the
            // indexes are part of the one CREATE TABLE statement, so a
            // migration interrupted half-way can simply run again. IDs and
            // subjects compare byte for byte: the ID is ASCII with a binary
            // collation (IDs never contain spaces), the subject VARBINARY
            // (text collations there ignore trailing spaces). 1024 bytes
            // hold the 256 characters of the longest valid subject.
            Dialect::MySql => vec![format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
                 subject VARBINARY(1024) NULL, \
                 payload LONGBLOB NOT NULL, version BIGINT NOT NULL, \
                 created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, \
                 INDEX {idx_subject} (subject), INDEX {idx_expires} (expires_at)\
                 ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            )],
        };

        Ok(Sql {
            dialect,
            table: table.to_owned(),
            create: p(create),
            reclaim_expired: p(reclaim_expired),
            load: p(load),
            save: p(save),
            live_version: p(live_version),
            touch: p(touch),
            delete: p(delete),
            compare_and_delete: p(compare_and_delete),
            list_subject: p(list_subject),
            delete_subject: p(delete_subject),
            delete_expired_batch: p(delete_expired_batch),
            scan: p(scan),
            create_schema,
            create_migrations_table,
            applied_migrations: dialect.placeholders(applied_migrations),
            record_migration: dialect.placeholders(record_migration),
            migrations: vec![Migration {
                version: 1,
                statements: v1,
            }],
        })
    }

    pub(crate) fn statement(&self, which: Statement) -> &str {
        match which {
            Statement::Create => &self.create,
            Statement::ReclaimExpired => &self.reclaim_expired,
            Statement::Load => &self.load,
            Statement::Save => &self.save,
            Statement::LiveVersion => &self.live_version,
            Statement::Touch => &self.touch,
            Statement::Delete => &self.delete,
            Statement::CompareAndDelete => &self.compare_and_delete,
            Statement::ListSubject => &self.list_subject,
            Statement::DeleteSubject => &self.delete_subject,
            Statement::DeleteExpiredBatch => &self.delete_expired_batch,
            Statement::Scan => &self.scan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        let sql = Sql::new(Dialect::Postgres, "s", Some("app")).unwrap();
        assert_eq!(
            &*sql.touch,
            "UPDATE \"app\".\"s\" SET expires_at = $1 WHERE id = $2 AND expires_at > $3"
        );
        assert!(sql.create.ends_with("WHERE cur.expires_at <= $7"));
    }

    #[test]
    fn mysql_single_row_statements_leave_only_the_primary_key() {
        let sql = Sql::new(Dialect::MySql, "s", None).unwrap();
        for which in [
            Statement::Load,
            Statement::Save,
            Statement::LiveVersion,
            Statement::Touch,
            Statement::Delete,
            Statement::CompareAndDelete,
            Statement::ReclaimExpired,
        ] {
            let text = sql.statement(which);
            assert!(text.contains("WHERE id = ? AND "), "{which:?}: {text}");
            assert!(text.contains("expires_at + 0 "), "{which:?}: {text}");
        }
        assert_eq!(
            sql.statement(Statement::CompareAndDelete),
            "DELETE FROM `s` WHERE id = ? AND version = ? AND expires_at + 0 > ?"
        );
        let pg = Sql::new(Dialect::Postgres, "s", None).unwrap();
        assert_eq!(
            pg.statement(Statement::CompareAndDelete),
            "DELETE FROM \"s\" WHERE id = $1 AND version = $2 AND expires_at > $3"
        );
    }

    #[test]
    fn schema_only_on_postgres() {
        assert!(Sql::new(Dialect::MySql, "s", Some("app")).is_err());
        assert!(Sql::new(Dialect::Sqlite, "s", Some("app")).is_err());
        assert!(Sql::new(Dialect::Postgres, "s", Some("bad name")).is_err());
    }

    #[test]
    fn long_index_names_are_shortened_and_distinct() {
        let a = "a".repeat(63);
        let mut b = "a".repeat(62);
        b.push('b');
        let (ia, ib) = (index_name(&a, "subject_idx"), index_name(&b, "subject_idx"));
        assert!(ia.len() <= MAX_IDENT && ib.len() <= MAX_IDENT);
        assert_ne!(ia, ib);
        assert_eq!(
            index_name("sessions", "expires_idx"),
            "sessions_expires_idx"
        );
    }
}
