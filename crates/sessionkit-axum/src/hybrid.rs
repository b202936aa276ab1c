//! Hybrid sessions over HTTP: the `/refresh` and `/logout` endpoints and
//! an extractor for verified access tokens, around a
//! [`HybridManager`](sessionkit_core::HybridManager).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cookie::{Cookie, SameSite};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sessionkit_core::{
    AccessClaims, ClientInfo, Error, HybridManager, REFRESH_TOKEN_LEN, RefreshError,
    RefreshRejection, SessionData, Timestamp, TokenPair, TokenRejection,
};

use crate::config::CookieConfig;

/// Largest refresh/logout request body read, in bytes.
const MAX_BODY: usize = 8 * 1024;
/// Longest access token read from a request.
const MAX_ACCESS_TOKEN: usize = 16 * 1024;

/// How the access token travels.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessTransport {
    /// In the JSON body of the login and refresh responses
    /// (`access_token`); the client sends it as `Authorization: Bearer`.
    /// The default.
    Bearer,
    /// In a cookie (and not in the body, so scripts never see it); the
    /// `Authorization: Bearer` header is accepted too. Mind CSRF for
    /// state-changing routes: the cookie's `SameSite` (default `Lax`)
    /// is the first defence.
    Cookie(CookieConfig),
}

impl AccessTransport {
    /// [`AccessTransport::Cookie`] with the defaults: name
    /// `__Host-access`, `Secure; HttpOnly; SameSite=Lax; Path=/`, `Max-Age`
    /// the token's lifetime. The `__Host-` prefix makes browsers refuse the
    /// cookie unless this host set it, so a sibling subdomain cannot plant
    /// one.
    pub fn cookie() -> Self {
        AccessTransport::Cookie(CookieConfig::new().with_name("__Host-access"))
    }
}

/// How the refresh token travels.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshTransport {
    /// In an HttpOnly cookie scoped to the endpoints' path, so that it is
    /// sent only to `/refresh` and `/logout` and scripts never see it. The
    /// default: name `__Secure-refresh`, `Secure; HttpOnly;
    /// SameSite=Strict; Path=/auth`, `Max-Age` the family's remaining
    /// lifetime. (`__Secure-`: browsers accept it only over HTTPS with
    /// `Secure`. The stronger `__Host-` prefix requires `Path=/`, which
    /// would send the refresh token with every request; a planted refresh
    /// cookie can at worst sign the victim into the planter's own family.)
    Cookie(CookieConfig),
    /// In the JSON body: responses carry `refresh_token`, and `/refresh`
    /// and `/logout` read `{"refresh_token": "…"}` (for API and mobile
    /// clients that keep it in secure storage).
    Body,
}

impl Default for RefreshTransport {
    fn default() -> Self {
        RefreshTransport::Cookie(
            CookieConfig::new()
                .with_name("__Secure-refresh")
                .with_path(Some("/auth"))
                .with_same_site(SameSite::Strict),
        )
    }
}

/// Where the endpoints are and how the tokens travel.
///
/// ```
/// use sessionkit_axum::{AccessTransport, HybridConfig, RefreshTransport};
/// let config = HybridConfig::new()
///     .with_paths("/api/auth/refresh", "/api/auth/logout")
///     .with_access(AccessTransport::Bearer)
///     .with_refresh(RefreshTransport::Body);
/// assert_eq!(config.refresh_path(), "/api/auth/refresh");
/// assert_eq!(config.logout_path(), "/api/auth/logout");
/// assert_eq!(config.access(), &AccessTransport::Bearer);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridConfig {
    access: AccessTransport,
    refresh: RefreshTransport,
    refresh_path: Cow<'static, str>,
    logout_path: Cow<'static, str>,
}

impl Default for HybridConfig {
    fn default() -> Self {
        HybridConfig {
            access: AccessTransport::Bearer,
            refresh: RefreshTransport::default(),
            refresh_path: Cow::Borrowed("/auth/refresh"),
            logout_path: Cow::Borrowed("/auth/logout"),
        }
    }
}

impl HybridConfig {
    /// The defaults: access token in the body (bearer), refresh token in an
    /// HttpOnly cookie scoped to `/auth`, endpoints `POST /auth/refresh`
    /// and `POST /auth/logout`.
    pub fn new() -> Self {
        Self::default()
    }

    /// How the access token travels.
    pub fn with_access(mut self, access: AccessTransport) -> Self {
        self.access = access;
        self
    }

