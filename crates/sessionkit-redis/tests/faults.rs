//! Fault tests on private `redis-server` processes: a server killed mid-run,
//! restarted with its append-only file, and a server paused with SIGSTOP.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RedisServer, eventually, have_redis_binaries, random_prefix};
use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};
use sessionkit_redis::{RedisConfig, RedisStore};

const TIMEOUT: Duration = Duration::from_millis(500);
/// Slack on top of the configured bound for scheduling on a busy 2-core CI.
const SLACK: Duration = Duration::from_millis(400);

fn config() -> RedisConfig {
    RedisConfig::new()
        .prefix(random_prefix())
        .command_timeout(TIMEOUT)
        .connect_timeout(Duration::from_millis(300))
}

fn record(n: usize) -> Record {
    let now = Timestamp::now();
    Record::new(
        SessionId::generate(),
        Some(format!("user-{}", n % 7)),
        format!("payload {n}").into_bytes(),
        now,
        now + Duration::from_secs(3600),
    )
}

fn cached_scripts(server: &RedisServer) -> u64 {
    server
        .cli(&["info", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("number_of_cached_scripts:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_fails_fast_and_restart_keeps_every_acknowledged_write() {
    if !have_redis_binaries() {
        return;
    }
    let mut server = RedisServer::start("aof", &["--appendonly", "yes", "--appendfsync", "always"]);
    let store = RedisStore::standalone(&server.url(), config())
        .await
        .expect("connect to the private server");

    // One writer: create a session, then save it once; remember what was
    // acknowledged, and how every failure looked and how long it took.
    let acked: Arc<Mutex<HashMap<SessionId, u64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<(String, bool, Duration)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, acked, failures, stop) =
            (store.clone(), acked.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                n += 1;
                let mut r = record(n);
                let started = Instant::now();
                let outcome = match store.create(&r).await {
                    Ok(()) => {
                        acked.lock().unwrap().insert(r.id, 1);
                        r.payload = format!("saved {n}").into_bytes().into();
                        store.save(&r).await.map(|v| {
                            acked.lock().unwrap().insert(r.id, v);
                        })
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    let retryable =
                        e.is_retryable() && matches!(e, Error::Backend { .. } | Error::Timeout(_));
                    failures
                        .lock()
                        .unwrap()
                        .push((format!("{e:?}"), retryable, started.elapsed()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };

    eventually(
        "50 acknowledged writes",
        Duration::from_secs(20),
        || async { acked.lock().unwrap().len() >= 50 },
    )
    .await;
    server.kill9();
    eventually(
        "5 failed calls after the kill",
        Duration::from_secs(20),
        || async { failures.lock().unwrap().len() >= 5 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the writer finishes: no call hangs")
        .expect("the writer does not panic");

    for (err, retryable, took) in failures.lock().unwrap().iter() {
        println!("failure after {took:?}: {err}");
        assert!(
            retryable,
            "a call on a dead server must fail with a retryable error, got {err}"
        );
        assert!(
            *took <= 2 * TIMEOUT + SLACK,
            "a call on a dead server took {took:?} ({err})"
        );
    }
    let acked = acked.lock().unwrap().clone();
    println!(
        "acknowledged before the kill: {} sessions; failures seen: {}",
        acked.len(),
        failures.lock().unwrap().len()
    );

    // Same port, same directory: the append-only file is replayed. The
    // script cache is empty after a restart, so the next save exercises the
    // EVALSHA → NOSCRIPT → SCRIPT LOAD fallback.
    server.restart();
    assert_eq!(
        cached_scripts(&server),
        0,
        "a restarted server has no scripts"
    );
    let probe = *acked.keys().next().expect("some acknowledged writes");
    eventually(
        "the same store works again",
        Duration::from_secs(20),
        || async { store.load(&probe).await.is_ok() },
    )
    .await;
    for (id, version) in &acked {
        let found = store
            .load(id)
            .await
            .expect("load after restart")
            .unwrap_or_else(|| {
                panic!("an acknowledged session {id:?} is missing after the restart")
            });
        // A save whose reply was lost in the kill may have been applied too.
        assert!(
            found.version >= *version,
            "{id:?}: version {} < acknowledged {version}",
            found.version
        );
    }
    let mut r = store.load(&probe).await.unwrap().unwrap();
    let v = store
        .save(&r)
        .await
        .expect("save after restart (NOSCRIPT fallback)");
    r.version = v;
    assert!(cached_scripts(&server) >= 1, "the script was loaded again");
    store
        .touch(&probe, Timestamp::now() + Duration::from_secs(60))
        .await
        .expect("touch after restart");
    assert_eq!(store.load(&probe).await.unwrap().unwrap().version, v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_times_out_within_the_bound_and_sigcont_recovers() {
    if !have_redis_binaries() {
        return;
    }
    let server = RedisServer::start("stop", &[]);
    let store = RedisStore::standalone(&server.url(), config())
        .await
        .expect("connect to the private server");
    let r = record(1);
    store.create(&r).await.expect("create");

    server.pause();
    for op in ["load", "save", "touch", "list"] {
        let started = Instant::now();
        let result = match op {
            "load" => store.load(&r.id).await.map(|_| ()),
            "save" => store.save(&r).await.map(|_| ()),
            "touch" => {
                store
                    .touch(&r.id, Timestamp::now() + Duration::from_secs(60))
                    .await
            }
            _ => store.list_subject("user-1").await.map(|_| ()),
        };
        let took = started.elapsed();
        assert!(
            matches!(result, Err(Error::Timeout(d)) if d == TIMEOUT),
            "{op} on a paused server must be Err(Timeout({TIMEOUT:?})), got {result:?}"
        );
        assert!(took <= TIMEOUT + SLACK, "{op} took {took:?}");
    }

    server.resume();
    eventually(
        "the server answers again",
        Duration::from_secs(15),
        || async { matches!(store.load(&r.id).await, Ok(Some(_))) },
    )
    .await;
    let v = store.save(&r).await.expect("save after SIGCONT");
    assert_eq!(v, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_fails_fast_and_typed() {
    if !have_redis_binaries() {
        return;
    }
    // A port nobody listens on.
    let port = common::free_port();
    let started = Instant::now();
    let err = RedisStore::standalone(&format!("redis://127.0.0.1:{port}"), config())
        .await
        .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A paused server: the connect timeout bounds it.
    let server = RedisServer::start("stop-connect", &[]);
    server.pause();
    let started = Instant::now();
    let err = RedisStore::standalone(&server.url(), config())
        .await
        .expect_err("a paused server does not answer");
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.resume();

    // Configuration errors are not retryable.
    let err = RedisStore::standalone(&server.url(), config().prefix("bad{prefix}"))
        .await
        .expect_err("braces are refused");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = RedisStore::standalone("not a url", config())
        .await
        .expect_err("bad url");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_is_survived() {
    if !have_redis_binaries() {
        return;
    }
    let server = RedisServer::start("flush", &[]);
    let store = RedisStore::standalone(&server.url(), config())
        .await
        .expect("connect");
    let mut r = record(3);
    store.create(&r).await.unwrap();
    for expected in 2..5 {
        assert!(server.cli(&["script", "flush"]).contains("OK"));
        assert_eq!(cached_scripts(&server), 0);
        r.version = store.save(&r).await.expect("save after SCRIPT FLUSH");
        assert_eq!(r.version, expected);
    }
}
