//! An actix-web application with stateful sessions: login, logout, a
//! counter and a "your sessions" page that lists and revokes your other
//! sessions. The same routes as the axum example (`examples/axum_app.rs` of
//! the `sessionkit` package), on `sessionkit-actix`.
//!
//! ```text
//! cargo run -p sessionkit-actix --example actix_app
//! # then open http://127.0.0.1:3000 (user: any name, password: "password")
//!
//! # drive itself with a few requests and exit (for CI):
//! SESSIONKIT_EXAMPLE_SELFTEST=1 cargo run -p sessionkit-actix --example actix_app
//! ```
//!
//! The store is the in-memory one (a `MemoryStore`); any `SessionStore`
//! (SQL, Redis) plugs in the same way, as in the axum example.
//!
//! The session cookie is `Secure`: browsers send it over plain HTTP only to
//! `localhost`/`127.0.0.1`. The forms are POSTs, and `SameSite=Lax` keeps
//! the cookie off cross-site POSTs, which is this demo's CSRF defence; a
//! real application adds CSRF tokens or checks `Origin` as well.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};
use sessionkit_actix::{SessionError, SessionHandle, SessionMiddleware};
use sessionkit_core::{SessionId, SessionManager};
use sessionkit_memory::MemoryStore;

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
type Sessions = web::Data<SessionManager<AppSession>>;

#[actix_web::main]
async fn main() -> Result<(), BoxError> {
    let sessions = SessionManager::<AppSession>::stateful(MemoryStore::new())
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(12 * 3600))
        .build()?;
    let selftest = std::env::var_os("SESSIONKIT_EXAMPLE_SELFTEST").is_some();
    let addr = if selftest {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(sessions.clone()))
            .route("/", web::get().to(index))
            .route("/me", web::get().to(me))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/counter", web::post().to(count))
            .route("/sessions", web::get().to(list_sessions))
            .route("/sessions/revoke", web::post().to(revoke))
            .wrap(SessionMiddleware::new(sessions.clone()))
    })
    .workers(if selftest { 1 } else { 2 })
    .bind(addr)?;
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();

    if selftest {
        let handle = server.handle();
        let running = actix_web::rt::spawn(server);
        let result = selftest_run(&base).await;
        handle.stop(true).await;
        let _ = running.await;
        result?;
        println!("self-test passed");
        return Ok(());
    }
    println!("listening on {base}");
    server.await?;
    Ok(())
}

// ---------------------------------------------------------------- handlers

async fn index(session: Session) -> Result<HttpResponse, SessionError> {
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
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>sessionkit</title><h1>sessionkit demo</h1>{body}"
        )))
}

#[derive(Serialize, Deserialize)]
struct Me {
    user: Option<String>,
    counter: u64,
}

async fn me(session: Session) -> Result<HttpResponse, SessionError> {
    let data = session.data().await?.unwrap_or_default();
    Ok(HttpResponse::Ok().json(Me {
        user: data.user,
        counter: data.counter,
    }))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

fn redirect_home() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .finish()
}

async fn login(
    session: Session,
    request: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, SessionError> {
    // Demo credentials check; use a real password hash in an application.
    if form.password != "password" || sessionkit_core::validate_subject(&form.user).is_err() {
        return Ok(HttpResponse::Unauthorized().body("wrong user or password"));
    }
    // New session ID (fixation defence); an anonymous counter is kept.
    session.login(&form.user, AppSession::default).await?;
    let device = request
        .headers()
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
    Ok(redirect_home())
}

async fn logout(session: Session) -> Result<HttpResponse, SessionError> {
    session.destroy().await?;
    Ok(redirect_home())
}

async fn count(session: Session) -> Result<HttpResponse, SessionError> {
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
    Ok(redirect_home())
}

#[derive(Serialize, Deserialize)]
struct SessionRow {
    label: String,
    device: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    current: bool,
}

async fn list_sessions(app: Sessions, session: Session) -> Result<HttpResponse, SessionError> {
    let (Some(user), Some(info)) = (session.subject().await?, session.info().await?) else {
        return Ok(HttpResponse::Unauthorized().body("log in first"));
    };
    let rows: Vec<SessionRow> = app
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
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Deserialize)]
struct RevokeForm {
    label: String,
}

async fn revoke(
    app: Sessions,
    session: Session,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, SessionError> {
    // Ending sessions is a security decision: ask the store itself whether
    // this session is still live, past any cache (with a `CachedStore` on
    // several instances, another one may have logged it out a moment ago).
    if !session.verify_fresh().await? {
        return Ok(HttpResponse::Unauthorized().body("log in first"));
    }
    let (Some(user), Some(info)) = (session.subject().await?, session.info().await?) else {
        return Ok(HttpResponse::Unauthorized().body("log in first"));
    };
    // Only among this user's own sessions, and never the current one.
    for other in app.list_subject(&user).await? {
        if other.data().label == form.label && other.id() != info.id {
            // Listed sessions carry their store ID, not their ticket.
            app.destroy_id(&other.id()).await?;
            return Ok(HttpResponse::Ok().body("revoked"));
        }
    }
    Ok(HttpResponse::NotFound().body("no such session"))
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

async fn selftest_run(base: &str) -> Result<(), BoxError> {
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
        bad.status() == reqwest::StatusCode::UNAUTHORIZED,
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
    ensure(r.status() == reqwest::StatusCode::OK, "revoked the laptop")?;
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
