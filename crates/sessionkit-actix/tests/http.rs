//! The middleware and extractor driven through actix-web's test utilities
//! (`init_service` / `call_service`), with stateful (MemoryStore) and
//! stateless (JwtCodec) managers, cookie and bearer transport: the core
//! cases of `sessionkit-axum`'s HTTP tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::test::{TestRequest, call_service, init_service, read_body};
use actix_web::{App, HttpResponse, web};
use serde::Deserialize;
use sessionkit_actix::{BearerConfig, SessionError, SessionHandle, SessionMiddleware, Transport};
use sessionkit_core::{
    Error, Record, RevocationList, SessionId, SessionManager, SessionStore, Timestamp, async_trait,
};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit_memory::MemoryStore;
use tokio::sync::Barrier;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Data {
    user: Option<String>,
    n: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
struct WhoAmI {
    exists: bool,
    subject: Option<String>,
    n: Option<u64>,
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

async fn whoami(s: Handle) -> Res<HttpResponse> {
    let data = s.data().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "exists": data.is_some(),
        "subject": s.subject().await?,
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

async fn login(s: Handle, q: web::Query<UserQuery>) -> Res<&'static str> {
    s.login(&q.user, Data::default).await?;
    s.modify(|d| d.user = Some(q.user.clone())).await?;
    Ok("logged in")
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

async fn set(s: Handle, q: web::Query<NQuery>) -> Res<&'static str> {
    match s.modify(|d| d.n = q.n).await? {
        Some(()) => Ok("set"),
        None => Ok("no session"),
    }
}

async fn fail(s: Handle) -> Res<HttpResponse> {
    if s.modify(|d| d.n = 999).await?.is_none() {
        s.set_data(Data { user: None, n: 999 }).await?;
    }
    Ok(HttpResponse::InternalServerError().body("handler failed"))
}

/// Reads the session, waits until a second request has read it too, then
/// changes it: one of the two automatic saves must lose.
async fn racy(barrier: web::Data<Barrier>, s: Handle) -> Res<&'static str> {
    let _ = s.data().await?;
    barrier.wait().await;
    s.modify(|d| d.n += 100).await?;
    Ok("changed")
}

/// Request A of a race: loads the session, lets B run, then rotates.
async fn held_rotate(h: web::Data<Hold>, s: Handle) -> Res<&'static str> {
    let _ = s.data().await?;
    h.loaded.wait().await;
    h.proceed.wait().await;
    s.rotate().await?;
    Ok("rotated")
}

/// Request A of a race: loads the session, lets B run, then logs in.
async fn held_login(h: web::Data<Hold>, s: Handle, q: web::Query<UserQuery>) -> Res<&'static str> {
    let _ = s.data().await?;
    h.loaded.wait().await;
    h.proceed.wait().await;
    s.login(&q.user, Data::default).await?;
    s.modify(|d| d.user = Some(q.user.clone())).await?;
    Ok("logged in")
}

struct Hold {
    loaded: Barrier,
    proceed: Barrier,
}

fn hold() -> web::Data<Hold> {
    web::Data::new(Hold {
        loaded: Barrier::new(2),
        proceed: Barrier::new(2),
    })
}

async fn app(
    middleware: SessionMiddleware<Data>,
    h: web::Data<Hold>,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    init_service(
        App::new()
            .app_data(web::Data::new(Barrier::new(2)))
            .app_data(h)
            .route("/whoami", web::get().to(whoami))
            .route("/untouched", web::get().to(untouched))
            .route("/anon", web::post().to(anon))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/incr", web::post().to(incr))
            .route("/set", web::post().to(set))
            .route("/fail", web::post().to(fail))
            .route("/racy", web::post().to(racy))
            .route("/held_rotate", web::post().to(held_rotate))
            .route("/held_login", web::post().to(held_login))
            .wrap(middleware),
    )
    .await
}

fn stateful(store: impl SessionStore) -> SessionManager<Data> {
    SessionManager::stateful(store)
        .update_retries(200)
        .build()
        .unwrap()
}

fn stateless() -> SessionManager<Data> {
    let ring = KeyRing::new(Key::secret("test-1", Algorithm::HS256, &[7u8; 32]).unwrap()).unwrap();
    SessionManager::stateless(
        JwtCodec::new(ring).unwrap(),
        RevocationList::new(MemoryStore::new()),
    )
    .build()
    .unwrap()
}

fn set_cookies<B>(r: &ServiceResponse<B>) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value `__Host-id=` is set to by a response, if any.
fn cookie_ticket<B>(r: &ServiceResponse<B>) -> Option<String> {
    set_cookies(r).iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (n, v) = first.split_once('=')?;
        (n == "__Host-id").then(|| v.to_owned())
    })
}

