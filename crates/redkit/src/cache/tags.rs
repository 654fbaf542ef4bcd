//! Tag invalidation by version counters.
//!
//! Design (documented choice): each tag has a counter in the store
//! (`ns:t:<tag>`, missing = 0). An entry records the versions of its tags when
//! it is written; it is valid only while every one of them is still current.
//! Invalidating a tag is one `INCRBY` plus a backplane message — O(1), no scan
//! of the keyspace, and no clock comparison between instances (counters do not
//! skew). Invalidated entries are not deleted eagerly: readers drop them when
//! they meet them, and their TTL removes the rest.
//!
//! Each instance caches the versions it has read for `max_age`; backplane
//! messages update them at once, and the cache forgets them all when the
//! backplane reconnects (messages may have been missed). Tag counters have no
//! TTL, so no entry can outlive its tag's version; `clear()` removes them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::key::Layout;
use crate::error::Result;
use crate::store::Store;

#[derive(Debug)]
pub(crate) struct TagVersions {
    known: Mutex<HashMap<String, (u64, Instant)>>,
    max_age: Duration,
}

impl TagVersions {
    pub(crate) fn new(max_age: Duration) -> Self {
        TagVersions {
            known: Mutex::new(HashMap::new()),
            max_age,
        }
    }

    /// Current versions of `tags`, reading the ones not known (or too old)
    /// from the store in one round trip.
    pub(crate) async fn current<S: Store>(
        &self,
        store: &S,
        layout: &Layout,
        tags: &[&str],
    ) -> Result<Vec<u64>> {
        let mut versions = vec![0u64; tags.len()];
        let mut missing = Vec::new();
        {
            let known = self.known.lock();
            for (i, tag) in tags.iter().enumerate() {
                match known.get(*tag) {
                    Some((version, at)) if at.elapsed() < self.max_age => versions[i] = *version,
                    _ => missing.push(i),
                }
            }
        }
        if missing.is_empty() {
            return Ok(versions);
        }
        let keys: Vec<String> = missing.iter().map(|&i| layout.tag(tags[i])).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = store.get_many(&key_refs).await?;
        let now = Instant::now();
        let mut known = self.known.lock();
        for (&i, value) in missing.iter().zip(values) {
            let version = value
                .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse().ok())
                .unwrap_or(0);
            versions[i] = version;
            known.insert(tags[i].to_owned(), (version, now));
        }
        Ok(versions)
    }

    /// Whether every recorded `(tag, version)` is still current.
    pub(crate) async fn are_current<S: Store>(
        &self,
        store: &S,
        layout: &Layout,
        recorded: &[(String, u64)],
    ) -> Result<bool> {
        if recorded.is_empty() {
            return Ok(true);
        }
        let tags: Vec<&str> = recorded.iter().map(|(tag, _)| tag.as_str()).collect();
        let current = self.current(store, layout, &tags).await?;
        Ok(recorded
            .iter()
            .zip(current)
            .all(|((_, version), current)| *version == current))
    }

    /// Records a version seen elsewhere (a backplane message, an INCRBY).
    pub(crate) fn observe(&self, tag: &str, version: u64) {
        let mut known = self.known.lock();
        let entry = known
            .entry(tag.to_owned())
            .or_insert((version, Instant::now()));
        if version >= entry.0 {
            *entry = (version, Instant::now());
        }
    }

    pub(crate) fn forget_all(&self) {
        self.known.lock().clear();
    }
}
