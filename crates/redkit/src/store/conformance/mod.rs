//! One behavioural suite, run against every [`Store`](super::Store).
//!
//! Like tower-sessions' route tests, the checks are written once here and
//! instantiated for each store with [`store_conformance_tests!`](crate::store_conformance_tests):
//!
//! ```ignore
//! async fn make() -> (EmbeddedStore, ()) { (EmbeddedStore::new(Default::default()).unwrap(), ()) }
//! redkit::store_conformance_tests!(make);
//! ```
//!
//! `make` returns the store and a guard kept alive for the test (for example
//! the `redis-server` process). Each check uses its own keys. A store that
//! fails one of these behaves differently from Redis: that is a bug.
#![allow(clippy::unwrap_used)]

mod collections;
mod data;
mod scan_pubsub_scripts;

pub use collections::*;
pub use data::*;
pub use scan_pubsub_scripts::*;

/// Instantiates every conformance check as a `#[tokio::test]` for the store
/// made by the async function `$make` (returning `(store, guard)`).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@each $make;
            get_set_roundtrip,
            missing_keys_are_none,
            ttl_expiry_is_exact,
            set_replaces_value_and_ttl,
            get_and_expire_extends_a_lifetime,
            expire_and_ttl_follow_redis,
            zero_ttl_is_rejected,
            set_if_absent_sets_once,
            bulk_get_and_set,
            delete_counts_existing_keys,
            counters_are_atomic_and_keep_ttl,
            counters_reject_non_integers,
            sets_track_members,
            types_do_not_mix,
            scan_finds_every_matching_key,
            glob_characters_in_keys_stay_literal,
            pubsub_delivers_to_subscribers,
            set_then_publish_announces_only_stored_values,
            scripts_run_atomically,
            script_errors_are_reported,
            large_values_roundtrip,
            collections_in_scripts_follow_redis
        );
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $make().await;
                $crate::store::conformance::$check(&store).await;
            }
        )*
    };
}
