//! One async function per rule of the [`SessionStore`] contract.
//!
//! Each function takes any store, panics with a message naming the broken
//! rule when the store does not follow it, and returns normally otherwise.
//! Every case works on fresh random IDs and on subjects no other case uses,
//! so all cases may run at the same time against one shared backend.
//!
//! Cases that need a record to expire use an expiry of
//! [`SHORT_TTL`] and wait until that instant has passed on the wall clock;
//! stores keep millisecond precision, so no case waits much longer than a
//! second.
//!
//! ```
//! # async fn demo(store: &impl sessionkit_core::SessionStore) {
//! sessionkit_testkit::cases::save_stale_version_conflicts(store).await;
//! # }
//! ```

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};

/// Lifetime of records that must stay live for the whole case.
pub const LONG_TTL: Duration = Duration::from_secs(3600);
/// Lifetime of records that a case lets expire.
pub const SHORT_TTL: Duration = Duration::from_millis(400);
/// How long past an expiry instant a case waits before it relies on the
/// record being expired.
const EXPIRY_MARGIN: Duration = Duration::from_millis(150);

/// A subject that no other case, test or process uses: `tk-{tag}-` and 16
/// random characters.
///
/// ```
/// let a = sessionkit_testkit::cases::unique_subject("x");
/// let b = sessionkit_testkit::cases::unique_subject("x");
/// assert_ne!(a, b);
/// assert!(sessionkit_core::validate_subject(&a).is_ok());
/// ```
pub fn unique_subject(tag: &str) -> String {
    format!("tk-{tag}-{}", &SessionId::generate().as_str()[..16])
}

/// A fresh version-1 record with a random ID, created now, expiring after
/// `ttl`.
pub fn fresh_record(subject: Option<&str>, payload: impl Into<Bytes>, ttl: Duration) -> Record {
    let now = Timestamp::now();
    Record::new(
        SessionId::generate(),
        subject.map(str::to_owned),
        payload,
        now,
        now + ttl,
    )
}

/// Waits until the wall clock is past `instant` (plus a small margin).
pub async fn wait_until_past(instant: Timestamp) {
    let target = instant + EXPIRY_MARGIN;
    // Bounded: every iteration sleeps at least the remaining time.
    for _ in 0..100 {
        let now = Timestamp::now();
        if now > target {
            return;
        }
        tokio::time::sleep(target.remaining_from(now) + Duration::from_millis(5)).await;
    }
    panic!("the wall clock did not pass {instant:?}");
}

fn by_id(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by_key(|a| a.id);
    records
}

async fn must_create<S: SessionStore + ?Sized>(store: &S, record: &Record) {
    if let Err(e) = store.create(record).await {
        panic!("create of a fresh record failed: {e:?}");
    }
}

async fn must_load<S: SessionStore + ?Sized>(store: &S, id: &SessionId) -> Option<Record> {
    match store.load(id).await {
        Ok(found) => found,
        Err(e) => panic!("load failed: {e:?}"),
    }
}

/// Checks right after `create` that a short-lived record is visible, unless
/// the machine was so slow that it has already expired.
async fn expect_live_unless_late<S: SessionStore + ?Sized>(store: &S, record: &Record) {
    let loaded = must_load(store, &record.id).await;
    if loaded.is_none() && Timestamp::now() < record.expires_at {
        panic!("a record was not returned by load before its expiry");
    }
    if let Some(loaded) = loaded {
        assert_eq!(&loaded, record, "load returned a different record");
    }
}

/// `create` then `load` returns exactly the record written, every field
/// (subject, payload, version 1, created_at, expires_at to the millisecond).
pub async fn create_then_load_round_trips<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("roundtrip");
    let record = fresh_record(Some(&subject), &b"hello \x00\xff world"[..], LONG_TTL);
    must_create(store, &record).await;
    assert_eq!(
        must_load(store, &record.id).await.as_ref(),
        Some(&record),
        "load must return exactly what create wrote"
    );
    let without_subject = fresh_record(None, &b"anonymous"[..], LONG_TTL);
    must_create(store, &without_subject).await;
    assert_eq!(
        must_load(store, &without_subject.id).await.as_ref(),
        Some(&without_subject),
        "a record without subject must round-trip"
    );
}

