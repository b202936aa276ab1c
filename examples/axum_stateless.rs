//! The same kind of application with stateless sessions: the session lives
//! in a signed JWT held by the client (in a cookie for browsers, as a bearer
//! token for API clients); the server keeps only a small revocation list.
//!
//! ```text
//! cargo run -p sessionkit-examples --example axum_stateless
//! # then open http://127.0.0.1:3000 (user: any name, password: "password")
//!
//! # API clients: log in, then send the token as a bearer token
//! curl -si -X POST 'http://127.0.0.1:3000/api/login?user=alice&password=password'
//! curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/api/me
//!
//! # drive itself with a few requests and exit (for CI):
//! SESSIONKIT_EXAMPLE_SELFTEST=1 cargo run -p sessionkit-examples --example axum_stateless
//! ```
//!
//! The signing key comes from `SESSIONKIT_JWT_SECRET` (at least 32 bytes,
//! for example `openssl rand -base64 48`). Without it the example refuses to
//! start, unless `SESSIONKIT_DEMO_RANDOM_SECRET=1` (or the self-test) asks
//! for a throwaway random key, made for this run only: every session ends
//! when the process stops, and two instances would not accept each other's
//! tokens.
//!
//! Differences from the stateful `axum_app`: there is no "your sessions"
//! page (tokens live with their clients and cannot be listed), so the page
//! offers "log out everywhere" (a per-user not-before instant) instead; and
//! the session holds a *preference* (a colour theme), not a counter. A
//! stateless session has no server copy to compare a change with: two
//! concurrent requests with one token both succeed, each on its own copy,
//! and the client keeps whichever new token it stores last (last writer
//! wins, per token). That is right for a preference; a counter, a cart or
//! a balance would silently lose updates, so those belong in a stateful
//! session (`axum_app`).

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
use sessionkit::{RevocationList, SessionId, SessionManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What each session (token) carries. Keep it small: it travels with every
/// request. Only data for which "the last change wins" is right: see the
/// module documentation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppSession {
    user: Option<String>,
    /// "light" or "dark"; a preference, where the last choice should win.
    theme: Option<String>,
}

type Session = SessionHandle<AppSession>;

fn selftest_mode() -> bool {
    std::env::var_os("SESSIONKIT_EXAMPLE_SELFTEST").is_some()
}

