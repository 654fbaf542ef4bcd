//! The configured store: Redis, embedded, or Redis with embedded fallback.
//!
//! In fallback mode each call goes to Redis while the connection is `Ready`.
//! While it is not — or when a call finds Redis gone (connection error,
//! timeout) — the call is served by the embedded store instead, so callers
//! keep working through an outage and never wait past the command timeout.
//! What that means for data is documented on the [module](super): writes made
//! during the outage stay local, and the embedded store is cleared when Redis
//! is `Ready` again.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use super::pubsub::Subscription;
use super::{
    Backend, CursorPosition, EmbeddedStore, KeyTtl, RedisStore, ScanCursor, ScanPage, Script,
    ScriptArg, ScriptValue, SetEntry, Store,
};
use crate::connection::ConnectionState;
use crate::error::Result;

/// The store a [`Redkit`](crate::Redkit) handle was configured with.
#[derive(Debug, Clone)]
pub struct AnyStore {
    mode: Backend,
    redis: Option<RedisStore>,
    embedded: EmbeddedStore,
}

impl AnyStore {
    /// The embedded store only.
    pub fn embedded(embedded: EmbeddedStore) -> Self {
        AnyStore {
            mode: Backend::Embedded,
            redis: None,
            embedded,
        }
    }

    /// Redis only; calls fail while it is unavailable. The embedded store is
    /// kept for [`AnyStore::embedded_store`] but never serves data.
    pub fn redis(redis: RedisStore, embedded: EmbeddedStore) -> Self {
        AnyStore {
            mode: Backend::Redis,
            redis: Some(redis),
            embedded,
        }
    }

    /// Redis while it is ready, `embedded` while it is not. Must be called
    /// inside a Tokio runtime (it watches the connection to clear the
    /// embedded store on recovery).
    pub fn fallback(redis: RedisStore, embedded: EmbeddedStore) -> Self {
        let mut changes = redis.connection().state_changes();
        let local = embedded.clone();
        tokio::spawn(async move {
            let mut was_ready = false;
            while let Some(state) = changes.next().await {
                let ready = state == ConnectionState::Ready;
                if ready && !was_ready {
                    local.clear();
                }
                was_ready = ready;
                if state == ConnectionState::Closed {
                    return;
                }
            }
        });
        AnyStore {
            mode: Backend::Fallback,
            redis: Some(redis),
            embedded,
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
            Backend::Fallback if redis.connection().state() == ConnectionState::Ready => {
                Some(redis)
            }
            _ => None,
        }
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
                    on_embedded(&self.embedded).await
                }
                result => result,
            },
            None => on_embedded(&self.embedded).await,
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

    fn is_degraded(&self) -> bool {
        self.mode == Backend::Fallback && self.active_redis().is_none()
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
