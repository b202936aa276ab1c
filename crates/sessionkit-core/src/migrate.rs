//! Moving sessions from one store to another with nobody logged out.
//!
//! Outgrowing a store (memory to Redis, Redis to PostgreSQL, one Redis to
//! another) should not end every session. Two tools, usable together:
//!
//! - [`MigratingStore`] fronts the old and the new store during the move:
//!   reads try the new store, then the old one, and a session found only in
//!   the old one is *moved* (written to the new store with its version,
//!   then removed from the old one by compare-and-delete, so a concurrent
//!   write on the old side is never lost); writes go to the new store;
//!   deletes and subject operations reach both. Deploy it on every
//!   instance, run [`copy_sessions`] (or just wait one idle timeout), then
//!   replace it with the new store.
//! - [`copy_sessions`] copies every live session in pages, with progress
//!   reports; it is idempotent (a session already in the target is left
//!   alone), bounded in memory (one page at a time) and resumable from the
//!   last cursor it reported.
//!
//! Both keep IDs (as the store keeps them: hashed at rest by the manager),
//! versions, subjects and expiry instants.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;
use crate::store::{ScanCursor, ScanPage, SessionStore};
use crate::timestamp::Timestamp;

/// How many times an operation re-reads after losing a race with a move.
const MOVE_ATTEMPTS: usize = 4;

/// A store in the middle of a move from `old` to `new`; see the
/// [module documentation](crate::migrate) for the rules.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> sessionkit_core::Result<()> {
/// use sessionkit_core::{SessionManager, migrate::MigratingStore, testing::VecStore};
///
/// let (old, new) = (VecStore::default(), VecStore::default());
/// let before = SessionManager::<u32>::stateful(old.clone()).build()?;
/// let ticket = before.create(Some("alice"), 7).await?.ticket().clone();
///
/// // During the move: every instance uses the migrating store.
/// let during = SessionManager::<u32>::stateful(MigratingStore::new(old.clone(), new.clone())).build()?;
/// during.update(ticket.as_str(), |n| *n += 1).await?; // moved, then saved in `new`
///
/// // After it: only the new store.
/// let after = SessionManager::<u32>::stateful(new).build()?;
/// assert_eq!(*after.load(ticket.as_str()).await?.unwrap().data(), 8);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MigratingStore<Old, New> {
    old: Old,
    new: New,
}

impl<Old: SessionStore, New: SessionStore> MigratingStore<Old, New> {
    /// Reads from `new` then `old`, writes to `new`.
    pub fn new(old: Old, new: New) -> Self {
        MigratingStore { old, new }
    }

    /// The store sessions are moving away from.
    pub fn old(&self) -> &Old {
        &self.old
    }

    /// The store sessions are moving to.
    pub fn new_store(&self) -> &New {
        &self.new
    }

    /// The record of `id`, moved into the new store first if only the old
    /// one has it. `fresh`: read past any cache.
    async fn locate(&self, id: &SessionId, fresh: bool) -> Result<Option<Record>> {
        for _ in 0..MOVE_ATTEMPTS {
            let found = if fresh {
                self.new.load_fresh(id).await?
            } else {
                self.new.load(id).await?
            };
            if let Some(record) = found {
                return Ok(Some(record));
            }
            let Some(record) = self.old.load_fresh(id).await? else {
                // Another request may have moved it between the two reads.
                return self.new.load_fresh(id).await;
            };
            match self.new.create(&record).await {
                Ok(()) => {}
                // Someone else moved (or re-created) it: read it there.
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
            match self.old.compare_and_delete(id, record.version).await {
                Ok(()) => return Ok(Some(record)),
                // Changed or ended on the old side meanwhile (an instance
                // not yet migrating): that outcome wins; take the copy back
                // and look again.
                Err(Error::Conflict | Error::NotFound) => {
                    self.new.compare_and_delete(id, record.version).await.ok();
                }
                Err(e) => {
                    self.new.compare_and_delete(id, record.version).await.ok();
                    return Err(e);
                }
            }
        }
        Err(Error::Conflict)
    }
}

#[async_trait]
impl<Old: SessionStore, New: SessionStore> SessionStore for MigratingStore<Old, New> {
    async fn create(&self, record: &Record) -> Result<()> {
        // An ID live in the old store is taken.
        if self.old.load_fresh(&record.id).await?.is_some() {
            return Err(Error::Conflict);
        }
        self.new.create(record).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.locate(id, false).await
    }

    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        self.locate(id, true).await
    }

