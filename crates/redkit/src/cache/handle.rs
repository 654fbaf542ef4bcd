//! The cache handle: reads and writes across L1 and L2.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CacheBuilder;
use super::backplane::{Change, Notice};
use super::breaker::Breaker;
use super::codec::Codec;
use super::envelope::{self, Meta};
use super::flight::Flights;
use super::key::{Layout, validate};
use super::l1::{L1, L1Entry};
use super::options::EntryOptions;
use super::stats::{CacheStats, Counters};
use super::tags::TagVersions;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::{SetEntry, Store};

/// A multi-tier cache: L1 in process (moka), L2 in the store (Redis or the
/// embedded store), coherent across instances. Clones share everything.
///
/// See the [module docs](super) for the behaviour.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> redkit::Result<()> {
/// use std::time::Duration;
///
/// let kit = redkit::Redkit::builder().build()?;
/// let tasks = kit.cache("tasks").build().await?;
/// let options = tasks.options().ttl(Duration::from_secs(60)).tag("user:42");
/// let list: Vec<String> = tasks
///     .get_or_set("user:42:tasks", &options, || async {
///         Ok::<_, std::io::Error>(vec!["write docs".to_owned()])
///     })
///     .await?;
/// assert_eq!(list, ["write docs"]);
/// tasks.invalidate_tag("user:42").await?; // on every instance
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// Reads and writes fail with [`Error::InvalidInput`] for a key that is
/// empty, too long or holds control characters, with
/// [`Error::Loader`](crate::Error::Loader) when a loader fails and no stale
/// value may stand in, and with the store's error when L2 is unavailable
/// and nothing else can answer.
pub struct Cache<S: Store> {
    pub(super) inner: Arc<CacheInner<S>>,
}

impl<S: Store> Clone for Cache<S> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.layout.namespace())
            .field("stats", &self.stats())
            .finish()
    }
}

pub(crate) struct CacheInner<S> {
    pub(super) store: S,
    pub(super) layout: Layout,
    pub(super) instance: String,
    pub(super) l1: Option<L1>,
    pub(super) defaults: EntryOptions,
    pub(super) codec: Codec,
    pub(super) compress_above: usize,
    pub(super) backplane: bool,
    pub(super) max_key_len: usize,
    pub(super) breaker: Breaker,
    pub(super) tags: TagVersions,
    pub(super) flights: Flights,
    pub(super) lock_ttl: Duration,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) counters: Counters,
    pub(super) listener: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

impl<S> Drop for CacheInner<S> {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get_mut().take() {
            listener.abort();
        }
    }
}

/// A value found in one of the tiers, fresh or not.
pub(super) struct Found<T> {
    pub(super) value: T,
    pub(super) meta: Meta,
    /// Whether it was fresh when looked up.
    pub(super) fresh: bool,
}

impl<S: Store> super::stats::StatsSource for CacheInner<S> {
    fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}

impl<S: Store> CacheInner<S> {
    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Drops L1 and cached tag versions (after a reconnect or a clear).
    pub(super) fn forget_local(&self) {
        if let Some(l1) = &self.l1 {
            l1.invalidate_all();
        }
        self.tags.forget_all();
    }

    pub(super) fn evict_prefix_locally(&self, prefix: &str) {
        if let Some(l1) = &self.l1 {
            for (key, _) in l1.iter() {
                if key.starts_with(prefix) {
                    l1.invalidate(key.as_str());
                }
            }
        }
    }

    pub(super) fn check_key(&self, key: &str) -> Result<()> {
        validate("cache key", key, self.max_key_len, false)
    }

    pub(super) fn check_tags(&self, tags: &[String]) -> Result<()> {
        tags.iter()
            .try_for_each(|tag| validate("cache tag", tag, self.max_key_len, false))
    }

    pub(super) fn l2_failed(&self, operation: &str, error: &Error) {
        self.counters.l2_errors(1);
        let now = self.now_ms();
        if self.breaker.failure(now) {
            tracing::warn!(
                cache = self.layout.namespace(), error = %error,
                "cache L2 keeps failing; skipping it for a while (circuit open)"
            );
        } else {
            tracing::debug!(cache = self.layout.namespace(), operation, error = %error, "cache L2 failed");
        }
    }

