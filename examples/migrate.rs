//! Moving live sessions from Redis to PostgreSQL while they are in use,
//! with nobody logged out and no write lost.
//!
//! ```text
//! cargo run -p sessionkit-examples --example migrate
//! REDIS_URL=redis://my-redis:6379/0 DATABASE_URL=postgres://app@db/app \
//!     cargo run -p sessionkit-examples --example migrate
//! ```
//!
//! 1. 2,000 sessions are created in Redis (the "old" deployment).
//! 2. A workload starts: tasks that increment and read random sessions
//!    through a manager over `MigratingStore::new(redis, postgres)` (what
//!    every instance runs during the move), counting each acknowledged
//!    increment.
//! 3. While it runs, `MigratingStore::move_sessions` moves Redis into
//!    PostgreSQL page by page with a progress bar; the run is interrupted
//!    after three pages and resumed from its last cursor, as after a crash.
//! 4. The workload stops.
//! 5. A manager on PostgreSQL alone loads every session and checks its
//!    data: the initial value plus exactly the acknowledged increments.
//!    Redis must hold no session. Any mismatch exits with status 1.
//!
//! Reads `REDIS_URL` (default `redis://127.0.0.1:6379`) and `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). Keys go under a
//! random prefix and rows into a table of their own; both are removed at
//! the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sessionkit::migrate::{CopyProgress, MigratingStore};
use sessionkit::redis::{RedisConfig, RedisStore, redis};
use sessionkit::sql::{SqlStore, sqlx};
use sessionkit::{ScanCursor, SessionId, SessionManager, SessionStore};

/// Sessions created in Redis before the move.
const SESSIONS: usize = 2_000;
/// Concurrent workload tasks.
const WORKERS: usize = 8;
/// Records per `move_sessions` page.
const PAGE: usize = 100;

/// The session data: where it started and how often it was incremented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    seed: u64,
    hits: u64,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    match setup_and_run().await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("migrate: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

async fn setup_and_run() -> Result<(), Failure> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let pg_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let tag = SessionId::generate().as_str()[..8].to_owned();
    let prefix = format!("sessionkit-migrate:{tag}");
    // The ID alphabet has `-`, which an SQL identifier cannot.
    let table = format!(
        "sessionkit_migrate_{}",
        tag.to_ascii_lowercase().replace('-', "_")
    );

    let old = match RedisStore::standalone(
        &redis_url,
        RedisConfig::new()
            .prefix(prefix.clone())
            .command_timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1)),
    )
    .await
    {
        Ok(store) => store,
        Err(err) => {
            eprintln!("cannot reach Redis at {redis_url}: {err} (set REDIS_URL)");
            std::process::exit(2);
        }
    };
    let new = match SqlStore::builder()
        .table(table.clone())
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(5))
        .statement_timeout(Duration::from_secs(5))
        .connect(&pg_url)
        .await
    {
        Ok(store) => store,
        Err(err) => {
            eprintln!("cannot use PostgreSQL at {pg_url}: {err} (set DATABASE_URL)");
            std::process::exit(2);
        }
    };
    println!("from Redis (keys under {prefix}:) to PostgreSQL (table {table})");

    let result = run(&old, &new).await;

    // Leave nothing behind, whatever happened.
    if let Some(pool) = new.postgres_pool() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS \"{table}\""
        )))
        .execute(pool)
        .await?;
        sqlx::query("DELETE FROM sessionkit_migrations WHERE table_name = $1")
            .bind(&table)
            .execute(pool)
            .await?;
    }
    let leftover_keys = delete_keys(&redis_url, &format!("{prefix}:*")).await?;
    println!(
        "cleaned up: table dropped, {leftover_keys} Redis keys deleted (compare-and-delete receipts, which expire within seconds anyway)"
    );
    result
}

