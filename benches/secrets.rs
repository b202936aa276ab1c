//! Secrets at rest: what each protection costs, measured against the same
//! manager without it, back to back on the same payloads (`Sess`, ~200 B
//! and 4 KiB).
//!
//! - `secrets/id_hash_{memory,redis}/{create,load,save,delete}`: the
//!   default `SessionManager` (the store keys records by SHA-256 of the
//!   ticket's ID), contender `hashed`, beside the same manager with
//!   `.hash_ids(false)`, contender `plain`. On `MemoryStore` (the smallest
//!   noise floor: the CPU cost of the hash) a third contender, `keyed`,
//!   mixes a deployment key in (`.id_hash_key(..)`), on loads only.
//! - `secrets/encryption_{memory,redis}/{create,load,save}`: the default
//!   manager with `.encrypt_payloads(PayloadKeys)` (XChaCha20-Poly1305),
//!   contender `encrypted`, beside the same manager without it, `plain`.
//!   A delete never reads or writes the payload, so it has no row.
//! - `secrets/token/{create,load}`: stateless managers issuing PASETO
//!   v4.local tokens (encrypted, `paseto`) and JWT HS256 tokens (signed,
//!   `jwt`) with the same claims and data, beside raw jsonwebtoken HS256
//!   (`raw`: encode / decode of the same claims with the data typed, no
//!   revocation check) as the floor. A load is decrypt or verify, the
//!   revocation check (a `CachedStore<MemoryStore>`, as in `jwt.rs`) and
//!   decoding the data.
//!
//! The Redis rows use `REDIS_URL` (default `redis://127.0.0.1:6379`; the
//! private server `scripts/bench.sh` starts); without a server they print
//! `SKIPPED` and the other rows still run.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Contender, Op, Ops, Payload, Sess, Sk};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sessionkit::jwt::{Algorithm, JwtCodec, Key as JwtKey, KeyRing as JwtKeyRing};
use sessionkit::memory::{CachedStore, MemoryStore};
use sessionkit::paseto::{Key as PasetoKey, KeyRing as PasetoKeyRing, PasetoCodec};
use sessionkit::redis::{RedisConfig, RedisStore};
use sessionkit::{
    ManagerBuilder, PayloadKeys, RevocationList, Session, SessionId, SessionManager, Timestamp,
    TokenCodec, async_trait,
};

/// Payload encryption key (a benchmark constant; real keys come from a
/// secret manager).
const PAYLOAD_KEY: [u8; 32] = [0x42; 32];
/// Deployment key of the `keyed` ID hash.
const ID_HASH_KEY: [u8; 32] = [0x07; 32];
/// Token key: the same 32 bytes for PASETO, JWT and raw jsonwebtoken.
const TOKEN_SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "shop";
const SUBJECT: &str = "user-42";

fn memory_store() -> MemoryStore {
    MemoryStore::builder()
        .max_entries(2_000_000)
        .max_bytes(4 << 30)
        .build()
        .expect("valid bounds")
}

/// sessionkit through the application API, as [`common::Sk`] does, with
/// the manager built from `builder`.
fn sk(builder: ManagerBuilder<Sess>) -> Arc<Sk> {
    Arc::new(Sk {
        mgr: builder.build().expect("manager"),
        subject: None,
    })
}

fn keys() -> PayloadKeys {
    PayloadKeys::new(1, PAYLOAD_KEY)
}

/// The ID hash and payload encryption rows on one backend: `store()` gives
/// each contender a store of its own.
fn stateful<S: sessionkit::SessionStore>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    backend: &str,
    payloads: &[Payload],
    mut store: impl FnMut(&str) -> S,
    keyed: bool,
) {
    let hashed = sk(common::manager_builder(store("h")));
    let plain = sk(common::manager_builder(store("p")).hash_ids(false));
    let mut contenders = vec![
        Contender::new("hashed", &hashed),
        Contender::new("plain", &plain),
    ];
    if keyed {
        // The key adds the same SHA-256 block to every operation: one row
        // (the most frequent operation) shows it and keeps the target short.
        let k = sk(common::manager_builder(store("k")).id_hash_key(ID_HASH_KEY));
        contenders.push(Contender::new("keyed", &k).only(&[Op::Load]));
    }
    common::compare_ops(
        c,
        rt,
        &format!("secrets/id_hash_{backend}"),
        &contenders,
        payloads,
        &Op::ALL,
    );
    drop(contenders);

    // Both with the default (hashed) IDs: only the encryption differs.
    let encrypted = sk(common::manager_builder(store("e")).encrypt_payloads(keys()));
    let plain = sk(common::manager_builder(store("u")));
    common::compare_ops(
        c,
        rt,
        &format!("secrets/encryption_{backend}"),
        &[
            Contender::new("encrypted", &encrypted),
            Contender::new("plain", &plain),
        ],
        payloads,
        &[Op::Create, Op::Load, Op::Save],
    );
}

fn memory(c: &mut Criterion) {
    let rt = common::runtime();
    let payloads = Payload::both();
    for p in &payloads {
        eprintln!("payload {}: {} bytes encoded", p.label, p.encoded_len);
    }
    stateful(c, &rt, "memory", &payloads, |_| memory_store(), true);
}

