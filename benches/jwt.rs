//! JWT: encode and verify through `JwtCodec` beside raw jsonwebtoken with the
//! same key (HS256), header (`kid`) and claims; and verify plus a revocation
//! check through a `CachedStore<MemoryStore>` beside raw verify; and hybrid
//! sessions: access-token verification and a refresh (see `hybrid`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Payload;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sessionkit::jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit::memory::{CachedStore, MemoryStore};
use sessionkit::{
    HybridManager, RevocationList, SessionId, SessionStore, Timestamp, TokenClaims, TokenCodec,
};

const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "shop";

/// The same claims `JwtCodec` writes, as a hand-written application would
/// declare them.
#[derive(Serialize, Deserialize)]
struct RawClaims {
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    iss: String,
    aud: String,
    iat: i64,
    ims: u16,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    sst: i64,
    sch: u32,
    dat: serde_json::Value,
}

fn jwt(c: &mut Criterion) {
    let rt = common::runtime();
    let codec = JwtCodec::builder(
        KeyRing::new(Key::secret("k1", Algorithm::HS256, SECRET).expect("key")).expect("ring"),
    )
    .issuer(ISSUER)
    .audience(AUDIENCE)
    .leeway(Duration::from_secs(30))
    .build()
    .expect("codec");
    let enc = EncodingKey::from_secret(SECRET);
    let dec = DecodingKey::from_secret(SECRET);
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.leeway = 30;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);

    let revocations = RevocationList::new(Arc::new(
        CachedStore::builder(MemoryStore::new())
            .max_staleness(Duration::from_secs(600))
            .build()
            .expect("cached store"),
    ));

    for p in Payload::both() {
        let now = Timestamp::now();
        let claims = TokenClaims {
            jti: SessionId::generate(),
            subject: Some("user-42".into()),
            issued_at: now,
            expires_at: now + common::IDLE,
            not_before: None,
            session_started_at: now,
            schema: 1,
            data: serde_json::to_value(&p.data).expect("to_value"),
        };
        let raw = RawClaims {
            jti: claims.jti.as_str().to_owned(),
            sub: claims.subject.clone(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now.as_secs(),
            ims: (now.as_millis() % 1000) as u16,
            exp: claims.expires_at.as_secs(),
            nbf: None,
            sst: now.as_millis(),
            sch: 1,
            dat: claims.data.clone(),
        };
        let sk_token = codec.encode(&claims).expect("encode");
        let raw_token = jsonwebtoken::encode(&header, &raw, &enc).expect("raw encode");
        eprintln!(
            "jwt {}: sessionkit token {} bytes, raw token {} bytes",
            p.label,
            sk_token.len(),
            raw_token.len()
        );
        // Both verify each other's tokens: the same work on the same input.
        codec
            .decode(&raw_token)
            .expect("sessionkit reads the raw token");
        jsonwebtoken::decode::<RawClaims>(&sk_token, &dec, &validation).expect("raw reads ours");

        let mut g = c.benchmark_group("jwt/encode");
        g.bench_function(BenchmarkId::new("sessionkit", p.label), |b| {
            b.iter(|| codec.encode(std::hint::black_box(&claims)).expect("encode"))
        });
        g.bench_function(BenchmarkId::new("raw", p.label), |b| {
            b.iter(|| {
                jsonwebtoken::encode(&header, std::hint::black_box(&raw), &enc).expect("encode")
            })
        });
        g.finish();

        let mut g = c.benchmark_group("jwt/verify");
        g.bench_function(BenchmarkId::new("sessionkit", p.label), |b| {
            b.iter(|| {
                codec
                    .decode(std::hint::black_box(&sk_token))
                    .expect("verify")
            })
        });
        g.bench_function(BenchmarkId::new("raw", p.label), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<RawClaims>(
                    std::hint::black_box(&sk_token),
                    &dec,
                    &validation,
                )
                .expect("verify")
            })
        });
        g.finish();

        // Verify + revocation check (jti and the subject's not-before,
        // answered by the cache) vs raw verify alone.
        rt.block_on(revocations.check(&claims))
            .expect("not revoked");
        let mut g = c.benchmark_group("jwt/verify_revocation");
        g.bench_function(BenchmarkId::new("sessionkit", p.label), |b| {
            b.to_async(&rt).iter(|| async {
                let claims = codec
                    .decode(std::hint::black_box(&sk_token))
                    .expect("verify");
                revocations.check(&claims).await.expect("not revoked");
                claims
            })
        });
        g.bench_function(BenchmarkId::new("raw", p.label), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<RawClaims>(
                    std::hint::black_box(&sk_token),
                    &dec,
                    &validation,
                )
                .expect("verify")
            })
        });
        g.finish();
    }
}

