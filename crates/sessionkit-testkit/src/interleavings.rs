//! Adversarial interleavings: two requests on one session, in the worst
//! order, and the same races repeated concurrently.
//!
//! The contract cases in [`cases`](crate::cases) check one call at a time.
//! The guarantees users rely on are about *two* requests: a rotation racing
//! a logout must not resurrect the session, two rotations must not fork it
//! into two live IDs, a rotation based on stale data must not erase a save,
//! and "log out everywhere" racing a login must leave the subject index
//! truthful. Each is checked here through [`SessionManager`] over the store
//! under test, two ways:
//!
//! - **deterministic**: a [`GatedStore`] stops request A at the worst point
//!   (for a rotation: after the new record is written, before the old one
//!   is removed), request B runs to completion, then A is released. The
//!   order is forced with channels, not timing;
//! - **repeated**: [`TRIALS`] trials of the same race, started together
//!   behind a barrier on a multi-threaded runtime, with an invariant checked
//!   after each trial (never two live winners, never a resurrected
//!   session).
//!
//! Every function takes the store as `Arc<dyn SessionStore>`, uses fresh
//! subjects, and panics with a message naming the broken guarantee.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! use std::sync::Arc;
//! use sessionkit_core::testing::VecStore;
//!
//! sessionkit_testkit::interleavings::rotate_vs_rotate_one_wins(Arc::new(VecStore::default())).await;
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit_core::{
    Error, Record, Result, Session, SessionId, SessionManager, SessionStore, Timestamp, async_trait,
};
use tokio::sync::{Barrier, oneshot};

use crate::cases::{LONG_TTL, fresh_record, unique_subject};
use crate::concurrency::Counter;

/// Trials of each repeated race.
pub const TRIALS: usize = 200;
/// Concurrent rotations of one session in each trial of
/// [`concurrent_rotations_never_fork`].
pub const ROTATIONS: usize = 4;
/// Bound on one gated step: a store call that never returns fails the test
/// instead of hanging it.
const STEP: Duration = Duration::from_secs(30);

/// A store call a [`GatedStore`] can stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// [`SessionStore::create`].
    Create,
    /// [`SessionStore::load`].
    Load,
    /// [`SessionStore::save`].
    Save,
    /// [`SessionStore::touch`].
    Touch,
    /// [`SessionStore::delete`].
    Delete,
    /// [`SessionStore::compare_and_delete`].
    CompareAndDelete,
    /// [`SessionStore::list_subject`].
    ListSubject,
    /// [`SessionStore::delete_subject`].
    DeleteSubject,
}

struct Armed {
    call: Call,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// A store wrapper that stops one chosen call before it reaches the inner
/// store, until the test releases it: the tool for forcing an interleaving.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// use std::sync::Arc;
/// use sessionkit_core::{SessionStore, testing::VecStore};
/// use sessionkit_testkit::interleavings::{Call, GatedStore};
///
/// let gated = Arc::new(GatedStore::new(Arc::new(VecStore::default())));
/// let gate = gated.arm(Call::Delete);
/// let task = tokio::spawn({
///     let gated = Arc::clone(&gated);
///     async move { gated.delete(&sessionkit_core::SessionId::generate()).await }
/// });
/// let gate = gate.reached().await; // the delete is now waiting
/// gate.release();
/// assert!(!task.await.unwrap().unwrap());
/// # }
/// ```
pub struct GatedStore {
    inner: Arc<dyn SessionStore>,
    armed: Mutex<Option<Armed>>,
}

impl std::fmt::Debug for GatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedStore").finish_non_exhaustive()
    }
}

/// The test's side of an armed gate: wait until the call is stopped, then
/// release it.
#[derive(Debug)]
#[must_use = "a gate that is never released stops its call forever"]
pub struct Gate {
    reached: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

/// A gate whose call is stopped and waiting; see [`Gate::reached`].
#[derive(Debug)]
#[must_use = "release the stopped call"]
pub struct StoppedCall {
    release: oneshot::Sender<()>,
}

impl Gate {
    /// Waits until the gated call has arrived and is stopped.
    ///
    /// # Panics
    ///
    /// When the call does not arrive within 30 seconds.
    pub async fn reached(self) -> StoppedCall {
        match tokio::time::timeout(STEP, self.reached).await {
            Ok(Ok(())) => StoppedCall {
                release: self.release,
            },
            _ => panic!("the gated store call never arrived"),
        }
    }
}

impl StoppedCall {
    /// Lets the stopped call go on to the inner store.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl GatedStore {
    /// Wraps `inner`; no call is stopped until [`GatedStore::arm`].
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        GatedStore {
            inner,
            armed: Mutex::new(None),
        }
    }

