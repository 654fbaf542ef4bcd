//! The cache engine: what a lookup may serve from L1 and L2, how values
//! are written to both, and the resilience around L2 (circuit breaker,
//! fail-soft writes). The public API in `handle.rs`, `load.rs` and
//! `invalidate.rs` is built on it; coherence lives in `backplane.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backplane::{Backplane, CacheChange};
use super::breaker::Breaker;
use super::codec::Codec;
use super::envelope::{self, Meta};
use super::flight::Flights;
use super::key::{Layout, validate};
use super::l1::{self, L1};
use super::local_tier::LocalTier;
use super::options::EntryOptions;
use super::stats::{CacheStats, Counters, StatsSource};
use super::tags::TagVersions;
use crate::clock::{Clock, millis};
use crate::error::{Error, Result};
use crate::store::{SetEntry, Store};

/// The cache's machinery behind the public [`Cache`](super::Cache) API:
/// the tiers, the rules for what a lookup may serve, writes, and the
/// resilience parts (breaker, flights, backplane).
pub(crate) struct Engine<S> {
    pub(super) store: S,
    pub(super) layout: Layout,
    pub(super) counters: Counters,
    local: Arc<LocalTier>,
    backplane: Backplane,
    settings: EngineSettings,
    breaker: Breaker,
    flights: Flights,
    /// Keys whose loader failed and whose stale value is served instead,
    /// until the time (ms) it may run again (the fail-safe throttle).
    throttled: moka::sync::Cache<String, u64>,
    /// Whether the task writing pending tag versions runs.
    pub(super) retrying_tags: std::sync::atomic::AtomicBool,
}

/// Keys an instance remembers as throttled at most (a bound on memory; a
/// key pushed out only means its loader may run again sooner).
const MAX_THROTTLED_KEYS: u64 = 100_000;

/// The settings an engine is built with (validated by the builder).
pub(super) struct EngineSettings {
    pub(super) defaults: EntryOptions,
    pub(super) codec: Codec,
    pub(super) compress_above: usize,
    pub(super) max_key_len: usize,
    pub(super) lock_ttl: Duration,
    pub(super) clock: Arc<dyn Clock>,
}

/// A value found in one of the tiers, fresh or not.
pub(super) struct Found<T> {
    pub(super) value: T,
    /// Until when (ms) it is fresh: the only part of its [`Meta`] callers
    /// need, copied so that a hit clones nothing but the value.
    pub(super) fresh_until: u64,
    /// Whether it was fresh when looked up.
    pub(super) fresh: bool,
}

impl<T> Found<T> {
    /// The value, if it is still fresh at `now` (ms).
    pub(super) fn fresh_at(self, now: u64) -> Option<T> {
        (now < self.fresh_until).then_some(self.value)
    }
}

impl<S: Store> StatsSource for Engine<S> {
    fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}

impl<S: Store> Engine<S> {
    /// An engine on `store`, its backplane subscribed (when enabled).
    pub(super) async fn start(
        store: S,
        layout: Layout,
        l1: Option<L1>,
        tags: TagVersions,
        breaker: Breaker,
        backplane: bool,
        settings: EngineSettings,
    ) -> Result<Arc<Self>> {
        let engine = Arc::new(Engine {
            counters: Counters::new(layout.namespace()),
            store,
            layout,
            local: Arc::new(LocalTier::new(l1, tags)),
            backplane: Backplane::new(backplane),
            settings,
            breaker,
            flights: Flights::default(),
            throttled: moka::sync::Cache::new(MAX_THROTTLED_KEYS),
            retrying_tags: std::sync::atomic::AtomicBool::new(false),
        });
        engine
            .backplane
            .start(&engine.store, &engine.layout, &engine.local)
            .await?;
        Ok(engine)
    }

    /// Options used when a call does not say otherwise.
    pub(super) fn defaults(&self) -> &EntryOptions {
        &self.settings.defaults
    }

    /// Concurrent loads of one key, shared.
    pub(super) fn flights(&self) -> &Flights {
        &self.flights
    }

