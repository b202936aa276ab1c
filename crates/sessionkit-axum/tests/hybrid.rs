//! Hybrid sessions over HTTP: `/auth/refresh`, `/auth/logout` and the
//! `Authenticated` extractor, through `tower::ServiceExt::oneshot` and, for
//! the concurrency trials, a real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sessionkit_axum::{
    AccessTransport, Authenticated, Hybrid, HybridConfig, HybridError, RefreshTransport,
};
use sessionkit_core::{
    Error, HybridManager, Record, RevocationList, SessionId, SessionStore, Timestamp, async_trait,
};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit_memory::MemoryStore;
use tokio::sync::Barrier;
use tower::ServiceExt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
}

/// A memory store that can be switched off (every call then fails with a
/// transient backend error).
#[derive(Clone, Default)]
struct Switch {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
}

impl Switch {
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn check(&self) -> sessionkit_core::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::backend(
                std::io::Error::other("injected: connection refused"),
                true,
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for Switch {
    async fn create(&self, r: &Record) -> sessionkit_core::Result<()> {
        self.check()?;
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> sessionkit_core::Result<Option<Record>> {
        self.check()?;
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> sessionkit_core::Result<u64> {
        self.check()?;
        self.inner.save(r).await
    }
    async fn touch(&self, id: &SessionId, at: Timestamp) -> sessionkit_core::Result<()> {
        self.check()?;
        self.inner.touch(id, at).await
    }
    async fn delete(&self, id: &SessionId) -> sessionkit_core::Result<bool> {
        self.check()?;
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> sessionkit_core::Result<()> {
        self.check()?;
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> sessionkit_core::Result<Vec<Record>> {
        self.check()?;
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> sessionkit_core::Result<u64> {
        self.check()?;
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> sessionkit_core::Result<u64> {
        self.inner.delete_expired().await
    }
}

struct Fixture {
    app: Router,
    families: Switch,
    revocations: Switch,
}

fn fixture(config: HybridConfig, grace: Duration) -> Fixture {
    let families = Switch::default();
    let revocations = Switch::default();
    let ring = KeyRing::new(Key::secret("k1", Algorithm::HS256, &[7u8; 32]).unwrap()).unwrap();
    let codec = JwtCodec::builder(ring)
        .issuer("hybrid-test")
        .audience("access")
        .build()
        .unwrap();
    let manager = HybridManager::<User>::builder(
        families.clone(),
        codec,
        RevocationList::new(revocations.clone()),
    )
    .secret([9u8; 32])
    .reuse_grace(grace)
    .build()
    .unwrap();
    let hybrid = Hybrid::with_config(manager, config);
    let app = hybrid.install(
        Router::new()
            .route("/login", post(login))
            .route("/api/me", get(me))
            .route("/api/maybe", get(maybe))
            .route("/api/devices", get(devices))
            .route("/api/logout-everywhere", post(logout_everywhere)),
    );
    Fixture {
        app,
        families,
        revocations,
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(
    hybrid: Hybrid<User>,
    Query(q): Query<Login>,
    headers: HeaderMap,
) -> Result<Response, HybridError> {
    let user = User {
        name: q.user.to_uppercase(),
    };
    hybrid.login(&q.user, &user, &headers).await
}

async fn me(user: Authenticated<User>) -> Json<Value> {
    Json(json!({"subject": user.subject, "name": user.data.name, "family": user.family.as_str()}))
}

async fn maybe(user: Option<Authenticated<User>>) -> String {
    user.map_or_else(|| "anonymous".into(), |u| u.subject.clone())
}

async fn devices(
    hybrid: Hybrid<User>,
    user: Authenticated<User>,
) -> Result<Json<Value>, HybridError> {
    let list = hybrid.manager().families(&user.subject).await?;
    Ok(Json(Value::Array(
        list.iter()
            .map(|f| {
                json!({
                    "current": f.id == user.family,
                    "user_agent": f.client.user_agent(),
                    "generation": f.generation,
                })
            })
            .collect(),
    )))
}

async fn logout_everywhere(
    hybrid: Hybrid<User>,
    user: Authenticated<User>,
) -> Result<StatusCode, HybridError> {
    hybrid.manager().logout_everywhere(&user.subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ the client

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
    /// The value a `Set-Cookie` gives cookie `name` (`Some("")` when it is
    /// removed).
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (n, v) = pair.split_once('=')?;
            (n == name).then(|| v.to_owned())
        })
    }
    fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }
    fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {}", self.body))
            .to_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

async fn do_login(app: &Router, user: &str, agent: &str) -> Reply {
    let r = send(
        app,
        Request::post(format!("/login?user={user}"))
            .header(header::USER_AGENT, agent)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "login: {}", r.body);
    r
}

async fn refresh_cookie(app: &Router, token: &str) -> Reply {
    send(
        app,
        Request::post("/auth/refresh")
            .header(header::COOKIE, format!("other=1; __Secure-refresh={token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn refresh_body(app: &Router, path: &str, body: &str) -> Reply {
    send(
        app,
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

async fn me_bearer(app: &Router, token: &str) -> Reply {
    send(
        app,
        Request::get("/api/me")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// Replaces the character at `at` of a refresh token with another one of
/// the alphabet. A refresh token is base64 of format (byte 0), family
/// (bytes 1..17), generation (17..25) and MAC (25..57); character `i` holds
/// bits 6i..6i+6.
fn flip(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn cookie_mode_rotation_and_reuse_detection() {
    let f = fixture(HybridConfig::new(), Duration::ZERO);
    let login = do_login(&f.app, "alice", "Phone/1").await;
    let a1 = login.str("access_token");
    assert!(
        login.body.get("refresh_token").is_none(),
        "cookie mode keeps the refresh token out of the body"
    );
    assert_eq!(login.body["token_type"], "Bearer");
    let expires_in = login.body["expires_in"].as_u64().unwrap();
    assert!((290..=300).contains(&expires_in), "{expires_in}");
    assert_eq!(login.headers[header::CACHE_CONTROL], "no-store");
    let set = login
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Secure-refresh="))
        .expect("refresh cookie");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/auth",
        "Max-Age=",
    ] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    let r1 = login.cookie("__Secure-refresh").unwrap();

    let me = me_bearer(&f.app, &a1).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["subject"], "alice");
    assert_eq!(me.body["name"], "ALICE");

    let second = refresh_cookie(&f.app, &r1).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let r2 = second.cookie("__Secure-refresh").unwrap();
    let a2 = second.str("access_token");
    assert_ne!(r2, r1);
    assert_eq!(me_bearer(&f.app, &a2).await.status, StatusCode::OK);

    // The old refresh token comes back: the family ends, every token dies.
    let replay = refresh_cookie(&f.app, &r1).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.body["error"], "invalid_grant");
    assert_eq!(replay.reason(), "reused");
    assert_eq!(
        replay.cookie("__Secure-refresh").as_deref(),
        Some(""),
        "the dead cookie is removed"
    );
    for a in [&a1, &a2] {
        let r = me_bearer(&f.app, a).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let www = r.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            www.contains("error=\"invalid_token\"") && www.contains("revoked"),
            "{www}"
        );
        assert_eq!(r.reason(), "revoked");
    }
    let after = refresh_cookie(&f.app, &r2).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.reason(), "ended");
}

#[tokio::test]
async fn body_mode_with_an_access_cookie() {
    let config = HybridConfig::new()
        .with_access(AccessTransport::cookie())
        .with_refresh(RefreshTransport::Body)
        .with_paths("/token/refresh", "/token/logout");
    let f = fixture(config, Duration::ZERO);
    let login = do_login(&f.app, "bob", "Cli/1").await;
    assert!(
        login.body.get("access_token").is_none(),
        "cookie mode keeps the access token out of the body"
    );
    let r1 = login.str("refresh_token");
    let access = login.cookie("__Host-access").expect("access cookie");
    let set = login
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-access="))
        .unwrap();
    assert!(set.contains("HttpOnly") && set.contains("Path=/"), "{set}");

    let me = send(
        &f.app,
        Request::get("/api/me")
            .header(header::COOKIE, format!("__Host-access={access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["subject"], "bob");

    let second = refresh_body(
        &f.app,
        "/token/refresh",
        &json!({ "refresh_token": r1 }).to_string(),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let r2 = second.str("refresh_token");
    let access2 = second.cookie("__Host-access").unwrap();

    let out = refresh_body(
        &f.app,
        "/token/logout",
        &json!({ "refresh_token": r2 }).to_string(),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(out.cookie("__Host-access").as_deref(), Some(""));
    for a in [&access, &access2] {
        let me = send(
            &f.app,
            Request::get("/api/me")
                .header(header::COOKIE, format!("__Host-access={a}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    }
    // Logging out again, or without a token, is fine.
    let again = refresh_body(
        &f.app,
        "/token/logout",
        &json!({ "refresh_token": r2 }).to_string(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh_body(&f.app, "/token/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn bad_refresh_tokens_are_401_with_a_reason_and_end_nothing() {
    let f = fixture(HybridConfig::new(), Duration::ZERO);
    let login = do_login(&f.app, "carol", "Web/1").await;
    let token = login.cookie("__Secure-refresh").unwrap();
    let access = login.str("access_token");
    let other = do_login(&f.app, "dan", "Web/1").await;
    let other_token = other.cookie("__Secure-refresh").unwrap();

    let missing = refresh_body(&f.app, "/auth/refresh", "").await;
    assert_eq!(
        (missing.status, missing.reason()),
        (StatusCode::UNAUTHORIZED, "missing")
    );
    for (body, why) in [
        ("{", "broken JSON"),
        ("{\"refresh_token\": 5}", "not a string"),
        ("{\"refresh_token\": \"garbage\"}", "garbage"),
    ] {
        let r = refresh_body(&f.app, "/auth/refresh", body).await;
        assert_eq!(
            (r.status, r.reason()),
            (StatusCode::UNAUTHORIZED, "malformed"),
            "{why}"
        );
    }
    let huge = format!("{{\"refresh_token\": \"{}\"}}", "A".repeat(20_000));
    assert_eq!(
        refresh_body(&f.app, "/auth/refresh", &huge).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Another family's ID on this token's generation and MAC.
    let spliced = format!("{}{}{}", &token[..1], &other_token[1..23], &token[23..]);
    for (tampered, why, reason) in [
        (flip(&token, 50), "a MAC byte", "invalid"),
        (flip(&token, 75), "the last MAC bits", "invalid"),
        (flip(&token, 28), "the generation", "invalid"),
        (spliced, "another family's ID", "invalid"),
        (flip(&token, 10), "an unknown family's ID", "ended"),
    ] {
        let r = refresh_cookie(&f.app, &tampered).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(r.reason(), reason, "{why}");
        let out = refresh_body(
            &f.app,
            "/auth/logout",
            &json!({ "refresh_token": tampered }).to_string(),
        )
        .await;
        assert!(
            matches!(
                out.status,
                StatusCode::UNAUTHORIZED | StatusCode::NO_CONTENT
            ),
            "{why}: logout {}",
            out.status
        );
    }
    // Nothing was ended.
    assert_eq!(me_bearer(&f.app, &access).await.status, StatusCode::OK);
    assert_eq!(
        me_bearer(&f.app, &other.str("access_token")).await.status,
        StatusCode::OK
    );
    assert_eq!(refresh_cookie(&f.app, &token).await.status, StatusCode::OK);
    assert_eq!(
        refresh_cookie(&f.app, &other_token).await.status,
        StatusCode::OK
    );

    // Access tokens: missing and garbage.
    let none = send(&f.app, Request::get("/api/me").body(Body::empty()).unwrap()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(none.reason(), "missing");
    let bad = me_bearer(&f.app, "not.a.jwt").await;
    assert_eq!(
        (bad.status, bad.reason()),
        (StatusCode::UNAUTHORIZED, "invalid")
    );
    // The optional extractor: anonymous, never an error.
    let anon = send(
        &f.app,
        Request::get("/api/maybe").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(anon.status, StatusCode::OK);
}

#[tokio::test]
async fn ending_a_family_rejects_every_access_token_it_issued() {
    let f = fixture(HybridConfig::new(), Duration::ZERO);
    let login = do_login(&f.app, "erin", "Web/1").await;
    let mut access = vec![login.str("access_token")];
    let mut refresh = login.cookie("__Secure-refresh").unwrap();
    for _ in 0..4 {
        let r = refresh_cookie(&f.app, &refresh).await;
        assert_eq!(r.status, StatusCode::OK);
        access.push(r.str("access_token"));
        refresh = r.cookie("__Secure-refresh").unwrap();
    }
    for a in &access {
        assert_eq!(me_bearer(&f.app, a).await.status, StatusCode::OK);
    }
    let out = send(
        &f.app,
        Request::post("/auth/logout")
            .header(header::COOKIE, format!("__Secure-refresh={refresh}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(out.cookie("__Secure-refresh").as_deref(), Some(""));
    for (i, a) in access.iter().enumerate() {
        let r = me_bearer(&f.app, a).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "access token {i}");
        assert_eq!(r.reason(), "revoked");
    }
    assert_eq!(
        refresh_cookie(&f.app, &refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn devices_list_and_logout_everywhere() {
    let f = fixture(HybridConfig::new(), Duration::ZERO);
    let phone = do_login(&f.app, "fay", "Phone/9").await;
    let laptop = do_login(&f.app, "fay", "Laptop/3").await;
    let other = do_login(&f.app, "gil", "Phone/9").await;
    let laptop2 = refresh_cookie(&f.app, &laptop.cookie("__Secure-refresh").unwrap()).await;
    let list = send(
        &f.app,
        Request::get("/api/devices")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", laptop2.str("access_token")),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", list.body);
    let agents: Vec<&str> = items
        .iter()
        .map(|d| d["user_agent"].as_str().unwrap())
        .collect();
    assert!(agents.contains(&"Phone/9") && agents.contains(&"Laptop/3"));
    let current: Vec<&Value> = items.iter().filter(|d| d["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Laptop/3");
    assert_eq!(current[0]["generation"], 2);

    let out = send(
        &f.app,
        Request::post("/api/logout-everywhere")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", phone.str("access_token")),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    for a in [
        phone.str("access_token"),
        laptop.str("access_token"),
        laptop2.str("access_token"),
    ] {
        assert_eq!(me_bearer(&f.app, &a).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        refresh_cookie(&f.app, &laptop2.cookie("__Secure-refresh").unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me_bearer(&f.app, &other.str("access_token")).await.status,
        StatusCode::OK,
        "another user was logged out"
    );
}

#[tokio::test]
async fn a_store_that_is_down_is_503_and_hands_out_nothing() {
    let f = fixture(HybridConfig::new(), Duration::ZERO);
    let login = do_login(&f.app, "hal", "Web/1").await;
    let token = login.cookie("__Secure-refresh").unwrap();
    let access = login.str("access_token");

    f.families.set_down(true);
    let r = send(
        &f.app,
        Request::post("/login?user=hal")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert!(r.set_cookies().is_empty() && r.body.get("access_token").is_none());
    let r = refresh_cookie(&f.app, &token).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(r.body["error"], "temporarily_unavailable");
    assert!(
        r.set_cookies().is_empty(),
        "neither a new token nor a removal"
    );
    // Verifying access tokens needs only the revocation list.
    assert_eq!(me_bearer(&f.app, &access).await.status, StatusCode::OK);
    f.families.set_down(false);

    f.revocations.set_down(true);
    let r = me_bearer(&f.app, &access).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    let r = send(
        &f.app,
        Request::get("/api/maybe")
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "never anonymous by accident"
    );
    assert_eq!(
        refresh_cookie(&f.app, &token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    f.revocations.set_down(false);

    // Nothing was rotated meanwhile: the token still works.
    assert_eq!(refresh_cookie(&f.app, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_extractor_without_install_is_500() {
    let app: Router = Router::new().route("/api/me", get(me));
    let r = send(&app, Request::get("/api/me").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
}

// ------------------------------------------------- over a real server

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct HttpPair {
    access: String,
    refresh: String,
}

async fn http_login(c: &reqwest::Client, base: &str, user: &str) -> HttpPair {
    let r = c
        .post(format!("{base}/login?user={user}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    pair_of(r).await
}

async fn pair_of(r: reqwest::Response) -> HttpPair {
    let refresh = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let v = v.to_str().ok()?;
            v.strip_prefix("__Secure-refresh=")?
                .split(';')
                .next()
                .map(str::to_owned)
        })
        .expect("a refresh cookie");
    let body: Value = r.json().await.unwrap();
    HttpPair {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh,
    }
}

async fn http_refresh(c: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    c.post(format!("{base}/auth/refresh"))
        .header(header::COOKIE, format!("__Secure-refresh={token}"))
        .send()
        .await
        .unwrap()
}

async fn http_me(c: &reqwest::Client, base: &str, access: &str) -> StatusCode {
    c.get(format!("{base}/api/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

/// `n` concurrent `POST /auth/refresh` with one cookie, behind a barrier.
async fn http_race(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> (Vec<HttpPair>, Vec<String>) {
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, base, token, barrier) = (
                c.clone(),
                base.to_owned(),
                token.to_owned(),
                Arc::clone(&barrier),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                http_refresh(&c, &base, &token).await
            })
        })
        .collect();
    let (mut won, mut lost) = (Vec::new(), Vec::new());
    for t in tasks {
        let r = t.await.unwrap();
        match r.status() {
            StatusCode::OK => won.push(pair_of(r).await),
            StatusCode::UNAUTHORIZED => {
                let body: Value = r.json().await.unwrap();
                lost.push(body["reason"].as_str().unwrap_or("").to_owned());
            }
            other => panic!("a concurrent refresh got {other}"),
        }
    }
    (won, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_over_http_never_fork() {
    let f = fixture(HybridConfig::new(), Duration::ZERO);
    let base = serve(f.app.clone()).await;
    let c = client();
    for (n, trials) in [(2, 200), (10, 50)] {
        for trial in 0..trials {
            let first = http_login(&c, &base, "ivy").await;
            let (won, lost) = http_race(&c, &base, &first.refresh, n).await;
            assert_eq!(won.len(), 1, "{n}x trial {trial}: {} winners", won.len());
            assert!(
                lost.iter().any(|r| r == "reused"),
                "{n}x trial {trial}: reuse not detected: {lost:?}"
            );
            assert!(
                lost.iter()
                    .all(|r| ["reused", "ended", "revoked"].contains(&r.as_str())),
                "{n}x trial {trial}: {lost:?}"
            );
            // The family is dead: the winner's tokens too.
            let w = &won[0];
            assert_eq!(
                http_me(&c, &base, &w.access).await,
                StatusCode::UNAUTHORIZED,
                "{n}x trial {trial}"
            );
            assert_eq!(
                http_me(&c, &base, &first.access).await,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(
                http_refresh(&c, &base, &w.refresh).await.status(),
                StatusCode::UNAUTHORIZED,
                "{n}x trial {trial}: the winner's refresh token still works"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grace_window_over_http_gives_duplicates_the_same_token() {
    let f = fixture(HybridConfig::new(), Duration::from_secs(10));
    let base = serve(f.app.clone()).await;
    let c = client();
    for trial in 0..50 {
        let first = http_login(&c, &base, "jo").await;
        let (won, lost) = http_race(&c, &base, &first.refresh, 4).await;
        assert!(lost.is_empty(), "trial {trial}: {lost:?}");
        assert!(
            won.iter().all(|p| p.refresh == won[0].refresh),
            "trial {trial}: forked"
        );
        for p in &won {
            assert_eq!(http_me(&c, &base, &p.access).await, StatusCode::OK);
        }
        // The shared token rotates once more; two generations back is reuse.
        let next = http_refresh(&c, &base, &won[0].refresh).await;
        assert_eq!(next.status(), StatusCode::OK);
        let replay = http_refresh(&c, &base, &first.refresh).await;
        assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    }
}
