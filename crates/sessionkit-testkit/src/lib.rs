//! The conformance suite every sessionkit [`SessionStore`] must pass.
//!
//! sessionkit's stores (memory, Redis, SQL) all run this crate from their
//! own tests, and so can a third-party store: it checks the contract
//! documented on [`SessionStore`] three ways:
//!
//! - [`cases`]: one async function per contract rule, named after the rule
//!   (`save_stale_version_conflicts`, `load_expired_is_none`, …);
//! - [`model_based`]: a proptest property that runs random sequences of
//!   operations against the store and an in-memory reference model and
//!   compares every result;
//! - [`concurrent_updates_lose_nothing`]: 32 tasks × 50 read-modify-write
//!   increments through `SessionManager::update` on one session must end
//!   at exactly 1,600 ([`concurrent_updates_two_instances`] does the same
//!   through two manager instances over one shared backend);
//! - [`interleavings`]: two requests on one session in the worst order,
//!   forced with a [`GatedStore`](interleavings::GatedStore) (a rotation
//!   racing a logout, log-out-everywhere, another rotation or a save), and
//!   the same races repeated 200 times concurrently: never a fork, never a
//!   resurrected session, never a lost save, and a subject index that
//!   agrees with the sessions after a login races log-out-everywhere;
//! - [`families`]: hybrid refresh-token families over the store (rotation,
//!   reuse detection, tampering, 200 × 2 and 50 × 10 concurrent refresh
//!   races, the grace window, log out everywhere).
//!
//! # Using it for your own store
//!
//! Add the kit as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! sessionkit-testkit = "0.1"
//! ```
//!
//! Write an async factory that returns a store in a fresh, isolated
//! namespace (a random key prefix, its own table or schema), or calls
//! [`skip`] when the backend cannot be reached, and hand it to
//! [`conformance_suite!`] in a test file such as `tests/conformance.rs`:
//!
//! ```no_run
//! use sessionkit_core::SessionStore;
//!
//! # #[derive(Clone)] struct MyStore(std::sync::Arc<dyn SessionStore>);
//! # impl MyStore { async fn connect(_: &str) -> Result<Self, std::io::Error> { unimplemented!() } }
//! # #[sessionkit_core::async_trait]
//! # impl SessionStore for MyStore {
//! #   async fn create(&self, r: &sessionkit_core::Record) -> sessionkit_core::Result<()> { self.0.create(r).await }
//! #   async fn load(&self, id: &sessionkit_core::SessionId) -> sessionkit_core::Result<Option<sessionkit_core::Record>> { self.0.load(id).await }
//! #   async fn save(&self, r: &sessionkit_core::Record) -> sessionkit_core::Result<u64> { self.0.save(r).await }
//! #   async fn touch(&self, id: &sessionkit_core::SessionId, t: sessionkit_core::Timestamp) -> sessionkit_core::Result<()> { self.0.touch(id, t).await }
//! #   async fn delete(&self, id: &sessionkit_core::SessionId) -> sessionkit_core::Result<bool> { self.0.delete(id).await }
//! #   async fn compare_and_delete(&self, id: &sessionkit_core::SessionId, v: u64) -> sessionkit_core::Result<()> { self.0.compare_and_delete(id, v).await }
//! #   async fn list_subject(&self, s: &str) -> sessionkit_core::Result<Vec<sessionkit_core::Record>> { self.0.list_subject(s).await }
//! #   async fn delete_subject(&self, s: &str) -> sessionkit_core::Result<u64> { self.0.delete_subject(s).await }
//! #   async fn delete_expired(&self) -> sessionkit_core::Result<u64> { self.0.delete_expired().await }
//! # }
//! async fn store() -> Option<MyStore> {
//!     match MyStore::connect("my-backend://127.0.0.1").await {
//!         Ok(store) => Some(store),
//!         Err(err) => sessionkit_testkit::skip("my-backend at 127.0.0.1", err),
//!     }
//! }
//!
//! sessionkit_testkit::conformance_suite!(store);
//! # fn main() {}
//! ```
//!
//! The macro expands to one `#[test]` per contract rule and per function in
//! [`interleavings`] and [`families`], plus `model_based_property` and
//! `concurrent_updates_lose_nothing`. Each test
//! builds its own multi-threaded Tokio runtime (4 workers, time and I/O
//! enabled), so the calling crate needs no Tokio dev-dependency for the
//! macro itself. The factory is called once per test, possibly from several
//! tests at once, and every case uses fresh random IDs and subjects, so the
//! stores it returns may share one backend.
//!
//! To run several suites in one file (one per backend flavour), put each
//! invocation in its own `mod`. To run only part of the suite, call the
//! functions in [`cases`] and [`model_based`] from your own tests.
//!
//! # Services
//!
//! A test that needs a server it cannot reach should not fail on a laptop
//! without that server, but must not pass silently in CI. [`skip`] prints
//! `SKIPPED: …` on standard error and returns `None`; when the environment
//! variable `SESSIONKIT_REQUIRE_SERVICES=1` is set (CI sets it), it panics
//! instead.
//!
//! [`SessionStore`]: sessionkit_core::SessionStore
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cases;
mod concurrency;
pub mod families;
pub mod interleavings;
mod model;

