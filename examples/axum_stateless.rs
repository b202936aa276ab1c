//! The same kind of application with stateless sessions: the session lives
//! in a signed JWT held by the client (in a cookie for browsers, as a bearer
//! token for API clients); the server keeps only a small revocation list.
//!
//! ```text
//! cargo run --example axum_stateless --features axum,jwt,memory
//! # then open http://127.0.0.1:3000 (user: any name, password: "password")
//!
//! # API clients: log in, then send the token as a bearer token
//! curl -si -X POST 'http://127.0.0.1:3000/api/login?user=alice&password=password'
//! curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/api/me
//!
//! # drive itself with a few requests and exit (for CI):
//! SESSIONKIT_EXAMPLE_SELFTEST=1 cargo run --example axum_stateless --features axum,jwt,memory
//! ```
//!
//! The signing key comes from `SESSIONKIT_JWT_SECRET` (at least 32 bytes);
//! without it a fixed demo key is used, which is fine for this demo only.
//!
//! Differences from the stateful `axum_app`: there is no "your sessions"
//! page (tokens live with their clients and cannot be listed), so the page
//! offers "log out everywhere" (a per-user not-before instant) instead; and
//! the counter is not protected against concurrent requests of the same
//! client, since there is no server copy to compare against: the last token
//! the client keeps wins.

use std::time::Duration;

use axum::extract::{Form, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessionkit::axum::{BearerConfig, SessionError, SessionHandle, SessionLayer};
use sessionkit::jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit::memory::MemoryStore;
use sessionkit::{RevocationList, SessionManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What each session (token) carries. Keep it small: it travels with every
/// request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppSession {
    user: Option<String>,
    counter: u64,
}

type Session = SessionHandle<AppSession>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let secret = match std::env::var("SESSIONKIT_JWT_SECRET") {
        Ok(s) => s.into_bytes(),
        Err(_) => {
            eprintln!("warning: SESSIONKIT_JWT_SECRET is not set; using a demo key");
            b"demo key: never use this one outside the example".to_vec()
        }
    };
    let codec = JwtCodec::builder(KeyRing::new(Key::secret(
        "demo-1",
        Algorithm::HS256,
        &secret,
    )?)?)
    .issuer("sessionkit-example")
    .leeway(Duration::from_secs(5))
    .build()?;
    // Revoked token IDs and per-user not-before instants: any store will do.
    let revocations = RevocationList::new(MemoryStore::new());
    let sessions = SessionManager::<AppSession>::stateless(codec, revocations)
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
    // Browsers: the JWT in a Secure, HttpOnly, SameSite=Lax cookie.
    let browser = Router::new()
        .route("/", get(index))
        .route("/me", get(me))
        .route("/login", post(login_form))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/counter", post(count))
        .layer(SessionLayer::new(sessions.clone()));
    // API clients: `Authorization: Bearer <jwt>`; new tokens come back in
    // the `x-session-token` response header.
    let api = Router::new()
        .route("/api/me", get(me))
        .route("/api/login", post(login_query))
        .route("/api/logout", post(logout))
        .route("/api/counter", post(count))
        .layer(SessionLayer::new(sessions).bearer(BearerConfig::new()));
    browser.merge(api)
}

async fn index(session: Session) -> Result<Html<String>, SessionError> {
    let data = session.get().await?.unwrap_or_default();
    let body = match data.user {
        Some(user) => format!(
            "<p>Logged in as <b>{}</b>. Counter: {}.</p>\
             <form method=post action=/counter><button>+1</button></form>\
             <form method=post action=/logout><button>Log out</button></form>\
             <form method=post action=/logout-everywhere><button>Log out everywhere</button></form>",
            user.replace('<', "&lt;").replace('&', "&amp;"),
            data.counter
        ),
        None => format!(
            "<p>Not logged in. Counter: {}.</p>\
             <form method=post action=/counter><button>+1</button></form>\
             <form method=post action=/login><input name=user placeholder=user> \
             <input name=password type=password placeholder=password> <button>Log in</button></form>",
            data.counter
        ),
    };
    Ok(Html(format!(
        "<!doctype html><title>sessionkit</title><h1>sessionkit stateless demo</h1>{body}"
    )))
}

#[derive(Serialize, Deserialize)]
struct Me {
    user: Option<String>,
    counter: u64,
}

