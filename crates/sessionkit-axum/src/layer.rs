//! The tower layer and service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use sessionkit_core::{SessionData, SessionManager};
use tower_layer::Layer;
use tower_service::Service;

use sessionkit_http::SessionConfig;

use crate::config::{BearerConfig, CookieConfig, Transport};
use crate::error::ConflictResponse;
use crate::handle::SessionHandle;

/// A tower [`Layer`] that gives every request a lazily loaded session
/// ([`SessionHandle`]) and writes it back after the handler.
///
/// Per request:
/// 1. the ticket is taken from the cookie (default) or from
///    `Authorization: Bearer`; nothing is loaded yet;
/// 2. the first [`SessionHandle`] call that needs the session loads it; an
///    unknown, malformed, expired or revoked ticket is an empty session;
/// 3. after the handler, if the session data changed and the response is not
///    a server error (5xx), the session is saved (stateful: compare-and-swap;
///    stateless: a new token is signed); a stateful save that lost to a
///    concurrent request turns the response into 409 Conflict (see
///    [`conflict_status`](Self::conflict_status)), a failing backend into
///    503 (transient) or 500; data inserted into an empty session is stored
///    as a new session;
/// 4. when the ticket changed (new session, rotation, re-issued stateless
///    token) it is sent to the client (cookie, or the bearer response
///    header); after a `destroy()` the cookie is removed.
///
/// The same layer serves stateful and stateless managers.
///
/// ```
/// use axum::{Router, routing::get};
/// use sessionkit_axum::{SessionHandle, SessionLayer, SessionError};
/// use sessionkit_core::{SessionManager, testing::VecStore};
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// struct Visits { n: u64 }
///
/// async fn count(session: SessionHandle<Visits>) -> Result<String, SessionError> {
///     if !session.exists().await? {
///         session.set_data(Visits::default()).await?;
///     }
///     let n = session.update(|v| { v.n += 1; v.n }).await?.unwrap_or(1);
///     Ok(format!("visit {n}"))
/// }
///
/// # fn main() -> sessionkit_core::Result<()> {
/// let manager = SessionManager::<Visits>::stateful(VecStore::default()).build()?;
/// let app: Router = Router::new()
///     .route("/", get(count))
///     .layer(SessionLayer::new(manager));
/// # let _ = app; Ok(()) }
/// ```
pub struct SessionLayer<T> {
    manager: SessionManager<T>,
    config: Arc<SessionConfig>,
}

impl<T> Clone for SessionLayer<T> {
    fn clone(&self) -> Self {
        SessionLayer {
            manager: self.manager.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<T> fmt::Debug for SessionLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("manager", &self.manager)
            .field("transport", self.config.transport())
            .field("conflict_status", &self.config.conflict_status())
            .finish()
    }
}

impl<T: SessionData> SessionLayer<T> {
    /// A layer over `manager`, with the ticket in a cookie with the safe
    /// defaults of [`CookieConfig`], and 409 for a conflicting save.
    pub fn new(manager: SessionManager<T>) -> Self {
        SessionLayer {
            manager,
            config: Arc::new(SessionConfig::default()),
        }
    }

    /// Carries the ticket in a cookie with these attributes.
    pub fn cookie(self, cookie: CookieConfig) -> Self {
        self.transport(Transport::Cookie(cookie))
    }

    /// Carries the ticket in `Authorization: Bearer` (new tickets come back
    /// in the response header of `bearer`).
    pub fn bearer(self, bearer: BearerConfig) -> Self {
        self.transport(Transport::Bearer(bearer))
    }

    /// Sets the transport.
    pub fn transport(mut self, transport: Transport) -> Self {
        let config = Arc::make_mut(&mut self.config);
        *config = config.clone().with_transport(transport);
        self
    }

    /// The status of a response whose automatic save lost to a concurrent
    /// change of the same session, or found the session gone (default 409
    /// Conflict). The handler's response is replaced (empty body), so the
    /// client knows its change was not kept. The same status answers a
    /// [`SessionError`](crate::SessionError) returned by the handler for a
    /// login or rotation that lost to a concurrent logout, rotation or save
    /// (see [`SessionHandle::rotate`]).
    pub fn conflict_status(mut self, status: StatusCode) -> Self {
        let config = Arc::make_mut(&mut self.config);
        *config = config.clone().with_conflict_status(status);
        self
    }

    /// The manager this layer serves.
    pub fn manager(&self) -> &SessionManager<T> {
        &self.manager
    }
}

impl<S, T> Layer<S> for SessionLayer<T> {
    type Service = SessionService<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

/// The service made by [`SessionLayer`].
pub struct SessionService<S, T> {
    inner: S,
    manager: SessionManager<T>,
    config: Arc<SessionConfig>,
}

impl<S: Clone, T> Clone for SessionService<S, T> {
    fn clone(&self) -> Self {
        SessionService {
            inner: self.inner.clone(),
            manager: self.manager.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for SessionService<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("transport", self.config.transport())
            .finish_non_exhaustive()
    }
}

impl<S, T, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
    T: SessionData,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let presented = self.config.tickets(request.headers());
        let handle = SessionHandle::new(self.manager.clone(), presented);
        request.extensions_mut().insert(handle.clone());
        // The clone is ready only if polled; keep the one that was.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(finish(&handle, &config, response).await)
        })
    }
}

/// Saves what the handler changed and hands the ticket to the client (the
/// policy is [`RequestSession::finish`](sessionkit_http::RequestSession::finish),
/// shared with `sessionkit-actix`).
async fn finish<T: SessionData, B: Default>(
    handle: &SessionHandle<T>,
    config: &SessionConfig,
    mut response: Response<B>,
) -> Response<B> {
    // A handler's SessionError that lost to a concurrent request (a failed
    // login / rotate, a save that found the session gone) was answered
    // with 409: apply the configured status.
    if response
        .extensions_mut()
        .remove::<ConflictResponse>()
        .is_some()
        && response.status() == StatusCode::CONFLICT
    {
        *response.status_mut() = config.conflict_status();
    }
    handle
        .inner()
        .finish(config, response.status())
        .await
        .apply(&mut response);
    response
}