pub use concurrency::{
    ConcurrencyReport, Counter, INCREMENTS, TASKS, concurrent_updates_lose_nothing,
    concurrent_updates_two_instances,
};
pub use model::{SEED_ENV, model_based};

/// The environment variable that turns a skip into a failure.
pub const REQUIRE_SERVICES_ENV: &str = "SESSIONKIT_REQUIRE_SERVICES";

/// Whether tests must fail instead of skipping when a service is missing
/// (`SESSIONKIT_REQUIRE_SERVICES` is `1` or `true`).
pub fn services_required() -> bool {
    matches!(
        std::env::var(REQUIRE_SERVICES_ENV)
            .as_deref()
            .map(str::trim),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes")
    )
}

/// Reports that a test cannot run because `what` is unavailable, and
/// returns `None` so that a store factory can `return skip(...)`.
///
/// Prints `SKIPPED: {what}: {why}` to standard error. When
/// [`services_required`] is true (CI), panics with the same message instead,
/// so that a missing service fails the build rather than hiding a test.
///
/// ```
/// // Without SESSIONKIT_REQUIRE_SERVICES=1 this prints and returns None.
/// # if !sessionkit_testkit::services_required() {
/// let store: Option<()> = sessionkit_testkit::skip("redis at 127.0.0.1:6379", "connection refused");
/// assert!(store.is_none());
/// # }
/// ```
///
/// # Panics
///
/// When `SESSIONKIT_REQUIRE_SERVICES=1`.
pub fn skip<S>(what: &str, why: impl std::fmt::Display) -> Option<S> {
    if services_required() {
        panic!("{what} is required ({REQUIRE_SERVICES_ENV}=1) but unavailable: {why}");
    }
    eprintln!("SKIPPED: {what}: {why}");
    None
}

/// Support for the expansion of [`conformance_suite!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    /// Runs one test body on a fresh multi-threaded runtime.
    pub fn block_on<F: Future<Output = ()>>(body: F) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("build a Tokio runtime for the conformance test");
        runtime.block_on(body);
    }
}

/// Expands to the whole conformance suite for a store factory.
///
/// `$factory` names an `async fn() -> Option<S>` where `S: SessionStore`;
/// it returns `None` (normally through [`skip`]) when the backend is not
/// available. The expansion is one `#[test]` function per function in
/// [`cases`], named after it, plus `model_based_property` and
/// `concurrent_updates_lose_nothing`. See the [crate docs](crate) for an
/// example.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@cases $factory;
            create_then_load_round_trips,
            create_conflicts_on_live_id,
            create_replaces_expired_id,
            load_absent_is_none,
            load_expired_is_none,
            save_cas_success_bumps_version,
            save_stale_version_conflicts,
            save_missing_is_not_found,
            save_expired_is_not_found,
            save_writes_every_field,
            touch_moves_expiry,
            touch_missing_is_not_found,
            delete_is_idempotent,
            compare_and_delete_current_version_removes,
            compare_and_delete_stale_version_conflicts,
            compare_and_delete_missing_is_not_found,
            create_keeps_the_given_version,
            scan_enumerates_every_live_record,
            list_subject_returns_only_that_subject,
            delete_subject_removes_only_that_subject,
            subjects_compare_exactly,
            delete_expired_purges_only_expired,
            payload_empty_round_trips,
            payload_1mib_round_trips_byte_exact,
            ids_100k_distinct,
        );

        $crate::conformance_suite!(@interleavings $factory;
            rotate_vs_destroy_nothing_live,
            rotate_vs_rotate_one_wins,
            rotate_vs_destroy_subject_nothing_live,
            save_vs_rotate_keeps_the_save,
            concurrent_rotations_never_fork,
            concurrent_rotate_and_logout_never_resurrect,
            create_vs_delete_subject_index_agrees,
            concurrent_compare_and_delete_one_wins,
            stored_ids_are_not_tickets,
            subject_limit_holds_under_concurrent_logins,
            scan_during_churn_sees_every_stable_record,
        );

        $crate::conformance_suite!(@families $factory;
            refresh_rotates_single_use,
            refresh_reuse_ends_every_token,
            refresh_tampered_token_ends_nothing,
            refresh_race_forced_order,
            refresh_race_of_two_one_winner,
            refresh_race_of_ten_one_winner,
            refresh_grace_window_same_token,
            family_end_kills_all_access_tokens,
            family_logout_everywhere,
            family_devices_list,
        );

        #[test]
        fn model_based_property() {
            $crate::__private::block_on(async {
                $crate::model_based($factory).await;
            });
        }

        #[test]
        fn concurrent_updates_lose_nothing() {
            $crate::__private::block_on(async {
                let Some(store) = $factory().await else {
                    return;
                };
                $crate::concurrent_updates_lose_nothing(store).await;
            });
        }
    };
    (@interleavings $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::block_on(async {
                    let Some(store) = $factory().await else {
                        return;
                    };
                    $crate::interleavings::$case(::std::sync::Arc::new(store)).await;
                });
            }
        )*
    };
    (@families $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::block_on(async {
                    let Some(store) = $factory().await else {
                        return;
                    };
                    $crate::families::$case(::std::sync::Arc::new(store)).await;
                });
            }
        )*
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::block_on(async {
                    let Some(store) = $factory().await else {
                        return;
                    };
                    $crate::cases::$case(&store).await;
                });
            }
        )*
    };
}
