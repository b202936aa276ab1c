//! Crypto backend selection. Its own test binary, because jsonwebtoken's
//! provider is process-wide: here the *application* installs a provider
//! before sessionkit-jwt is used at all.
//!
//! With both `rust_crypto` and `aws_lc_rs` enabled (what
//! `cargo test --all-features` builds), jsonwebtoken cannot choose a
//! provider by itself and its process default panics on first use. This
//! test installs the *other* backend than the one sessionkit-jwt selected
//! (when both are compiled in) and shows that sessionkit-jwt still signs
//! and verifies, with its own provider, and never panics.

mod common;

use common::*;
use sessionkit_core::TokenCodec;
use sessionkit_jwt::{Algorithm, CryptoBackend, JwtCodec, Key, KeyRing};

#[test]
fn the_codec_never_depends_on_the_process_default() {
    // 1. The application picks a provider first (the RustCrypto one if it
    //    is compiled in, else aws-lc). With both features on, that is NOT
    //    the one sessionkit-jwt selects.
    #[cfg(feature = "rust_crypto")]
    let installed = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    #[cfg(not(feature = "rust_crypto"))]
    let installed = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    assert!(installed.is_ok(), "nothing was installed before");

    // 2. sessionkit-jwt keeps its deterministic choice: aws-lc whenever
    //    that feature is on.
    if cfg!(feature = "aws_lc_rs") {
        assert_eq!(CryptoBackend::selected(), CryptoBackend::AwsLcRs);
    } else {
        assert_eq!(CryptoBackend::selected(), CryptoBackend::RustCrypto);
    }

    // 3. Every algorithm signs and verifies through the codec.
    let keys = [
        Key::secret("hs256", Algorithm::HS256, &[1; 32]).unwrap(),
        Key::secret("hs384", Algorithm::HS384, &[2; 48]).unwrap(),
        Key::secret("hs512", Algorithm::HS512, &[3; 64]).unwrap(),
        Key::private_pem("rs256", Algorithm::RS256, RSA_PRIVATE).unwrap(),
        Key::private_pem("ps256", Algorithm::PS256, RSA_PRIVATE).unwrap(),
        Key::private_pem("es256", Algorithm::ES256, EC_PRIVATE).unwrap(),
        Key::private_pem("eddsa", Algorithm::EdDSA, ED_PRIVATE).unwrap(),
    ];
    for key in keys {
        let kid = key.kid().to_owned();
        let codec = JwtCodec::new(KeyRing::new(key).unwrap()).unwrap();
        let claims = claims();
        let token = codec.encode(&claims).unwrap();
        assert_eq!(codec.decode(&token).unwrap().jti, claims.jti, "{kid}");
        // The JWK set of asymmetric keys is built without the process
        // default as well.
        let _ = codec.jwks_json();
    }

    // 4. The application's own jsonwebtoken calls use what it installed.
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "x", "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(&[9; 32]),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(&[9; 32]),
        &validation,
    )
    .unwrap();
}
