//! Shared by the `reliability_*` tests: private `redis-server` processes on
//! loopback (killed on drop), a mixed create/load/update/delete workload
//! with per-session counters, and the end-of-run check that no
//! acknowledged write was lost.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sessionkit::{Error, Record, SessionId, SessionStore, Timestamp};

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// A service the test needs is unavailable: `SKIPPED: ...` on stderr, or a
/// panic when `SESSIONKIT_REQUIRE_SERVICES=1` (CI), as the testkit does.
pub(crate) fn skip(what: &str, why: impl std::fmt::Display) {
    if std::env::var("SESSIONKIT_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{what} is required (SESSIONKIT_REQUIRE_SERVICES=1) but unavailable: {why}");
    }
    eprintln!("SKIPPED: {what}: {why}");
}

/// A duration from an environment variable in seconds, or `default`.
pub(crate) fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// A number from an environment variable, or `default`.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process in KiB (`VmRSS`).
pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Small deterministic PRNG (xorshift64*), seeded per task.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Whether a server binary is on the PATH.
pub(crate) fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free TCP port on loopback (bound then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh temporary directory.
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let hex: String = SessionId::generate().to_bytes()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = std::env::temp_dir().join(format!("sessionkit-rel-{tag}-{hex}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `redis-cli -p PORT ARGS...`, stdout as text (empty on failure).
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A private `redis-server` on a free loopback port, killed on drop.
pub(crate) struct RedisProc {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
}

impl RedisProc {
    /// Starts a server with `extra` arguments and waits until it answers.
    pub(crate) fn start(tag: &str, extra: &[&str]) -> RedisProc {
        Self::start_on(tag, free_port(), extra)
    }

    /// Like [`RedisProc::start`], on a given port.
    pub(crate) fn start_on(tag: &str, port: u16, extra: &[&str]) -> RedisProc {
        let dir = temp_dir(tag);
        let mut p = RedisProc {
            child: None,
            port,
            dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls PING (bounded: 15 s).
    pub(crate) fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if cli(self.port, &["ping"]).trim() == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL, and reap.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and directory (the AOF is replayed).
    pub(crate) fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }

    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.resume();
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------------ workload

const COUNTER_DIGITS: usize = 20;

/// Payload: the counter in fixed-width decimal, then padding, so that a
/// session looks like a small real one (about 200 bytes).
pub(crate) fn payload(counter: u64) -> Vec<u8> {
    let mut p = format!("{counter:0width$}|", width = COUNTER_DIGITS).into_bytes();
    p.resize(200, b'x');
    p
}

pub(crate) fn counter_of(r: &Record) -> Option<u64> {
    std::str::from_utf8(r.payload.get(..COUNTER_DIGITS)?)
        .ok()?
        .parse()
        .ok()
}

/// One long-lived session of the workload, with what was acknowledged.
pub(crate) struct Slot {
    pub id: SessionId,
    /// Saves acknowledged (`Ok`) by the store.
    pub acked: AtomicU64,
    /// Saves that failed with a transient error: applied or not, unknown.
    pub in_doubt: AtomicU64,
}

/// What a workload run saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Report {
    pub ops: u64,
    pub loads: u64,
    pub updates: u64,
    pub conflicts: u64,
    pub creates: u64,
    pub deletes: u64,
    /// Retryable `Backend`/`Timeout` errors (expected only under faults).
    pub retryable_errors: u64,
    /// The slowest failed call.
    pub slowest_error: Duration,
    /// Loads that returned an older counter than already acknowledged
    /// (allowed only where the run says stale reads are possible).
    pub stale_reads: u64,
    /// Anything else: each is a failure of the run.
    pub unexpected: u64,
    pub first_unexpected: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    pub(crate) fn merge(&mut self, o: &Report) {
        self.ops += o.ops;
        self.loads += o.loads;
        self.updates += o.updates;
        self.conflicts += o.conflicts;
        self.creates += o.creates;
        self.deletes += o.deletes;
        self.retryable_errors += o.retryable_errors;
        self.slowest_error = self.slowest_error.max(o.slowest_error);
        self.stale_reads += o.stale_reads;
        self.unexpected += o.unexpected;
        for e in &o.first_unexpected {
            if self.first_unexpected.len() < 10 {
                self.first_unexpected.push(e.clone());
            }
        }
        self.elapsed += o.elapsed;
    }

    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn unexpected(&mut self, what: String) {
        self.unexpected += 1;
        if self.first_unexpected.len() < 10 {
            self.first_unexpected.push(what);
        }
    }

    /// Counts a failed call: transient errors are allowed when `faults`.
    fn error(&mut self, op: &str, e: &Error, took: Duration, faults: bool) {
        let transient = matches!(
            e,
            Error::Timeout(_)
                | Error::Backend {
                    transient: true,
                    ..
                }
        );
        if faults && transient {
            self.retryable_errors += 1;
            self.slowest_error = self.slowest_error.max(took);
        } else {
            self.unexpected(format!("{op}: {e:?} (after {took:?})"));
        }
    }
}

/// How a workload runs.
#[derive(Clone)]
pub(crate) struct Workload {
    /// The stores the tasks use, picked at random per operation (several
    /// stores = several application instances on one backend).
    pub stores: Vec<Arc<dyn SessionStore>>,
    pub slots: Arc<Vec<Slot>>,
    pub tasks: usize,
    /// Whether transient errors are expected (a fault is being injected).
    pub faults: bool,
    /// Whether a load may return an older state than acknowledged (several
    /// cached instances).
    pub stale_reads_ok: bool,
    /// Subject of the churn sessions; every one the workload left behind
    /// is deleted at the end of `run`.
    pub subject: String,
}

pub(crate) fn new_record(subject: &str, counter: u64) -> Record {
    let now = Timestamp::now();
    Record::new(
        SessionId::generate(),
        Some(subject.to_owned()),
        payload(counter),
        now,
        now + HOUR,
    )
}

/// Creates `n` long-lived sessions with 64 tasks (no fault expected).
pub(crate) async fn populate(
    store: Arc<dyn SessionStore>,
    n: usize,
    subject: &str,
) -> Arc<Vec<Slot>> {
    let per = n.div_ceil(64);
    let mut joins = Vec::new();
    for t in 0..64 {
        let store = store.clone();
        let subject = subject.to_owned();
        let count = per.min(n.saturating_sub(t * per));
        joins.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let r = new_record(&subject, 0);
                let mut tries = 0;
                loop {
                    match store.create(&r).await {
                        Ok(()) => break,
                        Err(e) if e.is_transient() && tries < 20 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("populate: {e:?}"),
                    }
                }
                out.push(Slot {
                    id: r.id,
                    acked: AtomicU64::new(0),
                    in_doubt: AtomicU64::new(0),
                });
            }
            out
        }));
    }
    let mut slots = Vec::with_capacity(n);
    for j in joins {
        slots.extend(j.await.expect("populate task"));
    }
    Arc::new(slots)
}

