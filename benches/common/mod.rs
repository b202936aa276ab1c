//! Shared harness of the sessionkit benchmarks: the session payloads, the
//! runtime, the criterion settings, and the drivers that time create / load /
//! save / delete the same way for sessionkit, the raw baselines and the
//! tower-sessions peers.
//!
//! Every implementation does the same application-level job: it takes the
//! typed session struct in and gives it back decoded, so a row reads "what
//! sessionkit costs over the code you would otherwise write by hand".
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use serde::{Deserialize, Serialize};
use sessionkit::{
    ManagerBuilder, PayloadCodec, Session, SessionManager, SessionStore, async_trait,
};
use tokio::runtime::Runtime;

/// One line item of the cart in [`Sess`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CartItem {
    pub sku: String,
    pub qty: u32,
    pub price_cents: u64,
}

/// A realistic web session: who is logged in, CSRF token, preferences, a
/// small cart. `notes` pads it to the payload size under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sess {
    pub user_id: u64,
    pub username: String,
    pub email: String,
    pub roles: Vec<String>,
    pub csrf_token: String,
    pub locale: String,
    pub theme: String,
    pub cart: Vec<CartItem>,
    pub last_seen_ms: i64,
    pub flash: Option<String>,
    pub notes: String,
}

/// A payload size under test.
#[derive(Clone)]
pub(crate) struct Payload {
    /// Short label used in the benchmark IDs: `200B` or `4KiB`.
    pub label: &'static str,
    /// The session value.
    pub data: Sess,
    /// Its encoded size with the default payload codec.
    pub encoded_len: usize,
}

fn base_session() -> Sess {
    Sess {
        user_id: 4_200_042,
        username: "ada.lovelace".into(),
        email: "ada.lovelace@example.com".into(),
        roles: vec!["user".into(), "beta".into()],
        csrf_token: "Vq3x9QpZ7mKcT2bLw8YhN4rJf6sD1gEaU5oI0nXyBkM".into(),
        locale: "en-GB".into(),
        theme: "dark".into(),
        cart: vec![
            CartItem {
                sku: "SKU-000123".into(),
                qty: 2,
                price_cents: 1999,
            },
            CartItem {
                sku: "SKU-004567".into(),
                qty: 1,
                price_cents: 24950,
            },
        ],
        last_seen_ms: 1_780_000_000_000,
        flash: Some("Welcome back!".into()),
        notes: String::new(),
    }
}

impl Payload {
    /// A session whose default-codec encoding is `target` bytes (± 1).
    pub(crate) fn sized(label: &'static str, target: usize) -> Payload {
        let codec = PayloadCodec::default();
        let mut data = base_session();
        let base = codec.encode(&data).expect("encode").len();
        let mut pad = target.saturating_sub(base);
        loop {
            data.notes = "n".repeat(pad);
            let len = codec.encode(&data).expect("encode").len();
            if len <= target || pad == 0 {
                return Payload {
                    label,
                    data,
                    encoded_len: len,
                };
            }
            pad -= 1;
        }
    }

    /// The two payloads of the suite: ~200 bytes and 4 KiB.
    pub(crate) fn both() -> Vec<Payload> {
        vec![Payload::sized("200B", 200), Payload::sized("4KiB", 4096)]
    }
}

/// The payload codec everyone uses (sessionkit's default).
pub(crate) fn codec() -> PayloadCodec {
    PayloadCodec::default()
}

/// Encodes with the default codec (what a hand-written baseline does).
pub(crate) fn encode(data: &Sess) -> Vec<u8> {
    codec().encode(data).expect("encode")
}

/// Decodes with the default codec.
pub(crate) fn decode(bytes: &[u8]) -> Sess {
    codec().decode(bytes).expect("decode")
}

/// The tokio runtime every bench runs on: multi-threaded, two workers (the
/// benchmark machine has two cores).
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Criterion with short defaults: warm-up `BENCH_WARM_UP` seconds (default
/// 0.5) and measurement `BENCH_MEASURE` seconds (default 1.5), the
/// variables `scripts/bench.sh` reads; the command line overrides both,
/// e.g. `-- --warm-up-time 1 --measurement-time 2`.
pub(crate) fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(env_secs("BENCH_WARM_UP", 0.5))
        .measurement_time(env_secs("BENCH_MEASURE", 1.5))
        .sample_size(20)
        .without_plots()
        .configure_from_args()
}