fn redis(c: &mut Criterion) {
    let rt = common::runtime();
    let url = common::env_url("REDIS_URL", "redis://127.0.0.1:6379");
    // Probe first: without a server, skip loudly instead of failing.
    let probed = common::probe(&rt, &format!("redis at {url}"), async {
        let client = redis::Client::open(url.as_str())?;
        redis::aio::ConnectionManager::new(client).await
    });
    if probed.is_none() {
        return;
    }
    let tag = common::run_tag();
    let payloads = Payload::both();
    let store = |name: &str| {
        rt.block_on(RedisStore::standalone(
            &url,
            RedisConfig::new()
                .prefix(format!("sksec{tag}{name}"))
                .command_timeout(Duration::from_secs(5)),
        ))
        .expect("RedisStore")
    };
    stateful(c, &rt, "redis", &payloads, store, false);
}

/// The claims the stateless manager writes, declared by hand with the data
/// typed: what an application using jsonwebtoken directly would do.
#[derive(Serialize, Deserialize)]
struct RawClaims {
    jti: String,
    sub: String,
    iss: String,
    aud: String,
    iat: i64,
    ims: u16,
    exp: i64,
    sst: i64,
    sch: u32,
    dat: Sess,
}

/// A stateless manager: create signs or encrypts a token; load verifies or
/// decrypts it and checks the revocation list. Tokens are dropped, not
/// revoked, after a create row (a revocation is a store write, not what is
/// measured here).
struct Tokens(SessionManager<Sess>);

impl Tokens {
    fn new(codec: impl TokenCodec) -> Arc<Self> {
        let revocations = RevocationList::new(Arc::new(
            CachedStore::builder(MemoryStore::new())
                .max_staleness(Duration::from_secs(600))
                .build()
                .expect("cached store"),
        ));
        Arc::new(Tokens(
            SessionManager::<Sess>::stateless(codec, revocations)
                .idle_timeout(common::IDLE)
                .absolute_timeout(Duration::from_secs(8 * 3600))
                .touch_interval(Duration::from_secs(1800))
                .build()
                .expect("stateless manager"),
        ))
    }
}

#[async_trait]
impl Ops for Tokens {
    type H = Session<Sess>;
    async fn create(&self, data: &Sess) -> Self::H {
        self.0
            .create(Some(SUBJECT), data.clone())
            .await
            .expect("token create")
    }
    async fn load(&self, h: &Self::H) -> Sess {
        self.0
            .load(h.ticket().as_str())
            .await
            .expect("token load")
            .expect("live token")
            .into_data()
    }
    async fn save(&self, h: &mut Self::H) {
        self.0.save(h).await.expect("token re-issue");
    }
    async fn delete(&self, h: Self::H) {
        drop(h);
    }
}

/// Raw jsonwebtoken HS256 with the same key, `kid`, issuer, audience and
/// leeway as the `jwt` contender.
struct RawJwt {
    header: Header,
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

impl RawJwt {
    fn new() -> Arc<Self> {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k1".into());
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Arc::new(RawJwt {
            header,
            enc: EncodingKey::from_secret(TOKEN_SECRET),
            dec: DecodingKey::from_secret(TOKEN_SECRET),
            validation,
        })
    }
}

#[async_trait]
impl Ops for RawJwt {
    type H = (String, Sess);
    async fn create(&self, data: &Sess) -> Self::H {
        let now = Timestamp::now();
        let claims = RawClaims {
            jti: SessionId::generate().as_str().to_owned(),
            sub: SUBJECT.into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now.as_secs(),
            ims: (now.as_millis() % 1000) as u16,
            exp: (now + common::IDLE).as_secs(),
            sst: now.as_millis(),
            sch: 1,
            dat: data.clone(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.enc).expect("raw encode");
        (token, data.clone())
    }
    async fn load(&self, h: &Self::H) -> Sess {
        jsonwebtoken::decode::<RawClaims>(&h.0, &self.dec, &self.validation)
            .expect("raw decode")
            .claims
            .dat
    }
    async fn save(&self, h: &mut Self::H) {
        *h = self.create(&h.1).await;
    }
    async fn delete(&self, h: Self::H) {
        drop(h);
    }
}

fn tokens(c: &mut Criterion) {
    let rt = common::runtime();
    let payloads = Payload::both();
    let paseto = Tokens::new(
        PasetoCodec::builder(PasetoKeyRing::new(
            PasetoKey::new("k1", TOKEN_SECRET).expect("paseto key"),
        ))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(30))
        .build()
        .expect("paseto codec"),
    );
    let jwt = Tokens::new(
        JwtCodec::builder(
            JwtKeyRing::new(JwtKey::secret("k1", Algorithm::HS256, TOKEN_SECRET).expect("key"))
                .expect("ring"),
        )
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(30))
        .build()
        .expect("jwt codec"),
    );
    let raw = RawJwt::new();
    for p in &payloads {
        let (a, b, r) = rt.block_on(async {
            let a = paseto.create(&p.data).await;
            let b = jwt.create(&p.data).await;
            let r = raw.create(&p.data).await;
            // Every contender reads back what it wrote.
            assert_eq!(paseto.load(&a).await, p.data);
            assert_eq!(jwt.load(&b).await, p.data);
            assert_eq!(raw.load(&r).await, p.data);
            (a, b, r)
        });
        eprintln!(
            "token {}: paseto {} bytes, jwt {} bytes, raw jwt {} bytes",
            p.label,
            a.ticket().as_str().len(),
            b.ticket().as_str().len(),
            r.0.len()
        );
    }
    common::compare_ops(
        c,
        &rt,
        "secrets/token",
        &[
            Contender::new("paseto", &paseto),
            Contender::new("jwt", &jwt),
            Contender::new("raw", &raw),
        ],
        &payloads,
        &[Op::Create, Op::Load],
    );
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = memory, redis, tokens
}
criterion_main!(benches);
