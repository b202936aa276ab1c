//! Which cryptography jsonwebtoken runs on, chosen at compile time.
//!
//! jsonwebtoken 11 keeps a process-wide `CryptoProvider`. It picks one by
//! itself only when exactly one of its `rust_crypto` / `aws_lc_rs` features
//! is enabled; with both (which Cargo's feature unification produces as soon
//! as two crates in a build ask for different backends, and which
//! `cargo test --all-features` always does) or with neither, its first
//! signature panics.
//!
//! sessionkit-jwt therefore never goes through that process default: every
//! signature it makes or checks calls the factories of one provider named
//! here explicitly — `aws_lc_rs` when that feature is on (it is the opt-in),
//! otherwise `rust_crypto`. In addition, building a key or a codec installs
//! that provider as jsonwebtoken's process default *if none is installed
//! yet*, so that other jsonwebtoken calls in the same process do not panic
//! in a build where both features ended up enabled. A provider the
//! application installed first is left alone.

use std::sync::Once;

use jsonwebtoken::crypto::CryptoProvider;

#[cfg(not(any(feature = "rust_crypto", feature = "aws_lc_rs")))]
compile_error!(
    "sessionkit-jwt needs a crypto backend: enable the `rust_crypto` (default, pure Rust) \
     or the `aws_lc_rs` feature"
);

/// The cryptography library behind sessionkit-jwt's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoBackend {
    /// The pure-Rust RustCrypto crates (`rust_crypto` feature, the default).
    RustCrypto,
    /// aws-lc-rs (`aws_lc_rs` feature): faster, needs a C toolchain to build.
    AwsLcRs,
}

impl CryptoBackend {
    /// The backend this build signs and verifies with: `AwsLcRs` whenever
    /// the `aws_lc_rs` feature is enabled (even together with
    /// `rust_crypto`), `RustCrypto` otherwise.
    ///
    /// ```
    /// use sessionkit_jwt::CryptoBackend;
    /// let backend = CryptoBackend::selected();
    /// if cfg!(feature = "aws_lc_rs") {
    ///     assert_eq!(backend, CryptoBackend::AwsLcRs);
    /// } else {
    ///     assert_eq!(backend, CryptoBackend::RustCrypto);
    /// }
    /// ```
    pub const fn selected() -> Self {
        #[cfg(feature = "aws_lc_rs")]
        {
            CryptoBackend::AwsLcRs
        }
        #[cfg(not(feature = "aws_lc_rs"))]
        {
            CryptoBackend::RustCrypto
        }
    }

    /// The name of the cargo feature that selects this backend.
    pub const fn feature_name(self) -> &'static str {
        match self {
            CryptoBackend::RustCrypto => "rust_crypto",
            CryptoBackend::AwsLcRs => "aws_lc_rs",
        }
    }
}

/// The jsonwebtoken provider sessionkit-jwt signs and verifies with.
#[cfg(feature = "aws_lc_rs")]
pub(crate) fn provider() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
}

/// The jsonwebtoken provider sessionkit-jwt signs and verifies with.
#[cfg(all(feature = "rust_crypto", not(feature = "aws_lc_rs")))]
pub(crate) fn provider() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
}

/// Installs [`provider`] as jsonwebtoken's process default unless one is
/// installed already (by the application, or by an earlier call).
pub(crate) fn install_process_default() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already: the application's
        // choice wins for its own jsonwebtoken calls; ours never use it.
        let _ = provider().install_default();
    });
}
