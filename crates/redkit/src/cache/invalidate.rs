//! Invalidation by tag, by prefix and of the whole namespace.
//!
//! Tags are O(1) (a new version, see [`super::tags`]). Prefixes and `clear`
//! walk the namespace with `SCAN … COUNT` and delete each page with `UNLINK`
//! (memory is freed off the main thread), so Redis is never blocked for more
//! than one small page; the pattern is glob-escaped, so a prefix containing
//! `*`, `?` or `[` matches only itself.

use super::backplane::CacheChange;
use super::handle::Cache;
use super::recovery::Apply;
use super::tags::new_version;
use crate::error::Result;
use crate::store::{Store, delete_matching};

/// Keys looked at per SCAN step (and deleted per UNLINK at most).
/// Keys per SCAN page of a prefix invalidation or clear.
const SCAN_PAGE: usize = 1000;

impl<S: Store> Cache<S> {
    /// Invalidates every entry tagged `tag`, on every instance.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        self.invalidate_tags(&[tag]).await
    }

    /// Invalidates every entry tagged with any of `tags`, on every instance.
    ///
    /// When the store cannot take a tag's new version (Redis out of memory,
    /// or unreachable without fallback) the invalidation still holds: this
    /// instance stops trusting the tag's entries at once, the others are told
    /// on the backplane, and the version is written in the background as
    /// soon as the store takes it (see the [module](super) docs). Only when
    /// too many tags are pending already does this return the store's error
    /// (after dropping this instance's L1).
    pub async fn invalidate_tags(&self, tags: &[&str]) -> Result<()> {
        let engine = &self.engine;
        for tag in tags {
            engine.check_tag(tag)?;
        }
        for tag in tags {
            let version = new_version();
            let key = engine.layout.tag(tag);
            engine.tags().observe(tag, version);
            engine.counters.invalidations(1);
            let change = CacheChange::Tag {
                t: (*tag).to_owned(),
                v: version,
            };
            let value = version.to_string();
            // The version and its notice in one round trip where the store
            // can keep their order (`Store::set_then_publish`).
            let stored = match engine.notice(change.clone()) {
                Some((channel, notice)) => {
                    engine
                        .store
                        .set_then_publish(&key, value.as_bytes(), None, &channel, &notice)
                        .await
                }
                None => engine.store.set(&key, value.as_bytes(), None).await,
            };
            match stored {
                Ok(()) => {
                    engine.journal(format!("tag:{tag}"), change, Apply::SetTag { key, version })
                }
                Err(error) => {
                    tracing::warn!(
                        cache = engine.layout.namespace(), tag, error = %error,
                        "tag invalidation not stored; pinned here, published, retried in the background"
                    );
                    if !engine.tag_write_failed(tag, version) {
                        engine.forget_local();
                        return Err(error);
                    }
                    // The notice may not have gone out with the version.
                    engine.publish(change).await;
                }
            }
        }
        Ok(())
    }

    /// Deletes every entry whose key starts with `prefix`, on every instance;
    /// returns how many L2 entries were deleted.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64> {
        let engine = &self.engine;
        engine.check_prefix(prefix)?;
        engine.evict_prefix_locally(prefix);
        let pattern = engine.layout.entries_with_prefix(prefix);
        let deleted = delete_matching(&engine.store, &pattern, SCAN_PAGE).await?;
        engine.journal(
            format!("prefix:{prefix}"),
            CacheChange::Prefix {
                p: prefix.to_owned(),
            },
            Apply::UnlinkMatching(pattern),
        );
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
        let deleted =
            delete_matching(&engine.store, &engine.layout.everything(), SCAN_PAGE).await?;
        engine.forget_local();
        engine.journal(
            "clear".to_owned(),
            CacheChange::Clear,
            Apply::UnlinkMatching(engine.layout.everything()),
        );
        engine.counters.invalidations(1);
        engine.publish(CacheChange::Clear).await;
        Ok(deleted)
    }
}
