//! Tag invalidation by version stamps.
//!
//! Design (documented choice): each tag has a version in the store
//! (`ns:t:<tag>`, missing = 0). An entry records the versions of its tags when
//! it is written; it is valid only while every one of them is still the
//! current one (equality, never "greater than"). Invalidating a tag sets a
//! fresh random 64-bit version plus a backplane message — O(1), no scan of the
//! keyspace, no clock comparison between instances. Invalidated entries are
//! not deleted eagerly: readers drop them when they meet them, and their TTL
//! removes the rest.
//!
//! Random versions rather than a counter: a counter restarts below what
//! instances hold after `FLUSHALL`, a restart without persistence or a
//! failover to an empty node, and climbs back to values old entries recorded
//! — those entries would be trusted again. A random version never repeats,
//! and any change of version (up or down) invalidates.
//!
//! Each instance caches the versions it has read for `max_age`; backplane
//! messages replace them at once (a read from the store that started before
//! a message never overwrites it), and the cache forgets them all when the
//! backplane reconnects (messages may have been missed).
//!
//! When the store refuses the new version (Redis at `maxmemory` with
//! `noeviction`, or unreachable in Redis-only mode) the tag is *pending*: this
//! instance pins its new version locally (so its own L1 and L2 entries under
//! the tag are invalid at once), tells the other instances on the backplane
//! (PUBLISH needs no memory), and retries the write every
//! [`PENDING_RETRY`], publishing again each time so the others keep the
//! version pinned past their `max_age`. The retry succeeds as soon as Redis
//! takes writes again. Bound: readers on every instance reached by the
//! backplane see the write at once; after Redis leaves `maxmemory`, all see
//! it within one retry interval. Pending tags are bounded
//! ([`MAX_PENDING_TAGS`]); beyond that the cache drops L1 and every known
//! version instead.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::key::Layout;
use crate::error::Result;
use crate::store::Store;

/// How often a pending tag version is written again.
pub(crate) const PENDING_RETRY: Duration = Duration::from_millis(250);

/// Tags whose new version may wait for the store at once, per cache.
pub(crate) const MAX_PENDING_TAGS: usize = 10_000;

#[derive(Debug)]
pub(crate) struct TagVersions {
    state: Mutex<State>,
    max_age: Duration,
}

/// Tag → value, hashed with foldhash (randomly seeded): SipHash was most
/// of an L1 hit's tag check.
type Map<V> = HashMap<String, V, foldhash::quality::RandomState>;

#[derive(Debug, Default)]
struct State {
    known: Map<Known>,
    /// Versions written here that the store has not taken yet.
    pending: Map<u64>,
    /// Counts changes (messages, writes, forgetting), so that a store read
    /// does not overwrite what changed while it was in flight.
    changes: u64,
    forgotten_at: u64,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    version: u64,
    at: Instant,
    change: u64,
}

impl State {
    /// Records `version` as `tag`'s, learned at `at` as of change `change`.
    fn know(&mut self, tag: &str, version: u64, at: Instant, change: u64) {
        self.known.insert(
            tag.to_owned(),
            Known {
                version,
                at,
                change,
            },
        );
    }

    /// Counts a change and records `version` as `tag`'s under it.
    fn change_to(&mut self, tag: &str, version: u64) {
        self.changes += 1;
        let change = self.changes;
        self.know(tag, version, Instant::now(), change);
    }
}

/// A fresh tag version: random, never 0 (0 is "never invalidated").
pub(crate) fn new_version() -> u64 {
    fastrand::u64(1..)
}

impl TagVersions {
    pub(crate) fn new(max_age: Duration) -> Self {
        TagVersions {
            state: Mutex::new(State::default()),
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
        let started = {
            let state = self.state.lock();
            for (i, tag) in tags.iter().enumerate() {
                match self.version_here(&state, tag) {
                    Some(version) => versions[i] = version,
                    None => missing.push(i),
                }
            }
            state.changes
        };
        if missing.is_empty() {
            return Ok(versions);
        }
        // Boxed: the read's future is large, and every cache read would
        // otherwise carry (and move) its space, though most never read.
        Box::pin(self.read_missing(store, layout, tags, &missing, &mut versions, started)).await?;
        Ok(versions)
    }

    /// Reads the versions of `tags[i]` for each `i` in `missing` from the
    /// store into `versions`, and remembers them unless something newer
    /// arrived since change number `started`.
    async fn read_missing<S: Store>(
        &self,
        store: &S,
        layout: &Layout,
        tags: &[&str],
        missing: &[usize],
        versions: &mut [u64],
        started: u64,
    ) -> Result<()> {
        let keys: Vec<String> = missing.iter().map(|&i| layout.tag(tags[i])).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = store.get_many(&key_refs).await?;
        let now = Instant::now();
        let mut state = self.state.lock();
        let stale_read = state.forgotten_at > started;
        for (&i, value) in missing.iter().zip(values) {
            let tag = tags[i];
            let read = value
                .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse().ok())
                .unwrap_or(0);
            // Something newer arrived while we read: it wins.
            let newer = state.pending.get(tag).copied().or_else(|| {
                state
                    .known
                    .get(tag)
                    .filter(|known| known.change > started)
                    .map(|known| known.version)
            });
            versions[i] = match newer {
                Some(version) => version,
                None if stale_read => read,
                None => {
                    let change = state.changes;
                    state.know(tag, read, now, change);
                    read
                }
            };
        }
        Ok(())
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
        if let Some(current) = self.known_current(recorded) {
            return Ok(current);
        }
        let tags: Vec<&str> = recorded.iter().map(|(tag, _)| tag.as_str()).collect();
        let current = self.current(store, layout, &tags).await?;
        Ok(recorded
            .iter()
            .zip(current)
            .all(|((_, version), current)| *version == current))
    }

