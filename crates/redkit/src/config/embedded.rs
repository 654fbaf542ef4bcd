//! Settings of the embedded in-memory store.

use std::time::Duration;

use crate::error::{Error, Result};

/// Settings of the embedded store, used when no Redis is configured and as the
/// fallback while Redis is down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmbeddedConfig {
    /// Memory budget in bytes (keys, values and per-entry overhead). When a
    /// write would go past it, least-recently-used entries are evicted
    /// (sampled, like Redis' `allkeys-lru`). Default: 64 MiB.
    pub max_memory_bytes: usize,
    /// Number of independently locked shards (rounded up to a power of two).
    /// Default: 32.
    pub shards: usize,
    /// How often the background task removes expired entries that nobody
    /// reads (reads remove them lazily anyway). Default: 100 ms.
    pub active_expiry_interval: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            max_memory_bytes: 64 * 1024 * 1024,
            shards: 32,
            active_expiry_interval: Duration::from_millis(100),
        }
    }
}

impl EmbeddedConfig {
    /// Sets the memory budget in bytes.
    #[must_use]
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// Sets the number of shards.
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Sets the active expiry interval.
    #[must_use]
    pub fn active_expiry_interval(mut self, interval: Duration) -> Self {
        self.active_expiry_interval = interval;
        self
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        if self.max_memory_bytes < 1024 {
            return Err(Error::invalid_config(
                "embedded max_memory_bytes",
                format!("{} bytes is too small", self.max_memory_bytes),
                "at least 1024 bytes",
            ));
        }
        if self.shards == 0 || self.shards > 4096 {
            return Err(Error::invalid_config(
                "embedded shards",
                format!("{} is out of range", self.shards),
                "a number from 1 to 4096",
            ));
        }
        if self.active_expiry_interval.is_zero() {
            return Err(Error::invalid_config(
                "embedded active_expiry_interval",
                "zero",
                "a duration greater than zero",
            ));
        }
        Ok(())
    }
}
