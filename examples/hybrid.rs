//! Hybrid sessions: short-lived access tokens (JWTs, checked with no store
//! lookup beyond the revocation list) plus refresh tokens that rotate on
//! every use, with reuse detection as RFC 9700 (OAuth 2.0 Security Best
//! Current Practice, section 4.14.2) describes it. The library does the
//! work: `HybridManager` in the core, `Hybrid` in the axum integration.
//!
//! ```text
//! SESSIONKIT_JWT_SECRET=... SESSIONKIT_REFRESH_SECRET=... \
//!     cargo run -p sessionkit-examples --example hybrid
//! SESSIONKIT_EXAMPLE_SELFTEST=1 cargo run -p sessionkit-examples --example hybrid
//! ```
//!
//! Two secrets of at least 32 bytes each: `SESSIONKIT_JWT_SECRET` signs the
//! access tokens, `SESSIONKIT_REFRESH_SECRET` authenticates the refresh
//! tokens. Without them the example refuses to start, unless
//! `SESSIONKIT_DEMO_RANDOM_SECRET=1` (or the self-test) asks for throwaway
//! random keys for this run only.
//!
//! - `POST /login?user=..&password=password` returns `{access_token,
//!   refresh_token, expires_in, ...}`. Send the access token as
//!   `Authorization: Bearer` to `/api/*`.
//! - `POST /refresh` with `{"refresh_token": ..}` returns a new pair; the
//!   refresh token presented dies. Presenting it again means that two
//!   parties hold it (the client and a thief): the whole family, every
//!   refresh and access token issued since that login, is ended, and the
//!   answer is 401 with `"reason": "reused"`.
//! - `POST /logout` with the refresh token ends the family.
//! - `GET /api/devices` lists the user's logins; `POST /api/logout-everywhere`
//!   ends them all.
//!
//! This example carries the refresh token in JSON bodies (an API or mobile
//! client). For browsers, the default `HybridConfig` puts it in an HttpOnly
//! cookie scoped to `/auth` instead, out of reach of scripts.

use std::time::Duration;

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessionkit::axum::{Authenticated, Hybrid, HybridConfig, HybridError, RefreshTransport};
use sessionkit::jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit::memory::MemoryStore;
use sessionkit::{HybridManager, RevocationList, SessionId};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every access token carries (keep it small: it travels with every
/// request).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    name: String,
}

fn selftest_mode() -> bool {
    std::env::var_os("SESSIONKIT_EXAMPLE_SELFTEST").is_some()
}