    /// Stops the next `call` (of any ID) before it reaches the inner store.
    pub fn arm(&self, call: Call) -> Gate {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Armed {
            call,
            reached: reached_tx,
            release: release_rx,
        });
        Gate {
            reached: reached_rx,
            release: release_tx,
        }
    }

    async fn pass(&self, call: Call) {
        let armed = {
            let mut slot = self.armed.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(a) if a.call == call => slot.take(),
                _ => None,
            }
        };
        if let Some(armed) = armed {
            let _ = armed.reached.send(());
            if tokio::time::timeout(STEP, armed.release).await.is_err() {
                panic!("a gated {call:?} was never released");
            }
        }
    }
}

#[async_trait]
impl SessionStore for GatedStore {
    async fn create(&self, record: &Record) -> Result<()> {
        self.pass(Call::Create).await;
        self.inner.create(record).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.pass(Call::Load).await;
        self.inner.load(id).await
    }
    async fn load_fresh(&self, id: &SessionId) -> Result<Option<Record>> {
        self.pass(Call::Load).await;
        self.inner.load_fresh(id).await
    }
    async fn save(&self, record: &Record) -> Result<u64> {
        self.pass(Call::Save).await;
        self.inner.save(record).await
    }
    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        self.pass(Call::Touch).await;
        self.inner.touch(id, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.pass(Call::Delete).await;
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        self.pass(Call::CompareAndDelete).await;
        self.inner.compare_and_delete(id, version).await
    }
    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.pass(Call::ListSubject).await;
        self.inner.list_subject(subject).await
    }
    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        self.pass(Call::DeleteSubject).await;
        self.inner.delete_subject(subject).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }
}

fn manager(store: Arc<dyn SessionStore>) -> SessionManager<Counter> {
    SessionManager::stateful_shared(store)
        .build()
        .expect("a manager with the default configuration")
}

/// The IDs of every live session of `subject`, asked of the store itself;
/// each must also load.
async fn live_ids(store: &Arc<dyn SessionStore>, subject: &str) -> Vec<SessionId> {
    let listed = store
        .list_subject(subject)
        .await
        .expect("list_subject of the test subject");
    let mut ids = Vec::new();
    for record in listed {
        if store.load_fresh(&record.id).await.expect("load").is_some() {
            ids.push(record.id);
        }
    }
    ids.sort();
    ids
}

async fn loads(store: &Arc<dyn SessionStore>, id: &SessionId) -> bool {
    store.load_fresh(id).await.expect("load").is_some()
}

/// Runs a racing store call to its outcome: a call the backend rolled back
/// without applying it ([`Error::Aborted`], which the contract allows under
/// contention, as an InnoDB deadlock victim) is run again, as the manager
/// does.
async fn applied<R, Fut>(mut call: impl FnMut() -> Fut) -> Result<R>
where
    Fut: std::future::Future<Output = Result<R>>,
{
    for _ in 0..100 {
        match call().await {
            Err(Error::Aborted(_)) => tokio::task::yield_now().await,
            result => return result,
        }
    }
    call().await
}

fn lost_rotation(result: &Result<()>) -> bool {
    matches!(result, Err(Error::NotFound | Error::Conflict))
}

/// Starts request A's rotation of `session` through a gated store, stops
/// it after the new record is written and before the old one is removed,
/// and returns the stopped call and the task that finishes the rotation.
async fn rotation_stopped_before_old_id_dies(
    gated: &Arc<GatedStore>,
    mut session: Session<Counter>,
) -> (
    StoppedCall,
    tokio::task::JoinHandle<(Result<()>, Session<Counter>)>,
) {
    let gate = gated.arm(Call::CompareAndDelete);
    let a = manager(Arc::clone(gated) as Arc<dyn SessionStore>);
    let task = tokio::spawn(async move {
        let result = a.rotate(&mut session).await;
        (result, session)
    });
    (gate.reached().await, task)
}

