//! Invalidation by tag, by prefix and of the whole namespace.
//!
//! Tags are O(1) (a version bump, see [`super::tags`]). Prefixes and `clear`
//! walk the namespace with `SCAN … COUNT` and delete each page with `UNLINK`
//! (memory is freed off the main thread), so Redis is never blocked for more
//! than one small page; the pattern is glob-escaped, so a prefix containing
//! `*`, `?` or `[` matches only itself.

use super::backplane::CacheChange;
use super::handle::Cache;
use crate::error::Result;
use crate::store::{ScanCursor, Store};

/// Keys looked at per SCAN step (and deleted per UNLINK at most).
const SCAN_PAGE: usize = 1000;

impl<S: Store> Cache<S> {
    /// Invalidates every entry tagged `tag`, on every instance.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        self.invalidate_tags(&[tag]).await
    }

    /// Invalidates every entry tagged with any of `tags`, on every instance.
    pub async fn invalidate_tags(&self, tags: &[&str]) -> Result<()> {
        let engine = &self.engine;
        for tag in tags {
            engine.check_tag(tag)?;
        }
        for tag in tags {
            let version = engine.store.incr_by(&engine.layout.tag(tag), 1).await?;
            let version = u64::try_from(version).unwrap_or(0);
            engine.tags().observe(tag, version);
            engine.counters.invalidations(1);
            engine
                .publish(CacheChange::Tag {
                    t: (*tag).to_owned(),
                    v: version,
                })
                .await;
        }
        Ok(())
    }

    /// Deletes every entry whose key starts with `prefix`, on every instance;
    /// returns how many L2 entries were deleted.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64> {
        let engine = &self.engine;
        engine.check_prefix(prefix)?;
        engine.evict_prefix_locally(prefix);
        let deleted = self
            .unlink_matching(&engine.layout.entries_with_prefix(prefix))
            .await?;
        engine.counters.invalidations(1);
        engine
            .publish(CacheChange::Prefix {
                p: prefix.to_owned(),
            })
            .await;
        Ok(deleted)
    }

    /// Deletes everything of this cache's namespace (entries, tag versions,
    /// locks) and nothing else, on every instance; returns how many L2 keys
    /// were deleted.
    pub async fn clear(&self) -> Result<u64> {
        let engine = &self.engine;
        engine.forget_local();
        let deleted = self.unlink_matching(&engine.layout.everything()).await?;
        engine.forget_local();
        engine.counters.invalidations(1);
        engine.publish(CacheChange::Clear).await;
        Ok(deleted)
    }

    async fn unlink_matching(&self, pattern: &str) -> Result<u64> {
        let store = &self.engine.store;
        let mut cursor = ScanCursor::START;
        let mut deleted = 0;
        loop {
            let page = store.scan(&cursor, pattern, SCAN_PAGE).await?;
            if !page.keys.is_empty() {
                let keys: Vec<&str> = page.keys.iter().map(String::as_str).collect();
                deleted += store.delete(&keys).await?;
            }
            if page.cursor.is_done() {
                return Ok(deleted);
            }
            cursor = page.cursor;
        }
    }
}