/// `create` with the ID of a live record is `Conflict` and never overwrites
/// it.
pub async fn create_conflicts_on_live_id<S: SessionStore + ?Sized>(store: &S) {
    let record = fresh_record(Some(&unique_subject("conflict")), &b"first"[..], LONG_TTL);
    must_create(store, &record).await;
    let mut other = record.clone();
    other.payload = Bytes::from_static(b"second");
    other.subject = Some(unique_subject("conflict-other"));
    match store.create(&other).await {
        Err(Error::Conflict) => {}
        other => panic!("create over a live id must be Err(Conflict), got {other:?}"),
    }
    assert_eq!(
        must_load(store, &record.id).await.as_ref(),
        Some(&record),
        "a conflicting create must not change the live record"
    );
}

/// An expired record never blocks `create`: the new record replaces it.
pub async fn create_replaces_expired_id<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("replace");
    let old = fresh_record(Some(&subject), &b"old"[..], SHORT_TTL);
    must_create(store, &old).await;
    wait_until_past(old.expires_at).await;
    let now = Timestamp::now();
    let new = Record::new(
        old.id,
        Some(subject.clone()),
        &b"new"[..],
        now,
        now + LONG_TTL,
    );
    if let Err(e) = store.create(&new).await {
        panic!("create over an expired record must succeed, got {e:?}");
    }
    assert_eq!(
        must_load(store, &new.id).await.as_ref(),
        Some(&new),
        "the new record must replace the expired one, at version 1"
    );
    let listed = store.list_subject(&subject).await.expect("list_subject");
    assert_eq!(
        listed,
        vec![new],
        "list_subject must show only the new record"
    );
}

/// `load` of an ID that was never stored is `None`.
pub async fn load_absent_is_none<S: SessionStore + ?Sized>(store: &S) {
    assert_eq!(
        must_load(store, &SessionId::generate()).await,
        None,
        "load of an absent id must be None"
    );
}

/// `load` never returns an expired record, and neither does `list_subject`.
pub async fn load_expired_is_none<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("expired");
    let record = fresh_record(Some(&subject), &b"short"[..], SHORT_TTL);
    must_create(store, &record).await;
    expect_live_unless_late(store, &record).await;
    wait_until_past(record.expires_at).await;
    assert_eq!(
        must_load(store, &record.id).await,
        None,
        "load must never return an expired record"
    );
    assert!(
        store
            .list_subject(&subject)
            .await
            .expect("list_subject")
            .is_empty(),
        "list_subject must never return an expired record"
    );
}

/// A `save` with the stored version succeeds, returns version + 1 and
/// stores it; the next save must carry the new version.
pub async fn save_cas_success_bumps_version<S: SessionStore + ?Sized>(store: &S) {
    let mut record = fresh_record(Some(&unique_subject("cas")), &b"v1"[..], LONG_TTL);
    must_create(store, &record).await;
    for expected in 2..=4u64 {
        record.payload = Bytes::from(format!("v{expected}"));
        let stored = match store.save(&record).await {
            Ok(v) => v,
            Err(e) => panic!("save with the current version must succeed, got {e:?}"),
        };
        assert_eq!(stored, expected, "save must return the stored version + 1");
        let loaded = must_load(store, &record.id)
            .await
            .expect("saved record is live");
        assert_eq!(loaded.version, expected, "save must store version + 1");
        assert_eq!(
            loaded.payload, record.payload,
            "save must store the payload"
        );
        record.version = stored;
    }
}

/// A `save` with any other version than the stored one is `Conflict` and
/// changes nothing.
pub async fn save_stale_version_conflicts<S: SessionStore + ?Sized>(store: &S) {
    let mut record = fresh_record(Some(&unique_subject("stale")), &b"v1"[..], LONG_TTL);
    must_create(store, &record).await;
    let stale = record.clone();
    record.payload = Bytes::from_static(b"v2");
    record.version = store.save(&record).await.expect("first save");
    let current = must_load(store, &record.id).await.expect("live");
    for version in [0, 1, 3, 99, u64::MAX] {
        let mut attempt = stale.clone();
        attempt.version = version;
        attempt.payload = Bytes::from_static(b"lost update");
        match store.save(&attempt).await {
            Err(Error::Conflict) => {}
            other => panic!(
                "save with version {version} over stored version 2 must be Err(Conflict), got {other:?}"
            ),
        }
    }
    assert_eq!(
        must_load(store, &record.id).await,
        Some(current),
        "a conflicting save must change nothing"
    );
}