    pub(super) async fn publish(&self, change: Change) {
        if !self.backplane {
            return;
        }
        let notice = Notice {
            instance: self.instance.clone(),
            change,
        };
        if let Err(error) = self
            .store
            .publish(&self.layout.channel(), &notice.to_bytes())
            .await
        {
            tracing::debug!(cache = self.layout.namespace(), error = %error, "cache backplane publish failed");
        }
    }

    /// Looks `key` up in L1 (when `use_l1`) then L2, returning any entry that
    /// is still kept (fresh or stale) and whose tags are current, and whether
    /// it came from L1.
    pub(super) async fn lookup<T>(&self, key: &str, use_l1: bool) -> (Option<Found<T>>, bool)
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let now = self.now_ms();
        if use_l1
            && let Some(l1) = &self.l1
            && let Some(entry) = l1.get(key)
            && now < entry.meta.keep_until
            && let Some(value) = entry.value.downcast_ref::<T>()
        {
            let current = entry.meta.tags.is_empty()
                || self
                    .tags
                    .are_current(&self.store, &self.layout, &entry.meta.tags)
                    .await
                    .unwrap_or(false);
            if current {
                return (
                    Some(Found {
                        value: value.clone(),
                        meta: entry.meta.clone(),
                        fresh: now < entry.meta.fresh_until,
                    }),
                    true,
                );
            }
            l1.invalidate(key);
        }
        (self.lookup_l2(key, use_l1, now).await, false)
    }

    async fn lookup_l2<T>(&self, key: &str, fill_l1: bool, now: u64) -> Option<Found<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if self.breaker.is_open(now) {
            return None;
        }
        let entry_key = self.layout.entry(key);
        let bytes = match self.store.get(&entry_key).await {
            Ok(bytes) => {
                self.breaker.success();
                bytes?
            }
            Err(error) => {
                self.l2_failed("get", &error);
                return None;
            }
        };
        self.accept(key, &entry_key, bytes, fill_l1, now).await
    }

    /// Decodes bytes read from L2; corrupt or invalidated entries are deleted
    /// and read as a miss.
    pub(super) async fn accept<T>(
        &self,
        key: &str,
        entry_key: &str,
        bytes: Bytes,
        fill_l1: bool,
        now: u64,
    ) -> Option<Found<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let weight = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let decoded = envelope::decode(&bytes).ok().and_then(|envelope| {
            let value = envelope.codec.decode::<T>(&envelope.payload).ok()?;
            Some((value, envelope.meta))
        });
        let Some((value, meta)) = decoded else {
            self.counters.decode_errors(1);
            tracing::warn!(
                cache = self.layout.namespace(),
                key,
                "cached value does not decode (corrupt or incompatible); deleting it"
            );
            let _ = self.store.delete(&[entry_key]).await;
            return None;
        };
        if now >= meta.keep_until {
            return None;
        }
        match self
            .tags
            .are_current(&self.store, &self.layout, &meta.tags)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let _ = self.store.delete(&[entry_key]).await;
                return None;
            }
            Err(error) => {
                self.l2_failed("tag versions", &error);
                return None;
            }
        }
        if fill_l1 && let Some(l1) = &self.l1 {
            l1.insert(
                key.to_owned(),
                Arc::new(L1Entry {
                    value: Arc::new(value.clone()),
                    meta: meta.clone(),
                    weight,
                }),
            );
        }
        let fresh = now < meta.fresh_until;
        Some(Found { value, meta, fresh })
    }

    /// Encodes and writes entries to L2 (one pipeline) and L1, then tells the
    /// other instances. L2 failures are counted and logged, not returned: the
    /// value is still served from L1 (FusionCache's default).
    pub(super) async fn write<T>(
        &self,
        entries: &[(&str, &T)],
        options: &EntryOptions,
    ) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        if options.ttl.is_zero() {
            return Err(Error::invalid_input(
                "cache ttl",
                "zero; expected a duration of at least 1 ms",
            ));
        }
        self.check_tags(&options.tags)?;
        let mut payloads = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            self.check_key(key)?;
            let payload = self.codec.encode(*value).map_err(|source| Error::Encode {
                key: (*key).to_owned(),
                source,
            })?;
            payloads.push(payload);
        }
        let tag_names: Vec<&str> = options.tags.iter().map(String::as_str).collect();
        let versions = if tag_names.is_empty() {
            Vec::new()
        } else {
            // Without current tag versions a tagged entry cannot be written
            // safely: it would survive an invalidation it missed.
            self.tags
                .current(&self.store, &self.layout, &tag_names)
                .await?
        };
        let tags: Vec<(String, u64)> = options.tags.iter().cloned().zip(versions).collect();
        let now = self.now_ms();
        let mut encoded = Vec::with_capacity(entries.len());
        for payload in &payloads {
            let ttl = jittered(options.ttl, options.ttl_jitter);
            let fresh_until = now.saturating_add(millis(ttl));
            let meta = Meta {
                fresh_until,
                keep_until: fresh_until.saturating_add(millis(options.retention())),
                tags: tags.clone(),
            };
            let bytes = envelope::encode(&meta, self.codec, payload, self.compress_above);
            encoded.push((meta, bytes));
        }
        let entry_keys: Vec<String> = entries
            .iter()
            .map(|(key, _)| self.layout.entry(key))
            .collect();
        if self.breaker.allows(now) {
            let sets: Vec<SetEntry<'_>> = entry_keys
                .iter()
                .zip(&encoded)
                .map(|(key, (meta, bytes))| SetEntry {
                    key,
                    value: bytes,
                    ttl: Some(Duration::from_millis(
                        meta.keep_until.saturating_sub(now).max(1),
                    )),
                })
                .collect();
            let result = if sets.len() == 1 {
                self.store
                    .set(sets[0].key, sets[0].value, sets[0].ttl)
                    .await
            } else {
                self.store.set_many(&sets).await
            };
            match result {
                Ok(()) => {
                    self.breaker.success();
                    let written: usize = encoded.iter().map(|(_, bytes)| bytes.len()).sum();
                    self.counters.bytes_written(written as u64);
                }
                Err(error) => self.l2_failed("set", &error),
            }
        }
        if options.l1
            && let Some(l1) = &self.l1
        {
            for ((key, value), (meta, bytes)) in entries.iter().zip(encoded) {
                l1.insert(
                    (*key).to_owned(),
                    Arc::new(L1Entry {
                        value: Arc::new((*value).clone()) as Arc<dyn Any + Send + Sync>,
                        meta,
                        weight: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                    }),
                );
            }
        } else if let Some(l1) = &self.l1 {
            for (key, _) in entries {
                l1.invalidate(*key);
            }
        }
        self.publish(Change::Set {
            k: entries.iter().map(|(key, _)| (*key).to_owned()).collect(),
        })
        .await;
        Ok(())
    }
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `ttl` plus a uniformly random extra in `0..=jitter`.
pub(crate) fn jittered(ttl: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return ttl;
    }
    let extra = fastrand::u64(0..=millis(jitter));
    ttl.saturating_add(Duration::from_millis(extra))
}

