//! In-process stores: `MemoryStore` and a `CachedStore` hit, beside raw moka
//! (get + decode / encode + insert) and tower-sessions' `MemoryStore` and
//! `MokaStore`, at one task and at 64 tasks (`memory/{op}_c64`, every
//! operation); and `MemoryStore` load latency as the number of live
//! sessions grows (`SESSIONKIT_BENCH_SCALE`, default `1000,100000`).
//!
//! Instruction counts: with `SESSIONKIT_BENCH_PROFILE=who:payload:creates:
//! loads:saves:deletes[:tasks]` the binary skips criterion and runs exactly
//! that many operations through contender `who` (`sessionkit`,
//! `sessionkit+subject`, `raw`, `tower-sessions`, `tower-sessions-moka`)
//! on payload `200B` or `4KiB`, split over `tasks` tasks (default 1). Under
//! valgrind, sha2 runs its portable code (valgrind hides SHA-NI), so the
//! manager's ID hash costs about 3,000 more instructions per operation
//! than it does natively. Run it under
//! `valgrind --tool=callgrind` twice with different counts: the difference
//! of the two totals divided by the difference of the counts is the cost of
//! one operation, free of the setup and of the machine's noise.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Contender, Op, Ops, Payload, Sess, Sk, Tower14, Tower15};
use criterion::{BenchmarkId, Criterion};
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
        .expect("valid bounds")
}

fn ops(c: &mut Criterion) {
    let rt = common::runtime();
    let payloads = Payload::both();
    for p in &payloads {
        eprintln!("payload {}: {} bytes encoded", p.label, p.encoded_len);
    }

    // MemoryStore vs raw moka vs tower-sessions MemoryStore and MokaStore.
    let sk = Sk::new(memory_store(2_000_000, 4 << 30));
    let sk_subject = Sk::with_subject(memory_store(2_000_000, 4 << 30), "user-42");
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
            Contender::new("sessionkit+subject", &sk_subject),
            Contender::new("raw", &raw),
            Contender::new("tower-sessions", &tower_mem),
            Contender::new("tower-sessions-moka", &tower_moka),
        ],
        &payloads,
        &Op::ALL,
    );
    compare_c64(
        c,
        &rt,
        &[
            Many::new("sessionkit", &sk),
            Many::new("raw", &raw),
            Many::new("tower-sessions", &tower_mem),
            Many::new("tower-sessions-moka", &tower_moka),
        ],
        &payloads,
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

/// Operations in flight at once in the `_c64` rows.
const TASKS: u64 = 64;
/// At most this many sessions per task exist at once while timing create
/// and delete at 64 tasks (the time is scaled to criterion's count).
const PER_TASK: u64 = 256;

type Timed = Pin<Box<dyn Future<Output = Duration> + Send>>;

/// One contender of the `_c64` rows, for every operation.
struct Many {
    who: &'static str,
    run: Arc<dyn Fn(Op, Sess, u64) -> Timed + Send + Sync>,
}

impl Many {
    fn new<O: Ops>(who: &'static str, o: &Arc<O>) -> Self {
        let o = Arc::clone(o);
        Many {
            who,
            run: Arc::new(move |op, data, iters| {
                let o = Arc::clone(&o);
                Box::pin(async move {
                    match op {
                        Op::Load | Op::Save => {
                            common::time_concurrent(o, op, &data, TASKS, iters).await
                        }
                        Op::Create | Op::Delete => {
                            time_concurrent_churn(o, op, &data, TASKS, iters).await
                        }
                    }
                })
            }),
        }
    }
}

/// Create or delete at `tasks` concurrent tasks: each task creates (or
/// deletes) its share of sessions, at most [`PER_TASK`] of them; the wall
/// time of the timed phase is scaled to `iters` operations. The other half
/// (deleting what was created, creating what is deleted) is untimed.
async fn time_concurrent_churn<O: Ops>(
    o: Arc<O>,
    op: Op,
    data: &Sess,
    tasks: u64,
    iters: u64,
) -> Duration {
    let per = iters.div_ceil(tasks).clamp(1, PER_TASK);
    // What each task deletes (created here, untimed), or nothing.
    let mut handles = Vec::with_capacity(tasks as usize);
    for _ in 0..tasks {
        let mut hs = Vec::new();
        if op == Op::Delete {
            for _ in 0..per {
                hs.push(o.create(data).await);
            }
        }
        handles.push(hs);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks as usize + 1));
    let mut joins = Vec::with_capacity(tasks as usize);
    for mine in handles {
        let (o, barrier, data) = (Arc::clone(&o), Arc::clone(&barrier), data.clone());
        joins.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut made = Vec::with_capacity(per as usize);
            if op == Op::Delete {
                for h in mine {
                    o.delete(h).await;
                }
            } else {
                for _ in 0..per {
                    made.push(o.create(&data).await);
                }
            }
            made
        }));
    }
    barrier.wait().await;
    let t = Instant::now();
    let mut made = Vec::new();
    for j in joins {
        made.push(j.await.expect("bench task"));
    }
    let wall = t.elapsed();
    for h in made.into_iter().flatten() {
        o.delete(h).await;
    }
    wall.mul_f64(iters as f64 / (per * tasks) as f64)
}

