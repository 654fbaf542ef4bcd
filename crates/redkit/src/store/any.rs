//! The configured store: Redis, embedded, or Redis with embedded fallback.
//!
//! In fallback mode each call goes to Redis while the connection is `Ready`.
//! While it is not — or when a call finds Redis gone (connection error,
//! timeout) — the call is served by the embedded store instead, so callers
//! keep working through an outage and never wait past the command timeout.
//! What that means for data is documented on the [module](super): writes made
//! during the outage stay local, except the changes modules record in the
//! [outage journal](super::journal) (invalidations, session destroys,
//! penalties), which are replayed on Redis when it is `Ready` again and
//! *before* this instance's calls go to Redis; then the embedded store is
//! cleared.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::journal::{Journal, Replay};
use super::pubsub::Subscription;
use super::{
    Backend, CursorPosition, EmbeddedStore, KeyTtl, RedisStore, ScanCursor, ScanPage, Script,
    ScriptArg, ScriptValue, SetEntry, Store,
};
use crate::clock::{Clock, SystemClock};
use crate::connection::ConnectionState;
use crate::error::Result;

/// A call that fell back to the embedded store this recently (ms) counts as
/// "served locally" for the journal even if the connection still says
/// `Ready` (a timeout does not mark it broken).
const FELL_BACK_RECENTLY_MS: u64 = 1_000;

/// The store a [`Redkit`](crate::Redkit) handle was configured with.
#[derive(Debug, Clone)]
pub struct AnyStore {
    mode: Backend,
    redis: Option<RedisStore>,
    embedded: EmbeddedStore,
    recovery: Arc<Recovery>,
}

/// Fallback mode's outage bookkeeping, shared by clones.
#[derive(Debug, Default)]
struct Recovery {
    journal: Journal,
    /// Something is recorded and not yet replayed: calls stay on the
    /// embedded store until it is.
    replay_pending: AtomicBool,
    /// When (ms since epoch) a call last fell back to the embedded store.
    fell_back_at: AtomicU64,
    /// Wakes the recovery task when a change is recorded while Redis is up.
    recorded: tokio::sync::Notify,
}

impl AnyStore {
    /// The embedded store only.
    pub fn embedded(embedded: EmbeddedStore) -> Self {
        AnyStore {
            mode: Backend::Embedded,
            redis: None,
            embedded,
            recovery: Arc::default(),
        }
    }

    /// Redis only; calls fail while it is unavailable. The embedded store is
    /// kept for [`AnyStore::embedded_store`] but never serves data.
    pub fn redis(redis: RedisStore, embedded: EmbeddedStore) -> Self {
        AnyStore {
            mode: Backend::Redis,
            redis: Some(redis),
            embedded,
            recovery: Arc::default(),
        }
    }

    /// Redis while it is ready, `embedded` while it is not. Must be called
    /// inside a Tokio runtime (it watches the connection to replay the
    /// outage journal and clear the embedded store on recovery).
    pub fn fallback(redis: RedisStore, embedded: EmbeddedStore) -> Self {
        let recovery = Arc::new(Recovery::default());
        tokio::spawn(recover_on_ready(
            redis.clone(),
            embedded.clone(),
            recovery.clone(),
        ));
        AnyStore {
            mode: Backend::Fallback,
            redis: Some(redis),
            embedded,
            recovery,
        }
    }

    /// The configured mode (as opposed to [`Store::backend`], which says who
    /// serves right now).
    pub fn mode(&self) -> Backend {
        self.mode
    }

    /// The Redis store, when one is configured.
    pub fn redis_store(&self) -> Option<&RedisStore> {
        self.redis.as_ref()
    }

    /// The embedded store.
    pub fn embedded_store(&self) -> &EmbeddedStore {
        &self.embedded
    }

    /// The Redis store when calls should go to it now.
    fn active_redis(&self) -> Option<&RedisStore> {
        let redis = self.redis.as_ref()?;
        match self.mode {
            Backend::Redis => Some(redis),
            Backend::Fallback
                if redis.connection().state() == ConnectionState::Ready
                    && !self.recovery.replay_pending.load(Ordering::Acquire) =>
            {
                Some(redis)
            }
            _ => None,
        }
    }

    fn note_fallback(&self) {
        if self.mode == Backend::Fallback {
            self.recovery
                .fell_back_at
                .store(SystemClock.now_ms(), Ordering::Release);
        }
    }

