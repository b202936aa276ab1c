//! Moving sessions from one store to another with nobody logged out.
//!
//! Outgrowing a store (memory to Redis, Redis to PostgreSQL, one Redis to
//! another) should not end every session. The tools:
//!
//! - [`MigratingStore`] fronts the old and the new store during the move.
//!   While the old store has a session, its record is the one that counts:
//!   reads *move* it (a copy in the new store with its version, then the
//!   original removed by compare-and-delete), and writes (`save`, `touch`,
//!   `compare_and_delete`) go to the original while it exists, to the new
//!   store once it does not. So a copy is never written while its original
//!   can still be (by an instance that is not migrating yet), and two
//!   writes can never both be acknowledged on the two sides. New sessions
//!   are created in the new store; deletes and subject operations reach
//!   both. Deploy it on every instance, run
//!   [`MigratingStore::move_sessions`] once, then replace it with the new
//!   store.
//! - [`MigratingStore::move_sessions`] moves every remaining session in
//!   pages, with progress reports, resumable from the last cursor; what
//!   it moves is gone from the old store.
//! - [`copy_sessions`] copies every live session between two stores
//!   without removing anything: for a move without live traffic, or a
//!   backup. Idempotent (a session already in the target is left alone),
//!   bounded in memory (one page at a time) and resumable.
//!
//! All keep IDs (as the store keeps them: hashed at rest by the manager),
//! versions, subjects and expiry instants.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::record::Record;
use crate::store::{ScanCursor, ScanPage, SessionStore};
use crate::timestamp::Timestamp;

/// How many times an operation re-reads after losing a race with a move.
const MOVE_ATTEMPTS: usize = 4;
/// [`MigratingStore::abandoned_after`] by default.
const DEFAULT_ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// `move_sessions` watches moves in flight for at most this many times
/// [`MigratingStore::abandoned_after`].
const SETTLE_ROUNDS: u32 = 3;
/// How often `move_sessions` looks again at moves in flight.
const SETTLE_POLL: Duration = Duration::from_millis(100);

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
    abandoned_after: Duration,
}

/// What one attempt to move a session did.
enum Moved {
    /// Copied to the new store and removed from the old one.
    Done,
    /// A copy was already in the new store: another request is moving it,
    /// or an earlier move was abandoned half-way.
    CopyExists,
    /// The original changed or ended meanwhile; the copy was taken back.
    Retry,
}

impl<Old: SessionStore, New: SessionStore> MigratingStore<Old, New> {
    /// Fronts `old` and `new` during a move (see the
    /// [module documentation](crate::migrate) for the rules).
    pub fn new(old: Old, new: New) -> Self {
        MigratingStore {
            old,
            new,
            abandoned_after: DEFAULT_ABANDONED_AFTER,
        }
    }

    /// How long [`MigratingStore::move_sessions`] lets a copy sit beside an
    /// unchanged original before it takes the move for abandoned (its
    /// request died between the two steps) and redoes it. It must exceed
    /// the longest a store call can take (the stores' call timeouts);
    /// default 60 s.
    pub fn abandoned_after(mut self, after: Duration) -> Self {
        self.abandoned_after = after;
        self
    }

    /// The store sessions are moving away from.
    pub fn old(&self) -> &Old {
        &self.old
    }

    /// The store sessions are moving to.
    pub fn new_store(&self) -> &New {
        &self.new
    }

    /// The record of `id`, moved into the new store first if the old one
    /// still has it. `fresh`: read the new store past any cache.
    async fn locate(&self, id: &SessionId, fresh: bool) -> Result<Option<Record>> {
        for _ in 0..MOVE_ATTEMPTS {
            let Some(original) = self.old.load_fresh(id).await? else {
                return if fresh {
                    self.new.load_fresh(id).await
                } else {
                    self.new.load(id).await
                };
            };
            match self.move_one(&original).await? {
                // While the original exists it is the one that counts,
                // and a copy of it is the same record.
                Moved::Done | Moved::CopyExists => return Ok(Some(original)),
                Moved::Retry => {}
            }
        }
        Err(Error::Conflict)
    }

