//! The sessionkit-testkit conformance suite (contract cases, model-based
//! property test, concurrency test) on every database: a SQLite file, an
//! in-memory SQLite database, PostgreSQL and MariaDB. Every test gets its
//! own random table, dropped when the test ends.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "mysql"))]

mod common;

mod sqlite_file {
    use super::common;
    async fn store() -> Option<common::Scoped> {
        common::sqlite_file_store().await
    }
    sessionkit_testkit::conformance_suite!(store);
}

mod sqlite_memory {
    use super::common;
    async fn store() -> Option<common::Scoped> {
        common::sqlite_memory_store().await
    }
    sessionkit_testkit::conformance_suite!(store);
}

mod postgres {
    use super::common;
    async fn store() -> Option<common::Scoped> {
        common::postgres_store().await
    }
    sessionkit_testkit::conformance_suite!(store);
}

mod mysql {
    use super::common;
    async fn store() -> Option<common::Scoped> {
        common::mysql_store().await
    }
    sessionkit_testkit::conformance_suite!(store);
}