    /// Serves `key`'s stale value without calling its loader until `until`
    /// (ms), after the loader failed.
    pub(super) fn throttle_loader(&self, key: &str, until: u64) {
        self.throttled.insert(key.to_owned(), until);
    }

    /// Whether `key`'s loader failed recently enough not to be called.
    pub(super) fn loader_throttled(&self, key: &str, now: u64) -> bool {
        match self.throttled.get(key) {
            Some(until) if now < until => true,
            Some(_) => {
                self.throttled.invalidate(key);
                false
            }
            None => false,
        }
    }

    /// This instance's id.
    pub(super) fn instance(&self) -> &str {
        self.backplane.instance()
    }

    /// Lifetime of the cross-instance loading lock.
    pub(super) fn lock_ttl(&self) -> Duration {
        self.settings.lock_ttl
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.settings.clock.now_ms()
    }

    /// Drops L1 and cached tag versions (after a reconnect or a clear).
    pub(super) fn forget_local(&self) {
        self.local.forget_all();
    }

    pub(super) fn evict_prefix_locally(&self, prefix: &str) {
        self.local.evict_prefix(prefix);
    }

    pub(super) fn evict_locally<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        self.local.evict(keys);
    }

    /// The tag versions this instance knows.
    pub(super) fn tags(&self) -> &TagVersions {
        self.local.tags()
    }

    pub(super) fn check_key(&self, key: &str) -> Result<()> {
        validate("cache key", key, self.settings.max_key_len, false)
    }

    pub(super) fn check_tag(&self, tag: &str) -> Result<()> {
        validate("cache tag", tag, self.settings.max_key_len, false)
    }

    pub(super) fn check_tags(&self, tags: &[String]) -> Result<()> {
        tags.iter().try_for_each(|tag| self.check_tag(tag))
    }

    /// Checks an invalidation prefix (may be empty: everything).
    pub(super) fn check_prefix(&self, prefix: &str) -> Result<()> {
        validate("cache prefix", prefix, self.settings.max_key_len, true)
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

    pub(super) async fn publish(&self, change: CacheChange) {
        self.backplane
            .publish(&self.store, &self.layout, change)
            .await;
    }

    /// The backplane channel and message announcing `change`, when the
    /// backplane is on (see [`Backplane::notice`]).
    pub(super) fn notice(&self, change: CacheChange) -> Option<(String, Vec<u8>)> {
        self.backplane.notice(&self.layout, change)
    }

    /// The fresh value of `key` that a flight of this instance stored since
    /// the caller's lookup: where such a flight always puts it — L1 when
    /// `use_l1` and this cache has one (no round trip), L2 otherwise.
    /// Another instance's landing in L2 meanwhile is not looked for when L1
    /// answers: that rare race costs one more load, where looking would
    /// cost every miss one more round trip.
    pub(super) async fn landed<T>(&self, key: &str, use_l1: bool) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        if use_l1 && self.local.l1().is_some() {
            let now = self.now_ms();
            return self.lookup_l1::<T>(key, now).await?.fresh_at(now);
        }
        self.fresh(key, use_l1).await
    }

    /// The fresh value of `key`: L1 (when `use_l1`), then L2.
    pub(super) async fn fresh<T>(&self, key: &str, use_l1: bool) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let (found, _) = self.lookup::<T>(key, use_l1).await;
        found?.fresh_at(self.now_ms())
    }

    /// Looks `key` up in L1 (when `use_l1`) then L2, returning any entry that
    /// is still kept (fresh or stale) and whose tags are current, and whether
    /// it came from L1.
    pub(super) async fn lookup<T>(&self, key: &str, use_l1: bool) -> (Option<Found<T>>, bool)
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let now = self.now_ms();
        if use_l1 && let Some(found) = self.lookup_l1(key, now).await {
            return (Some(found), true);
        }
        (self.lookup_l2(key, use_l1, now).await, false)
    }

    /// The L1 entry of `key` if it is still kept at `now`, holds a `T` and
    /// its tags are current; an entry whose tags moved on is evicted. The
    /// one rule for what L1 may serve, for single and bulk reads.
    async fn lookup_l1<T>(&self, key: &str, now: u64) -> Option<Found<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let l1 = self.local.l1()?;
        let entry = l1.get(key)?;
        if now >= entry.meta.keep_until {
            l1.invalidate(key);
            return None;
        }
        let value = entry.value.downcast_ref::<T>()?;
        let current = entry.meta.tags.is_empty()
            || self
                .tags()
                .are_current(&self.store, &self.layout, &entry.meta.tags)
                .await
                .unwrap_or(false);
        if !current {
            l1.invalidate(key);
            return None;
        }
        Some(Found {
            value: value.clone(),
            fresh_until: entry.meta.fresh_until,
            fresh: now < entry.meta.fresh_until,
        })
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

    /// Decodes bytes read from L2. A corrupt entry is deleted and reads as a
    /// miss. An entry invalidated by a tag reads as a miss and is left in
    /// place: the write that follows a miss replaces it (or its TTL ends
    /// it, as for the invalidated entries nobody reads again), and deleting
    /// it first would cost every miss after an invalidation one more round
    /// trip. The value itself is decoded last, once the envelope says the
    /// entry is still kept and its tags are current: the miss that follows
    /// every invalidation does not pay for decoding (and decompressing) a
    /// value it throws away.
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
        let Ok(envelope) = envelope::decode(&bytes) else {
            self.corrupt(key, entry_key).await;
            return None;
        };
        if now >= envelope.meta.keep_until {
            return None;
        }
        match self
            .tags()
            .are_current(&self.store, &self.layout, &envelope.meta.tags)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                self.l2_failed("tag versions", &error);
                return None;
            }
        }
        let value = envelope
            .payload()
            .ok()
            .and_then(|payload| envelope.codec.decode::<T>(&payload).ok());
        let Some(value) = value else {
            self.corrupt(key, entry_key).await;
            return None;
        };
        let meta = envelope.meta;
        let (fresh_until, fresh) = (meta.fresh_until, now < meta.fresh_until);
        if fill_l1 && let Some(l1) = self.local.l1() {
            l1.insert(key.to_owned(), l1::entry(value.clone(), meta, weight));
        }
        Some(Found {
            value,
            fresh_until,
            fresh,
        })
    }

    /// Counts, logs and deletes an L2 entry that does not decode (corrupt,
    /// or written by an incompatible version); it then reads as a miss.
    async fn corrupt(&self, key: &str, entry_key: &str) {
        self.counters.decode_errors(1);
        tracing::warn!(
            cache = self.layout.namespace(),
            key,
            "cached value does not decode (corrupt or incompatible); deleting it"
        );
        let _ = Box::pin(self.store.delete(&[entry_key])).await;
    }

    /// Fresh values of `keys` (checked), in order: each from L1 when
    /// [`Engine::lookup_l1`] serves it fresh, the others in one `MGET`.
    pub(super) async fn read_many<T>(&self, keys: &[&str]) -> Vec<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let now = self.now_ms();
        let mut values: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut remaining = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let from_l1 = if self.defaults().l1 {
                self.lookup_l1::<T>(key, now)
                    .await
                    .filter(|found| found.fresh)
                    .map(|found| found.value)
            } else {
                None
            };
            if from_l1.is_some() {
                self.counters.l1_hits(1);
            } else {
                remaining.push(index);
            }
            values.push(from_l1);
        }
        if remaining.is_empty() {
            return values;
        }
        let entry_keys: Vec<String> = remaining
            .iter()
            .map(|&i| self.layout.entry(keys[i]))
            .collect();
        let entry_refs: Vec<&str> = entry_keys.iter().map(String::as_str).collect();
        let fetched = if self.breaker.allows(now) {
            match self.store.get_many(&entry_refs).await {
                Ok(fetched) => {
                    self.breaker.success();
                    fetched
                }
                Err(error) => {
                    self.l2_failed("get_many", &error);
                    vec![None; remaining.len()]
                }
            }
        } else {
            vec![None; remaining.len()]
        };
        let fill_l1 = self.defaults().l1;
        for ((&index, entry_key), bytes) in remaining.iter().zip(&entry_keys).zip(fetched) {
            let found = match bytes {
                Some(bytes) => {
                    self.accept::<T>(keys[index], entry_key, bytes, fill_l1, now)
                        .await
                }
                None => None,
            };
            match found {
                Some(found) if found.fresh => {
                    self.counters.l2_hits(1);
                    values[index] = Some(found.value);
                }
                _ => self.counters.misses(1),
            }
        }
        values
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
        for (key, _) in entries {
            self.check_key(key)?;
        }
        let tag_names: Vec<&str> = options.tags.iter().map(String::as_str).collect();
        let versions = if tag_names.is_empty() {
            Vec::new()
        } else {
            // Without current tag versions a tagged entry cannot be written
            // safely: it would survive an invalidation it missed.
            self.tags()
                .current(&self.store, &self.layout, &tag_names)
                .await?
        };
        let tags: Vec<(String, u64)> = options.tags.iter().cloned().zip(versions).collect();
        let now = self.now_ms();
        let mut prepared = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let ttl = jittered(options.ttl, options.ttl_jitter);
            let fresh_until = now.saturating_add(millis(ttl));
            let meta = Meta {
                fresh_until,
                keep_until: fresh_until.saturating_add(millis(options.retention())),
                tags: tags.clone(),
            };
            let bytes = envelope::encode(
                &meta,
                self.settings.codec,
                *value,
                self.settings.compress_above,
            )
            .map_err(|source| Error::Encode {
                key: (*key).to_owned(),
                source,
            })?;
            prepared.push(Prepared {
                entry_key: self.layout.entry(key),
                ttl: Duration::from_millis(meta.keep_until.saturating_sub(now).max(1)),
                meta,
                bytes,
            });
        }
        if self.breaker.allows(now) {
            let result = if let [one] = prepared.as_slice() {
                self.store
                    .set(&one.entry_key, &one.bytes, Some(one.ttl))
                    .await
            } else {
                let sets: Vec<SetEntry<'_>> = prepared
                    .iter()
                    .map(|entry| SetEntry {
                        key: &entry.entry_key,
                        value: &entry.bytes,
                        ttl: Some(entry.ttl),
                    })
                    .collect();
                self.store.set_many(&sets).await
            };
            match result {
                Ok(()) => {
                    self.breaker.success();
                    let written: usize = prepared.iter().map(|entry| entry.bytes.len()).sum();
                    self.counters.bytes_written(written as u64);
                }
                Err(error) => self.l2_failed("set", &error),
            }
        }
        if options.l1
            && let Some(l1) = self.local.l1()
        {
            for ((key, value), entry) in entries.iter().zip(prepared) {
                let weight = u32::try_from(entry.bytes.len()).unwrap_or(u32::MAX);
                l1.insert(
                    (*key).to_owned(),
                    l1::entry((*value).clone(), entry.meta, weight),
                );
            }
        } else {
            self.evict_locally(entries.iter().map(|(key, _)| *key));
        }
        // After the L2 write is acknowledged (or skipped): never announced
        // before it is stored.
        self.backplane.announce_written(
            &self.store,
            &self.layout,
            entries.iter().map(|(key, _)| (*key).to_owned()),
        );
        Ok(())
    }
}

/// One entry of a write, encoded and ready for L2 and L1.
struct Prepared {
    entry_key: String,
    meta: Meta,
    bytes: Bytes,
    /// How long L2 keeps it: until `meta.keep_until`.
    ttl: Duration,
}

/// `ttl` plus a uniformly random extra in `0..=jitter`.
pub(crate) fn jittered(ttl: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return ttl;
    }
    let extra = fastrand::u64(0..=millis(jitter));
    ttl.saturating_add(Duration::from_millis(extra))
}
