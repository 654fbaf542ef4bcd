//! The optional in-process session cache ([`SessionConfig::local_cache`]),
//! kept coherent across instances by pub/sub.
//!
//! Why: with a shared store, every authenticated request costs a round trip
//! just to learn that its session still exists. Sessions are read far more
//! often than they change, so each instance keeps the sessions it read for
//! a short while and every change is announced: `{"s": <digest>}` for one
//! session (updated, destroyed, id cycled) or `{"u": <user id>}` for all of
//! a user's (destroy-all). Receivers evict; they never learn data from a
//! message. Session ids are bearer secrets, so messages carry a 64-bit
//! digest (FNV-1a) instead, and entries keep the full id to compare on a
//! hit: a digest collision is a miss or an extra eviction, never another
//! user's session.
//!
//! Until the subscription is active, and after it is lost or re-established
//! (messages may have been missed), nothing is served locally. While the
//! store is unavailable, entries within the fail-safe duration stand in. A load that raced with an announcement is not cached
//! (an epoch counter detects it), so a stale read cannot be kept.
//!
//! [`SessionConfig::local_cache`]: super::SessionConfig::local_cache

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SessionId;
use super::keys::fnv1a;
use super::model::Session;
use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::store::{FollowEvent, Following, Store, follow_in_background};

/// The channel of session changes (under the store's key prefix).
pub(super) const CHANNEL: &str = "redkit:sessions";

/// Entries kept at most.
const MAX_ENTRIES: usize = 100_000;

/// A change every instance must forget.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum SessionChange {
    /// One session, by digest.
    #[serde(rename = "s")]
    Session(u64),
    /// Every session of a user.
    #[serde(rename = "u")]
    User(String),
}

/// A session as read from the store, and when.
struct Entry {
    session: Session,
    read_at: std::time::Instant,
}

/// The entries by digest, at most `MAX_ENTRIES`. `quick_cache`: a read
/// takes a shard's read lock and clones one `Arc` (moka, used before,
/// records every read for its housekeeping, which was most of a local
/// session read). Entries carry their own age (`read_at`), checked on every
/// read; a sweep ([`sweep`]) drops those past it, as moka's time-to-live
/// did, so sessions nobody reads again do not stay until the size bound.
type Entries = quick_cache::sync::Cache<
    u64,
    Arc<Entry>,
    quick_cache::UnitWeighter,
    foldhash::quality::RandomState,
>;

/// Sessions this instance read recently.
pub(super) struct LocalSessions {
    entries: Entries,
    /// How long an entry is served as fresh.
    fresh_for: Duration,
    /// How long an entry may stand in while the store is unavailable.
    fail_safe: Duration,
    /// The subscription is active: entries are kept coherent.
    coherent: AtomicBool,
    /// Bumped by every eviction, to refuse caching a load that raced one.
    epoch: AtomicU64,
    /// Follows the announcements; stopped when this is dropped.
    pump: parking_lot::Mutex<Option<Following>>,
}

impl std::fmt::Debug for LocalSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSessions")
            .field("entries", &self.entries.len())
            .field("coherent", &self.coherent.load(Ordering::Relaxed))
            .finish()
    }
}

impl LocalSessions {
    /// A cache serving entries for `fresh_for` (and up to `fail_safe`
    /// while the store is unavailable), and the task that keeps it coherent
    /// through `store`'s pub/sub. Needs a Tokio runtime.
    pub(super) fn start<S: Store>(store: S, fresh_for: Duration, fail_safe: Duration) -> Arc<Self> {
        let local = Arc::new(LocalSessions {
            entries: Entries::with(
                MAX_ENTRIES,
                MAX_ENTRIES as u64,
                quick_cache::UnitWeighter,
                foldhash::quality::RandomState::default(),
                Default::default(),
            ),
            fresh_for,
            fail_safe,
            coherent: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            pump: parking_lot::Mutex::new(None),
        });
        let weak = Arc::downgrade(&local);
        tokio::spawn(sweep(weak.clone(), fresh_for.max(fail_safe)));
        let following = follow_in_background(store, &[CHANNEL], move |event| listen(&weak, event));
        *local.pump.lock() = Some(following);
        local
    }

