//! Interoperability with another PASETO implementation: the Python
//! library pyseto (`pip install pyseto`).
//!
//! - a token made by `PasetoCodec` is decrypted by pyseto (same key, same
//!   implicit assertion), which validates its `exp` and reads its claims
//!   and its `{"kid": …}` footer;
//! - a token made by pyseto with sessionkit's claim names (its own
//!   DateTime spelling: `+00:00` offsets, microseconds) is accepted by
//!   `PasetoCodec`;
//! - both compute the same PASERK local ID for the key.
//!
//! Data goes to a small inline Python script on stdin and comes back on
//! stdout; nothing touches the network. Without python3 or pyseto the
//! test is skipped (a failure under `SESSIONKIT_REQUIRE_SERVICES=1`).

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sessionkit_core::{SessionId, Timestamp, TokenCodec};
use sessionkit_paseto::{Key, KeyRing, PasetoCodec};

const IMPLICIT: &str = "shop-sessions/interop";

const SCRIPT: &str = r#"
import json, sys
from datetime import datetime, timedelta, timezone
import pyseto
from pyseto import Key

inp = json.load(sys.stdin)
key = Key.new(version=4, purpose="local", key=bytes.fromhex(inp["key"]))
ia = inp["implicit"].encode()
out = {"lid": key.to_paserk_id()}

# Decrypt the token made by sessionkit; pyseto checks exp itself.
t = pyseto.decode(key, inp["token"], implicit_assertion=ia, deserializer=json)
out["payload"] = t.payload
out["footer"] = t.footer

# Make a token with sessionkit's claim names, the way pyseto writes dates.
now = datetime.now(tz=timezone.utc) - timedelta(seconds=1)
claims = {
    "jti": inp["jti"],
    "sub": "py-user",
    "iss": inp["iss"],
    "aud": inp["aud"],
    "iat": now.isoformat(timespec="microseconds"),
    "exp": (now + timedelta(minutes=15)).replace(microsecond=0).isoformat(),
    "sst": int(now.timestamp() * 1000) - 60000,
    "sch": 2,
    "dat": {"from": "python", "n": [1, 2, 3]},
}
token = pyseto.encode(key, claims, footer={"kid": inp["kid"]}, implicit_assertion=ia, serializer=json)
out["token"] = token.decode()
out["claims"] = claims
print(json.dumps(out))
"#;

/// Runs `SCRIPT` with `input` on stdin; `None` when pyseto is unavailable
/// (the test is then skipped).
fn pyseto(input: &Value) -> Option<Value> {
    match Command::new("python3")
        .args(["-c", "import pyseto"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return sessionkit_testkit::skip(
                "pyseto (pip install pyseto)",
                String::from_utf8_lossy(&out.stderr).trim(),
            );
        }
        Err(e) => return sessionkit_testkit::skip("pyseto (pip install pyseto)", e),
    }
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(input).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the pyseto script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON from the pyseto script"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn pyseto_reads_our_tokens_and_we_read_pysetos() {
    let secret: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let kid = "2026-11";
    let codec = PasetoCodec::builder(KeyRing::new(Key::new(kid, &secret).unwrap()))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .implicit_assertion(IMPLICIT.as_bytes())
        .leeway(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut ours = claims();
    ours.issued_at = Timestamp::from_millis(Timestamp::now().as_millis() - 1500);
    ours.not_before = Some(Timestamp::from_secs(ours.issued_at.as_secs()));
    let token = codec.encode(&ours).unwrap();
    let python_jti = SessionId::generate();

    let Some(out) = pyseto(&json!({
        "key": hex(&secret),
        "implicit": IMPLICIT,
        "token": token,
        "jti": python_jti.as_str(),
        "kid": kid,
        "iss": ISSUER,
        "aud": AUDIENCE,
    })) else {
        return;
    };

    // pyseto decrypted our token and read every claim.
    assert_eq!(out["footer"], json!({ "kid": kid }));
    let p = &out["payload"];
    assert_eq!(p["jti"], ours.jti.as_str());
    assert_eq!(p["sub"], "user-42");
    assert_eq!(p["iss"], ISSUER);
    assert_eq!(p["aud"], AUDIENCE);
    assert_eq!(p["sch"], 3);
    assert_eq!(p["dat"], ours.data);
    assert_eq!(p["sst"], ours.session_started_at.as_millis());
    assert!(p["iat"].as_str().unwrap().ends_with('Z'));
    assert!(p["exp"].as_str().is_some() && p["nbf"].as_str().is_some());

    // Both implementations derive the same PASERK ID from the key.
    assert_eq!(
        out["lid"].as_str().unwrap(),
        Key::new(kid, &secret).unwrap().paserk_id()
    );

    // We accept pyseto's token and read its claims exactly.
    let theirs = out["token"].as_str().unwrap();
    assert!(theirs.starts_with("v4.local."));
    let sent = &out["claims"];
    assert!(sent["iat"].as_str().unwrap().ends_with("+00:00"));
    let decoded = codec
        .decode(theirs)
        .expect("PasetoCodec accepts pyseto's token");
    assert_eq!(decoded.jti, python_jti);
    assert_eq!(decoded.subject.as_deref(), Some("py-user"));
    assert_eq!(decoded.schema, 2);
    assert_eq!(decoded.data, json!({ "from": "python", "n": [1, 2, 3] }));
    assert_eq!(
        decoded.session_started_at.as_millis(),
        sent["sst"].as_i64().unwrap()
    );
    let iat_ms = {
        let text = sent["iat"].as_str().unwrap();
        let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap();
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    };
    assert_eq!(
        decoded.issued_at.as_millis(),
        iat_ms,
        "microseconds truncated to ms"
    );
    assert_eq!(
        decoded.expires_at.as_secs() - decoded.issued_at.as_secs(),
        15 * 60
    );

    // Without the implicit assertion their token does not open here.
    let unbound = PasetoCodec::builder(KeyRing::new(Key::new(kid, &secret).unwrap()))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    assert_rejected(
        unbound.decode(theirs),
        sessionkit_core::TokenRejection::Signature,
    );
}