fn bearer_ticket<B>(r: &ServiceResponse<B>) -> Option<String> {
    r.headers()
        .get("x-session-token")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A request presenting `ticket` in the cookie or as a bearer token.
fn req(method: &str, path: &str, ticket: Option<&str>, bearer: bool) -> TestRequest {
    let r = match method {
        "GET" => TestRequest::get(),
        _ => TestRequest::post(),
    }
    .uri(path);
    match (ticket, bearer) {
        (None, _) => r,
        (Some(t), false) => r.insert_header((header::COOKIE, format!("__Host-id={t}"))),
        (Some(t), true) => r.insert_header((header::AUTHORIZATION, format!("Bearer {t}"))),
    }
}

async fn who<S, B>(app: &S, ticket: Option<&str>, bearer: bool) -> WhoAmI
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = call_service(app, req("GET", "/whoami", ticket, bearer).to_request()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        set_cookies(&r).is_empty(),
        "an unchanged session is not re-sent"
    );
    serde_json::from_slice(&read_body(r).await).unwrap()
}

fn empty() -> WhoAmI {
    WhoAmI {
        exists: false,
        subject: None,
        n: None,
    }
}

/// Counts store loads and saves (lazy loading, no save when unchanged).
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryStore,
    loads: Arc<AtomicU64>,
    saves: Arc<AtomicU64>,
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
        self.saves.fetch_add(1, Ordering::SeqCst);
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

/// A backend that is down (transient).
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

// ---------------------------------------------------------------- tests