/// A `save` of a record that does not exist is `NotFound`, and does not
/// create it.
pub async fn save_missing_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    let record = fresh_record(Some(&unique_subject("missing")), &b"ghost"[..], LONG_TTL);
    match store.save(&record).await {
        Err(Error::NotFound) => {}
        other => panic!("save of a missing record must be Err(NotFound), got {other:?}"),
    }
    assert_eq!(
        must_load(store, &record.id).await,
        None,
        "save must never create a record"
    );
}

/// A `save` of an expired record is `NotFound` and does not bring it back.
pub async fn save_expired_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    let mut record = fresh_record(Some(&unique_subject("save-exp")), &b"short"[..], SHORT_TTL);
    must_create(store, &record).await;
    wait_until_past(record.expires_at).await;
    record.expires_at = Timestamp::now() + LONG_TTL;
    match store.save(&record).await {
        Err(Error::NotFound) => {}
        other => panic!("save of an expired record must be Err(NotFound), got {other:?}"),
    }
    assert_eq!(
        must_load(store, &record.id).await,
        None,
        "save must never revive an expired record"
    );
}

/// `save` writes every field but the ID: payload, subject (as seen by
/// `list_subject`), created_at and expires_at.
pub async fn save_writes_every_field<S: SessionStore + ?Sized>(store: &S) {
    let first = unique_subject("fields-a");
    let second = unique_subject("fields-b");
    let mut record = fresh_record(Some(&first), &b"before"[..], LONG_TTL);
    must_create(store, &record).await;

    record.subject = Some(second.clone());
    record.payload = Bytes::from_static(b"after \x00 all");
    record.created_at = record.created_at - Duration::from_secs(5);
    record.expires_at = record.expires_at + Duration::from_millis(12_345);
    record.version = store.save(&record).await.expect("save");
    assert_eq!(record.version, 2);
    assert_eq!(
        must_load(store, &record.id).await.as_ref(),
        Some(&record),
        "save must write payload, subject, created_at and expires_at"
    );
    assert!(
        store.list_subject(&first).await.expect("list").is_empty(),
        "after a subject change the record must leave the old subject's list"
    );
    assert_eq!(
        store.list_subject(&second).await.expect("list"),
        vec![record.clone()],
        "after a subject change the record must be listed under the new subject"
    );

    record.subject = None;
    record.version = store.save(&record).await.expect("save");
    assert_eq!(must_load(store, &record.id).await.as_ref(), Some(&record));
    assert!(
        store.list_subject(&second).await.expect("list").is_empty(),
        "a record saved without subject must not be listed"
    );

    record.subject = Some(first.clone());
    record.version = store.save(&record).await.expect("save");
    assert_eq!(
        store.list_subject(&first).await.expect("list"),
        vec![record.clone()],
        "a record given a subject again must be listed under it"
    );
}

/// `touch` moves `expires_at` later and earlier without changing payload
/// or version; a record touched to a near instant expires then.
pub async fn touch_moves_expiry<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("touch");
    let record = fresh_record(Some(&subject), &b"keep me"[..], LONG_TTL);
    must_create(store, &record).await;
    for expires_at in [
        record.expires_at + Duration::from_secs(3600),
        record.expires_at - Duration::from_secs(1800),
    ] {
        store
            .touch(&record.id, expires_at)
            .await
            .expect("touch of a live record");
        let mut expected = record.clone();
        expected.expires_at = expires_at;
        assert_eq!(
            must_load(store, &record.id).await,
            Some(expected),
            "touch must move expires_at and change nothing else"
        );
    }
    let soon = Timestamp::now() + SHORT_TTL;
    store.touch(&record.id, soon).await.expect("touch");
    wait_until_past(soon).await;
    assert_eq!(
        must_load(store, &record.id).await,
        None,
        "a record touched to an earlier instant must expire then"
    );
    assert!(store.list_subject(&subject).await.expect("list").is_empty());
}

/// `touch` of a missing or expired record is `NotFound` and creates nothing.
pub async fn touch_missing_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    let id = SessionId::generate();
    match store.touch(&id, Timestamp::now() + LONG_TTL).await {
        Err(Error::NotFound) => {}
        other => panic!("touch of a missing record must be Err(NotFound), got {other:?}"),
    }
    assert_eq!(must_load(store, &id).await, None, "touch must never create");

    let record = fresh_record(None, &b"short"[..], SHORT_TTL);
    must_create(store, &record).await;
    wait_until_past(record.expires_at).await;
    match store.touch(&record.id, Timestamp::now() + LONG_TTL).await {
        Err(Error::NotFound) => {}
        other => panic!("touch of an expired record must be Err(NotFound), got {other:?}"),
    }
    assert_eq!(
        must_load(store, &record.id).await,
        None,
        "touch must never revive an expired record"
    );
}

