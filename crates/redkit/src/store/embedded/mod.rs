//! [`Store`] in process memory, with Redis' semantics.
//!
//! The default when no Redis is configured and the fallback while Redis is
//! down. The keyspace is split into shards, each behind its own mutex, so
//! concurrent callers rarely wait on each other; a script locks the shards of
//! its declared keys in index order (no deadlock) and runs atomically.
//!
//! - **TTL**: exact to the millisecond against the store's [`Clock`]; expired
//!   keys are invisible at once (lazy expiry on access) and a background task
//!   samples and removes the ones nobody reads (active expiry, like Redis).
//! - **Memory**: bounded by [`EmbeddedConfig::max_memory_bytes`]; a write that
//!   goes past it evicts sampled least-recently-used entries (preferring
//!   expired ones), like Redis' `allkeys-lru`. A single value larger than the
//!   whole budget is refused with [`Error::OutOfMemory`].
//! - **Pub/sub**: reaches subscribers in this process only.

mod collections;
mod script_context;
mod shard;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;

use super::pubsub::{Hub, Subscription};
use super::{
    Backend, CursorPosition, KeyTtl, ScanCursor, ScanPage, Script, ScriptArg, ScriptValue,
    SetEntry, Store, ttl_millis,
};
use crate::clock::{Clock, SystemClock};
use crate::config::EmbeddedConfig;
use crate::error::{Error, Result};
use shard::Shard;

/// The embedded in-memory implementation of [`Store`]; clones share data.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::hash::RandomState,
    used: Arc<AtomicUsize>,
    budget: usize,
    clock: Arc<dyn Clock>,
    hub: Hub,
    evicted: AtomicU64,
    expired: AtomicU64,
    expiry_task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.expiry_task.get_mut().take() {
            task.abort();
        }
    }
}

/// Size and activity of an [`EmbeddedStore`], for health output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EmbeddedStats {
    /// Keys stored (including expired ones not yet removed).
    pub keys: usize,
    /// Bytes counted against the budget.
    pub used_bytes: usize,
    /// The memory budget.
    pub max_bytes: usize,
    /// Entries evicted to stay within the budget.
    pub evicted_keys: u64,
    /// Entries removed by active expiry.
    pub expired_keys: u64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("stats", &self.stats())
            .finish()
    }
}

