//! Secrets at rest (issue 18, section 1) on Redis, a Redis Cluster and
//! Valkey: a read-only dump of the store holds no working ticket.
//!
//! Sessions are made through a `SessionManager` with its default
//! configuration (IDs hashed at rest), and again with `id_hash_key` set.
//! The store is then read raw with the `redis` crate, not through the store:
//! every key under the store's prefix (`SCAN` on each node, as a dump or a
//! replica of each node would hold them), and every value (strings, the
//! members and scores of subject indexes). Every ID-looking string found
//! there (every 22-character base64url run, and every 16 raw bytes of a
//! value written as an ID) is tried as a ticket through
//! `SessionManager::load` and `load_fresh`: none works, while the real
//! tickets do. A control run with hashing turned off shows that the same
//! extraction finds working tickets in a store keyed by the tickets.

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use common::{Cluster, RedisServer, have_redis_binaries, random_prefix, redis_url};
use sessionkit_core::{ID_LEN, SessionId, SessionManager, SessionStore as _};
use sessionkit_redis::redis::{self, AsyncCommands as _};
use sessionkit_redis::{RedisConfig, RedisStore};

/// Everything a raw dump of one node holds under `prefix`: each key, and
/// each value's bytes (a string's value; a sorted set's members and
/// scores; other types' elements).
async fn dump_node(url: &str, prefix: &str) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut c = redis::Client::open(url)
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the node");
    let mut keys: Vec<Vec<u8>> = Vec::new();
    {
        let mut iter: redis::AsyncIter<'_, Vec<u8>> =
            c.scan_match(format!("{prefix}:*")).await.expect("SCAN");
        while let Some(key) = iter.next_item().await {
            keys.push(key.expect("a key"));
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .expect("TYPE");
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![c.get(&key).await.expect("GET")],
            "zset" => {
                let pairs: Vec<(Vec<u8>, String)> =
                    c.zrange_withscores(&key, 0, -1).await.expect("ZRANGE");
                pairs
                    .into_iter()
                    .flat_map(|(m, s)| [m, s.into_bytes()])
                    .collect()
            }
            "hash" => {
                let pairs: Vec<(Vec<u8>, Vec<u8>)> = c.hgetall(&key).await.expect("HGETALL");
                pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
            }
            "set" => c.smembers(&key).await.expect("SMEMBERS"),
            "list" => c.lrange(&key, 0, -1).await.expect("LRANGE"),
            "none" => continue, // expired between SCAN and TYPE
            other => panic!("unexpected key type {other}"),
        };
        out.push((key, values));
    }
    out
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Every ID-looking string in `bytes`: each 22-character window of each
/// base64url run that parses as a session ID, and each 16-byte window
/// written as an ID (a binary encoding of an ID).
fn candidates(bytes: &[u8], into: &mut BTreeSet<String>) {
    for run in bytes.split(|b| !is_base64url(*b)) {
        for w in run.windows(ID_LEN) {
            if let Ok(id) = SessionId::parse(std::str::from_utf8(w).expect("ASCII")) {
                into.insert(id.as_str().to_owned());
            }
        }
    }
    for w in bytes.windows(16) {
        let raw: [u8; 16] = w.try_into().expect("16 bytes");
        into.insert(SessionId::from_bytes(raw).as_str().to_owned());
    }
}

/// Live sessions made the ways an application makes them (anonymous and
/// with a subject, rotated, updated): `(ticket, data)` of each live one,
/// and the ticket the rotation ended.
async fn make_sessions(m: &SessionManager<String>) -> (Vec<(String, String)>, String) {
    let subject = format!("at-rest-{}", &random_prefix()[7..]);
    let mut live = Vec::new();
    for i in 0..6 {
        let subject = (i % 2 == 0).then_some(subject.as_str());
        let data = format!("data-{i}");
        let s = m.create(subject, data.clone()).await.expect("create");
        live.push((s.ticket().as_str().to_owned(), data));
    }
    let mut s = m.load(&live[0].0).await.expect("load").expect("live");
    m.rotate(&mut s).await.expect("rotate");
    let ended = std::mem::replace(&mut live[0].0, s.ticket().as_str().to_owned());
    m.update(&live[1].0, |d| d.push_str("+1"))
        .await
        .expect("update");
    live[1].1.push_str("+1");
    (live, ended)
}

/// The nodes to dump and a fresh store over them.
struct Target {
    nodes: Vec<String>,
    cluster: bool,
}

impl Target {
    async fn store(&self) -> RedisStore {
        let config = RedisConfig::new().prefix(random_prefix());
        if self.cluster {
            RedisStore::cluster(self.nodes.clone(), config).await
        } else {
            RedisStore::standalone(&self.nodes[0], config).await
        }
        .expect("connect")
    }

