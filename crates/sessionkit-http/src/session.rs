//! The per-request session state machine behind the web integrations'
//! handles, and what happens after the handler.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sessionkit_core::{Bag, Result, Session, SessionData, SessionId, SessionManager, Timestamp};
use tokio::sync::{Mutex, MutexGuard};

use crate::config::{BearerConfig, CookieConfig, HeaderChange, HeaderMode, Transport};
use crate::error::{RETRY_AFTER, is_conflict, is_ended, needs_retry_after, status_for};

/// What the request's session currently is.
enum Current<T> {
    /// No session (none presented, or not valid).
    Empty,
    /// A stored session (or, stateless, a verified token).
    Live(Session<T>),
    /// Data given to an empty session; the session is created after the
    /// handler unless the response is a server error.
    Pending { subject: Option<String>, data: T },
}

struct State<T> {
    /// Whether the presented tickets were looked up already.
    loaded: bool,
    current: Current<T>,
    /// The live session's data changed since it was loaded or last written.
    dirty: bool,
    /// `destroy` ran: the client must drop its ticket unless it receives a
    /// new one.
    cleared: bool,
    /// The live session's ticket must be sent to the client (it was
    /// created, rotated or re-issued during this request).
    send_ticket: bool,
}

impl<T> State<T> {
    fn set_live(&mut self, session: Session<T>) {
        self.send_ticket |= session.ticket_changed();
        self.current = Current::Live(session);
    }

    /// The live session turned out to be gone (ended, rotated or expired by
    /// another request): nothing is left to save or to send. The client's
    /// ticket is left alone rather than cleared, since a concurrent request
    /// (a rotation) may just have given the client a new, live one.
    fn gone(&mut self) {
        self.current = Current::Empty;
        self.dirty = false;
        self.send_ticket = false;
    }
}

struct Shared<T> {
    manager: SessionManager<T>,
    /// What the request presented, in the order to try.
    presented: Vec<String>,
    state: Mutex<State<T>>,
}

/// The request's session: the framework-independent core of
/// `sessionkit_axum::SessionHandle` and `sessionkit_actix::SessionHandle`,
/// which wrap it (use those in handlers).
///
/// Loaded lazily the first time a method needs it (a handler that never
/// touches the session costs no store access). Changes made through
/// [`set_data`](Self::set_data), [`modify`](Self::modify),
/// [`modify_or_insert_with`](Self::modify_or_insert_with),
/// [`set_subject`](Self::set_subject) and, on a [`Bag`] session,
/// [`insert`](Self::insert) and [`remove`](Self::remove) are written by
/// [`finish`](Self::finish) after the handler, unless the handler answered
/// with a 5xx; stateful, a save that lost a compare-and-swap race turns the
/// response into the conflict status (409), never a silently lost update.
/// [`update`](Self::update), [`create`](Self::create),
/// [`login`](Self::login), [`rotate`](Self::rotate) and
/// [`destroy`](Self::destroy) act on the store at once; the ticket changes
/// they cause are sent to the client even if the handler then answers with
/// a 5xx, because the old ticket may already be dead.
///
/// An unknown, malformed, expired or revoked ticket is an empty session,
/// never an error; a new session always gets a fresh server-generated ID.
/// No method hands out a guard or a reference into the session: data is
/// read and changed through closures that cannot await, so no handler can
/// hold the request's session lock across an `.await`.
///
/// A web integration creates one per request with
/// [`new`](Self::new) from the [`SessionConfig::tickets`] of the request,
/// gives clones to the handler, and calls [`finish`](Self::finish) with the
/// handler's status, then applies the returned [`Finish`].
pub struct RequestSession<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for RequestSession<T> {
    fn clone(&self) -> Self {
        RequestSession {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for RequestSession<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSession")
            .field("presented", &self.shared.presented.len())
            .finish_non_exhaustive()
    }
}

/// A summary of the request's session, safe to log (the ID is redacted
/// when displayed through [`SessionId::redacted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The ID the session is kept under
    /// ([`Session::id`](sessionkit_core::Session::id)): stateful, a hash of
    /// the ticket's ID unless ID hashing was turned off; stateless, the
    /// token ID. Stable until the session is rotated; compare it with the
    /// IDs of `list_subject`, end other sessions with `destroy_id`. Log it
    /// redacted (with hashing off it is the credential itself).
    pub id: SessionId,
    /// The principal, if any.
    pub subject: Option<String>,
    /// When the session started.
    pub created_at: Timestamp,
    /// When it expires unless used again.
    pub expires_at: Timestamp,
}

