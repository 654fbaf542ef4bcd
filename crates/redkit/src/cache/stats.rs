//! Cache counters: Prometheus metrics and an in-process snapshot.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use metrics::{Counter, Histogram};
use serde::Serialize;

use crate::striped::Striped;

/// A snapshot of one cache's activity since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CacheStats {
    /// Reads answered by L1.
    pub l1_hits: u64,
    /// Reads that missed L1 and were answered by L2.
    pub l2_hits: u64,
    /// Reads answered by neither.
    pub misses: u64,
    /// Stale values served (stale-while-revalidate, fail-safe, soft timeout).
    pub stale_served: u64,
    /// Loader calls.
    pub loader_calls: u64,
    /// Loader failures (errors and hard timeouts).
    pub loader_errors: u64,
    /// Failed L2 operations.
    pub l2_errors: u64,
    /// Stored values that could not be decoded (deleted, counted as misses).
    pub decode_errors: u64,
    /// Tag, prefix, key and clear invalidations.
    pub invalidations: u64,
    /// Bytes written to L2.
    pub bytes_written: u64,
}

impl CacheStats {
    /// L1 hits over all reads, if any.
    pub fn l1_hit_rate(&self) -> Option<f64> {
        let reads = self.l1_hits + self.l2_hits + self.misses;
        (reads > 0).then(|| self.l1_hits as f64 / reads as f64)
    }

    /// L2 hits over the reads that reached L2, if any.
    pub fn l2_hit_rate(&self) -> Option<f64> {
        let reads = self.l2_hits + self.misses;
        (reads > 0).then(|| self.l2_hits as f64 / reads as f64)
    }

    /// Hits (either layer) over all reads, if any.
    pub fn hit_rate(&self) -> Option<f64> {
        let reads = self.l1_hits + self.l2_hits + self.misses;
        (reads > 0).then(|| (self.l1_hits + self.l2_hits) as f64 / reads as f64)
    }

    /// Failed L2 operations and loader calls over reads plus loader calls.
    pub fn error_rate(&self) -> Option<f64> {
        let operations = self.l1_hits + self.l2_hits + self.misses + self.loader_calls;
        (operations > 0).then(|| (self.l2_errors + self.loader_errors) as f64 / operations as f64)
    }
}

macro_rules! counters {
    ($($field:ident => $metric:literal, $help:literal;)*) => {
        /// One striped atomic and one metric handle per counter.
        pub(crate) struct Counters {
            $( $field: (Striped, Counter), )*
            pub(crate) loader_duration: Histogram,
        }

        impl Counters {
            pub(crate) fn new(cache: &str) -> Self {
                $( metrics::describe_counter!($metric, $help); )*
                metrics::describe_histogram!(
                    "redkit_cache_loader_duration_seconds",
                    metrics::Unit::Seconds,
                    "Cache loader latency"
                );
                let cache = cache.to_owned();
                Counters {
                    $( $field: (Striped::default(), counter_for($metric, &cache)), )*
                    loader_duration: metrics::histogram!(
                        "redkit_cache_loader_duration_seconds", "cache" => cache
                    ),
                }
            }

            $(
                pub(crate) fn $field(&self, n: u64) {
                    self.$field.0.add(n, Ordering::Relaxed);
                    self.$field.1.increment(n);
                }
            )*

            pub(crate) fn snapshot(&self) -> CacheStats {
                CacheStats { $( $field: self.$field.0.sum(Ordering::Relaxed), )* }
            }

            /// One hit, from L1 or from L2.
            pub(crate) fn hit(&self, from_l1: bool) {
                if from_l1 {
                    self.l1_hits(1);
                } else {
                    self.l2_hits(1);
                }
            }
        }
    };
}

fn counter_for(metric: &'static str, cache: &str) -> Counter {
    metrics::counter!(metric, "cache" => cache.to_owned())
}

counters! {
    l1_hits => "redkit_cache_l1_hits_total", "Cache reads answered by L1";
    l2_hits => "redkit_cache_l2_hits_total", "Cache reads answered by L2";
    misses => "redkit_cache_misses_total", "Cache reads answered by neither layer";
    stale_served => "redkit_cache_stale_served_total", "Stale cache values served";
    loader_calls => "redkit_cache_loader_calls_total", "Cache loader calls";
    loader_errors => "redkit_cache_loader_errors_total", "Cache loader failures";
    l2_errors => "redkit_cache_l2_errors_total", "Failed cache L2 operations";
    decode_errors => "redkit_cache_decode_errors_total", "Cached values that could not be decoded";
    invalidations => "redkit_cache_invalidations_total", "Cache invalidations";
    bytes_written => "redkit_cache_bytes_written_total", "Bytes written to the cache's L2";
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// Something that can report cache statistics (a live cache).
pub(crate) trait StatsSource: Send + Sync {
    fn stats(&self) -> CacheStats;
}

/// The caches built through one [`Redkit`](crate::Redkit) handle, so that its
/// health report can show them. Holds weak references: a dropped cache
/// disappears from the report.
#[derive(Clone, Default)]
pub(crate) struct CacheRegistry {
    caches: Arc<Mutex<Vec<Registered>>>,
}

/// A cache's name and a weak reference to its counters.
type Registered = (String, Weak<dyn StatsSource>);

impl std::fmt::Debug for CacheRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheRegistry")
            .field("caches", &self.caches.lock().len())
            .finish()
    }
}

impl CacheRegistry {
    pub(crate) fn register(&self, name: &str, source: Weak<dyn StatsSource>) {
        let mut caches = self.caches.lock();
        caches.retain(|(_, cache)| cache.strong_count() > 0);
        caches.push((name.to_owned(), source));
    }

    /// Name and statistics of every live cache.
    pub(crate) fn snapshot(&self) -> Vec<(String, CacheStats)> {
        self.caches
            .lock()
            .iter()
            .filter_map(|(name, cache)| Some((name.clone(), cache.upgrade()?.stats())))
            .collect()
    }
}