    /// The raw dump of every node under the store's prefix: the IDs the
    /// session keys name (`{prefix}:s:{<id>}`), and the ID-looking strings
    /// found anywhere.
    async fn extract(&self, store: &RedisStore) -> (Vec<SessionId>, BTreeSet<String>) {
        let session_key_start = format!("{}:s:{{", store.prefix());
        let mut session_ids = Vec::new();
        let mut found = BTreeSet::new();
        for node in &self.nodes {
            for (key, values) in dump_node(node, store.prefix()).await {
                if let Some(rest) = key.strip_prefix(session_key_start.as_bytes()) {
                    let id = rest.strip_suffix(b"}").expect("a session key");
                    let id = SessionId::parse(std::str::from_utf8(id).expect("ASCII"))
                        .expect("a session key names an ID");
                    session_ids.push(id);
                }
                candidates(&key, &mut found);
                for v in &values {
                    candidates(v, &mut found);
                }
            }
        }
        (session_ids, found)
    }
}

/// The raw-dump check with a manager built by `build`.
async fn raw_dump_holds_no_ticket(
    target: &Target,
    build: impl Fn(RedisStore) -> SessionManager<String>,
) {
    let store = target.store().await;
    let m = build(store.clone());
    let (live, ended) = make_sessions(&m).await;
    let (stored, found) = target.extract(&store).await;
    assert_eq!(stored.len(), live.len(), "one session key per live session");
    // Not vacuous: each session key names a live record of the store, and
    // its ID is among the candidates tried below.
    for id in &stored {
        assert!(
            store.load(id).await.expect("store load").is_some(),
            "a dumped session key is not a live record"
        );
        assert!(found.contains(id.as_str()));
    }
    let mut tickets: Vec<&str> = live.iter().map(|(t, _)| t.as_str()).collect();
    tickets.push(&ended);
    for ticket in &tickets {
        assert!(
            !found.contains(*ticket),
            "the raw store holds a ticket (as text or as bytes)"
        );
    }
    for candidate in &found {
        assert!(
            m.load(candidate).await.expect("load").is_none(),
            "a string read from the raw store worked as a ticket"
        );
        assert!(
            m.load_fresh(candidate).await.expect("load_fresh").is_none(),
            "a string read from the raw store worked as a ticket (load_fresh)"
        );
    }
    // The tickets themselves work, with their data; the rotated-away one
    // does not.
    for (ticket, data) in &live {
        let s = m
            .load(ticket)
            .await
            .expect("load")
            .expect("a ticket loads its session");
        assert_eq!(s.data(), data);
    }
    assert!(m.load(&ended).await.expect("load").is_none());
}

/// Control: with hashing off the keys ARE the tickets, and the same
/// extraction finds every live one working. Shows the check above would
/// catch the leak it is about.
async fn control_unhashed_dump_leaks(target: &Target) {
    let store = target.store().await;
    let m = SessionManager::stateful(store.clone())
        .hash_ids(false)
        .build()
        .expect("a manager without hashed IDs");
    let (live, _) = make_sessions(&m).await;
    let (_, found) = target.extract(&store).await;
    for (ticket, _) in &live {
        assert!(found.contains(ticket), "the control dump finds the ticket");
        assert!(m.load(ticket).await.expect("load").is_some());
    }
}

async fn check(target: &Target) {
    raw_dump_holds_no_ticket(target, |s| {
        SessionManager::stateful(s)
            .build()
            .expect("a manager with the default configuration")
    })
    .await;
    raw_dump_holds_no_ticket(target, |s| {
        SessionManager::stateful(s)
            .id_hash_key([0x5a; 32])
            .build()
            .expect("a manager with a keyed ID hash")
    })
    .await;
    control_unhashed_dump_leaks(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_dump_holds_no_ticket_redis() {
    let url = redis_url();
    if let Err(err) = RedisStore::standalone(&url, RedisConfig::new().prefix(random_prefix())).await
    {
        return sessionkit_testkit::skip(&format!("redis at {url}"), err).unwrap_or(());
    }
    check(&Target {
        nodes: vec![url],
        cluster: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_dump_holds_no_ticket_redis_cluster() {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    let Some(cluster) = CLUSTER
        .get_or_init(|| have_redis_binaries().then(Cluster::start))
        .as_ref()
    else {
        return;
    };
    check(&Target {
        nodes: cluster.urls(),
        cluster: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_dump_holds_no_ticket_valkey() {
    let Some(bins) = common::valkey_binaries() else {
        return;
    };
    let server = RedisServer::start_with(&bins, "valkey-at-rest", &[]);
    check(&Target {
        nodes: vec![server.url()],
        cluster: false,
    })
    .await;
}
