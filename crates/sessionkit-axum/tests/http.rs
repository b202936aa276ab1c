//! The layer and extractor driven by a real HTTP client (reqwest) against
//! the app bound on a loopback port, with stateful (MemoryStore) and
//! stateless (JwtCodec) managers, cookie and bearer transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessionkit_axum::{
    BearerConfig, CookieConfig, SameSite, SessionError, SessionHandle, SessionLayer, Transport,
};
use sessionkit_core::{
    Error, Record, RevocationList, SessionId, SessionManager, SessionStore, Timestamp, async_trait,
};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit_memory::{CachedStore, MemoryStore};
use tokio::sync::Barrier;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Data {
    user: Option<String>,
    n: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
struct WhoAmI {
    exists: bool,
    subject: Option<String>,
    user: Option<String>,
    n: Option<u64>,
}

#[derive(Clone)]
struct AppState {
    barrier: Arc<Barrier>,
}

#[derive(Deserialize)]
struct UserQuery {
    user: String,
}

#[derive(Deserialize)]
struct NQuery {
    n: u64,
}

type Handle = SessionHandle<Data>;
type Res<T> = Result<T, SessionError>;

async fn whoami(s: Handle) -> Res<Json<serde_json::Value>> {
    let data = s.data().await?;
    Ok(Json(serde_json::json!({
        "exists": data.is_some(),
        "subject": s.subject().await?,
        "user": data.as_ref().and_then(|d| d.user.clone()),
        "n": data.as_ref().map(|d| d.n),
    })))
}

async fn untouched() -> &'static str {
    "no session needed"
}

async fn anon(s: Handle) -> Res<&'static str> {
    s.set_data(Data { user: None, n: 1 }).await?;
    Ok("anonymous session")
}

async fn login(s: Handle, Query(q): Query<UserQuery>) -> Res<&'static str> {
    s.login(&q.user, Data::default).await?;
    s.modify(|d| d.user = Some(q.user.clone())).await?;
    Ok("logged in")
}

/// Login, then an atomic update in the same request: the rotated ticket
/// must still reach the client.
async fn login_incr(s: Handle, Query(q): Query<UserQuery>) -> Res<String> {
    s.login(&q.user, Data::default).await?;
    let n = s.update(|d| {
        d.n += 1;
        d.n
    });
    Ok(format!("{:?}", n.await?))
}

async fn logout(s: Handle) -> Res<String> {
    Ok(format!("destroyed: {}", s.destroy().await?))
}

async fn incr(s: Handle) -> Res<String> {
    match s
        .update(|d| {
            d.n += 1;
            d.n
        })
        .await?
    {
        Some(n) => Ok(n.to_string()),
        None => Ok("no session".into()),
    }
}

async fn set(s: Handle, Query(q): Query<NQuery>) -> Res<&'static str> {
    match s.modify(|d| d.n = q.n).await? {
        Some(()) => Ok("set"),
        None => Ok("no session"),
    }
}

async fn fail(s: Handle) -> Res<impl IntoResponse> {
    if s.modify(|d| d.n = 999).await?.is_none() {
        s.set_data(Data { user: None, n: 999 }).await?;
    }
    Ok((StatusCode::INTERNAL_SERVER_ERROR, "handler failed"))
}

/// Reads the session, waits for a second request to have read it too, then
/// changes it: one of the two automatic saves must lose.
async fn racy(State(st): State<AppState>, s: Handle) -> Res<&'static str> {
    let _ = s.data().await?;
    st.barrier.wait().await;
    s.modify(|d| d.n += 100).await?;
    Ok("changed")
}

/// A security check: is the session live in the store right now?
async fn fresh(s: Handle) -> Res<Json<serde_json::Value>> {
    let live = s.verify_fresh().await?;
    Ok(Json(serde_json::json!({
        "live": live,
        "exists": s.exists().await?,
        "subject": s.subject().await?,
    })))
}

/// A plain (possibly cached) read first, then the fresh check in the same
/// request.
async fn stale_then_fresh(s: Handle) -> Res<Json<serde_json::Value>> {
    let before = s.exists().await?;
    let live = s.verify_fresh().await?;
    Ok(Json(serde_json::json!({
        "before": before,
        "live": live,
        "after": s.exists().await?,
    })))
}

/// Reads (maybe from a stale cache), checks freshly, then changes the
/// session: the change must apply to the fresh copy, not conflict.
async fn fresh_incr(s: Handle) -> Res<String> {
    let _ = s.data().await?;
    if !s.verify_fresh().await? {
        return Ok("gone".into());
    }
    let n = s.modify(|d| {
        d.n += 1;
        d.n
    });
    Ok(format!("{:?}", n.await?))
}