/// `delete` reports `true` once for a live record and `false` afterwards,
/// for an ID never stored and for an expired record.
pub async fn delete_is_idempotent<S: SessionStore + ?Sized>(store: &S) {
    let record = fresh_record(Some(&unique_subject("delete")), &b"bye"[..], LONG_TTL);
    must_create(store, &record).await;
    assert!(
        store.delete(&record.id).await.expect("delete"),
        "delete of a live record must report true"
    );
    assert_eq!(must_load(store, &record.id).await, None);
    assert!(
        !store.delete(&record.id).await.expect("second delete"),
        "a second delete must succeed and report false"
    );
    assert!(
        !store.delete(&SessionId::generate()).await.expect("delete"),
        "delete of an absent id must succeed and report false"
    );
    let short = fresh_record(None, &b"short"[..], SHORT_TTL);
    must_create(store, &short).await;
    wait_until_past(short.expires_at).await;
    assert!(
        !store.delete(&short.id).await.expect("delete"),
        "delete of an expired record must report false"
    );
}

/// `compare_and_delete` of the stored version removes the record: it no
/// longer loads, is no longer listed for its subject, and its ID can be
/// created again.
pub async fn compare_and_delete_current_version_removes<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("cad");
    let record = fresh_record(Some(&subject), &b"bye"[..], LONG_TTL);
    must_create(store, &record).await;
    let mut saved = record.clone();
    saved.payload = Bytes::from_static(b"saved");
    let version = store.save(&saved).await.expect("save");
    if let Err(e) = store.compare_and_delete(&record.id, version).await {
        panic!("compare_and_delete of the stored version must succeed, got {e:?}");
    }
    assert_eq!(
        must_load(store, &record.id).await,
        None,
        "compare_and_delete must remove the record"
    );
    assert!(
        store
            .list_subject(&subject)
            .await
            .expect("list_subject")
            .is_empty(),
        "compare_and_delete must remove the record from its subject's list"
    );
    match store.compare_and_delete(&record.id, version).await {
        Err(Error::NotFound) => {}
        other => panic!("a second compare_and_delete must be Err(NotFound), got {other:?}"),
    }
    must_create(store, &record).await;
}

/// `compare_and_delete` of a version that is not the stored one is
/// `Conflict` and removes nothing (older and newer versions alike).
pub async fn compare_and_delete_stale_version_conflicts<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("cad-stale");
    let record = fresh_record(Some(&subject), &b"keep"[..], LONG_TTL);
    must_create(store, &record).await;
    let version = store.save(&record).await.expect("save");
    for stale in [version - 1, version + 1] {
        match store.compare_and_delete(&record.id, stale).await {
            Err(Error::Conflict) => {}
            other => panic!(
                "compare_and_delete of version {stale} when {version} is stored must be Err(Conflict), got {other:?}"
            ),
        }
    }
    let loaded = must_load(store, &record.id)
        .await
        .expect("a conflicting compare_and_delete must remove nothing");
    assert_eq!(loaded.version, version);
    assert_eq!(
        store
            .list_subject(&subject)
            .await
            .expect("list_subject")
            .len(),
        1
    );
}

/// `compare_and_delete` of an ID never stored, or of an expired record, is
/// `NotFound`.
pub async fn compare_and_delete_missing_is_not_found<S: SessionStore + ?Sized>(store: &S) {
    match store.compare_and_delete(&SessionId::generate(), 1).await {
        Err(Error::NotFound) => {}
        other => panic!("compare_and_delete of an absent id must be Err(NotFound), got {other:?}"),
    }
    let short = fresh_record(None, &b"short"[..], SHORT_TTL);
    must_create(store, &short).await;
    wait_until_past(short.expires_at).await;
    match store.compare_and_delete(&short.id, 1).await {
        Err(Error::NotFound) => {}
        other => {
            panic!("compare_and_delete of an expired record must be Err(NotFound), got {other:?}")
        }
    }
}

