//! The per-request session handle that handlers extract.

use std::fmt;

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sessionkit_core::{Bag, Result, SessionData, SessionManager};
use sessionkit_http::{RequestSession, SessionInfo};

use crate::error::SessionError;

/// The request's session, as handlers see it: an axum extractor, loaded
/// lazily the first time a method needs it (a handler that never touches
/// the session costs no store access).
///
/// Changes made through [`set_data`](Self::set_data),
/// [`modify`](Self::modify),
/// [`modify_or_insert_with`](Self::modify_or_insert_with),
/// [`set_subject`](Self::set_subject) and, on a key-value
/// `SessionHandle<Bag>`, [`insert`](Self::insert) and
/// [`remove`](Self::remove) are saved by the
/// [`SessionLayer`](crate::SessionLayer) after the handler, unless the
/// handler answered with a 5xx; in stateful mode, if that save finds that
/// another request changed or ended the session first, the response becomes
/// 409 Conflict (configurable), never a silently lost update. (Stateless
/// mode has no server copy to compare with: see the
/// [crate documentation](crate#what-stateless-mode-can-promise).)
/// [`update`](Self::update), [`create`](Self::create),
/// [`login`](Self::login), [`rotate`](Self::rotate) and
/// [`destroy`](Self::destroy) act on the store at once; the ticket changes
/// they cause are sent to the client even if the handler then answers with
/// a 5xx, because the old ticket may already be dead.
///
/// An unknown, malformed, expired or revoked ticket is an empty session,
/// never an error; a new session always gets a fresh server-generated ID.
///
/// No method hands out a guard or a reference into the session: data is
/// read and changed through closures ([`read`](Self::read),
/// [`modify`](Self::modify), [`update`](Self::update)) that cannot await,
/// so no handler can hold the request's session lock across an `.await`
/// and deadlock itself.
///
/// The first load goes through the manager's store, and so through its
/// cache if it has one (`CachedStore`): after another instance ended the
/// session, a cached copy may still be served until the invalidation
/// arrives (at most the cache's `max_staleness`). Before a security
/// decision, ask [`verify_fresh`](Self::verify_fresh).
///
/// A thin wrapper over [`RequestSession`], the logic it shares with
/// `sessionkit-actix`.
///
/// Requires the [`SessionLayer`](crate::SessionLayer) for the same `T`;
/// without it extraction fails with 500.
pub struct SessionHandle<T> {
    inner: RequestSession<T>,
}

impl<T> Clone for SessionHandle<T> {
    fn clone(&self) -> Self {
        SessionHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for SessionHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionHandle").field(&self.inner).finish()
    }
}

impl<T: SessionData> SessionHandle<T> {
    pub(crate) fn new(manager: SessionManager<T>, presented: Vec<String>) -> Self {
        SessionHandle {
            inner: RequestSession::new(manager, presented),
        }
    }

    /// The shared per-request session this handle wraps.
    pub(crate) fn inner(&self) -> &RequestSession<T> {
        &self.inner
    }

    /// The manager behind this session (for `list_subject`,
    /// `destroy_subject` and the like).
    pub fn manager(&self) -> &SessionManager<T> {
        self.inner.manager()
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
        self.inner.verify_fresh().await
    }

    /// Whether the request has a session (a live one, or data inserted
    /// into an empty one during this request).
    pub async fn exists(&self) -> Result<bool> {
        self.inner.exists().await
    }

    /// A copy of the session data, `None` without a session (the
    /// whole-value getter; on a `SessionHandle<Bag>`, [`get`](Self::get)
    /// reads one key). [`read`](Self::read) borrows instead of cloning.
    pub async fn data(&self) -> Result<Option<T>>
    where
        T: Clone,
    {
        self.inner.data().await
    }

    /// Reads the session data through `f`; `None` without a session.
    pub async fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Result<Option<R>> {
        self.inner.read(f).await
    }

