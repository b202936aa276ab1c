//! Shared by the manager tests.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use sessionkit_core::{Error, SessionId, Timestamp, TokenClaims, TokenCodec, TokenRejection};

/// An unsigned test codec: enough to exercise the manager's stateless path
/// (the real one is `sessionkit-jwt`).
pub(crate) struct PlainCodec;

#[derive(Serialize, Deserialize)]
struct Wire {
    jti: SessionId,
    sub: Option<String>,
    iat: i64,
    exp: i64,
    started: i64,
    schema: u32,
    data: serde_json::Value,
}

impl TokenCodec for PlainCodec {
    fn encode(&self, c: &TokenClaims) -> sessionkit_core::Result<String> {
        serde_json::to_string(&Wire {
            jti: c.jti,
            sub: c.subject.clone(),
            iat: c.issued_at.as_millis(),
            exp: c.expires_at.as_millis(),
            started: c.session_started_at.as_millis(),
            schema: c.schema,
            data: c.data.clone(),
        })
        .map_err(Error::encode)
    }
    fn decode(&self, token: &str) -> sessionkit_core::Result<TokenClaims> {
        let w: Wire = serde_json::from_str(token)
            .map_err(|_| Error::InvalidToken(TokenRejection::Malformed))?;
        if w.exp <= Timestamp::now().as_millis() {
            return Err(Error::InvalidToken(TokenRejection::Expired));
        }
        Ok(TokenClaims {
            jti: w.jti,
            subject: w.sub,
            issued_at: Timestamp::from_millis(w.iat),
            expires_at: Timestamp::from_millis(w.exp),
            not_before: None,
            session_started_at: Timestamp::from_millis(w.started),
            schema: w.schema,
            data: w.data,
        })
    }
}