#[actix_web::test]
async fn a_new_session_gets_a_cookie_with_the_secure_defaults() {
    let app = app(SessionMiddleware::new(stateful(MemoryStore::new())), hold()).await;
    let r = call_service(&app, req("POST", "/anon", None, false).to_request()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with("__Host-id="), "{c}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(c.contains(attr), "{attr} missing in {c}");
    }
    assert!(!c.contains("Domain") && !c.contains("Max-Age"), "{c}");
    assert_eq!(r.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
    let ticket = cookie_ticket(&r).unwrap();
    assert_eq!(
        who(&app, Some(&ticket), false).await,
        WhoAmI {
            exists: true,
            subject: None,
            n: Some(1)
        }
    );
}

#[actix_web::test]
async fn load_modify_save_is_lazy_and_unchanged_sessions_are_not_written() {
    let store = Counting::default();
    let app = app(SessionMiddleware::new(stateful(store.clone())), hold()).await;
    let r = call_service(&app, req("POST", "/anon", None, false).to_request()).await;
    let ticket = cookie_ticket(&r).unwrap();

    // A handler that never touches the session: no load, nothing sent.
    let loads = store.loads.load(Ordering::SeqCst);
    let r = call_service(
        &app,
        req("GET", "/untouched", Some(&ticket), false).to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(set_cookies(&r).is_empty());
    assert_eq!(store.loads.load(Ordering::SeqCst), loads, "loaded lazily");

    // A change is saved (same ticket: no new cookie).
    let r = call_service(
        &app,
        req("POST", "/set?n=7", Some(&ticket), false).to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(set_cookies(&r).is_empty(), "the ticket did not change");
    assert_eq!(store.saves.load(Ordering::SeqCst), 1);

    // A read does not write.
    assert_eq!(who(&app, Some(&ticket), false).await.n, Some(7));
    assert_eq!(
        store.saves.load(Ordering::SeqCst),
        1,
        "no save when unchanged"
    );

    // Atomic update.
    let r = call_service(
        &app,
        req("POST", "/incr", Some(&ticket), false).to_request(),
    )
    .await;
    assert_eq!(read_body(r).await, "8");
}

#[actix_web::test]
async fn nothing_is_saved_on_a_server_error() {
    let store = Counting::default();
    let app = app(SessionMiddleware::new(stateful(store.clone())), hold()).await;
    let r = call_service(&app, req("POST", "/anon", None, false).to_request()).await;
    let ticket = cookie_ticket(&r).unwrap();

    let r = call_service(
        &app,
        req("POST", "/fail", Some(&ticket), false).to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(store.saves.load(Ordering::SeqCst), 0);
    assert_eq!(who(&app, Some(&ticket), false).await.n, Some(1));

    // Data inserted into an empty session by a failing handler: no session.
    let r = call_service(&app, req("POST", "/fail", None, false).to_request()).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(set_cookies(&r).is_empty(), "{:?}", set_cookies(&r));
}

#[actix_web::test]
async fn a_concurrent_save_is_a_409_not_a_lost_update() {
    let manager = stateful(MemoryStore::new());
    let app = app(SessionMiddleware::new(manager.clone()), hold()).await;
    let r = call_service(&app, req("POST", "/anon", None, false).to_request()).await;
    let ticket = cookie_ticket(&r).unwrap();

    // Both requests load, then both change: the barrier in the handler
    // makes this order certain.
    let (a, b) = tokio::join!(
        call_service(
            &app,
            req("POST", "/racy", Some(&ticket), false).to_request()
        ),
        call_service(
            &app,
            req("POST", "/racy", Some(&ticket), false).to_request()
        ),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let loser = if a.status() == StatusCode::CONFLICT {
        &a
    } else {
        &b
    };
    assert!(set_cookies(loser).is_empty());
    // Exactly one change was kept, and the client of the other one knows.
    let kept = manager.load(&ticket).await.unwrap().unwrap();
    assert_eq!(kept.data().n, 101);
}

#[actix_web::test]
async fn logout_clears_the_cookie_and_the_old_ticket_is_dead() {
    let manager = stateful(MemoryStore::new());
    let app = app(SessionMiddleware::new(manager.clone()), hold()).await;
    let r = call_service(
        &app,
        req("POST", "/login?user=alice", None, false).to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let ticket = cookie_ticket(&r).unwrap();
    assert_eq!(
        who(&app, Some(&ticket), false).await.subject.as_deref(),
        Some("alice")
    );

    let r = call_service(
        &app,
        req("POST", "/logout", Some(&ticket), false).to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("__Host-id=;"), "{}", cookies[0]);
    assert!(cookies[0].contains("Max-Age=0"), "{}", cookies[0]);
    assert_eq!(read_body(r).await, "destroyed: true");
    assert!(manager.load(&ticket).await.unwrap().is_none());
    assert_eq!(who(&app, Some(&ticket), false).await, empty());
}

#[actix_web::test]
async fn bearer_transport() {
    for manager in [stateful(MemoryStore::new()), stateless()] {
        let case = format!("stateless={}", manager.is_stateless());
        let app = app(
            SessionMiddleware::new(manager.clone()).bearer(BearerConfig::new()),
            hold(),
        )
        .await;
        // A cookie is not a bearer token.
        let r = call_service(&app, req("POST", "/anon", None, true).to_request()).await;
        let first = bearer_ticket(&r).expect(&case);
        assert!(set_cookies(&r).is_empty(), "{case}");
        assert_eq!(
            r.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store",
            "{case}"
        );
        assert_eq!(who(&app, Some(&first), false).await, empty(), "{case}");
        assert_eq!(who(&app, Some(&first), true).await.n, Some(1), "{case}");

        // Login rotates: a new token, the old one is dead.
        let r = call_service(
            &app,
            req("POST", "/login?user=bob", Some(&first), true).to_request(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{case}");
        let second = bearer_ticket(&r).expect(&case);
        assert_ne!(first, second, "{case}");
        assert_eq!(who(&app, Some(&first), true).await, empty(), "{case}");
        let me = who(&app, Some(&second), true).await;
        assert_eq!(
            (me.subject.as_deref(), me.n),
            (Some("bob"), Some(1)),
            "{case}"
        );

        // Logout: the header is sent empty, the token is dead.
        let r = call_service(
            &app,
            req("POST", "/logout", Some(&second), true).to_request(),
        )
        .await;
        assert_eq!(bearer_ticket(&r).as_deref(), Some(""), "{case}");
        assert_eq!(who(&app, Some(&second), true).await, empty(), "{case}");
    }
}

#[actix_web::test]
async fn stateless_cookie_sessions_reissue_the_token_on_change() {
    let manager = stateless();
    let app = app(SessionMiddleware::new(manager.clone()), hold()).await;
    let r = call_service(&app, req("POST", "/anon", None, false).to_request()).await;
    let t1 = cookie_ticket(&r).unwrap();
    assert!(manager.load(&t1).await.unwrap().is_some(), "a signed token");

    // Unchanged: no new token.
    assert_eq!(who(&app, Some(&t1), false).await.n, Some(1));
    // Changed: a new token carrying the change.
    let r = call_service(&app, req("POST", "/set?n=5", Some(&t1), false).to_request()).await;
    let t2 = cookie_ticket(&r).expect("a re-issued token");
    assert_ne!(t1, t2);
    assert_eq!(who(&app, Some(&t2), false).await.n, Some(5));
    // Logout revokes it.
    let r = call_service(&app, req("POST", "/logout", Some(&t2), false).to_request()).await;
    assert!(cookie_ticket(&r).unwrap().is_empty());
    assert_eq!(who(&app, Some(&t2), false).await, empty());
}

/// A (a rotation or login, held after loading) against B (a logout or a
/// rotation of the same session) in the worst order: A must fail with the
/// conflict status and leave no new ticket, live or sent.
async fn rotation_loses(manager: SessionManager<Data>, bearer: bool, conflict: StatusCode) {
    for a_path in ["/held_rotate", "/held_login?user=carol"] {
        for rival in ["/logout", "/login?user=dave"] {
            let case = format!(
                "stateless={} bearer={bearer} A={a_path} B={rival}",
                manager.is_stateless()
            );
            let h = hold();
            let transport = if bearer {
                Transport::Bearer(BearerConfig::new())
            } else {
                Transport::default()
            };
            let app = app(
                SessionMiddleware::new(manager.clone())
                    .transport(transport)
                    .conflict_status(conflict),
                h.clone(),
            )
            .await;
            let start = Data {
                user: Some("carol".into()),
                n: 1,
            };
            let old = manager.create(Some("carol"), start).await.unwrap();
            let old = old.ticket().as_str().to_owned();

            let a = call_service(&app, req("POST", a_path, Some(&old), bearer).to_request());
            let b = async {
                tokio::time::timeout(Duration::from_secs(10), h.loaded.wait())
                    .await
                    .expect("A loaded");
                let b =
                    call_service(&app, req("POST", rival, Some(&old), bearer).to_request()).await;
                h.proceed.wait().await;
                b
            };
            let (a, b) = tokio::join!(a, b);
            assert_eq!(b.status(), StatusCode::OK, "{case}: B succeeds");
            assert_eq!(a.status(), conflict, "{case}: A fails loudly");
            assert!(set_cookies(&a).is_empty(), "{case}: {:?}", set_cookies(&a));
            assert!(bearer_ticket(&a).is_none(), "{case}: no token");
            let old_live = match manager.load(&old).await {
                Ok(s) => s.is_some(),
                Err(e) if e.is_invalid_ticket() => false,
                Err(e) => panic!("{case}: {e}"),
            };
            assert!(!old_live, "{case}: the old ticket is dead");
            if !manager.is_stateless() {
                // Nothing of A is live: only B's new session (login) or none.
                let live = manager.list_subject("carol").await.unwrap();
                assert!(live.is_empty(), "{case}: A left a session: {}", live.len());
            }
        }
    }
}

#[actix_web::test]
async fn a_lost_rotation_is_a_409_and_sends_no_ticket() {
    rotation_loses(stateful(MemoryStore::new()), false, StatusCode::CONFLICT).await;
    rotation_loses(stateless(), false, StatusCode::CONFLICT).await;
}

#[actix_web::test]
async fn a_lost_rotation_uses_the_configured_status_with_bearer_tokens() {
    rotation_loses(
        stateful(MemoryStore::new()),
        true,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    rotation_loses(stateless(), true, StatusCode::PRECONDITION_FAILED).await;
}

#[actix_web::test]
async fn a_backend_outage_is_a_503_with_retry_after_and_no_session_data() {
    let app = app(SessionMiddleware::new(stateful(Down)), hold()).await;
    let well_formed = SessionId::generate();
    let r = call_service(
        &app,
        req("GET", "/whoami", Some(well_formed.as_str()), false).to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
    assert!(set_cookies(&r).is_empty());
    // A failing create after the handler: 503, no cookie.
    let r = call_service(&app, req("POST", "/anon", None, false).to_request()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
    assert!(set_cookies(&r).is_empty());
    assert!(
        read_body(r).await.is_empty(),
        "the handler's body is replaced"
    );
}

#[actix_web::test]
async fn unknown_cookies_get_an_empty_session_and_are_never_adopted() {
    let app = app(SessionMiddleware::new(stateful(MemoryStore::new())), hold()).await;
    assert_eq!(who(&app, Some("not-a-ticket"), false).await, empty());
    let r = call_service(
        &app,
        req("POST", "/anon", Some("attacker-chosen"), false).to_request(),
    )
    .await;
    let t = cookie_ticket(&r).unwrap();
    assert_ne!(t, "attacker-chosen");
}

#[actix_web::test]
async fn the_extractor_without_the_middleware_is_a_500() {
    let app = init_service(App::new().route("/whoami", web::get().to(whoami))).await;
    let r = call_service(&app, TestRequest::get().uri("/whoami").to_request()).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
