//! The two save paths, on private servers: Valkey ≥ 8.1 saves with one
//! native `SET … IFEQ … PXAT`, Redis 7.0 with the compare-and-swap script;
//! a save with an unchanged subject sends no index command on either; a
//! native comparison that fails leaves the exact outcome (`Conflict`,
//! `NotFound`, `Decode`, or a write after a touch) to the script; a server
//! without `IFEQ` is caught on the first native save; and a store detects
//! the capability again when another server takes over its address.
//!
//! Which commands a save sent is read from the server's `INFO
//! commandstats` (each test has its own server, so nothing else talks to
//! it).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Binaries, RedisServer, eventually, have_redis_binaries, random_prefix, valkey_binaries,
};
use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};
use sessionkit_redis::redis::{self, AsyncCommands as _};
use sessionkit_redis::{RedisConfig, RedisStore, SavePath};

/// The servers to run a test against: Redis 7.0 (script path) and Valkey
/// ≥ 8.1 (native path); a missing one is skipped loudly (a failure in CI).
fn flavors() -> Vec<(Binaries, SavePath)> {
    let mut out = Vec::new();
    if have_redis_binaries() {
        out.push((Binaries::redis(), SavePath::Script));
    }
    if let Some(valkey) = valkey_binaries() {
        out.push((valkey, SavePath::Native));
    }
    out
}

fn config(prefix: &str) -> RedisConfig {
    RedisConfig::new()
        .prefix(prefix)
        .command_timeout(Duration::from_millis(1000))
        .connect_timeout(Duration::from_millis(500))
}

async fn connect(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::standalone(&server.url(), config(prefix))
        .await
        .expect("connect to the private server")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `INFO commandstats` as command → calls (without the test's own `INFO`
/// and `CONFIG RESETSTAT`).
fn calls(server: &RedisServer) -> HashMap<String, u64> {
    server
        .cli(&["info", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            if name.starts_with("config") || name.starts_with("info") {
                return None;
            }
            let n = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), n))
        })
        .collect()
}

/// Settles what a first use leaves pending (the scripts are loaded by a
/// warm-up save, and the probe that their `NOSCRIPT` made due is run now,
/// not in the middle of a measurement), then resets the server's counters.
async fn settle_and_reset(store: &RedisStore, server: &RedisServer) {
    let now = Timestamp::now();
    let mut warm = record(Some("warm-up"), now + Duration::from_secs(60));
    store.create(&warm).await.unwrap();
    warm.version = store.save(&warm).await.unwrap();
    store.delete(&warm.id).await.unwrap();
    store.detect_save_path().await.unwrap();
    assert!(server.cli(&["config", "resetstat"]).contains("OK"));
}

/// The commands a save sent, as a client sees them: on Redis 7.0 the
/// commands a script calls are counted too (`getrange`, `rename`,
/// `pexpireat` from the save script), so only the top-level ones are kept.
fn top_level(mut counts: HashMap<String, u64>) -> HashMap<String, u64> {
    counts.retain(|k, _| !matches!(k.as_str(), "getrange" | "rename" | "pexpireat"));
    counts
}

fn record(subject: Option<&str>, expires_at: Timestamp) -> Record {
    Record::new(
        SessionId::generate(),
        subject.map(str::to_owned),
        b"first".to_vec(),
        Timestamp::now(),
        expires_at,
    )
}

/// The subject-index score of an expiry: rounded up to the next minute.
fn index_score(expires_at: Timestamp) -> i64 {
    let ms = expires_at.as_millis();
    ms.div_euclid(60_000) * 60_000
        + if ms.rem_euclid(60_000) == 0 {
            0
        } else {
            60_000
        }
}

/// An expiry about an hour ahead, 30 s into its minute, so that moving it
/// by a few milliseconds stays within the minute.
fn mid_minute_expiry() -> Timestamp {
    let base = index_score(Timestamp::now() + Duration::from_secs(3600));
    Timestamp::from_millis(base - 30_000)
}

