//! A minimal reference store for examples and tests (feature `test-util`,
//! off by default; a dev-dependency feature, never for production).
//!
//! [`VecStore`] keeps records in a mutex-protected map and implements the
//! [`SessionStore`] contract in the most direct way possible. It is neither
//! bounded nor fast: applications use `MemoryStore` from
//! `sessionkit-memory`, which purges expired records and scales.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;
use crate::store::{ScanCursor, ScanPage, SessionStore};
use crate::timestamp::Timestamp;

/// An unbounded, mutex-protected map of records. Cloning shares the map.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> sessionkit_core::Result<()> {
/// use std::time::Duration;
/// use sessionkit_core::{testing::VecStore, Record, SessionId, SessionStore, Timestamp};
///
/// let store = VecStore::default();
/// let now = Timestamp::now();
/// let record = Record::new(SessionId::generate(), None, &b"hi"[..], now, now + Duration::from_secs(60));
/// store.create(&record).await?;
/// assert_eq!(store.load(&record.id).await?.unwrap().payload, &b"hi"[..]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct VecStore {
    records: Arc<Mutex<HashMap<SessionId, Record>>>,
}

impl VecStore {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SessionId, Record>, Timestamp) -> R) -> R {
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let now = Timestamp::now();
        map.retain(|_, r| r.is_live(now));
        f(&mut map, now)
    }
}

#[async_trait]
impl SessionStore for VecStore {
    async fn create(&self, record: &Record) -> Result<()> {
        self.with(|map, _| {
            if map.contains_key(&record.id) {
                return Err(Error::Conflict);
            }
            map.insert(record.id, record.clone());
            Ok(())
        })
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.with(|map, _| Ok(map.get(id).cloned()))
    }

    async fn save(&self, record: &Record) -> Result<u64> {
        self.with(|map, _| match map.get_mut(&record.id) {
            None => Err(Error::NotFound),
            Some(stored) if stored.version != record.version => Err(Error::Conflict),
            Some(stored) => {
                *stored = record.clone();
                stored.version += 1;
                Ok(stored.version)
            }
        })
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        self.with(|map, _| match map.get_mut(id) {
            None => Err(Error::NotFound),
            Some(stored) => {
                stored.expires_at = expires_at;
                Ok(())
            }
        })
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.with(|map, _| Ok(map.remove(id).is_some()))
    }

    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        self.with(|map, _| match map.get(id) {
            None => Err(Error::NotFound),
            Some(stored) if stored.version != version => Err(Error::Conflict),
            Some(_) => {
                map.remove(id);
                Ok(())
            }
        })
    }

    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.with(|map, _| {
            Ok(map
                .values()
                .filter(|r| r.subject.as_deref() == Some(subject))
                .cloned()
                .collect())
        })
    }

    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        self.with(|map, _| {
            let before = map.len();
            map.retain(|_, r| r.subject.as_deref() != Some(subject));
            Ok((before - map.len()) as u64)
        })
    }

    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }

    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        let after = cursor.map(|c| SessionId::parse(c.as_str())).transpose()?;
        self.with(|map, _| {
            let mut ids: Vec<&SessionId> = map
                .keys()
                .filter(|id| after.is_none_or(|a| **id > a))
                .collect();
            ids.sort();
            let page: Vec<Record> = ids.iter().take(limit).map(|id| map[*id].clone()).collect();
            let next = (ids.len() > limit)
                .then(|| page.last().map(|r| ScanCursor::new(r.id.as_str())))
                .flatten();
            Ok(ScanPage::new(page, next))
        })
    }
}