async fn finish(
    task: tokio::task::JoinHandle<(Result<()>, Session<Counter>)>,
) -> (Result<()>, Session<Counter>) {
    tokio::time::timeout(STEP, task)
        .await
        .expect("the rotation finished")
        .expect("the rotation task did not panic")
}

/// A loads the session, B logs it out, then A rotates (at login, say): the
/// rotation fails with `NotFound` and nothing of the session is live; and
/// the same with B's logout landing while A's rotation is half done (new
/// record written, old not yet removed).
pub async fn rotate_vs_destroy_nothing_live(store: Arc<dyn SessionStore>) {
    let b = manager(Arc::clone(&store));
    // Sequential worst order.
    let subject = unique_subject("rot-destroy");
    let created = b
        .create(Some(&subject), Counter::default())
        .await
        .expect("create");
    let mut a_copy = b
        .load(created.ticket().as_str())
        .await
        .expect("load")
        .expect("live");
    assert!(b.destroy(created.ticket().as_str()).await.expect("destroy"));
    let result = b.rotate(&mut a_copy).await;
    assert!(
        matches!(result, Err(Error::NotFound)),
        "a rotation after a logout must fail with NotFound, got {result:?}"
    );
    assert_eq!(
        a_copy.ticket(),
        created.ticket(),
        "a failed rotation must not hand out a ticket"
    );
    assert!(
        live_ids(&store, &subject).await.is_empty(),
        "a rotation after a logout resurrected the session"
    );

    // B's logout in the middle of A's rotation.
    let gated = Arc::new(GatedStore::new(Arc::clone(&store)));
    let subject = unique_subject("rot-destroy-mid");
    let created = b
        .create(Some(&subject), Counter::default())
        .await
        .expect("create");
    let a_copy = b
        .load(created.ticket().as_str())
        .await
        .expect("load")
        .expect("live");
    let (stopped, task) = rotation_stopped_before_old_id_dies(&gated, a_copy).await;
    assert!(
        b.destroy(created.ticket().as_str()).await.expect("destroy"),
        "the logout found the session"
    );
    stopped.release();
    let (result, a_copy) = finish(task).await;
    assert!(
        matches!(result, Err(Error::NotFound)),
        "a rotation overtaken by a logout must fail with NotFound, got {result:?}"
    );
    assert_eq!(
        a_copy.ticket(),
        created.ticket(),
        "a failed rotation must not hand out a ticket"
    );
    assert!(
        live_ids(&store, &subject).await.is_empty(),
        "a logout during a rotation left a live session"
    );
}

/// Two rotations of one session, the second overtaking the first while it
/// is half done: exactly one wins, the loser fails with `NotFound` and
/// keeps its old ticket, and exactly one session (the winner's) is live.
pub async fn rotate_vs_rotate_one_wins(store: Arc<dyn SessionStore>) {
    let b = manager(Arc::clone(&store));
    let gated = Arc::new(GatedStore::new(Arc::clone(&store)));
    let subject = unique_subject("rot-rot");
    let created = b
        .create(Some(&subject), Counter { value: 7 })
        .await
        .expect("create");
    let a_copy = b
        .load(created.ticket().as_str())
        .await
        .expect("load")
        .expect("live");
    let mut b_copy = b
        .load(created.ticket().as_str())
        .await
        .expect("load")
        .expect("live");
    let (stopped, task) = rotation_stopped_before_old_id_dies(&gated, a_copy).await;
    b.rotate(&mut b_copy)
        .await
        .expect("B's rotation, which comes first, wins");
    stopped.release();
    let (result, a_copy) = finish(task).await;
    assert!(
        matches!(result, Err(Error::NotFound)),
        "the second of two rotations must fail with NotFound, got {result:?}"
    );
    assert_eq!(
        a_copy.ticket(),
        created.ticket(),
        "the losing rotation must not hand out a ticket"
    );
    assert_eq!(
        live_ids(&store, &subject).await,
        vec![b_copy.id()],
        "two rotations forked the session (or lost it)"
    );
    assert!(
        !loads(&store, &created.id()).await,
        "the old ID survived its rotation"
    );
    let winner = b
        .load(b_copy.ticket().as_str())
        .await
        .expect("load")
        .expect("the winner is live");
    assert_eq!(winner.data().value, 7);
}