    /// How the refresh token travels. With a cookie, give it a `Path`
    /// that covers both endpoints (and as little else as possible).
    pub fn with_refresh(mut self, refresh: RefreshTransport) -> Self {
        self.refresh = refresh;
        self
    }

    /// The paths of the refresh and logout endpoints.
    pub fn with_paths(
        mut self,
        refresh: impl Into<Cow<'static, str>>,
        logout: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.refresh_path = refresh.into();
        self.logout_path = logout.into();
        self
    }

    /// How the access token travels.
    pub fn access(&self) -> &AccessTransport {
        &self.access
    }

    /// How the refresh token travels.
    pub fn refresh(&self) -> &RefreshTransport {
        &self.refresh
    }

    /// The refresh endpoint's path.
    pub fn refresh_path(&self) -> &str {
        &self.refresh_path
    }

    /// The logout endpoint's path.
    pub fn logout_path(&self) -> &str {
        &self.logout_path
    }
}

/// Hybrid sessions in an axum application: mounts `POST /auth/refresh` and
/// `POST /auth/logout`, answers logins, and lets handlers extract verified
/// access tokens ([`Authenticated`]). Cheap to clone.
///
/// ```
/// use axum::{Router, http::HeaderMap, response::Response, routing::{get, post}};
/// use sessionkit_axum::{Authenticated, Hybrid, HybridError};
/// use sessionkit_core::{HybridManager, RevocationList, testing::VecStore};
/// use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct User { name: String }
///
/// async fn login(hybrid: Hybrid<User>, headers: HeaderMap) -> Result<Response, HybridError> {
///     // ... check the credentials first, then:
///     hybrid.login("alice", &User { name: "Alice".into() }, &headers).await
/// }
///
/// async fn me(user: Authenticated<User>) -> String {
///     format!("hello {}", user.data.name) // no store lookup but the revocation check
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let jwt_secret = [7u8; 32];
/// # let refresh_secret = [9u8; 32];
/// let codec = JwtCodec::new(KeyRing::new(Key::secret("k1", Algorithm::HS256, &jwt_secret)?)?)?;
/// let manager = HybridManager::<User>::builder(VecStore::default(), codec, RevocationList::new(VecStore::default()))
///     .secret(refresh_secret)
///     .build()?;
/// let hybrid = Hybrid::new(manager);
/// let app: Router = hybrid.install(
///     Router::new()
///         .route("/login", post(login))
///         .route("/me", get(me)),
/// ); // + POST /auth/refresh and POST /auth/logout
/// # let _ = app; Ok(()) }
/// ```
pub struct Hybrid<T> {
    manager: HybridManager<T>,
    config: Arc<HybridConfig>,
}