    /// The entry for `id` if it is at most `max_age` old and its session
    /// has not reached its absolute end.
    fn read(&self, id: &SessionId, max_age: Duration) -> Option<Session> {
        if !self.coherent.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.get(&digest(id))?;
        let session = &entry.session;
        let alive = session
            .absolute_expiry_ms
            .is_none_or(|end| end > SystemClock.now_ms());
        (session.id == *id && alive && entry.read_at.elapsed() < max_age).then(|| session.clone())
    }

    fn forget_everything(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }
}

/// This instance's copies of sessions, composed in front of the store the
/// way tower-sessions' `CachingSessionStore<Cache, Store>` is: `Sessions`
/// reads through it ([`before_load`], [`after_load`]) and tells it every
/// change. Without
/// a local cache it is [`NoLocalCache`], which holds nothing.
pub(super) trait SessionCache: Send + Sync + 'static {
    /// The cached session `id`, if coherent, present and fresh.
    fn fresh(&self, id: &SessionId) -> Option<Session>;

    /// The cached session `id` within the fail-safe duration, for when the
    /// store is unavailable.
    fn stand_in(&self, id: &SessionId) -> Option<Session>;

    /// The epoch to pass to [`SessionCache::put`] after a load.
    fn epoch(&self) -> u64;

    /// Caches `session`, loaded when the epoch was `epoch`, unless an
    /// eviction happened since.
    fn put(&self, session: &Session, epoch: u64);

    /// Forgets `change` here; true when other instances must hear of it.
    fn forget(&self, change: &SessionChange) -> bool;
}

/// The cache of a `Sessions` built without `local_cache`: every read goes
/// to the store, and no change is announced.
#[derive(Debug)]
pub(super) struct NoLocalCache;

impl SessionCache for NoLocalCache {
    fn fresh(&self, _: &SessionId) -> Option<Session> {
        None
    }

    fn stand_in(&self, _: &SessionId) -> Option<Session> {
        None
    }

    fn epoch(&self) -> u64 {
        0
    }

    fn put(&self, _: &Session, _: u64) {}

    fn forget(&self, _: &SessionChange) -> bool {
        false
    }
}

/// The cached copy of session `id` to serve without a load: a fresh one,
/// when no extension is due (a due extension goes to the store, so rolling
/// expiry still works). `Err` holds the epoch to pass to [`after_load`].
pub(super) fn before_load(
    cache: &dyn SessionCache,
    id: &SessionId,
    extend: bool,
) -> std::result::Result<Session, u64> {
    if !extend && let Some(session) = cache.fresh(id) {
        return Ok(session);
    }
    // Taken before the load: an eviction while it runs bumps the epoch,
    // and `put` then refuses what may be a stale read.
    Err(cache.epoch())
}

/// What a read of session `id` answers once `loaded` from the store:
/// the load, cached; or when the store is unavailable, a copy within the
/// fail-safe duration. (Two halves around the load rather than one async
/// function taking the load's future: a future passed in is stored twice.)
pub(super) fn after_load(
    cache: &dyn SessionCache,
    id: &SessionId,
    loaded: Result<Option<Session>>,
    epoch: u64,
) -> Result<Option<Session>> {
    match loaded {
        Ok(loaded) => {
            if let Some(session) = &loaded {
                cache.put(session, epoch);
            }
            Ok(loaded)
        }
        Err(error) if error.is_unavailable() => match cache.stand_in(id) {
            Some(session) => {
                tracing::debug!("session store unavailable; serving a session read earlier");
                Ok(Some(session))
            }
            None => Err(error),
        },
        Err(error) => Err(error),
    }
}

impl SessionCache for LocalSessions {
    fn fresh(&self, id: &SessionId) -> Option<Session> {
        self.read(id, self.fresh_for)
    }

