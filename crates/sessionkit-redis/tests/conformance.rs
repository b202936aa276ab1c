//! The whole testkit against the shared Redis (standalone), a three-master
//! Redis Cluster started by this test binary, and the same on Valkey ≥ 8.1
//! (a private server and a private three-master cluster), where saves take
//! the native `SET … IFEQ` path.

mod common;

/// Creates, loads and saves sessions (with and without a subject) and
/// checks which path every save took.
async fn saves_take(store: &sessionkit_redis::RedisStore, path: sessionkit_redis::SavePath) {
    use std::time::Duration;

    use sessionkit_core::{Record, SessionId, SessionStore, Timestamp};

    assert_eq!(store.save_path(), path);
    for subject in [None, Some("path-check")] {
        let now = Timestamp::now();
        let r = Record::new(
            SessionId::generate(),
            subject.map(str::to_owned),
            b"one".to_vec(),
            now,
            now + Duration::from_secs(600),
        );
        store.create(&r).await.unwrap();
        let mut loaded = store.load(&r.id).await.unwrap().unwrap();
        for i in 0..3 {
            loaded.payload = format!("save {i}").into_bytes().into();
            loaded.version = store.save(&loaded).await.unwrap();
        }
        assert_eq!(store.load(&r.id).await.unwrap(), Some(loaded));
    }
    let stats = store.save_stats();
    match path {
        sessionkit_redis::SavePath::Native => {
            assert_eq!((stats.native, stats.native_missed, stats.script), (6, 0, 0))
        }
        _ => assert_eq!((stats.native, stats.native_missed, stats.script), (0, 0, 6)),
    }
}

/// Standalone: 127.0.0.1:6379 (or `SESSIONKIT_REDIS_URL`), a fresh prefix
/// per store.
mod standalone {
    async fn store() -> Option<sessionkit_redis::RedisStore> {
        super::common::shared_store().await
    }

    sessionkit_testkit::conformance_suite!(store);

    /// Redis 7.0 has no `SET IFEQ`: saves run the script.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saves_are_scripted() {
        let Some(store) = store().await else {
            return;
        };
        super::saves_take(&store, sessionkit_redis::SavePath::Script).await;
    }

    /// The corrupt-record policy (`load` is `Decode`, `list_subject` skips
    /// it, `delete_subject` removes it), with the value overwritten by
    /// garbage behind the store's back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_record_is_skipped_by_list_subject() {
        use sessionkit_redis::redis;

        let Some(store) = store().await else {
            return;
        };
        let mut raw = redis::Client::open(super::common::redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys = store.clone();
        sessionkit_testkit::cases::corrupt_record_is_skipped_by_list_subject(
            &store,
            |id| async move {
                let _: () = redis::cmd("SET")
                    .arg(keys.session_key(&id))
                    .arg("garbage")
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            },
        )
        .await;
    }
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

    /// Redis 7.0 has no `SET IFEQ`: saves run the script.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saves_are_scripted() {
        let Some(store) = store().await else {
            return;
        };
        super::saves_take(&store, sessionkit_redis::SavePath::Script).await;
    }

    /// The corrupt-record policy on a cluster (the garbage is written
    /// through a cluster connection, so it lands on the session's node).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_record_is_skipped_by_list_subject() {
        use sessionkit_redis::redis;

        let Some(store) = store().await else {
            return;
        };
        let cluster = CLUSTER.get().and_then(Option::as_ref).expect("started");
        let mut raw = redis::cluster::ClusterClient::new(cluster.urls())
            .unwrap()
            .get_async_connection()
            .await
            .unwrap();
        let keys = store.clone();
        sessionkit_testkit::cases::corrupt_record_is_skipped_by_list_subject(
            &store,
            |id| async move {
                let _: () = redis::cmd("SET")
                    .arg(keys.session_key(&id))
                    .arg("garbage")
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            },
        )
        .await;
    }

    /// Classic pub/sub is broadcast over the cluster bus: a message
    /// published on one node reaches a subscriber on another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalidation_channel_across_cluster_nodes() {
        use std::time::Duration;

        use sessionkit_core::{
            ChannelEvent, Invalidation, InvalidationChannel, InvalidationMessage, SessionId,
        };
        use sessionkit_redis::RedisInvalidationChannel;

        let Some(store) = store().await else {
            return;
        };
        assert!(store.is_cluster());
        let cluster = CLUSTER.get().and_then(Option::as_ref).expect("started");
        let urls = cluster.urls();
        let config = RedisConfig::new().prefix(random_prefix());
        let publisher = RedisInvalidationChannel::connect(&urls[0], config.clone())
            .await
            .unwrap();
        let subscriber = RedisInvalidationChannel::connect(&urls[2], config)
            .await
            .unwrap();
        let mut rx = subscriber.subscribe().await.unwrap();
        let msg = InvalidationMessage {
            origin: 9,
            target: Invalidation::Id(SessionId::generate()),
        };
        publisher.publish(&msg).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("delivered within 5 s");
        assert_eq!(got, Some(ChannelEvent::Message(msg)));
    }
}

