//! The consuming builder of [`Cache`].

use std::sync::Arc;
use std::time::Duration;

use super::breaker::Breaker;
use super::codec::Codec;
use super::engine::{Engine, EngineSettings};
use super::handle::Cache;
use super::key::Layout;
use super::l1::L1;
use super::options::EntryOptions;
use super::stats::{CacheRegistry, StatsSource};
use super::tags::TagVersions;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::store::Store;

/// Builds a [`Cache`]; every setting documents its default.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> redkit::Result<()> {
/// use std::time::Duration;
/// use redkit::cache::EntryOptions;
///
/// let kit = redkit::Redkit::builder().build()?;
/// let cache = kit
///     .cache("users")
///     .l1_max_bytes(32 * 1024 * 1024)
///     .default_options(EntryOptions::default().ttl(Duration::from_secs(60)))
///     .build()
///     .await?;
/// cache.set("user:1", &"ada", &cache.options()).await?;
/// assert_eq!(cache.get::<String>("user:1").await?.as_deref(), Some("ada"));
/// # Ok(()) }
/// ```
#[must_use]
pub struct CacheBuilder<S> {
    store: S,
    namespace: String,
    l1_enabled: bool,
    l1_max_bytes: u64,
    codec: Codec,
    compress_above: usize,
    defaults: EntryOptions,
    backplane: bool,
    max_key_len: usize,
    breaker_threshold: u32,
    breaker_open_for: Duration,
    tag_versions_max_age: Duration,
    lock_ttl: Duration,
    clock: Arc<dyn Clock>,
    registry: Option<CacheRegistry>,
}

impl<S: Store> Cache<S> {
    /// A builder for a cache named `namespace` (its keys, tags and channel
    /// live under it) on `store`.
    pub fn builder(store: S, namespace: &str) -> CacheBuilder<S> {
        CacheBuilder::new(store, namespace)
    }
}

impl<S: Store> CacheBuilder<S> {
    fn new(store: S, namespace: &str) -> Self {
        CacheBuilder {
            store,
            namespace: namespace.to_owned(),
            l1_enabled: true,
            l1_max_bytes: 32 * 1024 * 1024,
            codec: Codec::Json,
            compress_above: 4096,
            defaults: EntryOptions::default(),
            backplane: true,
            max_key_len: 1024,
            breaker_threshold: 5,
            breaker_open_for: Duration::from_secs(2),
            tag_versions_max_age: Duration::from_secs(5),
            lock_ttl: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            registry: None,
        }
    }

    /// Reports this cache's statistics in the health report of the handle
    /// that owns `registry`.
    pub(crate) fn registry(mut self, registry: CacheRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Whether the in-process L1 tier exists at all. Default: true.
    pub fn l1(mut self, enabled: bool) -> Self {
        self.l1_enabled = enabled;
        self
    }

    /// L1 capacity in bytes of encoded values (plus keys). Default: 32 MiB.
    ///
    /// L1 is split into shards of at least 1 MiB (up to four per core); a
    /// value heavier than about one shard's share is served from L2 only.
    /// Zero keeps nothing in L1.
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.l1_max_bytes = bytes;
        self
    }

    /// Serialization format. Default: JSON.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Values whose encoding is larger than this many bytes are compressed
    /// with LZ4. Default: 4096. Needs the `lz4` feature (on by default);
    /// without it values are stored uncompressed whatever this says.
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = bytes;
        self
    }

    /// Options used when a call does not say otherwise. Default:
    /// [`EntryOptions::default`] (5 minute TTL, L1 on, no stale window).
    pub fn default_options(mut self, options: EntryOptions) -> Self {
        self.defaults = options;
        self
    }

    /// Publish and apply invalidation messages across instances. Default: true.
    pub fn backplane(mut self, enabled: bool) -> Self {
        self.backplane = enabled;
        self
    }

    /// Longest accepted key, tag or prefix, in bytes. Default: 1024.
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// Consecutive L2 failures that open the circuit breaker, and how long it
    /// stays open. Default: 5 failures, 2 s.
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.breaker_threshold = failures;
        self.breaker_open_for = open_for;
        self
    }

    /// How long an instance trusts a tag version it read, when no backplane
    /// message updated it. Default: 5 s.
    pub fn tag_versions_max_age(mut self, max_age: Duration) -> Self {
        self.tag_versions_max_age = max_age;
        self
    }

    /// Lifetime of the cross-instance loading lock; other instances wait for
    /// the value at most this long. Default: 5 s.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Clock for freshness decisions (a manual one in tests). Default: system.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the settings, subscribes to the backplane (when enabled) and
    /// returns the cache. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid namespace or a zero default
    /// TTL; the store's error when the backplane subscription fails.
    pub async fn build(self) -> Result<Cache<S>> {
        let layout = Layout::new(&self.namespace)?;
        if self.defaults.ttl.is_zero() {
            return Err(Error::invalid_config(
                "cache default ttl",
                "zero",
                "a duration of at least 1 ms",
            ));
        }
        if self.max_key_len == 0 || self.lock_ttl.is_zero() {
            return Err(Error::invalid_config(
                "cache max_key_len / lock_ttl",
                "zero",
                "values greater than zero",
            ));
        }
        let l1 = self.l1_enabled.then(|| L1::new(self.l1_max_bytes));
        let engine = Engine::start(
            self.store,
            layout,
            l1,
            TagVersions::new(self.tag_versions_max_age),
            Breaker::new(self.breaker_threshold, self.breaker_open_for),
            self.backplane,
            EngineSettings {
                defaults: self.defaults,
                codec: self.codec,
                compress_above: self.compress_above,
                max_key_len: self.max_key_len,
                lock_ttl: self.lock_ttl,
                clock: self.clock,
            },
        )
        .await?;
        if let Some(registry) = &self.registry {
            let weak: std::sync::Weak<dyn StatsSource> = Arc::downgrade(&engine) as _;
            registry.register(engine.layout.namespace(), weak);
        }
        Ok(Cache { engine })
    }
}