/// "Log out everywhere" before, and in the middle of, a rotation: the
/// rotation fails and no session of the subject is live afterwards.
pub async fn rotate_vs_destroy_subject_nothing_live(store: Arc<dyn SessionStore>) {
    let b = manager(Arc::clone(&store));
    let subject = unique_subject("rot-everywhere");
    let created = b
        .create(Some(&subject), Counter::default())
        .await
        .expect("create");
    let mut a_copy = b
        .load(created.ticket().as_str())
        .await
        .expect("load")
        .expect("live");
    assert_eq!(
        b.destroy_subject(&subject).await.expect("destroy_subject"),
        1
    );
    let result = b.rotate(&mut a_copy).await;
    assert!(
        matches!(result, Err(Error::NotFound)),
        "a rotation after log-out-everywhere must fail with NotFound, got {result:?}"
    );
    assert!(
        live_ids(&store, &subject).await.is_empty(),
        "a rotation after log-out-everywhere resurrected the session"
    );

    let gated = Arc::new(GatedStore::new(Arc::clone(&store)));
    let subject = unique_subject("rot-everywhere-mid");
    let created = b
        .create(Some(&subject), Counter::default())
        .await
        .expect("create");
    let a_copy = b
        .load(created.ticket().as_str())
        .await
        .expect("load")
        .expect("live");
    let (stopped, task) = rotation_stopped_before_old_id_dies(&gated, a_copy).await;
    b.destroy_subject(&subject).await.expect("destroy_subject");
    stopped.release();
    let (result, a_copy) = finish(task).await;
    assert!(
        matches!(result, Err(Error::NotFound)),
        "a rotation overtaken by log-out-everywhere must fail with NotFound, got {result:?}"
    );
    assert_eq!(a_copy.ticket(), created.ticket());
    assert!(
        live_ids(&store, &subject).await.is_empty(),
        "log-out-everywhere during a rotation left a live session"
    );
}

/// A rotation based on data that another request saved over fails with
/// `Conflict` (before and in the middle of the rotation), and the saved
/// data survives at the old ID: a rotation never erases a save.
pub async fn save_vs_rotate_keeps_the_save(store: Arc<dyn SessionStore>) {
    let b = manager(Arc::clone(&store));
    let subject = unique_subject("save-rot");
    let created = b
        .create(Some(&subject), Counter { value: 1 })
        .await
        .expect("create");
    let ticket = created.ticket().as_str().to_owned();
    let mut a_copy = b.load(&ticket).await.expect("load").expect("live");
    b.update(&ticket, |c| c.value = 2).await.expect("B's save");
    let result = b.rotate(&mut a_copy).await;
    assert!(
        matches!(result, Err(Error::Conflict)),
        "a rotation of stale data must fail with Conflict, got {result:?}"
    );
    assert_eq!(
        live_ids(&store, &subject).await,
        vec![created.id()],
        "a stale rotation forked or lost the session"
    );
    assert_eq!(
        b.load(&ticket)
            .await
            .expect("load")
            .expect("live")
            .data()
            .value,
        2,
        "B's save was lost"
    );

    let gated = Arc::new(GatedStore::new(Arc::clone(&store)));
    let a_copy = b.load(&ticket).await.expect("load").expect("live");
    let (stopped, task) = rotation_stopped_before_old_id_dies(&gated, a_copy).await;
    b.update(&ticket, |c| c.value = 3).await.expect("B's save");
    stopped.release();
    let (result, _) = finish(task).await;
    assert!(
        matches!(result, Err(Error::Conflict)),
        "a rotation overtaken by a save must fail with Conflict, got {result:?}"
    );
    assert_eq!(
        live_ids(&store, &subject).await,
        vec![created.id()],
        "a rotation overtaken by a save forked the session"
    );
    assert_eq!(
        b.load(&ticket)
            .await
            .expect("load")
            .expect("live")
            .data()
            .value,
        3,
        "B's save was lost"
    );
}