/// Hybrid sessions: verifying an access token (`HybridManager::verify`:
/// JWT verify plus the revocation check, answered by the cache) beside raw
/// jsonwebtoken verify of the same token; and a refresh (family load,
/// revocation check, compare-and-swap save, signing the new access token)
/// beside a raw store round trip (load + save) on the same `MemoryStore`.
fn hybrid(c: &mut Criterion) {
    #[derive(Serialize, Deserialize)]
    struct Profile {
        name: String,
        roles: Vec<String>,
    }
    let rt = common::runtime();
    let codec = JwtCodec::builder(
        KeyRing::new(Key::secret("k1", Algorithm::HS256, SECRET).expect("key")).expect("ring"),
    )
    .issuer(ISSUER)
    .audience(AUDIENCE)
    .leeway(Duration::from_secs(30))
    .build()
    .expect("codec");
    let revocations = RevocationList::new(Arc::new(
        CachedStore::builder(MemoryStore::new())
            .max_staleness(Duration::from_secs(600))
            .build()
            .expect("cached store"),
    ));
    let families = MemoryStore::new();
    let manager = HybridManager::<Profile>::builder(families.clone(), codec, revocations)
        .secret([9u8; 32])
        .build()
        .expect("hybrid manager");
    let profile = Profile {
        name: "user-42".into(),
        roles: vec!["reader".into(), "writer".into()],
    };
    let label = "profile";
    let pair = rt
        .block_on(manager.login("user-42", &profile))
        .expect("login");
    let access = pair.access_token().to_owned();
    eprintln!(
        "hybrid: access token {} bytes, refresh token {} bytes",
        access.len(),
        pair.refresh_token().len()
    );
    let dec = DecodingKey::from_secret(SECRET);
    let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.leeway = 30;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<RawClaims>(&access, &dec, &validation)
        .expect("raw reads the access token");

    let mut g = c.benchmark_group("jwt/hybrid_verify");
    g.bench_function(BenchmarkId::new("sessionkit", label), |b| {
        b.to_async(&rt).iter(|| async {
            manager
                .verify(std::hint::black_box(&access))
                .await
                .expect("verify")
        })
    });
    g.bench_function(BenchmarkId::new("raw", label), |b| {
        b.iter(|| {
            jsonwebtoken::decode::<RawClaims>(std::hint::black_box(&access), &dec, &validation)
                .expect("verify")
        })
    });
    g.finish();

    // Each refresh consumes the token it presents: iterate on the chain.
    let current = std::sync::Mutex::new(pair.refresh_token().to_owned());
    let record = {
        let now = Timestamp::now();
        sessionkit::Record::new(
            SessionId::generate(),
            Some("user-42".into()),
            serde_json::to_vec(&profile).expect("json"),
            now,
            now + Duration::from_secs(24 * 3600),
        )
    };
    rt.block_on(families.create(&record)).expect("create");
    let mut g = c.benchmark_group("jwt/hybrid_refresh");
    g.bench_function(BenchmarkId::new("sessionkit", label), |b| {
        b.to_async(&rt).iter(|| async {
            let token = current.lock().expect("lock").clone();
            let next = manager.refresh(&token).await.expect("refresh");
            *current.lock().expect("lock") = next.refresh_token().to_owned();
        })
    });
    g.bench_function(BenchmarkId::new("raw", label), |b| {
        b.to_async(&rt).iter(|| async {
            let mut loaded = families
                .load(std::hint::black_box(&record.id))
                .await
                .expect("load")
                .expect("live");
            loaded.version = families.save(&loaded).await.expect("save");
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = jwt, hybrid
}
criterion_main!(benches);