/// The policy for a stored record that cannot be read back (corrupted
/// bytes, a row that fails to decode): `load` of it is
/// [`Error::Decode`], `list_subject` skips it and still lists the
/// subject's other sessions, and `delete_subject` removes it too.
///
/// The suite cannot corrupt a record by itself: `corrupt` does it for the
/// backend (overwrite the stored bytes, write a bad column with raw SQL…).
/// Not part of [`conformance_suite!`](crate::conformance_suite); call it
/// from a test of your store:
///
/// ```no_run
/// # async fn demo(store: &impl sessionkit_core::SessionStore) {
/// sessionkit_testkit::cases::corrupt_record_is_skipped_by_list_subject(store, |id| async move {
///     // e.g. `SET <key of id> garbage` on the backend
///     # let _ = id;
/// })
/// .await;
/// # }
/// ```
pub async fn corrupt_record_is_skipped_by_list_subject<S, F, Fut>(store: &S, corrupt: F)
where
    S: SessionStore + ?Sized,
    F: FnOnce(SessionId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let subject = unique_subject("corrupt");
    let good = fresh_record(Some(&subject), &b"good"[..], LONG_TTL);
    let bad = fresh_record(Some(&subject), &b"bad"[..], LONG_TTL);
    must_create(store, &good).await;
    must_create(store, &bad).await;
    corrupt(bad.id).await;
    match store.load(&bad.id).await {
        Err(Error::Decode(_)) => {}
        other => panic!("load of a corrupted record must be Err(Decode), got {other:?}"),
    }
    match store.list_subject(&subject).await {
        Ok(listed) => assert_eq!(
            listed,
            vec![good.clone()],
            "list_subject must skip the corrupted record and list the others"
        ),
        Err(e) => panic!("one corrupted record must not make list_subject fail: {e:?}"),
    }
    store
        .delete_subject(&subject)
        .await
        .expect("delete_subject with a corrupted record");
    assert_eq!(must_load(store, &good.id).await, None);
    match store.load(&bad.id).await {
        Ok(None) => {}
        other => panic!("delete_subject must remove the corrupted record too, got {other:?}"),
    }
}

/// `create` keeps the version it is given (a copy between stores keeps
/// compare-and-swap working): a record created at version 7 loads at 7,
/// saves only from 7, and the save returns 8.
pub async fn create_keeps_the_given_version<S: SessionStore + ?Sized>(store: &S) {
    let mut record = fresh_record(Some(&unique_subject("copy")), &b"copied"[..], LONG_TTL);
    record.version = 7;
    must_create(store, &record).await;
    assert_eq!(
        must_load(store, &record.id).await.map(|r| r.version),
        Some(7),
        "create must keep the given version"
    );
    let mut stale = record.clone();
    stale.version = 1;
    assert!(matches!(store.save(&stale).await, Err(Error::Conflict)));
    assert_eq!(
        store
            .save(&record)
            .await
            .expect("save at the copied version"),
        8
    );
}

/// Every live record is enumerated by `scan`, page by page, with cursors
/// that survive a round trip through their text; expired records never
/// appear; a page never exceeds its limit.
pub async fn scan_enumerates_every_live_record<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("scan");
    let mut live = HashSet::new();
    for i in 0..25 {
        let record = fresh_record(Some(&subject), vec![i as u8], LONG_TTL);
        must_create(store, &record).await;
        live.insert(record.id);
    }
    let short = fresh_record(Some(&subject), &b"short"[..], SHORT_TTL);
    must_create(store, &short).await;
    wait_until_past(short.expires_at).await;
    let mut seen = HashSet::new();
    let mut cursor: Option<sessionkit_core::ScanCursor> = None;
    for _ in 0..1_000_000 {
        let page = match store.scan(cursor.as_ref(), 7).await {
            Ok(page) => page,
            Err(e) => panic!("scan failed: {e:?}"),
        };
        assert!(page.records.len() <= 7, "a scan page exceeded its limit");
        for record in page.records {
            assert!(record.id != short.id, "scan returned an expired record");
            seen.insert(record.id);
        }
        match page.next {
            // Through text, as a resumed copy would.
            Some(next) => cursor = Some(sessionkit_core::ScanCursor::new(next.as_str().to_owned())),
            None => break,
        }
    }
    let missing = live.difference(&seen).count();
    assert_eq!(missing, 0, "scan missed {missing} of 25 live records");
}

