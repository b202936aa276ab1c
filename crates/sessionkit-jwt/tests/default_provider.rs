//! When the application installs no jsonwebtoken provider, building a
//! sessionkit-jwt key installs the selected one, so that plain jsonwebtoken
//! calls elsewhere in the process work even in a build with both crypto
//! features (where jsonwebtoken alone would panic). Its own test binary:
//! the provider is process-wide.

use sessionkit_jwt::{Algorithm, Key};

#[test]
fn building_a_key_installs_the_selected_provider_if_none_is() {
    let _key = Key::secret("k", Algorithm::HS256, &[5; 32]).unwrap();
    // jsonwebtoken's own entry points now have a provider, whatever the
    // feature combination.
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(&[5; 32]),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(&[5; 32]),
            &validation,
        )
        .is_ok()
    );
    // Installing again fails: sessionkit-jwt's choice is in place.
    #[cfg(feature = "aws_lc_rs")]
    let again = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    #[cfg(not(feature = "aws_lc_rs"))]
    let again = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    assert!(again.is_err());
}