/// Valkey ≥ 8.1, standalone: one private `valkey-server` per test binary
/// (see `common::valkey_binaries`), a fresh prefix per store. Saves take the
/// native path (checked by every store the factory hands out).
mod valkey_standalone {
    use std::sync::OnceLock;

    use sessionkit_redis::{RedisConfig, RedisStore, SavePath};

    use super::common::{RedisServer, random_prefix, valkey_binaries};

    static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();

    fn server() -> Option<&'static RedisServer> {
        SERVER
            .get_or_init(|| {
                valkey_binaries().map(|bins| RedisServer::start_detached_with(&bins, "valkey", &[]))
            })
            .as_ref()
    }

    async fn store() -> Option<RedisStore> {
        let server = server()?;
        let store =
            RedisStore::standalone(&server.url(), RedisConfig::new().prefix(random_prefix()))
                .await
                .expect("connect to the private valkey-server");
        assert_eq!(
            store.save_path(),
            SavePath::Native,
            "valkey >= 8.1 has SET IFEQ"
        );
        Some(store)
    }

    sessionkit_testkit::conformance_suite!(store);

    /// A save of a loaded session is one native write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saves_are_native() {
        let Some(store) = store().await else {
            return;
        };
        super::saves_take(&store, SavePath::Native).await;
    }

    /// The corrupt-record policy on Valkey.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_record_is_skipped_by_list_subject() {
        use sessionkit_redis::redis;

        let Some(store) = store().await else {
            return;
        };
        let mut raw = redis::Client::open(server().expect("started").url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys = store.clone();
        sessionkit_testkit::cases::corrupt_record_is_skipped_by_list_subject(
            &store,
            |id| async move {
                let _: () = redis::cmd("SET")
                    .arg(keys.session_key(&id))
                    .arg("garbage")
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            },
        )
        .await;
    }
}

/// Valkey ≥ 8.1 cluster: three masters, started on first use and killed
/// when the binary exits.
#[cfg(feature = "cluster")]
mod valkey_cluster {
    use std::sync::OnceLock;

    use sessionkit_redis::{RedisConfig, RedisStore, SavePath};

    use super::common::{Cluster, random_prefix, valkey_binaries};

    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();

    async fn store() -> Option<RedisStore> {
        let cluster = CLUSTER
            .get_or_init(|| valkey_binaries().map(|bins| Cluster::start_with(&bins)))
            .as_ref()?;
        let store = RedisStore::cluster(cluster.urls(), RedisConfig::new().prefix(random_prefix()))
            .await
            .expect("connect to the valkey test cluster");
        assert_eq!(
            store.save_path(),
            SavePath::Native,
            "valkey >= 8.1 has SET IFEQ"
        );
        Some(store)
    }

    sessionkit_testkit::conformance_suite!(store);

    /// On the cluster too, a save of a loaded session is one native write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saves_are_native() {
        let Some(store) = store().await else {
            return;
        };
        super::saves_take(&store, SavePath::Native).await;
    }
}
