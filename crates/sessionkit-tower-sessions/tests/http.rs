//! tower-sessions' own behaviours, through its `SessionManagerLayer` and
//! `Session` extractor, over the adapter on a sessionkit `MemoryStore`:
//! every request goes through HTTP (`tower::ServiceExt::oneshot`) with the
//! cookie carried by hand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::routing::get;
use http::{Request, StatusCode, header};
use sessionkit_core::{SessionId, SessionStore, Timestamp};
use sessionkit_memory::MemoryStore;
use sessionkit_tower_sessions::{TowerSessionsStore, store_id};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt as _;
use tower_sessions::session::Id;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// Lets a test hold a request between its load and its save.
#[derive(Clone, Default)]
struct Gate {
    /// Told when a held request has loaded the session.
    loaded: Arc<Mutex<Option<mpsc::UnboundedSender<()>>>>,
    /// Released requests, in arrival order.
    release: Arc<Mutex<Vec<oneshot::Receiver<()>>>>,
}

async fn insert(session: Session) -> Result<&'static str, StatusCode> {
    session.insert("value", 42).await.map_err(internal)?;
    session.insert("keep", true).await.map_err(internal)?;
    Ok("ok")
}

async fn read(session: Session) -> Result<String, StatusCode> {
    let value: Option<i64> = session.get("value").await.map_err(internal)?;
    Ok(format!("{value:?}"))
}

async fn remove(session: Session) -> Result<&'static str, StatusCode> {
    let _: Option<i64> = session.remove("value").await.map_err(internal)?;
    Ok("ok")
}

async fn cycle(session: Session) -> Result<&'static str, StatusCode> {
    session.cycle_id().await.map_err(internal)?;
    Ok("ok")
}

async fn flush(session: Session) -> Result<&'static str, StatusCode> {
    session.flush().await.map_err(internal)?;
    Ok("ok")
}

/// Loads the session, reports it, waits to be released, then writes
/// `value` = the `set` query parameter.
async fn hold(
    session: Session,
    Extension(gate): Extension<Gate>,
    uri: http::Uri,
) -> Result<String, StatusCode> {
    let set: i64 = uri
        .query()
        .and_then(|q| q.strip_prefix("set="))
        .and_then(|v| v.parse().ok())
        .ok_or(StatusCode::BAD_REQUEST)?;
    let before: Option<i64> = session.get("value").await.map_err(internal)?;
    let release = gate.release.lock().unwrap().remove(0);
    let loaded = gate.loaded.lock().unwrap().clone().unwrap();
    loaded.send(()).unwrap();
    release.await.unwrap();
    session.insert("value", set).await.map_err(internal)?;
    Ok(format!("{before:?}"))
}

fn internal(err: impl std::fmt::Display) -> StatusCode {
    eprintln!("session error: {err}");
    StatusCode::INTERNAL_SERVER_ERROR
}

fn app(store: TowerSessionsStore<MemoryStore>, gate: Gate) -> Router {
    Router::new()
        .route("/insert", get(insert))
        .route("/get", get(read))
        .route("/remove", get(remove))
        .route("/cycle", get(cycle))
        .route("/flush", get(flush))
        .route("/hold", get(hold))
        .layer(Extension(gate))
        .layer(
            SessionManagerLayer::new(store)
                .with_secure(false)
                .with_expiry(Expiry::OnInactivity(time::Duration::hours(1))),
        )
}

/// The session cookie a response sets: `Some("")` when it removes it.
struct Reply {
    status: StatusCode,
    cookie: Option<String>,
    body: String,
}

