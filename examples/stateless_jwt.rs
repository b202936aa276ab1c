//! Stateless sessions as JWTs: issue, verify, rotate the signing key,
//! revoke one token, log a user out everywhere.
//!
//! ```text
//! cargo run -p sessionkit-examples --example stateless_jwt
//! ```
//!
//! Keys come from configuration, never from the code: this example reads
//! an HMAC secret from `SESSIONKIT_JWT_SECRET` (at least 32 bytes; a shorter
//! one is refused). Without it, it signs with a random key made for this run
//! only (it issues and verifies its own tokens, which die with the process),
//! and says so on stderr. Its second key is a PEM file of the test fixtures:
//! a published key, fine for showing key rotation here, never for signing
//! real sessions.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::jwt::{Algorithm, JwtCodec, Key, KeyRing};
use sessionkit::memory::MemoryStore;
use sessionkit::{Error, RevocationList, SessionId, SessionManager, Timestamp, TokenRejection};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

/// Only a prefix: a token is a bearer credential.
fn short(token: &str) -> String {
    format!("{}… ({} bytes)", &token[..token.len().min(16)], token.len())
}

/// Waits (bounded) until the clock is past `t`, so that a logout instant
/// taken afterwards is strictly later than tokens issued at `t`.
async fn clock_past(t: Timestamp) {
    for _ in 0..1000 {
        if Timestamp::now() > t {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The first signing key: HS256 with a secret from the environment.
    let secret = match std::env::var("SESSIONKIT_JWT_SECRET") {
        Ok(text) if text.len() >= 32 => text.into_bytes(),
        Ok(_) | Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!(
                "error: refusing to start: SESSIONKIT_JWT_SECRET must be at least 32 bytes \
                 of UTF-8"
            );
            std::process::exit(2);
        }
        Err(std::env::VarError::NotPresent) => {
            eprintln!(
                "note: SESSIONKIT_JWT_SECRET is not set; signing with a random key made for \
                 this run only"
            );
            // 2 x 128 bits from the operating system's CSPRNG.
            let mut key = SessionId::try_generate()?.to_bytes().to_vec();
            key.extend_from_slice(&SessionId::try_generate()?.to_bytes());
            key
        }
    };
    let codec = Arc::new(
        JwtCodec::builder(KeyRing::new(Key::secret(
            "2026-11",
            Algorithm::HS256,
            &secret,
        )?)?)
        .issuer("https://shop.example")
        .audience("shop")
        .leeway(Duration::from_secs(30))
        .build()?,
    );
    // Revoked token IDs and logout-everywhere markers live in any store.
    let revocations = RevocationList::new(MemoryStore::new());
    let sessions = SessionManager::<Cart>::stateless(Arc::clone(&codec), revocations)
        .idle_timeout(Duration::from_secs(30 * 60))
        .absolute_timeout(Duration::from_secs(8 * 60 * 60))
        .build()?;
    println!(
        "crypto backend: {:?}; signing key: {}",
        sessionkit::jwt::CryptoBackend::selected(),
        codec.active_kid()
    );

    // 1. Issue: the ticket is a signed JWT carrying the session.
    let mut session = sessions
        .create(
            Some("alice"),
            Cart {
                items: vec!["apple".into()],
            },
        )
        .await?;
    let token = session.ticket().as_str().to_owned();
    println!("1. issued a token for alice: {}", short(&token));

    // 2. Verify: signature, algorithm, expiry, issuer, audience, revocation.
    let loaded = sessions.load(&token).await?.ok_or("token did not verify")?;
    println!(
        "2. verified: subject {:?}, cart {:?}",
        loaded.subject(),
        loaded.data().items
    );
    session.data_mut().items.push("pear".into());
    sessions.save(&mut session).await?; // stateless: re-issues the token
    let resaved = session.ticket().as_str().to_owned();
    println!("   saved a change: new token {}", short(&resaved));

    // 3. Rotate the signing key: new tokens use an Ed25519 key; tokens of the
    //    old key still verify while it is kept in the ring.
    let pem = include_bytes!("../crates/sessionkit-jwt/tests/keys/ed_private.pem");
    codec.rotate(Key::private_pem("2026-12", Algorithm::EdDSA, pem)?)?;
    let fresh = sessions
        .create(Some("alice"), Cart::default())
        .await?
        .ticket()
        .as_str()
        .to_owned();
    println!(
        "3. rotated to key {}: new token {}",
        codec.active_kid(),
        short(&fresh)
    );
    assert!(sessions.load(&resaved).await?.is_some());
    println!("   a token of the previous key still verifies");
    println!("   public keys for other services: {}", codec.jwks_json());
    codec.remove_key("2026-11")?;
    match sessions.load(&resaved).await {
        Err(Error::InvalidToken(TokenRejection::UnknownKey)) => {
            println!("   after dropping key 2026-11 its tokens are rejected (unknown kid)")
        }
        other => return Err(format!("expected UnknownKey, got {other:?}").into()),
    }

    // 4. Revoke one token (logout on this device).
    sessions.destroy(&fresh).await?;
    match sessions.load(&fresh).await {
        Err(Error::Revoked) => println!("4. revoked a token: it is now rejected"),
        other => return Err(format!("expected Revoked, got {other:?}").into()),
    }

    // 5. Log bob out everywhere: every token of his issued until now dies.
    let laptop = sessions.create(Some("bob"), Cart::default()).await?;
    let phone = sessions.create(Some("bob"), Cart::default()).await?;
    clock_past(Timestamp::now()).await;
    sessions.destroy_subject("bob").await?;
    for device in [&laptop, &phone] {
        match sessions.load(device.ticket().as_str()).await {
            Err(Error::InvalidToken(TokenRejection::IssuedBeforeLogout)) => {}
            other => return Err(format!("expected IssuedBeforeLogout, got {other:?}").into()),
        }
    }
    println!("5. logged bob out everywhere: both of his tokens are rejected");
    clock_past(Timestamp::now()).await;
    let again = sessions.create(Some("bob"), Cart::default()).await?;
    assert!(sessions.load(again.ticket().as_str()).await?.is_some());
    println!("   a new login after that works");

    println!("done");
    Ok(())
}
