//! Keeping every instance's L1 coherent through pub/sub: the messages, the
//! publishing, the subscriber loop and what a message does, in one place.
//!
//! Every set, delete and invalidation publishes a small message on the
//! namespace's channel: the instance id and the keys, tag or prefix — never
//! the value. Other instances evict (or, for tags, learn the new version of)
//! what the message names; an instance ignores its own messages.
//!
//! A tag's notice goes out with its new version: `Store::set_then_publish`
//! sends the `SET` and the `PUBLISH` in one round trip where commands on one
//! connection keep their order, so a writer that waits for its invalidation
//! waits one round trip, and no instance hears of the version before Redis
//! holds it.
//!
//! Notices of writes are coalesced (group commit): a `set` queues its keys
//! once its `SET` is acknowledged — so a notice never goes out before the
//! value it announces is stored — and one background flush publishes every
//! key queued meanwhile in one message, the next flush starting when the
//! previous `PUBLISH` is answered. A write then costs one round trip, and
//! under load Redis runs one `PUBLISH` per batch instead of one per write;
//! other instances hear of it at most one `PUBLISH` round trip later than
//! if the writer had waited for its own.
//!
//! Pub/sub is fire-and-forget: messages sent while an instance's subscription
//! is down are lost. When the subscription comes back (`Resubscribed`), the
//! instance drops its whole L1 and its cached tag versions, so nothing it
//! holds can be older than what Redis has.

use std::ops::ControlFlow;
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use super::key::Layout;
use super::local_tier::LocalTier;
use crate::coalesce::Coalesced;
use crate::error::Result;
use crate::store::{FollowEvent, Following, Store, follow};

/// One backplane message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notice {
    /// The sending instance.
    #[serde(rename = "i")]
    pub(crate) instance: String,
    #[serde(flatten)]
    pub(crate) change: CacheChange,
}

/// What a backplane message says changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub(crate) enum CacheChange {
    /// Keys were written.
    #[serde(rename = "set")]
    Set { k: Vec<String> },
    /// Keys were deleted.
    #[serde(rename = "del")]
    Delete { k: Vec<String> },
    /// A tag's version moved to `v`.
    #[serde(rename = "tag")]
    Tag { t: String, v: u64 },
    /// Keys starting with `p` were deleted.
    #[serde(rename = "prefix")]
    Prefix { p: String },
    /// The namespace was cleared.
    #[serde(rename = "clear")]
    Clear,
}

impl Notice {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// How every notice of `instance` starts (the instance is written
    /// first), so an instance can skip its own notices without decoding
    /// the keys they name.
    fn prefix_of(instance: &str) -> Vec<u8> {
        format!(r#"{{"i":"{instance}""#).into_bytes()
    }
}

/// One cache's end of the backplane: its instance id, whether it is on,
/// and the subscriber task (stopped when the cache is dropped).
pub(crate) struct Backplane {
    enabled: bool,
    instance: String,
    /// Stops following the channel when the cache (and so this) is dropped.
    listener: parking_lot::Mutex<Option<Following>>,
    /// Keys written and not announced yet.
    written: Arc<Coalesced<String>>,
}

/// Keys named by one coalesced notice at most (a bound on message size).
const MAX_KEYS_PER_NOTICE: usize = 512;

impl Backplane {
    /// A backplane end with a fresh random instance id.
    pub(super) fn new(enabled: bool) -> Self {
        Backplane {
            enabled,
            instance: format!("{:016x}", fastrand::u64(..)),
            listener: parking_lot::Mutex::new(None),
            written: Arc::default(),
        }
    }

    /// This instance's id (also used to make lock tokens unique).
    pub(super) fn instance(&self) -> &str {
        &self.instance
    }

    /// Tells the other instances about `change`. A failed publish is only
    /// logged: their entries then expire on their own.
    pub(super) async fn publish<S: Store>(&self, store: &S, layout: &Layout, change: CacheChange) {
        let Some((channel, notice)) = self.notice(layout, change) else {
            return;
        };
        if let Err(error) = store.publish(&channel, &notice).await {
            tracing::debug!(cache = layout.namespace(), error = %error, "cache backplane publish failed");
        }
    }

    /// The channel and message that announce `change`, for a caller that
    /// sends them itself (with the write they announce); `None` when the
    /// backplane is off.
    pub(super) fn notice(&self, layout: &Layout, change: CacheChange) -> Option<(String, Vec<u8>)> {
        if !self.enabled {
            return None;
        }
        let notice = Notice {
            instance: self.instance.clone(),
            change,
        };
        Some((layout.channel(), notice.to_bytes()))
    }