/// [`TRIALS`] trials of [`ROTATIONS`] concurrent rotations of one session:
/// in every trial exactly one wins, the others fail with `NotFound` or
/// `Conflict`, and exactly one session (the winner's) is live.
pub async fn concurrent_rotations_never_fork(store: Arc<dyn SessionStore>) {
    let m = manager(Arc::clone(&store));
    let mut forks = 0;
    for trial in 0..TRIALS {
        let subject = unique_subject("rot-race");
        let created = m
            .create(Some(&subject), Counter::default())
            .await
            .expect("create");
        let barrier = Arc::new(Barrier::new(ROTATIONS));
        let mut tasks = Vec::new();
        for _ in 0..ROTATIONS {
            let mut copy = m
                .load(created.ticket().as_str())
                .await
                .expect("load")
                .expect("live");
            let (m, barrier) = (m.clone(), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let result = m.rotate(&mut copy).await;
                (result, copy.id())
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (result, id) = task.await.expect("rotation task");
            match result {
                Ok(()) => winners.push(id),
                ref r if lost_rotation(r) => {}
                Err(e) => panic!(
                    "trial {trial}: a losing rotation must fail with NotFound or Conflict, got {e:?}"
                ),
            }
        }
        let live = live_ids(&store, &subject).await;
        if winners.len() != 1 || live != winners {
            forks += 1;
            eprintln!(
                "trial {trial}: {} winners, {} live sessions",
                winners.len(),
                live.len()
            );
        }
    }
    assert_eq!(
        forks, 0,
        "concurrent rotations forked or lost the session in {forks} of {TRIALS} trials"
    );
}

/// [`TRIALS`] trials of a rotation racing a logout, and of a rotation
/// racing log-out-everywhere, started together: a logout that found the
/// session leaves nothing live, the rotation and the logout never both
/// succeed, and after log-out-everywhere nothing of the subject is live.
pub async fn concurrent_rotate_and_logout_never_resurrect(store: Arc<dyn SessionStore>) {
    let m = manager(Arc::clone(&store));
    let mut broken = 0;
    for trial in 0..TRIALS {
        let everywhere = trial % 2 == 1;
        let subject = unique_subject("rot-logout-race");
        let created = m
            .create(Some(&subject), Counter::default())
            .await
            .expect("create");
        let mut copy = m
            .load(created.ticket().as_str())
            .await
            .expect("load")
            .expect("live");
        let barrier = Arc::new(Barrier::new(2));
        let rotation = tokio::spawn({
            let (m, barrier) = (m.clone(), Arc::clone(&barrier));
            async move {
                barrier.wait().await;
                m.rotate(&mut copy).await
            }
        });
        let logout = tokio::spawn({
            let (m, barrier, subject) = (m.clone(), Arc::clone(&barrier), subject.clone());
            let ticket = created.ticket().as_str().to_owned();
            async move {
                barrier.wait().await;
                if everywhere {
                    m.destroy_subject(&subject).await.map(|n| n > 0)
                } else {
                    m.destroy(&ticket).await
                }
            }
        });
        let rotated = rotation.await.expect("rotation task");
        let logged_out = logout
            .await
            .expect("logout task")
            .expect("the logout itself");
        if let Err(ref e) = rotated
            && !lost_rotation(&rotated)
        {
            panic!(
                "trial {trial}: a losing rotation must fail with NotFound or Conflict, got {e:?}"
            );
        }
        let live = live_ids(&store, &subject).await.len();
        let ok = if everywhere {
            live == 0
        } else if logged_out {
            // The logout removed the original: the rotation must have lost.
            rotated.is_err() && live == 0
        } else {
            // The rotation won first; the logout of the old ticket was a
            // no-op and the rotated session lives on.
            rotated.is_ok() && live == 1
        };
        if !ok {
            broken += 1;
            eprintln!(
                "trial {trial} ({}): rotation {rotated:?}, logout found it: {logged_out}, live afterwards: {live}",
                if everywhere { "everywhere" } else { "destroy" }
            );
        }
    }
    assert_eq!(
        broken, 0,
        "a rotation racing a logout resurrected or lost the session in {broken} of {TRIALS} trials"
    );
}

/// [`TRIALS`] trials of `create` (a login) racing `delete_subject` (log
/// out everywhere) for the same subject: afterwards the subject index tells
/// the truth — a session that loads is listed, and a listed one loads.
pub async fn create_vs_delete_subject_index_agrees(store: Arc<dyn SessionStore>) {
    let mut disagreements = 0;
    for trial in 0..TRIALS {
        let subject = unique_subject("create-race");
        let old = fresh_record(Some(&subject), &b"old"[..], LONG_TTL);
        store
            .create(&old)
            .await
            .expect("create the earlier session");
        let new = fresh_record(Some(&subject), &b"new"[..], LONG_TTL);
        let barrier = Arc::new(Barrier::new(2));
        let create = tokio::spawn({
            let (store, barrier, new) = (Arc::clone(&store), Arc::clone(&barrier), new.clone());
            async move {
                barrier.wait().await;
                applied(|| store.create(&new)).await
            }
        });
        let delete = tokio::spawn({
            let (store, barrier, subject) =
                (Arc::clone(&store), Arc::clone(&barrier), subject.clone());
            async move {
                barrier.wait().await;
                applied(|| store.delete_subject(&subject)).await
            }
        });
        create
            .await
            .expect("create task")
            .expect("the racing create");
        delete
            .await
            .expect("delete task")
            .expect("the racing delete_subject");
        let listed: Vec<SessionId> = store
            .list_subject(&subject)
            .await
            .expect("list_subject")
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mut bad = false;
        for record in [&old, &new] {
            let loaded = loads(&store, &record.id).await;
            if loaded != listed.contains(&record.id) {
                bad = true;
            }
        }
        if loads(&store, &old.id).await {
            bad = true; // delete_subject started after old was created
        }
        if bad {
            disagreements += 1;
            eprintln!(
                "trial {trial}: listed {} of the subject's sessions, old loads: {}, new loads: {}",
                listed.len(),
                loads(&store, &old.id).await,
                loads(&store, &new.id).await
            );
        }
        // Leave nothing behind.
        let _ = store.delete_subject(&subject).await;
    }
    assert_eq!(
        disagreements, 0,
        "after create raced delete_subject, the subject index disagreed with the sessions in {disagreements} of {TRIALS} trials"
    );
}

/// [`TRIALS`] trials of eight concurrent `compare_and_delete` calls for
/// the same version of one record: exactly one returns `Ok`, the others
/// `NotFound`, and the record is gone.
pub async fn concurrent_compare_and_delete_one_wins(store: Arc<dyn SessionStore>) {
    const CALLERS: usize = 8;
    let mut broken = 0;
    for trial in 0..TRIALS {
        let record = fresh_record(Some(&unique_subject("cad-race")), &b"x"[..], LONG_TTL);
        store.create(&record).await.expect("create");
        let barrier = Arc::new(Barrier::new(CALLERS));
        let mut tasks = Vec::new();
        for _ in 0..CALLERS {
            let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), record.id);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                applied(|| store.compare_and_delete(&id, 1)).await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            match task.await.expect("compare_and_delete task") {
                Ok(()) => wins += 1,
                Err(Error::NotFound) => {}
                Err(e) => {
                    panic!("trial {trial}: a losing compare_and_delete must be NotFound, got {e:?}")
                }
            }
        }
        if wins != 1 || loads(&store, &record.id).await {
            broken += 1;
            eprintln!("trial {trial}: {wins} compare_and_delete calls won");
        }
    }
    assert_eq!(
        broken, 0,
        "compare_and_delete was not atomic in {broken} of {TRIALS} trials"
    );
}

