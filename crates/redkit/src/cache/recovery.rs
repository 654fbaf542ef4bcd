//! Healing after Redis-side failures: what an invalidation does when the
//! store cannot take it now, and what it leaves to replay when Redis is back.
//!
//! - **The store refuses a tag's new version** (Redis at `maxmemory` with
//!   `noeviction`, or unreachable in Redis-only mode): the tag is pinned
//!   here and its version published; a background task writes it again
//!   every [`PENDING_RETRY`](super::tags::PENDING_RETRY) and republishes,
//!   until the store takes it (see [`super::tags`] for the bound).
//! - **The embedded fallback served an invalidation** (Redis down, fallback
//!   mode): the cache records a [`Replay`] in the store's outage journal —
//!   the tag's version, the deleted keys, the deleted prefix, the clear —
//!   each followed by its backplane message, so that every instance learns
//!   it when the store replays it on Redis before serving from Redis again.
//!   When the journal is full, the cache records instead a clear of its
//!   whole namespace (plus a `clear` message): coarse, but nothing stale
//!   survives recovery.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::backplane::{CacheChange, Notice};
use super::engine::Engine;
use super::key::Layout;
use super::tags::PENDING_RETRY;
use crate::store::{RedisStore, Replay, Store, delete_matching};

/// Keys per SCAN page when a journalled prefix invalidation is replayed.
const REPLAY_SCAN_PAGE: usize = 1000;

impl<S: Store> Engine<S> {
    /// Records, when the store is serving from its outage fallback, how to
    /// re-apply `change` on Redis (with `apply` before its message).
    pub(super) fn journal(&self, id: String, change: CacheChange, apply: Apply) {
        let namespace = self.layout.namespace();
        let replay = replay_of(self.layout.clone(), self.notice_bytes(change), apply);
        if self
            .store
            .record_for_recovery(format!("cache:{namespace}:{id}"), replay)
            .is_ok()
        {
            return;
        }
        let clear = replay_of(
            self.layout.clone(),
            self.notice_bytes(CacheChange::Clear),
            Apply::UnlinkMatching(self.layout.everything()),
        );
        if let Err(error) = self
            .store
            .record_fail_safe_for_recovery(format!("cache:{namespace}:clear"), clear)
        {
            tracing::error!(
                cache = namespace, error = %error,
                "cannot record an invalidation for recovery; other instances may serve stale entries after Redis returns"
            );
        } else {
            tracing::warn!(
                cache = namespace,
                "outage journal full; this cache's namespace will be cleared on Redis at recovery"
            );
        }
    }

    /// The store did not take `version` for `tag`: pins it and makes sure
    /// the retry task runs. False when too many tags are pending.
    pub(super) fn tag_write_failed(self: &Arc<Self>, tag: &str, version: u64) -> bool {
        if !self.tags().pin(tag, version) {
            return false;
        }
        if !self.retrying_tags.swap(true, Ordering::AcqRel) {
            tokio::spawn(retry_pending_tags(Arc::downgrade(self)));
        }
        true
    }
}

/// The store side of a replay.
pub(super) enum Apply {
    /// `SET` the tag key to a version.
    SetTag { key: String, version: u64 },
    /// Delete these keys.
    Delete(Vec<String>),
    /// Delete every key matching this glob (SCAN + UNLINK pages).
    UnlinkMatching(String),
}

fn replay_of(layout: Layout, notice: Vec<u8>, apply: Apply) -> Replay {
    let apply = Arc::new(apply);
    Replay::new(move |redis: RedisStore| {
        let (layout, notice, apply) = (layout.clone(), notice.clone(), apply.clone());
        async move {
            match &*apply {
                Apply::SetTag { key, version } => {
                    redis.set(key, version.to_string().as_bytes(), None).await?;
                }
                Apply::Delete(keys) => {
                    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                    redis.delete(&refs).await?;
                }
                Apply::UnlinkMatching(pattern) => {
                    delete_matching(&redis, pattern, REPLAY_SCAN_PAGE).await?;
                }
            }
            redis.publish(&layout.channel(), &notice).await?;
            Ok(())
        }
    })
}

/// Writes pending tag versions until the store takes them all, publishing
/// each again meanwhile so that other instances keep it pinned.
async fn retry_pending_tags<S: Store>(engine: Weak<Engine<S>>) {
    loop {
        tokio::time::sleep(PENDING_RETRY).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let pending = engine.tags().pending();
        if pending.is_empty() {
            engine.retrying_tags.store(false, Ordering::Release);
            // A tag pinned between reading `pending` and the store above
            // found the flag set and spawned nothing: go on for it.
            if engine.tags().pending().is_empty()
                || engine.retrying_tags.swap(true, Ordering::AcqRel)
            {
                return;
            }
            continue;
        }
        for (tag, version) in pending {
            let written = engine
                .store
                .set(
                    &engine.layout.tag(&tag),
                    version.to_string().as_bytes(),
                    None,
                )
                .await;
            if written.is_ok() {
                engine.tags().settle(&tag, version);
                tracing::info!(
                    cache = engine.layout.namespace(),
                    tag,
                    "pending tag invalidation written"
                );
                engine.journal(
                    format!("tag:{tag}"),
                    CacheChange::Tag {
                        t: tag.clone(),
                        v: version,
                    },
                    Apply::SetTag {
                        key: engine.layout.tag(&tag),
                        version,
                    },
                );
            }
            engine
                .publish(CacheChange::Tag { t: tag, v: version })
                .await;
        }
    }
}

impl<S: Store> Engine<S> {
    fn notice_bytes(&self, change: CacheChange) -> Vec<u8> {
        Notice {
            instance: self.instance().to_owned(),
            change,
        }
        .to_bytes()
    }
}
