//! The top-level handle that ties configuration, connection and store together.

use std::sync::Arc;

use crate::cache::{Cache, CacheBuilder, CacheRegistry};
use crate::clock::{Clock, SystemClock};
use crate::config::{EmbeddedConfig, RedisConfig};
use crate::connection::RedisConnection;
use crate::error::Result;
use crate::health::{self, HealthReport, HealthThresholds};
use crate::queue::{Queue, QueueRegistry};
use crate::store::{AnyStore, Backend, EmbeddedStore, RedisStore};

/// Everything redkit gives a service, behind one cheap-to-clone handle.
#[derive(Debug, Clone)]
pub struct Redkit {
    store: AnyStore,
    connection: Option<RedisConnection>,
    thresholds: Arc<HealthThresholds>,
    caches: CacheRegistry,
    queues: QueueRegistry,
}

impl Redkit {
    /// A builder; with no Redis configuration it builds on the embedded store.
    pub fn builder() -> RedkitBuilder {
        RedkitBuilder::default()
    }

    /// The configured store (Redis, embedded, or Redis with fallback).
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The shared Redis connection, when Redis is configured.
    pub fn connection(&self) -> Option<&RedisConnection> {
        self.connection.as_ref()
    }

    /// A builder for a cache named `namespace` on this handle's store, whose
    /// statistics appear in [`Redkit::health`].
    pub fn cache(&self, namespace: &str) -> CacheBuilder<AnyStore> {
        Cache::builder(self.store.clone(), namespace).registry(self.caches.clone())
    }

    /// The job queue `name` (1 to 200 bytes, no braces or control
    /// characters) for payloads of type `T`; see [`queue`](crate::queue).
    /// Its counts appear in [`Redkit::health`]. Must be called inside a
    /// Tokio runtime (in fallback mode the queue's buffer flusher starts).
    pub fn queue<T>(&self, name: &str) -> Result<Queue<T>> {
        Ok(Queue::new(self.queues.open(&self.store, name)?))
    }

    /// The names of every queue used through any handle on this store.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        use crate::store::Store;
        match self.store.redis_store() {
            Some(redis) if self.store.mode() != Backend::Embedded => {
                redis.set_members(crate::queue::REGISTRY_KEY).await
            }
            _ => {
                self.store
                    .embedded_store()
                    .set_members(crate::queue::REGISTRY_KEY)
                    .await
            }
        }
    }

    /// The configured mode.
    pub fn backend(&self) -> Backend {
        self.store.mode()
    }

    /// Checks Redis and the embedded store and grades the result.
    pub async fn health(&self) -> HealthReport {
        let mut report = health::check(
            self.store.mode(),
            self.connection.as_ref(),
            self.store.embedded_store(),
            &self.caches.snapshot(),
            &self.thresholds,
        )
        .await;
        for queue in self.queues.all() {
            let counts = Queue::<()>::new(queue.clone()).counts().await;
            health::grade_queue(&mut report, queue.name(), counts, &self.thresholds);
        }
        report
    }

    /// Lets in-flight Redis commands finish and closes the connection.
    pub async fn shutdown(&self) {
        if let Some(connection) = &self.connection {
            connection.shutdown().await;
        }
    }
}

/// Consuming builder for [`Redkit`].
#[derive(Debug, Default)]
#[must_use]
pub struct RedkitBuilder {
    redis: Option<RedisConfig>,
    embedded: EmbeddedConfig,
    thresholds: HealthThresholds,
    clock: Option<Arc<dyn Clock>>,
}

impl RedkitBuilder {
    /// Uses Redis as configured (`enabled: false` keeps the embedded store).
    pub fn redis(mut self, config: RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    /// Settings of the embedded store.
    pub fn embedded(mut self, config: EmbeddedConfig) -> Self {
        self.embedded = config;
        self
    }

    /// Health grading limits.
    pub fn health_thresholds(mut self, thresholds: HealthThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// The embedded store's clock (tests use a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates the configuration and starts connecting in the background.
    /// Must be called inside a Tokio runtime. Redis being down is not an
    /// error: the handle reports it and heals when Redis comes back.
    pub fn build(self) -> Result<Redkit> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let embedded = EmbeddedStore::with_clock(self.embedded, clock)?;
        let (store, connection) = match self.redis {
            Some(config) if config.enabled => {
                let fallback = config.fallback;
                let connection = RedisConnection::connect(config)?;
                let redis = RedisStore::new(connection.clone());
                let store = if fallback {
                    AnyStore::fallback(redis, embedded)
                } else {
                    AnyStore::redis(redis, embedded)
                };
                (store, Some(connection))
            }
            _ => (AnyStore::embedded(embedded), None),
        };
        Ok(Redkit {
            store,
            connection,
            thresholds: Arc::new(self.thresholds),
            caches: CacheRegistry::default(),
            queues: QueueRegistry::default(),
        })
    }
}