    /// One move of `original` (as just read from the old store): a copy in
    /// the new store, then the original removed if it is still that
    /// version. Only the request whose copy was created removes the
    /// original, so a `NotFound` there means the session ended.
    async fn move_one(&self, original: &Record) -> Result<Moved> {
        match self.new.create(original).await {
            Ok(()) => {}
            Err(Error::Conflict) => return Ok(Moved::CopyExists),
            Err(e) => return Err(e),
        }
        match self
            .old
            .compare_and_delete(&original.id, original.version)
            .await
        {
            Ok(()) => Ok(Moved::Done),
            // Written on the old side meanwhile (an instance not migrating
            // yet, or a save through this store, which writes the original
            // while it exists). Nobody wrote the copy: take it back.
            Err(Error::Conflict) => {
                match self
                    .new
                    .compare_and_delete(&original.id, original.version)
                    .await
                {
                    Ok(()) | Err(Error::NotFound | Error::Conflict) => Ok(Moved::Retry),
                    Err(e) => Err(e),
                }
            }
            // Ended on the old side meanwhile (a logout on an instance not
            // migrating yet, an expiry): the copy must not outlive it.
            Err(Error::NotFound) => {
                self.new.delete(&original.id).await?;
                Ok(Moved::Retry)
            }
            // Unknown outcome: the copy stays; a later read or
            // `move_sessions` settles it.
            Err(e) => Err(e),
        }
    }

