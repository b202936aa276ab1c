//! Hybrid: short-lived stateless access tokens (JWTs, checked without any
//! store lookup beyond the revocation list) plus a stateful refresh session
//! that rotates on every use, with refresh-token reuse detection as RFC 9700
//! (OAuth 2.0 Security Best Current Practice, section 4.14.2) describes it.
//!
//! ```text
//! cargo run --example hybrid --features axum,jwt,memory
//! SESSIONKIT_EXAMPLE_SELFTEST=1 cargo run --example hybrid --features axum,jwt,memory
//! ```
//!
//! - `POST /login?user=..&password=password` returns
//!   `{access_token, refresh_token}`. The access token is a JWT valid for
//!   five minutes; send it as `Authorization: Bearer` to `/api/*`.
//! - `POST /refresh` with `{"refresh_token": ..}` returns a new pair. The
//!   refresh token is single-use: its session gets a new ID on every use
//!   (`SessionManager::rotate`), so the one just presented dies.
//! - Presenting a refresh token that was already used means two parties
//!   hold the same token family (the legitimate client and a thief, in some
//!   order). The server cannot tell which is which, so it revokes the whole
//!   family: the current refresh session and the access token it issued
//!   last. Both parties must log in again.
//! - `POST /logout` with the refresh token ends the family the same way.
//!
//! A refresh token here is `<family>.<session id>`. The family part is a
//! random identifier shared by all refresh tokens of one login, stored as
//! the refresh session's subject (`family:<id>`), so that a replayed, dead
//! session ID still leads to its family. Refresh tokens belong in the
//! client's secure storage (or an HttpOnly cookie scoped to `/refresh`),
//! never next to the access token in script-readable storage.
//!
//! Two concurrent refreshes with the same token also count as reuse (one
//! wins, the other finds its token dead): clients must serialise refreshes.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessionkit::axum::{BearerConfig, SessionError, SessionHandle, SessionLayer};
use sessionkit::jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit::memory::MemoryStore;
use sessionkit::{Error, RevocationList, SessionId, SessionManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The access token's data (kept tiny: it travels with every request).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Access {
    user: String,
}

/// The refresh session's data (server-side only).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refresh {
    user: String,
    /// How many times this family was refreshed.
    generation: u64,
    /// The last access token issued from this family, to revoke it along
    /// with the family.
    last_access: String,
}

const ACCESS_LIFETIME: Duration = Duration::from_secs(5 * 60);