impl<S: Store> Cache<S> {
    /// A builder for a cache named `namespace` (its keys, tags and channel
    /// live under it) on `store`.
    pub fn builder(store: S, namespace: &str) -> CacheBuilder<S> {
        CacheBuilder::new(store, namespace)
    }

    /// The cache's default options, to adjust for one call.
    pub fn options(&self) -> EntryOptions {
        self.inner.defaults.clone()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.inner.layout.namespace()
    }

    /// Activity since the cache was built.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// The fresh value of `key`, or `None`. Stale values are not returned
    /// (use [`Cache::get_or_set`] for stale-while-revalidate and fail-safe).
    /// An unreachable L2 reads as a miss.
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let inner = &self.inner;
        inner.check_key(key)?;
        let (found, from_l1) = inner.lookup::<T>(key, inner.defaults.l1).await;
        match found {
            // `lookup` only returns entries kept at its own `now`; freshness
            // is judged against the same instant.
            Some(found) if found.fresh => {
                if from_l1 {
                    inner.counters.l1_hits(1);
                } else {
                    inner.counters.l2_hits(1);
                }
                Ok(Some(found.value))
            }
            _ => {
                inner.counters.misses(1);
                Ok(None)
            }
        }
    }

    /// Stores `value` under `key` with `options` (L2, then L1, then a
    /// backplane message).
    pub async fn set<T>(&self, key: &str, value: &T, options: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        self.inner.write(&[(key, value)], options).await
    }

    /// Fresh values of `keys`, in order: L1 first, then one `MGET` for the rest.
    pub async fn get_many<T>(&self, keys: &[&str]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let inner = &self.inner;
        for key in keys {
            inner.check_key(key)?;
        }
        let now = inner.now_ms();
        let mut values: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut remaining = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let from_l1 = if inner.defaults.l1 {
                inner
                    .l1
                    .as_ref()
                    .and_then(|l1| l1.get(*key))
                    .and_then(|entry| {
                        (now < entry.meta.fresh_until && entry.meta.tags.is_empty())
                            .then(|| entry.value.downcast_ref::<T>().cloned())
                            .flatten()
                    })
            } else {
                None
            };
            if from_l1.is_some() {
                inner.counters.l1_hits(1);
            } else {
                remaining.push(index);
            }
            values.push(from_l1);
        }
        if remaining.is_empty() {
            return Ok(values);
        }
        let entry_keys: Vec<String> = remaining
            .iter()
            .map(|&i| inner.layout.entry(keys[i]))
            .collect();
        let entry_refs: Vec<&str> = entry_keys.iter().map(String::as_str).collect();
        let fetched = if inner.breaker.allows(now) {
            match inner.store.get_many(&entry_refs).await {
                Ok(fetched) => {
                    inner.breaker.success();
                    fetched
                }
                Err(error) => {
                    inner.l2_failed("get_many", &error);
                    vec![None; remaining.len()]
                }
            }
        } else {
            vec![None; remaining.len()]
        };
        for ((&index, entry_key), bytes) in remaining.iter().zip(&entry_keys).zip(fetched) {
            let found = match bytes {
                Some(bytes) => {
                    inner
                        .accept::<T>(keys[index], entry_key, bytes, inner.defaults.l1, now)
                        .await
                }
                None => None,
            };
            match found {
                Some(found) if now < found.meta.fresh_until => {
                    inner.counters.l2_hits(1);
                    values[index] = Some(found.value);
                }
                _ => inner.counters.misses(1),
            }
        }
        Ok(values)
    }

    /// Stores several values in one pipeline, with the same options.
    pub async fn set_many<T>(&self, entries: &[(&str, T)], options: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let refs: Vec<(&str, &T)> = entries.iter().map(|(key, value)| (*key, value)).collect();
        self.inner.write(&refs, options).await
    }

    /// Deletes `key` everywhere; true when L2 had it.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Deletes `keys` everywhere (one `UNLINK`); returns how many L2 had.
    pub async fn delete_many(&self, keys: &[&str]) -> Result<u64> {
        let inner = &self.inner;
        for key in keys {
            inner.check_key(key)?;
        }
        if let Some(l1) = &inner.l1 {
            for key in keys {
                l1.invalidate(*key);
            }
        }
        let entry_keys: Vec<String> = keys.iter().map(|key| inner.layout.entry(key)).collect();
        let entry_refs: Vec<&str> = entry_keys.iter().map(String::as_str).collect();
        let deleted = inner.store.delete(&entry_refs).await?;
        inner.counters.invalidations(keys.len() as u64);
        inner
            .publish(Change::Delete {
                k: keys.iter().map(|key| (*key).to_owned()).collect(),
            })
            .await;
        Ok(deleted)
    }
}
