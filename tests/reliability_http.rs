//! Hostile input at the HTTP layer (`SessionLayer` on axum): oversized
//! cookies and headers, thousands of distinct bogus session cookies (no
//! store write for any of them: counted by a wrapper store), a replayed
//! rotated ID, and stateless tokens with every header field tampered.
//! Every request must be answered (never a panic, never a 5xx) with an
//! empty session, and nothing the client sent is ever adopted.
//!
//! `cargo test -p sessionkit-integration-tests --test reliability_http`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use sessionkit::axum::{SessionError, SessionHandle, SessionLayer, Transport};
use sessionkit::jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit::memory::MemoryStore;
use sessionkit::{
    Record, RevocationList, SessionId, SessionManager, SessionStore, Timestamp, async_trait,
};
use tower::ServiceExt as _;

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Data {
    n: u64,
}

type Handle = SessionHandle<Data>;

async fn whoami(s: Handle) -> Result<String, SessionError> {
    Ok(match s.data().await? {
        Some(d) => format!("n={}", d.n),
        None => "none".into(),
    })
}

async fn login(s: Handle) -> Result<&'static str, SessionError> {
    s.login("alice", || Data { n: 1 }).await?;
    Ok("in")
}

async fn rotate(s: Handle) -> Result<&'static str, SessionError> {
    s.rotate().await?;
    Ok("rotated")
}

fn app(manager: SessionManager<Data>) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/login", post(login))
        .route("/rotate", post(rotate))
        .layer(SessionLayer::new(manager).transport(Transport::default()))
}

/// Counts every call into the store it wraps.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    loads: AtomicU64,
    writes: AtomicU64,
}

#[async_trait]
impl SessionStore for Counting {
    async fn create(&self, r: &Record) -> sessionkit::Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.create(r).await
    }
    async fn load(&self, id: &SessionId) -> sessionkit::Result<Option<Record>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn save(&self, r: &Record) -> sessionkit::Result<u64> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.save(r).await
    }
    async fn touch(&self, id: &SessionId, at: Timestamp) -> sessionkit::Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(id, at).await
    }
    async fn delete(&self, id: &SessionId) -> sessionkit::Result<bool> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(id).await
    }
    async fn compare_and_delete(&self, id: &SessionId, v: u64) -> sessionkit::Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.compare_and_delete(id, v).await
    }
    async fn list_subject(&self, s: &str) -> sessionkit::Result<Vec<Record>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.list_subject(s).await
    }
    async fn delete_subject(&self, s: &str) -> sessionkit::Result<u64> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_subject(s).await
    }
    async fn delete_expired(&self) -> sessionkit::Result<u64> {
        self.inner.delete_expired().await
    }
}

struct Reply {
    status: StatusCode,
    body: String,
    set_cookie: Vec<String>,
}

async fn send(app: &Router, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
    }
}

fn cookie_id(r: &Reply) -> Option<String> {
    r.set_cookie.iter().find_map(|c| {
        let (n, v) = c.split(';').next()?.split_once('=')?;
        (n == "__Host-id" && !v.is_empty()).then(|| v.to_owned())
    })
}

fn assert_empty(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::OK, "{what}");
    assert_eq!(r.body, "none", "{what}");
    assert!(
        r.set_cookie
            .iter()
            .all(|c| !c.starts_with("__Host-id=") || c.starts_with("__Host-id=;")),
        "{what}: a cookie was issued for a bogus ticket: {:?}",
        r.set_cookie
    );
}

fn stateful(store: Arc<Counting>) -> SessionManager<Data> {
    SessionManager::<Data>::stateful(store)
        .build()
        .expect("manager")
}

#[tokio::test]
async fn thousands_of_bogus_session_cookies_cost_no_store_write() {
    let store = Arc::new(Counting::default());
    let app = app(stateful(store.clone()));
    let n = 5_000;
    let mut well_formed = 0u64;
    for i in 0..n {
        // Half well-formed unknown IDs (they reach the store as one load),
        // half malformed (rejected before the store).
        let cookie = if i % 2 == 0 {
            well_formed += 1;
            format!("__Host-id={}", SessionId::generate().as_str())
        } else {
            format!("__Host-id={}{i}", &SessionId::generate().as_str()[..20])
        };
        let r = send(&app, "GET", "/whoami", &[("cookie", &cookie)]).await;
        assert_empty(&r, &cookie);
    }
    let (loads, writes) = (
        store.loads.load(Ordering::SeqCst),
        store.writes.load(Ordering::SeqCst),
    );
    println!("{n} bogus cookies: {loads} store loads, {writes} store writes");
    assert_eq!(writes, 0, "a bogus cookie caused a store write");
    assert!(
        loads <= well_formed,
        "malformed IDs must not reach the store"
    );
}