    /// Changes the session data through `f` (saved after the handler);
    /// `None` without a session.
    ///
    /// `f` is a plain closure: it cannot await, so it cannot call other
    /// methods of this handle while the session is borrowed.
    pub async fn modify<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<Option<R>> {
        self.inner.modify(f).await
    }

    /// Changes the session data through `f`, starting an anonymous
    /// session holding `default()` first when there is none: touching a
    /// possibly empty session in one call. Returns what `f` returns.
    ///
    /// Saved after the handler like [`modify`](Self::modify) (stateful:
    /// compare-and-swap, 409 when another request saved first); a session
    /// started here is stored, with a fresh server-generated ID, after the
    /// handler unless the response is a server error, exactly as with
    /// [`set_data`](Self::set_data). `default` runs only when there is no
    /// session.
    ///
    /// ```
    /// use sessionkit_axum::{SessionError, SessionHandle};
    ///
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// struct Cart { items: Vec<String> }
    ///
    /// async fn add(session: SessionHandle<Cart>) -> Result<String, SessionError> {
    ///     let n = session
    ///         .modify_or_insert_with(Cart::default, |cart| {
    ///             cart.items.push("apple".into());
    ///             cart.items.len()
    ///         })
    ///         .await?;
    ///     Ok(format!("{n} items"))
    /// }
    /// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(add));
    /// ```
    pub async fn modify_or_insert_with<R>(
        &self,
        default: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R> {
        self.inner.modify_or_insert_with(default, f).await
    }

    /// Replaces the session data (the whole-value setter; on a
    /// `SessionHandle<Bag>`, [`insert`](Self::insert) sets one key).
    /// Without a session, starts an anonymous one holding `data`; it is
    /// stored (and its ticket sent) after the handler, unless the response
    /// is a server error.
    pub async fn set_data(&self, data: T) -> Result<()> {
        self.inner.set_data(data).await
    }

    /// The session's principal, if there is a session and it has one.
    pub async fn subject(&self) -> Result<Option<String>> {
        self.inner.subject().await
    }

    /// Sets the session's principal (saved after the handler). Returns
    /// `false` without a session. At login, follow it with
    /// [`rotate`](Self::rotate), or use [`login`](Self::login).
    pub async fn set_subject(&self, subject: Option<&str>) -> Result<bool> {
        self.inner.set_subject(subject).await
    }

    /// ID, subject and timestamps of the live session; `None` without one
    /// (also for a session inserted during this request and not yet
    /// stored).
    pub async fn info(&self) -> Result<Option<SessionInfo>> {
        self.inner.info().await
    }

    /// Starts a new session for `subject` holding `data`, now. A session the
    /// request had is destroyed first, so the old ticket dies (nothing the
    /// client presented is ever reused as the new ID).
    pub async fn create(&self, subject: Option<&str>, data: T) -> Result<()> {
        self.inner.create(subject, data).await
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
    /// [`Error::Revoked`](sessionkit_core::Error::Revoked), [`Error::InvalidToken`](sessionkit_core::Error::InvalidToken) with
    /// [`TokenRejection::IssuedBeforeLogout`](sessionkit_core::TokenRejection::IssuedBeforeLogout), or [`Error::Conflict`](sessionkit_core::Error::Conflict)),
    /// which [`SessionError`] answers with 409 Conflict (or the layer's
    /// [`conflict_status`](crate::SessionLayer::conflict_status)). Nothing
    /// is live under a new ticket and none is sent to the client; a session
    /// that was ended is empty for the rest of the request. Never a silent
    /// success.
    pub async fn rotate(&self) -> Result<bool> {
        self.inner.rotate().await
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
        self.inner.login(subject, data).await
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
        self.inner.destroy().await
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
    pub async fn update<R, F>(&self, f: F) -> Result<Option<R>>
    where
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        self.inner.update(f).await
    }
}

/// Key-value access, in the manner of tower-sessions' `Session`: `get`,
/// `insert` and `remove` one key at a time on a `SessionHandle<Bag>`.
///
/// The same rules as the rest of the handle: the session is loaded lazily,
/// changes are saved once after the handler (stateful: compare-and-swap,
/// 409 or the configured conflict status when another request saved
/// first), and [`insert`](Self::insert) into a request without a session
/// starts an anonymous one, stored with a fresh server-generated ID after
/// the handler. A value that does not read back as the requested type
/// ([`Error::Decode`](sessionkit_core::Error::Decode)) or cannot be encoded
/// ([`Error::Encode`](sessionkit_core::Error::Encode)) is an error, which
/// [`SessionError`] answers with 500.
///
/// ```
/// use sessionkit_axum::{SessionError, SessionHandle};
/// use sessionkit_core::Bag;
///
/// async fn visit(session: SessionHandle<Bag>) -> Result<String, SessionError> {
///     let n: usize = session.get("counter").await?.unwrap_or_default();
///     session.insert("counter", &(n + 1)).await?;
///     Ok(n.to_string())
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(visit));
/// ```
impl SessionHandle<Bag> {
    /// Reads `key` as a `V`: `None` without a session or without the key;
    /// [`Error::Decode`](sessionkit_core::Error::Decode) when the stored
    /// value is not a `V`. Never starts a session.
    ///
    /// ```
    /// use sessionkit_axum::{SessionError, SessionHandle};
    /// use sessionkit_core::Bag;
    ///
    /// async fn whoami(session: SessionHandle<Bag>) -> Result<String, SessionError> {
    ///     Ok(match session.get::<String>("user").await? {
    ///         Some(user) => format!("hello {user}"),
    ///         None => "who are you?".into(),
    ///     })
    /// }
    /// ```
    pub async fn get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        self.inner.get(key).await
    }

