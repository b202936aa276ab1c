//! Writes the small seed corpora in `fuzz/seeds/<target>/` from real
//! encodings, so the fuzzer starts from valid inputs of every shape.
//! Run from `fuzz/`: `cargo run --example make_seeds`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;
use sessionkit_core::{
    Bag, Envelope, Invalidation, InvalidationMessage, PayloadCodec, SessionId, Timestamp,
    TokenClaims, TokenCodec,
};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};

#[derive(Serialize)]
enum Theme {
    Dark,
    Custom { accent: u32 },
}

#[derive(Serialize)]
struct CartLine {
    sku: String,
    qty: u16,
    price_cents: i64,
}

#[derive(Serialize)]
struct AppSession {
    user_id: u64,
    name: String,
    roles: Vec<String>,
    csrf: [u8; 16],
    cart: Vec<CartLine>,
    prefs: BTreeMap<String, String>,
    theme: Option<Theme>,
    mfa: bool,
    last_seen: i64,
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let id = SessionId::from_bytes(*b"0123456789abcdef");
    write("session_id", "valid", id.as_str().as_bytes());
    write(
        "session_id",
        "zeros",
        SessionId::from_bytes([0; 16]).as_str().as_bytes(),
    );
    write(
        "session_id",
        "ones",
        SessionId::from_bytes([0xff; 16]).as_str().as_bytes(),
    );
    write("session_id", "padded", b"MDEyMzQ1Njc4OWFiY2RlZg==");
    write("session_id", "noncanonical", b"MDEyMzQ1Njc4OWFiY2RlZh");

    for (name, target) in [
        ("id", Invalidation::Id(id)),
        ("subject", Invalidation::Subject("user:42".into())),
    ] {
        let msg = InvalidationMessage {
            origin: 0x0102_0304_0506_0708,
            target,
        };
        write("invalidation", name, &msg.encode());
    }

    let mut prefs = BTreeMap::new();
    prefs.insert("lang".to_string(), "fr".to_string());
    let app = AppSession {
        user_id: 42,
        name: "Zoë".into(),
        roles: vec!["admin".into(), "user".into()],
        csrf: *b"fedcba9876543210",
        cart: vec![CartLine {
            sku: "A-1".into(),
            qty: 3,
            price_cents: -150,
        }],
        prefs,
        theme: Some(Theme::Custom { accent: 0xff00ff }),
        mfa: true,
        last_seen: 1_700_000_000_000,
    };
    let mut bag = Bag::new();
    bag.insert("user", &42u64).unwrap();
    bag.insert("flash", "saved").unwrap();
    let _ = Theme::Dark;
    for codec in [
        PayloadCodec::Bincode,
        PayloadCodec::Postcard,
        PayloadCodec::Json,
    ] {
        let name = format!("{codec:?}").to_lowercase();
        let body = codec.encode(&app).unwrap();
        write(
            "payload",
            &format!("env_app_{name}"),
            &Envelope::write(codec, 2, &body),
        );
        let mut raw = vec![codec.id() - 1];
        raw.extend_from_slice(&body);
        write("payload", &format!("raw_app_{name}"), &raw);
        let body = codec.encode(&bag).unwrap();
        write(
            "payload",
            &format!("env_bag_{name}"),
            &Envelope::write(codec, 1, &body),
        );
    }

    // jwt_decode: mode byte, then a token / a claims object / a header.
    const NOW: i64 = 1_700_000_000;
    let ring = KeyRing::new(Key::secret("k1", Algorithm::HS256, &[7u8; 32]).unwrap()).unwrap();
    let jwt = JwtCodec::builder(ring)
        .issuer("https://auth.example")
        .audience("shop")
        .clock(|| Timestamp::from_secs(NOW))
        .build()
        .unwrap();
    let claims = TokenClaims {
        jti: id,
        subject: Some("user-7".into()),
        issued_at: Timestamp::from_secs(NOW - 5),
        expires_at: Timestamp::from_secs(NOW + 900),
        not_before: Some(Timestamp::from_secs(NOW - 10)),
        session_started_at: Timestamp::from_secs(NOW - 60),
        schema: 3,
        data: serde_json::json!({"cart": [1, 2], "flag": true, "name": "x"}),
    };
    let token = jwt.encode(&claims).unwrap();
    let mut seed = vec![0u8];
    seed.extend_from_slice(token.as_bytes());
    write("jwt_decode", "token", &seed);
    let claims_json = jwt.decode_json(&token).unwrap();
    let mut seed = vec![1u8];
    seed.extend_from_slice(&serde_json::to_vec(&claims_json).unwrap());
    write("jwt_decode", "claims", &seed);
    for (name, header) in [
        ("header", &br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#[..]),
        ("header_none", br#"{"alg":"none","kid":"k1"}"#),
        ("header_ec", br#"{"alg":"ES256","kid":"ec"}"#),
        ("header_crit", br#"{"alg":"HS256","kid":"k1","crit":["x"]}"#),
    ] {
        let mut seed = vec![2u8];
        seed.extend_from_slice(header);
        write("jwt_decode", name, &seed);
    }

    // redis_record: stored values with and without a subject.
    for (name, subject) in [("with_subject", Some("user:42")), ("anonymous", None)] {
        let record = sessionkit_core::Record {
            id,
            subject: subject.map(str::to_owned),
            payload: bytes::Bytes::from(Envelope::write(PayloadCodec::Json, 1, b"{\"a\":1}")),
            version: 7,
            created_at: Timestamp::from_secs(NOW - 60),
            expires_at: Timestamp::from_secs(NOW + 900),
        };
        let value = sessionkit_redis::__fuzz::encode_record(&record, 7).unwrap();
        write("redis_record", name, &value);
    }
}
