//! The in-process tier: a concurrent cache bounded by bytes, holding decoded
//! values.
//!
//! An L1 entry keeps the decoded value (as `dyn Any`) so a hit costs a lookup
//! and a clone, not a decode. Its weight is the encoded size (what the
//! value costs in L2) plus the key, so the tier's memory is bounded by
//! `l1_max_bytes`.
//!
//! Built on `quick_cache` (sharded, S3-FIFO eviction): a hit takes a shard's
//! read lock and clones one `Arc`, an insert evicts in place. moka, which
//! this tier used before, records every read in a channel and replays it
//! under a lock, and its inserts go through the same housekeeping: an L1
//! hit went from 0.78 of a raw moka get to 1.45 with the switch
//! (docs/BENCHMARKS.md, session 10).
//! The tier is split into shards (up to four per core), each with its share
//! of `l1_max_bytes` but never less than 1 MiB, so the values a tier keeps do
//! not shrink on a machine with many cores. A value heavier than nearly a
//! whole shard's share is not kept in L1: it is still written to L2, and an
//! older L1 entry of its key is dropped.
//!
//! Entries carry their own end (`keep_until`: stale values stay available
//! for stale-while-revalidate and fail-safe until then). A read checks it
//! and evicts an entry past its end; entries nobody reads again leave by
//! the size bound.

use std::any::Any;
use std::sync::Arc;

use super::envelope::Meta;

/// One cached value with its metadata, in one allocation: the value sits
/// inline (unsized to `dyn Any` behind the `Arc`), so a hit follows one
/// pointer from the tier's slot to the value, not two.
pub(crate) struct L1Entry<V: ?Sized = dyn Any + Send + Sync> {
    pub(crate) meta: Meta,
    pub(crate) weight: u32,
    pub(crate) value: V,
}

/// The L1 entry of `value`.
pub(crate) fn entry<T: Send + Sync + 'static>(value: T, meta: Meta, weight: u32) -> Arc<L1Entry> {
    Arc::new(L1Entry {
        meta,
        weight,
        value,
    })
}

/// An entry's weight: its encoded size plus its key (never zero: a
/// zero-weight entry would never be evicted).
#[derive(Clone, Copy)]
struct ByEncodedSize;

impl quick_cache::Weighter<String, Arc<L1Entry>> for ByEncodedSize {
    fn weight(&self, key: &String, entry: &Arc<L1Entry>) -> u64 {
        (u64::from(entry.weight) + key.len() as u64).max(1)
    }
}

type Tier =
    quick_cache::sync::Cache<String, Arc<L1Entry>, ByEncodedSize, foldhash::quality::RandomState>;

/// The L1 tier of one cache.
pub(crate) struct L1 {
    entries: Tier,
}

/// The entry size the tier is sized for when estimating how many entries
/// it holds (which bounds the remembered keys of evicted entries).
const TYPICAL_ENTRY_BYTES: u64 = 512;

/// The least share of the tier one shard holds (see the module docs).
const MIN_SHARD_BYTES: u64 = 1 << 20;

