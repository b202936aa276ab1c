//! axum-login 0.18 on a sessionkit store, through
//! `sessionkit::tower_sessions::TowerSessionsStore`.
//!
//! The application is axum-login's usual shape — a backend that
//! authenticates users, a tower-sessions `SessionManagerLayer`, axum-login's
//! `AuthManagerLayer`, and `login_required!` on the protected routes — with
//! one change: the session store is a sessionkit store (SQLite or Redis
//! here; any sessionkit store works). On top of what axum-login does, the
//! store indexes sessions by user ([`TowerSessionsStore::with_subject`]),
//! so `/logout-everywhere` ends every session of the user at once.
//!
//! Routes:
//!
//! | route | |
//! |---|---|
//! | `POST /login` (form: `username`, `password`) | 200 and a session cookie, or 401 |
//! | `GET /protected` | 200 `hello, <user>`, or 401 without a logged-in session |
//! | `POST /logout` | ends this session |
//! | `POST /logout-everywhere` | ends every session of the logged-in user |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_login::tower_sessions::{Expiry, SessionManagerLayer};
use axum_login::{AuthManagerLayerBuilder, AuthUser, AuthnBackend, UserId, login_required};
use serde::Deserialize;
use sessionkit::SessionStore;
use sessionkit::tower_sessions::TowerSessionsStore;
use subtle::ConstantTimeEq;

/// The key of axum-login's data in the session (set explicitly, so that the
/// subject function below reads the same key).
pub const AUTH_DATA_KEY: &str = "auth";

/// The one demo user's ID.
pub const DEMO_USER_ID: i64 = 1;
/// The one demo user's name.
pub const DEMO_USERNAME: &str = "demo";
/// DEMO ONLY: the demo user's password, compared as a constant. A real
/// application stores a password *hash* (argon2, with the `password-auth`
/// or `argon2` crate) and verifies it in `spawn_blocking`.
pub const DEMO_PASSWORD: &str = "correct horse battery staple";

/// A user as axum-login sees it.
#[derive(Clone)]
pub struct User {
    id: i64,
    /// The user's name.
    pub username: String,
    /// What axum-login compares on every request: changing it (a new
    /// password) ends every session of the user.
    auth_hash: Vec<u8>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> i64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

fn demo_user() -> User {
    User {
        id: DEMO_USER_ID,
        username: DEMO_USERNAME.to_owned(),
        auth_hash: b"demo-credentials-v1".to_vec(),
    }
}

/// The login form.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// The authentication backend: one fixed demo user.
#[derive(Clone, Debug, Default)]
pub struct Backend;

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = Infallible;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Infallible> {
        // DEMO ONLY: a constant-time comparison with a constant. See
        // `DEMO_PASSWORD`.
        let name_ok = creds.username.as_bytes().ct_eq(DEMO_USERNAME.as_bytes());
        let password_ok = creds.password.as_bytes().ct_eq(DEMO_PASSWORD.as_bytes());
        Ok(bool::from(name_ok & password_ok).then(demo_user))
    }

    async fn get_user(&self, user_id: &UserId<Self>) -> Result<Option<User>, Infallible> {
        Ok((*user_id == DEMO_USER_ID).then(demo_user))
    }
}

type AuthSession = axum_login::AuthSession<Backend>;

/// Connects the sessionkit store a URL names: `redis://…` (Redis), or a
/// `sqlite:`/`postgres://`/`mysql://` URL (the SQL store, whose tables are
/// created if missing).
pub async fn connect_store(url: &str) -> sessionkit::Result<Arc<dyn SessionStore>> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(sessionkit::redis::RedisStore::connect(url).await?))
    } else {
        Ok(Arc::new(sessionkit::sql::SqlStore::connect(url).await?))
    }
}

/// The tower-sessions store over `store`, indexing each session by the
/// logged-in user's ID (from axum-login's data).
pub fn tower_store(store: Arc<dyn SessionStore>) -> TowerSessionsStore {
    TowerSessionsStore::from_arc(store).with_subject(|data| {
        let user_id = data.get(AUTH_DATA_KEY)?.get("user_id")?.as_i64()?;
        Some(user_id.to_string())
    })
}

/// The application. `secure_cookie` is false only for plain-HTTP local runs
/// and tests.
pub fn app(store: TowerSessionsStore, secure_cookie: bool) -> Router {
    let session_layer = SessionManagerLayer::new(store.clone())
        .with_secure(secure_cookie)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(8)));
    let auth_layer = AuthManagerLayerBuilder::new(Backend, session_layer)
        .with_data_key(AUTH_DATA_KEY)
        .build();

    Router::new()
        .route("/protected", get(protected))
        .route("/logout-everywhere", post(logout_everywhere))
        .route_layer(login_required!(Backend))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(store)
        .layer(auth_layer)
}

fn internal(what: &str, err: impl std::fmt::Display) -> Response {
    eprintln!("{what}: {err}");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn login(mut auth: AuthSession, Form(creds): Form<Credentials>) -> Response {
    let user = match auth.authenticate(creds).await {
        Ok(Some(user)) => user,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "invalid credentials").into_response(),
        Err(err) => return internal("authenticate", err),
    };
    match auth.login(&user).await {
        Ok(()) => format!("logged in as {}", user.username).into_response(),
        Err(err) => internal("login", err),
    }
}

async fn protected(auth: AuthSession) -> Response {
    match auth.user {
        Some(user) => format!("hello, {}", user.username).into_response(),
        // `login_required!` let the request through, so there is a user.
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn logout(mut auth: AuthSession) -> Response {
    match auth.logout().await {
        Ok(_) => "logged out".into_response(),
        Err(err) => internal("logout", err),
    }
}

async fn logout_everywhere(
    State(store): State<TowerSessionsStore>,
    mut auth: AuthSession,
) -> Response {
    let Some(user) = auth.user.clone() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // Every session of this user, on every instance, through sessionkit's
    // subject index.
    let ended = match store.store().delete_subject(&user.id().to_string()).await {
        Ok(n) => n,
        Err(err) => return internal("delete_subject", err),
    };
    // This request's own session is among them; `logout` also clears the
    // cookie.
    if let Err(err) = auth.logout().await {
        return internal("logout", err);
    }
    format!("ended {ended} sessions").into_response()
}