async fn call(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("id={c}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("id="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned());
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        cookie,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn setup() -> (MemoryStore, Router) {
    let memory = MemoryStore::new();
    let router = app(TowerSessionsStore::new(memory.clone()), Gate::default());
    (memory, router)
}

fn key(cookie: &str) -> SessionId {
    store_id(&cookie.parse::<Id>().expect("a tower-sessions ID"))
}

async fn login(router: &Router) -> String {
    let reply = call(router, "/insert", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.cookie.expect("a session cookie");
    assert!(!cookie.is_empty());
    cookie
}

#[tokio::test]
async fn insert_get_remove_through_the_layer_store_json_under_a_hashed_key() {
    let (memory, router) = setup();
    let cookie = login(&router).await;

    // Stored under the hash of the ID, as JSON, with the layer's expiry.
    let id: Id = cookie.parse().unwrap();
    let stored = memory.load(&store_id(&id)).await.unwrap().expect("stored");
    let data: serde_json::Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(data, serde_json::json!({"value": 42, "keep": true}));
    let in_an_hour = Timestamp::now() + Duration::from_secs(3600);
    assert!(stored.expires_at <= in_an_hour);
    assert!(stored.expires_at > in_an_hour - Duration::from_secs(60));
    // Not under the ID's own bytes: a dump of the store holds no cookie.
    assert!(
        memory
            .load(&SessionId::from_bytes(id.0.to_le_bytes()))
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(call(&router, "/get", Some(&cookie)).await.body, "Some(42)");
    assert_eq!(
        call(&router, "/remove", Some(&cookie)).await.status,
        StatusCode::OK
    );
    assert_eq!(call(&router, "/get", Some(&cookie)).await.body, "None");
    let stored = memory.load(&key(&cookie)).await.unwrap().expect("stored");
    let data: serde_json::Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(data, serde_json::json!({"keep": true}));
    // A fresh client has no session.
    assert_eq!(call(&router, "/get", None).await.body, "None");
}

#[tokio::test]
async fn cycle_id_moves_the_data_and_ends_the_old_id() {
    let (memory, router) = setup();
    let old = login(&router).await;
    let reply = call(&router, "/cycle", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let new = reply.cookie.expect("a new cookie");
    assert_ne!(new, old);
    assert_eq!(call(&router, "/get", Some(&new)).await.body, "Some(42)");
    assert_eq!(call(&router, "/get", Some(&old)).await.body, "None");
    assert!(memory.load(&key(&old)).await.unwrap().is_none());
    assert!(memory.load(&key(&new)).await.unwrap().is_some());
}

#[tokio::test]
async fn flush_ends_the_session_and_removes_the_cookie() {
    let (memory, router) = setup();
    let cookie = login(&router).await;
    let reply = call(&router, "/flush", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.cookie.as_deref(), Some(""), "the cookie is removed");
    assert!(memory.load(&key(&cookie)).await.unwrap().is_none());
    assert_eq!(call(&router, "/get", Some(&cookie)).await.body, "None");
}

#[tokio::test]
async fn an_expired_session_is_not_loaded() {
    let (memory, router) = setup();
    let cookie = login(&router).await;
    // The store's expiry, not the cookie's, decides: move it into the past.
    memory
        .touch(&key(&cookie), Timestamp::now() - Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(call(&router, "/get", Some(&cookie)).await.body, "None");
    // Writing to the expired session starts a new one under a new ID.
    let reply = call(&router, "/insert", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let renewed = reply.cookie.expect("a new cookie");
    assert_ne!(renewed, cookie);
    assert!(memory.load(&key(&cookie)).await.unwrap().is_none());
}

/// Sends `/hold?set=<set>` with `cookie` and returns once the handler has
/// loaded the session, with the sender that lets it go on and its reply.
async fn held(
    router: &Router,
    gate: &Gate,
    cookie: &str,
    set: i64,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Reply>) {
    let (loaded_tx, mut loaded_rx) = mpsc::unbounded_channel();
    *gate.loaded.lock().unwrap() = Some(loaded_tx);
    let (release_tx, release_rx) = oneshot::channel();
    gate.release.lock().unwrap().push(release_rx);
    let router = router.clone();
    let cookie = cookie.to_owned();
    let task =
        tokio::spawn(
            async move { call(&router, &format!("/hold?set={set}"), Some(&cookie)).await },
        );
    loaded_rx.recv().await.expect("the held request loaded");
    (release_tx, task)
}

#[tokio::test]
async fn a_request_that_loaded_before_a_logout_does_not_write_the_session_back() {
    let memory = MemoryStore::new();
    let gate = Gate::default();
    let router = app(TowerSessionsStore::new(memory.clone()), gate.clone());
    let cookie = login(&router).await;

    // A slow request loads the session...
    let (release, slow) = held(&router, &gate, &cookie, 7).await;
    // ...the user logs out meanwhile...
    assert_eq!(
        call(&router, "/flush", Some(&cookie)).await.status,
        StatusCode::OK
    );
    // ...and the slow request then changes the session and ends.
    release.send(()).unwrap();
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "Some(42)", "it had loaded the live session");

    // The logout holds: nothing was written back under the old ID.
    assert!(memory.load(&key(&cookie)).await.unwrap().is_none());
    assert_eq!(call(&router, "/get", Some(&cookie)).await.body, "None");
}

#[tokio::test]
async fn concurrent_saves_are_blind_the_last_writer_wins() {
    let memory = MemoryStore::new();
    let gate = Gate::default();
    let router = app(TowerSessionsStore::new(memory.clone()), gate.clone());
    let cookie = login(&router).await;

    // A and B both load value 42; B writes 100 first, then A writes 7.
    let (release_a, a) = held(&router, &gate, &cookie, 7).await;
    let (release_b, b) = held(&router, &gate, &cookie, 100).await;
    release_b.send(()).unwrap();
    let b = b.await.unwrap();
    assert_eq!((b.status, b.body.as_str()), (StatusCode::OK, "Some(42)"));
    release_a.send(()).unwrap();
    let a = a.await.unwrap();
    // A's save is not refused although the session changed after A loaded
    // it: tower-sessions' saves carry no version.
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "Some(42)"));
    assert_eq!(call(&router, "/get", Some(&cookie)).await.body, "Some(7)");
    // One record, written three times (create, B, A).
    let stored = memory.load(&key(&cookie)).await.unwrap().unwrap();
    assert_eq!(stored.version, 3);
}
