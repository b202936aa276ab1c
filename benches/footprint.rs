//! Memory: bytes per cached session in `MemoryStore` and `CachedStore`, for
//! both payloads, beside a raw moka cache of the same payload bytes and
//! tower-sessions' `MokaStore`.
//!
//! Method: each case runs in a fresh child process (this binary re-runs
//! itself), which reads its resident set size (`/proc/self/statm`), inserts
//! N sessions (`SESSIONKIT_BENCH_FOOTPRINT_N`, default 100,000) with fresh
//! payload allocations, lets moka finish its pending work, reads the RSS
//! again and reports (after - before) / N. This counts everything a
//! session costs the process: payload, record, key, moka's entry and its
//! timer-wheel / frequency-sketch share, allocator overhead. For
//! `CachedStore` the backend is a store that keeps nothing (it builds each
//! record on load), so only the cache is counted; entries are filled by
//! loads, i.e. as read-through fills them. The moka weighted size the
//! stores' own byte bounds see is printed beside it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Payload;
use sessionkit::memory::{CachedStore, MemoryStore};
use sessionkit::{Record, Result, SessionId, SessionStore, Timestamp, async_trait};

const CASES: [&str; 4] = ["memory_store", "cached_store", "raw_moka", "tower_moka"];

/// A backend that stores nothing: `load` builds a live record with a fresh
/// copy of the payload, so every cache entry owns its own bytes.
struct Synth {
    payload: Vec<u8>,
}

#[async_trait]
impl SessionStore for Synth {
    async fn create(&self, _record: &Record) -> Result<()> {
        Ok(())
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        let now = Timestamp::now();
        Ok(Some(Record::new(
            *id,
            None,
            Bytes::copy_from_slice(&self.payload),
            now,
            now + common::IDLE,
        )))
    }
    async fn save(&self, record: &Record) -> Result<u64> {
        Ok(record.version + 1)
    }
    async fn touch(&self, _id: &SessionId, _expires_at: Timestamp) -> Result<()> {
        Ok(())
    }
    async fn delete(&self, _id: &SessionId) -> Result<bool> {
        Ok(false)
    }
    async fn compare_and_delete(&self, _id: &SessionId, _version: u64) -> Result<()> {
        Ok(())
    }
    async fn list_subject(&self, _subject: &str) -> Result<Vec<Record>> {
        Ok(Vec::new())
    }
    async fn delete_subject(&self, _subject: &str) -> Result<u64> {
        Ok(0)
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("rss pages");
    pages * 4096
}

/// One case, in this (child) process: prints `bytes_per_session weighted`.
fn child(case: &str, label: &str, n: u64) {
    let p = Payload::both()
        .into_iter()
        .find(|p| p.label == label)
        .expect("payload label");
    let payload = sessionkit::Envelope::write(common::codec(), 1, &common::encode(&p.data));
    let rt = common::runtime();
    let cap = n * (payload.len() as u64 + 4096);
    let (delta, weighted) = rt.block_on(async {
        let now = Timestamp::now();
        let rec = |id| {
            Record::new(
                id,
                None,
                Bytes::copy_from_slice(&payload),
                now,
                now + common::IDLE,
            )
        };
        match case {
            "memory_store" => {
                let store = MemoryStore::builder()
                    .max_entries(n * 2)
                    .max_bytes(cap)
                    .build()
                    .expect("memory store");
                store.run_pending_tasks().await;
                let before = rss_bytes();
                for _ in 0..n {
                    store
                        .create(&rec(SessionId::generate()))
                        .await
                        .expect("create");
                }
                store.run_pending_tasks().await;
                assert_eq!(store.entry_count(), n, "nothing evicted");
                let d = rss_bytes() - before;
                (d, store.weighted_size())
            }
            "cached_store" => {
                let store = CachedStore::builder(Synth {
                    payload: payload.clone(),
                })
                .max_bytes(cap)
                .max_staleness(Duration::from_secs(3600))
                .build()
                .expect("cached store");
                let before = rss_bytes();
                for _ in 0..n {
                    store.load(&SessionId::generate()).await.expect("load");
                }
                // A few more operations let moka run its pending maintenance.
                for _ in 0..64 {
                    store.load(&SessionId::generate()).await.expect("load");
                }
                let d = rss_bytes() - before;
                (d, store.stats().entries)
            }
            "raw_moka" => {
                let cache: moka::future::Cache<SessionId, Bytes> = moka::future::Cache::builder()
                    .max_capacity(n * 2)
                    .time_to_live(common::IDLE)
                    .build();
                let before = rss_bytes();
                for _ in 0..n {
                    cache
                        .insert(SessionId::generate(), Bytes::copy_from_slice(&payload))
                        .await;
                }
                cache.run_pending_tasks().await;
                let d = rss_bytes() - before;
                (d, cache.entry_count())
            }
            "tower_moka" => {
                use tower_sessions_core_014::SessionStore as _;
                use tower_sessions_core_014::session::{Id, Record as TRecord};
                let store = tower_sessions_moka_store::MokaStore::new(Some(n * 2));
                let value = serde_json::to_value(&p.data).expect("to_value");
                let before = rss_bytes();
                for _ in 0..n {
                    let mut r = TRecord {
                        id: Id::default(),
                        data: std::iter::once(("session".to_owned(), value.clone())).collect(),
                        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
                    };
                    store.create(&mut r).await.expect("create");
                }
                let d = rss_bytes() - before;
                (d, 0)
            }
            other => panic!("unknown case {other}"),
        }
    });
    println!("RESULT {} {}", delta as f64 / n as f64, weighted);
}

fn main() {
    let n = common::env_u64("SESSIONKIT_BENCH_FOOTPRINT_N", 100_000);
    if let Ok(spec) = std::env::var("SESSIONKIT_FOOTPRINT_CASE") {
        let (case, label) = spec.split_once('/').expect("case/label");
        child(case, label, n);
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut points = Vec::new();
    for case in CASES {
        for label in ["200B", "4KiB"] {
            let out = std::process::Command::new(&exe)
                .env("SESSIONKIT_FOOTPRINT_CASE", format!("{case}/{label}"))
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(line) = text.lines().find(|l| l.starts_with("RESULT ")) else {
                eprintln!(
                    "footprint {case}/{label} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            };
            let mut it = line.split_whitespace().skip(1);
            let per: f64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            let weighted: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            eprintln!("footprint {case}/{label}: {per:.0} bytes per session ({n} sessions)");
            points.push(format!(
                "{{\"case\":\"{case}\",\"payload\":\"{label}\",\"n\":{n},\"bytes_per_session\":{per:.1},\"moka\":{weighted}}}"
            ));
        }
    }
    common::write_extra("footprint", format!("[{}]", points.join(",")));
}