    /// Moves every session still in the old store into the new one, a
    /// page of `page_size` at a time, calling `progress` after each page:
    /// step 3 of a migration, run once from one place while every instance
    /// runs the migrating store. Each session is moved as a read moves it
    /// (copy, then compare-and-delete of the original), so requests using
    /// it meanwhile lose nothing. A copy found beside its original belongs
    /// to a move in flight; it is looked at again after
    /// [`abandoned_after`](MigratingStore::abandoned_after), and if the
    /// original has not changed by then, that move was abandoned and is
    /// redone. Resumable from the last reported cursor.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> sessionkit_core::Result<()> {
    /// use sessionkit_core::{SessionManager, SessionStore, migrate::MigratingStore, testing::VecStore};
    /// let (old, new) = (VecStore::default(), VecStore::default());
    /// let before = SessionManager::<u32>::stateful(old.clone()).build()?;
    /// for n in 0..10 { before.create(Some("alice"), n).await?; }
    /// let migrating = MigratingStore::new(old.clone(), new.clone());
    /// let done = migrating.move_sessions(4, None, |p| println!("{} moved", p.copied)).await?;
    /// assert_eq!(done.copied, 10);
    /// assert!(old.list_subject("alice").await?.is_empty());
    /// assert_eq!(new.list_subject("alice").await?.len(), 10);
    /// # Ok(()) }
    /// ```
    pub async fn move_sessions(
        &self,
        page_size: usize,
        resume: Option<ScanCursor>,
        mut progress: impl FnMut(&CopyProgress),
    ) -> Result<CopyProgress> {
        if page_size == 0 {
            return Err(Error::Config(
                "move_sessions needs a page size of at least 1".into(),
            ));
        }
        let mut state = CopyProgress {
            cursor: resume,
            ..CopyProgress::default()
        };
        // Sessions with a copy beside the original: (ID, original version).
        let mut in_flight: Vec<(SessionId, u64)> = Vec::new();
        loop {
            let page = self.old.scan(state.cursor.as_ref(), page_size).await?;
            for record in &page.records {
                state.scanned += 1;
                if !record.is_live(Timestamp::now()) {
                    state.expired += 1;
                    continue;
                }
                match self.move_one(record).await? {
                    Moved::Done => state.copied += 1,
                    Moved::CopyExists => in_flight.push((record.id, record.version)),
                    Moved::Retry => {
                        self.count_move(&record.id, &mut state, &mut in_flight)
                            .await?
                    }
                }
            }
            state.cursor = page.next;
            if state.cursor.is_some() {
                progress(&state);
                continue;
            }
            break;
        }
        // Moves in flight finish within a few round trips: look again soon,
        // but take a copy for abandoned only once its original has stayed
        // unchanged for `abandoned_after`.
        let poll = self.abandoned_after.min(SETTLE_POLL);
        let give_up = tokio::time::Instant::now() + self.abandoned_after * SETTLE_ROUNDS;
        let mut watched: Vec<(SessionId, u64, tokio::time::Instant)> = in_flight
            .drain(..)
            .map(|(id, version)| (id, version, tokio::time::Instant::now()))
            .collect();
        while !watched.is_empty() && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(poll).await;
            for (id, version, since) in std::mem::take(&mut watched) {
                let Some(original) = self.old.load_fresh(&id).await? else {
                    // Moved by the request that was moving it, or ended.
                    state.already_there += 1;
                    continue;
                };
                if original.version != version {
                    // Written meanwhile: a live session, not an abandoned
                    // move; watch it from now on.
                    watched.push((id, original.version, tokio::time::Instant::now()));
                    continue;
                }
                if since.elapsed() < self.abandoned_after {
                    watched.push((id, version, since));
                    continue;
                }
                // Unchanged for the whole wait: the copy beside it (if still
                // there) was abandoned; nobody writes a copy while its
                // original exists, so it can go.
                if let Some(copy) = self.new.load_fresh(&id).await? {
                    match self.new.compare_and_delete(&id, copy.version).await {
                        Ok(()) | Err(Error::NotFound | Error::Conflict) => {}
                        Err(e) => return Err(e),
                    }
                }
                self.count_move(&id, &mut state, &mut in_flight).await?;
                watched.extend(
                    in_flight
                        .drain(..)
                        .map(|(id, v)| (id, v, tokio::time::Instant::now())),
                );
            }
        }
        in_flight.extend(watched.into_iter().map(|(id, v, _)| (id, v)));
        state.busy = in_flight.len() as u64;
        progress(&state);
        Ok(state)
    }

    async fn count_move(
        &self,
        id: &SessionId,
        state: &mut CopyProgress,
        in_flight: &mut Vec<(SessionId, u64)>,
    ) -> Result<()> {
        for _ in 0..MOVE_ATTEMPTS {
            let Some(original) = self.old.load_fresh(id).await? else {
                if self.new.load_fresh(id).await?.is_some() {
                    state.already_there += 1;
                } else {
                    state.expired += 1;
                }
                return Ok(());
            };
            match self.move_one(&original).await? {
                Moved::Done => {
                    state.copied += 1;
                    return Ok(());
                }
                Moved::CopyExists => {
                    in_flight.push((*id, original.version));
                    return Ok(());
                }
                Moved::Retry => {}
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

    /// While the old store still has the session, its record is the one
    /// that counts: a move in flight has made a copy in the new store but
    /// not yet removed the original, and an instance that is not migrating
    /// yet may write the original. So the save goes to the original (the
    /// move in flight then fails its compare-and-delete, takes its copy
    /// back and moves the saved version instead), and to the new store
    /// only once the old one has no record. A copy is never written while
    /// its original can be, so the two can never both acknowledge a write.
    async fn save(&self, record: &Record) -> Result<u64> {
        match self.old.save(record).await {
            Err(Error::NotFound) => self.new.save(record).await,
            other => other,
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        match self.old.touch(id, expires_at).await {
            Err(Error::NotFound) => self.new.touch(id, expires_at).await,
            other => other,
        }
    }

    /// The old store, then the new one (in that order: a move that
    /// finished before the first step left its copy for the second, and
    /// one that finishes after it finds its original gone and deletes its
    /// copy itself).
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let old = self.old.delete(id).await?;
        let new = self.new.delete(id).await?;
        Ok(new | old)
    }

    /// The old store first, as `save`: while it has the session, its record
    /// is the one that counts, and a copy in the new store belongs to an
    /// unfinished move and goes with it.
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        match self.old.compare_and_delete(id, version).await {
            Ok(()) => {
                self.new.delete(id).await?;
                Ok(())
            }
            Err(Error::NotFound) => self.new.compare_and_delete(id, version).await,
            Err(e) => Err(e),
        }
    }

    /// Both stores; where a session is in both (a move in flight), the old
    /// store's record, which is the one that counts.
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        let (new, old) = tokio::join!(
            self.new.list_subject(subject),
            self.old.list_subject(subject)
        );
        let mut records = old?;
        for record in new? {
            if !records.iter().any(|r| r.id == record.id) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// The old store, then the new one, for the reason given at `delete`.
    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        let old = self.old.delete_subject(subject).await?;
        let new = self.new.delete_subject(subject).await?;
        Ok(new + old)
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
    /// [`MigratingStore::move_sessions`]: sessions still being moved by
    /// requests when the run ended (written again and again meanwhile);
    /// run it again later.
    pub busy: u64,
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
