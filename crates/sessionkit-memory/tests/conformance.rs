//! `MemoryStore` runs the whole sessionkit conformance suite.

use sessionkit_memory::MemoryStore;

async fn store() -> Option<MemoryStore> {
    Some(MemoryStore::new())
}

sessionkit_testkit::conformance_suite!(store);

/// The same suite against a small store that evicts while it runs: the
/// bound must never break the contract for records that are still held.
mod bounded {
    use sessionkit_memory::MemoryStore;

    async fn store() -> Option<MemoryStore> {
        Some(
            MemoryStore::builder()
                .max_entries(10_000)
                .max_bytes(8 * 1024 * 1024)
                .build()
                .expect("valid bounds"),
        )
    }

    sessionkit_testkit::conformance_suite!(store);
}