    /// Announces keys whose values are stored (their `SET` acknowledged):
    /// queued, and published by a background flush together with the other
    /// keys written meanwhile (see the module docs).
    pub(super) fn announce_written<S: Store>(
        &self,
        store: &S,
        layout: &Layout,
        keys: impl IntoIterator<Item = String>,
    ) {
        if !self.enabled {
            return;
        }
        if !self.written.push(keys) {
            return; // the running flush takes them
        }
        let (store, written) = (store.clone(), self.written.clone());
        let (channel, namespace) = (layout.channel(), layout.namespace().to_owned());
        let instance = self.instance.clone();
        tokio::spawn(async move {
            let publish = |batch| {
                let notice = Notice {
                    instance: instance.clone(),
                    change: CacheChange::Set { k: batch },
                };
                let (store, channel, namespace) = (&store, &channel, &namespace);
                async move {
                    if let Err(error) = store.publish(channel, &notice.to_bytes()).await {
                        tracing::debug!(cache = namespace, error = %error, "cache backplane publish failed");
                    }
                }
            };
            written.flush(MAX_KEYS_PER_NOTICE, publish).await;
        });
    }

    /// Subscribes (when enabled) and applies other instances' messages to
    /// `local` until the cache is dropped. The subscription is active when
    /// this returns, so no write made after `build` can be missed.
    pub(super) async fn start<S: Store>(
        &self,
        store: &S,
        layout: &Layout,
        local: &Arc<LocalTier>,
    ) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let local: Weak<LocalTier> = Arc::downgrade(local);
        let instance = self.instance.clone();
        let own_prefix = Notice::prefix_of(&instance);
        let namespace = layout.namespace().to_owned();
        let following = follow(store.clone(), &[&layout.channel()], move |event| {
            let Some(local) = local.upgrade() else {
                return ControlFlow::Break(());
            };
            match event {
                FollowEvent::Message(message) => {
                    // This instance's own notices come back too: skipped
                    // before decoding (they may name hundreds of keys).
                    if message.payload.starts_with(&own_prefix) {
                        return ControlFlow::Continue(());
                    }
                    if let Some(notice) = Notice::from_bytes(&message.payload)
                        && notice.instance != instance
                    {
                        apply(&local, notice.change);
                    }
                }
                FollowEvent::Missed | FollowEvent::Lost => {
                    tracing::info!(
                        cache = namespace,
                        "cache backplane interrupted; dropping L1 and tag versions"
                    );
                    local.forget_all();
                }
                FollowEvent::Subscribed => {}
            }
            ControlFlow::Continue(())
        })
        .await;
        *self.listener.lock() = Some(following);
        Ok(())
    }
}

/// Applies another instance's change to this instance's L1.
fn apply(local: &LocalTier, change: CacheChange) {
    match change {
        CacheChange::Set { k } | CacheChange::Delete { k } => {
            local.evict(k.iter().map(String::as_str));
        }
        CacheChange::Tag { t, v } => local.tags().observe(&t, v),
        CacheChange::Prefix { p } => local.evict_prefix(&p),
        CacheChange::Clear => local.forget_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_small_json_without_values() {
        let notice = Notice {
            instance: "abc".to_owned(),
            change: CacheChange::Tag {
                t: "user:1".to_owned(),
                v: 4,
            },
        };
        let bytes = notice.to_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).ok(),
            Some(r#"{"i":"abc","op":"tag","t":"user:1","v":4}"#)
        );
        assert_eq!(Notice::from_bytes(&bytes), Some(notice));
        assert_eq!(Notice::from_bytes(b"garbage"), None);
    }

    #[test]
    fn an_instance_recognises_its_own_notices_by_their_start() {
        let own = Notice {
            instance: "00ab".to_owned(),
            change: CacheChange::Set {
                k: vec!["a".to_owned(), "b".to_owned()],
            },
        };
        let other = Notice {
            instance: "00abc".to_owned(),
            ..own.clone()
        };
        let prefix = Notice::prefix_of("00ab");
        assert!(own.to_bytes().starts_with(&prefix));
        assert!(
            !other.to_bytes().starts_with(&prefix),
            "an id that extends ours is another instance"
        );
    }
}