    fn stand_in(&self, id: &SessionId) -> Option<Session> {
        self.read(id, self.fail_safe)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn put(&self, session: &Session, epoch: u64) {
        if self.coherent.load(Ordering::Acquire) && self.epoch() == epoch {
            let entry = Entry {
                session: session.clone(),
                read_at: std::time::Instant::now(),
            };
            self.entries.insert(digest(&session.id), Arc::new(entry));
        }
    }

    fn forget(&self, change: &SessionChange) -> bool {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match change {
            SessionChange::Session(digest) => {
                self.entries.remove(digest);
            }
            SessionChange::User(user) => {
                self.entries
                    .retain(|_, entry| entry.session.user_id != *user);
            }
        }
        true
    }
}

/// Every `kept_for` (at least 100 ms), drops the entries read longer ago
/// than that: neither fresh nor a fail-safe stand-in any more. Ends once
/// the cache is dropped.
async fn sweep(local: Weak<LocalSessions>, kept_for: Duration) {
    let mut ticks = tokio::time::interval(kept_for.max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(local) = local.upgrade() else {
            return;
        };
        local
            .entries
            .retain(|_, entry| entry.read_at.elapsed() < kept_for);
    }
}

/// Announces `change` to every instance. A failed announcement is
/// logged: the other instances' entries then expire on their own, within
/// the local cache duration.
pub(super) async fn announce<S: Store>(store: &S, change: &SessionChange) {
    match serde_json::to_vec(change) {
        Ok(payload) => {
            if let Err(error) = store.publish(CHANNEL, &payload).await {
                tracing::warn!(%error, "cannot announce a session change to other instances");
            }
        }
        Err(error) => tracing::error!(%error, "cannot encode a session change"),
    }
}

/// The digest announced for `id`: FNV-1a, the same in every process.
pub(super) fn digest(id: &SessionId) -> u64 {
    fnv1a(id.expose().as_bytes())
}

/// What a session-cache announcement does: a change evicts what it names;
/// while not subscribed (and after an interruption) nothing is served
/// locally and everything cached is dropped.
fn listen(local: &Weak<LocalSessions>, event: FollowEvent) -> ControlFlow<()> {
    let Some(cache) = local.upgrade() else {
        return ControlFlow::Break(());
    };
    match event {
        FollowEvent::Subscribed => cache.coherent.store(true, Ordering::Release),
        FollowEvent::Message(message) => {
            match serde_json::from_slice::<SessionChange>(&message.payload) {
                Ok(change) => {
                    cache.forget(&change);
                }
                Err(error) => tracing::warn!(%error, "ignoring a malformed session change"),
            }
        }
        // Changes may have been missed meanwhile.
        FollowEvent::Missed => {
            cache.forget_everything();
            cache.coherent.store(true, Ordering::Release);
        }
        FollowEvent::Lost => {
            cache.coherent.store(false, Ordering::Release);
            cache.forget_everything();
        }
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::EmbeddedConfig;
    use crate::store::EmbeddedStore;

    fn session(user: &str) -> Session {
        Session {
            id: SessionId::generate().unwrap(),
            user_id: user.to_owned(),
            data: serde_json::Map::new(),
            created_at_ms: 0,
            absolute_expiry_ms: None,
            version: 1,
        }
    }

    /// Entries nobody reads again leave once past both durations, without a
    /// read and well before the size bound.
    #[tokio::test]
    async fn entries_past_their_time_are_swept() {
        let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
        let kept_for = Duration::from_millis(150);
        let local = LocalSessions::start(store, Duration::from_millis(100), kept_for);
        while !local.coherent.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sessions: Vec<Session> = (0..50).map(|i| session(&format!("u{i}"))).collect();
        for session in &sessions {
            local.put(session, local.epoch());
        }
        assert_eq!(local.entries.len(), 50);
        assert!(local.fresh(&sessions[0].id).is_some());
        // Swept within two sweep intervals; the deadline only absorbs a
        // loaded machine's late timers.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while !local.entries.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "past {kept_for:?}, {} entries are still kept",
                local.entries.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(local.stand_in(&sessions[0].id).is_none());
    }
}
