//! Token size against session data size, measured. The table in the crate
//! documentation (src/lib.rs) is checked against these numbers, so it
//! cannot drift from the implementation.

mod common;

use std::time::Duration;

use common::*;
use sessionkit_core::{SessionId, Timestamp, TokenClaims, TokenCodec};
use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};

/// Session data whose JSON serialization is exactly `size` bytes
/// (`{"d":"xxx…"}`; `null` for 0, which is not written at all).
fn data_of(size: usize) -> serde_json::Value {
    if size == 0 {
        return serde_json::Value::Null;
    }
    let value = serde_json::json!({ "d": "x".repeat(size - 8) });
    assert_eq!(serde_json::to_vec(&value).unwrap().len(), size);
    value
}

fn claims_with(size: usize) -> TokenClaims {
    // Fixed instants of this decade (10-digit seconds, non-zero ms) and a
    // fixed jti: sizes are then exactly reproducible.
    let issued = Timestamp::from_millis(1_795_000_000_123);
    TokenClaims {
        jti: SessionId::from_bytes([7; 16]),
        subject: Some("user-042".into()),
        issued_at: issued,
        expires_at: issued + Duration::from_secs(1800),
        not_before: None,
        session_started_at: issued,
        schema: 1,
        data: data_of(size),
    }
}

const SIZES: [usize; 7] = [0, 64, 256, 512, 1024, 2048, 4096];

fn codecs() -> Vec<(&'static str, JwtCodec)> {
    let keys = [
        (
            "HS256",
            Key::secret("k1", Algorithm::HS256, &SECRET_1).unwrap(),
        ),
        (
            "ES256",
            Key::private_pem("k1", Algorithm::ES256, EC_PRIVATE).unwrap(),
        ),
        (
            "EdDSA",
            Key::private_pem("k1", Algorithm::EdDSA, ED_PRIVATE).unwrap(),
        ),
        (
            "RS256 (2048)",
            Key::private_pem("k1", Algorithm::RS256, RSA_PRIVATE).unwrap(),
        ),
    ];
    keys.into_iter()
        .map(|(name, key)| {
            let codec = JwtCodec::builder(KeyRing::new(key).unwrap())
                .max_token_size(64 * 1024)
                .build()
                .unwrap();
            (name, codec)
        })
        .collect()
}

#[test]
fn token_size_table_matches_the_docs() {
    let codecs = codecs();
    let mut table = String::from("| session data (JSON bytes) |");
    for (name, _) in &codecs {
        table.push_str(&format!(" {name} |"));
    }
    table.push('\n');
    table.push_str("|---:|");
    for _ in &codecs {
        table.push_str("---:|");
    }
    table.push('\n');
    for size in SIZES {
        let mut row = format!("| {size} |");
        for (_, codec) in &codecs {
            let token = codec.encode(&claims_with(size)).unwrap();
            row.push_str(&format!(" {} |", token.len()));
        }
        table.push_str(&row);
        table.push('\n');
    }
    println!("{table}");
    let docs = include_str!("../src/lib.rs");
    for line in table.lines() {
        let doc_line = format!("//! {line}");
        assert!(
            docs.contains(&doc_line),
            "the crate docs lack the measured row\n{doc_line}\n(full table:\n{table})"
        );
    }
}
