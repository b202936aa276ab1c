//! JWT token codec for sessionkit's stateless sessions.
//!
//! [`JwtCodec`] implements [`sessionkit_core::TokenCodec`] over
//! [jsonwebtoken] 11: a `SessionManager` built with
//! `SessionManager::stateless(codec, revocations)` hands out signed tokens
//! instead of session IDs, and nothing but the small revocation list needs
//! a server-side store.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> sessionkit_core::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sessionkit_core::{RevocationList, SessionManager, testing::VecStore};
//! use sessionkit_jwt::{Algorithm, JwtCodec, Key, KeyRing};
//!
//! // Load keys from configuration; never generate them at start-up.
//! let secret = [0x42u8; 32]; // e.g. from a secrets manager
//! let codec = Arc::new(
//!     JwtCodec::builder(KeyRing::new(Key::secret("2026-11", Algorithm::HS256, &secret)?)?)
//!         .issuer("https://shop.example")
//!         .audience("shop")
//!         .leeway(Duration::from_secs(30))
//!         .build()?,
//! );
//! let manager = SessionManager::<Vec<String>>::stateless(
//!     Arc::clone(&codec),
//!     RevocationList::new(VecStore::default()), // any SessionStore
//! )
//! .build()?;
//!
//! let session = manager.create(Some("alice"), vec!["apple".into()]).await?;
//! let token = session.ticket().as_str().to_owned(); // a JWT, for the cookie
//! assert_eq!(manager.load(&token).await?.unwrap().data(), &["apple"]);
//!
//! manager.destroy(&token).await?; // logout: the jti is revoked
//! assert!(manager.load(&token).await.is_err());
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! ## What a token carries
//!
//! | claim | meaning |
//! |---|---|
//! | `jti` | the session's token ID, a [`SessionId`](sessionkit_core::SessionId) (anything else is `Malformed`) |
//! | `sub` | the subject, if the session has one |
//! | `iss`, `aud` | the codec's issuer and audience, when configured |
//! | `iat` | issued at, whole seconds (RFC 7519 NumericDate, for other JWT tools) |
//! | `ims` | private: the milliseconds of the issue instant (0–999), omitted when 0 |
//! | `exp` | expiry, whole seconds, rounded down (a token never outlives what was asked) |
//! | `nbf` | not before, whole seconds, when set |
//! | `sst` | private: session start, milliseconds since the epoch (bounds the absolute timeout across re-issued tokens) |
//! | `sch` | private: schema version of `dat` |
//! | `dat` | private: the application's session data as JSON, omitted when `null` |
//!
//! The issue instant is `iat * 1000 + ims` milliseconds. Keeping `iat`
//! standard and adding only the sub-second part means the two can never
//! disagree, and "log out everywhere", which compares the issue instant
//! with a per-subject millisecond instant, is exact. Private claim names
//! are short because every byte is sent with every request.
//!
//! The header is `{"alg":…,"kid":…,"typ":"JWT"}`.
//!
//! ## How a token is verified (RFC 8725 practices)
//!
//! In this order, each failure reported as
//! [`Error::InvalidToken`](sessionkit_core::Error::InvalidToken) with its
//! [`TokenRejection`](sessionkit_core::TokenRejection):
//!
//! 1. **Size** (default 8 KiB): longer tokens are `TooLarge` before a single
//!    byte is decoded.
//! 2. **Structure**: three base64url segments; the header is a JSON object
//!    with a string `alg` — else `Malformed`. A `crit` header is refused
//!    (`Malformed`): no extension is understood (RFC 7515 §4.1.11).
//! 3. **`alg: none`** in any spelling: `Algorithm`, always (RFC 8725 §3.1).
//! 4. **Key by `kid`**: the `kid` must name a key of the ring, else
//!    `UnknownKey`. A token without `kid` is `UnknownKey` too, unless
//!    [`allow_missing_kid`](JwtCodecBuilder::allow_missing_kid) is set *and*
//!    the ring holds exactly one key. Header fields that point at keys
//!    elsewhere (`jku`, `x5u`, `jwk`) are ignored: keys come only from the
//!    ring (RFC 8725 §3.10).
//! 5. **Algorithm pinned by the key**: each key has exactly one algorithm,
//!    fixed when it is loaded; a header naming any other (an RSA key's `kid`
//!    with `HS256`, the classic confusion attack, or `HS512` for an `HS256`
//!    secret) is `Algorithm`. The token never chooses the algorithm.
//! 6. **Signature** over the received header and payload bytes: `Signature`.
//!    The payload is parsed only after this.
//! 7. **Claims**: `exp` required (`MissingClaim`), `now < exp + leeway`
//!    (`Expired`), `nbf <= now + leeway` (`NotYetValid`), `iss` equal to the
//!    configured issuer (`Issuer`), `aud` containing the configured audience
//!    (`Audience`; a token with an `aud` is also refused by a codec that has
//!    none, RFC 7519 §4.1.3). A claim of the wrong type is `Malformed`.
//!
//! Keys are checked when loaded (`Error::Config` otherwise): HMAC secrets
//! at least as long as the hash output (32/48/64 bytes, RFC 7518 §3.2), RSA
//! moduli of at least 2048 bits, and a private key must verify its own
//! probe signature with the public key derived from it. `Debug` never shows
//! key material.
//!
//! Supported algorithms: `HS256`, `HS384`, `HS512`, `RS256`, `PS256`,
//! `ES256` and `EdDSA` (Ed25519) are tested, including against the RFC 7515
//! Appendix A.1/A.3 and RFC 8037 Appendix A.4 examples; `RS384`, `RS512`,
//! `PS384`, `PS512` and `ES384` work the same way.
//!
//! ## Keys and rotation
//!
//! A [`KeyRing`] holds one active signing key and any number of
//! verification keys; every token names its key in `kid`. Keys come from
//! configuration ([`Key::secret`], [`Key::private_pem`],
//! [`Key::private_der`], [`Key::public_pem`], [`Key::public_der`],
//! [`Key::from_public_jwk`]); nothing is generated at run time.
//!
//! To rotate without logging anyone out: add the next key (with asymmetric
//! keys, publish [`JwtCodec::jwks`] so that other verifiers learn it), make
//! it active ([`JwtCodec::activate`], or [`JwtCodec::rotate`] for both
//! steps), and once the longest token lifetime plus leeway has passed,
//! drop the old key with [`JwtCodec::remove_key`]. Until then tokens it
//! signed keep verifying; afterwards they are `UnknownKey`. The codec swaps
//! its ring atomically, so this works while requests are being served.
//!
//! [`KeyRing::jwks`] exports the public keys as a JWK set (`kid`, `alg`,
//! `use: "sig"`) that plain jsonwebtoken or any JOSE library can use. HMAC
//! secrets are never exported.
//!
//! ## Crypto backend
//!
//! Two cargo features choose jsonwebtoken's cryptography: `rust_crypto`
//! (default; pure Rust, nothing but `cargo` needed to build) and
//! `aws_lc_rs` (opt-in; faster, builds aws-lc with a C compiler). Exactly
//! one is used, [`CryptoBackend::selected`]: aws-lc-rs whenever its feature
//! is on, so a build where Cargo unified both (`cargo test --all-features`
//! does) behaves deterministically.
//!
//! jsonwebtoken itself panics at the first signature when both or neither
//! feature is on, unless a process-wide `CryptoProvider` was installed.
//! sessionkit-jwt never relies on that process default: it calls the
//! selected provider's signer and verifier factories directly. It also
//! installs the selected provider as the process default when the first key
//! is built, *if none is installed yet*, so other jsonwebtoken users in the
//! same program do not panic either; a provider the application installed
//! earlier stays in place. A build with neither feature does not compile.
//!
//! ## Revocation
//!
//! A JWT is valid until it expires wherever it is presented; ending one
//! early needs server-side memory. That lives in core's
//! [`RevocationList`](sessionkit_core::RevocationList), over any store, and
//! the `SessionManager` consults it after [`TokenCodec::decode`]:
//! `destroy` revokes one `jti` until the last instant a token of that
//! session could be valid (plus [`TokenCodec::leeway`]), and
//! `destroy_subject` sets a per-subject not-before instant that rejects
//! every token issued earlier (`IssuedBeforeLogout`). Key rotation is not a
//! revocation tool: dropping a key invalidates every token it signed.
//!
//! ## Token size
//!
//! The whole session travels with every request, base64url-encoded (4/3 of
//! the JSON). Measured by `tests/token_size.rs` (subject of 8 bytes, no
//! `iss`/`aud`; add their JSON length × 4/3 if configured):
//!
//! | session data (JSON bytes) | HS256 | ES256 | EdDSA | RS256 (2048) |
//! |---:|---:|---:|---:|---:|
//! | 0 | 258 | 301 | 301 | 557 |
//! | 64 | 352 | 395 | 395 | 651 |
//! | 256 | 608 | 651 | 651 | 907 |
//! | 512 | 950 | 993 | 993 | 1249 |
//! | 1024 | 1632 | 1675 | 1675 | 1931 |
//! | 2048 | 2998 | 3041 | 3041 | 3297 |
//! | 4096 | 5728 | 5771 | 5771 | 6027 |
//!
//! Browsers keep a cookie up to about 4 KiB, so a token in a cookie holds at
//! most about 2.8 KB of session data with HS256; a bearer token under the
//! default 8 KiB limit about 5.9 KB. Encoding a larger token fails with
//! [`Error::TooLarge`](sessionkit_core::Error::TooLarge) before anything is
//! sent. Sessions that outgrow this belong in a stateful store.
//!
//! [jsonwebtoken]: https://docs.rs/jsonwebtoken/11
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod codec;
mod key;

pub use backend::CryptoBackend;
pub use codec::{Clock, DEFAULT_MAX_TOKEN_SIZE, JwtCodec, JwtCodecBuilder};
pub use key::{Key, KeyRing, MAX_KID_LEN};

/// The signature algorithms (re-exported from jsonwebtoken).
pub use jsonwebtoken::Algorithm;
/// JWK types (re-exported from jsonwebtoken), for [`KeyRing::jwks`] and
/// [`Key::public_jwk`].
pub use jsonwebtoken::jwk::{Jwk, JwkSet};

// For intra-doc links.
#[allow(unused_imports)]
use sessionkit_core::TokenCodec;