impl EmbeddedStore {
    /// A store with `config`, on the system clock.
    pub fn new(config: EmbeddedConfig) -> Result<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A store with `config` on `clock` (a [`ManualClock`](crate::clock::ManualClock)
    /// in tests). Active expiry runs when created inside a Tokio runtime.
    pub fn with_clock(config: EmbeddedConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        let used = Arc::new(AtomicUsize::new(0));
        let shard_count = config.shards.next_power_of_two();
        let shards = (0..shard_count)
            .map(|_| Mutex::new(Shard::new(used.clone())))
            .collect();
        let inner = Arc::new(Inner {
            shards,
            hasher: std::hash::RandomState::new(),
            used,
            budget: config.max_memory_bytes,
            clock,
            hub: Hub::default(),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            expiry_task: Mutex::new(None),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = runtime.spawn(active_expiry(
                Arc::downgrade(&inner),
                config.active_expiry_interval,
            ));
            *inner.expiry_task.lock() = Some(task.abort_handle());
        }
        Ok(EmbeddedStore { inner })
    }

    /// Current size and activity.
    pub fn stats(&self) -> EmbeddedStats {
        EmbeddedStats {
            keys: self.inner.shards.iter().map(|s| s.lock().len()).sum(),
            used_bytes: self.inner.used.load(Ordering::Relaxed),
            max_bytes: self.inner.budget,
            evicted_keys: self.inner.evicted.load(Ordering::Relaxed),
            expired_keys: self.inner.expired.load(Ordering::Relaxed),
        }
    }

    /// Removes every key.
    pub fn clear(&self) {
        for shard in self.inner.shards.iter() {
            shard.lock().clear();
        }
    }

    fn expires_at(&self, ttl: Option<Duration>, now: u64) -> Result<Option<u64>> {
        ttl.map(|ttl| ttl_millis(ttl).map(|ms| now.saturating_add(ms)))
            .transpose()
    }

    fn shard_index(&self, key: &str) -> usize {
        (self.inner.hasher.hash_one(key) as usize) & (self.inner.shards.len() - 1)
    }

    fn shard(&self, key: &str) -> (usize, MutexGuard<'_, Shard>) {
        let index = self.shard_index(key);
        (index, self.inner.shards[index].lock())
    }

    fn check_fits(&self, key: &str, value_len: usize) -> Result<()> {
        let size = shard::entry_size(key, value_len);
        if size > self.inner.budget {
            return Err(Error::OutOfMemory {
                size,
                budget: self.inner.budget,
            });
        }
        Ok(())
    }

    /// Evicts until the budget holds, starting with shard `start`. Called
    /// with no shard locked.
    fn make_room(&self, start: usize) {
        let inner = &self.inner;
        if inner.used.load(Ordering::Relaxed) <= inner.budget {
            return;
        }
        let now = self.inner.clock.now_ms();
        let count = inner.shards.len();
        for offset in 0..count {
            let mut shard = inner.shards[(start + offset) % count].lock();
            while inner.used.load(Ordering::Relaxed) > inner.budget {
                if !shard.evict_one(now) {
                    break;
                }
                inner.evicted.fetch_add(1, Ordering::Relaxed);
            }
            if inner.used.load(Ordering::Relaxed) <= inner.budget {
                return;
            }
        }
    }
}

/// Removes expired entries in the background until the store is dropped.
async fn active_expiry(store: Weak<Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        let now = u64::try_from(inner.clock.now().as_millis()).unwrap_or(u64::MAX);
        for shard in inner.shards.iter() {
            let removed = shard.lock().expire_sample(now);
            inner.expired.fetch_add(removed as u64, Ordering::Relaxed);
        }
    }
}

impl Store for EmbeddedStore {
    fn backend(&self) -> Backend {
        Backend::Embedded
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let now = self.inner.clock.now_ms();
        self.shard(key).1.get(key, now)
    }

    async fn get_and_expire(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let now = self.inner.clock.now_ms();
        let at = now.saturating_add(ttl_millis(ttl)?);
        let mut shard = self.shard(key).1;
        let value = shard.get(key, now)?;
        if value.is_some() {
            shard.expire(key, at, now);
        }
        Ok(value)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.check_fits(key, value.len())?;
        let now = self.inner.clock.now_ms();
        let expires_at = self.expires_at(ttl, now)?;
        let (index, mut shard) = self.shard(key);
        shard.set(key, Bytes::copy_from_slice(value), expires_at);
        drop(shard);
        self.make_room(index);
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        self.check_fits(key, value.len())?;
        let now = self.inner.clock.now_ms();
        let expires_at = self.expires_at(ttl, now)?;
        let (index, mut shard) = self.shard(key);
        if shard.contains(key, now) {
            return Ok(false);
        }
        shard.set(key, Bytes::copy_from_slice(value), expires_at);
        drop(shard);
        self.make_room(index);
        Ok(true)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let now = self.inner.clock.now_ms();
        // MGET answers nil for a key of another type instead of failing.
        Ok(keys
            .iter()
            .map(|key| self.shard(key).1.get(key, now).unwrap_or(None))
            .collect())
    }

