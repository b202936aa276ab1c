//! `CachedStore` in front of the real backends: the conformance suite
//! through the cache, and (Redis) coherence between two application
//! instances joined by the pub/sub invalidation channel.
//!
//! Run with `cargo test -p sessionkit-integration-tests --test cached_backends`
//! (each part runs with its own feature).

mod redis_backend {
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use sessionkit_core::{InvalidationChannel, Record, SessionId, SessionStore, Timestamp};
    use sessionkit_memory::CachedStore;
    use sessionkit_redis::{RedisConfig, RedisInvalidationChannel, RedisStore, redis};

    const HOUR: Duration = Duration::from_secs(3600);

    /// The shared server (env `SESSIONKIT_REDIS_URL`, default loopback).
    fn redis_url() -> String {
        std::env::var("SESSIONKIT_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    fn random_prefix() -> String {
        let id = SessionId::generate();
        // Only the 16 random bytes, hex-encoded: a valid, unique prefix.
        let hex: String = id.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("skcache:{}", &hex[..12])
    }

    fn record(payload: &str) -> Record {
        let now = Timestamp::now();
        Record::new(
            SessionId::generate(),
            Some("cache-coherence".into()),
            payload.as_bytes().to_vec(),
            now,
            now + HOUR,
        )
    }

    /// Polls `check` every 1 ms until it holds or `limit` passes.
    async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if check().await {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The conformance suite on `CachedStore<RedisStore>` (shared server).
    mod conformance {
        use sessionkit_memory::CachedStore;
        use sessionkit_redis::{RedisConfig, RedisStore};

        async fn store() -> Option<CachedStore<RedisStore>> {
            let url = super::redis_url();
            match RedisStore::standalone(&url, RedisConfig::new().prefix(super::random_prefix()))
                .await
            {
                Ok(store) => Some(CachedStore::new(store).expect("build the cache")),
                Err(err) => sessionkit_testkit::skip(&format!("redis at {url}"), err),
            }
        }

        sessionkit_testkit::conformance_suite!(store);
    }

    /// Two application instances: each its own store connection, channel
    /// and cache, on one Redis and one prefix.
    async fn two_instances(
        url: &str,
        max_staleness: Duration,
    ) -> Option<(CachedStore<RedisStore>, CachedStore<RedisStore>)> {
        let config = RedisConfig::new()
            .prefix(random_prefix())
            .ping_interval(Duration::from_millis(200));
        let mut instances = Vec::new();
        for _ in 0..2 {
            let store = match RedisStore::standalone(url, config.clone()).await {
                Ok(store) => store,
                Err(err) => return sessionkit_testkit::skip(&format!("redis at {url}"), err),
            };
            let channel = RedisInvalidationChannel::connect(url, config.clone())
                .await
                .expect("connect the channel");
            let cache = CachedStore::builder(store)
                .channel(Arc::new(channel) as Arc<dyn InvalidationChannel>)
                .max_staleness(max_staleness)
                .build()
                .expect("build the cache");
            assert!(cache.wait_subscribed(Duration::from_secs(5)).await);
            instances.push(cache);
        }
        let b = instances.pop()?;
        let a = instances.pop()?;
        Some((a, b))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn another_instance_serves_saves_and_deletes_within_50ms() {
        let Some((a, b)) = two_instances(&redis_url(), Duration::from_secs(30)).await else {
            return;
        };
        let bound = Duration::from_millis(50);
        let mut worst = Duration::ZERO;
        for round in 0..20 {
            let mut r = record("v1");
            a.create(&r).await.unwrap();
            assert_eq!(b.load(&r.id).await.unwrap().unwrap().version, 1);
            r.payload = format!("v2-{round}").into();
            r.version = a.save(&r).await.unwrap();
            let took = within(bound, || async {
                b.load(&r.id).await.unwrap().map(|x| x.version) == Some(r.version)
            })
            .await;
            let took =
                took.unwrap_or_else(|| panic!("round {round}: B still stale after {bound:?}"));
            worst = worst.max(took);

            a.delete(&r.id).await.unwrap();
            let took = within(bound, || async { b.load(&r.id).await.unwrap().is_none() }).await;
            let took =
                took.unwrap_or_else(|| panic!("round {round}: B still serves a deleted session"));
            worst = worst.max(took);
        }
        println!("worst delay before B served A's change: {worst:?} (bound {bound:?})");
        // B can observe a change before the message for it arrives (after an
        // earlier message evicted its copy, it reads the store), so the last
        // messages may still be in flight here: give them a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b.stats().invalidations_received < 60 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stats = b.stats();
        println!("B: {stats:?}");
        // create, save and delete of each round: all of A's messages arrived.
        assert!(stats.invalidations_received >= 60, "{stats:?}");
        // And B does serve from its cache: its own write, then a hit.
        let own = record("mine");
        b.create(&own).await.unwrap();
        assert!(b.load(&own.id).await.unwrap().is_some());
        assert_eq!(b.stats().hits, stats.hits + 1);
    }

    /// A private server, so that `CLIENT KILL TYPE pubsub` hits nobody else.
    struct PrivateRedis {
        child: Child,
        port: u16,
        url: String,
    }

    impl PrivateRedis {
        async fn start() -> Option<PrivateRedis> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .ok()?;
            Self::start_on(port).await
        }

        async fn start_on(port: u16) -> Option<PrivateRedis> {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(err) => return sessionkit_testkit::skip("the redis-server binary", err),
            };
            let server = PrivateRedis {
                child,
                port,
                url: format!("redis://127.0.0.1:{port}"),
            };
            let client = redis::Client::open(server.url.as_str()).ok()?;
            for _ in 0..100 {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query_async(&mut conn).await;
                    if pong.is_ok() {
                        return Some(server);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sessionkit_testkit::skip("a private redis-server", "it did not answer within 5 s")
        }

        /// Waits (bounded) until both instances' subscriptions are
        /// connected, then kills them.
        async fn kill_pubsub_clients(&self) -> i64 {
            let client = redis::Client::open(self.url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            for _ in 0..500 {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if list.lines().filter(|l| !l.trim().is_empty()).count() >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut conn)
                .await
                .unwrap()
        }
    }

    /// Polls `check` every 5 ms until it holds or `limit` passes.
    async fn until<F: FnMut() -> bool>(limit: Duration, mut check: F) -> bool {
        let deadline = Instant::now() + limit;
        while !check() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// `is_subscribed()` tells a health check the truth: `false` while the
    /// Redis server (and so the pub/sub subscription) is gone, although the
    /// channel keeps its receiver open while it reconnects, and `true`
    /// again once it has resubscribed; the cached copy made before is not
    /// served afterwards (the restarted server lost the data, and the cache
    /// must say so rather than answer from memory).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn is_subscribed_is_false_while_the_subscription_is_gone() {
        let Some(server) = PrivateRedis::start().await else {
            return;
        };
        let Some((a, b)) = two_instances(&server.url, Duration::from_secs(60)).await else {
            return;
        };
        let r = record("v1");
        a.create(&r).await.unwrap();
        assert!(b.load(&r.id).await.unwrap().is_some());
        assert!(b.is_subscribed());

        let port = server.port;
        drop(server); // killed: the subscription is gone
        assert!(
            until(Duration::from_secs(10), || !b.is_subscribed()).await,
            "is_subscribed() still true with the server gone"
        );
        // And it stays false while nothing is there to subscribe to.
        for _ in 0..3 {
            let probe = b.load(&r.id).await;
            assert!(probe.is_err(), "served from the cache: {probe:?}");
            assert!(!b.is_subscribed());
        }

        let Some(_server) = PrivateRedis::start_on(port).await else {
            return;
        };
        assert!(
            until(Duration::from_secs(15), || b.is_subscribed()).await,
            "is_subscribed() never came back"
        );
        // The restarted server has no data (no persistence): a load must
        // ask it (bounded: the store's own connection may need a retry).
        let mut seen = None;
        for _ in 0..100 {
            if let Ok(found) = b.load(&r.id).await {
                seen = Some(found);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen, Some(None), "the old cached copy was served");
    }

    /// `load_fresh` through the cache over Redis: a logout made by another
    /// instance whose message never arrives (no channel here) is seen by
    /// `load_fresh` at once, while a plain load may serve the cached copy
    /// (the documented bound: up to `max_staleness`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_fresh_sees_a_logout_made_elsewhere() {
        let url = redis_url();
        let config = RedisConfig::new().prefix(random_prefix());
        let elsewhere = match RedisStore::standalone(&url, config.clone()).await {
            Ok(store) => store,
            Err(err) => {
                let _: Option<()> = sessionkit_testkit::skip(&format!("redis at {url}"), err);
                return;
            }
        };
        let here = CachedStore::new(
            RedisStore::standalone(&url, config)
                .await
                .expect("second connection"),
        )
        .expect("build the cache");
        let r = record("v1");
        here.create(&r).await.unwrap();
        assert!(here.load(&r.id).await.unwrap().is_some());
        assert!(elsewhere.delete(&r.id).await.unwrap());
        assert!(here.load(&r.id).await.unwrap().is_some(), "setup: stale");
        assert!(here.load_fresh(&r.id).await.unwrap().is_none());
        assert!(here.load(&r.id).await.unwrap().is_none());
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn with_the_channel_killed_staleness_stays_within_max_staleness() {
        let Some(server) = PrivateRedis::start().await else {
            return;
        };
        let max_staleness = Duration::from_millis(500);
        let Some((a, b)) = two_instances(&server.url, max_staleness).await else {
            return;
        };
        let mut worst = Duration::ZERO;
        for round in 0..3 {
            let mut r = record("v1");
            a.create(&r).await.unwrap();
            assert!(b.load(&r.id).await.unwrap().is_some());
            let cached_at = Instant::now();
            assert!(server.kill_pubsub_clients().await >= 2, "round {round}");
            r.payload = "v2".into();
            r.version = a.save(&r).await.unwrap();
            let caught_up = within(max_staleness + Duration::from_secs(1), || async {
                b.load(&r.id).await.unwrap().map(|x| x.version) == Some(r.version)
            })
            .await;
            assert!(caught_up.is_some(), "round {round}: B never caught up");
            let stale_for = cached_at.elapsed();
            worst = worst.max(stale_for);
            assert!(
                stale_for <= max_staleness + Duration::from_millis(100),
                "round {round}: B served a stale copy for {stale_for:?} (max_staleness {max_staleness:?})"
            );
            // The channel comes back by itself; wait for it before the next round.
            let back = within(Duration::from_secs(5), || async {
                let probe = record("probe");
                a.create(&probe).await.unwrap();
                b.load(&probe.id).await.unwrap();
                a.delete(&probe.id).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                b.load(&probe.id).await.unwrap().is_none()
            })
            .await;
            assert!(
                back.is_some(),
                "round {round}: the channel did not come back"
            );
        }
        println!(
            "channel killed: B stale at most {worst:?} (max_staleness {max_staleness:?}); B: {:?}",
            b.stats()
        );
    }

    /// The testkit's two-instance concurrency test (32 tasks x 50 manager
    /// updates, alternating instances) through two cached instances on one
    /// Redis, invalidating each other through Redis pub/sub.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn testkit_two_instances_through_two_caches() {
        let url = redis_url();
        let config = RedisConfig::new().prefix(random_prefix());
        let mut instances = Vec::new();
        for _ in 0..2 {
            let store = match RedisStore::standalone(&url, config.clone()).await {
                Ok(store) => store,
                Err(err) => {
                    let _: Option<()> = sessionkit_testkit::skip(&format!("redis at {url}"), err);
                    return;
                }
            };
            let channel = RedisInvalidationChannel::connect(&url, config.clone())
                .await
                .expect("connect the channel");
            let cache = CachedStore::builder(store)
                .channel(Arc::new(channel) as Arc<dyn InvalidationChannel>)
                .build()
                .expect("build the cache");
            assert!(cache.wait_subscribed(Duration::from_secs(5)).await);
            instances.push(cache);
        }
        let b = instances.pop().unwrap();
        let a = instances.pop().unwrap();
        let report = sessionkit_testkit::concurrent_updates_two_instances(a, b).await;
        assert_eq!(
            report.final_value,
            sessionkit_testkit::TASKS * sessionkit_testkit::INCREMENTS
        );
        println!("{report:?}");
    }
}

/// The conformance suite on `CachedStore<SqlStore>` over SQLite (a private
/// in-memory database per test).
mod sqlite_backend {
    use sessionkit_memory::CachedStore;
    use sessionkit_sql::SqlStore;

    async fn store() -> Option<CachedStore<SqlStore>> {
        let store = SqlStore::builder()
            .connect("sqlite::memory:")
            .await
            .expect("open an in-memory SQLite database");
        Some(CachedStore::new(store).expect("build the cache"))
    }

    sessionkit_testkit::conformance_suite!(store);
}