impl<T> Clone for Hybrid<T> {
    fn clone(&self) -> Self {
        Hybrid {
            manager: self.manager.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<T> fmt::Debug for Hybrid<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hybrid")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: SessionData> Hybrid<T> {
    /// With the default [`HybridConfig`].
    pub fn new(manager: HybridManager<T>) -> Self {
        Self::with_config(manager, HybridConfig::default())
    }

    /// With a configuration of your own.
    pub fn with_config(manager: HybridManager<T>, config: HybridConfig) -> Self {
        Hybrid {
            manager,
            config: Arc::new(config),
        }
    }

    /// The manager (for `families`, `revoke_family`, `logout_everywhere`).
    pub fn manager(&self) -> &HybridManager<T> {
        &self.manager
    }

    /// The configuration.
    pub fn config(&self) -> &HybridConfig {
        &self.config
    }

    /// Adds the refresh and logout endpoints to `app` and makes this
    /// `Hybrid` available to every route of it (for the [`Authenticated`]
    /// extractor, and `Hybrid<T>` itself is an extractor then). One line:
    /// `let app = hybrid.install(app);`.
    pub fn install<S>(&self, app: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        app.merge(self.routes())
            .layer(axum::Extension(self.clone()))
    }

    /// Only the two endpoints, `POST` on the configured paths. Routes that
    /// extract [`Authenticated`] also need `Extension(hybrid)`; see
    /// [`install`](Self::install).
    pub fn routes<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let refresh = self.clone();
        let logout = self.clone();
        Router::new()
            .route(
                &self.config.refresh_path,
                post(move |headers: HeaderMap, body: Bytes| {
                    let hybrid = refresh.clone();
                    async move { hybrid.refresh_endpoint(&headers, &body).await }
                }),
            )
            .route(
                &self.config.logout_path,
                post(move |headers: HeaderMap, body: Bytes| {
                    let hybrid = logout.clone();
                    async move { hybrid.logout_endpoint(&headers, &body).await }
                }),
            )
    }

    /// Starts a family for `subject` (after the application checked the
    /// credentials), recording the request's `User-Agent` for the devices
    /// list, and answers with the tokens ([`tokens_response`](Self::tokens_response)).
    /// A store that is down is a [`HybridError`] (503): no token is sent.
    pub async fn login(
        &self,
        subject: &str,
        data: &T,
        headers: &HeaderMap,
    ) -> Result<Response, HybridError> {
        let pair = self
            .manager
            .login_with(subject, data, client_info(headers))
            .await?;
        Ok(self.tokens_response(&pair))
    }

    /// The response that hands a pair to the client: `200` with a JSON
    /// body (`token_type`, `expires_in`, `refresh_expires_in`, and
    /// `access_token` / `refresh_token` for the tokens that travel in the
    /// body), the cookies for those that travel in cookies, and
    /// `Cache-Control: no-store`.
    pub fn tokens_response(&self, pair: &TokenPair) -> Response {
        let now = Timestamp::now();
        let access_left = pair.access_expires_at().remaining_from(now);
        let refresh_left = pair.refresh_expires_at().remaining_from(now);
        let mut body = serde_json::Map::new();
        body.insert("token_type".into(), "Bearer".into());
        body.insert("expires_in".into(), access_left.as_secs().into());
        body.insert("refresh_expires_in".into(), refresh_left.as_secs().into());
        let mut headers = HeaderMap::new();
        match &self.config.access {
            AccessTransport::Bearer => {
                body.insert("access_token".into(), pair.access_token().into());
            }
            AccessTransport::Cookie(c) => {
                set_cookie(&mut headers, c, pair.access_token(), access_left);
            }
        }
        match &self.config.refresh {
            RefreshTransport::Body => {
                body.insert("refresh_token".into(), pair.refresh_token().into());
            }
            RefreshTransport::Cookie(c) => {
                set_cookie(&mut headers, c, pair.refresh_token(), refresh_left);
            }
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let mut response = json(StatusCode::OK, serde_json::Value::Object(body));
        response.headers_mut().extend(headers);
        response
    }

    /// The response after a logout: `204` and cookies cleared.
    pub fn logout_response(&self) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        self.clear_cookies(response.headers_mut());
        response
    }

    /// Verifies the request's access token: `Authorization: Bearer`, else
    /// the access cookie when one is configured.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<AccessClaims<T>, HybridError> {
        let token = bearer(headers).or_else(|| match &self.config.access {
            AccessTransport::Cookie(c) => cookie_value(headers, c.name(), MAX_ACCESS_TOKEN),
            AccessTransport::Bearer => None,
        });
        let Some(token) = token else {
            return Err(HybridError::MissingToken);
        };
        match self.manager.verify(&token).await {
            Ok(claims) => Ok(claims),
            Err(e) if e.is_invalid_ticket() || matches!(e, Error::Decode(_)) => {
                Err(HybridError::InvalidAccess(e))
            }
            Err(e) => Err(HybridError::Session(e)),
        }
    }

    /// `POST /refresh`.
    async fn refresh_endpoint(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let token = match self.presented_refresh(headers, body) {
            Ok(token) => token,
            Err(rejection) => return self.refused(RefreshError::Rejected(rejection)),
        };
        match self.manager.refresh(&token).await {
            Ok(pair) => self.tokens_response(&pair),
            Err(e) => self.refused(e),
        }
    }

    /// `POST /logout`.
    async fn logout_endpoint(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let token = match self.presented_refresh(headers, body) {
            Ok(token) => token,
            Err(RefreshRejection::Missing) => return self.logout_response(),
            Err(rejection) => return self.refused(RefreshError::Rejected(rejection)),
        };
        match self.manager.logout(&token).await {
            Ok(_) => self.logout_response(),
            Err(e) => self.refused(e),
        }
    }

