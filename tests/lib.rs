//! sessionkit's integration and reliability tests over real backends live
//! in this package's test targets (`cached_backends`, `reliability_*`); this
//! library is empty. See `docs/reliability.md`.