/// A secret of at least 32 bytes from the environment variable `var`.
/// Without it: an error, unless `SESSIONKIT_DEMO_RANDOM_SECRET=1` or the
/// self-test asks for a random key for this run only. There is no built-in
/// key: a key in the source code signs tokens anyone can forge.
fn secret(var: &str) -> Result<Vec<u8>, String> {
    match std::env::var(var) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret.into_bytes()),
        Ok(_) => return Err(format!("{var} is shorter than 32 bytes")),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{var} is not valid UTF-8"));
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    let demo = std::env::var("SESSIONKIT_DEMO_RANDOM_SECRET").is_ok_and(|v| v == "1");
    if !demo && !selftest_mode() {
        return Err(format!(
            "{var} is not set. Set it to a random secret of at least 32 bytes (for \
             example `openssl rand -base64 48`), or set SESSIONKIT_DEMO_RANDOM_SECRET=1 \
             to try the example with a throwaway key"
        ));
    }
    eprintln!(
        "warning: {var} is not set; DEMO MODE: using a random key made for this run \
         only (tokens end when the process stops). Never run a deployment like this."
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
    let (jwt_secret, refresh_secret) = match (
        secret("SESSIONKIT_JWT_SECRET"),
        secret("SESSIONKIT_REFRESH_SECRET"),
    ) {
        (Ok(jwt), Ok(refresh)) => (jwt, refresh),
        (Err(why), _) | (_, Err(why)) => {
            eprintln!("error: refusing to start: {why}");
            std::process::exit(2);
        }
    };
    let key = Key::secret("access-1", Algorithm::HS256, &jwt_secret)?;
    let codec = JwtCodec::builder(KeyRing::new(key)?)
        .issuer("sessionkit-hybrid")
        .audience("access")
        .build()?;
    // Families in one store, revocations in another (Redis or SQL in a
    // deployment of several instances).
    let manager = HybridManager::<Profile>::builder(
        MemoryStore::new(),
        codec,
        RevocationList::new(MemoryStore::new()),
    )
    .secret(refresh_secret)
    .access_ttl(Duration::from_secs(5 * 60))
    .idle_timeout(Duration::from_secs(14 * 24 * 3600))
    .absolute_timeout(Duration::from_secs(30 * 24 * 3600))
    .build()?;
    let hybrid = Hybrid::with_config(
        manager,
        HybridConfig::new()
            .with_refresh(RefreshTransport::Body)
            .with_paths("/refresh", "/logout"),
    );
    let app = hybrid.install(
        Router::new()
            .route("/login", post(login))
            .route("/api/me", get(me))
            .route("/api/devices", get(devices))
            .route("/api/logout-everywhere", post(logout_everywhere)),
    );

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

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

async fn login(
    hybrid: Hybrid<Profile>,
    Query(c): Query<Credentials>,
    headers: HeaderMap,
) -> Result<Response, HybridError> {
    // Demo credentials check; use a real password hash in an application.
    if c.password != "password" || sessionkit::validate_subject(&c.user).is_err() {
        return Ok((StatusCode::UNAUTHORIZED, "wrong user or password").into_response());
    }
    let profile = Profile {
        name: c.user.clone(),
    };
    hybrid.login(&c.user, &profile, &headers).await
}

async fn me(user: Authenticated<Profile>) -> Json<Profile> {
    Json(user.data.clone())
}

#[derive(Serialize, Deserialize)]
struct Device {
    this_one: bool,
    user_agent: Option<String>,
    refreshes: u64,
}

async fn devices(
    hybrid: Hybrid<Profile>,
    user: Authenticated<Profile>,
) -> Result<Json<Vec<Device>>, HybridError> {
    let families = hybrid.manager().families(&user.subject).await?;
    Ok(Json(
        families
            .into_iter()
            .map(|f| Device {
                this_one: f.id == user.family,
                user_agent: f.client.user_agent().map(str::to_owned),
                refreshes: f.generation - 1,
            })
            .collect(),
    ))
}

async fn logout_everywhere(
    hybrid: Hybrid<Profile>,
    user: Authenticated<Profile>,
) -> Result<StatusCode, HybridError> {
    hybrid.manager().logout_everywhere(&user.subject).await?;
    Ok(StatusCode::NO_CONTENT)
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

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

async fn selftest(base: &str) -> Result<(), BoxError> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let login = |user: &'static str| {
        let (c, url) = (
            c.clone(),
            format!("{base}/login?user={user}&password=password"),
        );
        async move {
            let r = c
                .post(url)
                .header("user-agent", "selftest/1")
                .send()
                .await?;
            Ok::<Tokens, BoxError>(r.error_for_status()?.json().await?)
        }
    };
    let me = |token: &str| {
        let (c, url, token) = (c.clone(), format!("{base}/api/me"), token.to_owned());
        async move { Ok::<StatusCode, BoxError>(c.get(url).bearer_auth(token).send().await?.status()) }
    };
    let post = |path: &str, token: &str| {
        let (c, url) = (c.clone(), format!("{base}{path}"));
        let body = serde_json::json!({ "refresh_token": token });
        async move { Ok::<reqwest::Response, BoxError>(c.post(url).json(&body).send().await?) }
    };
    let refresh = |token: &str| {
        let r = post("/refresh", token);
        async move {
            let r = r.await?;
            if r.status() == StatusCode::OK {
                Ok::<_, BoxError>(Ok(r.json::<Tokens>().await?))
            } else {
                let body: serde_json::Value = r.json().await?;
                Ok(Err(body["reason"].as_str().unwrap_or("").to_owned()))
            }
        }
    };

    let t1 = login("alice").await?;
    ensure(
        me(&t1.access_token).await? == StatusCode::OK,
        "access token works",
    )?;
    let t2 = refresh(&t1.refresh_token)
        .await?
        .map_err(|r| format!("refresh 1: {r}"))?;
    ensure(
        t2.refresh_token != t1.refresh_token,
        "the refresh token rotates",
    )?;
    let t3 = refresh(&t2.refresh_token)
        .await?
        .map_err(|r| format!("refresh 2: {r}"))?;
    ensure(
        me(&t3.access_token).await? == StatusCode::OK,
        "new access token works",
    )?;

    // A thief replays the first refresh token: the family ends, all of it.
    ensure(
        refresh(&t1.refresh_token).await?.err().as_deref() == Some("reused"),
        "a used refresh token is refused as reused",
    )?;
    ensure(
        refresh(&t3.refresh_token).await?.is_err(),
        "the current refresh token is dead too",
    )?;
    for (i, t) in [&t1, &t2, &t3].iter().enumerate() {
        ensure(
            me(&t.access_token).await? == StatusCode::UNAUTHORIZED,
            &format!("access token {} of the family is revoked", i + 1),
        )?;
    }
    ensure(
        refresh("garbage").await?.err().as_deref() == Some("malformed"),
        "a malformed refresh token is a 401, not a 500",
    )?;

    // Two concurrent refreshes with one token: one wins, the duplicate is
    // reuse, the family ends.
    for _ in 0..20 {
        let t = login("carol").await?;
        let (a, b) = tokio::join!(refresh(&t.refresh_token), refresh(&t.refresh_token));
        let (a, b) = (a?, b?);
        ensure_quiet(
            a.is_ok() != b.is_ok(),
            "exactly one concurrent refresh wins",
        )?;
        let winner = a.or(b).map_err(|_| "no winner")?;
        ensure_quiet(
            me(&winner.access_token).await? == StatusCode::UNAUTHORIZED,
            "the winner's access token dies with the family",
        )?;
    }
    println!("ok: 20 races of two concurrent refreshes, never two winners");

    // Devices, logout, logout everywhere.
    let phone = login("bob").await?;
    let laptop = login("bob").await?;
    let devices: Vec<Device> = c
        .get(format!("{base}/api/devices"))
        .bearer_auth(&laptop.access_token)
        .send()
        .await?
        .json()
        .await?;
    ensure(
        devices.len() == 2 && devices.iter().filter(|d| d.this_one).count() == 1,
        "the devices list shows both logins, this one marked",
    )?;
    let r = post("/logout", &phone.refresh_token).await?;
    ensure(r.status() == StatusCode::NO_CONTENT, "logout")?;
    ensure(
        me(&phone.access_token).await? == StatusCode::UNAUTHORIZED,
        "the access token after logout is refused",
    )?;
    ensure(
        me(&laptop.access_token).await? == StatusCode::OK,
        "the other device is still logged in",
    )?;
    let r = c
        .post(format!("{base}/api/logout-everywhere"))
        .bearer_auth(&laptop.access_token)
        .send()
        .await?;
    ensure(r.status() == StatusCode::NO_CONTENT, "log out everywhere")?;
    ensure(
        me(&laptop.access_token).await? == StatusCode::UNAUTHORIZED
            && refresh(&laptop.refresh_token).await?.is_err(),
        "every device is logged out",
    )?;
    Ok(())
}

fn ensure_quiet(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("self-test failed: {what}").into())
    }
}