async fn run(old: &RedisStore, new: &SqlStore) -> Result<(), Failure> {
    let started = Instant::now();

    // 1. The old deployment's sessions.
    let before = SessionManager::<Account>::stateful(old.clone()).build()?;
    let mut tickets = Vec::with_capacity(SESSIONS);
    let mut creators = tokio::task::JoinSet::new();
    for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(SESSIONS / WORKERS) {
        let (before, chunk) = (before.clone(), chunk.to_vec());
        creators.spawn(async move {
            let mut made = Vec::with_capacity(chunk.len());
            for i in chunk {
                let subject = format!("user-{}", i % 500);
                let data = Account {
                    seed: i as u64 * 1_000,
                    hits: 0,
                };
                let session = before.create(Some(&subject), data).await?;
                made.push((i, session.ticket().as_str().to_owned()));
            }
            Ok::<_, sessionkit::Error>(made)
        });
    }
    let mut made: Vec<(usize, String)> = Vec::with_capacity(SESSIONS);
    while let Some(part) = creators.join_next().await {
        made.extend(part??);
    }
    made.sort_unstable();
    tickets.extend(made.into_iter().map(|(_, t)| t));
    println!(
        "created {SESSIONS} sessions in Redis ({:.2?})",
        started.elapsed()
    );

    // 2. Every instance now runs on the migrating store.
    let during = SessionManager::<Account>::stateful(MigratingStore::new(old.clone(), new.clone()))
        .build()?;
    let tickets = Arc::new(tickets);
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..SESSIONS).map(|_| AtomicU64::new(0)).collect());
    let reads = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (during, tickets, acked, reads, stop) = (
            during.clone(),
            Arc::clone(&tickets),
            Arc::clone(&acked),
            Arc::clone(&reads),
            Arc::clone(&stop),
        );
        workers.spawn(async move {
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (w as u64 + 1);
            while !stop.load(Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng % SESSIONS as u64) as usize;
                if rng.is_multiple_of(4) {
                    // A read: moves the session if it is still only in Redis.
                    let found = during.load(&tickets[i]).await?;
                    if found.is_none() {
                        return Err(format!("session #{i} not found during the move").into());
                    }
                    reads.fetch_add(1, Relaxed);
                } else {
                    during.update(&tickets[i], |a| a.hits += 1).await?;
                    acked[i].fetch_add(1, Relaxed);
                }
            }
            Ok::<_, Failure>(())
        });
    }
    // Let the workload get going before the move starts.
    while acked.iter().map(|a| a.load(Relaxed)).sum::<u64>() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 3. The bulk move (run once, from one place), interrupted after three
    // pages and resumed from its last cursor (as after a crash: a cursor
    // saved anywhere will do).
    let mover = MigratingStore::new(old.clone(), new.clone());
    let bar = ProgressBar::new(SESSIONS as u64);
    bar.set_style(
        ProgressStyle::with_template("move {bar:40} {pos}/{len} scanned, {msg}")
            .map_err(|e| e.to_string())?,
    );
    let mut last_cursor: Option<ScanCursor> = None;
    let mut first_leg = CopyProgress::default();
    let (interrupt, interrupted_rx) = tokio::sync::oneshot::channel::<()>();
    let mut interrupt = Some(interrupt);
    tokio::select! {
        done = mover.move_sessions(PAGE, None, |p| {
            bar.set_position(p.scanned);
            bar.set_message(format!("{} moved", p.copied));
            last_cursor = p.cursor.clone();
            first_leg = p.clone();
            if p.scanned as usize >= 3 * PAGE
                && let Some(tx) = interrupt.take()
            {
                let _ = tx.send(());
            }
        }) => {
            // Finished before the interruption could land.
            done?;
        }
        _ = interrupted_rx => {}
    }
    let interrupted = last_cursor.is_some();
    let second_leg = if interrupted {
        bar.println(format!(
            "move interrupted after {} records; resuming from its last cursor",
            first_leg.scanned
        ));
        let base = first_leg.clone();
        mover
            .move_sessions(PAGE, last_cursor.take(), |p| {
                bar.set_position(base.scanned + p.scanned);
                bar.set_message(format!("{} moved", base.copied + p.copied));
            })
            .await?
    } else {
        CopyProgress::default()
    };
    bar.finish_and_clear();
    let copied = first_leg.copied + second_leg.copied;
    let already_there = first_leg.already_there + second_leg.already_there;
    println!(
        "moved {copied} sessions ({already_there} moved by the workload's own \
         reads meanwhile), interrupted and resumed: {interrupted} ({:.2?})",
        started.elapsed()
    );

    // Some more traffic after the copy, then stop the workload.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Relaxed);
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let increments: u64 = acked.iter().map(|a| a.load(Relaxed)).sum();
    let reads = reads.load(Relaxed);

    // 5. Verify through PostgreSQL alone.
    let after = SessionManager::<Account>::stateful(new.clone()).build()?;
    let mut lost = 0u64;
    let mut wrong = 0u64;
    for (i, ticket) in tickets.iter().enumerate() {
        let expected = Account {
            seed: i as u64 * 1_000,
            hits: acked[i].load(Relaxed),
        };
        match after.load(ticket).await? {
            None => {
                lost += 1;
                eprintln!("session #{i}: lost");
            }
            Some(s) if *s.data() != expected => {
                wrong += 1;
                eprintln!("session #{i}: {:?}, expected {expected:?}", s.data());
            }
            Some(_) => {}
        }
    }
    let mut in_redis = 0;
    let mut cursor = None;
    loop {
        let page = old.scan(cursor.as_ref(), 500).await?;
        in_redis += page.records.len();
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    println!(
        "sessions: {SESSIONS}; acknowledged increments: {increments}; reads: {reads}; \
         moved by move_sessions: {copied}; left in Redis: {in_redis}; lost: {lost}; \
         wrong data: {wrong} ({:.2?})",
        started.elapsed()
    );
    if lost > 0 || wrong > 0 || in_redis > 0 {
        return Err("the move lost or changed sessions".into());
    }
    if increments == 0 || copied == 0 {
        return Err("the workload or the move did nothing".into());
    }
    println!("ok: every session moved with exactly its data");
    Ok(())
}

/// Deletes every Redis key matching `pattern` (the example's own prefix);
/// returns how many.
async fn delete_keys(url: &str, pattern: &str) -> Result<u64, Failure> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut con).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