    /// Stores `value` under `key` (saved after the handler). Without a
    /// session, starts an anonymous one holding just this key, stored with
    /// a fresh server-generated ID after the handler unless the response is
    /// a server error. [`Error::Encode`](sessionkit_core::Error::Encode)
    /// when `value` cannot be encoded; the session is then left as it was.
    ///
    /// At login, follow it with [`rotate`](Self::rotate) (or use
    /// [`login`](Self::login)): keys never change the session's ID.
    ///
    /// ```
    /// use sessionkit_axum::{SessionError, SessionHandle};
    /// use sessionkit_core::Bag;
    ///
    /// async fn set_theme(session: SessionHandle<Bag>) -> Result<&'static str, SessionError> {
    ///     session.insert("theme", "dark").await?;
    ///     Ok("saved")
    /// }
    /// ```
    pub async fn insert<V: Serialize + ?Sized>(
        &self,
        key: impl Into<String>,
        value: &V,
    ) -> Result<()> {
        self.inner.insert(key, value).await
    }

    /// Removes `key` and returns its value read as a `V` (`None` without a
    /// session or without the key; saved after the handler). When the
    /// stored value is not a `V`, fails with
    /// [`Error::Decode`](sessionkit_core::Error::Decode) and removes
    /// nothing; `remove::<serde::de::IgnoredAny>(key)` removes a value of
    /// any type. Never starts a session.
    ///
    /// ```
    /// use sessionkit_axum::{SessionError, SessionHandle};
    /// use sessionkit_core::Bag;
    ///
    /// async fn flash(session: SessionHandle<Bag>) -> Result<String, SessionError> {
    ///     // Shown once: read and removed in one call.
    ///     Ok(session.remove::<String>("flash").await?.unwrap_or_default())
    /// }
    /// ```
    pub async fn remove<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        self.inner.remove(key).await
    }
}

impl<S, T> FromRequestParts<S> for SessionHandle<T>
where
    S: Send + Sync,
    T: SessionData,
{
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionHandle<T>>()
            .cloned()
            .ok_or(SessionError::MissingLayer)
    }
}
