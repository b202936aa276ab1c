//! Key-value sessions over HTTP: `SessionHandle<Bag>::get`, `insert` and
//! `remove`, and `modify_or_insert_with` on a typed session, driven through
//! actix-web's test utilities: the cases of `sessionkit-axum`'s
//! `key_value` tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::test::{TestRequest, call_service, init_service, read_body};
use actix_web::{App, web};
use sessionkit_actix::{BearerConfig, SessionError, SessionHandle, SessionMiddleware};
use sessionkit_core::{
    Bag, Error, Record, RevocationList, SessionId, SessionManager, SessionStore, Timestamp,
    async_trait,
};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit_memory::MemoryStore;
use tokio::sync::Barrier;

type Res<T> = Result<T, SessionError>;

/// The tower-sessions counter, as the migration guide shows it.
async fn count(session: SessionHandle<Bag>) -> Res<String> {
    let n: usize = session.get("counter").await?.unwrap_or_default();
    session.insert("counter", &(n + 1)).await?;
    Ok(n.to_string())
}

async fn take(session: SessionHandle<Bag>) -> Res<String> {
    Ok(format!("{:?}", session.remove::<usize>("counter").await?))
}

/// Reads the counter as the wrong type: the error is returned.
async fn wrong_type(session: SessionHandle<Bag>) -> Res<String> {
    let s: Option<String> = session.get("counter").await?;
    Ok(format!("{s:?}"))
}

/// Removing as the wrong type fails and removes nothing.
async fn remove_wrong_type(session: SessionHandle<Bag>) -> Res<String> {
    let err = match session.remove::<String>("counter").await {
        Ok(v) => return Ok(format!("unexpected: {v:?}")),
        Err(e) => e,
    };
    let kept: Option<usize> = session.get("counter").await?;
    Ok(format!("{}:{kept:?}", matches!(err, Error::Decode(_))))
}

/// A value serde_json cannot encode (a map with non-string keys).
async fn unencodable(session: SessionHandle<Bag>) -> Res<&'static str> {
    let value: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    session.insert("bad", &value).await?;
    Ok("inserted")
}

/// Reads the counter, waits for a second request to have read it too, then
/// writes it: one of the two automatic saves must lose.
async fn racy(barrier: web::Data<Barrier>, session: SessionHandle<Bag>) -> Res<&'static str> {
    let n: usize = session.get("counter").await?.unwrap_or_default();
    barrier.wait().await;
    session.insert("counter", &(n + 100)).await?;
    Ok("changed")
}

async fn app(
    middleware: SessionMiddleware<Bag>,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    init_service(
        App::new()
            .app_data(web::Data::new(Barrier::new(2)))
            .route("/count", web::post().to(count))
            .route("/take", web::post().to(take))
            .route("/wrong_type", web::get().to(wrong_type))
            .route("/remove_wrong_type", web::post().to(remove_wrong_type))
            .route("/unencodable", web::post().to(unencodable))
            .route("/racy", web::post().to(racy))
            .wrap(middleware),
    )
    .await
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Cart {
    items: Vec<String>,
}

async fn add(session: SessionHandle<Cart>) -> Res<String> {
    let n = session
        .modify_or_insert_with(Cart::default, |cart| {
            cart.items.push("apple".into());
            cart.items.len()
        })
        .await?;
    Ok(n.to_string())
}

/// Counts creations and saves of a memory store.
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryStore,
    creates: Arc<AtomicU64>,
    saves: Arc<AtomicU64>,
}

