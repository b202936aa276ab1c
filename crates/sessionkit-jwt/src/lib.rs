//! JWT token codec for sessionkit's stateless sessions.
//!
//! (Design notes below; they are completed in the crate documentation.)
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