fn app(manager: SessionManager<Data>, transport: Transport) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/untouched", get(untouched))
        .route("/anon", post(anon))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/login_incr", post(login_incr))
        .route("/incr", post(incr))
        .route("/set", post(set))
        .route("/fail", post(fail))
        .route("/racy", post(racy))
        .route("/fresh", get(fresh))
        .route("/stale_then_fresh", get(stale_then_fresh))
        .route("/fresh_incr", post(fresh_incr))
        .with_state(AppState {
            barrier: Arc::new(Barrier::new(2)),
        })
        .layer(SessionLayer::new(manager).transport(transport))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn jar_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn stateful(store: impl SessionStore) -> SessionManager<Data> {
    SessionManager::stateful(store)
        .update_retries(200)
        .build()
        .unwrap()
}

fn jwt_codec() -> JwtCodec {
    let ring = KeyRing::new(Key::secret("test-1", Algorithm::HS256, &[7u8; 32]).unwrap()).unwrap();
    JwtCodec::new(ring).unwrap()
}

fn stateless() -> SessionManager<Data> {
    SessionManager::stateless(jwt_codec(), RevocationList::new(MemoryStore::new()))
        .build()
        .unwrap()
}

/// The `Set-Cookie` values of a response.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value `name=` is set to by a response, if any.
fn cookie_value(r: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(r).iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (n, v) = first.split_once('=')?;
        (n == name).then(|| v.to_owned())
    })
}