impl<T: SessionData> RequestSession<T> {
    /// A not yet loaded session for a request that presented these tickets
    /// (in the order to try them; see [`Transport::tickets`]).
    pub fn new(manager: SessionManager<T>, presented: Vec<String>) -> Self {
        RequestSession {
            shared: Arc::new(Shared {
                manager,
                presented,
                state: Mutex::new(State {
                    loaded: false,
                    current: Current::Empty,
                    dirty: false,
                    cleared: false,
                    send_ticket: false,
                }),
            }),
        }
    }

    /// The manager behind this session (for `list_subject`,
    /// `destroy_subject` and the like).
    pub fn manager(&self) -> &SessionManager<T> {
        &self.shared.manager
    }

    /// Locks the state, loading the session first if no method did yet.
    /// A backend failure is returned (and the load retried on the next
    /// call); an invalid ticket is an empty session.
    async fn state(&self) -> Result<MutexGuard<'_, State<T>>> {
        let mut state = self.shared.state.lock().await;
        if !state.loaded {
            self.load_into(&mut state, false).await?;
        }
        Ok(state)
    }

    /// The first load: the first presented ticket with a live session wins.
    async fn load_into(&self, state: &mut State<T>, fresh: bool) -> Result<()> {
        for ticket in &self.shared.presented {
            let loaded = if fresh {
                self.shared.manager.load_fresh(ticket).await
            } else {
                self.shared.manager.load(ticket).await
            };
            match loaded {
                Ok(Some(session)) => {
                    state.set_live(session);
                    break;
                }
                Ok(None) => {}
                Err(e) if e.is_invalid_ticket() => {
                    tracing::debug!(error = %e, "ignoring an invalid session ticket");
                }
                Err(e) => return Err(e),
            }
        }
        state.loaded = true;
        Ok(())
    }

    /// Asks the source of truth, past any cache, whether the request's
    /// session is still live: for security decisions (a privileged action,
    /// a password, e-mail or payment change) that must not act on a session
    /// another instance already logged out. It re-reads the session through
    /// [`SessionManager::load_fresh`](sessionkit_core::SessionManager::load_fresh),
    /// which bypasses a `CachedStore`'s cache.
    ///
    /// Returns `true` when the session is live; unless the handler already
    /// changed it, the handle then holds the fresh copy (so a later save
    /// compares against the current version). Returns `false` without a
    /// stored session (data inserted during this request is not stored yet
    /// and is left as it is), and when the session is gone: ended, rotated
    /// or expired elsewhere; the handle is then empty for the rest of the
    /// request, exactly as if the request had presented no ticket.
    ///
    /// Stateless mode: the token's signature and expiry are checked again
    /// and the revocation list is read as usual; give the
    /// [`RevocationList`](sessionkit_core::RevocationList) an uncached store
    /// for revocations to be seen here at once.
    pub async fn verify_fresh(&self) -> Result<bool> {
        let mut guard = self.shared.state.lock().await;
        let state = &mut *guard;
        if !state.loaded {
            // Nothing was read yet: read from the source of truth at once.
            self.load_into(state, true).await?;
            return Ok(matches!(state.current, Current::Live(_)));
        }
        let ticket = match &state.current {
            Current::Live(s) => s.ticket().as_str().to_owned(),
            Current::Pending { .. } | Current::Empty => return Ok(false),
        };
        match self.shared.manager.load_fresh(&ticket).await {
            Ok(Some(fresh)) => {
                if !state.dirty {
                    state.set_live(fresh);
                }
                Ok(true)
            }
            Ok(None) => {
                state.gone();
                Ok(false)
            }
            Err(e) if e.is_invalid_ticket() => {
                tracing::debug!(error = %e, "the session is gone (fresh check)");
                state.gone();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the request has a session (a live one, or data inserted
    /// into an empty one during this request).
    pub async fn exists(&self) -> Result<bool> {
        Ok(!matches!(self.state().await?.current, Current::Empty))
    }

    /// A copy of the session data, `None` without a session (the
    /// whole-value getter; on a [`Bag`] session, [`get`](Self::get) reads
    /// one key). [`read`](Self::read) borrows instead of cloning.
    pub async fn data(&self) -> Result<Option<T>>
    where
        T: Clone,
    {
        self.read(T::clone).await
    }

    /// Reads the session data through `f`; `None` without a session.
    pub async fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Result<Option<R>> {
        let state = self.state().await?;
        Ok(match &state.current {
            Current::Live(s) => Some(f(s.data())),
            Current::Pending { data, .. } => Some(f(data)),
            Current::Empty => None,
        })
    }

    /// Changes the session data through `f` (saved after the handler);
    /// `None` without a session.
    ///
    /// `f` is a plain closure: it cannot await, so it cannot call other
    /// methods of this handle while the session is borrowed.
    pub async fn modify<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<Option<R>> {
        let mut state = self.state().await?;
        let state = &mut *state;
        Ok(match &mut state.current {
            Current::Live(s) => {
                state.dirty = true;
                Some(f(s.data_mut()))
            }
            Current::Pending { data, .. } => Some(f(data)),
            Current::Empty => None,
        })
    }

    /// Changes the session data through `f`, starting an anonymous
    /// session holding `default()` first when there is none: touching a
    /// possibly empty session in one call. Returns what `f` returns.
    ///
    /// Saved after the handler like [`modify`](Self::modify) (stateful:
    /// compare-and-swap, the conflict status when another request saved
    /// first); a session started here is stored, with a fresh
    /// server-generated ID, after the handler unless the response is a
    /// server error, exactly as with [`set_data`](Self::set_data).
    /// `default` runs only when there is no session.
    ///
    /// ```
    /// # use sessionkit_core::{SessionManager, testing::VecStore};
    /// # use sessionkit_http::RequestSession;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let manager = SessionManager::<Vec<String>>::stateful(VecStore::default()).build()?;
    /// let session = RequestSession::new(manager, Vec::new()); // a request without a ticket
    /// let len = session
    ///     .modify_or_insert_with(Vec::new, |cart| {
    ///         cart.push("apple".to_owned());
    ///         cart.len()
    ///     })
    ///     .await?;
    /// assert_eq!(len, 1);
    /// # Ok::<(), sessionkit_core::Error>(()) }).unwrap();
    /// ```
    pub async fn modify_or_insert_with<R>(
        &self,
        default: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R> {
        self.try_modify_or_insert_with(default, |data| Ok(f(data)))
            .await
    }

    /// [`modify_or_insert_with`](Self::modify_or_insert_with) with a
    /// fallible `f`, which must leave the data unchanged when it fails:
    /// then nothing is marked for saving and no session is started.
    async fn try_modify_or_insert_with<R>(
        &self,
        default: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> Result<R>,
    ) -> Result<R> {
        let mut state = self.state().await?;
        let state = &mut *state;
        match &mut state.current {
            Current::Live(s) => {
                let out = f(s.data_mut())?;
                state.dirty = true;
                Ok(out)
            }
            Current::Pending { data, .. } => f(data),
            Current::Empty => {
                let mut data = default();
                let out = f(&mut data)?;
                state.current = Current::Pending {
                    subject: None,
                    data,
                };
                Ok(out)
            }
        }
    }

    /// Replaces the session data (the whole-value setter; on a [`Bag`]
    /// session, [`insert`](Self::insert) sets one key). Without a session,
    /// starts an anonymous one holding `data`; it is stored (and its ticket
    /// sent) after the handler, unless the response is a server error.
    pub async fn set_data(&self, data: T) -> Result<()> {
        let mut state = self.state().await?;
        match &mut state.current {
            Current::Live(s) => {
                *s.data_mut() = data;
                state.dirty = true;
            }
            Current::Pending { data: d, .. } => *d = data,
            Current::Empty => {
                state.current = Current::Pending {
                    subject: None,
                    data,
                }
            }
        }
        Ok(())
    }

    /// The session's principal, if there is a session and it has one.
    pub async fn subject(&self) -> Result<Option<String>> {
        let state = self.state().await?;
        Ok(match &state.current {
            Current::Live(s) => s.subject().map(str::to_owned),
            Current::Pending { subject, .. } => subject.clone(),
            Current::Empty => None,
        })
    }

    /// Sets the session's principal (saved after the handler). Returns
    /// `false` without a session. At login, follow it with
    /// [`rotate`](Self::rotate), or use [`login`](Self::login).
    pub async fn set_subject(&self, subject: Option<&str>) -> Result<bool> {
        let mut state = self.state().await?;
        match &mut state.current {
            Current::Live(s) => {
                s.set_subject(subject)?;
                state.dirty = true;
                Ok(true)
            }
            Current::Pending { subject: sub, .. } => {
                if let Some(s) = subject {
                    sessionkit_core::validate_subject(s)?;
                }
                *sub = subject.map(str::to_owned);
                Ok(true)
            }
            Current::Empty => Ok(false),
        }
    }

    /// ID, subject and timestamps of the live session; `None` without one
    /// (also for a session inserted during this request and not yet
    /// stored).
    pub async fn info(&self) -> Result<Option<SessionInfo>> {
        let state = self.state().await?;
        Ok(match &state.current {
            Current::Live(s) => Some(SessionInfo {
                id: s.id(),
                subject: s.subject().map(str::to_owned),
                created_at: s.created_at(),
                expires_at: s.expires_at(),
            }),
            _ => None,
        })
    }

    /// Starts a new session for `subject` holding `data`, now. A session the
    /// request had is destroyed first, so the old ticket dies (nothing the
    /// client presented is ever reused as the new ID).
    pub async fn create(&self, subject: Option<&str>, data: T) -> Result<()> {
        let mut state = self.state().await?;
        if let Current::Live(old) = &state.current {
            match self.shared.manager.destroy(old.ticket().as_str()).await {
                // Expired or revoked meanwhile: ended already.
                Ok(_) => {}
                Err(e) if e.is_invalid_ticket() => {}
                Err(e) => return Err(e),
            }
            state.current = Current::Empty;
            state.cleared = true;
        }
        let session = self.shared.manager.create(subject, data).await?;
        state.set_live(session);
        state.dirty = false;
        Ok(())
    }

    /// Gives the session a new ID (stateful) or token ID (stateless), now;
    /// the old ticket stops working. Call it whenever privileges change,
    /// above all at login (session fixation defence). Pending changes are
    /// written with the new ID. Returns `false` without a stored session
    /// (an inserted, not yet stored session gets a fresh ID anyway).
    ///
    /// A rotation is atomic against concurrent requests of the same
    /// session (see
    /// [`SessionManager::rotate`](sessionkit_core::SessionManager::rotate)):
    /// when another request destroyed it, logged its subject out
    /// everywhere, rotated it or (stateful) saved it after this request
    /// loaded it, `rotate` fails with that error ([`Error::NotFound`](sessionkit_core::Error::NotFound),
    /// [`Error::Revoked`](sessionkit_core::Error::Revoked),
    /// [`Error::InvalidToken`](sessionkit_core::Error::InvalidToken) with
    /// `IssuedBeforeLogout`, or [`Error::Conflict`](sessionkit_core::Error::Conflict)),
    /// which [`status_for`](crate::status_for) answers with 409 Conflict (or the
    /// [`with_conflict_status`](SessionConfig::with_conflict_status)). Nothing
    /// is live under a new ticket and none is sent to the client; a session
    /// that was ended is empty for the rest of the request. Never a silent
    /// success.
    pub async fn rotate(&self) -> Result<bool> {
        let mut state = self.state().await?;
        let state = &mut *state;
        match &mut state.current {
            Current::Live(s) => match self.shared.manager.rotate(s).await {
                Ok(()) => {
                    state.dirty = false;
                    state.send_ticket = true;
                    Ok(true)
                }
                Err(e) => {
                    if is_ended(&e) {
                        state.gone();
                    }
                    Err(e)
                }
            },
            _ => Ok(false),
        }
    }

    /// Login: makes `subject` the session's principal and rotates its ID,
    /// keeping the data (an anonymous cart survives login). Without a
    /// session, creates one for `subject` holding `data()`.
    ///
    /// The rotation fails, and the login with it, when a concurrent request
    /// ended, rotated or saved the session after this request loaded it
    /// (see [`rotate`](Self::rotate)): answered with 409 Conflict, no new
    /// ticket is live or sent, and the principal is not set.
    pub async fn login(&self, subject: &str, data: impl FnOnce() -> T) -> Result<()> {
        sessionkit_core::validate_subject(subject)?;
        let mut state = self.state().await?;
        let state = &mut *state;
        match &mut state.current {
            Current::Live(s) => {
                let before = s.subject().map(str::to_owned);
                s.set_subject(Some(subject))?;
                if let Err(e) = self.shared.manager.rotate(s).await {
                    // Never keep a new principal on the old ID.
                    s.set_subject(before.as_deref())?;
                    if is_ended(&e) {
                        state.gone();
                    }
                    return Err(e);
                }
                state.dirty = false;
                state.send_ticket = true;
            }
            Current::Pending { .. } => {
                let Current::Pending { data, .. } =
                    std::mem::replace(&mut state.current, Current::Empty)
                else {
                    unreachable!("matched as pending above")
                };
                let session = self.shared.manager.create(Some(subject), data).await?;
                state.set_live(session);
            }
            Current::Empty => {
                let session = self.shared.manager.create(Some(subject), data()).await?;
                state.set_live(session);
            }
        }
        Ok(())
    }

    /// Logout: ends the session now (stateful: deletes the record;
    /// stateless: revokes the token) and tells the client to drop its
    /// ticket. Returns whether there was a session to end.
    ///
    /// With a `CachedStore` on several instances, the others may still
    /// serve the session from their caches until the invalidation reaches
    /// them (normally milliseconds; at most `max_staleness` when a message
    /// is lost). Their security decisions should use
    /// [`verify_fresh`](Self::verify_fresh).
    pub async fn destroy(&self) -> Result<bool> {
        let mut state = self.state().await?;
        let ended = match std::mem::replace(&mut state.current, Current::Empty) {
            Current::Live(s) => match self.shared.manager.destroy(s.ticket().as_str()).await {
                Ok(_) => true,
                // Expired or revoked meanwhile: ended already.
                Err(e) if e.is_invalid_ticket() => false,
                Err(e) => {
                    state.current = Current::Live(s);
                    return Err(e);
                }
            },
            Current::Pending { .. } => false,
            Current::Empty => false,
        };
        state.dirty = false;
        state.cleared = true;
        Ok(ended)
    }

    /// Atomic read-modify-write through
    /// [`SessionManager::update`](sessionkit_core::SessionManager::update)
    /// (stateful): for changes that must not be lost to a concurrent
    /// request (a counter, a balance). `f` may run more than once. Unsaved
    /// changes of this request are saved first. Returns `None` without a
    /// session.
    ///
    /// Stateless sessions have no server copy to compare with, so there is
    /// no compare-and-swap: `f` runs once on this request's token, a new
    /// token is issued, and concurrent requests with one token each succeed
    /// on their own copy and get their own token back; the client keeps
    /// whichever response it stores last (last writer wins per token).
    pub async fn update<R, F>(&self, mut f: F) -> Result<Option<R>>
    where
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        let mut state = self.state().await?;
        let state = &mut *state;
        match &mut state.current {
            Current::Empty => Ok(None),
            Current::Pending { data, .. } => Ok(Some(f(data))),
            Current::Live(s) => {
                if state.dirty {
                    self.shared.manager.save(s).await?;
                    state.dirty = false;
                    state.send_ticket |= s.ticket_changed();
                }
                let mut out = None;
                let ticket = s.ticket().as_str().to_owned();
                match self
                    .shared
                    .manager
                    .update(&ticket, |data| out = Some(f(data)))
                    .await
                {
                    Ok(updated) => state.set_live(updated),
                    Err(e) if e.is_invalid_ticket() => {
                        // Deleted, expired or revoked meanwhile.
                        state.current = Current::Empty;
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
                Ok(out)
            }
        }
    }
}

/// Key-value access for `Bag` sessions, in the manner of tower-sessions'
/// `Session`: `get`, `insert` and `remove` one key at a time.
///
/// The same rules as the rest of the handle: the session is loaded lazily,
/// changes are saved once after the handler (stateful: compare-and-swap,
/// the conflict status when another request saved first), and
/// [`insert`](Self::insert) into a request without a session starts an
/// anonymous one, stored with a fresh server-generated ID after the handler
/// (never an ID the client presented). A value that does not read back as
/// the requested type is [`Error::Decode`](sessionkit_core::Error::Decode),
/// one that cannot be encoded [`Error::Encode`](sessionkit_core::Error::Encode):
/// returned, never ignored (both answered with 500 by the web integrations).
///
/// ```
/// # use sessionkit_core::{Bag, SessionManager, testing::VecStore};
/// # use sessionkit_http::{RequestSession, SessionConfig};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # let manager = SessionManager::<Bag>::stateful(VecStore::default()).build()?;
/// let session = RequestSession::new(manager, Vec::new()); // a request without a ticket
/// let n: u32 = session.get("counter").await?.unwrap_or_default();
/// session.insert("counter", &(n + 1)).await?; // starts the session
/// assert_eq!(session.get::<u32>("counter").await?, Some(1));
/// assert!(session.get::<String>("counter").await.is_err()); // not a String
///
/// // After the handler: the new session is stored and its ticket sent.
/// let done = session.finish(&SessionConfig::new(), http::StatusCode::OK).await;
/// assert!(done.replace_with.is_none() && !done.headers.is_empty());
/// # Ok::<(), sessionkit_core::Error>(()) }).unwrap();
/// ```
impl RequestSession<Bag> {
    /// Reads `key` as a `V`: `None` without a session or without the key;
    /// [`Error::Decode`](sessionkit_core::Error::Decode) when the stored
    /// value is not a `V`. Never starts a session.
    ///
    /// ```
    /// # use sessionkit_core::{Bag, SessionManager, testing::VecStore};
    /// # use sessionkit_http::RequestSession;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let manager = SessionManager::<Bag>::stateful(VecStore::default()).build()?;
    /// let session = RequestSession::new(manager, Vec::new());
    /// assert_eq!(session.get::<u64>("user_id").await?, None);
    /// assert!(!session.exists().await?);
    /// # Ok::<(), sessionkit_core::Error>(()) }).unwrap();
    /// ```
    pub async fn get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        Ok(self.read(|bag| bag.get(key)).await?.transpose()?.flatten())
    }

    /// Stores `value` under `key` (saved after the handler). Without a
    /// session, starts an anonymous one holding just this key, stored with
    /// a fresh server-generated ID after the handler unless the response is
    /// a server error. [`Error::Encode`](sessionkit_core::Error::Encode)
    /// when `value` cannot be encoded; the session is then left as it was.
    ///
    /// ```
    /// # use sessionkit_core::{Bag, SessionManager, testing::VecStore};
    /// # use sessionkit_http::RequestSession;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let manager = SessionManager::<Bag>::stateful(VecStore::default()).build()?;
    /// let session = RequestSession::new(manager, Vec::new());
    /// session.insert("cart", &["apple", "pear"]).await?;
    /// assert!(session.exists().await?);
    /// assert_eq!(session.get::<Vec<String>>("cart").await?.map(|c| c.len()), Some(2));
    /// # Ok::<(), sessionkit_core::Error>(()) }).unwrap();
    /// ```
    pub async fn insert<V: Serialize + ?Sized>(
        &self,
        key: impl Into<String>,
        value: &V,
    ) -> Result<()> {
        let key = key.into();
        self.try_modify_or_insert_with(Bag::new, |bag| bag.insert(key, value).map(drop))
            .await
    }

    /// Removes `key` and returns its value read as a `V` (`None` without a
    /// session or without the key; saved after the handler). When the
    /// stored value is not a `V`, fails with
    /// [`Error::Decode`](sessionkit_core::Error::Decode) and removes
    /// nothing; `remove::<serde::de::IgnoredAny>(key)` removes a value of
    /// any type. Never starts a session.
    ///
    /// ```
    /// # use sessionkit_core::{Bag, SessionManager, testing::VecStore};
    /// # use sessionkit_http::RequestSession;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let manager = SessionManager::<Bag>::stateful(VecStore::default()).build()?;
    /// let session = RequestSession::new(manager, Vec::new());
    /// session.insert("flash", "saved!").await?;
    /// assert_eq!(session.remove::<String>("flash").await?.as_deref(), Some("saved!"));
    /// assert_eq!(session.remove::<String>("flash").await?, None);
    /// # Ok::<(), sessionkit_core::Error>(()) }).unwrap();
    /// ```
    pub async fn remove<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        let mut state = self.state().await?;
        let state = &mut *state;
        let (bag, live) = match &mut state.current {
            Current::Live(s) => (s.data_mut(), true),
            Current::Pending { data, .. } => (data, false),
            Current::Empty => return Ok(None),
        };
        let Some(old) = bag.get::<V>(key)? else {
            return Ok(None);
        };
        bag.remove(key);
        state.dirty |= live;
        Ok(Some(old))
    }
}

/// The per-application settings of a web integration: the transport and
/// the status of a lost compare-and-swap. The integrations' layers and
/// middleware hold one and expose its setters (as `cookie`, `bearer`,
/// `transport` and `conflict_status`).
///
/// Like the other configuration values, it has `with_*` setters and
/// plain getters:
///
/// ```
/// use http::StatusCode;
/// use sessionkit_http::{BearerConfig, SessionConfig, Transport};
///
/// let config = SessionConfig::new()
///     .with_bearer(BearerConfig::new())
///     .with_conflict_status(StatusCode::PRECONDITION_FAILED);
/// assert!(matches!(config.transport(), Transport::Bearer(_)));
/// assert_eq!(config.conflict_status(), StatusCode::PRECONDITION_FAILED);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    transport: Transport,
    conflict_status: StatusCode,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            transport: Transport::default(),
            conflict_status: StatusCode::CONFLICT,
        }
    }
}

