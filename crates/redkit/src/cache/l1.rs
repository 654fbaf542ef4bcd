//! The in-process tier: moka, bounded by bytes, holding decoded values.
//!
//! An L1 entry keeps the decoded value (as `dyn Any`) so a hit costs a lookup
//! and a clone, not a decode. Its weight is the encoded size (what the
//! value costs in L2), so the tier's memory is bounded by `l1_max_bytes`.
//!
//! Entries carry their own end (`keep_until`: stale values stay available
//! for stale-while-revalidate and fail-safe until then). A read checks it
//! and evicts an entry past its end; entries nobody reads again leave by
//! the size bound. No moka per-entry expiry: its timer wheel adds work to
//! every hit and every insert, and the entry's own end check already keeps
//! expired values from being served.

use std::any::Any;
use std::sync::Arc;

use moka::sync::Cache as Moka;

use super::envelope::Meta;

/// One cached value with its metadata, in one allocation: the value sits
/// inline (unsized to `dyn Any` behind the `Arc`), so a hit follows one
/// pointer from moka's entry to the value, not two.
pub(crate) struct L1Entry<V: ?Sized = dyn Any + Send + Sync> {
    pub(crate) meta: Meta,
    pub(crate) weight: u32,
    pub(crate) value: V,
}

pub(crate) type L1 = Moka<String, Arc<L1Entry>>;

/// The L1 entry of `value`.
pub(crate) fn entry<T: Send + Sync + 'static>(value: T, meta: Meta, weight: u32) -> Arc<L1Entry> {
    Arc::new(L1Entry {
        meta,
        weight,
        value,
    })
}

pub(crate) fn build(max_bytes: u64) -> L1 {
    Moka::builder()
        .max_capacity(max_bytes)
        .weigher(|key: &String, entry: &Arc<L1Entry>| {
            entry
                .weight
                .saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
        })
        .build()
}