/// Valkey: five saves are five `SET`s (no script, no staged value) and
/// the stats say native; Redis 7.0: five staged `SET`s and five
/// `EVALSHA`s, and the stats say script. The capability probe at connect
/// leaves no key behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_take_the_native_path_on_valkey_and_the_script_on_redis_7() {
    for (bins, path) in flavors() {
        let server = RedisServer::start_with(&bins, &format!("{}-path", bins.name), &[]);
        let store = connect(&server, &random_prefix()).await;
        assert_eq!(store.save_path(), path, "{}", bins.name);
        assert_eq!(store.save_stats().probes, 1);

        let keys: Vec<String> = raw(&server).await.keys("*").await.unwrap();
        assert!(keys.is_empty(), "the probe wrote {keys:?}");
        settle_and_reset(&store, &server).await;
        let base = store.save_stats();
        let mut r = record(None, Timestamp::now() + Duration::from_secs(3600));
        store.create(&r).await.unwrap();
        for i in 0..5 {
            r.payload = format!("save {i}").into_bytes().into();
            r.version = store.save(&r).await.expect("save");
        }
        let counts = top_level(calls(&server));
        assert_eq!(r.version, 6);
        assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
        let stats = store.save_stats();
        let delta = (
            stats.native - base.native,
            stats.native_missed - base.native_missed,
            stats.script - base.script,
        );
        // create: one SET NX; each save: see below.
        match path {
            SavePath::Native => {
                assert_eq!(delta, (5, 0, 0));
                assert_eq!(
                    counts,
                    [("set".to_owned(), 6)].into(),
                    "one SET IFEQ per save"
                );
            }
            _ => {
                assert_eq!(delta, (0, 0, 5));
                assert_eq!(
                    counts,
                    [("set".to_owned(), 6), ("evalsha".to_owned(), 5)].into(),
                    "a staged SET and the script per save"
                );
            }
        }
        // A store told not to use native saves never does.
        let scripted =
            RedisStore::standalone(&server.url(), config(store.prefix()).native_saves(false))
                .await
                .unwrap();
        assert_eq!(scripted.save_path(), SavePath::Script);
        let mut loaded = scripted.load(&r.id).await.unwrap().unwrap();
        loaded.version = scripted.save(&loaded).await.unwrap();
        assert_eq!(scripted.save_stats().native, 0);
        assert_eq!(scripted.save_stats().script, 1);
        assert_eq!(scripted.save_stats().probes, 0);
    }
}

/// A save whose subject did not change and whose index entry already
/// covers the new expiry sends no index command (Valkey: one `SET`;
/// Redis 7.0: the staged `SET` and the save script), and the session is
/// still listed. A save that moves the expiry into a later minute raises
/// the entry, in the same call; a save that changes the subject moves the
/// entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_with_an_unchanged_subject_sends_no_index_command() {
    for (bins, path) in flavors() {
        let server = RedisServer::start_with(&bins, &format!("{}-subject", bins.name), &[]);
        let store = connect(&server, &random_prefix()).await;
        let mut c = raw(&server).await;
        let expiry = mid_minute_expiry();
        let mut r = record(Some("alice"), expiry);
        store.create(&r).await.unwrap();
        let alice = store.subject_index_key("alice");
        settle_and_reset(&store, &server).await;
        let base = store.save_stats();
        for i in 1..=5 {
            r.payload = format!("save {i}").into_bytes().into();
            r.expires_at = expiry + Duration::from_millis(10 * i);
            r.version = store.save(&r).await.expect("save");
        }
        let counts = top_level(calls(&server));
        let per_path = match path {
            SavePath::Native => [("set", 5)].as_slice(),
            _ => [("set", 5), ("evalsha", 5)].as_slice(),
        };
        let expected: HashMap<String, u64> =
            per_path.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(counts, expected, "{}: only the save's commands", bins.name);
        assert_eq!(store.list_subject("alice").await.unwrap(), vec![r.clone()]);
        let score: f64 = c.zscore(&alice, r.id.as_str()).await.unwrap();
        assert!(score >= r.expires_at.as_millis() as f64);

        // Into the next minute: the entry is raised.
        r.expires_at = expiry + Duration::from_secs(60);
        r.version = store.save(&r).await.unwrap();
        let score: f64 = c.zscore(&alice, r.id.as_str()).await.unwrap();
        assert_eq!(score, index_score(r.expires_at) as f64);

        // Another subject: the entry moves.
        r.subject = Some("bob".into());
        r.version = store.save(&r).await.unwrap();
        assert!(store.list_subject("alice").await.unwrap().is_empty());
        let gone: Option<f64> = c.zscore(&alice, r.id.as_str()).await.unwrap();
        assert_eq!(gone, None);
        assert_eq!(store.list_subject("bob").await.unwrap(), vec![r.clone()]);
        assert_eq!(store.delete_subject("bob").await.unwrap(), 1);
        let stats = store.save_stats();
        let delta = (stats.native - base.native, stats.script - base.script);
        match path {
            SavePath::Native => assert_eq!(delta, (7, 0)),
            _ => assert_eq!(delta, (0, 7)),
        }
    }
}

