//! The actix-web middleware.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpResponse};
use sessionkit_core::{SessionData, SessionManager};
use sessionkit_http::{
    BearerConfig, CookieConfig, HeaderChange, HeaderMode, SessionConfig, Transport,
};

use crate::error::{SessionError, from_actix, to_actix};
use crate::handle::SessionHandle;

/// An actix-web middleware ([`Transform`]) that gives every request a lazily
/// loaded session ([`SessionHandle`]) and writes it back after the handler,
/// with the same semantics as `sessionkit-axum`'s `SessionLayer` (both run
/// the policy of [`sessionkit_http::RequestSession::finish`]).
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
///    503 (transient, `Retry-After: 1`) or 500; data inserted into an empty
///    session is stored as a new session;
/// 4. when the ticket changed (new session, rotation, re-issued stateless
///    token) it is sent to the client (cookie, or the bearer response
///    header); after a `destroy()` the cookie is removed.
///
/// ```
/// use actix_web::{App, web};
/// use sessionkit_actix::{SessionError, SessionHandle, SessionMiddleware};
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
/// let app = App::new()
///     .route("/", web::get().to(count))
///     .wrap(SessionMiddleware::new(manager));
/// # let _ = app; Ok(()) }
/// ```
pub struct SessionMiddleware<T> {
    manager: SessionManager<T>,
    config: Arc<SessionConfig>,
}

impl<T> Clone for SessionMiddleware<T> {
    fn clone(&self) -> Self {
        SessionMiddleware {
            manager: self.manager.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<T> fmt::Debug for SessionMiddleware<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("manager", &self.manager)
            .field("transport", self.config.transport())
            .field("conflict_status", &self.config.conflict_status())
            .finish()
    }
}

impl<T: SessionData> SessionMiddleware<T> {
    /// A middleware over `manager`, with the ticket in a cookie with the
    /// safe defaults of [`CookieConfig`], and 409 for a conflicting save.
    pub fn new(manager: SessionManager<T>) -> Self {
        SessionMiddleware {
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
    /// [`SessionError`] returned by the handler for a login or rotation
    /// that lost to a concurrent logout, rotation or save.
    pub fn conflict_status(mut self, status: StatusCode) -> Self {
        let config = Arc::make_mut(&mut self.config);
        *config = config.clone().with_conflict_status(from_actix(status));
        self
    }

    /// The manager this middleware serves.
    pub fn manager(&self) -> &SessionManager<T> {
        &self.manager
    }
}

impl<S, B, T> Transform<S, ServiceRequest> for SessionMiddleware<T>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    T: SessionData,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S, T>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            inner: Rc::new(service),
            manager: self.manager.clone(),
            config: Arc::clone(&self.config),
        }))
    }
}

/// The service made by [`SessionMiddleware`].
pub struct SessionService<S, T> {
    inner: Rc<S>,
    manager: SessionManager<T>,
    config: Arc<SessionConfig>,
}

impl<S, T> fmt::Debug for SessionService<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("transport", self.config.transport())
            .finish_non_exhaustive()
    }
}

impl<S, B, T> Service<ServiceRequest> for SessionService<S, T>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    T: SessionData,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(inner);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let headers = request.headers();
        let presented = self.config.transport().tickets_from(
            headers.get_all(header::COOKIE).map(HeaderValue::as_bytes),
            headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        );
        let handle = SessionHandle::new(self.manager.clone(), presented);
        request.extensions_mut().insert(handle.clone());
        let inner = Rc::clone(&self.inner);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(finish(&handle, &config, response).await)
        })
    }
}

/// Saves what the handler changed and hands the ticket to the client (the
/// policy is [`RequestSession::finish`](sessionkit_http::RequestSession::finish),
/// shared with `sessionkit-axum`).
async fn finish<T: SessionData, B>(
    handle: &SessionHandle<T>,
    config: &SessionConfig,
    mut response: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B>> {
    // A handler's SessionError that lost to a concurrent request (a failed
    // login / rotate) was answered with 409: apply the configured status.
    let lost = response
        .response()
        .error()
        .and_then(|e| e.as_error::<SessionError>())
        .is_some_and(SessionError::is_conflict);
    if lost && response.status() == StatusCode::CONFLICT {
        *response.response_mut().status_mut() = to_actix(config.conflict_status());
    }
    let outcome = handle
        .inner()
        .finish(config, from_actix(response.status()))
        .await;
    let mut response = match outcome.replace_with {
        Some(status) => {
            let (request, _) = response.into_parts();
            ServiceResponse::new(request, HttpResponse::new(to_actix(status))).map_into_right_body()
        }
        None => response.map_into_left_body(),
    };
    apply(response.headers_mut(), outcome.headers);
    response
}

/// Copies `sessionkit-http`'s header changes into actix-web's header map.
fn apply(headers: &mut HeaderMap, changes: Vec<HeaderChange>) {
    for change in changes {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(change.name.as_str().as_bytes()),
            HeaderValue::from_bytes(change.value.as_bytes()),
        ) else {
            continue;
        };
        match change.mode {
            HeaderMode::Append => headers.append(name, value),
            HeaderMode::IfMissing if headers.contains_key(&name) => {}
            _ => {
                headers.insert(name, value);
            }
        }
    }
}