async fn me(session: Session) -> Result<Json<Me>, SessionError> {
    let data = session.get().await?.unwrap_or_default();
    Ok(Json(Me {
        user: data.user,
        counter: data.counter,
    }))
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

async fn login(session: &Session, c: &Credentials) -> Result<bool, SessionError> {
    // Demo credentials check; use a real password hash in an application.
    if c.password != "password" || sessionkit::validate_subject(&c.user).is_err() {
        return Ok(false);
    }
    // A new token ID; the old token is revoked (fixation defence).
    session.login(&c.user, AppSession::default).await?;
    session.modify(|s| s.user = Some(c.user.clone())).await?;
    Ok(true)
}

async fn login_form(
    session: Session,
    Form(c): Form<Credentials>,
) -> Result<Response, SessionError> {
    Ok(match login(&session, &c).await? {
        true => Redirect::to("/").into_response(),
        false => (StatusCode::UNAUTHORIZED, "wrong user or password").into_response(),
    })
}

async fn login_query(
    session: Session,
    Query(c): Query<Credentials>,
) -> Result<Response, SessionError> {
    Ok(match login(&session, &c).await? {
        true => (
            StatusCode::OK,
            "logged in; your token is in x-session-token",
        )
            .into_response(),
        false => (StatusCode::UNAUTHORIZED, "wrong user or password").into_response(),
    })
}

async fn logout(session: Session, headers: HeaderMap) -> Result<Response, SessionError> {
    session.destroy().await?; // revokes the token's ID
    Ok(done(&headers))
}

async fn logout_everywhere(session: Session, headers: HeaderMap) -> Result<Response, SessionError> {
    if let Some(user) = session.subject().await? {
        // Every token of this user issued until now stops working.
        session.manager().destroy_subject(&user).await?;
        session.destroy().await?;
    }
    Ok(done(&headers))
}

async fn count(session: Session, headers: HeaderMap) -> Result<Response, SessionError> {
    if session.update(|s| s.counter += 1).await?.is_none() {
        session
            .insert(AppSession {
                user: None,
                counter: 1,
            })
            .await?;
    }
    Ok(done(&headers))
}

/// Browsers go back to the page; API clients get a plain 200.
fn done(headers: &HeaderMap) -> Response {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        StatusCode::OK.into_response()
    } else {
        Redirect::to("/").into_response()
    }
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

fn client(cookies: bool) -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .cookie_store(cookies)
        .timeout(Duration::from_secs(10))
        .build()?)
}

async fn selftest(base: &str) -> Result<(), BoxError> {
    let phone = client(true)?;
    let laptop = client(true)?;
    let me = |c: reqwest::Client, path: &'static str| {
        let url = format!("{base}{path}");
        async move { Ok::<Me, BoxError>(c.get(url).send().await?.json().await?) }
    };

    phone.post(format!("{base}/counter")).send().await?;
    ensure(
        me(phone.clone(), "/me").await?.counter == 1,
        "anonymous counter",
    )?;
    for c in [&phone, &laptop] {
        let r = c
            .post(format!("{base}/login"))
            .form(&[("user", "alice"), ("password", "password")])
            .send()
            .await?;
        ensure(r.status().is_success(), "login")?;
    }
    phone.post(format!("{base}/counter")).send().await?;
    let m = me(phone.clone(), "/me").await?;
    ensure(
        m.user.as_deref() == Some("alice") && m.counter == 2,
        "logged in, the anonymous count carried over",
    )?;

    // An API client with a bearer token.
    let api = client(false)?;
    let r = api
        .post(format!("{base}/api/login?user=bob&password=password"))
        .send()
        .await?;
    let token = r
        .headers()
        .get("x-session-token")
        .and_then(|v| v.to_str().ok())
        .ok_or("no token in x-session-token")?
        .to_owned();
    let m: Me = api
        .get(format!("{base}/api/me"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    ensure(m.user.as_deref() == Some("bob"), "bearer token accepted")?;
    let r = api
        .post(format!("{base}/api/logout"))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure(r.status() == StatusCode::OK, "bearer logout")?;
    let m: Me = api
        .get(format!("{base}/api/me"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    ensure(
        m.user.is_none(),
        "a revoked bearer token is an empty session",
    )?;

    // Log out everywhere from the phone: the laptop's token dies too.
    phone
        .post(format!("{base}/logout-everywhere"))
        .send()
        .await?;
    ensure(
        me(phone.clone(), "/me").await?.user.is_none(),
        "phone logged out",
    )?;
    ensure(
        me(laptop.clone(), "/me").await?.user.is_none(),
        "laptop logged out too",
    )?;
    let page = laptop.get(format!("{base}/")).send().await?.text().await?;
    ensure(page.contains("Not logged in"), "the index page renders")?;
    Ok(())
}
