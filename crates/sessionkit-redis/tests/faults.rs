//! Fault tests on private `redis-server` (7.0, script saves) and
//! `valkey-server` (≥ 8.1, native saves) processes: a server killed
//! mid-run, restarted with its append-only file, a server paused with
//! SIGSTOP, and replies lost in a proxy (which calls are sent again, which
//! are not). Each test runs on both servers.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Binaries, LossyProxy, RedisServer, eventually, have_redis_binaries, random_prefix,
    valkey_binaries,
};
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

/// Redis 7.0 and Valkey ≥ 8.1 (a missing one is skipped loudly, a failure
/// in CI).
fn flavors() -> Vec<Binaries> {
    let mut out = Vec::new();
    if have_redis_binaries() {
        out.push(Binaries::redis());
    }
    out.extend(valkey_binaries());
    out
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
    for bins in flavors() {
        println!("on {}", bins.name);
        kill9_fails_fast_and_restart_keeps_every_acknowledged_write_on(&bins).await;
    }
}

async fn kill9_fails_fast_and_restart_keeps_every_acknowledged_write_on(bins: &Binaries) {
    let mut server = RedisServer::start_with(
        bins,
        "aof",
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
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
                    let transient =
                        e.is_transient() && matches!(e, Error::Backend { .. } | Error::Timeout(_));
                    failures
                        .lock()
                        .unwrap()
                        .push((format!("{e:?}"), transient, started.elapsed()));
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

    for (err, transient, took) in failures.lock().unwrap().iter() {
        println!("failure after {took:?}: {err}");
        assert!(
            transient,
            "a call on a dead server must fail with a transient error, got {err}"
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
    // script cache is empty after a restart, so the next script (the save's
    // on Redis 7.0, the touch's on Valkey, whose saves are native)
    // exercises the EVALSHA → NOSCRIPT → SCRIPT LOAD fallback.
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
    store
        .touch(&probe, Timestamp::now() + Duration::from_secs(60))
        .await
        .expect("touch after restart");
    assert!(
        cached_scripts(&server) >= 1,
        "the scripts were loaded again"
    );
    assert_eq!(store.load(&probe).await.unwrap().unwrap().version, v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_times_out_within_the_bound_and_sigcont_recovers() {
    for bins in flavors() {
        println!("on {}", bins.name);
        sigstop_times_out_within_the_bound_and_sigcont_recovers_on(&bins).await;
    }
}

async fn sigstop_times_out_within_the_bound_and_sigcont_recovers_on(bins: &Binaries) {
    let server = RedisServer::start_with(bins, "stop", &[]);
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
            matches!(result, Err(Error::Timeout(Some(d))) if d == TIMEOUT),
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
    // A save that timed out may still have been applied once the server
    // resumed (its command was sent): its outcome is unknown, as documented.
    let current = store.load(&r.id).await.unwrap().expect("live");
    assert!(
        matches!(current.version, 1 | 2),
        "version {}",
        current.version
    );
    let v = store.save(&current).await.expect("save after SIGCONT");
    assert_eq!(v, current.version + 1);
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
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A paused server: the connect timeout bounds it.
    let server = RedisServer::start("stop-connect", &[]);
    server.pause();
    let started = Instant::now();
    let err = RedisStore::standalone(&server.url(), config())
        .await
        .expect_err("a paused server does not answer");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.resume();

    // Configuration errors are not transient.
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
    for bins in flavors() {
        println!("on {}", bins.name);
        script_flush_is_survived_on(&bins).await;
    }
}

async fn script_flush_is_survived_on(bins: &Binaries) {
    let server = RedisServer::start_with(bins, "flush", &[]);
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

/// After a restart (same port), the connection of an idle store is dead,
/// and its next command finds out only when it is sent. Reads and calls
/// that are safe to repeat then reconnect and send it once more, within
/// their bound: the first call of every idle store succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_first_call_of_an_idle_store_succeeds() {
    for bins in flavors() {
        println!("on {}", bins.name);
        after_a_restart_the_first_call_of_an_idle_store_succeeds_on(&bins).await;
    }
}

async fn after_a_restart_the_first_call_of_an_idle_store_succeeds_on(bins: &Binaries) {
    let mut server = RedisServer::start_with(
        bins,
        "restart",
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let config = config();
    const OPS: [&str; 7] = [
        "load",
        "load_fresh",
        "list_subject",
        "touch",
        "delete",
        "delete_subject",
        "compare_and_delete",
    ];
    // One store (so one connection) per call, each used before the restart
    // and idle since.
    let mut cases = Vec::new();
    for op in OPS {
        let store = RedisStore::standalone(&server.url(), config.clone())
            .await
            .expect("connect to the private server");
        let now = Timestamp::now();
        let r = Record::new(
            SessionId::generate(),
            Some(format!("restart-{op}")),
            b"p".to_vec(),
            now,
            now + Duration::from_secs(3600),
        );
        store.create(&r).await.expect("create");
        cases.push((op, store, r));
    }

    server.kill9();
    server.restart();

    for (op, store, r) in &cases {
        let subject = r.subject.as_deref().unwrap();
        let started = Instant::now();
        let outcome: Result<(), Error> = match *op {
            "load" => store
                .load(&r.id)
                .await
                .map(|got| assert_eq!(got.as_ref(), Some(r))),
            "load_fresh" => store
                .load_fresh(&r.id)
                .await
                .map(|got| assert_eq!(got.as_ref(), Some(r))),
            "list_subject" => store
                .list_subject(subject)
                .await
                .map(|got| assert_eq!(got, vec![r.clone()])),
            "touch" => {
                store
                    .touch(&r.id, Timestamp::now() + Duration::from_secs(60))
                    .await
            }
            "delete" => store.delete(&r.id).await.map(|live| assert!(live)),
            "delete_subject" => store
                .delete_subject(subject)
                .await
                .map(|n| assert_eq!(n, 1)),
            _ => store.compare_and_delete(&r.id, r.version).await,
        };
        let took = started.elapsed();
        assert!(
            outcome.is_ok(),
            "the first {op} of an idle store after a restart failed: {outcome:?}"
        );
        assert!(took <= TIMEOUT + SLACK, "{op} took {took:?}");
    }
}

/// A reply lost after the server applied the request (the proxy closes the
/// connection instead of forwarding it). Reads and `compare_and_delete`
/// are sent again on a new connection and answer correctly; the second
/// attempt of a `compare_and_delete` recognises its own receipt, so the
/// rotation it serves is not failed with `NotFound` (and a receipt is
/// never mistaken for another call's). `create` and `save` are not sent
/// again: they fail with a transient error, and their write may have been
/// applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_is_sent_again_only_where_that_is_safe() {
    for bins in flavors() {
        println!("on {}", bins.name);
        a_lost_reply_is_sent_again_only_where_that_is_safe_on(&bins).await;
    }
}

async fn a_lost_reply_is_sent_again_only_where_that_is_safe_on(bins: &Binaries) {
    let server = RedisServer::start_with(bins, "lossy", &[]);
    let proxy = LossyProxy::start(server.port).await;
    let store = RedisStore::standalone(&proxy.url(), config())
        .await
        .expect("connect through the proxy");
    let session = |subject: Option<&str>| {
        let now = Timestamp::now();
        Record::new(
            SessionId::generate(),
            subject.map(str::to_owned),
            b"p".to_vec(),
            now,
            now + Duration::from_secs(3600),
        )
    };
    // Load every script once, so that the lost reply is the command's own
    // (not a NOSCRIPT).
    let warm = session(Some("lossy"));
    store.create(&warm).await.unwrap();
    store.save(&warm).await.unwrap();
    assert!(matches!(
        store.compare_and_delete(&warm.id, 1).await,
        Err(Error::Conflict)
    ));

    // compare_and_delete: applied, reply lost, sent again: Ok.
    let r = session(Some("lossy"));
    store.create(&r).await.unwrap();
    proxy.drop_next_reply();
    store
        .compare_and_delete(&r.id, 1)
        .await
        .expect("the second attempt finds its own receipt");
    assert_eq!(proxy.dropped(), 1, "the reply was lost once");
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    assert_eq!(
        store.list_subject("lossy").await.unwrap(),
        vec![store.load(&warm.id).await.unwrap().unwrap()]
    );
    // Another call for the same version does not take the receipt for its
    // own: exactly one compare_and_delete of a version succeeds.
    assert!(matches!(
        store.compare_and_delete(&r.id, 1).await,
        Err(Error::NotFound)
    ));

    // load: reply lost, sent again.
    proxy.drop_next_reply();
    assert!(store.load(&warm.id).await.unwrap().is_some());
    assert_eq!(proxy.dropped(), 2);

    // create (one SET: no subject): applied, reply lost, not sent again (a
    // second SET NX would report a Conflict for the caller's own record).
    let c = session(None);
    proxy.drop_next_reply();
    let err = store.create(&c).await.expect_err("the reply was lost");
    assert_eq!(proxy.dropped(), 3);
    assert!(
        matches!(
            err,
            Error::Backend {
                transient: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.load(&c.id).await.unwrap().map(|r| r.version), Some(1));

    // save: applied, reply lost, not sent again (it would be a Conflict).
    proxy.drop_next_reply();
    let err = store.save(&c).await.expect_err("the reply was lost");
    assert_eq!(proxy.dropped(), 4);
    assert!(
        matches!(
            err,
            Error::Backend {
                transient: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.load(&c.id).await.unwrap().map(|r| r.version), Some(2));
}