/// When the stored value is not the one a store remembers, the native
/// comparison fails, writes nothing, and the script decides exactly as on
/// Redis 7.0: another save is `Conflict`, a touch elsewhere still lets the
/// save through (compare-and-swap is on the version), a delete is
/// `NotFound`, a corrupted value is `Decode` (and stays), an expired one is
/// `NotFound`, and a subject changed elsewhere is `Conflict` with the
/// index left right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_comparison_leaves_the_exact_outcome_to_the_script() {
    for (bins, path) in flavors() {
        let server = RedisServer::start_with(&bins, &format!("{}-miss", bins.name), &[]);
        let prefix = random_prefix();
        // Two instances of an application: `a` remembers what it loaded,
        // `b` changes the sessions behind its back.
        let a = connect(&server, &prefix).await;
        let b = connect(&server, &prefix).await;
        let mut c = raw(&server).await;
        let long = Timestamp::now() + Duration::from_secs(3600);
        let missed = |store: &RedisStore| store.save_stats().native_missed;

        // Saved elsewhere: Conflict.
        let r = record(Some("carol"), long);
        b.create(&r).await.unwrap();
        let mine = a.load(&r.id).await.unwrap().unwrap();
        let mut theirs = b.load(&r.id).await.unwrap().unwrap();
        theirs.payload = b"theirs".to_vec().into();
        theirs.version = b.save(&theirs).await.unwrap();
        let before = missed(&a);
        assert!(matches!(a.save(&mine).await, Err(Error::Conflict)));
        assert_eq!(b.load(&r.id).await.unwrap(), Some(theirs.clone()));

        // Touched elsewhere (same version, other bytes): written.
        let mut mine = a.load(&r.id).await.unwrap().unwrap();
        b.touch(&r.id, long + Duration::from_secs(5)).await.unwrap();
        mine.payload = b"mine after a touch".to_vec().into();
        mine.version = a.save(&mine).await.expect("a touch does not conflict");
        assert_eq!(b.load(&r.id).await.unwrap(), Some(mine.clone()));

        // Deleted elsewhere: NotFound.
        let loaded = a.load(&r.id).await.unwrap().unwrap();
        assert!(b.delete(&r.id).await.unwrap());
        assert!(matches!(a.save(&loaded).await, Err(Error::NotFound)));
        assert_eq!(a.load(&r.id).await.unwrap(), None);

        // Corrupted behind the store's back: Decode, and left as it is.
        let r = record(None, long);
        a.create(&r).await.unwrap();
        let loaded = a.load(&r.id).await.unwrap().unwrap();
        let _: () = c.set(a.session_key(&r.id), "garbage").await.unwrap();
        assert!(matches!(a.save(&loaded).await, Err(Error::Decode(_))));
        let raw_value: Vec<u8> = c.get(a.session_key(&r.id)).await.unwrap();
        assert_eq!(raw_value, b"garbage");

        // Subject moved elsewhere: Conflict; the index follows the winner.
        let r = record(Some("dave"), long);
        a.create(&r).await.unwrap();
        let mut moved = b.load(&r.id).await.unwrap().unwrap();
        moved.subject = Some("erin".into());
        moved.version = b.save(&moved).await.unwrap();
        assert!(matches!(a.save(&r).await, Err(Error::Conflict)));
        assert!(a.list_subject("dave").await.unwrap().is_empty());
        assert_eq!(a.list_subject("erin").await.unwrap(), vec![moved]);
        if path == SavePath::Native {
            assert_eq!(missed(&a) - before, 5, "five comparisons failed");
        } else {
            assert_eq!(missed(&a), 0);
        }

        // Expired by the application's clock (Redis may still hold the
        // key for a moment): NotFound, never a write.
        let now = Timestamp::now();
        let short = record(Some("frank"), now + Duration::from_millis(300));
        a.create(&short).await.unwrap();
        let loaded = a.load(&short.id).await.unwrap().unwrap();
        sessionkit_testkit::cases::wait_until_past(short.expires_at).await;
        assert!(matches!(a.save(&loaded).await, Err(Error::NotFound)));
        assert_eq!(a.load(&short.id).await.unwrap(), None);
    }
}