impl SessionConfig {
    /// A cookie with the safe defaults of [`CookieConfig`], and 409 for a
    /// conflicting save.
    pub fn new() -> Self {
        Self::default()
    }

    /// Carries the ticket in a cookie with these attributes.
    pub fn with_cookie(self, cookie: CookieConfig) -> Self {
        self.with_transport(Transport::Cookie(cookie))
    }

    /// Carries the ticket in `Authorization: Bearer`.
    pub fn with_bearer(self, bearer: BearerConfig) -> Self {
        self.with_transport(Transport::Bearer(bearer))
    }

    /// Sets the transport.
    ///
    /// # Panics
    ///
    /// When the transport is invalid (see [`Transport::validate`]: a
    /// `__Host-` or `__Secure-` cookie name whose attributes break the
    /// prefix's rules): a configuration mistake, caught when the layer is
    /// built rather than at the first request.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        if let Err(e) = transport.validate() {
            panic!("invalid session transport: {e}");
        }
        self.transport = transport;
        self
    }

    /// The status of a response whose automatic save lost to a concurrent
    /// change of the same session, or found it gone, and of a handler's
    /// session error that lost to a concurrent request (default 409).
    pub fn with_conflict_status(mut self, status: StatusCode) -> Self {
        self.conflict_status = status;
        self
    }

    /// The configured transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The configured conflict status.
    pub fn conflict_status(&self) -> StatusCode {
        self.conflict_status
    }

    /// The tickets a request presents (see [`Transport::tickets`]).
    pub fn tickets(&self, headers: &http::HeaderMap) -> Vec<String> {
        self.transport.tickets(headers)
    }

    /// The status a handler's session error is answered with:
    /// [`status_for`](crate::status_for), with 409 replaced by the
    /// configured conflict status.
    pub fn status_for(&self, error: &sessionkit_core::Error) -> StatusCode {
        if is_conflict(error) {
            self.conflict_status
        } else {
            status_for(error)
        }
    }
}

