//! Session lifecycle events, and the instrumentation of store calls
//! (tracing spans always; `metrics` counters and histograms with the
//! feature of that name).
//!
//! # Events
//!
//! [`SessionManager::subscribe`](crate::SessionManager::subscribe) returns
//! an [`EventReceiver`]: created, rotated, destroyed, logged out
//! everywhere, expired, a compare-and-swap conflict, a rejected ticket
//! (with the reason). Delivery never slows a request: each subscriber has a
//! bounded queue, an event that finds it full is dropped for that
//! subscriber and counted ([`ManagerStats::events_dropped`]), and a
//! manager with no subscriber does no work beyond one atomic load.
//!
//! Events never carry a whole session ID (an ID is a credential): only the
//! short redacted prefix that logs show.
//!
//! # Metrics (feature `metrics`)
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, so any exporter
//! (Prometheus, StatsD, …) installed by the application receives them:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `sessionkit_store_calls_total` | counter | `backend`, `op`, `outcome` |
//! | `sessionkit_store_call_seconds` | histogram | `backend`, `op` |
//! | `sessionkit_events_total` | counter | `event` |
//!
//! `outcome` is `ok`, `not_found`, `conflict`, `aborted`, `timeout`,
//! `transient`, `decode` or `error`. A cache's hits, misses and
//! invalidations are in `CachedStore::stats()` (sessionkit-memory).
//!
//! # Tracing
//!
//! Every store call the manager makes runs in a `sessionkit.store` span at
//! debug level with `backend` and `op` fields (never the ID).
//!
//! [`ManagerStats::events_dropped`]: crate::ManagerStats::events_dropped

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::error::{Error, Result, TokenRejection};
use crate::timestamp::Timestamp;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A session was created (a login or a first visit).
    Created,
    /// A session got a new ID or token ID.
    Rotated,
    /// A session was ended (logout).
    Destroyed,
    /// Every session of a subject was ended ("log out everywhere");
    /// `count` is how many (stateful) or 0 (stateless).
    LoggedOutEverywhere {
        /// Sessions ended (stateful mode).
        count: u64,
    },
    /// A session past its absolute timeout was found and removed.
    Expired,
    /// A save lost a compare-and-swap race (another request saved first).
    Conflict,
    /// A rotation lost against a concurrent end of the session, or another
    /// rotation.
    RotationRefused,
    /// A ticket was rejected: malformed, forged, expired or revoked.
    TicketRejected {
        /// Why, for tokens; `None` for a malformed session ID.
        reason: Option<TokenRejection>,
        /// Whether it was revoked (logout) rather than invalid.
        revoked: bool,
    },
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionEvent {
    /// What happened.
    pub kind: EventKind,
    /// The subject, when known.
    pub subject: Option<String>,
    /// The redacted prefix of the session ID (never the whole ID).
    pub session: Option<String>,
    /// When it happened.
    pub at: Timestamp,
}

/// The receiving end of [`SessionManager::subscribe`](crate::SessionManager::subscribe).
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<SessionEvent>,
}

impl EventReceiver {
    /// The next event; `None` once the manager is gone.
    pub async fn recv(&mut self) -> Option<SessionEvent> {
        self.rx.recv().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<SessionEvent> {
        self.rx.try_recv().ok()
    }
}

/// The manager's side: subscribers and the drop counter.
#[derive(Default)]
pub(crate) struct Events {
    any: AtomicBool,
    subscribers: Mutex<Vec<mpsc::Sender<SessionEvent>>>,
    pub(crate) dropped: AtomicU64,
}

impl Events {
    pub(crate) fn subscribe(&self, capacity: usize) -> EventReceiver {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.push(tx);
        self.any.store(true, Ordering::Release);
        EventReceiver { rx }
    }

    /// Sends to every subscriber without waiting; full queues drop it.
    pub(crate) fn emit(
        &self,
        kind: EventKind,
        subject: Option<&str>,
        session: Option<&crate::id::SessionId>,
    ) {
        #[cfg(feature = "metrics")]
        metrics::counter!("sessionkit_events_total", "event" => event_name(kind)).increment(1);
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let event = SessionEvent {
            kind,
            subject: subject.map(str::to_owned),
            session: session.map(|id| id.redacted()),
            at: Timestamp::now(),
        };
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if subs.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }

    /// The event for a ticket the manager refused.
    pub(crate) fn rejected(&self, error: &Error) {
        let kind = match error {
            Error::InvalidToken(reason) => EventKind::TicketRejected {
                reason: Some(*reason),
                revoked: false,
            },
            Error::Revoked => EventKind::TicketRejected {
                reason: None,
                revoked: true,
            },
            Error::InvalidId | Error::Expired => EventKind::TicketRejected {
                reason: None,
                revoked: false,
            },
            _ => return,
        };
        self.emit(kind, None, None);
    }
}

#[cfg(feature = "metrics")]
fn event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Created => "created",
        EventKind::Rotated => "rotated",
        EventKind::Destroyed => "destroyed",
        EventKind::LoggedOutEverywhere { .. } => "logged_out_everywhere",
        EventKind::Expired => "expired",
        EventKind::Conflict => "conflict",
        EventKind::RotationRefused => "rotation_refused",
        EventKind::TicketRejected { .. } => "ticket_rejected",
    }
}

/// Runs one store call inside a `sessionkit.store` span and records its
/// outcome and latency (feature `metrics`).
pub(crate) async fn observe<R>(
    backend: &'static str,
    op: &'static str,
    call: impl Future<Output = Result<R>>,
) -> Result<R> {
    let span = tracing::debug_span!("sessionkit.store", backend, op);
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let result = call.instrument(span).await;
    #[cfg(feature = "metrics")]
    {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::NotFound) => "not_found",
            Err(Error::Conflict) => "conflict",
            Err(Error::Aborted(_)) => "aborted",
            Err(Error::Timeout(_)) => "timeout",
            Err(Error::Decode(_)) => "decode",
            Err(e) if e.is_transient() => "transient",
            Err(_) => "error",
        };
        metrics::counter!("sessionkit_store_calls_total", "backend" => backend, "op" => op, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("sessionkit_store_call_seconds", "backend" => backend, "op" => op)
            .record(started.elapsed().as_secs_f64());
    }
    result
}
