//! Token size against session data size, measured. The rows of the table
//! in the crate documentation (src/lib.rs) are checked against these
//! numbers, so it cannot drift from the implementation.

mod common;

use std::time::Duration;

use common::*;
use sessionkit_core::{SessionId, Timestamp, TokenClaims, TokenCodec};
use sessionkit_paseto::{KeyRing, PasetoCodec};

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
    // Fixed instants (non-zero ms) and a fixed jti, as in sessionkit-jwt's
    // measurement: sizes are then exactly reproducible and comparable.
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

#[test]
fn token_size_table_matches_the_docs() {
    let codec = PasetoCodec::builder(KeyRing::new(key("k1", &KEY_1)))
        .max_token_size(64 * 1024)
        .build()
        .unwrap();
    let docs = include_str!("../src/lib.rs");
    let mut rows = String::new();
    for size in SIZES {
        let token = codec.encode(&claims_with(size)).unwrap();
        // The first two columns: data size, v4.local token size.
        rows.push_str(&format!("//! | {size} | {} |\n", token.len()));
    }
    println!("{rows}");
    for row in rows.lines() {
        assert!(
            docs.lines().any(|line| line.starts_with(row)),
            "the crate docs lack the measured row\n{row}\n(all rows:\n{rows})"
        );
    }
}
