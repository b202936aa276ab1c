//! Encrypted stateless session tokens for sessionkit: PASETO v4.local.
//!
//! [`PasetoCodec`] implements [`sessionkit_core::TokenCodec`] with
//! [PASETO] version 4, purpose `local` (through the [pasetors] crate): a
//! `SessionManager` built with `SessionManager::stateless(codec,
//! revocations)` hands out tokens whose claims and session data are
//! **encrypted**, not merely signed. The stateless manager, its
//! [`RevocationList`](sessionkit_core::RevocationList) and the axum layer
//! work with it exactly as with `sessionkit-jwt`'s `JwtCodec`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> sessionkit_core::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sessionkit_core::{RevocationList, SessionManager, testing::VecStore};
//! use sessionkit_paseto::{Key, KeyRing, PasetoCodec};
//!
//! // Load keys from configuration; never generate them at start-up.
//! let secret = [0x42u8; 32]; // e.g. from a secrets manager
//! let codec = Arc::new(
//!     PasetoCodec::builder(KeyRing::new(Key::new("2026-11", &secret)?))
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
//! let token = session.ticket().as_str().to_owned(); // v4.local.…, for the cookie
//! assert!(!token.contains("alice") && !token.contains("apple"));
//! assert_eq!(manager.load(&token).await?.unwrap().data(), &["apple"]);
//!
//! manager.destroy(&token).await?; // logout: the jti is revoked
//! assert!(manager.load(&token).await.is_err());
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! ## Why an encrypted token, and why PASETO v4.local
//!
//! A JWT (JWS) is signed, not encrypted: its payload is base64url, and
//! every claim and every byte of the session can be read by the client, by
//! browser extensions, and by anything that logs a `Cookie` or
//! `Authorization` header (proxies, APM agents, error trackers). That is
//! fine for a user id and an expiry; it is not for an email address, roles,
//! a cart or internal flags.
//!
//! PASETO v4.local is a standard, versioned format with exactly one
//! algorithm per version: XChaCha20 encryption, then a BLAKE2b-MAC over the
//! header, the 32-byte random nonce, the ciphertext, the footer and the
//! implicit assertion (encrypt-then-MAC, keys split per token from the
//! nonce). There is no algorithm field to negotiate, so none of the JWS
//! pitfalls (`alg: none`, RSA/HMAC confusion) exist. JWE compact was the
//! other standard candidate; it brings back algorithm negotiation (`alg`
//! and `enc` headers chosen by the token). pasetors is the maintained
//! PASETO implementation in Rust and is tested against the official v4
//! test vectors; this crate uses its low-level `version4::LocalToken`
//! (encrypt, authenticate-then-decrypt) and does the claims itself:
//! pasetors' claim validation has no leeway, requires `nbf`, and reports
//! no reason, while sessionkit needs each rejection typed.
//!
//! ## What it protects, and what it does not
//!
//! **Protected.** The claims (`sub`, `jti`, issue and expiry instants,
//! `iss`, `aud`) and the session data are readable only by holders of a
//! key of the ring, i.e. the server. A client, a browser extension, or a
//! log line that captured the `Authorization` header or the cookie sees
//! `v4.local.` and opaque base64url. Any change to the token (header,
//! ciphertext, footer, a truncation) or a token made for another implicit
//! assertion is rejected before anything is decrypted (`Signature`). As
//! with `JwtCodec`, nobody without the key can mint a token.
//!
//! **Not protected.**
//! - *The token is still a bearer credential.* Whoever copies it (from a
//!   log, a proxy, an XSS) can present it until it expires or is revoked;
//!   encryption hides what it says, not that it works. Keep cookies
//!   `HttpOnly`/`Secure`, keep lifetimes short, and revoke on logout.
//! - *Metadata.* The token's length reveals the approximate size of the
//!   session data (nothing is padded); the footer, and thus the key id,
//!   is in clear (so key ids must not mean anything secret); so is the
//!   `v4.local.` header.
//! - *Key compromise.* There is no forward secrecy: whoever obtains a key
//!   can read every token it ever encrypted that they captured, and mint
//!   new ones. Every service that can read the tokens can also forge them
//!   (symmetric keys); if third parties must only *verify*, use JWS
//!   (`sessionkit-jwt`) with an asymmetric key instead.
//! - *The client cannot read its own session.* A front end that wanted to
//!   show, say, the user name from the token must ask the server.
//! - *Revocation* works as for JWT: one `jti` is revoked until the token's
//!   last valid instant, and log-out-everywhere sets a per-subject
//!   not-before instant, both in a server-side
//!   [`RevocationList`](sessionkit_core::RevocationList). Nothing is
//!   stateless about ending a session early.
//!
//! ## What a token carries
//!
//! `v4.local.<base64url(nonce ‖ ciphertext ‖ tag)>.<base64url(footer)>`.
//! The footer is `{"kid":"…"}`, the id of the key that encrypted the token
//! (PASETO's Key-ID support; never the key itself). The encrypted payload
//! is a JSON object:
//!
//! | claim | meaning |
//! |---|---|
//! | `jti` | the session's token ID, a [`SessionId`](sessionkit_core::SessionId) (anything else is `Malformed`) |
//! | `sub` | the subject, if the session has one |
//! | `iss`, `aud` | the codec's issuer and audience (strings), when configured |
//! | `iat` | issued at: PASETO DateTime (RFC 3339), whole seconds, `Z` |
//! | `ims` | private: the milliseconds of the issue instant (0–999), omitted when 0 |
//! | `exp` | expiry, DateTime, whole seconds rounded down (a token never outlives what was asked) |
//! | `nbf` | not before, DateTime, whole seconds, when set |
//! | `sst` | private: session start, milliseconds since the epoch |
//! | `sch` | private: schema version of `dat` |
//! | `dat` | private: the application's session data as JSON, omitted when `null` |
//!
//! The names are those of `JwtCodec`, so both codecs describe a session
//! the same way. Registered claims use PASETO's DateTime strings, so other
//! PASETO libraries validate `exp`/`nbf` natively; the issue instant is
//! `iat` plus `ims` milliseconds, exact to the millisecond for
//! log-out-everywhere. On input, DateTimes may carry any offset
//! (`+00:00`) and fractional seconds (then without `ims`), as other
//! implementations write them; the `T` and `Z` must be uppercase.
//!
//! ## How a token is decoded
//!
//! In this order, each failure reported as
//! [`Error::InvalidToken`](sessionkit_core::Error::InvalidToken) with its
//! [`TokenRejection`](sessionkit_core::TokenRejection); no input panics
//! (tests feed random bytes, every truncation and every bit flip):
//!
//! 1. **Size** (default 8 KiB): longer tokens are `TooLarge` before a single
//!    byte is decoded.
//! 2. **Header**: `v4.local.`; another PASETO version or purpose
//!    (`v2.local.`, `v4.public.`) is `Algorithm`, anything else
//!    `Malformed`.
//! 3. **Structure**: base64url only, in canonical form (one spelling per
//!    token); a body long enough for nonce and tag; a footer of at most
//!    [`MAX_FOOTER_LEN`] bytes that is a JSON object whose only member is
//!    `kid` — else `Malformed`. The footer is not trusted yet: it only
//!    selects a key.
//! 4. **Key by `kid`**: the `kid` must name a key of the ring, else
//!    `UnknownKey`. A token without one is `UnknownKey` too, unless
//!    [`allow_missing_kid`](PasetoCodecBuilder::allow_missing_kid) is set
//!    *and* the ring holds exactly one key (PASETO lookups fail closed).
//! 5. **Authentication** of header, nonce, ciphertext, footer and implicit
//!    assertion with that key: `Signature` on any mismatch. Only then is
//!    the payload decrypted and parsed (a JSON object, UTF-8, no duplicate
//!    claim — else `Malformed`).
//! 6. **Claims**: `exp` required (`MissingClaim`), `now < exp + leeway`
//!    (`Expired`), `nbf <= now + leeway` (`NotYetValid`), `iss` equal to the
//!    configured issuer (`Issuer`), `aud` equal to the configured audience
//!    (`Audience`; a token with an `aud` is refused by a codec that has
//!    none), `jti`, `iat`, `sst`, `sch` present (`MissingClaim`), and
//!    neither `iat` nor the session start later than `now + leeway`
//!    (`IssuedInFuture`: such a token would survive log-out-everywhere).
//!    A claim of the wrong type is `Malformed`.
//!
//! ## Keys and rotation
//!
//! A [`KeyRing`] holds one active key and any number of older keys; every
//! token names its key in the footer. A [`Key`] is exactly 32 bytes from
//! configuration ([`Key::new`], or a `k4.local.` PASERK with
//! [`Key::from_paserk`]) under an id of your choosing, or under its PASERK
//! local ID ([`Key::with_paserk_id`]), the key-id form PASETO recommends.
//! `Debug` never shows key bytes; pasetors wipes them on drop.
//!
//! To rotate without logging anyone out: add the next key on every
//! instance ([`PasetoCodec::add_key`]), make it active
//! ([`PasetoCodec::activate`], or [`PasetoCodec::rotate`] for both steps on
//! a single instance), and once the longest token lifetime plus leeway has
//! passed, drop the old key with [`PasetoCodec::remove_key`]. Until then
//! tokens it encrypted keep opening; afterwards they are `UnknownKey`. The
//! codec swaps its ring atomically, so this works while requests are
//! served. Key rotation is not a revocation tool: dropping a key
//! invalidates every token it made.
//!
//! ## Implicit assertion
//!
//! v4 can authenticate bytes that are never sent
//! ([`implicit_assertion`](PasetoCodecBuilder::implicit_assertion)). Set
//! one to bind tokens to their purpose (`b"shop-sessions/prod"`): a token
//! minted with the same key for another purpose, or by another deployment
//! sharing the key, then fails as `Signature`. Default: empty, the PASETO
//! default, which other implementations use unless told otherwise.
//!
//! ## Interoperability
//!
//! Tokens are plain PASETO v4.local: `tests/interop_pyseto.rs` decrypts a
//! sessionkit token with the Python library pyseto and reads its claims,
//! and accepts a token pyseto made with sessionkit's claim names.
//!
//! ## Token size
//!
//! The whole session travels with every request: v4.local adds a 32-byte
//! nonce and a 32-byte tag to the JSON payload, base64url-encoded (4/3),
//! plus the footer: about 47 bytes more than an HS256 JWT of the same
//! session, about as much as an ES256 or EdDSA one. Measured by `tests/token_size.rs` (subject of 8 bytes,
//! key id `k1`, no `iss`/`aud`; add their JSON length × 4/3 if
//! configured), next to HS256 JWTs of the same claims (`sessionkit-jwt`'s
//! table):
//!
//! | session data (JSON bytes) | v4.local | HS256 JWT |
//! |---:|---:|---:|
//! | 0 | 305 | 258 |
//! | 64 | 400 | 352 |
//! | 256 | 656 | 608 |
//! | 512 | 997 | 950 |
//! | 1024 | 1680 | 1632 |
//! | 2048 | 3045 | 2998 |
//! | 4096 | 5776 | 5728 |
//!
//! Browsers keep a cookie up to about 4 KiB, so a token in a cookie holds at
//! most about 2.8 KB of session data; a bearer token under the default
//! 8 KiB limit about 5.9 KB. Encoding a larger token fails with
//! [`Error::TooLarge`](sessionkit_core::Error::TooLarge) before anything is
//! encrypted. Sessions that outgrow this belong in a stateful store.
//!
//! [PASETO]: https://github.com/paseto-standard/paseto-spec
//! [pasetors]: https://docs.rs/pasetors/0.8
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod key;

pub use codec::{Clock, DEFAULT_MAX_TOKEN_SIZE, MAX_FOOTER_LEN, PasetoCodec, PasetoCodecBuilder};
pub use key::{KEY_LEN, Key, KeyRing, MAX_KID_LEN};

// For intra-doc links.
#[allow(unused_imports)]
use sessionkit_core::TokenCodec;