impl Workload {
    pub(crate) fn new(store: Arc<dyn SessionStore>, slots: Arc<Vec<Slot>>, tasks: usize) -> Self {
        Workload {
            stores: vec![store],
            slots,
            tasks,
            faults: false,
            stale_reads_ok: false,
            subject: format!("churn-{}", &SessionId::generate().as_str()[..8]),
        }
    }

    /// Runs until `duration` passes or `stop` is set; each call is timed.
    pub(crate) async fn run(&self, duration: Duration, stop: Arc<AtomicBool>) -> Report {
        let started = Instant::now();
        let deadline = started + duration;
        let mut joins = Vec::new();
        for t in 0..self.tasks {
            let w = self.clone();
            let stop = stop.clone();
            joins.push(tokio::spawn(async move {
                w.task(t as u64 + 1, deadline, stop).await
            }));
        }
        let mut report = Report::default();
        for j in joins {
            match j.await {
                Ok(r) => report.merge(&r),
                Err(e) => report.unexpected(format!("task panicked: {e}")),
            }
        }
        report.elapsed = started.elapsed();
        report
    }

    async fn task(&self, seed: u64, deadline: Instant, stop: Arc<AtomicBool>) -> Report {
        let mut rng = Rng::new(seed ^ Timestamp::now().as_millis() as u64);
        let mut rep = Report::default();
        let mut mine: Vec<SessionId> = Vec::new();
        let faults = self.faults;
        let mut seen_errors = 0;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            // Back off a little after a failed call, as an application would.
            if rep.retryable_errors > 0 && rep.retryable_errors != seen_errors {
                seen_errors = rep.retryable_errors;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rep.ops += 1;
            let store = &self.stores[rng.below(self.stores.len())];
            let roll = rng.below(1000);
            if roll < 500 {
                // load a long-lived session
                let slot = &self.slots[rng.below(self.slots.len())];
                let floor = slot.acked.load(Ordering::SeqCst);
                let t0 = Instant::now();
                rep.loads += 1;
                match store.load(&slot.id).await {
                    Ok(Some(r)) => self.check_loaded(&mut rep, slot, &r, floor),
                    Ok(None) => rep.unexpected(format!("load: session {:?} lost", slot.id)),
                    Err(e) => rep.error("load", &e, t0.elapsed(), faults),
                }
            } else if roll < 850 {
                let slot = &self.slots[rng.below(self.slots.len())];
                self.update(&mut rep, store.as_ref(), slot).await;
            } else if roll < 925 || mine.is_empty() {
                let r = new_record(&self.subject, 0);
                let t0 = Instant::now();
                match store.create(&r).await {
                    Ok(()) => {
                        rep.creates += 1;
                        mine.push(r.id);
                    }
                    Err(e) => rep.error("create", &e, t0.elapsed(), faults),
                }
            } else {
                let id = mine.swap_remove(rng.below(mine.len()));
                let t0 = Instant::now();
                match store.delete(&id).await {
                    Ok(true) => {
                        rep.deletes += 1;
                        // Read back through the same instance: gone.
                        match store.load(&id).await {
                            Ok(None) => {}
                            Ok(Some(_)) => rep.unexpected("deleted session still loads".into()),
                            Err(e) => rep.error("load after delete", &e, t0.elapsed(), faults),
                        }
                    }
                    // A delete whose earlier attempt failed may have applied.
                    Ok(false) if faults => rep.deletes += 1,
                    Ok(false) => rep.unexpected("delete of a live session found nothing".into()),
                    Err(e) => rep.error("delete", &e, t0.elapsed(), faults),
                }
            }
        }
        // Leave nothing behind (bounded retries while a fault may last).
        let tries = if faults { 50 } else { 3 };
        for id in mine {
            for _ in 0..tries {
                if store_ok(self.stores[0].delete(&id).await) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        rep
    }

    fn check_loaded(&self, rep: &mut Report, slot: &Slot, r: &Record, floor: u64) {
        match counter_of(r) {
            Some(c) if c + 1 != r.version => {
                rep.unexpected(format!("torn record: counter {c} at version {}", r.version))
            }
            Some(c) if c < floor => {
                if self.stale_reads_ok {
                    rep.stale_reads += 1;
                } else {
                    rep.unexpected(format!(
                        "lost update: counter {c} < {floor} acknowledged ({:?})",
                        slot.id
                    ));
                }
            }
            Some(_) => {}
            None => rep.unexpected("unreadable payload".into()),
        }
    }

    /// Read-modify-write with CAS, bounded retries on `Conflict`.
    async fn update(&self, rep: &mut Report, store: &dyn SessionStore, slot: &Slot) {
        for _ in 0..64 {
            let floor = slot.acked.load(Ordering::SeqCst);
            let t0 = Instant::now();
            let mut r = match store.load(&slot.id).await {
                Ok(Some(r)) => r,
                Ok(None) => return rep.unexpected(format!("update: session {:?} lost", slot.id)),
                Err(e) => return rep.error("load for update", &e, t0.elapsed(), self.faults),
            };
            self.check_loaded(rep, slot, &r, floor);
            let Some(c) = counter_of(&r) else { return };
            r.payload = payload(c + 1).into();
            let t0 = Instant::now();
            match store.save(&r).await {
                Ok(v) => {
                    slot.acked.fetch_add(1, Ordering::SeqCst);
                    rep.updates += 1;
                    if v != r.version + 1 {
                        rep.unexpected(format!("save returned {v} for version {}", r.version));
                    }
                    return;
                }
                Err(Error::Conflict) => rep.conflicts += 1,
                Err(e) => {
                    slot.in_doubt.fetch_add(1, Ordering::SeqCst);
                    return rep.error("save", &e, t0.elapsed(), self.faults);
                }
            }
        }
        rep.unexpected("update: 64 conflicts in a row".into());
    }
}

fn store_ok<T>(r: sessionkit::Result<T>) -> bool {
    r.is_ok()
}

/// End-of-run check of every long-lived session: present, and its counter
/// equals the acknowledged saves (plus at most the in-doubt ones).
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub checked: usize,
    pub missing: usize,
    /// Counter below the acknowledged saves: an acknowledged write lost.
    pub lost_updates: usize,
    /// Counter above acknowledged + in doubt: impossible.
    pub phantom: usize,
    /// In-doubt saves that turned out applied.
    pub applied_in_doubt: u64,
    pub acked_total: u64,
    pub first: Vec<String>,
}

impl Verdict {
    pub(crate) fn clean(&self) -> bool {
        self.missing == 0 && self.lost_updates == 0 && self.phantom == 0
    }
}

pub(crate) async fn verify(store: &dyn SessionStore, slots: &[Slot]) -> Verdict {
    let mut v = Verdict::default();
    for slot in slots {
        v.checked += 1;
        let acked = slot.acked.load(Ordering::SeqCst);
        let doubt = slot.in_doubt.load(Ordering::SeqCst);
        v.acked_total += acked;
        // Retry transient errors for up to 20 s (a fault may just have ended).
        let mut loaded = None;
        for _ in 0..200 {
            match store.load(&slot.id).await {
                Ok(r) => {
                    loaded = Some(r);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let Some(loaded) = loaded else {
            panic!("verify: the store never answered for {:?}", slot.id);
        };
        let note = |v: &mut Verdict, s: String| {
            if v.first.len() < 10 {
                v.first.push(s);
            }
        };
        match loaded.as_ref().and_then(counter_of) {
            None => {
                v.missing += 1;
                note(&mut v, format!("{:?} missing (acked {acked})", slot.id));
            }
            Some(c) if c < acked => {
                v.lost_updates += 1;
                note(
                    &mut v,
                    format!("{:?}: counter {c} < acked {acked}", slot.id),
                );
            }
            Some(c) if c > acked + doubt => {
                v.phantom += 1;
                note(
                    &mut v,
                    format!("{:?}: counter {c} > {acked}+{doubt}", slot.id),
                );
            }
            Some(c) => v.applied_in_doubt += c - acked,
        }
    }
    v
}

/// Deletes the long-lived sessions (best effort).
pub(crate) async fn cleanup(store: &dyn SessionStore, slots: &[Slot]) {
    for slot in slots {
        let _ = store.delete(&slot.id).await;
    }
}

/// A thread-safe list of notes for a final report.
#[derive(Default, Clone)]
pub(crate) struct Notes(pub Arc<Mutex<Vec<String>>>);

impl Notes {
    pub(crate) fn add(&self, s: impl Into<String>) {
        let s = s.into();
        println!("{s}");
        self.0.lock().unwrap().push(s);
    }
}
