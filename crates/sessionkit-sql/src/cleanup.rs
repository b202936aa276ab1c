//! Periodic purge of expired rows.

use std::future::Future;
use std::time::Duration;

use sessionkit_core::SessionStore;
use tokio::task::JoinHandle;

/// The first retry delay after a failed purge; doubled on each further
/// failure, never beyond the interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Runs [`SessionStore::delete_expired`] every `interval` on the current
/// tokio runtime until `shutdown` completes (then the task returns; a purge
/// in progress is finished first, since every batch is its own statement a
/// stop never leaves anything half done).
///
/// Failures are logged with `tracing` (`warn`) and retried after a short
/// back-off (1 s, doubling, at most `interval`); the task never exits because
/// of an error.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo() -> sessionkit_core::Result<()> {
/// use std::time::Duration;
/// use sessionkit_sql::{SqlStore, spawn_cleanup};
///
/// let store = SqlStore::connect("sqlite::memory:").await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let task = spawn_cleanup(store.clone(), Duration::from_secs(60), async move {
///     let _ = stopped.await;
/// });
/// // … on shutdown:
/// let _ = stop.send(());
/// task.await.expect("cleanup task");
/// # Ok(()) }
/// ```
pub fn spawn_cleanup<S, F>(store: S, interval: Duration, shutdown: F) -> JoinHandle<()>
where
    S: SessionStore,
    F: Future<Output = ()> + Send + 'static,
{
    let interval = interval.max(Duration::from_millis(1));
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut delay = interval;
        let mut backoff = FIRST_RETRY.min(interval);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep(delay) => {}
            }
            match store.delete_expired().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(removed = n, "sessionkit-sql: purged expired sessions");
                    }
                    delay = interval;
                    backoff = FIRST_RETRY.min(interval);
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "sessionkit-sql: purging expired sessions failed");
                    delay = backoff;
                    backoff = (backoff * 2).min(interval);
                }
            }
        }
        tracing::debug!("sessionkit-sql: cleanup task stopped");
    })
}