impl L1 {
    /// A tier holding at most `max_bytes` of entries.
    pub(crate) fn new(max_bytes: u64) -> Self {
        let estimated_entries =
            usize::try_from((max_bytes / TYPICAL_ENTRY_BYTES).clamp(64, 1 << 20))
                .unwrap_or(1 << 20);
        let mut options = quick_cache::OptionsBuilder::new();
        options
            .estimated_items_capacity(estimated_entries)
            .weight_capacity(max_bytes)
            .shards(shards_for(max_bytes));
        let hasher = foldhash::quality::RandomState::default();
        let entries = match options.build() {
            Ok(options) => Tier::with_options(options, ByEncodedSize, hasher, Default::default()),
            // Only when a required option is unset, which the lines above
            // rule out: the library's own shard count then.
            Err(_) => Tier::with(
                estimated_entries,
                max_bytes,
                ByEncodedSize,
                hasher,
                Default::default(),
            ),
        };
        L1 { entries }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<L1Entry>> {
        self.entries.get(key)
    }

    pub(crate) fn insert(&self, key: String, entry: Arc<L1Entry>) {
        self.entries.insert(key, entry);
    }

    pub(crate) fn invalidate(&self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops every entry whose key starts with `prefix`.
    pub(crate) fn invalidate_prefix(&self, prefix: &str) {
        self.entries.retain(|key, _| !key.starts_with(prefix));
    }

    pub(crate) fn invalidate_all(&self) {
        self.entries.clear();
    }
}

/// Four shards per core, as many as keep each at `MIN_SHARD_BYTES` or more
/// (a power of two: the library rounds up, which would shrink them).
fn shards_for(max_bytes: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let wanted = (max_bytes / MIN_SHARD_BYTES).clamp(1, cores as u64 * 4);
    let shards = 1u64 << (63 - wanted.leading_zeros());
    usize::try_from(shards).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_of(bytes: u32) -> Arc<L1Entry> {
        let meta = Meta {
            fresh_until: u64::MAX,
            keep_until: u64::MAX,
            tags: Vec::new(),
        };
        entry(vec![0u8; bytes as usize], meta, bytes)
    }

    fn weight(l1: &L1) -> u64 {
        l1.entries.weight()
    }

    #[test]
    fn the_tier_never_holds_more_than_its_bytes() {
        let l1 = L1::new(64 * 1024);
        for i in 0..10_000 {
            l1.insert(format!("key:{i}"), entry_of(1000));
            assert!(weight(&l1) <= 64 * 1024, "{} bytes held", weight(&l1));
        }
        assert!(l1.entries.len() > 10, "the tier keeps what fits");
        assert!(l1.get("key:9999").is_some(), "the last write is kept");
    }

    #[test]
    fn a_value_too_heavy_for_the_tier_drops_the_older_entry_of_its_key() {
        let l1 = L1::new(64 * 1024);
        l1.insert("big".to_owned(), entry_of(10));
        assert!(l1.get("big").is_some());
        l1.insert("big".to_owned(), entry_of(1 << 20));
        assert!(
            l1.get("big").is_none(),
            "neither the new value (too heavy) nor the old one (outdated) is served"
        );
    }

    #[test]
    fn a_tier_of_zero_bytes_keeps_nothing() {
        let l1 = L1::new(0);
        l1.insert("key".to_owned(), entry_of(10));
        assert!(l1.get("key").is_none());
    }

    #[test]
    fn shards_never_hold_less_than_a_mebibyte() {
        assert_eq!(shards_for(64 * 1024), 1);
        assert_eq!(shards_for(3 << 20), 2);
        for max_bytes in [1 << 20, 32 << 20, 1 << 40] {
            let shards = shards_for(max_bytes) as u64;
            assert!(shards.is_power_of_two() && max_bytes / shards >= MIN_SHARD_BYTES);
        }
        // So the default 32 MiB tier keeps a value of 900 KB on any machine.
        let l1 = L1::new(32 << 20);
        l1.insert("big".to_owned(), entry_of(900 * 1024));
        assert!(l1.get("big").is_some());
    }

    #[test]
    fn invalidations_drop_exactly_what_they_name() {
        let l1 = L1::new(1 << 20);
        for key in ["user:1:a", "user:1:b", "user:10:a", "user:2:a"] {
            l1.insert(key.to_owned(), entry_of(10));
        }
        l1.invalidate_prefix("user:1:");
        assert!(l1.get("user:1:a").is_none() && l1.get("user:1:b").is_none());
        assert!(l1.get("user:10:a").is_some() && l1.get("user:2:a").is_some());
        l1.invalidate("user:10:a");
        assert!(l1.get("user:10:a").is_none() && l1.get("user:2:a").is_some());
        l1.invalidate_all();
        assert!(l1.get("user:2:a").is_none());
        assert_eq!(weight(&l1), 0);
    }
}