    /// A refused refresh or logout: 401 with the reason (and the cookies
    /// cleared: the client's token is dead or was never valid), or 503 /
    /// 500 for a backend failure (cookies untouched: the token may still
    /// be good).
    fn refused(&self, error: RefreshError) -> Response {
        let rejected = error.rejection().is_some();
        let mut response = HybridError::Refresh(error).into_response();
        if rejected {
            self.clear_cookies(response.headers_mut());
        }
        response
    }

    /// The refresh token of a request: the JSON body's `refresh_token`,
    /// else the refresh cookie.
    fn presented_refresh(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, RefreshRejection> {
        if body.len() > MAX_BODY {
            return Err(RefreshRejection::Malformed);
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|_| RefreshRejection::Malformed)?;
            match value.get("refresh_token") {
                Some(serde_json::Value::String(token)) => return Ok(token.clone()),
                Some(_) => return Err(RefreshRejection::Malformed),
                None => {}
            }
        }
        if let RefreshTransport::Cookie(c) = &self.config.refresh
            && let Some(token) = cookie_value(headers, c.name(), 4 * REFRESH_TOKEN_LEN)
        {
            return Ok(token);
        }
        Err(RefreshRejection::Missing)
    }

    fn clear_cookies(&self, headers: &mut HeaderMap) {
        if let AccessTransport::Cookie(c) = &self.config.access
            && let Some(v) = c.removal_cookie()
        {
            headers.append(header::SET_COOKIE, v);
        }
        if let RefreshTransport::Cookie(c) = &self.config.refresh
            && let Some(v) = c.removal_cookie()
        {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

/// The `User-Agent` of a request as [`ClientInfo`], for the devices list.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue, header};
/// let mut headers = HeaderMap::new();
/// headers.insert(header::USER_AGENT, HeaderValue::from_static("Phone/1.0"));
/// let client = sessionkit_axum::client_info(&headers);
/// assert_eq!(client.user_agent(), Some("Phone/1.0"));
/// ```
pub fn client_info(headers: &HeaderMap) -> ClientInfo {
    match headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        Some(ua) => ClientInfo::new().with_user_agent(ua),
        None => ClientInfo::new(),
    }
}

fn set_cookie(headers: &mut HeaderMap, config: &CookieConfig, value: &str, max_age: Duration) {
    // A lifetime of at least one second: `Max-Age=0` would delete it.
    let config = config
        .clone()
        .with_max_age(max_age.max(Duration::from_secs(1)));
    if let Some(v) = config.set_cookie(value) {
        headers.append(header::SET_COOKIE, v);
    }
}

fn cookie_value(headers: &HeaderMap, name: &str, max_len: usize) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|text| Cookie::split_parse(text).flatten())
        .find(|c| c.name() == name && !c.value().is_empty() && c.value().len() <= max_len)
        .map(|c| c.value().to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_ACCESS_TOKEN)
        .then(|| token.to_owned())
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// A failed hybrid-session operation, ready to be returned from a handler.
///
/// | error | status | body `error` / `reason` |
/// |---|---|---|
/// | [`HybridError::MissingToken`] | 401, `WWW-Authenticate: Bearer` | `invalid_token` / `missing` |
/// | [`HybridError::InvalidAccess`] | 401, `WWW-Authenticate: Bearer error="invalid_token"` | `invalid_token` / `expired`, `revoked` or `invalid` |
/// | [`HybridError::Refresh`] with a [rejection](RefreshError::rejection) | 401 | `invalid_grant` / [`RefreshRejection::as_str`] |
/// | a transient backend failure ([`Error::is_transient`]) | 503, `Retry-After: 1` | `temporarily_unavailable` |
/// | anything else | 500 | `server_error` |
///
/// Details of backend failures are logged with `tracing`, never sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    /// `Authenticated<T>` or `Extension<Hybrid<T>>` on a route without the
    /// `Hybrid<T>` extension (a programming error; see [`Hybrid::install`]).
    #[error("no Hybrid<T> extension is installed on this route")]
    MissingLayer,
    /// The request carries no access token.
    #[error("no access token was presented")]
    MissingToken,
    /// The access token was refused (expired, revoked, not authentic…).
    #[error("the access token was refused")]
    InvalidAccess(#[source] Error),
    /// A refresh or logout failed.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    /// A session operation failed (the store or the revocation list).
    #[error(transparent)]
    Session(#[from] Error),
}

impl HybridError {
    /// The status code this error is answered with (see the table above).
    pub fn status(&self) -> StatusCode {
        match self {
            HybridError::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            HybridError::MissingToken | HybridError::InvalidAccess(_) => StatusCode::UNAUTHORIZED,
            HybridError::Refresh(e) if e.rejection().is_some() => StatusCode::UNAUTHORIZED,
            HybridError::Refresh(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            HybridError::Session(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            HybridError::Refresh(_) | HybridError::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short reason sent with a 401 (`missing`, `expired`, `revoked`,
    /// `invalid`, or a [`RefreshRejection::as_str`]); `None` otherwise.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            HybridError::MissingToken => Some("missing"),
            HybridError::InvalidAccess(e) => Some(match e {
                Error::InvalidToken(TokenRejection::Expired) | Error::Expired => "expired",
                Error::Revoked | Error::InvalidToken(TokenRejection::IssuedBeforeLogout) => {
                    "revoked"
                }
                _ => "invalid",
            }),
            HybridError::Refresh(e) => e.rejection().map(|r| r.as_str()),
            _ => None,
        }
    }
}

impl IntoResponse for HybridError {
    fn into_response(self) -> Response {
        let status = self.status();
        let reason = self.reason();
        let code = match (&self, status) {
            (HybridError::Refresh(_), StatusCode::UNAUTHORIZED) => "invalid_grant",
            (_, StatusCode::UNAUTHORIZED) => "invalid_token",
            (_, StatusCode::SERVICE_UNAVAILABLE) => "temporarily_unavailable",
            _ => "server_error",
        };
        match (&self, status) {
            (_, StatusCode::UNAUTHORIZED) => {
                tracing::debug!(error = %self, reason, "hybrid session: unauthorized");
            }
            (HybridError::MissingLayer, _) => tracing::error!("{self}"),
            _ => tracing::warn!(
                error = %self,
                source = ?std::error::Error::source(&self),
                "hybrid session operation failed"
            ),
        }
        let mut body = serde_json::Map::new();
        body.insert("error".into(), code.into());
        if let Some(reason) = reason {
            body.insert("reason".into(), reason.into());
        }
        let mut response = json(status, serde_json::Value::Object(body));
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match (&self, status) {
            (HybridError::MissingToken, _) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            (HybridError::InvalidAccess(_), _) => {
                let value = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    reason.unwrap_or("invalid")
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            (_, StatusCode::SERVICE_UNAVAILABLE) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// The verified access token of a request, as an axum extractor: the
/// `Authorization: Bearer` token (or the access cookie, when configured),
/// checked by [`HybridManager::verify`](sessionkit_core::HybridManager::verify)
/// with no store lookup beyond the revocation check. Derefs to
/// [`AccessClaims`].
///
/// Rejections are [`HybridError`]s: 401 with `WWW-Authenticate` for a
/// missing or refused token, 503 when the revocation list is unavailable.
/// `Option<Authenticated<T>>` is `None` for a missing or refused token (and
/// still 503 for a failing revocation list).
///
/// Requires `Extension(Hybrid<T>)` on the route: see [`Hybrid::install`].
#[derive(Debug, Clone)]
pub struct Authenticated<T>(pub AccessClaims<T>);

impl<T> Deref for Authenticated<T> {
    type Target = AccessClaims<T>;
    fn deref(&self) -> &AccessClaims<T> {
        &self.0
    }
}

impl<T> Authenticated<T> {
    /// The verified claims.
    pub fn into_inner(self) -> AccessClaims<T> {
        self.0
    }
}

impl<S, T> FromRequestParts<S> for Authenticated<T>
where
    S: Send + Sync,
    T: SessionData,
{
    type Rejection = HybridError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, HybridError> {
        let hybrid = parts
            .extensions
            .get::<Hybrid<T>>()
            .cloned()
            .ok_or(HybridError::MissingLayer)?;
        hybrid.authenticate(&parts.headers).await.map(Authenticated)
    }
}

impl<S, T> OptionalFromRequestParts<S> for Authenticated<T>
where
    S: Send + Sync,
    T: SessionData,
{
    type Rejection = HybridError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, HybridError> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(found) => Ok(Some(found)),
            Err(HybridError::MissingToken | HybridError::InvalidAccess(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<S, T> FromRequestParts<S> for Hybrid<T>
where
    S: Send + Sync,
    T: SessionData,
{
    type Rejection = HybridError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, HybridError> {
        parts
            .extensions
            .get::<Hybrid<T>>()
            .cloned()
            .ok_or(HybridError::MissingLayer)
    }
}
