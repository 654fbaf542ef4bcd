//! The in-process tier: moka, bounded by bytes, holding decoded values.
//!
//! An L1 entry keeps the decoded value behind `Arc<dyn Any>` so a hit costs a
//! lookup and a clone, not a decode. Its weight is the encoded size (what the
//! value costs in L2), and it expires when the entry stops being servable at
//! all (`keep_until`), so stale values stay available for stale-while-
//! revalidate and fail-safe.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache as Moka;

use super::envelope::Meta;
use crate::clock::Clock;

pub(crate) struct L1Entry {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) meta: Meta,
    pub(crate) weight: u32,
}

pub(crate) type L1 = Moka<String, Arc<L1Entry>>;

struct UntilKept {
    clock: Arc<dyn Clock>,
}

impl UntilKept {
    fn remaining(&self, entry: &L1Entry) -> Option<Duration> {
        let now = u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(
            entry.meta.keep_until.saturating_sub(now),
        ))
    }
}

impl Expiry<String, Arc<L1Entry>> for UntilKept {
    fn expire_after_create(
        &self,
        _: &String,
        entry: &Arc<L1Entry>,
        _: Instant,
    ) -> Option<Duration> {
        self.remaining(entry)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Arc<L1Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(entry)
    }
}

pub(crate) fn build(max_bytes: u64, clock: Arc<dyn Clock>) -> L1 {
    Moka::builder()
        .max_capacity(max_bytes)
        .weigher(|key: &String, entry: &Arc<L1Entry>| {
            entry
                .weight
                .saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
        })
        .expire_after(UntilKept { clock })
        .build()
}
