//! One connection type over standalone and cluster, and the mapping of
//! redis errors to sessionkit errors.

use std::future::Future;
#[cfg(feature = "cluster")]
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};
use sessionkit_core::Error;

/// The connection a store uses: every command of the store logic goes
/// through this one type, so the logic exists once for both deployments.
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(Arc<ClusterShared>),
}

impl Conn {
    /// Notes the outcome of one bounded store call: on a cluster, a streak of
    /// timeouts replaces the cluster connection (see [`ClusterShared`]).
    pub(crate) fn record<T>(&self, result: &Result<T, Error>) {
        match self {
            Conn::Standalone(_) => {
                let _ = result;
            }
            #[cfg(feature = "cluster")]
            Conn::Cluster(shared) => shared.record(matches!(result, Err(Error::Timeout(_)))),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(shared) => {
                let mut c = shared.current();
                Box::pin(async move { c.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(shared) => {
                let mut c = shared.current();
                Box::pin(async move { c.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(shared) => shared.current().get_db(),
        }
    }
}

/// Maps a redis error: I/O, dropped connections, cluster reconfiguration
/// and loading/failover states are transient backend errors; client-side
/// timeouts are [`Error::Timeout`]; everything else is a non-transient
/// backend error.
pub(crate) fn map_err(e: RedisError, timeout: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout(Some(timeout));
    }
    let transient = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(ServerErrorKind::BusyLoading)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
                | ErrorKind::Server(ServerErrorKind::ReadOnly)
                | ErrorKind::Server(ServerErrorKind::TryAgain)
        );
    Error::backend(e, transient)
}

/// Runs `fut` with an overall deadline of `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(Some(timeout))),
    }
}

/// Whether `e` says the connection is dead: an I/O error (a broken pipe, a
/// reset, a connection closed before the reply, a refused reconnection),
/// not a timeout and not an answer of the server. Such a request either
/// never reached the server or got no reply from it; a read or a call that
/// is safe to repeat retries it once on a new connection (see
/// `RedisStore::bounded_retry`).
pub(crate) fn connection_lost(e: &Error) -> bool {
    let Error::Backend { source, .. } = e else {
        return false;
    };
    source
        .downcast_ref::<RedisError>()
        .is_some_and(|r| (r.is_io_error() || r.is_connection_dropped()) && !r.is_timeout())
}

/// How many store calls in a row must time out before the cluster connection
/// is replaced.
#[cfg(feature = "cluster")]
pub(crate) const CLUSTER_TIMEOUT_STREAK: u32 = 3;

/// The cluster connection of a store and what is needed to replace it.
///
/// The redis crate's async cluster connection (1.x) runs all requests of a
/// connection through one driver task. After slot migrations under load that
/// task can stop serving requests for good (most likely its slot-refresh
/// future waits for the connection map's write lock, which in-flight requests
/// it does not poll during the refresh hold or queue for), so every later
/// command times out without reaching a server, while a new connection from
/// the same client works at once. The
/// store therefore counts store calls that end in [`Error::Timeout`] (any
/// other outcome resets the count); after [`CLUSTER_TIMEOUT_STREAK`] in a
/// row it builds a new connection from the client in the background and
/// swaps it in (at most once per `min_interval`). Calls already running
/// finish on the old connection, which is dropped with its last clone.
#[cfg(feature = "cluster")]
pub(crate) struct ClusterShared {
    /// `None` for a store built from a caller's connection: never replaced.
    client: Option<redis::cluster::ClusterClient>,
    conn: std::sync::RwLock<redis::cluster_async::ClusterConnection>,
    timeouts: std::sync::atomic::AtomicU32,
    rebuilding: std::sync::atomic::AtomicBool,
    last_rebuild: std::sync::Mutex<Option<std::time::Instant>>,
    /// The bound of one reconnection.
    connect_bound: Duration,
    /// The least time between two replacements.
    min_interval: Duration,
}

#[cfg(feature = "cluster")]
impl ClusterShared {
    pub(crate) fn new(
        client: Option<redis::cluster::ClusterClient>,
        conn: redis::cluster_async::ClusterConnection,
        connect_bound: Duration,
        min_interval: Duration,
    ) -> Self {
        ClusterShared {
            client,
            conn: std::sync::RwLock::new(conn),
            timeouts: Default::default(),
            rebuilding: Default::default(),
            last_rebuild: std::sync::Mutex::new(None),
            connect_bound,
            min_interval,
        }
    }

    /// A handle on the current connection (cheap: a channel sender).
    pub(crate) fn current(&self) -> redis::cluster_async::ClusterConnection {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(self: &Arc<Self>, timed_out: bool) {
        use std::sync::atomic::Ordering;
        if !timed_out {
            self.timeouts.store(0, Ordering::Relaxed);
            return;
        }
        let streak = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < CLUSTER_TIMEOUT_STREAK || self.client.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let last = self
                .last_rebuild
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < self.min_interval) {
                self.rebuilding.store(false, Ordering::Release);
                return;
            }
        }
        let shared = Arc::clone(self);
        runtime.spawn(async move {
            shared.rebuild(streak).await;
            shared.rebuilding.store(false, Ordering::Release);
        });
    }

    async fn rebuild(&self, streak: u32) {
        let Some(client) = &self.client else { return };
        tracing::warn!(
            timeouts_in_a_row = streak,
            "redis cluster connection stopped answering; building a new one"
        );
        let result = tokio::time::timeout(self.connect_bound, client.get_async_connection()).await;
        *self
            .last_rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
        match result {
            Ok(Ok(conn)) => {
                *self
                    .conn
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
                self.timeouts.store(0, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("redis cluster connection replaced");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not build a new redis cluster connection; will retry after more timeouts");
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.connect_bound, "building a new redis cluster connection timed out; will retry after more timeouts");
            }
        }
    }
}