/// IDs at rest: what the store keeps (as listed by the store itself) holds
/// no working ticket. Sessions are created, saved and rotated through the
/// manager; every stored ID, tried as a ticket, finds nothing, and no
/// ticket appears as a stored ID.
pub async fn stored_ids_are_not_tickets(store: Arc<dyn SessionStore>) {
    let m = manager(Arc::clone(&store));
    let subject = unique_subject("at-rest");
    let mut tickets = Vec::new();
    for _ in 0..5 {
        let s = m
            .create(Some(&subject), Counter::default())
            .await
            .expect("create");
        tickets.push(s.ticket().as_str().to_owned());
    }
    let mut rotated = m.load(&tickets[0]).await.expect("load").expect("live");
    m.rotate(&mut rotated).await.expect("rotate");
    tickets.push(rotated.ticket().as_str().to_owned());
    m.update(&tickets[1], |c| c.value += 1)
        .await
        .expect("update");
    let stored = store
        .list_subject(&subject)
        .await
        .expect("list_subject of the test subject");
    assert_eq!(stored.len(), 5);
    for record in stored {
        let key = record.id.as_str();
        assert!(
            !tickets.iter().any(|t| t == key),
            "the store keeps a ticket as its key"
        );
        assert!(
            m.load(key).await.expect("load").is_none(),
            "an ID read from the store worked as a ticket"
        );
    }
}

/// Logins at once per trial of [`subject_limit_holds_under_concurrent_logins`].
pub const LOGINS: usize = 8;
/// The per-subject limit that test enforces.
pub const LIMIT: usize = 3;

