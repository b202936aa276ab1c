//! In-process stores: `MemoryStore` and a `CachedStore` hit, beside raw moka
//! (get + decode / encode + insert) and tower-sessions' `MemoryStore` and
//! `MokaStore`; and `MemoryStore` load latency as the number of live
//! sessions grows (`SESSIONKIT_BENCH_SCALE`, default `1000,100000`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Contender, Op, Ops, Payload, Sess, Sk, Tower14, Tower15};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sessionkit::memory::{CachedStore, MemoryStore};
use sessionkit::{Record, SessionId, SessionStore, Timestamp, async_trait};

/// Hand-written baseline: a moka cache of encoded payloads.
struct RawMoka(moka::future::Cache<SessionId, Bytes>);

impl RawMoka {
    fn new() -> Arc<Self> {
        Arc::new(RawMoka(
            moka::future::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(common::IDLE)
                .build(),
        ))
    }
}

#[async_trait]
impl Ops for RawMoka {
    type H = (SessionId, Sess);
    async fn create(&self, data: &Sess) -> Self::H {
        let id = SessionId::generate();
        self.0.insert(id, Bytes::from(common::encode(data))).await;
        (id, data.clone())
    }
    async fn load(&self, h: &Self::H) -> Sess {
        let bytes = self.0.get(&h.0).await.expect("cached");
        common::decode(&bytes)
    }
    async fn save(&self, h: &mut Self::H) {
        self.0.insert(h.0, Bytes::from(common::encode(&h.1))).await;
    }
    async fn delete(&self, h: Self::H) {
        self.0.invalidate(&h.0).await;
    }
}

fn memory_store(max_entries: u64, max_bytes: u64) -> MemoryStore {
    MemoryStore::builder()
        .max_entries(max_entries)
        .max_bytes(max_bytes)
        .build()
}

fn ops(c: &mut Criterion) {
    let rt = common::runtime();
    let payloads = Payload::both();
    for p in &payloads {
        eprintln!("payload {}: {} bytes encoded", p.label, p.encoded_len);
    }

    // MemoryStore vs raw moka vs tower-sessions MemoryStore and MokaStore.
    let sk = Sk::new(memory_store(2_000_000, 4 << 30));
    let raw = RawMoka::new();
    let tower_mem = Arc::new(Tower15(tower_sessions::MemoryStore::default()));
    let tower_moka = Arc::new(Tower14(tower_sessions_moka_store::MokaStore::new(Some(
        1_000_000,
    ))));
    common::compare_ops(
        c,
        &rt,
        "memory",
        &[
            Contender::new("sessionkit", &sk),
            Contender::new("raw", &raw),
            Contender::new("tower-sessions", &tower_mem),
            Contender::new("tower-sessions-moka", &tower_moka),
        ],
        &payloads,
        &Op::ALL,
    );

    // A CachedStore hit (over a MemoryStore) vs raw moka get + decode.
    let cached = Arc::new(
        CachedStore::builder(memory_store(2_000_000, 4 << 30))
            .max_bytes(1 << 30)
            .max_staleness(Duration::from_secs(600))
            .build()
            .expect("cached store"),
    );
    let sk_cached = Sk::new(Arc::clone(&cached));
    common::compare_ops(
        c,
        &rt,
        "cache",
        &[
            Contender::new("sessionkit", &sk_cached),
            Contender::new("raw", &raw),
        ],
        &payloads,
        &[Op::Load],
    );
    let stats = cached.stats();
    eprintln!(
        "cache stats: hits {} misses {} (the load rows must be hits)",
        stats.hits, stats.misses
    );
}

/// MemoryStore load latency with N live sessions (200-byte payload).
fn scale(c: &mut Criterion) {
    let rt = common::runtime();
    let sizes = common::env_sizes("SESSIONKIT_BENCH_SCALE", &[1_000, 100_000]);
    let p = Payload::sized("200B", 200);
    let payload = Bytes::from(sessionkit::Envelope::write(
        common::codec(),
        1,
        &common::encode(&p.data),
    ));
    let mut g = c.benchmark_group("scale/load");
    for &n in &sizes {
        let store = memory_store(n + 100_000, (n + 100_000) * 2048);
        let now = Timestamp::now();
        let (_, took) = rt.block_on(common::timed(async {
            for _ in 0..n {
                let r = Record::new(
                    SessionId::generate(),
                    None,
                    payload.clone(),
                    now,
                    now + common::IDLE,
                );
                store.create(&r).await.expect("populate");
            }
            store.run_pending_tasks().await;
        }));
        eprintln!("memory: populated {n} sessions in {took:?}");
        let sk = Sk::new(store.clone());
        g.bench_function(BenchmarkId::new("memory", n), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| common::time_op(&*sk, Op::Load, &p.data, iters));
        });
        drop(sk);
        drop(store);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = ops, scale
}
criterion_main!(benches);
