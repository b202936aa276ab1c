//! Drives the axum-login example over real HTTP (a server on 127.0.0.1:0,
//! reqwest clients with cookie jars) on real sessionkit stores: a SQLite
//! file, and Redis on loopback (skipped when unreachable unless
//! `SESSIONKIT_REQUIRE_SERVICES=1`).

use std::sync::Arc;

use reqwest::StatusCode;
use sessionkit::SessionStore;
use sessionkit::redis::{RedisConfig, RedisStore};
use sessionkit_example_axum_login::{
    DEMO_PASSWORD, DEMO_USERNAME, app, connect_store, tower_store,
};

/// Serves the example on a free loopback port; returns its base URL.
async fn serve(store: Arc<dyn SessionStore>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(tower_store(store), false);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn random_hex() -> String {
    sessionkit::SessionId::generate().to_bytes()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The session cookie (`id=…`) a response sets.
fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("id="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

async fn login(client: &reqwest::Client, base: &str, password: &str) -> reqwest::Response {
    client
        .post(format!("{base}/login"))
        .form(&[("username", DEMO_USERNAME), ("password", password)])
        .send()
        .await
        .unwrap()
}

async fn protected(client: &reqwest::Client, base: &str) -> (StatusCode, String) {
    let res = client
        .get(format!("{base}/protected"))
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// The whole flow, on one store.
async fn flow(store: Arc<dyn SessionStore>) {
    let base = serve(Arc::clone(&store)).await;
    let alice = browser();

    // Not logged in: 401.
    assert_eq!(protected(&alice, &base).await.0, StatusCode::UNAUTHORIZED);
    // Wrong password: 401, no session.
    let res = login(&alice, &base, "wrong").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(protected(&alice, &base).await.0, StatusCode::UNAUTHORIZED);

    // Log in: a session cookie, then the protected route answers.
    let res = login(&alice, &base, DEMO_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = session_cookie(&res).expect("a session cookie");
    assert_eq!(res.text().await.unwrap(), "logged in as demo");
    assert_eq!(
        protected(&alice, &base).await,
        (StatusCode::OK, "hello, demo".to_owned())
    );
    // The sessionkit store indexes the session under the user's ID.
    assert_eq!(store.list_subject("1").await.unwrap().len(), 1);

    // Log out: 401 again, and the old cookie, replayed, opens nothing.
    let res = alice.post(format!("{base}/logout")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(protected(&alice, &base).await.0, StatusCode::UNAUTHORIZED);
    let replay = reqwest::Client::new()
        .get(format!("{base}/protected"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(store.list_subject("1").await.unwrap().is_empty());

    // Log out everywhere: two browsers, one request ends both sessions.
    let laptop = browser();
    let phone = browser();
    for client in [&laptop, &phone] {
        assert_eq!(
            login(client, &base, DEMO_PASSWORD).await.status(),
            StatusCode::OK
        );
        assert_eq!(protected(client, &base).await.0, StatusCode::OK);
    }
    assert_eq!(store.list_subject("1").await.unwrap().len(), 2);
    let res = laptop
        .post(format!("{base}/logout-everywhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status(), res.text().await.unwrap()),
        (StatusCode::OK, "ended 2 sessions".to_owned())
    );
    assert_eq!(protected(&phone, &base).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(protected(&laptop, &base).await.0, StatusCode::UNAUTHORIZED);
    assert!(store.list_subject("1").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_protected_logout_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("sessionkit-axum-login-{}", random_hex()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("sessions.sqlite").display());
    let store = connect_store(&url).await.expect("a SQLite file store");
    flow(store).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_protected_logout_on_redis() {
    let url = std::env::var("SESSIONKIT_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    // A private key prefix: concurrent runs on one server never meet.
    let config = RedisConfig::new().prefix(format!("sktest:axum-login:{}", random_hex()));
    let store = match RedisStore::standalone(&url, config).await {
        Ok(store) => store,
        Err(err) => {
            return sessionkit_testkit::skip::<()>(&format!("redis at {url}"), err).unwrap_or(());
        }
    };
    flow(Arc::new(store)).await;
}