/// `max_sessions_per_subject`: [`LOGINS`] concurrent logins of a subject
/// that already has [`LIMIT`] sessions, 20 trials per policy. Evicting the
/// least recently used never leaves more than the limit (and the newest
/// logins are the ones left); refusing new logins refuses every one of them
/// and keeps exactly the sessions that were there.
pub async fn subject_limit_holds_under_concurrent_logins(store: Arc<dyn SessionStore>) {
    use sessionkit_core::SessionLimit;
    for policy in [
        SessionLimit::EvictLeastRecentlyUsed,
        SessionLimit::RefuseNew,
    ] {
        let m: SessionManager<Counter> = SessionManager::stateful_shared(Arc::clone(&store))
            .max_sessions_per_subject(LIMIT, policy)
            .build()
            .expect("a manager with a session limit");
        for trial in 0..20 {
            let subject = unique_subject("limit");
            let mut earlier = Vec::new();
            for _ in 0..LIMIT {
                let s = m
                    .create(Some(&subject), Counter::default())
                    .await
                    .expect("create");
                earlier.push(s.id());
            }
            // Recency is kept to the millisecond: let the clock move on so
            // that the new logins are strictly more recent.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let barrier = Arc::new(Barrier::new(LOGINS));
            let mut tasks = Vec::new();
            for _ in 0..LOGINS {
                let (m, barrier, subject) = (m.clone(), Arc::clone(&barrier), subject.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    m.create(Some(&subject), Counter::default()).await
                }));
            }
            let mut accepted = Vec::new();
            for task in tasks {
                match task.await.expect("login task") {
                    Ok(s) => accepted.push(s.id()),
                    Err(Error::TooManySessions { limit }) => assert_eq!(limit, LIMIT),
                    Err(e) => panic!("trial {trial} ({policy:?}): a login failed with {e:?}"),
                }
            }
            let live = live_ids(&store, &subject).await;
            assert!(
                live.len() <= LIMIT,
                "trial {trial} ({policy:?}): {} live sessions, the limit is {LIMIT}",
                live.len()
            );
            match policy {
                SessionLimit::RefuseNew => {
                    assert!(
                        accepted.is_empty(),
                        "trial {trial}: a login over the limit was accepted"
                    );
                    let mut expected = earlier.clone();
                    expected.sort();
                    assert_eq!(
                        live, expected,
                        "trial {trial}: refusing new logins changed the old sessions"
                    );
                }
                _ => {
                    assert!(!live.is_empty());
                    assert!(
                        live.iter().all(|id| !earlier.contains(id)),
                        "trial {trial}: an older session survived while newer logins were evicted"
                    );
                }
            }
        }
    }
}

/// `scan` while sessions are created and deleted: every record live for
/// the whole enumeration is returned (at least once), and nothing it
/// returns is a record deleted before the scan started.
pub async fn scan_during_churn_sees_every_stable_record(store: Arc<dyn SessionStore>) {
    let subject = unique_subject("scan-churn");
    let mut stable = Vec::new();
    for _ in 0..60 {
        let r = fresh_record(Some(&subject), &b"stable"[..], LONG_TTL);
        store.create(&r).await.expect("create");
        stable.push(r.id);
    }
    let gone = fresh_record(Some(&subject), &b"gone"[..], LONG_TTL);
    store.create(&gone).await.expect("create");
    store.delete(&gone.id).await.expect("delete");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = tokio::spawn({
        let (store, stop, subject) = (Arc::clone(&store), Arc::clone(&stop), subject.clone());
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2_000 {
                let r = fresh_record(Some(&subject), &b"churn"[..], LONG_TTL);
                store.create(&r).await.expect("churn create");
                store.delete(&r.id).await.expect("churn delete");
                n += 1;
            }
        }
    });
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    for _ in 0..1_000_000 {
        let page = store.scan(cursor.as_ref(), 16).await.expect("scan");
        seen.extend(page.records.into_iter().map(|r| r.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.await.expect("churn task");
    let missing = stable.iter().filter(|id| !seen.contains(id)).count();
    assert_eq!(
        missing, 0,
        "scan under churn missed {missing} of 60 stable records"
    );
    assert!(
        !seen.contains(&gone.id),
        "scan returned a record deleted before it started"
    );
    let _ = store.delete_subject(&subject).await;
}