/// The HMAC signing secret: `SESSIONKIT_JWT_SECRET`, at least 32 bytes.
/// Without it: an error, unless `SESSIONKIT_DEMO_RANDOM_SECRET=1` or the
/// self-test asks for a random key for this run only. There is no built-in
/// key: a key in the source code signs sessions anyone can forge.
fn jwt_secret() -> Result<Vec<u8>, String> {
    match std::env::var("SESSIONKIT_JWT_SECRET") {
        Ok(secret) if secret.len() >= 32 => return Ok(secret.into_bytes()),
        Ok(_) => return Err("SESSIONKIT_JWT_SECRET is shorter than 32 bytes".into()),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("SESSIONKIT_JWT_SECRET is not valid UTF-8".into());
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    let demo = std::env::var("SESSIONKIT_DEMO_RANDOM_SECRET").is_ok_and(|v| v == "1");
    if !demo && !selftest_mode() {
        return Err(
            "SESSIONKIT_JWT_SECRET is not set. Set it to a random secret of at \
                    least 32 bytes (for example `openssl rand -base64 48`), or set \
                    SESSIONKIT_DEMO_RANDOM_SECRET=1 to try the example with a throwaway \
                    key"
            .into(),
        );
    }
    eprintln!(
        "warning: SESSIONKIT_JWT_SECRET is not set; DEMO MODE: signing with a random key \
         made for this run only (sessions end when the process stops). Never run a \
         deployment like this."
    );
    // 2 x 128 bits from the operating system's CSPRNG.
    let mut key = SessionId::try_generate()
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    key.extend_from_slice(
        &SessionId::try_generate()
            .map_err(|e| e.to_string())?
            .to_bytes(),
    );
    Ok(key)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let secret = match jwt_secret() {
        Ok(secret) => secret,
        Err(why) => {
            eprintln!("error: refusing to start: {why}");
            std::process::exit(2);
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

    if selftest_mode() {
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
        .route("/theme", post(theme_form))
        .layer(SessionLayer::new(sessions.clone()));
    // API clients: `Authorization: Bearer <jwt>`; new tokens come back in
    // the `x-session-token` response header.
    let api = Router::new()
        .route("/api/me", get(me))
        .route("/api/login", post(login_query))
        .route("/api/logout", post(logout))
        .route("/api/theme", post(theme_query))
        .layer(SessionLayer::new(sessions).bearer(BearerConfig::new()));
    browser.merge(api)
}

async fn index(session: Session) -> Result<Html<String>, SessionError> {
    let data = session.data().await?.unwrap_or_default();
    let theme = data.theme.as_deref().unwrap_or("light");
    let switch = format!(
        "<form method=post action=/theme><input type=hidden name=theme value={}>\
         <button>Switch to {} theme</button></form>",
        other_theme(theme),
        other_theme(theme)
    );
    let body = match data.user {
        Some(user) => format!(
            "<p>Logged in as <b>{}</b>. Theme: {theme}.</p>{switch}\
             <form method=post action=/logout><button>Log out</button></form>\
             <form method=post action=/logout-everywhere><button>Log out everywhere</button></form>",
            user.replace('&', "&amp;").replace('<', "&lt;"),
        ),
        None => format!(
            "<p>Not logged in. Theme: {theme}.</p>{switch}\
             <form method=post action=/login><input name=user placeholder=user> \
             <input name=password type=password placeholder=password> <button>Log in</button></form>"
        ),
    };
    Ok(Html(format!(
        "<!doctype html><title>sessionkit</title><h1>sessionkit stateless demo</h1>{body}"
    )))
}

fn other_theme(theme: &str) -> &'static str {
    if theme == "dark" { "light" } else { "dark" }
}

#[derive(Serialize, Deserialize)]
struct Me {
    user: Option<String>,
    theme: Option<String>,
}

async fn me(session: Session) -> Result<Json<Me>, SessionError> {
    let data = session.data().await?.unwrap_or_default();
    Ok(Json(Me {
        user: data.user,
        theme: data.theme,
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

#[derive(Deserialize)]
struct ThemeChoice {
    theme: String,
}

/// Sets the theme: a plain last-writer-wins change, which is all a
/// stateless session can offer (the token is re-issued with the new value).
async fn set_theme(session: &Session, choice: &ThemeChoice) -> Result<bool, SessionError> {
    let theme = match choice.theme.as_str() {
        "light" | "dark" => choice.theme.clone(),
        _ => return Ok(false),
    };
    let chosen = Some(theme);
    if session
        .modify(|s| s.theme = chosen.clone())
        .await?
        .is_none()
    {
        session
            .set_data(AppSession {
                user: None,
                theme: chosen,
            })
            .await?;
    }
    Ok(true)
}

async fn theme_form(
    session: Session,
    headers: HeaderMap,
    Form(choice): Form<ThemeChoice>,
) -> Result<Response, SessionError> {
    Ok(match set_theme(&session, &choice).await? {
        true => done(&headers),
        false => (StatusCode::BAD_REQUEST, "theme: light or dark").into_response(),
    })
}

async fn theme_query(
    session: Session,
    headers: HeaderMap,
    Query(choice): Query<ThemeChoice>,
) -> Result<Response, SessionError> {
    Ok(match set_theme(&session, &choice).await? {
        true => done(&headers),
        false => (StatusCode::BAD_REQUEST, "theme: light or dark").into_response(),
    })
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

    phone
        .post(format!("{base}/theme"))
        .form(&[("theme", "dark")])
        .send()
        .await?;
    ensure(
        me(phone.clone(), "/me").await?.theme.as_deref() == Some("dark"),
        "anonymous preference",
    )?;
    for c in [&phone, &laptop] {
        let r = c
            .post(format!("{base}/login"))
            .form(&[("user", "alice"), ("password", "password")])
            .send()
            .await?;
        ensure(r.status().is_success(), "login")?;
    }
    let m = me(phone.clone(), "/me").await?;
    ensure(
        m.user.as_deref() == Some("alice") && m.theme.as_deref() == Some("dark"),
        "logged in, the anonymous preference carried over",
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

    // Two concurrent changes with one token: both succeed, each on its own
    // copy, each with its own new token; nothing merges them. The client
    // keeps the token it stores last (last writer wins, per token).
    let set = |theme: &'static str| {
        api.post(format!("{base}/api/theme?theme={theme}"))
            .bearer_auth(&token)
            .send()
    };
    let (dark, light) = tokio::join!(set("dark"), set("light"));
    let (dark, light) = (dark?, light?);
    let new_token = |r: &reqwest::Response| {
        r.headers()
            .get("x-session-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (dark, light) = (new_token(&dark), new_token(&light));
    ensure(
        dark.is_some() && light.is_some() && dark != light,
        "concurrent changes: each request got its own token (last writer wins)",
    )?;
    for (t, theme) in [(dark, "dark"), (light, "light")] {
        let m: Me = api
            .get(format!("{base}/api/me"))
            .bearer_auth(t.unwrap_or_default())
            .send()
            .await?
            .json()
            .await?;
        ensure(
            m.theme.as_deref() == Some(theme),
            "each token carries only its own change",
        )?;
    }
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
