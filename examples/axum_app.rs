//! A web application with stateful sessions: login, logout, a counter and a
//! "your sessions" page that lists and revokes your other sessions.
//!
//! ```text
//! cargo run -p sessionkit-examples --example axum_app
//! # then open http://127.0.0.1:3000 (user: any name, password: "password")
//!
//! # other stores (the matching feature, then SESSIONKIT_STORE):
//! SESSIONKIT_STORE=sqlite   cargo run -p sessionkit-examples --example axum_app
//! SESSIONKIT_STORE=postgres cargo run -p sessionkit-examples --example axum_app
//! SESSIONKIT_STORE=redis    cargo run -p sessionkit-examples --example axum_app
//!
//! # drive itself with a few requests and exit (for CI):
//! SESSIONKIT_EXAMPLE_SELFTEST=1 cargo run -p sessionkit-examples --example axum_app
//! ```
//!
//! Store URLs: `SQLITE_URL` (default: a file in the temporary directory),
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! `REDIS_URL` (default `redis://127.0.0.1:6379`).
//!
//! The session cookie is `Secure`: browsers send it over plain HTTP only to
//! `localhost`/`127.0.0.1`. The forms are POSTs, and `SameSite=Lax` keeps
//! the cookie off cross-site POSTs, which is this demo's CSRF defence; a
//! real application adds CSRF tokens or checks `Origin` as well.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessionkit::axum::{SessionError, SessionHandle, SessionLayer};
use sessionkit::memory::MemoryStore;
use sessionkit::{SessionId, SessionManager, SessionStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What each session holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppSession {
    /// The logged-in user (also the session's subject).
    user: Option<String>,
    counter: u64,
    /// A random, non-secret name for this session on the "your sessions"
    /// page. Never show session IDs: an ID is the credential itself.
    label: String,
    /// Where the session was opened (User-Agent, shortened).
    device: String,
}

type Session = SessionHandle<AppSession>;

#[derive(Clone)]
struct App {
    sessions: SessionManager<AppSession>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let store = open_store().await?;
    let sessions = SessionManager::<AppSession>::stateful_shared(store)
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(12 * 3600))
        .build()?;
    let app = router(sessions);

    if std::env::var_os("SESSIONKIT_EXAMPLE_SELFTEST").is_some() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let result = selftest(&base).await;
        server.abort();
        result?;
        println!("self-test passed");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app).await?;
    Ok(())
}

fn router(sessions: SessionManager<AppSession>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/me", get(me))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/counter", post(count))
        .route("/sessions", get(list_sessions))
        .route("/sessions/revoke", post(revoke))
        .with_state(App {
            sessions: sessions.clone(),
        })
        .layer(SessionLayer::new(sessions))
}

/// The store chosen by `SESSIONKIT_STORE` (default `memory`).
async fn open_store() -> Result<Arc<dyn SessionStore>, BoxError> {
    let choice = std::env::var("SESSIONKIT_STORE").unwrap_or_else(|_| "memory".into());
    match choice.as_str() {
        "memory" => Ok(Arc::new(MemoryStore::new())),
        "sqlite" => {
            let url = std::env::var("SQLITE_URL").unwrap_or_else(|_| {
                let path = std::env::temp_dir().join("sessionkit-axum-app.db");
                format!("sqlite://{}", path.display())
            });
            Ok(Arc::new(sessionkit::sql::SqlStore::connect(&url).await?))
        }
        "postgres" => {
            let url = std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let store = sessionkit::sql::SqlStore::builder()
                .table("axum_app_sessions")
                .connect(&url)
                .await?;
            Ok(Arc::new(store))
        }
        "redis" => {
            use sessionkit::redis::{RedisConfig, RedisStore};
            let url =
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let config = RedisConfig::new().prefix("sessionkit-axum-app");
            Ok(Arc::new(RedisStore::standalone(&url, config).await?))
        }
        other => Err(format!(
            "SESSIONKIT_STORE={other}: unknown (memory, sqlite, postgres or redis)"
        )
        .into()),
    }
}

// ---------------------------------------------------------------- handlers

async fn index(session: Session) -> Result<Html<String>, SessionError> {
    let data = session.data().await?;
    let body = match data {
        Some(AppSession {
            user: Some(user),
            counter,
            ..
        }) => format!(
            "<p>Logged in as <b>{}</b>. Counter: {counter}.</p>\
             <form method=post action=/counter><button>+1</button></form>\
             <p><a href=/sessions>Your sessions</a></p>\
             <form method=post action=/logout><button>Log out</button></form>",
            escape(&user)
        ),
        other => format!(
            "<p>Not logged in. Counter: {}.</p>\
             <form method=post action=/counter><button>+1</button></form>\
             <form method=post action=/login>\
             <input name=user placeholder=user> \
             <input name=password type=password placeholder=password> \
             <button>Log in</button></form>",
            other.map_or(0, |d| d.counter)
        ),
    };
    Ok(Html(format!(
        "<!doctype html><title>sessionkit</title><h1>sessionkit demo</h1>{body}"
    )))
}

#[derive(Serialize, Deserialize)]
struct Me {
    user: Option<String>,
    counter: u64,
}