/// A comma-separated list of sizes from the environment, or `default`.
pub(crate) fn env_sizes(var: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(var) {
        Ok(s) if !s.trim().is_empty() => s
            .split(',')
            .filter_map(|x| x.trim().replace('_', "").parse().ok())
            .collect(),
        _ => default.to_vec(),
    }
}

/// A positive number of seconds from the environment, or `default`.
pub(crate) fn env_secs(var: &str, default: f64) -> Duration {
    let secs = std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}

/// A number from the environment, or `default`.
pub(crate) fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// A URL from the environment, or the loopback default.
pub(crate) fn env_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Prints a loud skip line (benches never fail for a missing server).
pub(crate) fn skipped(what: &str, why: impl std::fmt::Display) {
    eprintln!("SKIPPED: {what}: {why}");
}

/// A short random tag for table names and key prefixes of one run.
pub(crate) fn run_tag() -> String {
    let id = sessionkit::SessionId::generate();
    id.as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Where side measurements (scale, footprint, cleanup cost) are written for
/// the report generator: `$CARGO_TARGET_DIR/criterion/sessionkit-extra/`.
pub(crate) fn extra_dir() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target)
        .join("criterion")
        .join("sessionkit-extra");
    std::fs::create_dir_all(&dir).expect("create extra dir");
    dir
}

/// Writes one side measurement as a small JSON file.
pub(crate) fn write_extra(name: &str, json: String) {
    let path = extra_dir().join(format!("{name}.json"));
    std::fs::write(&path, json).expect("write extra measurement");
    eprintln!("wrote {}", path.display());
}

/// Idle timeout used everywhere: one hour.
pub(crate) const IDLE: Duration = Duration::from_secs(3600);

/// The builder of [`manager`], for benches that change one option of it.
pub(crate) fn manager_builder<S: SessionStore>(store: S) -> ManagerBuilder<Sess> {
    SessionManager::<Sess>::stateful(store)
        .idle_timeout(IDLE)
        .absolute_timeout(Duration::from_secs(8 * 3600))
        .touch_interval(Duration::from_secs(1800))
}

/// A manager over `store` for the benches: one-hour idle timeout and a long
/// touch interval, so that a load never writes.
pub(crate) fn manager<S: SessionStore>(store: S) -> SessionManager<Sess> {
    manager_builder(store).build().expect("manager")
}

/// One implementation under test: create, load (decoded), save, delete of a
/// typed session.
#[async_trait]
pub(crate) trait Ops: Send + Sync + 'static {
    /// What the caller keeps between calls (ticket / key plus the data).
    type H: Send + Sync + 'static;
    async fn create(&self, data: &Sess) -> Self::H;
    async fn load(&self, h: &Self::H) -> Sess;
    async fn save(&self, h: &mut Self::H);
    async fn delete(&self, h: Self::H);
}

/// sessionkit through the application API.
pub(crate) struct Sk {
    pub mgr: SessionManager<Sess>,
    pub subject: Option<&'static str>,
}

impl Sk {
    pub(crate) fn new<S: SessionStore>(store: S) -> Arc<Sk> {
        Arc::new(Sk {
            mgr: manager(store),
            subject: None,
        })
    }
    pub(crate) fn with_subject<S: SessionStore>(store: S, subject: &'static str) -> Arc<Sk> {
        Arc::new(Sk {
            mgr: manager(store),
            subject: Some(subject),
        })
    }
}

#[async_trait]
impl Ops for Sk {
    type H = Session<Sess>;
    async fn create(&self, data: &Sess) -> Session<Sess> {
        self.mgr
            .create(self.subject, data.clone())
            .await
            .expect("sessionkit create")
    }
    async fn load(&self, h: &Session<Sess>) -> Sess {
        self.mgr
            .load(h.ticket().as_str())
            .await
            .expect("sessionkit load")
            .expect("live session")
            .into_data()
    }
    async fn save(&self, h: &mut Session<Sess>) {
        self.mgr.save(h).await.expect("sessionkit save");
    }
    async fn delete(&self, h: Session<Sess>) {
        self.mgr
            .destroy(h.ticket().as_str())
            .await
            .expect("sessionkit delete");
    }
}

