//! The kit checks itself: a direct, obviously correct store passes the whole
//! suite, and stores with typical bugs are caught by the model-based test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sessionkit_core::{Error, Record, Result, SessionId, SessionStore, Timestamp, async_trait};

/// Deliberate bugs for the negative tests.
#[derive(Clone, Copy, Default, PartialEq)]
enum Bug {
    #[default]
    None,
    /// `save` ignores the version (last writer wins).
    NoCas,
    /// `delete_subject` also removes records without subject.
    GreedyDeleteSubject,
    /// `compare_and_delete` checks the version, yields, then deletes: not
    /// atomic.
    RacyCompareAndDelete,
}

#[derive(Clone, Default)]
struct ReferenceStore {
    records: Arc<Mutex<HashMap<SessionId, Record>>>,
    bug: Bug,
}

impl ReferenceStore {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SessionId, Record>) -> R) -> R {
        let mut map = self.records.lock().unwrap();
        let now = Timestamp::now();
        map.retain(|_, r| r.is_live(now));
        f(&mut map)
    }
}

#[async_trait]
impl SessionStore for ReferenceStore {
    async fn create(&self, record: &Record) -> Result<()> {
        self.with(|m| {
            if m.contains_key(&record.id) {
                return Err(Error::Conflict);
            }
            m.insert(record.id, record.clone());
            Ok(())
        })
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.with(|m| Ok(m.get(id).cloned()))
    }
    async fn save(&self, record: &Record) -> Result<u64> {
        let bug = self.bug;
        self.with(|m| {
            let stored = m.get_mut(&record.id).ok_or(Error::NotFound)?;
            if stored.version != record.version && bug != Bug::NoCas {
                return Err(Error::Conflict);
            }
            let version = stored.version + 1;
            *stored = Record {
                version,
                ..record.clone()
            };
            Ok(version)
        })
    }
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        self.with(|m| {
            m.get_mut(id).ok_or(Error::NotFound)?.expires_at = expires_at;
            Ok(())
        })
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.with(|m| Ok(m.remove(id).is_some()))
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        if self.bug == Bug::RacyCompareAndDelete {
            let stored = self.with(|m| m.get(id).map(|r| r.version));
            match stored {
                None => return Err(Error::NotFound),
                Some(v) if v != version => return Err(Error::Conflict),
                Some(_) => {}
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            self.with(|m| m.remove(id));
            return Ok(());
        }
        self.with(|m| match m.get(id) {
            None => Err(Error::NotFound),
            Some(r) if r.version != version => Err(Error::Conflict),
            Some(_) => {
                m.remove(id);
                Ok(())
            }
        })
    }
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.with(|m| {
            Ok(m.values()
                .filter(|r| r.subject.as_deref() == Some(subject))
                .cloned()
                .collect())
        })
    }
    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        let bug = self.bug;
        self.with(|m| {
            let before = m.len();
            m.retain(|_, r| match r.subject.as_deref() {
                Some(s) => s != subject,
                None => bug != Bug::GreedyDeleteSubject,
            });
            Ok((before - m.len()) as u64)
        })
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
    async fn scan(
        &self,
        cursor: Option<&sessionkit_core::ScanCursor>,
        limit: usize,
    ) -> Result<sessionkit_core::ScanPage> {
        let after = cursor.map(|c| SessionId::parse(c.as_str())).transpose()?;
        self.with(|m| {
            let mut ids: Vec<SessionId> = m
                .keys()
                .copied()
                .filter(|id| after.is_none_or(|a| *id > a))
                .collect();
            ids.sort();
            let page: Vec<Record> = ids.iter().take(limit).map(|id| m[id].clone()).collect();
            let next = (ids.len() > limit)
                .then(|| {
                    page.last()
                        .map(|r| sessionkit_core::ScanCursor::new(r.id.as_str()))
                })
                .flatten();
            Ok(sessionkit_core::ScanPage::new(page, next))
        })
    }
}

async fn reference() -> Option<ReferenceStore> {
    Some(ReferenceStore::default())
}

sessionkit_testkit::conformance_suite!(reference);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "model-based test failed")]
async fn model_catches_missing_cas() {
    sessionkit_testkit::model_based(|| async {
        Some(ReferenceStore {
            bug: Bug::NoCas,
            ..Default::default()
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "model-based test failed")]
async fn model_catches_greedy_delete_subject() {
    sessionkit_testkit::model_based(|| async {
        Some(ReferenceStore {
            bug: Bug::GreedyDeleteSubject,
            ..Default::default()
        })
    })
    .await;
}

#[tokio::test]
async fn skipped_factory_returns_early() {
    if sessionkit_testkit::services_required() {
        return;
    }
    sessionkit_testkit::model_based(|| async {
        sessionkit_testkit::skip::<ReferenceStore>("nothing", "test of skip")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_over_one_backend_lose_nothing() {
    let shared = ReferenceStore::default();
    let report = sessionkit_testkit::concurrent_updates_two_instances(shared.clone(), shared).await;
    assert_eq!(
        report.final_value,
        sessionkit_testkit::TASKS * sessionkit_testkit::INCREMENTS
    );
    assert_eq!(report.successful_updates, report.final_value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[should_panic(expected = "forked or lost the session")]
async fn interleavings_catch_a_racy_compare_and_delete() {
    let store = ReferenceStore {
        bug: Bug::RacyCompareAndDelete,
        ..Default::default()
    };
    sessionkit_testkit::interleavings::concurrent_rotations_never_fork(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[should_panic(expected = "model-based test failed")]
async fn model_catches_a_version_blind_compare_and_delete() {
    /// Deletes whatever the version: the rotation-resurrection bug.
    #[derive(Clone, Default)]
    struct Blind(ReferenceStore);
    #[async_trait]
    impl SessionStore for Blind {
        async fn create(&self, r: &Record) -> Result<()> {
            self.0.create(r).await
        }
        async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
            self.0.load(id).await
        }
        async fn save(&self, r: &Record) -> Result<u64> {
            self.0.save(r).await
        }
        async fn touch(&self, id: &SessionId, t: Timestamp) -> Result<()> {
            self.0.touch(id, t).await
        }
        async fn delete(&self, id: &SessionId) -> Result<bool> {
            self.0.delete(id).await
        }
        async fn compare_and_delete(&self, id: &SessionId, _: u64) -> Result<()> {
            match self.0.delete(id).await? {
                true => Ok(()),
                false => Err(Error::NotFound),
            }
        }
        async fn list_subject(&self, s: &str) -> Result<Vec<Record>> {
            self.0.list_subject(s).await
        }
        async fn delete_subject(&self, s: &str) -> Result<u64> {
            self.0.delete_subject(s).await
        }
        async fn delete_expired(&self) -> Result<u64> {
            Ok(0)
        }
    }
    sessionkit_testkit::model_based(|| async { Some(Blind::default()) }).await;
}