#[tokio::test]
async fn oversized_cookies_and_headers_get_an_empty_session() {
    let store = Arc::new(Counting::default());
    let app = app(stateful(store.clone()));
    let id = SessionId::generate();
    let mut cases: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for size in [4 * 1024, 64 * 1024, 1024 * 1024] {
        let big = "A".repeat(size);
        cases.push((
            format!("session cookie of {size} bytes"),
            vec![("cookie".into(), format!("__Host-id={big}"))],
        ));
        cases.push((
            format!("{size}-byte cookie beside a well-formed id"),
            vec![(
                "cookie".into(),
                format!("x={big}; __Host-id={}", id.as_str()),
            )],
        ));
        cases.push((
            format!("bearer of {size} bytes"),
            vec![("authorization".into(), format!("Bearer {big}"))],
        ));
        cases.push((
            format!("unrelated header of {size} bytes"),
            vec![("x-junk".into(), big.clone())],
        ));
    }
    let many: String = (0..5_000).map(|i| format!("c{i}=v; ")).collect();
    cases.push((
        "5000 cookies in one header".into(),
        vec![("cookie".into(), format!("{many}__Host-id=zz"))],
    ));
    cases.push((
        "200 session cookies".into(),
        (0..200)
            .map(|_| {
                (
                    "cookie".into(),
                    format!("__Host-id={}", SessionId::generate().as_str()),
                )
            })
            .collect(),
    ));
    cases.push((
        "non-ASCII (obs-text) bytes and a tab".into(),
        vec![(
            "cookie".into(),
            "__Host-id=é\t%FF%FE; __Host-id=\u{e9}\u{e9}".into(),
        )],
    ));
    for (what, headers) in &cases {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = send(&app, "GET", "/whoami", &h).await;
        assert_empty(&r, what);
    }
    assert_eq!(store.writes.load(Ordering::SeqCst), 0);
    println!(
        "{} oversized/odd header cases: all empty sessions, {} loads, 0 writes",
        cases.len(),
        store.loads.load(Ordering::SeqCst)
    );
}

/// Oversized headers on a real HTTP/1 server (hyper's own limits apply
/// first): the connection gets a 431 or is closed, never a hang, and the
/// server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_on_a_real_server_leave_it_serving() {
    use std::io::{Read, Write};
    use std::time::Duration;

    let store = Arc::new(Counting::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app(stateful(store))).await;
    });
    let raw = move |head: String| {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let _ = s.write_all(head.as_bytes());
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let mut seen = Vec::new();
    for size in [8 * 1024, 64 * 1024, 512 * 1024] {
        let big = "A".repeat(size);
        let head = format!(
            "GET /whoami HTTP/1.1\r\nhost: x\r\ncookie: __Host-id={big}\r\nconnection: close\r\n\r\n"
        );
        let out = raw(head).await.expect("client");
        let status = out.split_whitespace().nth(1).unwrap_or("closed").to_owned();
        assert!(
            status == "200" || status == "431" || status == "400" || status == "closed",
            "{size}: {out:.200}"
        );
        if status == "200" {
            assert!(out.ends_with("none"), "{size}: {out:.200}");
        }
        seen.push(format!("{size} B cookie -> {status}"));
    }
    let ok = raw("GET /whoami HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".into())
        .await
        .expect("client");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:.200}");
    println!("real server: {seen:?}; still serving");
    server.abort();
}