/// `list_subject` returns every live record of one subject and nothing of
/// any other subject (nor records without subject).
pub async fn list_subject_returns_only_that_subject<S: SessionStore + ?Sized>(store: &S) {
    let a = unique_subject("list-a");
    let b = unique_subject("list-b");
    let a1 = fresh_record(Some(&a), &b"a1"[..], LONG_TTL);
    let a2 = fresh_record(Some(&a), &b"a2"[..], LONG_TTL);
    let b1 = fresh_record(Some(&b), &b"b1"[..], LONG_TTL);
    let none = fresh_record(None, &b"none"[..], LONG_TTL);
    for r in [&a1, &a2, &b1, &none] {
        must_create(store, r).await;
    }
    assert_eq!(
        by_id(store.list_subject(&a).await.expect("list")),
        by_id(vec![a1.clone(), a2.clone()]),
        "list_subject must return exactly that subject's records"
    );
    assert_eq!(store.list_subject(&b).await.expect("list"), vec![b1]);
    assert!(
        store
            .list_subject(&unique_subject("list-nobody"))
            .await
            .expect("list")
            .is_empty(),
        "an unknown subject has no sessions"
    );
    store.delete(&a1.id).await.expect("delete");
    assert_eq!(
        store.list_subject(&a).await.expect("list"),
        vec![a2],
        "a deleted record must leave its subject's list"
    );
}

/// `delete_subject` removes every live record of one subject, reports how
/// many, and leaves every other record alone.
pub async fn delete_subject_removes_only_that_subject<S: SessionStore + ?Sized>(store: &S) {
    let a = unique_subject("dels-a");
    let b = unique_subject("dels-b");
    let a1 = fresh_record(Some(&a), &b"a1"[..], LONG_TTL);
    let a2 = fresh_record(Some(&a), &b"a2"[..], LONG_TTL);
    let a3 = fresh_record(Some(&a), &b"a3"[..], LONG_TTL);
    let b1 = fresh_record(Some(&b), &b"b1"[..], LONG_TTL);
    let none = fresh_record(None, &b"none"[..], LONG_TTL);
    for r in [&a1, &a2, &a3, &b1, &none] {
        must_create(store, r).await;
    }
    store.delete(&a3.id).await.expect("delete");
    assert_eq!(
        store.delete_subject(&a).await.expect("delete_subject"),
        2,
        "delete_subject must report the live records it removed"
    );
    for r in [&a1, &a2] {
        assert_eq!(
            must_load(store, &r.id).await,
            None,
            "record of the subject survived"
        );
    }
    assert!(store.list_subject(&a).await.expect("list").is_empty());
    assert_eq!(
        must_load(store, &b1.id).await,
        Some(b1.clone()),
        "other subject touched"
    );
    assert_eq!(
        must_load(store, &none.id).await,
        Some(none),
        "subjectless record touched"
    );
    assert_eq!(store.list_subject(&b).await.expect("list"), vec![b1]);
    assert_eq!(
        store.delete_subject(&a).await.expect("delete_subject"),
        0,
        "a second delete_subject must succeed and report 0"
    );
    // A new session of the subject is unaffected by the earlier purge.
    let a4 = fresh_record(Some(&a), &b"a4"[..], LONG_TTL);
    must_create(store, &a4).await;
    assert_eq!(store.list_subject(&a).await.expect("list"), vec![a4]);
}

/// `delete_expired` succeeds; afterwards expired records stay invisible and
/// live ones are untouched. (Stores with native expiry may report 0.)
pub async fn delete_expired_purges_only_expired<S: SessionStore + ?Sized>(store: &S) {
    let subject = unique_subject("purge");
    let live = fresh_record(Some(&subject), &b"live"[..], LONG_TTL);
    let short = fresh_record(Some(&subject), &b"short"[..], SHORT_TTL);
    must_create(store, &live).await;
    must_create(store, &short).await;
    wait_until_past(short.expires_at).await;
    if let Err(e) = store.delete_expired().await {
        panic!("delete_expired failed: {e:?}");
    }
    assert_eq!(
        must_load(store, &short.id).await,
        None,
        "expired record visible"
    );
    assert_eq!(
        must_load(store, &live.id).await,
        Some(live.clone()),
        "delete_expired must not touch live records"
    );
    assert_eq!(
        store.list_subject(&subject).await.expect("list"),
        vec![live]
    );
    // The purged ID is free again.
    let now = Timestamp::now();
    let again = Record::new(short.id, None, &b"again"[..], now, now + LONG_TTL);
    store.create(&again).await.expect("create after purge");
    assert_eq!(must_load(store, &again.id).await, Some(again));
}

