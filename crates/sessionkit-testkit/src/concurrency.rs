//! The concurrency test: read-modify-write through the session manager
//! from many tasks on one session must lose no update.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sessionkit_core::{Error, SessionManager, SessionStore};

/// Tasks run at once.
pub const TASKS: u64 = 32;
/// Increments each task makes.
pub const INCREMENTS: u64 = 50;
/// The whole test must finish within this time.
const DEADLINE: Duration = Duration::from_secs(180);
/// How long an instance may take to see another instance's last write
/// (cross-instance cache invalidation is asynchronous).
const CONVERGENCE: Duration = Duration::from_secs(2);
/// Task-level retries after the manager gave up, per task, before the test
/// declares the store live-locked.
const MAX_TASK_RETRIES: u64 = 10_000;

/// The session data the concurrency test increments.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    /// How many increments were applied.
    pub value: u64,
}

/// What a concurrency run observed (for the caller's diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConcurrencyReport {
    /// `SessionManager::update` calls that returned `Ok`.
    pub successful_updates: u64,
    /// The counter's final value (equal to `successful_updates`).
    pub final_value: u64,
    /// Times a task got `Err(Conflict)` after the manager's own retries
    /// and started the update again.
    pub task_retries: u64,
    /// Compare-and-swap conflicts the managers retried internally.
    pub manager_conflicts: u64,
}

/// 32 tasks each make 50 increments of one session's counter through
/// [`SessionManager::update`]; the final counter must be exactly
/// 32 × 50 and equal to the number of updates that returned `Ok`.
///
/// A task that gets `Err(Conflict)` after the manager's bounded retries
/// starts that increment again (counted in
/// [`ConcurrencyReport::task_retries`]); any other error fails the test.
/// Needs a Tokio runtime; on a multi-threaded one the tasks really run in
/// parallel.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// use sessionkit_core::testing::VecStore;
///
/// let report = sessionkit_testkit::concurrent_updates_lose_nothing(VecStore::default()).await;
/// assert_eq!(report.final_value, 32 * 50);
/// # }
/// ```
///
/// # Panics
///
/// When an update is lost or duplicated, on any error but `Conflict`, or
/// when the run does not finish within three minutes.
pub async fn concurrent_updates_lose_nothing<S: SessionStore>(store: S) -> ConcurrencyReport {
    let manager = build(store);
    hammer(vec![manager]).await
}

/// The same test with two manager instances over two stores that share
/// one backend (two application instances, for example each with its own
/// `CachedStore` in front of one Redis): tasks alternate between the
/// instances, the session is created through the first and checked through
/// both.
///
/// # Panics
///
/// As [`concurrent_updates_lose_nothing`], and when the two instances do
/// not agree on the final value.
pub async fn concurrent_updates_two_instances<A, B>(store_a: A, store_b: B) -> ConcurrencyReport
where
    A: SessionStore,
    B: SessionStore,
{
    hammer(vec![build(store_a), build(store_b)]).await
}

fn build<S: SessionStore>(store: S) -> SessionManager<Counter> {
    match SessionManager::<Counter>::stateful(store).build() {
        Ok(manager) => manager,
        Err(e) => panic!("could not build a SessionManager over the store: {e:?}"),
    }
}

async fn hammer(managers: Vec<SessionManager<Counter>>) -> ConcurrencyReport {
    let subject = crate::cases::unique_subject("concurrency");
    let session = match managers[0].create(Some(&subject), Counter::default()).await {
        Ok(session) => session,
        Err(e) => panic!("create of the shared session failed: {e:?}"),
    };
    let ticket: Arc<str> = session.ticket().as_str().into();
    let successes = Arc::new(AtomicU64::new(0));
    let task_retries = Arc::new(AtomicU64::new(0));

    let run = async {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let manager = managers[task as usize % managers.len()].clone();
            let ticket = Arc::clone(&ticket);
            let successes = Arc::clone(&successes);
            let task_retries = Arc::clone(&task_retries);
            tasks.push(tokio::spawn(async move {
                let mut retries = 0;
                for _ in 0..INCREMENTS {
                    loop {
                        match manager.update(&ticket, |c| c.value += 1).await {
                            Ok(_) => {
                                successes.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(Error::Conflict) => {
                                retries += 1;
                                task_retries.fetch_add(1, Ordering::Relaxed);
                                assert!(
                                    retries < MAX_TASK_RETRIES,
                                    "task {task}: {retries} updates ended in Conflict"
                                );
                                tokio::task::yield_now().await;
                            }
                            Err(e) => panic!("task {task}: update failed: {e:?}"),
                        }
                    }
                }
            }));
        }
        for task in tasks {
            if let Err(e) = task.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    };
    if tokio::time::timeout(DEADLINE, run).await.is_err() {
        panic!(
            "the concurrency test did not finish within {DEADLINE:?} ({} of {} updates done)",
            successes.load(Ordering::Relaxed),
            TASKS * INCREMENTS
        );
    }

    let successful_updates = successes.load(Ordering::Relaxed);
    let mut final_value = None;
    for (i, manager) in managers.iter().enumerate() {
        // Instances that cache reads see another instance's last write once
        // its invalidation arrives (asynchronously), so each instance gets a
        // short, bounded time to converge. Lost updates cannot hide behind
        // this: the stored value must still be exactly the total.
        let converge_by = std::time::Instant::now() + CONVERGENCE;
        let loaded = loop {
            let loaded = match manager.load(&ticket).await {
                Ok(Some(session)) => session,
                Ok(None) => panic!("instance {i}: the shared session is gone"),
                Err(e) => panic!("instance {i}: load of the shared session failed: {e:?}"),
            };
            if loaded.data().value == TASKS * INCREMENTS || std::time::Instant::now() >= converge_by
            {
                break loaded;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let value = loaded.data().value;
        assert_eq!(
            value,
            TASKS * INCREMENTS,
            "instance {i}: {TASKS} tasks x {INCREMENTS} increments must end at exactly {} \
             (updates reported Ok: {successful_updates}, stored version {})",
            TASKS * INCREMENTS,
            loaded.version()
        );
        assert_eq!(
            value, successful_updates,
            "instance {i}: the counter must equal the number of successful updates"
        );
        if let Some(previous) = final_value.replace(value) {
            assert_eq!(previous, value, "the instances disagree on the final value");
        }
    }
    let manager_conflicts = managers.iter().map(|m| m.stats().update_conflicts).sum();
    let _ = managers[0].destroy(&ticket).await;
    ConcurrencyReport {
        successful_updates,
        final_value: final_value.unwrap_or_default(),
        task_retries: task_retries.load(Ordering::Relaxed),
        manager_conflicts,
    }
}