#[tokio::test]
async fn a_replayed_rotated_id_is_an_empty_session_and_harms_nothing() {
    let store = Arc::new(Counting::default());
    let app = app(stateful(store.clone()));
    let r = send(&app, "POST", "/login", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let first = cookie_id(&r).expect("a session cookie");
    let r = send(
        &app,
        "POST",
        "/rotate",
        &[("cookie", &format!("__Host-id={first}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let second = cookie_id(&r).expect("a rotated cookie");
    assert_ne!(first, second);
    let writes = store.writes.load(Ordering::SeqCst);
    for _ in 0..100 {
        let r = send(
            &app,
            "GET",
            "/whoami",
            &[("cookie", &format!("__Host-id={first}"))],
        )
        .await;
        assert_empty(&r, "replayed pre-rotation id");
        // A replay tries to rotate the dead ID: nothing happens.
        let r = send(
            &app,
            "POST",
            "/rotate",
            &[("cookie", &format!("__Host-id={first}"))],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            cookie_id(&r).is_none(),
            "no session was made from a dead id"
        );
    }
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        writes,
        "replays wrote nothing"
    );
    let r = send(
        &app,
        "GET",
        "/whoami",
        &[("cookie", &format!("__Host-id={second}"))],
    )
    .await;
    assert_eq!(r.body, "n=1", "the live session is intact");
}

fn jwt() -> JwtCodec {
    let ring = KeyRing::new(Key::secret("k1", Algorithm::HS256, &[7u8; 32]).expect("key"))
        .expect("ring")
        .with_key(Key::secret("k2", Algorithm::HS512, &[9u8; 64]).expect("key"))
        .expect("ring");
    JwtCodec::new(ring).expect("codec")
}

#[tokio::test]
async fn stateless_tokens_with_every_header_field_tampered_are_empty_sessions() {
    let revocations = Arc::new(Counting::default());
    let manager =
        SessionManager::<Data>::stateless(jwt(), RevocationList::new(revocations.clone()))
            .build()
            .expect("manager");
    let app = app(manager);
    let r = send(&app, "POST", "/login", &[]).await;
    let token = cookie_id(&r).expect("a token cookie");
    let ok = send(
        &app,
        "GET",
        "/whoami",
        &[("cookie", &format!("__Host-id={token}"))],
    )
    .await;
    assert_eq!(ok.body, "n=1", "the untampered token works");
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json");
    let mut variants: Vec<(String, String)> = Vec::new();
    let mut with = |what: &str, f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut m = header.as_object().expect("object").clone();
        f(&mut m);
        let hb = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&m).expect("json"));
        variants.push((what.to_owned(), format!("{hb}.{p}.{s}")));
    };
    use serde_json::json;
    for alg in [
        "none", "None", "NONE", "HS512", "HS384", "RS256", "ES256", "EdDSA", "PS256", "hs256",
        "HS256 ", "",
    ] {
        with(&format!("alg={alg:?}"), &|m| {
            m.insert("alg".into(), json!(alg));
        });
    }
    with("alg=null", &|m| {
        m.insert("alg".into(), json!(null));
    });
    with("alg=number", &|m| {
        m.insert("alg".into(), json!(256));
    });
    with("alg missing", &|m| {
        m.remove("alg");
    });
    for kid in ["k2", "k3", "", "../../dev/null", "k1\u{0}", "K1", "k1 "] {
        with(&format!("kid={kid:?}"), &|m| {
            m.insert("kid".into(), json!(kid));
        });
    }
    with("kid missing", &|m| {
        m.remove("kid");
    });
    with("kid=array", &|m| {
        m.insert("kid".into(), json!(["k1"]));
    });
    with("kid=k2 + alg=HS512 (key confusion)", &|m| {
        m.insert("kid".into(), json!("k2"));
        m.insert("alg".into(), json!("HS512"));
    });
    for (k, v) in [
        ("crit", json!(["exp"])),
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("jwk", json!({"kty": "oct", "k": "AAAA"})),
        ("x5c", json!(["AAAA"])),
        ("typ", json!("JWE")),
        ("typ", json!(7)),
        ("cty", json!("JWT")),
        ("zip", json!("DEF")),
        ("b64", json!(false)),
        ("enc", json!("A256GCM")),
    ] {
        with(&format!("{k}={v}"), &|m| {
            m.insert(k.into(), v.clone());
        });
    }
    // Structural tampering.
    let raw = |hdr: &[u8]| format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode(hdr));
    variants.push(("header not JSON".into(), raw(b"not json")));
    variants.push(("header is an array".into(), raw(b"[]")));
    variants.push((
        "duplicate alg".into(),
        raw(br#"{"alg":"none","alg":"HS256","kid":"k1"}"#),
    ));
    variants.push(("empty header".into(), format!(".{p}.{s}")));
    variants.push(("no signature".into(), format!("{h}.{p}.")));
    variants.push(("two parts".into(), format!("{h}.{p}")));
    variants.push(("four parts".into(), format!("{h}.{p}.{s}.{s}")));
    variants.push(("padded base64".into(), format!("{h}=.{p}.{s}")));
    variants.push(("standard base64 alphabet".into(), format!("{h}+/.{p}.{s}")));
    let mut flipped = s.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    variants.push((
        "signature bit flipped".into(),
        format!("{h}.{p}.{}", String::from_utf8(flipped).expect("ascii")),
    ));
    for (what, bad) in &variants {
        for (name, hdr) in [
            ("cookie", format!("__Host-id={bad}")),
            ("authorization", format!("Bearer {bad}")),
        ] {
            let r = send(&app, "GET", "/whoami", &[(name, hdr.as_str())]).await;
            assert_empty(&r, &format!("{what} ({name})"));
        }
    }
    println!(
        "{} tampered-header tokens x 2 transports: all empty sessions; revocation-store writes {}",
        variants.len(),
        revocations.writes.load(Ordering::SeqCst)
    );
    assert_eq!(revocations.writes.load(Ordering::SeqCst), 0);
}
