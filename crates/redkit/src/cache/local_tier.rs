//! What this instance holds for itself — the L1 entries and the tag
//! versions it has read — and the ways to drop it: the part of the cache
//! other instances' backplane messages act on.

use super::l1::L1;
use super::tags::TagVersions;

pub(crate) struct LocalTier {
    l1: Option<L1>,
    tags: TagVersions,
}

impl LocalTier {
    pub(super) fn new(l1: Option<L1>, tags: TagVersions) -> Self {
        LocalTier { l1, tags }
    }

    /// The L1 tier, when enabled.
    pub(super) fn l1(&self) -> Option<&L1> {
        self.l1.as_ref()
    }

    /// The tag versions this instance knows.
    pub(super) fn tags(&self) -> &TagVersions {
        &self.tags
    }

    /// Drops the L1 entries of `keys`.
    pub(super) fn evict<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        if let Some(l1) = &self.l1 {
            for key in keys {
                l1.invalidate(key);
            }
        }
    }

    /// Drops the L1 entries whose key starts with `prefix`.
    pub(super) fn evict_prefix(&self, prefix: &str) {
        if let Some(l1) = &self.l1 {
            l1.invalidate_prefix(prefix);
        }
    }

    /// Drops L1 and cached tag versions (after a reconnect or a clear).
    pub(super) fn forget_all(&self) {
        if let Some(l1) = &self.l1 {
            l1.invalidate_all();
        }
        self.tags.forget_all();
    }
}