/// An empty payload round-trips through create, load and save.
pub async fn payload_empty_round_trips<S: SessionStore + ?Sized>(store: &S) {
    let mut record = fresh_record(None, Bytes::new(), LONG_TTL);
    must_create(store, &record).await;
    let loaded = must_load(store, &record.id).await.expect("live");
    assert!(
        loaded.payload.is_empty(),
        "an empty payload must stay empty"
    );
    assert_eq!(loaded, record);
    record.payload = Bytes::from_static(b"x");
    record.version = store.save(&record).await.expect("save");
    record.payload = Bytes::new();
    record.version = store.save(&record).await.expect("save");
    assert_eq!(must_load(store, &record.id).await, Some(record));
}

/// A 1 MiB payload of every byte value (not UTF-8) round-trips byte-exact
/// through create, load and save.
pub async fn payload_1mib_round_trips_byte_exact<S: SessionStore + ?Sized>(store: &S) {
    const MIB: usize = 1 << 20;
    // A deterministic, non-periodic byte pattern (xorshift) with every
    // byte value, including 0x00 and invalid UTF-8 sequences.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let payload: Vec<u8> = (0..MIB)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut record = fresh_record(None, payload.clone(), LONG_TTL);
    must_create(store, &record).await;
    let loaded = must_load(store, &record.id).await.expect("live");
    assert_eq!(loaded.payload.len(), MIB, "1 MiB payload changed length");
    assert!(
        loaded.payload[..] == payload[..],
        "1 MiB payload changed content"
    );
    let mut reversed = payload;
    reversed.reverse();
    record.payload = Bytes::from(reversed);
    record.version = store.save(&record).await.expect("save");
    let loaded = must_load(store, &record.id).await.expect("live");
    assert!(
        loaded.payload == record.payload,
        "saved 1 MiB payload changed"
    );
    store.delete(&record.id).await.expect("delete");
}

/// 100,000 generated IDs are pairwise distinct and each parses back to
/// itself; a sample of them is stored and loaded under its own ID.
pub async fn ids_100k_distinct<S: SessionStore + ?Sized>(store: &S) {
    let mut seen = HashSet::with_capacity(100_000);
    for _ in 0..100_000 {
        let id = SessionId::generate();
        assert_eq!(SessionId::parse(id.as_str()).ok(), Some(id));
        assert!(seen.insert(id), "SessionId::generate repeated an id");
    }
    let sample: Vec<Record> = seen
        .iter()
        .take(20)
        .map(|id| {
            let now = Timestamp::now();
            Record::new(
                *id,
                None,
                Bytes::from(id.as_str().to_owned()),
                now,
                now + LONG_TTL,
            )
        })
        .collect();
    for r in &sample {
        must_create(store, r).await;
    }
    for r in &sample {
        assert_eq!(must_load(store, &r.id).await.as_ref(), Some(r));
        store.delete(&r.id).await.expect("delete");
    }
}

/// Subjects compare byte for byte: subjects that differ only in letter
/// case or in trailing spaces are different subjects for `list_subject`
/// and `delete_subject` (a SQL collation that folds case or pads spaces
/// breaks this).
pub async fn subjects_compare_exactly<S: SessionStore + ?Sized>(store: &S) {
    let base = unique_subject("exact");
    let variants = [
        base.clone(),
        base.to_uppercase(),
        format!("{base} "),
        format!("{base}\u{e9}"),
    ];
    let records: Vec<Record> = variants
        .iter()
        .map(|s| fresh_record(Some(s), s.clone().into_bytes(), LONG_TTL))
        .collect();
    for r in &records {
        must_create(store, r).await;
    }
    for (subject, record) in variants.iter().zip(&records) {
        assert_eq!(
            store.list_subject(subject).await.expect("list"),
            vec![record.clone()],
            "list_subject({subject:?}) must return exactly the record of that exact subject"
        );
    }
    assert_eq!(
        store
            .delete_subject(&variants[0])
            .await
            .expect("delete_subject"),
        1,
        "delete_subject must remove only the record of the exact subject"
    );
    for (subject, record) in variants.iter().zip(&records).skip(1) {
        assert_eq!(
            must_load(store, &record.id).await.as_ref(),
            Some(record),
            "delete_subject removed the record of subject {subject:?}"
        );
    }
}