/// The four operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Load,
    Save,
    Delete,
}

impl Op {
    pub(crate) const ALL: [Op; 4] = [Op::Create, Op::Load, Op::Save, Op::Delete];
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Load => "load",
            Op::Save => "save",
            Op::Delete => "delete",
        }
    }
}

/// Handles are created and dropped in chunks of this many, so that timing
/// a million creates never holds a million sessions.
const CHUNK: u64 = 512;

/// Times `iters` runs of `op`, excluding the untimed setup and cleanup.
pub(crate) async fn time_op<O: Ops>(o: &O, op: Op, data: &Sess, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    match op {
        Op::Create => {
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let mut hs = Vec::with_capacity(n as usize);
                let t = Instant::now();
                for _ in 0..n {
                    hs.push(o.create(data).await);
                }
                total += t.elapsed();
                for h in hs {
                    o.delete(h).await;
                }
                left -= n;
            }
        }
        Op::Delete => {
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let mut hs = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    hs.push(o.create(data).await);
                }
                let t = Instant::now();
                for h in hs {
                    o.delete(h).await;
                }
                total += t.elapsed();
                left -= n;
            }
        }
        Op::Load => {
            let h = o.create(data).await;
            let t = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(o.load(&h).await);
            }
            total = t.elapsed();
            o.delete(h).await;
        }
        Op::Save => {
            let mut h = o.create(data).await;
            let t = Instant::now();
            for _ in 0..iters {
                o.save(&mut h).await;
            }
            total = t.elapsed();
            o.delete(h).await;
        }
    }
    total
}

type Timed = Pin<Box<dyn Future<Output = Duration> + Send>>;

/// One implementation in a comparison (sessionkit, a raw baseline, a
/// tower-sessions store), type-erased so that several can be benchmarked
/// side by side.
#[derive(Clone)]
pub(crate) struct Contender {
    who: &'static str,
    ops: Vec<Op>,
    one: Arc<dyn Fn(Op, Sess, u64) -> Timed + Send + Sync>,
    many: Arc<dyn Fn(Op, Sess, u64, u64) -> Timed + Send + Sync>,
}

impl Contender {
    /// `o` under the name `who` (the criterion function name), for every
    /// operation.
    pub(crate) fn new<O: Ops>(who: &'static str, o: &Arc<O>) -> Self {
        let (a, b) = (Arc::clone(o), Arc::clone(o));
        Contender {
            who,
            ops: Op::ALL.to_vec(),
            one: Arc::new(move |op, data, iters| {
                let o = Arc::clone(&a);
                Box::pin(async move { time_op(&*o, op, &data, iters).await })
            }),
            many: Arc::new(move |op, data, tasks, iters| {
                let o = Arc::clone(&b);
                Box::pin(async move { time_concurrent(o, op, &data, tasks, iters).await })
            }),
        }
    }

    /// Runs only `ops` of this contender.
    pub(crate) fn only(mut self, ops: &[Op]) -> Self {
        self.ops = ops.to_vec();
        self
    }
}