/// An index entry that lags behind its session (scored below the stored
/// expiry, as after a lost index update) while the store predicts it
/// covers the save: the save still leaves the entry at the new expiry's
/// score (the script reports the stale expiry; on Valkey the comparison
/// fails and the script path sends the index command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_index_prediction_is_repaired_by_the_save() {
    for (bins, _) in flavors() {
        let server = RedisServer::start_with(&bins, &format!("{}-predict", bins.name), &[]);
        let prefix = random_prefix();
        let a = connect(&server, &prefix).await;
        let b = connect(&server, &prefix).await;
        let mut c = raw(&server).await;
        let expiry = mid_minute_expiry();
        let mut r = record(Some("gina"), expiry);
        a.create(&r).await.unwrap();
        // Elsewhere: the expiry is pulled in to five minutes from now, and
        // the entry is lowered behind everyone's back.
        b.touch(&r.id, Timestamp::now() + Duration::from_secs(300))
            .await
            .unwrap();
        let index = a.subject_index_key("gina");
        let _: () = redis::cmd("ZADD")
            .arg(&index)
            .arg("XX")
            .arg(1_000)
            .arg(r.id.as_str())
            .query_async(&mut c)
            .await
            .unwrap();
        // `a` remembers the old expiry, which covers this save.
        r.version = a.save(&r).await.expect("save");
        let score: f64 = c.zscore(&index, r.id.as_str()).await.unwrap();
        assert_eq!(
            score,
            index_score(r.expires_at) as f64,
            "{}: the entry covers the saved expiry",
            bins.name
        );
        assert_eq!(a.list_subject("gina").await.unwrap(), vec![r]);
    }
}

/// A store that believes the server has `IFEQ` (a failover to an older
/// server it has not noticed yet) sends one native save, gets `ERR`,
/// switches to the script path, and that save is written by the script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_ifeq_is_caught_on_the_first_native_save() {
    if !have_redis_binaries() {
        return;
    }
    let server = RedisServer::start("no-ifeq", &[]);
    let store = connect(&server, &random_prefix()).await;
    assert_eq!(store.save_path(), SavePath::Script);
    store.__set_save_path(SavePath::Native);
    let mut r = record(Some("hank"), Timestamp::now() + Duration::from_secs(3600));
    store.create(&r).await.unwrap();
    r.payload = b"second".to_vec().into();
    r.version = store.save(&r).await.expect("written by the script");
    assert_eq!(r.version, 2);
    assert_eq!(store.save_path(), SavePath::Script);
    let stats = store.save_stats();
    assert_eq!((stats.native, stats.native_missed, stats.script), (0, 1, 1));
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.list_subject("hank").await.unwrap(), vec![r]);
}

/// Another server takes over the address (a failover behind a proxy or a
/// DNS name): Redis 7.0 is replaced by Valkey, and the store, on the
/// script path, notices the broken connection, probes again and saves
/// natively; then Valkey is replaced by Redis 7.0 again, and the store
/// goes back to the script path without a failed save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_behind_the_address_is_detected_again() {
    if !have_redis_binaries() {
        return;
    }
    let Some(valkey) = valkey_binaries() else {
        return;
    };
    let redis7 = Binaries::redis();
    let mut server = RedisServer::start("swap", &[]);
    let store = connect(&server, &random_prefix()).await;
    assert_eq!(store.save_path(), SavePath::Script);

    // Saves a fresh session once, ignoring the errors of a connection that
    // died with the old server (create and save are not sent again).
    async fn cycle(store: &RedisStore) -> Result<(), Error> {
        let mut r = record(Some("ivy"), Timestamp::now() + Duration::from_secs(3600));
        store.create(&r).await?;
        r.payload = b"saved".to_vec().into();
        r.version = store.save(&r).await?;
        assert_eq!(store.load(&r.id).await?, Some(r));
        Ok(())
    }
    cycle(&store).await.unwrap();

    server.kill9();
    server.restart_as(&valkey);
    eventually(
        "the store saves natively on the new server",
        Duration::from_secs(20),
        || async {
            let ok = cycle(&store).await.is_ok();
            ok && store.save_path() == SavePath::Native
        },
    )
    .await;
    let native = store.save_stats().native;
    cycle(&store).await.unwrap();
    assert_eq!(
        store.save_stats().native,
        native + 1,
        "that save was native"
    );

    server.kill9();
    server.restart_as(&redis7);
    eventually(
        "the store saves again on Redis 7.0",
        Duration::from_secs(20),
        || async { cycle(&store).await.is_ok() },
    )
    .await;
    assert_eq!(store.save_path(), SavePath::Script);
    let scripted = store.save_stats().script;
    cycle(&store).await.unwrap();
    assert_eq!(
        store.save_stats().script,
        scripted + 1,
        "that save was scripted"
    );
}