async fn me(session: Session) -> Result<Json<Me>, SessionError> {
    let data = session.data().await?.unwrap_or_default();
    Ok(Json(Me {
        user: data.user,
        counter: data.counter,
    }))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    session: Session,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, SessionError> {
    // Demo credentials check; use a real password hash in an application.
    if form.password != "password" || sessionkit::validate_subject(&form.user).is_err() {
        return Ok((StatusCode::UNAUTHORIZED, "wrong user or password").into_response());
    }
    // New session ID (fixation defence); an anonymous counter is kept.
    session.login(&form.user, AppSession::default).await?;
    let device = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .chars()
        .take(60)
        .collect();
    session
        .modify(|s| {
            s.user = Some(form.user.clone());
            s.label = SessionId::generate().as_str()[..10].to_owned();
            s.device = device;
        })
        .await?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session) -> Result<Redirect, SessionError> {
    session.destroy().await?;
    Ok(Redirect::to("/"))
}

async fn count(session: Session) -> Result<Redirect, SessionError> {
    // `update` is atomic: concurrent clicks are all counted.
    if session.update(|s| s.counter += 1).await?.is_none() {
        // No session yet: start an anonymous one.
        session
            .set_data(AppSession {
                counter: 1,
                ..AppSession::default()
            })
            .await?;
    }
    Ok(Redirect::to("/"))
}

#[derive(Serialize, Deserialize)]
struct SessionRow {
    label: String,
    device: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    current: bool,
}

async fn list_sessions(State(app): State<App>, session: Session) -> Result<Response, SessionError> {
    let (Some(user), Some(info)) = (session.subject().await?, session.info().await?) else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    };
    let rows: Vec<SessionRow> = app
        .sessions
        .list_subject(&user)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            label: s.data().label.clone(),
            device: s.data().device.clone(),
            created_at_ms: s.created_at().as_millis(),
            expires_at_ms: s.expires_at().as_millis(),
            current: s.id() == info.id,
        })
        .collect();
    Ok(Json(rows).into_response())
}

#[derive(Deserialize)]
struct RevokeForm {
    label: String,
}

async fn revoke(
    State(app): State<App>,
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Result<Response, SessionError> {
    // Ending sessions is a security decision: ask the store itself whether
    // this session is still live, past any cache (with a `CachedStore` on
    // several instances, another one may have logged it out a moment ago).
    if !session.verify_fresh().await? {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    }
    let (Some(user), Some(info)) = (session.subject().await?, session.info().await?) else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    };
    // Only among this user's own sessions, and never the current one.
    for other in app.sessions.list_subject(&user).await? {
        if other.data().label == form.label && other.id() != info.id {
            // Listed sessions carry their store ID, not their ticket.
            app.sessions.destroy_id(&other.id()).await?;
            return Ok((StatusCode::OK, "revoked").into_response());
        }
    }
    Ok((StatusCode::NOT_FOUND, "no such session").into_response())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

// ---------------------------------------------------------------- self-test

fn ensure(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("self-test failed: {what}").into())
    }
}

fn browser(agent: &str) -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(agent)
        .timeout(Duration::from_secs(10))
        .build()?)
}

async fn whoami(c: &reqwest::Client, base: &str) -> Result<Me, BoxError> {
    Ok(c.get(format!("{base}/me")).send().await?.json().await?)
}

async fn selftest(base: &str) -> Result<(), BoxError> {
    let phone = browser("phone")?;
    let laptop = browser("laptop")?;
    // A fresh user, so that sessions left in a persistent store by an
    // earlier run do not show up in the list.
    let user = format!("alice-{}", &SessionId::generate().as_str()[..8]);

    phone.post(format!("{base}/counter")).send().await?;
    let me = whoami(&phone, base).await?;
    ensure(me.user.is_none() && me.counter == 1, "anonymous counter")?;

    let bad = phone
        .post(format!("{base}/login"))
        .form(&[("user", user.as_str()), ("password", "nope")])
        .send()
        .await?;
    ensure(
        bad.status() == StatusCode::UNAUTHORIZED,
        "wrong password refused",
    )?;

    for c in [&phone, &laptop] {
        let r = c
            .post(format!("{base}/login"))
            .form(&[("user", user.as_str()), ("password", "password")])
            .send()
            .await?;
        ensure(r.status().is_success(), "login")?;
    }
    phone.post(format!("{base}/counter")).send().await?;
    let me = whoami(&phone, base).await?;
    ensure(
        me.user.as_deref() == Some(user.as_str()) && me.counter == 2,
        "logged in, the anonymous count carried over",
    )?;

    let rows: Vec<SessionRow> = phone
        .get(format!("{base}/sessions"))
        .send()
        .await?
        .json()
        .await?;
    ensure(rows.len() == 2, "two sessions listed")?;
    let other = rows.iter().find(|r| !r.current).ok_or("no other session")?;
    ensure(other.device == "laptop", "the other one is the laptop")?;

    let r = phone
        .post(format!("{base}/sessions/revoke"))
        .form(&[("label", other.label.as_str())])
        .send()
        .await?;
    ensure(r.status() == StatusCode::OK, "revoked the laptop")?;
    ensure(
        whoami(&laptop, base).await?.user.is_none(),
        "the laptop is logged out",
    )?;
    ensure(
        whoami(&phone, base).await?.user.as_deref() == Some(user.as_str()),
        "the phone still is logged in",
    )?;

    phone.post(format!("{base}/logout")).send().await?;
    ensure(whoami(&phone, base).await?.user.is_none(), "logged out")?;
    let page = phone.get(format!("{base}/")).send().await?.text().await?;
    ensure(page.contains("Not logged in"), "the index page renders")?;
    Ok(())
}
