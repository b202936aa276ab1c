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
    bad_len.extend_from_slice(&[1, 0x00, 0xf0, b'c']);
    bad_flag.extend_from_slice(&[9, 0, 1, b'c']);
    for garbage in [
        &b""[..],
        b"garbage",
        b"S\x01short",
        &[0xffu8; 64][..],
        &bad_len[..],
        &bad_flag[..],
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
        // Listing skips it instead of failing the whole subject.
        assert!(store.list_subject("carol").await.unwrap().is_empty());
    }
    assert!(
        store.delete(&r.id).await.unwrap(),
        "a corrupted value can be deleted"
    );
    assert_eq!(store.load(&r.id).await.unwrap(), None);
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
    assert_eq!(score, Some(later.as_millis() as f64));
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
        .arg(&erin)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(pexpiretime, later.as_millis());

    // An entry scored below its session's expiry (as after a touch whose
    // index update was lost) is raised again by the next listing.
    let _: () = c.zadd(&erin, moved.id.as_str(), 1_000).await.unwrap();
    assert_eq!(store.list_subject("erin").await.unwrap().len(), 1);
    let score: Option<f64> = c.zscore(&erin, moved.id.as_str()).await.unwrap();
    assert_eq!(score, Some(later.as_millis() as f64));

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