    async fn save(&self, record: &Record) -> Result<u64> {
        match self.new.save(record).await {
            Err(Error::NotFound) => {
                if self.locate(&record.id, true).await?.is_none() {
                    return Err(Error::NotFound);
                }
                self.new.save(record).await
            }
            other => other,
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        match self.new.touch(id, expires_at).await {
            Err(Error::NotFound) => {
                if self.locate(id, true).await?.is_none() {
                    return Err(Error::NotFound);
                }
                self.new.touch(id, expires_at).await
            }
            other => other,
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let (new, old) = tokio::join!(self.new.delete(id), self.old.delete(id));
        Ok(new? | old?)
    }

    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        match self.new.compare_and_delete(id, version).await {
            Err(Error::NotFound) => self.old.compare_and_delete(id, version).await,
            other => other,
        }
    }

    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        let (new, old) = tokio::join!(
            self.new.list_subject(subject),
            self.old.list_subject(subject)
        );
        let mut records = new?;
        for record in old? {
            if !records.iter().any(|r| r.id == record.id) {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        let (new, old) = tokio::join!(
            self.new.delete_subject(subject),
            self.old.delete_subject(subject)
        );
        Ok(new? + old?)
    }

    async fn delete_expired(&self) -> Result<u64> {
        let (new, old) = tokio::join!(self.new.delete_expired(), self.old.delete_expired());
        Ok(new? + old?)
    }

    fn backend_name(&self) -> &'static str {
        "migrating"
    }

    /// The old store's records, then the new store's (a record being moved
    /// may appear in both).
    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        // "o:<old cursor>" / "n:<new cursor>"; no cursor starts with old.
        let (in_old, inner) = match cursor.map(ScanCursor::as_str) {
            None => (true, None),
            Some(text) => match text.split_at_checked(2) {
                Some(("o:", rest)) => (true, Some(ScanCursor::new(rest))),
                Some(("n:", rest)) => (false, Some(ScanCursor::new(rest))),
                _ => return Err(Error::decode("not a migrating-store scan cursor")),
            },
        };
        let inner = inner.filter(|c| !c.as_str().is_empty());
        if in_old {
            let page = self.old.scan(inner.as_ref(), limit).await?;
            let next = match page.next {
                Some(c) => format!("o:{}", c.as_str()),
                None => "n:".to_owned(),
            };
            return Ok(ScanPage::new(page.records, Some(ScanCursor::new(next))));
        }
        let page = self.new.scan(inner.as_ref(), limit).await?;
        let next = page
            .next
            .map(|c| ScanCursor::new(format!("n:{}", c.as_str())));
        Ok(ScanPage::new(page.records, next))
    }
}

/// Where a [`copy_sessions`] run stands, reported after every page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyProgress {
    /// Records read from the source so far.
    pub scanned: u64,
    /// Records written to the target.
    pub copied: u64,
    /// Records the target already had (an earlier run, a migrating store,
    /// a live write): left as they are.
    pub already_there: u64,
    /// Records that expired or were ended (a logout) between the read and
    /// the write: not copied (a copy written meanwhile is taken back).
    pub expired: u64,
    /// Where to resume if the run is interrupted now (`None` once done).
    pub cursor: Option<ScanCursor>,
}

/// Copies every live session of `from` into `to`, a page of `page_size`
/// records at a time, calling `progress` after each page. Idempotent: a
/// record the target already has is left alone (its copy there may be
/// newer). Resumable: pass the last reported [`CopyProgress::cursor`] as
/// `resume`. IDs, versions, subjects and instants are kept.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> sessionkit_core::Result<()> {
/// use sessionkit_core::{SessionManager, migrate::copy_sessions, testing::VecStore};
/// let (from, to) = (VecStore::default(), VecStore::default());
/// let m = SessionManager::<u32>::stateful(from.clone()).build()?;
/// for n in 0..10 { m.create(Some("alice"), n).await?; }
/// let done = copy_sessions(&from, &to, 4, None, |p| println!("{} copied", p.copied)).await?;
/// assert_eq!(done.copied, 10);
/// # Ok(()) }
/// ```
pub async fn copy_sessions<From, To>(
    from: &From,
    to: &To,
    page_size: usize,
    resume: Option<ScanCursor>,
    mut progress: impl FnMut(&CopyProgress),
) -> Result<CopyProgress>
where
    From: SessionStore + ?Sized,
    To: SessionStore + ?Sized,
{
    if page_size == 0 {
        return Err(Error::Config(
            "copy_sessions needs a page size of at least 1".into(),
        ));
    }
    let mut state = CopyProgress {
        cursor: resume,
        ..CopyProgress::default()
    };
    loop {
        let page = from.scan(state.cursor.as_ref(), page_size).await?;
        for record in &page.records {
            state.scanned += 1;
            if !record.is_live(Timestamp::now()) {
                state.expired += 1;
                continue;
            }
            match to.create(record).await {
                Ok(()) => {
                    // Ended in the source after its page was read (a
                    // logout): the copy must not bring it back.
                    if from.load_fresh(&record.id).await?.is_none() {
                        match to.compare_and_delete(&record.id, record.version).await {
                            Ok(()) | Err(Error::NotFound | Error::Conflict) => {}
                            Err(e) => return Err(e),
                        }
                        state.expired += 1;
                    } else {
                        state.copied += 1;
                    }
                }
                Err(Error::Conflict) => state.already_there += 1,
                Err(e) => return Err(e),
            }
        }
        state.cursor = page.next;
        progress(&state);
        if state.cursor.is_none() {
            return Ok(state);
        }
    }
}