    /// Whether a change made just now may have been served by the embedded
    /// store in place of Redis (and so must be journaled).
    fn served_locally(&self) -> bool {
        self.mode == Backend::Fallback
            && (self.active_redis().is_none()
                || SystemClock
                    .now_ms()
                    .saturating_sub(self.recovery.fell_back_at.load(Ordering::Acquire))
                    < FELL_BACK_RECENTLY_MS)
    }

    /// After a change was journaled: while Redis is away, calls must wait
    /// for its replay before going to Redis again. A change that fell back
    /// while the connection stayed `Ready` (a timeout: Redis slow, not gone)
    /// is replayed in the background without taking calls off Redis.
    fn mark_pending(&self) {
        let ready = self
            .redis
            .as_ref()
            .is_some_and(|redis| redis.connection().state() == ConnectionState::Ready);
        if !ready {
            self.recovery.replay_pending.store(true, Ordering::Release);
        }
        self.recovery.recorded.notify_one();
    }

    /// Runs `on_redis` or `on_embedded` as the mode and connection say; in
    /// fallback mode, a call that finds Redis unavailable is retried locally.
    async fn route<'a, T, R, E>(
        &'a self,
        on_redis: impl FnOnce(&'a RedisStore) -> R,
        on_embedded: impl FnOnce(&'a EmbeddedStore) -> E,
    ) -> Result<T>
    where
        R: Future<Output = Result<T>>,
        E: Future<Output = Result<T>>,
    {
        match self.active_redis() {
            Some(redis) => match on_redis(redis).await {
                Err(error) if self.mode == Backend::Fallback && error.is_unavailable() => {
                    self.note_fallback();
                    on_embedded(&self.embedded).await
                }
                result => result,
            },
            None => {
                self.note_fallback();
                on_embedded(&self.embedded).await
            }
        }
    }
}

impl Store for AnyStore {
    fn backend(&self) -> Backend {
        if self.active_redis().is_some() {
            Backend::Redis
        } else {
            Backend::Embedded
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.route(|s| s.get(key), |s| s.get(key)).await
    }

    async fn get_and_expire(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        self.route(
            |s| s.get_and_expire(key, ttl),
            |s| s.get_and_expire(key, ttl),
        )
        .await
    }

    fn is_cluster(&self) -> bool {
        self.redis_store().is_some_and(Store::is_cluster)
    }

    fn is_degraded(&self) -> bool {
        self.mode == Backend::Fallback && self.active_redis().is_none()
    }

    fn record_for_recovery(&self, id: String, replay: Replay) -> Result<()> {
        if !self.served_locally() {
            return Ok(());
        }
        self.recovery.journal.record(id, replay)?;
        self.mark_pending();
        Ok(())
    }

    fn record_fail_safe_for_recovery(&self, id: String, replay: Replay) -> Result<()> {
        if !self.served_locally() {
            return Ok(());
        }
        self.recovery.journal.record_fail_safe(id, replay)?;
        self.mark_pending();
        Ok(())
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.route(|s| s.set(key, value, ttl), |s| s.set(key, value, ttl))
            .await
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        self.route(
            |s| s.set_if_absent(key, value, ttl),
            |s| s.set_if_absent(key, value, ttl),
        )
        .await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.route(|s| s.get_many(keys), |s| s.get_many(keys)).await
    }

    async fn set_many(&self, entries: &[SetEntry<'_>]) -> Result<()> {
        self.route(|s| s.set_many(entries), |s| s.set_many(entries))
            .await
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        self.route(|s| s.delete(keys), |s| s.delete(keys)).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.route(|s| s.expire(key, ttl), |s| s.expire(key, ttl))
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.route(|s| s.ttl(key), |s| s.ttl(key)).await
    }

    async fn incr_by(&self, key: &str, delta: i64) -> Result<i64> {
        self.route(|s| s.incr_by(key, delta), |s| s.incr_by(key, delta))
            .await
    }

    async fn set_add(&self, key: &str, members: &[&str]) -> Result<u64> {
        self.route(|s| s.set_add(key, members), |s| s.set_add(key, members))
            .await
    }

    async fn set_remove(&self, key: &str, members: &[&str]) -> Result<u64> {
        self.route(
            |s| s.set_remove(key, members),
            |s| s.set_remove(key, members),
        )
        .await
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>> {
        self.route(|s| s.set_members(key), |s| s.set_members(key))
            .await
    }

    async fn scan(&self, cursor: &ScanCursor, pattern: &str, count: usize) -> Result<ScanPage> {
        // A scan stays on the store that started it.
        match (&cursor.0, &self.redis) {
            (CursorPosition::Redis(_), Some(redis)) => redis.scan(cursor, pattern, count).await,
            (CursorPosition::Embedded { .. }, _) => {
                self.embedded.scan(cursor, pattern, count).await
            }
            _ => {
                self.route(
                    |s| s.scan(cursor, pattern, count),
                    |s| s.scan(cursor, pattern, count),
                )
                .await
            }
        }
    }

    async fn set_then_publish(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        channel: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.route(
            |s| s.set_then_publish(key, value, ttl, channel, payload),
            |s| s.set_then_publish(key, value, ttl, channel, payload),
        )
        .await
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64> {
        self.route(
            |s| s.publish(channel, payload),
            |s| s.publish(channel, payload),
        )
        .await
    }

    /// With Redis configured the subscription is active at once when Redis
    /// is ready, and otherwise from the moment Redis comes up (it is retried
    /// in the background, like every later resubscription). In fallback mode
    /// it also receives messages published locally while Redis is down.
    async fn subscribe(&self, channels: &[&str]) -> Result<Subscription> {
        match &self.redis {
            Some(redis) => {
                let (sender, receiver) = Subscription::channel();
                if self.mode == Backend::Fallback {
                    self.embedded.subscribe_sender(channels, &sender);
                }
                let pump = redis.subscribe_forwarding(channels, sender).await;
                Ok(Subscription::new(receiver, vec![pump]))
            }
            None => self.embedded.subscribe(channels).await,
        }
    }

    async fn run_script(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[ScriptArg],
    ) -> Result<ScriptValue> {
        self.route(
            |s| s.run_script(script, keys, args),
            |s| s.run_script(script, keys, args),
        )
        .await
    }
}

/// Pause between attempts to replay a change Redis did not take.
const REPLAY_RETRY: Duration = Duration::from_millis(200);

/// The recovery task of a fallback store: on every return to `Ready` (and
/// whenever a change is recorded while Redis is up), replays the journal on
/// Redis, clears the embedded store, and only then lets calls go to Redis.
async fn recover_on_ready(redis: RedisStore, embedded: EmbeddedStore, shared: Arc<Recovery>) {
    let connection = redis.connection().clone();
    let mut changes = connection.state_changes();
    let mut was_ready = false;
    loop {
        let ready = connection.state() == ConnectionState::Ready;
        let recorded = !shared.journal.if_empty(|| {});
        if ready && (!was_ready || recorded || shared.replay_pending.load(Ordering::Acquire)) {
            // Replay until the journal is empty, then switch in one step.
            if replay_all(&redis, &shared).await {
                let cleared = shared.journal.if_empty(|| {
                    embedded.clear();
                    shared.replay_pending.store(false, Ordering::Release);
                });
                if !cleared {
                    continue;
                }
            }
        }
        was_ready = ready;
        tokio::select! {
            state = changes.next() => match state {
                Some(ConnectionState::Closed) | None => return,
                Some(_) => {}
            },
            () = shared.recorded.notified() => {}
        }
    }
}

/// Replays run at once (in order between groups: a fail-safe replay, last,
/// runs after every change it stands for).
const REPLAY_GROUP: usize = 64;

/// Replays everything recorded; false when Redis stopped taking replays
/// (what is left stays journaled for the next attempt).
async fn replay_all(redis: &RedisStore, recovery: &Recovery) -> bool {
    loop {
        let batch = recovery.journal.take();
        let total = batch.len();
        let mut groups = batch.chunks(REPLAY_GROUP).enumerate();
        let mut failed_at = None;
        for (index, group) in groups.by_ref() {
            let results = futures_util::future::join_all(
                group.iter().map(|(_, replay)| replay.run(redis.clone())),
            )
            .await;
            let failed: Vec<(String, Replay)> = group
                .iter()
                .zip(results)
                .filter_map(|(change, result)| {
                    result.err().map(|error| {
                        tracing::warn!(change = change.0, error = %error, "replaying an outage change on Redis failed; will retry");
                        change.clone()
                    })
                })
                .collect();
            if !failed.is_empty() {
                failed_at = Some((index, failed));
                break;
            }
        }
        if let Some((index, mut rest)) = failed_at {
            rest.extend(batch.into_iter().skip((index + 1) * REPLAY_GROUP));
            recovery.journal.put_back(rest);
            if redis.connection().state() != ConnectionState::Ready {
                return false;
            }
            tokio::time::sleep(REPLAY_RETRY).await;
            continue;
        }
        if total > 0 {
            tracing::info!(changes = total, "outage changes replayed on Redis");
        }
        if recovery.journal.if_empty(|| {}) {
            return true;
        }
    }
}