/// Whether a response with this status lets the session be written: never
/// after a server error (5xx), whose handler may have stopped half-way.
pub fn saves_after(status: StatusCode) -> bool {
    !status.is_server_error()
}

/// What a web integration does to the handler's response after
/// [`RequestSession::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Finish {
    /// `Some`: the session could not be written; replace the handler's
    /// response with an empty one of this status (the conflict status, 503
    /// or 500), so that the client knows its change was not kept.
    pub replace_with: Option<StatusCode>,
    /// Headers to set on the (possibly replaced) response: the new ticket
    /// or its removal, `Cache-Control: no-store`, `Retry-After` with a 503.
    pub headers: Vec<HeaderChange>,
}

impl Finish {
    /// Applies the outcome to an `http` response: replaces it (with an
    /// empty body from `B::default()`) if needed, then sets the headers.
    pub fn apply<B: Default>(self, response: &mut http::Response<B>) {
        if let Some(status) = self.replace_with {
            *response = http::Response::new(B::default());
            *response.status_mut() = status;
        }
        for change in self.headers {
            change.apply(response.headers_mut());
        }
    }
}

impl<T: SessionData> RequestSession<T> {
    /// After the handler: writes what it changed and says which headers
    /// hand the ticket to the client. `status` is the handler's response
    /// status.
    ///
    /// - 5xx: nothing is written ([`saves_after`]).
    /// - Changed data of a live session is saved (stateful: compare-and-swap;
    ///   stateless: a new token is signed). A save that lost to a concurrent
    ///   request, or found the session gone, replaces the response with the
    ///   configured conflict status; a failing backend with 503
    ///   (`Retry-After: 1`, transient) or 500.
    /// - Data inserted into an empty session is stored as a new session
    ///   (server-generated ID).
    /// - The ticket is sent when it changed during the request (new session,
    ///   rotation, re-issued stateless token); after a `destroy` without a
    ///   new session, the client is told to drop it.
    pub async fn finish(&self, config: &SessionConfig, status: StatusCode) -> Finish {
        let shared = &self.shared;
        let mut guard = shared.state.lock().await;
        let state = &mut *guard;
        let mut failure = None;
        if saves_after(status) {
            match &mut state.current {
                Current::Live(session) if state.dirty => match shared.manager.save(session).await {
                    Ok(()) => {
                        state.dirty = false;
                        state.send_ticket |= session.ticket_changed();
                    }
                    Err(e) if is_conflict(&e) => {
                        tracing::info!(
                            session = %session.id().redacted(),
                            error = %e,
                            "session save lost to a concurrent change; answering {}",
                            config.conflict_status
                        );
                        failure = Some(config.conflict_status);
                    }
                    Err(e) => {
                        tracing::warn!(
                            session = %session.id().redacted(),
                            error = %e,
                            source = ?std::error::Error::source(&e),
                            "session save failed"
                        );
                        failure = Some(status_for(&e));
                    }
                },
                Current::Pending { .. } => {
                    let Current::Pending { subject, data } =
                        std::mem::replace(&mut state.current, Current::Empty)
                    else {
                        unreachable!("matched as pending above")
                    };
                    match shared.manager.create(subject.as_deref(), data).await {
                        Ok(session) => state.set_live(session),
                        Err(e) => {
                            tracing::warn!(
                                error = %e,
                                source = ?std::error::Error::source(&e),
                                "creating the session failed"
                            );
                            failure = Some(status_for(&e));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut headers = Vec::new();
        if let Some(status) = failure {
            tracing::debug!(
                reason = crate::body_for(status),
                "replacing the handler's response"
            );
            if needs_retry_after(status) {
                headers.push(HeaderChange {
                    name: http::header::RETRY_AFTER,
                    value: RETRY_AFTER,
                    mode: HeaderMode::Insert,
                });
            }
        }
        match &state.current {
            Current::Live(session) if state.send_ticket || session.ticket_changed() => {
                headers.extend(config.transport.send(session.ticket().as_str()));
            }
            _ if state.cleared => headers.extend(config.transport.clear()),
            _ => {}
        }
        Finish {
            replace_with: failure,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use sessionkit_core::testing::VecStore;

    use super::*;

    fn bag_manager() -> SessionManager<Bag> {
        SessionManager::stateful(VecStore::default())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn key_value_changes_to_a_session_started_in_the_request_are_all_stored() {
        let manager = bag_manager();
        let session = RequestSession::new(manager.clone(), Vec::new());
        assert_eq!(session.remove::<u32>("a").await.unwrap(), None);
        assert!(!session.exists().await.unwrap(), "remove starts nothing");
        session.insert("a", &1u32).await.unwrap();
        session.insert("b", "two").await.unwrap();
        assert_eq!(session.remove::<u32>("a").await.unwrap(), Some(1));
        assert!(session.remove::<u32>("b").await.is_err(), "not a u32");
        let done = session.finish(&SessionConfig::new(), StatusCode::OK).await;
        assert_eq!(done.replace_with, None);
        let ticket = session.shared.state.lock().await;
        let Current::Live(live) = &ticket.current else {
            panic!("the session was not created");
        };
        let stored = manager.load(live.ticket().as_str()).await.unwrap().unwrap();
        assert!(!stored.data().contains_key("a"));
        assert_eq!(
            stored.data().get::<String>("b").unwrap().as_deref(),
            Some("two")
        );
    }

    #[tokio::test]
    async fn a_failed_insert_marks_nothing_for_saving() {
        let manager = bag_manager();
        let mut bag = Bag::new();
        bag.insert("a", &1u32).unwrap();
        let s = manager.create(None, bag).await.unwrap();
        let session = RequestSession::new(manager.clone(), vec![s.ticket().as_str().to_owned()]);
        let bad = std::collections::HashMap::from([((1u8, 2u8), 3u8)]);
        let err = session.insert("bad", &bad).await.unwrap_err();
        assert!(matches!(err, sessionkit_core::Error::Encode(_)), "{err:?}");
        assert!(!session.shared.state.lock().await.dirty);
        let done = session.finish(&SessionConfig::new(), StatusCode::OK).await;
        assert_eq!(
            done,
            Finish {
                replace_with: None,
                headers: Vec::new()
            }
        );
        let stored = manager.load(s.ticket().as_str()).await.unwrap().unwrap();
        assert_eq!(stored.version(), s.version(), "not saved");
    }
}
