//! sessionkit's integration and reliability tests over real backends live
//! in this package's test targets (`cached_backends`, `reliability_*`).
//!
//! The library holds no code: it compiles the README's and the guide's
//! code blocks as doctests (`cargo test -p sessionkit-integration-tests
//! --doc`), here rather than in the facade so that the facade's
//! dev-dependencies stay what the quickstart needs.

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

/// The guide's code blocks (`docs/`), compiled as doctests.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../docs/choosing.md")]
    mod choosing {}
    #[doc = include_str!("../docs/backends.md")]
    mod backends {}
    #[doc = include_str!("../docs/caching.md")]
    mod caching {}
    #[doc = include_str!("../docs/security.md")]
    mod security {}
    #[doc = include_str!("../docs/migrating-from-tower-sessions.md")]
    mod migrating {}
    #[doc = include_str!("../docs/hybrid.md")]
    mod hybrid {}
    #[doc = include_str!("../docs/operations.md")]
    mod operations {}
}
