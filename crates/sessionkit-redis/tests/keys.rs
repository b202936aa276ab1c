//! Key hygiene and self-healing: hostile IDs never reach a command, hostile
//! subjects never shape a key, corrupted values are `Error::Decode`, and the
//! subject index repairs itself on read.

mod common;

use std::time::Duration;

use common::{redis_url, shared_store};
use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};
use sessionkit_redis::RedisStore;
use sessionkit_redis::redis::{self, AsyncCommands as _};

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys_of(store: &RedisStore) -> Vec<String> {
    let mut c = raw().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", store.prefix()))
        .query_async(&mut c)
        .await
        .unwrap();
    keys.sort();
    keys
}

/// A session's subject-index score: its expiry rounded up to the next
/// whole minute (see the crate documentation).
fn index_score(expires_at: Timestamp) -> i64 {
    let ms = expires_at.as_millis();
    ms.div_euclid(60_000) * 60_000
        + if ms.rem_euclid(60_000) == 0 {
            0
        } else {
            60_000
        }
}

fn record(subject: Option<&str>) -> Record {
    let now = Timestamp::now();
    Record::new(
        SessionId::generate(),
        subject.map(str::to_owned),
        b"p".to_vec(),
        now,
        now + Duration::from_secs(600),
    )
}

/// Every store method takes a `&SessionId`, and the only ways to get one
/// are `SessionId::generate`, `SessionId::from_bytes` (16 raw bytes) and the
/// strict `SessionId::parse`: hostile text is refused before any command
/// exists.
#[test]
fn hostile_ids_are_refused_by_parse() {
    let ten_kb = "A".repeat(10 * 1024);
    let hostile = [
        "",
        " ",
        "*",
        "\n",
        "{}",
        "AAAAAAAAAAAAAAAAAAAA A",
        "AAAAAAAAAAAAAAAAAAAA*A",
        "AAAAAAAAAAAAAAAAAAAA\nA",
        "AAAAAAAAAAAAAAAAAAA{}A",
        "AAAAAAAAAAAAAAAAAAAAA\r",
        "AAAAAAAAAAAAAAAAAAA}:*",
        "AAAAAAAAAAAAAAAAAAAAAA\r\n*1\r\n$8\r\nFLUSHALL",
        "{AAAAAAAAAAAAAAAAAAAAAA}",
        "AAAAAAAAAAAAAAAAAAAAA\u{0}",
        ten_kb.as_str(),
    ];
    for text in hostile {
        assert!(
            matches!(SessionId::parse(text), Err(Error::InvalidId)),
            "{:?} must be refused",
            &text[..text.len().min(40)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_subjects_never_shape_a_key() {
    let Some(store) = shared_store().await else {
        return;
    };
    let long = "ü".repeat(128); // 256 bytes, the maximum
    let subjects = [
        "a b",
        "*",
        "{}",
        "}{",
        "user:{42}",
        "a*b?c[d]",
        "../../etc",
        "\u{202e}rtl",
        "%s%n",
        long.as_str(),
    ];
    let mut ids = Vec::new();
    for s in subjects {
        let r = record(Some(s));
        store
            .create(&r)
            .await
            .expect("create with an odd but valid subject");
        ids.push(r.id);
        let listed = store.list_subject(s).await.unwrap();
        assert_eq!(listed.len(), 1, "{s:?}");
        assert_eq!(listed[0].subject.as_deref(), Some(s));
    }
    // Control characters and oversized subjects are refused before any
    // command; nothing is written.
    for bad in [
        "a\nb",
        "\r\n*1\r\n$8\r\nFLUSHALL\r\n",
        "\u{0}",
        &"x".repeat(10 * 1024),
    ] {
        let r = record(Some(bad));
        assert!(matches!(store.create(&r).await, Err(Error::InvalidSubject)));
        assert!(matches!(store.save(&r).await, Err(Error::InvalidSubject)));
        assert!(matches!(
            store.list_subject(bad).await,
            Err(Error::InvalidSubject)
        ));
        assert!(matches!(
            store.delete_subject(bad).await,
            Err(Error::InvalidSubject)
        ));
    }

    let keys = keys_of(&store).await;
    assert_eq!(keys.len(), 2 * subjects.len(), "{keys:#?}");
    let p = store.prefix();
    for key in &keys {
        let rest = key.strip_prefix(p).expect("every key has the prefix");
        let ok_session = rest
            .strip_prefix(":s:{")
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(|id| SessionId::parse(id).is_ok());
        let ok_index = rest
            .strip_prefix(":u:{")
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ok_session || ok_index, "unexpected key shape: {key:?}");
    }
    for id in &ids {
        assert!(keys.contains(&store.session_key(id)));
    }
    for s in subjects {
        assert_eq!(store.delete_subject(s).await.unwrap(), 1);
    }
    assert!(keys_of(&store).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_values_are_decode_errors() {
    let Some(store) = shared_store().await else {
        return;
    };
    let mut c = raw().await;
    let r = record(Some("carol"));
    store.create(&r).await.unwrap();
    let key = store.session_key(&r.id);
    // Right magic and version, but a subject length past the end or an
    // unknown flag: refused before anything is written.
    let mut bad_len = vec![b'S', 1];
    bad_len.extend_from_slice(&r.version.to_be_bytes());
    bad_len.extend_from_slice(&[0x7f; 16]);
    let mut bad_flag = bad_len.clone();
    let mut no_flag = bad_len.clone();
    let mut bad_utf8 = bad_len.clone();
    let mut overlong = bad_len.clone();
    let mut surrogate = bad_len.clone();
    bad_len.extend_from_slice(&[1, 0x00, 0xf0, b'c']);
    bad_flag.extend_from_slice(&[9, 0, 1, b'c']);
    // What only the codec's finer checks refuse: a subject length without
    // the subject flag, and subjects that are not UTF-8 (a stray byte, an
    // overlong '/', a surrogate). The scripts must refuse them too.
    no_flag.extend_from_slice(&[0, 0, 1, b'c']);
    bad_utf8.extend_from_slice(&[1, 0, 3, b'c', 0xff, b'c']);
    overlong.extend_from_slice(&[1, 0, 2, 0xc0, 0xaf]);
    surrogate.extend_from_slice(&[1, 0, 3, 0xed, 0xa0, 0x80]);
    for garbage in [
        &b""[..],
        b"garbage",
        b"S\x01short",
        &[0xffu8; 64][..],
        &bad_len[..],
        &bad_flag[..],
        &no_flag[..],
        &bad_utf8[..],
        &overlong[..],
        &surrogate[..],
    ] {
        let _: () = c.set_ex(&key, garbage, 60).await.unwrap();
        assert!(
            matches!(store.load(&r.id).await, Err(Error::Decode(_))),
            "{garbage:?}"
        );
        assert!(
            matches!(store.save(&r).await, Err(Error::Decode(_))),
            "{garbage:?}"
        );
        let stored: Vec<u8> = c.get(&key).await.unwrap();
        assert_eq!(stored, garbage, "a refused save leaves the value as it was");
        assert!(
            matches!(
                store
                    .touch(&r.id, Timestamp::now() + Duration::from_secs(60))
                    .await,
                Err(Error::Decode(_))
            ),
            "{garbage:?}"
        );
        let stored: Vec<u8> = c.get(&key).await.unwrap();
        assert_eq!(
            stored, garbage,
            "a refused touch leaves the value as it was"
        );
        assert!(
            matches!(
                store.compare_and_delete(&r.id, r.version).await,
                Err(Error::Decode(_))
            ),
            "{garbage:?}"
        );
        let stored: Vec<u8> = c.get(&key).await.unwrap();
        assert_eq!(
            stored, garbage,
            "a refused compare_and_delete leaves the value as it was"
        );
        // Listing skips it instead of failing the whole subject.
        assert!(store.list_subject("carol").await.unwrap().is_empty());
    }
    assert!(
        store.delete(&r.id).await.unwrap(),
        "a corrupted value can be deleted"
    );
    assert_eq!(store.load(&r.id).await.unwrap(), None);
}

/// The corrupt-record policy around a subject: `list_subject` skips a
/// corrupted value (and still lists the subject's good sessions),
/// `delete_subject` removes it (and counts it, as `delete` does), whatever
/// the corruption, while a readable session of another subject that the
/// index still names survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_subject_removes_corrupted_values() {
    let Some(store) = shared_store().await else {
        return;
    };
    let mut c = raw().await;
    let mut not_utf8 = sessionkit_redis::__fuzz::encode_record(&record(Some("hank")), 1).unwrap();
    not_utf8[30] = 0xff; // inside the subject "hank"
    let mut no_flag = not_utf8.clone();
    no_flag[26] = 0;
    for garbage in [&b"garbage"[..], b"", &not_utf8[..], &no_flag[..]] {
        let bad = record(Some("hank"));
        let good = record(Some("hank"));
        let mut moved = record(Some("hank"));
        for r in [&bad, &good, &moved] {
            store.create(r).await.unwrap();
        }
        // `moved` now belongs to "ivan", but hank's index still names it (as
        // after a save whose index cleanup failed).
        moved.subject = Some("ivan".into());
        moved.version = store.save(&moved).await.unwrap();
        let _: () = c
            .zadd(store.subject_index_key("hank"), moved.id.as_str(), 1e15)
            .await
            .unwrap();
        let _: () = c
            .set_ex(store.session_key(&bad.id), garbage, 600)
            .await
            .unwrap();

        assert_eq!(
            store.list_subject("hank").await.unwrap(),
            vec![good.clone()]
        );
        assert_eq!(
            store.delete_subject("hank").await.unwrap(),
            2,
            "{garbage:?}"
        );
        let exists: bool = c.exists(store.session_key(&bad.id)).await.unwrap();
        assert!(!exists, "the corrupted value {garbage:?} was removed");
        assert_eq!(store.load(&good.id).await.unwrap(), None);
        assert_eq!(store.load(&moved.id).await.unwrap(), Some(moved.clone()));
        assert_eq!(store.delete_subject("ivan").await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_delete_removes_only_the_loaded_version() {
    let Some(store) = shared_store().await else {
        return;
    };
    let mut c = raw().await;
    let mut r = record(Some("judy"));
    store.create(&r).await.unwrap();
    r.version = store.save(&r).await.unwrap();
    let index = store.subject_index_key("judy");

    // Another version: Conflict, nothing removed.
    for stale in [1, 3, u64::MAX] {
        assert!(matches!(
            store.compare_and_delete(&r.id, stale).await,
            Err(Error::Conflict)
        ));
    }
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(store.list_subject("judy").await.unwrap(), vec![r.clone()]);
    // Absent: NotFound.
    assert!(matches!(
        store.compare_and_delete(&SessionId::generate(), 1).await,
        Err(Error::NotFound)
    ));
    // The loaded version: removed, from its subject's index too.
    store.compare_and_delete(&r.id, r.version).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    assert!(store.list_subject("judy").await.unwrap().is_empty());
    let score: Option<f64> = c.zscore(&index, r.id.as_str()).await.unwrap();
    assert_eq!(score, None, "the index entry is removed with the session");
    // Once: a second call for the same version finds nothing.
    assert!(matches!(
        store.compare_and_delete(&r.id, r.version).await,
        Err(Error::NotFound)
    ));
    // No subject: nothing to unindex.
    let plain = record(None);
    store.create(&plain).await.unwrap();
    store.compare_and_delete(&plain.id, 1).await.unwrap();
    assert_eq!(store.load(&plain.id).await.unwrap(), None);

    // Expired by the application's clock but still stored (Redis expires it
    // a moment later): NotFound, and it is not deleted.
    let now = Timestamp::now();
    let ending = Record::new(
        SessionId::generate(),
        Some("judy".into()),
        b"x".to_vec(),
        now,
        now + Duration::from_millis(200),
    );
    let value = sessionkit_redis::__fuzz::encode_record(&ending, 1).unwrap();
    let _: () = c
        .set_ex(store.session_key(&ending.id), &value, 60)
        .await
        .unwrap();
    sessionkit_testkit::cases::wait_until_past(ending.expires_at).await;
    assert!(matches!(
        store.compare_and_delete(&ending.id, 1).await,
        Err(Error::NotFound)
    ));
    let stored: Vec<u8> = c.get(store.session_key(&ending.id)).await.unwrap();
    assert_eq!(stored, value, "an expired record is not touched");

    // Concurrent compare-and-deletes of one version: exactly one wins.
    for _ in 0..50 {
        let r = record(Some("judy"));
        store.create(&r).await.unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.compare_and_delete(&r.id, 1).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => wins += 1,
                Err(Error::NotFound) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(wins, 1);
    }
    assert!(store.list_subject("judy").await.unwrap().is_empty());
}

/// Create against delete_subject, step by step. `create` sends the index
/// entry first and the session right after (on a cluster the two may land
/// in either order): whatever a concurrent `delete_subject` or
/// `list_subject` sees in between, afterwards the session is listed exactly
/// when it loads, and a later `delete_subject` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_against_delete_subject_leaks_nothing() {
    let Some(store) = shared_store().await else {
        return;
    };
    let mut c = raw().await;
    let index = store.subject_index_key("kate");
    for entry_first in [true, false] {
        let r = record(Some("kate"));
        let value = sessionkit_redis::__fuzz::encode_record(&r, 1).unwrap();
        let score = r.expires_at.as_millis();
        // Create's first half.
        if entry_first {
            let _: () = c.zadd(&index, r.id.as_str(), score).await.unwrap();
        } else {
            let _: () = c
                .set_ex(store.session_key(&r.id), &value, 600)
                .await
                .unwrap();
        }
        // A log-out-everywhere and a listing run in between: the entry of
        // the session being created is kept (its score is ahead).
        assert_eq!(store.delete_subject("kate").await.unwrap(), 0);
        assert!(store.list_subject("kate").await.unwrap().is_empty());
        if entry_first {
            let kept: Option<f64> = c.zscore(&index, r.id.as_str()).await.unwrap();
            assert_eq!(kept, Some(score as f64), "entry_first: the entry survives");
        }
        // Create's second half; create returns.
        if entry_first {
            let _: () = c
                .set_ex(store.session_key(&r.id), &value, 600)
                .await
                .unwrap();
        } else {
            let _: () = c.zadd(&index, r.id.as_str(), score).await.unwrap();
        }
        assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
        assert_eq!(
            store.list_subject("kate").await.unwrap(),
            vec![r.clone()],
            "entry_first: {entry_first}"
        );
        assert_eq!(store.delete_subject("kate").await.unwrap(), 1);
        assert_eq!(store.load(&r.id).await.unwrap(), None);
    }

    // And for real, repeated: creates racing a delete_subject.
    for _ in 0..100 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let mut creates = Vec::new();
        for _ in 0..3 {
            let (store, barrier) = (store.clone(), barrier.clone());
            creates.push(tokio::spawn(async move {
                let r = record(Some("kate"));
                barrier.wait().await;
                store.create(&r).await.map(|()| r.id)
            }));
        }
        let deleter = {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.delete_subject("kate").await
            })
        };
        let mut ids = Vec::new();
        for t in creates {
            ids.push(t.await.unwrap().unwrap());
        }
        deleter.await.unwrap().unwrap();
        let listed: Vec<SessionId> = store
            .list_subject("kate")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        for id in &ids {
            let loads = store.load(id).await.unwrap().is_some();
            assert_eq!(loads, listed.contains(id), "loads: {loads}");
        }
        assert_eq!(
            store.delete_subject("kate").await.unwrap(),
            listed.len() as u64
        );
        for id in &ids {
            assert_eq!(store.load(id).await.unwrap(), None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_index_heals_itself() {
    let Some(store) = shared_store().await else {
        return;
    };
    let mut c = raw().await;
    let index = store.subject_index_key("dave");

    // A session key lost behind the index's back (an eviction, say): the
    // entry is not listed, and is pruned once its score has passed.
    let now = Timestamp::now();
    let short = Record::new(
        SessionId::generate(),
        Some("dave".into()),
        b"x".to_vec(),
        now,
        now + Duration::from_millis(300),
    );
    let long = record(Some("dave"));
    store.create(&short).await.unwrap();
    store.create(&long).await.unwrap();
    let _: () = c.del(store.session_key(&short.id)).await.unwrap();
    // Index scores are expiries rounded up to the minute; bring this one
    // back to the session's expiry, so that it passes soon.
    let score: Option<f64> = c.zscore(&index, short.id.as_str()).await.unwrap();
    assert_eq!(score, Some(index_score(short.expires_at) as f64));
    let _: () = redis::cmd("ZADD")
        .arg(&index)
        .arg("XX")
        .arg(short.expires_at.as_millis())
        .arg(short.id.as_str())
        .query_async(&mut c)
        .await
        .unwrap();
    let listed = store.list_subject("dave").await.unwrap();
    assert_eq!(listed, vec![long.clone()]);
    let card: u64 = c.zcard(&index).await.unwrap();
    assert_eq!(card, 2, "an entry whose score is still ahead is kept");
    sessionkit_testkit::cases::wait_until_past(short.expires_at).await;
    assert_eq!(
        store.list_subject("dave").await.unwrap(),
        vec![long.clone()]
    );
    let card: u64 = c.zcard(&index).await.unwrap();
    assert_eq!(card, 1, "the stale entry was pruned on read");

    // Moving a session to another subject through save.
    let mut moved = long.clone();
    moved.subject = Some("erin".into());
    moved.version = store.save(&moved).await.unwrap();
    assert!(store.list_subject("dave").await.unwrap().is_empty());
    assert_eq!(
        store.list_subject("erin").await.unwrap(),
        vec![moved.clone()]
    );
    let score: Option<f64> = c.zscore(&index, moved.id.as_str()).await.unwrap();
    assert_eq!(score, None, "the former subject's entry was removed");
    // delete_subject of the former subject leaves it alone.
    assert_eq!(store.delete_subject("dave").await.unwrap(), 0);
    assert!(store.load(&moved.id).await.unwrap().is_some());

    // touch raises the index score, and the index key expires with its
    // latest entry.
    let later = Timestamp::now() + Duration::from_secs(7200);
    store.touch(&moved.id, later).await.unwrap();
    let erin = store.subject_index_key("erin");
    let score: Option<f64> = c.zscore(&erin, moved.id.as_str()).await.unwrap();
    assert_eq!(score, Some(index_score(later) as f64));
    assert!(index_score(later) >= later.as_millis());
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
        .arg(&erin)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(pexpiretime, index_score(later));

    // An entry scored below its session's expiry (as after a touch whose
    // index update was lost) is raised again by the next listing.
    let _: () = c.zadd(&erin, moved.id.as_str(), 1_000).await.unwrap();
    assert_eq!(store.list_subject("erin").await.unwrap().len(), 1);
    let score: Option<f64> = c.zscore(&erin, moved.id.as_str()).await.unwrap();
    assert_eq!(score, Some(index_score(later) as f64));

    assert!(store.delete(&moved.id).await.unwrap());
    let exists: bool = c.exists(&erin).await.unwrap();
    assert!(
        !exists,
        "deleting the last session empties (and so removes) the index"
    );
}

/// A save stages its new value under a key of its own and the script moves
/// it into place: whatever the outcome (written, conflict, not found,
/// corrupted, expired by the save), no staged value is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_leave_no_staged_values_behind() {
    let Some(store) = shared_store().await else {
        return;
    };
    let mut r = record(Some("erin"));
    store.create(&r).await.unwrap();
    r.payload = vec![7u8; 4096].into();
    r.version = store.save(&r).await.unwrap();
    let stale = Record {
        version: r.version - 1,
        ..r.clone()
    };
    assert!(matches!(store.save(&stale).await, Err(Error::Conflict)));
    r.subject = Some("frank".into());
    r.version = store.save(&r).await.unwrap();
    let absent = record(None);
    assert!(matches!(store.save(&absent).await, Err(Error::NotFound)));
    let mut c = raw().await;
    let corrupt = record(None);
    let _: () = c
        .set_ex(store.session_key(&corrupt.id), b"garbage", 60)
        .await
        .unwrap();
    assert!(matches!(store.save(&corrupt).await, Err(Error::Decode(_))));
    let mut ending = r.clone();
    ending.expires_at = Timestamp::now() - Duration::from_secs(1);
    store.save(&ending).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), None);

    let keys = keys_of(&store).await;
    assert!(
        keys.iter().all(|k| !k.contains(":t:")),
        "staged values left behind: {keys:?}"
    );
}