    async fn set_many(&self, entries: &[SetEntry<'_>]) -> Result<()> {
        for entry in entries {
            self.check_fits(entry.key, entry.value.len())?;
            if let Some(ttl) = entry.ttl {
                ttl_millis(ttl)?;
            }
        }
        let now = self.inner.clock.now_ms();
        for entry in entries {
            let expires_at = self.expires_at(entry.ttl, now)?;
            let (index, mut shard) = self.shard(entry.key);
            shard.set(entry.key, Bytes::copy_from_slice(entry.value), expires_at);
            drop(shard);
            self.make_room(index);
        }
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        let now = self.inner.clock.now_ms();
        Ok(keys
            .iter()
            .filter(|key| self.shard(key).1.delete(key, now))
            .count() as u64)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let now = self.inner.clock.now_ms();
        let at = now.saturating_add(ttl_millis(ttl)?);
        Ok(self.shard(key).1.expire(key, at, now))
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let now = self.inner.clock.now_ms();
        Ok(self.shard(key).1.ttl(key, now))
    }

    async fn incr_by(&self, key: &str, delta: i64) -> Result<i64> {
        let now = self.inner.clock.now_ms();
        let (index, mut shard) = self.shard(key);
        let value = shard.incr_by(key, delta, now)?;
        drop(shard);
        self.make_room(index);
        Ok(value)
    }

    async fn set_add(&self, key: &str, members: &[&str]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        let size: usize = members.iter().map(|m| m.len()).sum();
        self.check_fits(key, size)?;
        let now = self.inner.clock.now_ms();
        let (index, mut shard) = self.shard(key);
        let added = shard.set_add(key, members, now)?;
        drop(shard);
        self.make_room(index);
        Ok(added)
    }

    async fn set_remove(&self, key: &str, members: &[&str]) -> Result<u64> {
        let now = self.inner.clock.now_ms();
        self.shard(key).1.set_remove(key, members, now)
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>> {
        let now = self.inner.clock.now_ms();
        self.shard(key).1.set_members(key, now)
    }

    async fn scan(&self, cursor: &ScanCursor, pattern: &str, count: usize) -> Result<ScanPage> {
        let (shard, after) = match &cursor.0 {
            CursorPosition::Start => (0, None),
            CursorPosition::Embedded { shard, after } => (*shard, after.clone()),
            CursorPosition::Done => {
                return Ok(ScanPage {
                    keys: Vec::new(),
                    cursor: cursor.clone(),
                });
            }
            CursorPosition::Redis(_) | CursorPosition::Cluster { .. } => {
                return Err(Error::invalid_input(
                    "scan cursor",
                    "it belongs to a scan of Redis; start a new scan",
                ));
            }
        };
        if shard >= self.inner.shards.len() {
            return Err(Error::invalid_input("scan cursor", "it is out of range"));
        }
        let now = self.inner.clock.now_ms();
        let (keys, more) =
            self.inner.shards[shard]
                .lock()
                .scan(after.as_deref(), pattern, count.max(1), now);
        let next = if more {
            CursorPosition::Embedded {
                shard,
                after: keys.last().cloned(),
            }
        } else if shard + 1 < self.inner.shards.len() {
            CursorPosition::Embedded {
                shard: shard + 1,
                after: None,
            }
        } else {
            CursorPosition::Done
        };
        Ok(ScanPage {
            keys,
            cursor: ScanCursor(next),
        })
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64> {
        Ok(self.inner.hub.publish(channel, payload))
    }

    async fn subscribe(&self, channels: &[&str]) -> Result<Subscription> {
        let (sender, receiver) = Subscription::channel();
        self.inner.hub.subscribe(channels, &sender);
        Ok(Subscription::new(receiver, Vec::new()))
    }

    async fn run_script(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[ScriptArg],
    ) -> Result<ScriptValue> {
        let indexes: Vec<usize> = keys.iter().map(|key| self.shard_index(key)).collect();
        let mut order = indexes.clone();
        order.sort_unstable();
        order.dedup();
        let guards: Vec<MutexGuard<'_, Shard>> = order
            .iter()
            .map(|&index| self.inner.shards[index].lock())
            .collect();
        let slots = indexes
            .iter()
            .map(|index| order.binary_search(index).unwrap_or_default())
            .collect();
        let mut context =
            script_context::NativeContext::new(keys, slots, guards, self.inner.clock.now());
        let result = (script.native())(&mut context, args).map_err(|error| match error {
            Error::Script { .. } => error,
            other => Error::Script {
                script: script.name(),
                message: other.to_string(),
            },
        });
        drop(context);
        if let Some(&first) = order.first() {
            self.make_room(first);
        }
        result
    }
}

/// The embedded store's part of the dispatch in [`super::AnyStore`].
impl EmbeddedStore {
    pub(crate) fn subscribe_sender(
        &self,
        channels: &[&str],
        sender: &tokio::sync::mpsc::Sender<super::PubSubEvent>,
    ) {
        self.inner.hub.subscribe(channels, sender);
    }
}