#[derive(Clone)]
struct App {
    access: SessionManager<Access>,
    refresh: SessionManager<Refresh>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let secret = std::env::var("SESSIONKIT_JWT_SECRET")
        .map(String::into_bytes)
        .unwrap_or_else(|_| b"demo key: never use this one outside the example".to_vec());
    let codec = JwtCodec::builder(KeyRing::new(Key::secret(
        "demo-1",
        Algorithm::HS256,
        &secret,
    )?)?)
    .issuer("sessionkit-hybrid")
    .build()?;
    // Access tokens: stateless, short, not extended on use.
    let access =
        SessionManager::<Access>::stateless(codec, RevocationList::new(MemoryStore::new()))
            .idle_timeout(ACCESS_LIFETIME)
            .absolute_timeout(ACCESS_LIFETIME)
            .touch_interval(ACCESS_LIFETIME - Duration::from_millis(1))
            .build()?;
    // Refresh sessions: stateful, long-lived, rotated on every use.
    let refresh = SessionManager::<Refresh>::stateful(MemoryStore::new())
        .idle_timeout(Duration::from_secs(14 * 24 * 3600))
        .absolute_timeout(Duration::from_secs(30 * 24 * 3600))
        .build()?;
    let app = router(App { access, refresh });

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

fn router(app: App) -> Router {
    let api = Router::new()
        .route("/api/me", get(me))
        .layer(SessionLayer::new(app.access.clone()).bearer(BearerConfig::new()));
    Router::new()
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .with_state(app)
        .merge(api)
}

#[derive(Serialize, Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

#[derive(Serialize, Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

fn unauthorized(why: &'static str) -> Response {
    (StatusCode::UNAUTHORIZED, why).into_response()
}

async fn login(
    State(app): State<App>,
    Query(c): Query<Credentials>,
) -> Result<Response, SessionError> {
    // Demo credentials check; use a real password hash in an application.
    if c.password != "password" || sessionkit::validate_subject(&c.user).is_err() {
        return Ok(unauthorized("wrong user or password"));
    }
    let access = app
        .access
        .create(
            Some(&c.user),
            Access {
                user: c.user.clone(),
            },
        )
        .await?;
    let family = SessionId::generate();
    let session = app
        .refresh
        .create(
            Some(&format!("family:{}", family.as_str())),
            Refresh {
                user: c.user,
                generation: 0,
                last_access: access.ticket().as_str().to_owned(),
            },
        )
        .await?;
    Ok(Json(Tokens {
        access_token: access.ticket().as_str().to_owned(),
        refresh_token: format!("{}.{}", family.as_str(), session.ticket().as_str()),
    })
    .into_response())
}

/// Splits `<family>.<session id>`; `None` for anything malformed.
fn parse(token: &str) -> Option<(SessionId, String)> {
    let (family, id) = token.split_once('.')?;
    Some((SessionId::parse(family).ok()?, id.to_owned()))
}

async fn refresh(
    State(app): State<App>,
    Json(req): Json<RefreshRequest>,
) -> Result<Response, SessionError> {
    let Some((family, id)) = parse(&req.refresh_token) else {
        return Ok(unauthorized("invalid refresh token"));
    };
    let subject = format!("family:{}", family.as_str());
    let current = match app.refresh.load(&id).await {
        Ok(found) => found.filter(|s| s.subject() == Some(subject.as_str())),
        Err(e) if e.is_invalid_ticket() => None,
        Err(e) => return Err(e.into()),
    };
    let Some(mut session) = current else {
        // Dead or unknown. If the family is still alive, this is an old,
        // already used refresh token: reuse. Revoke the whole family.
        if revoke_family(&app, &subject).await? {
            return Ok(unauthorized(
                "refresh token reuse detected: the session family was revoked; log in again",
            ));
        }
        return Ok(unauthorized("invalid refresh token"));
    };
    // Claim the token with a compare-and-swap write: of two concurrent
    // refreshes with the same token, exactly one gets past this point.
    session.data_mut().generation += 1;
    match app.refresh.save(&mut session).await {
        Ok(()) => {}
        Err(Error::NotFound | Error::Conflict) => {
            revoke_family(&app, &subject).await?;
            return Ok(unauthorized("refresh token reuse detected"));
        }
        Err(e) => return Err(e.into()),
    }
    // New ID: from here on, the presented refresh token is dead.
    app.refresh.rotate(&mut session).await?;
    let user = session.data().user.clone();
    let access = app
        .access
        .create(Some(&user), Access { user: user.clone() })
        .await?;
    session.data_mut().last_access = access.ticket().as_str().to_owned();
    app.refresh.save(&mut session).await?;
    Ok(Json(Tokens {
        access_token: access.ticket().as_str().to_owned(),
        refresh_token: format!("{}.{}", family.as_str(), session.ticket().as_str()),
    })
    .into_response())
}

/// Ends every refresh session of the family and revokes the access tokens
/// they issued last. Returns whether the family was alive.
async fn revoke_family(app: &App, subject: &str) -> Result<bool, Error> {
    let members = app.refresh.list_subject(subject).await?;
    for member in &members {
        match app.access.destroy(&member.data().last_access).await {
            Ok(_) => {}
            // Already expired or revoked: nothing left to revoke.
            Err(e) if e.is_invalid_ticket() => {}
            Err(e) => return Err(e),
        }
    }
    app.refresh.destroy_subject(subject).await?;
    Ok(!members.is_empty())
}

async fn logout(
    State(app): State<App>,
    Json(req): Json<RefreshRequest>,
) -> Result<Response, SessionError> {
    if let Some((family, _)) = parse(&req.refresh_token) {
        revoke_family(&app, &format!("family:{}", family.as_str())).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, Deserialize)]
struct Me {
    user: Option<String>,
}

async fn me(session: SessionHandle<Access>) -> Result<Response, SessionError> {
    Ok(match session.get().await? {
        Some(a) => Json(Me { user: Some(a.user) }).into_response(),
        None => unauthorized("no valid access token"),
    })
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

async fn selftest(base: &str) -> Result<(), BoxError> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let me = |token: String| {
        let (c, url) = (c.clone(), format!("{base}/api/me"));
        async move { Ok::<StatusCode, BoxError>(c.get(url).bearer_auth(token).send().await?.status()) }
    };
    let refresh = |token: String| {
        let (c, url) = (c.clone(), format!("{base}/refresh"));
        async move {
            let r = c
                .post(url)
                .json(&RefreshRequest {
                    refresh_token: token,
                })
                .send()
                .await?;
            Ok::<_, BoxError>(match r.status() {
                StatusCode::OK => Some(r.json::<Tokens>().await?),
                _ => None,
            })
        }
    };

    let t1: Tokens = c
        .post(format!("{base}/login?user=alice&password=password"))
        .send()
        .await?
        .json()
        .await?;
    ensure(
        me(t1.access_token.clone()).await? == StatusCode::OK,
        "access token works",
    )?;

    let t2 = refresh(t1.refresh_token.clone())
        .await?
        .ok_or("refresh 1")?;
    ensure(
        t2.refresh_token != t1.refresh_token,
        "the refresh token rotates",
    )?;
    let t3 = refresh(t2.refresh_token.clone())
        .await?
        .ok_or("refresh 2")?;
    ensure(
        me(t3.access_token.clone()).await? == StatusCode::OK,
        "new access token works",
    )?;

    // A thief replays the first refresh token: reuse detected.
    ensure(
        refresh(t1.refresh_token.clone()).await?.is_none(),
        "a used refresh token is refused",
    )?;
    ensure(
        refresh(t3.refresh_token.clone()).await?.is_none(),
        "the whole family is revoked, the current refresh token too",
    )?;
    ensure(
        me(t3.access_token.clone()).await? == StatusCode::UNAUTHORIZED,
        "the family's last access token is revoked",
    )?;
    ensure(
        refresh("garbage".into()).await?.is_none(),
        "a malformed refresh token is refused",
    )?;

    // A clean logout ends the family as well.
    let t: Tokens = c
        .post(format!("{base}/login?user=bob&password=password"))
        .send()
        .await?
        .json()
        .await?;
    let r = c
        .post(format!("{base}/logout"))
        .json(&RefreshRequest {
            refresh_token: t.refresh_token.clone(),
        })
        .send()
        .await?;
    ensure(r.status() == StatusCode::NO_CONTENT, "logout")?;
    ensure(
        refresh(t.refresh_token).await?.is_none(),
        "refresh after logout refused",
    )?;
    ensure(
        me(t.access_token).await? == StatusCode::UNAUTHORIZED,
        "access token after logout refused",
    )?;
    Ok(())
}