impl Counting {
    fn creates(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
    }
    fn saves(&self) -> u64 {
        self.saves.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SessionStore for Counting {
    async fn create(&self, r: &Record) -> sessionkit_core::Result<()> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> sessionkit_core::Result<Option<Record>> {
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

/// The `__Host-id` ticket a response sets, if any.
fn ticket_of<B>(r: &ServiceResponse<B>) -> Option<String> {
    r.headers().get_all(header::SET_COOKIE).find_map(|c| {
        let first = c.to_str().ok()?.split(';').next()?;
        let (n, v) = first.split_once('=')?;
        (n == "__Host-id").then(|| v.to_owned())
    })
}

/// A request presenting `ticket` in the cookie.
fn req(method: &str, path: &str, ticket: Option<&str>) -> actix_http::Request {
    let r = match method {
        "GET" => TestRequest::get(),
        _ => TestRequest::post(),
    }
    .uri(path);
    match ticket {
        None => r,
        Some(t) => r.insert_header((header::COOKIE, format!("__Host-id={t}"))),
    }
    .to_request()
}

async fn text<B: MessageBody>(r: ServiceResponse<B>) -> String {
    String::from_utf8(read_body(r).await.to_vec()).unwrap()
}

async fn bag_session(manager: &SessionManager<Bag>, counter: usize) -> String {
    let mut bag = Bag::new();
    bag.insert("counter", &counter).unwrap();
    let s = manager.create(None, bag).await.unwrap();
    s.ticket().as_str().to_owned()
}

async fn stored(manager: &SessionManager<Bag>, ticket: &str) -> Bag {
    manager.load(ticket).await.unwrap().unwrap().data().clone()
}

#[actix_web::test]
async fn a_counter_through_get_and_insert_creates_one_session_and_persists() {
    let store = Counting::default();
    let manager = SessionManager::stateful(store.clone()).build().unwrap();
    let app = app(SessionMiddleware::new(manager.clone())).await;

    let r = call_service(&app, req("POST", "/count", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ticket = ticket_of(&r).expect("the new session's cookie");
    assert_eq!(text(r).await, "0");
    assert_eq!(store.creates(), 1, "exactly one session");
    assert_eq!(store.saves(), 0, "created, not saved again");

    for expected in ["1", "2"] {
        let r = call_service(&app, req("POST", "/count", Some(&ticket))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(ticket_of(&r), None, "the ticket did not change");
        assert_eq!(text(r).await, expected);
    }
    assert_eq!(store.creates(), 1, "no other session");
    assert_eq!(store.saves(), 2, "one save per request");
    let bag = stored(&manager, &ticket).await;
    assert_eq!(bag.get::<usize>("counter").unwrap(), Some(3));
}

#[actix_web::test]
async fn a_counter_over_stateless_bearer_tokens() {
    let ring = KeyRing::new(Key::secret("k", Algorithm::HS256, &[7u8; 32]).unwrap()).unwrap();
    let manager = SessionManager::<Bag>::stateless(
        JwtCodec::new(ring).unwrap(),
        RevocationList::new(MemoryStore::new()),
    )
    .build()
    .unwrap();
    let app = app(SessionMiddleware::new(manager).bearer(BearerConfig::new())).await;
    let mut token: Option<String> = None;
    for expected in ["0", "1", "2"] {
        let mut r = TestRequest::post().uri("/count");
        if let Some(t) = &token {
            r = r.insert_header((header::AUTHORIZATION, format!("Bearer {t}")));
        }
        let r = call_service(&app, r.to_request()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let new = r.headers().get("x-session-token").unwrap();
        let new = new.to_str().unwrap().to_owned();
        assert_ne!(Some(&new), token.as_ref(), "a re-signed token");
        token = Some(new);
        assert_eq!(text(r).await, expected);
    }
}

#[actix_web::test]
async fn remove_returns_the_old_value_and_is_saved() {
    let store = Counting::default();
    let manager = SessionManager::stateful(store.clone()).build().unwrap();
    let app = app(SessionMiddleware::new(manager.clone())).await;
    let ticket = bag_session(&manager, 5).await;

    let r = call_service(&app, req("POST", "/take", Some(&ticket))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "Some(5)");
    assert!(!stored(&manager, &ticket).await.contains_key("counter"));
    assert_eq!(store.saves(), 1);

    let r = call_service(&app, req("POST", "/take", Some(&ticket))).await;
    assert_eq!(text(r).await, "None");
    assert_eq!(store.saves(), 1, "nothing removed, nothing saved");

    // Without a session: nothing to remove, and no session is started.
    let r = call_service(&app, req("POST", "/take", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ticket_of(&r), None);
    assert_eq!(text(r).await, "None");
    assert_eq!(store.creates(), 1, "only the test's own session");
}

#[actix_web::test]
async fn a_value_of_the_wrong_type_is_a_typed_error() {
    let manager = SessionManager::stateful(MemoryStore::new())
        .build()
        .unwrap();
    let app = app(SessionMiddleware::new(manager.clone())).await;
    let ticket = bag_session(&manager, 7).await;

    // `Error::Decode` returned through `?`: the crate answers it with 500.
    let r = call_service(&app, req("GET", "/wrong_type", Some(&ticket))).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(r).await, "session error");
    let e = SessionError::from(Error::decode(std::io::Error::other("not a string")));
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // A `remove` of the wrong type fails with `Decode` and keeps the value.
    let r = call_service(&app, req("POST", "/remove_wrong_type", Some(&ticket))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "true:Some(7)");
    let bag = stored(&manager, &ticket).await;
    assert_eq!(bag.get::<usize>("counter").unwrap(), Some(7));
}

#[actix_web::test]
async fn an_unencodable_value_is_an_error_and_starts_no_session() {
    let store = Counting::default();
    let manager = SessionManager::stateful(store.clone()).build().unwrap();
    let app = app(SessionMiddleware::new(manager)).await;
    let r = call_service(&app, req("POST", "/unencodable", None)).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(ticket_of(&r), None);
    assert_eq!(store.creates(), 0);
}

#[actix_web::test]
async fn concurrent_inserts_are_compare_and_swap_a_409_not_a_lost_update() {
    let manager = SessionManager::stateful(MemoryStore::new())
        .build()
        .unwrap();
    let app = app(SessionMiddleware::new(manager.clone())).await;
    let ticket = bag_session(&manager, 1).await;
    let (a, b) = tokio::join!(
        call_service(&app, req("POST", "/racy", Some(&ticket))),
        call_service(&app, req("POST", "/racy", Some(&ticket))),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let bag = stored(&manager, &ticket).await;
    assert_eq!(bag.get::<usize>("counter").unwrap(), Some(101));
}

#[actix_web::test]
async fn modify_or_insert_with_on_an_empty_and_an_existing_session() {
    let store = Counting::default();
    let manager = SessionManager::<Cart>::stateful(store.clone())
        .build()
        .unwrap();
    let app = init_service(
        App::new()
            .route("/add", web::post().to(add))
            .wrap(SessionMiddleware::new(manager.clone())),
    )
    .await;

    // Empty: the default is inserted, changed, and stored as a new session.
    let r = call_service(&app, req("POST", "/add", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ticket = ticket_of(&r).expect("the new session's cookie");
    assert_eq!(text(r).await, "1");
    assert_eq!(store.creates(), 1);

    // Existing: changed in place and saved, the ticket unchanged.
    let r = call_service(&app, req("POST", "/add", Some(&ticket))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ticket_of(&r), None);
    assert_eq!(text(r).await, "2");
    assert_eq!((store.creates(), store.saves()), (1, 1));
    let cart = manager.load(&ticket).await.unwrap().unwrap();
    assert_eq!(cart.data().items, ["apple", "apple"]);
}