async fn whoami_with(base: &str, cookie: Option<&str>) -> WhoAmI {
    let mut req = client().get(format!("{base}/whoami"));
    if let Some(c) = cookie {
        req = req.header(reqwest::header::COOKIE, c);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn empty() -> WhoAmI {
    WhoAmI {
        exists: false,
        subject: None,
        user: None,
        n: None,
    }
}

/// Counts store loads, to check that sessions are loaded lazily.
#[derive(Clone)]
struct Counting {
    inner: MemoryStore,
    loads: Arc<AtomicU64>,
}

#[async_trait]
impl SessionStore for Counting {
    async fn create(&self, r: &Record) -> sessionkit_core::Result<()> {
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> sessionkit_core::Result<Option<Record>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> sessionkit_core::Result<u64> {
        self.inner.save(r).await
    }
    async fn touch(&self, id: &SessionId, at: Timestamp) -> sessionkit_core::Result<()> {
        self.inner.touch(id, at).await
    }
    async fn delete(&self, id: &SessionId) -> sessionkit_core::Result<bool> {
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> sessionkit_core::Result<()> {
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> sessionkit_core::Result<Vec<Record>> {
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> sessionkit_core::Result<u64> {
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> sessionkit_core::Result<u64> {
        self.inner.delete_expired().await
    }
}

/// A backend that is down.
struct Down;

fn down() -> Error {
    Error::backend(std::io::Error::other("connection refused"), true)
}

#[async_trait]
impl SessionStore for Down {
    async fn create(&self, _: &Record) -> sessionkit_core::Result<()> {
        Err(down())
    }
    async fn load(&self, _: &SessionId) -> sessionkit_core::Result<Option<Record>> {
        Err(down())
    }
    async fn save(&self, _: &Record) -> sessionkit_core::Result<u64> {
        Err(down())
    }
    async fn touch(&self, _: &SessionId, _: Timestamp) -> sessionkit_core::Result<()> {
        Err(down())
    }
    async fn delete(&self, _: &SessionId) -> sessionkit_core::Result<bool> {
        Err(down())
    }
    async fn compare_and_delete(&self, _: &SessionId, _: u64) -> sessionkit_core::Result<()> {
        Err(down())
    }
    async fn list_subject(&self, _: &str) -> sessionkit_core::Result<Vec<Record>> {
        Err(down())
    }
    async fn delete_subject(&self, _: &str) -> sessionkit_core::Result<u64> {
        Err(down())
    }
    async fn delete_expired(&self) -> sessionkit_core::Result<u64> {
        Err(down())
    }
}

// ---------------------------------------------------------------- cookies

#[tokio::test]
async fn default_cookie_attributes() {
    let base = serve(app(stateful(MemoryStore::new()), Transport::default())).await;
    let r = client().post(format!("{base}/anon")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    let attrs: Vec<&str> = c.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with("__Host-id="), "{c}");
    SessionId::parse(&attrs[0]["__Host-id=".len()..]).expect("the value is a session ID");
    for a in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(attrs.contains(&a), "{a} missing: {c}");
    }
    for a in ["Domain", "Max-Age", "Expires"] {
        assert!(!c.contains(a), "{a} must not be set by default: {c}");
    }
    assert_eq!(r.headers()[reqwest::header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn configured_cookie_attributes() {
    // `__Secure-` (not `__Host-`): the cookie has a Path and a Domain.
    let cookie = CookieConfig::new()
        .with_name("__Secure-sid")
        .with_same_site(SameSite::Strict)
        .with_http_only(false)
        .with_max_age(Duration::from_secs(3600))
        .with_path(Some("/app"))
        .with_domain(Some("example.test"))
        .with_partitioned(true);
    let base = serve(app(stateful(MemoryStore::new()), Transport::Cookie(cookie))).await;
    let r = client().post(format!("{base}/anon")).send().await.unwrap();
    let c = &set_cookies(&r)[0];
    let attrs: Vec<&str> = c.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with("__Secure-sid="), "{c}");
    for a in [
        "Secure",
        "SameSite=Strict",
        "Path=/app",
        "Domain=example.test",
        "Max-Age=3600",
        "Partitioned",
    ] {
        assert!(attrs.contains(&a), "{a} missing: {c}");
    }
    assert!(!attrs.contains(&"HttpOnly"), "{c}");

    let insecure = CookieConfig::new().with_secure(false).with_same_site(None);
    let base = serve(app(
        stateful(MemoryStore::new()),
        Transport::Cookie(insecure),
    ))
    .await;
    let r = client().post(format!("{base}/anon")).send().await.unwrap();
    let c = &set_cookies(&r)[0];
    assert!(!c.contains("Secure") && !c.contains("SameSite"), "{c}");
    // Without Secure the default name loses its `__Host-` prefix.
    assert!(c.starts_with("id="), "{c}");
}

#[tokio::test]
async fn the_session_is_loaded_lazily_and_unchanged_sessions_are_not_written() {
    let loads = Arc::new(AtomicU64::new(0));
    let store = Counting {
        inner: MemoryStore::new(),
        loads: Arc::clone(&loads),
    };
    let manager = stateful(store);
    let base = serve(app(manager.clone(), Transport::default())).await;
    let s = manager.create(None, Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());

    let r = client()
        .get(format!("{base}/untouched"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(loads.load(Ordering::SeqCst), 0, "no handler asked");

    let r = client()
        .get(format!("{base}/whoami"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookies(&r).is_empty(), "a read sets no cookie");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let stored = manager.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(stored.version(), 1, "a read does not save");
}

// ----------------------------------------------------- stateful flows

#[tokio::test]
async fn login_rotates_the_id_and_the_old_one_dies() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let c = client();
    let r = c.post(format!("{base}/anon")).send().await.unwrap();
    let before = cookie_value(&r, "__Host-id").unwrap();

    let r = c
        .post(format!("{base}/login?user=alice"))
        .header(reqwest::header::COOKIE, format!("__Host-id={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = cookie_value(&r, "__Host-id").expect("login sends the new ID");
    assert_ne!(before, after, "the ID changes at login");
    assert!(
        manager.load(&before).await.unwrap().is_none(),
        "old ID dead"
    );

    let who = whoami_with(&base, Some(&format!("__Host-id={after}"))).await;
    assert_eq!(
        who,
        WhoAmI {
            exists: true,
            subject: Some("alice".into()),
            user: Some("alice".into()),
            n: Some(1), // the anonymous data survived login
        }
    );
    assert_eq!(
        whoami_with(&base, Some(&format!("__Host-id={before}"))).await,
        empty()
    );
}

#[tokio::test]
async fn a_ticket_changed_earlier_in_the_request_is_still_sent() {
    for manager in [stateful(MemoryStore::new()), stateless()] {
        let base = serve(app(manager.clone(), Transport::default())).await;
        let r = client().post(format!("{base}/anon")).send().await.unwrap();
        let before = cookie_value(&r, "__Host-id").unwrap();
        let r = client()
            .post(format!("{base}/login_incr?user=ivy"))
            .header(reqwest::header::COOKIE, format!("__Host-id={before}"))
            .send()
            .await
            .unwrap();
        let after = cookie_value(&r, "__Host-id").expect("the rotated ticket is sent");
        assert_eq!(r.text().await.unwrap(), "Some(2)");
        assert_ne!(before, after);
        let who = whoami_with(&base, Some(&format!("__Host-id={after}"))).await;
        assert_eq!(who.subject.as_deref(), Some("ivy"));
        assert_eq!(who.n, Some(2));
        assert_eq!(
            whoami_with(&base, Some(&format!("__Host-id={before}"))).await,
            empty()
        );
    }
}

#[tokio::test]
async fn logout_invalidates_server_side_and_a_replay_is_empty() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let c = jar_client();
    let r = c
        .post(format!("{base}/login?user=bob"))
        .send()
        .await
        .unwrap();
    let id = cookie_value(&r, "__Host-id").unwrap();
    let who: WhoAmI = c
        .get(format!("{base}/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        who.subject.as_deref(),
        Some("bob"),
        "the jar sends the cookie"
    );

    let r = c.post(format!("{base}/logout")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "destroyed: true");
    assert!(manager.load(&id).await.unwrap().is_none(), "record deleted");
    let who: WhoAmI = c
        .get(format!("{base}/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who, empty(), "the jar dropped the cookie");

    // A replay of the old cookie gets an empty session, not an error.
    assert_eq!(
        whoami_with(&base, Some(&format!("__Host-id={id}"))).await,
        empty()
    );
}

#[tokio::test]
async fn logout_sends_a_removal_cookie() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let s = manager
        .create(Some("carol"), Data::default())
        .await
        .unwrap();
    let r = client()
        .post(format!("{base}/logout"))
        .header(
            reqwest::header::COOKIE,
            format!("__Host-id={}", s.ticket().as_str()),
        )
        .send()
        .await
        .unwrap();
    let c = set_cookies(&r);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("__Host-id=;"), "{c:?}");
    assert!(c[0].contains("Max-Age=0"), "{c:?}");
    assert!(c[0].contains("Path=/"), "{c:?}");
}

#[tokio::test]
async fn an_expired_session_is_empty() {
    let manager = SessionManager::<Data>::stateful(MemoryStore::new())
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let base = serve(app(manager.clone(), Transport::default())).await;
    let s = manager.create(Some("dave"), Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());
    // Waiting for a deadline is what this test is about.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(whoami_with(&base, Some(&cookie)).await, empty());
    let r = client()
        .post(format!("{base}/incr"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "no session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_updates_end_at_fifty() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let s = manager.create(Some("erin"), Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (c, base, cookie) = (c.clone(), base.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(format!("{base}/incr"))
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap().parse::<u64>().unwrap()
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "each saw its own value");
    let stored = manager.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(stored.data().n, 50);
}

#[tokio::test]
async fn a_conflicting_automatic_save_is_a_409_not_a_lost_update() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let s = manager.create(None, Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());
    let send = || {
        client()
            .post(format!("{base}/racy"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let mut statuses = [a.unwrap().status(), b.unwrap().status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let stored = manager.load(s.ticket().as_str()).await.unwrap().unwrap();
    assert_eq!(stored.data().n, 100, "exactly the winner's change");
}

#[tokio::test]
async fn the_conflict_status_is_configurable() {
    let manager = stateful(MemoryStore::new());
    let router = Router::new()
        .route("/racy", post(racy))
        .route("/fresh", get(fresh))
        .route("/stale_then_fresh", get(stale_then_fresh))
        .route("/fresh_incr", post(fresh_incr))
        .with_state(AppState {
            barrier: Arc::new(Barrier::new(2)),
        })
        .layer(SessionLayer::new(manager.clone()).conflict_status(StatusCode::PRECONDITION_FAILED));
    let base = serve(router).await;
    let s = manager.create(None, Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());
    let send = || {
        client()
            .post(format!("{base}/racy"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let mut statuses = [a.unwrap().status(), b.unwrap().status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
}

#[tokio::test]
async fn malformed_or_unknown_cookies_get_an_empty_session_and_are_never_adopted() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let unknown = SessionId::generate();
    let long = "A".repeat(20_000);
    for bad in [
        "__Host-id=garbage".to_owned(),
        "__Host-id=../../etc/passwd".to_owned(),
        "__Host-id=\"quoted\"".to_owned(),
        "__Host-id=%00%01".to_owned(),
        format!("__Host-id={long}"),
        "__Host-id".to_owned(),
        ";;;=;".to_owned(),
        format!("__Host-id={}", unknown.as_str()),
    ] {
        assert_eq!(whoami_with(&base, Some(&bad)).await, empty(), "{bad}");
        let r = client()
            .post(format!("{base}/anon"))
            .header(reqwest::header::COOKIE, &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{bad}");
        let new = cookie_value(&r, "__Host-id").unwrap();
        SessionId::parse(&new).unwrap();
        assert!(!bad.contains(&new), "the presented value is never adopted");
    }
    assert!(manager.load(unknown.as_str()).await.unwrap().is_none());
}

#[tokio::test]
async fn nothing_is_saved_on_a_server_error() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let s = manager.create(None, Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());
    let r = client()
        .post(format!("{base}/set?n=5"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(format!("{base}/fail"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(whoami_with(&base, Some(&cookie)).await.n, Some(5));

    // An empty session given data by a failing handler is not created.
    let r = client().post(format!("{base}/fail")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(set_cookies(&r).is_empty(), "no session, no cookie");
}

#[tokio::test]
async fn a_backend_outage_is_a_503_without_session_data() {
    let manager = SessionManager::<Data>::stateful(Down).build().unwrap();
    let base = serve(app(manager, Transport::default())).await;
    let r = client()
        .get(format!("{base}/whoami"))
        .header(
            reqwest::header::COOKIE,
            format!("__Host-id={}", SessionId::generate().as_str()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()[reqwest::header::RETRY_AFTER], "1");
    assert!(set_cookies(&r).is_empty());
    // No ticket presented: nothing to load, so no backend access at all.
    let r = client().get(format!("{base}/whoami")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A new session that cannot be stored fails loudly, not silently.
    let r = client().post(format!("{base}/anon")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(set_cookies(&r).is_empty());
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500() {
    let router = Router::new().route("/whoami", get(whoami));
    let base = serve(router).await;
    let r = client().get(format!("{base}/whoami")).send().await.unwrap();
    assert_eq!(r.status(), 500);
}

#[tokio::test]
async fn stateful_bearer_transport() {
    let manager = stateful(MemoryStore::new());
    let base = serve(app(manager.clone(), Transport::Bearer(BearerConfig::new()))).await;
    bearer_flow(&base, &manager).await;
}

// ----------------------------------------------------- stateless flows

/// Login, read, write, logout, replay, with bearer tokens.
async fn bearer_flow(base: &str, manager: &SessionManager<Data>) {
    let c = client();
    let token = |r: &reqwest::Response| {
        r.headers()
            .get("x-session-token")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let r = c.post(format!("{base}/anon")).send().await.unwrap();
    assert!(
        set_cookies(&r).is_empty(),
        "bearer transport sets no cookie"
    );
    let anon = token(&r).expect("a new session's ticket comes back in x-session-token");

    let r = c
        .post(format!("{base}/login?user=frank"))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    let t = token(&r).expect("login re-issues the ticket");
    assert_ne!(t, anon);
    assert!(
        manager
            .load(&anon)
            .await
            .map(|s| s.is_none())
            .unwrap_or(true),
        "the pre-login ticket no longer loads"
    );

    let r = c
        .post(format!("{base}/incr"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let t = match token(&r) {
        Some(next) => next, // stateless: a re-issued token
        None => t,
    };
    assert_eq!(r.text().await.unwrap(), "2");
    let who: WhoAmI = c
        .get(format!("{base}/whoami"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who.subject.as_deref(), Some("frank"));
    assert_eq!(who.n, Some(2));

    let r = c
        .post(format!("{base}/logout"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(token(&r).as_deref(), Some(""), "logout says: discard it");
    let who: WhoAmI = c
        .get(format!("{base}/whoami"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who, empty(), "a replayed token is an empty session");

    for bad in ["garbage", "a.b.c", "Bearer", &"x".repeat(20_000)] {
        let r = c
            .get(format!("{base}/whoami"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<WhoAmI>().await.unwrap(), empty());
    }
}

#[tokio::test]
async fn stateless_bearer_transport() {
    let manager = stateless();
    let base = serve(app(manager.clone(), Transport::Bearer(BearerConfig::new()))).await;
    bearer_flow(&base, &manager).await;
}

#[tokio::test]
async fn stateless_cookie_flows() {
    let manager = stateless();
    assert!(manager.is_stateless());
    let base = serve(app(manager.clone(), Transport::default())).await;
    let c = client();

    let r = c.post(format!("{base}/anon")).send().await.unwrap();
    let anon = cookie_value(&r, "__Host-id").unwrap();
    assert_eq!(anon.split('.').count(), 3, "a JWT in the cookie");

    // Login: a new token ID; the old token is revoked.
    let r = c
        .post(format!("{base}/login?user=gina"))
        .header(reqwest::header::COOKIE, format!("__Host-id={anon}"))
        .send()
        .await
        .unwrap();
    let jwt = cookie_value(&r, "__Host-id").unwrap();
    assert_ne!(jwt, anon);
    let old = manager.load(&anon).await.unwrap_err();
    assert!(matches!(old, Error::Revoked), "{old:?}");
    assert_eq!(
        whoami_with(&base, Some(&format!("__Host-id={anon}"))).await,
        empty()
    );
    let who = whoami_with(&base, Some(&format!("__Host-id={jwt}"))).await;
    assert_eq!(who.subject.as_deref(), Some("gina"));
    assert_eq!(who.n, Some(1));

    // A change re-issues the token in the cookie.
    let r = c
        .post(format!("{base}/set?n=7"))
        .header(reqwest::header::COOKIE, format!("__Host-id={jwt}"))
        .send()
        .await
        .unwrap();
    let jwt2 = cookie_value(&r, "__Host-id").expect("a changed stateless session is re-issued");
    assert_eq!(
        whoami_with(&base, Some(&format!("__Host-id={jwt2}")))
            .await
            .n,
        Some(7)
    );

    // Not on a server error.
    let r = c
        .post(format!("{base}/fail"))
        .header(reqwest::header::COOKIE, format!("__Host-id={jwt2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(set_cookies(&r).is_empty());

    // Logout revokes; a replay is empty.
    let r = c
        .post(format!("{base}/logout"))
        .header(reqwest::header::COOKIE, format!("__Host-id={jwt2}"))
        .send()
        .await
        .unwrap();
    assert!(set_cookies(&r)[0].contains("Max-Age=0"));
    assert_eq!(
        whoami_with(&base, Some(&format!("__Host-id={jwt2}"))).await,
        empty()
    );

    // Malformed and forged tokens are empty sessions.
    let forged = {
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    for bad in [
        "__Host-id=garbage",
        "__Host-id=a.b.c",
        &format!("__Host-id={forged}"),
    ] {
        assert_eq!(whoami_with(&base, Some(bad)).await, empty(), "{bad}");
    }
}

#[tokio::test]
async fn an_expired_stateless_session_is_empty() {
    let manager =
        SessionManager::<Data>::stateless(jwt_codec(), RevocationList::new(MemoryStore::new()))
            .absolute_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
    let base = serve(app(manager.clone(), Transport::default())).await;
    let s = manager.create(Some("hal"), Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());
    // `exp` has whole seconds: the token is valid for at least one second.
    assert!(whoami_with(&base, Some(&cookie)).await.exists);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(whoami_with(&base, Some(&cookie)).await, empty());
}

// ------------------------------------- rotation vs concurrent requests

/// Orders request A's handler against request B: A loads the session and
/// waits on `loaded`; the test runs B to completion; then `proceed` lets A
/// go on. Barriers, not sleeps: the worst order, every time.
#[derive(Clone)]
struct Hold {
    loaded: Arc<Barrier>,
    proceed: Arc<Barrier>,
}

impl Hold {
    fn new() -> Self {
        Hold {
            loaded: Arc::new(Barrier::new(2)),
            proceed: Arc::new(Barrier::new(2)),
        }
    }
}

/// A: loads the session, waits for B, then logs in (a rotation).
async fn held_login(
    State(h): State<Hold>,
    s: Handle,
    Query(q): Query<UserQuery>,
) -> Res<&'static str> {
    let _ = s.data().await?;
    h.loaded.wait().await;
    h.proceed.wait().await;
    s.login(&q.user, Data::default).await?;
    s.modify(|d| d.user = Some(q.user.clone())).await?;
    Ok("logged in")
}

/// A: loads the session, waits for B, then rotates it.
async fn held_rotate(State(h): State<Hold>, s: Handle) -> Res<&'static str> {
    let _ = s.data().await?;
    h.loaded.wait().await;
    h.proceed.wait().await;
    s.rotate().await?;
    Ok("rotated")
}

/// B: logs the session's subject out everywhere (and nothing else).
async fn logout_everywhere(s: Handle) -> Res<&'static str> {
    match s.subject().await? {
        Some(subject) => {
            s.manager().destroy_subject(&subject).await?;
            Ok("logged out everywhere")
        }
        None => Ok("no subject"),
    }
}

/// B: rotates the session.
async fn rotate_now(s: Handle) -> Res<String> {
    Ok(format!("rotated: {}", s.rotate().await?))
}

fn race_app(
    manager: SessionManager<Data>,
    transport: Transport,
    conflict: StatusCode,
    hold: Hold,
) -> Router {
    Router::new()
        .route("/held_login", post(held_login))
        .route("/held_rotate", post(held_rotate))
        .route("/logout", post(logout))
        .route("/logout_everywhere", post(logout_everywhere))
        .route("/rotate", post(rotate_now))
        .route("/set", post(set))
        .with_state(hold)
        .layer(
            SessionLayer::new(manager)
                .transport(transport)
                .conflict_status(conflict),
        )
}

/// What request B does while A holds the loaded session.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rival {
    Logout,
    LogoutEverywhere,
    Rotate,
    /// Stateful only: a plain save (the session stays live, under its ID).
    Save,
}

impl Rival {
    fn path(self) -> &'static str {
        match self {
            Rival::Logout => "/logout",
            Rival::LogoutEverywhere => "/logout_everywhere",
            Rival::Rotate => "/rotate",
            Rival::Save => "/set?n=5",
        }
    }
}

async fn send_with(base: &str, path: &str, ticket: &str, bearer: bool) -> reqwest::Response {
    let req = client().post(format!("{base}{path}"));
    let req = if bearer {
        req.bearer_auth(ticket)
    } else {
        req.header(reqwest::header::COOKIE, format!("__Host-id={ticket}"))
    };
    req.send().await.unwrap()
}

/// The new ticket a response hands out, if any.
fn ticket_of(r: &reqwest::Response, bearer: bool) -> Option<String> {
    if bearer {
        r.headers()
            .get("x-session-token")
            .map(|v| v.to_str().unwrap().to_owned())
            .filter(|t| !t.is_empty())
    } else {
        cookie_value(r, "__Host-id").filter(|t| !t.is_empty())
    }
}

async fn wait(barrier: &Barrier, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), barrier.wait())
        .await
        .unwrap_or_else(|_| panic!("request A never reached: {what}"));
}

/// Runs A (`a_path`, a rotation) and B (`rival`) on one session of a new
/// subject in the worst order, then checks that A lost loudly and left
/// nothing live.
async fn rotation_loses(
    manager: &SessionManager<Data>,
    bearer: bool,
    conflict: StatusCode,
    a_path: &'static str,
    rival: Rival,
) {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let user = format!("user-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let case = format!(
        "stateless={} bearer={bearer} A={a_path} B={rival:?} subject={user}",
        manager.is_stateless()
    );
    let a_path = format!("{a_path}?user={user}");
    let hold = Hold::new();
    let transport = if bearer {
        Transport::Bearer(BearerConfig::new())
    } else {
        Transport::default()
    };
    let base = serve(race_app(manager.clone(), transport, conflict, hold.clone())).await;
    let start = Data {
        user: Some(user.clone()),
        n: 1,
    };
    let old = manager
        .create(Some(&user), start)
        .await
        .unwrap()
        .ticket()
        .as_str()
        .to_owned();

    let a = tokio::spawn({
        let (base, old) = (base.clone(), old.clone());
        async move { send_with(&base, &a_path, &old, bearer).await }
    });
    wait(&hold.loaded, "loaded").await;
    let b = send_with(&base, rival.path(), &old, bearer).await;
    assert_eq!(b.status(), StatusCode::OK, "{case}: B succeeds");
    let b_ticket = ticket_of(&b, bearer);
    wait(&hold.proceed, "proceed").await;
    let a = a.await.unwrap();

    assert_eq!(
        a.status(),
        conflict,
        "{case}: A's rotation must fail loudly"
    );
    assert!(
        set_cookies(&a).is_empty(),
        "{case}: no Set-Cookie for a lost rotation: {:?}",
        set_cookies(&a)
    );
    assert!(
        a.headers().get("x-session-token").is_none(),
        "{case}: no ticket for a lost rotation"
    );

    let old_loads = match manager.load(&old).await {
        Ok(s) => s.is_some(),
        Err(e) if e.is_invalid_ticket() => false,
        Err(e) => panic!("{case}: {e}"),
    };
    assert_eq!(old_loads, rival == Rival::Save, "{case}: the old ticket");
    if manager.is_stateless() {
        // Tokens cannot be listed: the only tickets are the old one (dead,
        // above), none from A, and B's new one when B rotated.
        if rival == Rival::Rotate {
            let b_ticket = b_ticket.expect("B's rotation hands out a ticket");
            let b_session = manager.load(&b_ticket).await.unwrap().unwrap();
            assert_eq!(b_session.subject(), Some(user.as_str()), "{case}");
        }
        return;
    }
    let live: Vec<SessionId> = manager
        .list_subject(&user)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id())
        .collect();
    // Compared by the ID the manager reports for a ticket (the store key
    // need not be the ticket itself).
    let id_of =
        |ticket: String| async move { manager.load(&ticket).await.unwrap().expect("live").id() };
    let expected: Vec<SessionId> = match rival {
        Rival::Logout | Rival::LogoutEverywhere => vec![],
        Rival::Rotate => vec![id_of(b_ticket.expect("B's rotation hands out a ticket")).await],
        Rival::Save => vec![id_of(old.clone()).await],
    };
    assert_eq!(live, expected, "{case}: the live sessions of the subject");
    if rival == Rival::Save {
        let kept = manager.load(&old).await.unwrap().unwrap();
        assert_eq!(kept.data().n, 5, "{case}: B's save is kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_rotation_after_a_concurrent_end_is_a_conflict_and_leaves_nothing_live() {
    let manager = stateful(MemoryStore::new());
    for a in ["/held_login", "/held_rotate"] {
        for rival in [
            Rival::Logout,
            Rival::LogoutEverywhere,
            Rival::Rotate,
            Rival::Save,
        ] {
            rotation_loses(&manager, false, StatusCode::CONFLICT, a, rival).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_rotation_after_a_concurrent_end_is_a_conflict_and_issues_nothing() {
    let manager = stateless();
    for a in ["/held_login", "/held_rotate"] {
        for rival in [Rival::Logout, Rival::LogoutEverywhere, Rival::Rotate] {
            rotation_loses(&manager, false, StatusCode::CONFLICT, a, rival).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_rotation_uses_the_configured_status_and_sends_no_bearer_token() {
    let teapot = StatusCode::PRECONDITION_FAILED;
    let m = stateful(MemoryStore::new());
    rotation_loses(&m, true, teapot, "/held_login", Rival::Rotate).await;
    rotation_loses(&m, true, teapot, "/held_rotate", Rival::Logout).await;
    let m = stateless();
    rotation_loses(&m, true, teapot, "/held_login", Rival::Rotate).await;
    rotation_loses(&m, true, teapot, "/held_rotate", Rival::LogoutEverywhere).await;
}

// ------------------------------------------------ stateless promises

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stateless_concurrent_updates_with_one_token_are_last_writer_wins() {
    // What the crate documentation promises for stateless mode, pinned:
    // every request succeeds on its own copy and gets a token back; no
    // update sees another's (there is nothing to compare against), so the
    // counter the client ends up with is 2 whichever token it keeps.
    let manager = stateless();
    let base = serve(app(manager.clone(), Transport::Bearer(BearerConfig::new()))).await;
    let token = manager
        .create(Some("kim"), Data { user: None, n: 1 })
        .await
        .unwrap()
        .ticket()
        .as_str()
        .to_owned();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (base, token) = (base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let r = send_with(&base, "/incr", &token, true).await;
            assert_eq!(r.status(), StatusCode::OK);
            let next = ticket_of(&r, true).expect("a changed token is re-issued");
            (r.text().await.unwrap(), next)
        }));
    }
    for t in tasks {
        let (n, next) = t.await.unwrap();
        assert_eq!(n, "2", "each request incremented the token's own copy");
        let kept = manager.load(&next).await.unwrap().unwrap();
        assert_eq!(
            kept.data().n,
            2,
            "whichever token the client keeps: 2, not 21"
        );
    }
}

// ------------------------------------------------------- fresh checks

#[tokio::test]
async fn a_fresh_check_sees_a_logout_that_another_instances_cache_still_hides() {
    // Two instances, each with its own cache over one shared backend, and no
    // invalidation channel: the worst case of a lost invalidation, bounded
    // only by max_staleness.
    let backend = MemoryStore::new();
    let cached = || {
        CachedStore::builder(backend.clone())
            .max_staleness(Duration::from_secs(300))
            .build()
            .unwrap()
    };
    let one = stateful(cached());
    let two = stateful(cached());
    let base1 = serve(app(one.clone(), Transport::default())).await;
    let base2 = serve(app(two.clone(), Transport::default())).await;

    let s = one.create(Some("ivy"), Data::default()).await.unwrap();
    let cookie = format!("__Host-id={}", s.ticket().as_str());
    assert!(whoami_with(&base1, Some(&cookie)).await.exists);

    // A live session passes the fresh check and keeps working.
    let r = client()
        .get(format!("{base1}/fresh"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["live"], true, "{v}");
    assert_eq!(v["subject"], "ivy", "{v}");

    // Instance 2 saves: instance 1's cache still holds n = 0. A request
    // that read the stale copy, then checked freshly, works on the fresh
    // copy: its change applies on top of instance 2's, no conflict.
    let r = client()
        .post(format!("{base2}/set?n=7"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        whoami_with(&base1, Some(&cookie)).await.n,
        Some(0),
        "precondition: instance 1 serves its cached copy"
    );
    let r = client()
        .post(format!("{base1}/fresh_incr"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Some(8)");

    // Instance 2 logs the session out.
    let r = client()
        .post(format!("{base2}/logout"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "destroyed: true");
    assert!(backend.load(&s.id()).await.unwrap().is_none());

    // Instance 1's plain load may still see it: the staleness the fresh
    // check exists for. (If this stops holding, the precondition is gone,
    // not the guarantee.)
    let stale = whoami_with(&base1, Some(&cookie)).await;
    assert!(
        stale.exists,
        "precondition: instance 1 serves its cached copy"
    );

    // The fresh check after a plain read served the cached copy in the
    // same request...
    let r = client()
        .get(format!("{base1}/stale_then_fresh"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"before": true, "live": false, "after": false})
    );

    // ...and as the first access of a request.
    let r = client()
        .get(format!("{base1}/fresh"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(set_cookies(&r).is_empty());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["live"], false, "{v}");
    assert_eq!(v["exists"], false, "{v}");

    // Without a ticket there is nothing to verify.
    let v: serde_json::Value = client()
        .get(format!("{base1}/fresh"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["live"], false, "{v}");
}
