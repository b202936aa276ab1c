//! The whole testkit against the shared Redis (standalone) and against a
//! three-master Redis Cluster started by this test binary.

mod common;

/// Standalone: 127.0.0.1:6379 (or `SESSIONKIT_REDIS_URL`), a fresh prefix
/// per store.
mod standalone {
    async fn store() -> Option<sessionkit_redis::RedisStore> {
        super::common::shared_store().await
    }

    sessionkit_testkit::conformance_suite!(store);
}

/// Redis Cluster: one cluster per test binary, started on first use and
/// killed when the binary exits (see `common::RedisServer`); a fresh prefix
/// and a fresh cluster connection per store.
#[cfg(feature = "cluster")]
mod cluster {
    use std::sync::OnceLock;

    use sessionkit_redis::{RedisConfig, RedisStore};

    use super::common::{Cluster, have_redis_binaries, random_prefix};

    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();

    async fn store() -> Option<RedisStore> {
        let cluster = CLUSTER
            .get_or_init(|| have_redis_binaries().then(Cluster::start))
            .as_ref()?;
        let store = RedisStore::cluster(cluster.urls(), RedisConfig::new().prefix(random_prefix()))
            .await
            .expect("connect to the test cluster");
        Some(store)
    }

    sessionkit_testkit::conformance_suite!(store);
}