/// Every operation at [`TASKS`] concurrent tasks for every contender, side
/// by side: group `memory/{op}_c64`.
fn compare_c64(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    many: &[Many],
    payloads: &[Payload],
) {
    for op in Op::ALL {
        let mut g = c.benchmark_group(format!("memory/{}_c{TASKS}", op.name()));
        for p in payloads {
            for k in many {
                let run = Arc::clone(&k.run);
                let data = p.data.clone();
                g.bench_function(BenchmarkId::new(k.who, p.label), |b| {
                    b.to_async(rt)
                        .iter_custom(|iters| run(op, data.clone(), iters));
                });
            }
        }
        g.finish();
    }
}

/// Runs the operations of `SESSIONKIT_BENCH_PROFILE` (see the module
/// documentation) and nothing else.
fn profile(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let num = |i: usize, default: u64| -> u64 {
        parts
            .get(i)
            .map(|s| s.parse().expect("SESSIONKIT_BENCH_PROFILE: a count"))
            .unwrap_or(default)
    };
    let (who, label) = (parts[0], parts.get(1).copied().unwrap_or("200B"));
    let counts = [num(2, 0), num(3, 0), num(4, 0), num(5, 0)];
    let tasks = num(6, 1).max(1);
    let p = Payload::both()
        .into_iter()
        .find(|p| p.label == label)
        .expect("SESSIONKIT_BENCH_PROFILE: payload 200B or 4KiB");
    // One task: a current-thread runtime, so that nothing but the
    // operations runs; more: the benchmarks' two-worker runtime.
    let rt = if tasks == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    } else {
        common::runtime()
    };
    rt.block_on(async {
        match who {
            "sessionkit+subject" => {
                let o = Sk::with_subject(memory_store(2_000_000, 4 << 30), "user-42");
                profile_run(o, &p.data, counts, tasks).await
            }
            "sessionkit" => {
                profile_run(
                    Sk::new(memory_store(2_000_000, 4 << 30)),
                    &p.data,
                    counts,
                    tasks,
                )
                .await
            }
            "raw" => profile_run(RawMoka::new(), &p.data, counts, tasks).await,
            "tower-sessions" => {
                let o = Arc::new(Tower15(tower_sessions::MemoryStore::default()));
                profile_run(o, &p.data, counts, tasks).await
            }
            "tower-sessions-moka" => {
                let o = Arc::new(Tower14(tower_sessions_moka_store::MokaStore::new(Some(
                    1_000_000,
                ))));
                profile_run(o, &p.data, counts, tasks).await
            }
            other => panic!("SESSIONKIT_BENCH_PROFILE: unknown contender {other}"),
        }
    });
}

/// `creates` creates, then `loads` loads and `saves` saves of one session,
/// then `deletes` deletes of created sessions, in each of `tasks` tasks.
async fn profile_run<O: Ops>(o: Arc<O>, data: &Sess, counts: [u64; 4], tasks: u64) {
    let [creates, loads, saves, deletes] = counts;
    let mut joins = Vec::new();
    for _ in 0..tasks {
        let (o, data) = (Arc::clone(&o), data.clone());
        joins.push(tokio::spawn(async move {
            let mut one = o.create(&data).await;
            let mut made = Vec::with_capacity(creates as usize);
            for _ in 0..creates {
                made.push(o.create(&data).await);
            }
            for _ in 0..loads {
                std::hint::black_box(o.load(&one).await);
            }
            for _ in 0..saves {
                o.save(&mut one).await;
            }
            for h in made.drain(..deletes.min(creates) as usize) {
                o.delete(h).await;
            }
            // Nothing else is freed: what a delete frees is part of its
            // cost, and the sessions left over are never freed.
            std::mem::forget((one, made, o));
        }));
    }
    for j in joins {
        j.await.expect("profile task");
    }
    std::mem::forget(o);
}

fn main() {
    if let Ok(spec) = std::env::var("SESSIONKIT_BENCH_PROFILE") {
        profile(&spec);
        return;
    }
    let mut c = common::criterion();
    ops(&mut c);
    scale(&mut c);
    c.final_summary();
}
