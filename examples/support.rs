//! sessionkit's runnable examples are this package's example targets
//! (`cargo run -p sessionkit-examples --example axum_app`); this library is
//! empty. The quickstart lives in the root package:
//! `cargo run --example quickstart`.