/// Benchmarks `ops` for every contender: group `{backend}/{op}`, function
/// the contender's name, parameter the payload label. The contenders run
/// one after the other for each payload, so the two rows of a ratio are
/// measured seconds apart, not minutes (the machine's latency drifts).
pub(crate) fn compare_ops(
    c: &mut Criterion,
    rt: &Runtime,
    backend: &str,
    contenders: &[Contender],
    payloads: &[Payload],
    ops: &[Op],
) {
    for &op in ops {
        let mut g = c.benchmark_group(format!("{backend}/{}", op.name()));
        for p in payloads {
            for k in contenders.iter().filter(|k| k.ops.contains(&op)) {
                let run = Arc::clone(&k.one);
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

/// Throughput at `tasks` concurrent tasks: each task has its own session and
/// does its share of `iters` operations; the time reported per iteration is
/// wall time / operations, so its inverse is the throughput.
pub(crate) async fn time_concurrent<O: Ops>(
    o: Arc<O>,
    op: Op,
    data: &Sess,
    tasks: u64,
    iters: u64,
) -> Duration {
    assert!(matches!(op, Op::Load | Op::Save));
    let per = iters.div_ceil(tasks).max(1);
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks as usize + 1));
    let mut joins = Vec::with_capacity(tasks as usize);
    for _ in 0..tasks {
        let o = Arc::clone(&o);
        let barrier = Arc::clone(&barrier);
        let mut h = o.create(data).await;
        joins.push(tokio::spawn(async move {
            barrier.wait().await;
            for _ in 0..per {
                match op {
                    Op::Load => {
                        std::hint::black_box(o.load(&h).await);
                    }
                    _ => o.save(&mut h).await,
                }
            }
            h
        }));
    }
    barrier.wait().await;
    let t = Instant::now();
    let mut hs = Vec::with_capacity(joins.len());
    for j in joins {
        hs.push(j.await.expect("bench task"));
    }
    let wall = t.elapsed();
    for h in hs {
        o.delete(h).await;
    }
    wall.mul_f64(iters as f64 / (per * tasks) as f64)
}

/// Benchmarks load and save at `tasks` concurrent tasks for every
/// contender, side by side like [`compare_ops`]: group
/// `{backend}/{op}_c{tasks}`.
pub(crate) fn compare_concurrent(
    c: &mut Criterion,
    rt: &Runtime,
    backend: &str,
    contenders: &[Contender],
    payloads: &[Payload],
    tasks: u64,
) {
    for op in [Op::Load, Op::Save] {
        let mut g = c.benchmark_group(format!("{backend}/{}_c{tasks}", op.name()));
        for p in payloads {
            for k in contenders {
                let run = Arc::clone(&k.many);
                let data = p.data.clone();
                g.bench_function(BenchmarkId::new(k.who, p.label), |b| {
                    b.to_async(rt)
                        .iter_custom(|iters| run(op, data.clone(), tasks, iters));
                });
            }
        }
        g.finish();
    }
}

/// Runs `f` with a deadline; `None` (and a SKIPPED line) when it fails or
/// takes too long: used to probe servers before benchmarking them.
pub(crate) fn probe<T, E: std::fmt::Display>(
    rt: &Runtime,
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    match rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), f).await }) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            skipped(what, e);
            None
        }
        Err(_) => {
            skipped(what, "no answer within 5 s");
            None
        }
    }
}

/// Wall-clock seconds of a closure (for the side measurements).
pub(crate) async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let v = f.await;
    (v, t.elapsed())
}

/// The median of some durations, in nanoseconds.
pub(crate) fn median_ns(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_nanos() as f64
}

/// Adapts a tower-sessions store to [`Ops`]: the typed session goes into
/// the record's data map under one key as a `serde_json::Value` (what
/// `Session::insert` does) and comes back through `serde_json::from_value`
/// (what `Session::get` does).
macro_rules! tower_ops {
    ($name:ident, $core:ident) => {
        pub(crate) struct $name<S>(pub(crate) S);

        #[async_trait]
        impl<S> Ops for $name<S>
        where
            S: $core::SessionStore + Send + Sync + 'static,
        {
            type H = ($core::session::Record, Sess);
            async fn create(&self, data: &Sess) -> Self::H {
                use $core::session::{Id, Record};
                let mut record = Record {
                    id: Id::default(),
                    data: std::iter::once((
                        "session".to_owned(),
                        serde_json::to_value(data).expect("to_value"),
                    ))
                    .collect(),
                    expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
                };
                self.0.create(&mut record).await.expect("tower create");
                (record, data.clone())
            }
            async fn load(&self, h: &Self::H) -> Sess {
                let mut record = self
                    .0
                    .load(&h.0.id)
                    .await
                    .expect("tower load")
                    .expect("live tower session");
                serde_json::from_value(record.data.remove("session").expect("session key"))
                    .expect("from_value")
            }
            async fn save(&self, h: &mut Self::H) {
                h.0.data.insert(
                    "session".to_owned(),
                    serde_json::to_value(&h.1).expect("to_value"),
                );
                h.0.expiry_date = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
                self.0.save(&h.0).await.expect("tower save");
            }
            async fn delete(&self, h: Self::H) {
                self.0.delete(&h.0.id).await.expect("tower delete");
            }
        }
    };
}

tower_ops!(Tower14, tower_sessions_core_014);
tower_ops!(Tower15, tower_sessions);