    /// [`TagVersions::are_current`] when every tag's version is pending or
    /// known here (the usual case for an L1 hit): one lock, no allocation.
    /// `None` when one must be read from the store.
    fn known_current(&self, recorded: &[(String, u64)]) -> Option<bool> {
        let state = self.state.lock();
        let mut all_current = true;
        for (tag, version) in recorded {
            all_current &= self.version_here(&state, tag)? == *version;
        }
        Some(all_current)
    }

    /// The version of `tag` this instance can answer for without the store:
    /// its pending one, else a known one younger than `max_age`.
    fn version_here(&self, state: &State, tag: &str) -> Option<u64> {
        if let Some(pending) = state.pending.get(tag) {
            return Some(*pending);
        }
        state
            .known
            .get(tag)
            .filter(|known| known.at.elapsed() < self.max_age)
            .map(|known| known.version)
    }

    /// Records a version seen elsewhere (a backplane message, a write): it
    /// replaces the known one, larger or smaller. A tag pending here keeps
    /// its own version until the store has it.
    pub(crate) fn observe(&self, tag: &str, version: u64) {
        let mut state = self.state.lock();
        if state.pending.contains_key(tag) {
            return;
        }
        state.change_to(tag, version);
    }

    /// Pins `version` for `tag` until [`TagVersions::settle`]: the store
    /// did not take it. False when too many tags are pending already.
    pub(crate) fn pin(&self, tag: &str, version: u64) -> bool {
        let mut state = self.state.lock();
        if state.pending.len() >= MAX_PENDING_TAGS && !state.pending.contains_key(tag) {
            return false;
        }
        state.changes += 1;
        state.pending.insert(tag.to_owned(), version);
        true
    }

    /// The tags waiting for the store, with their versions.
    pub(crate) fn pending(&self) -> Vec<(String, u64)> {
        let state = self.state.lock();
        state
            .pending
            .iter()
            .map(|(tag, version)| (tag.clone(), *version))
            .collect()
    }

    /// The store took `version` for `tag`: it is a known version like any
    /// other (unless the tag was pinned again with another one meanwhile).
    pub(crate) fn settle(&self, tag: &str, version: u64) {
        let mut state = self.state.lock();
        if state.pending.get(tag) != Some(&version) {
            return;
        }
        state.pending.remove(tag);
        state.change_to(tag, version);
    }

    /// Forgets every known version (pending ones stay pinned).
    pub(crate) fn forget_all(&self) {
        let mut state = self.state.lock();
        state.known.clear();
        state.changes += 1;
        state.forgotten_at = state.changes;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::EmbeddedConfig;
    use crate::store::EmbeddedStore;

    #[tokio::test]
    async fn any_change_of_version_replaces_the_known_one() {
        let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
        let layout = Layout::new("t").unwrap();
        let tags = TagVersions::new(Duration::from_secs(60));
        tags.observe("a", 900);
        assert_eq!(tags.current(&store, &layout, &["a"]).await.unwrap(), [900]);
        tags.observe("a", 3);
        assert_eq!(
            tags.current(&store, &layout, &["a"]).await.unwrap(),
            [3],
            "a lower version (a counter that went backwards) is a change too"
        );
        assert!(tags.pin("a", 7));
        tags.observe("a", 8);
        assert_eq!(tags.current(&store, &layout, &["a"]).await.unwrap(), [7]);
        tags.settle("a", 7);
        assert_eq!(tags.pending(), []);
        assert_eq!(tags.current(&store, &layout, &["a"]).await.unwrap(), [7]);
    }
}
