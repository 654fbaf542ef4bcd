//! Time source of the embedded store, injectable for tests.
//!
//! Redis expires keys against its own wall clock and scripts read `TIME`; the
//! embedded store does the same against a [`Clock`]. Production code uses
//! [`SystemClock`]; tests that check time-based behaviour (expiry, windows)
//! use [`ManualClock`] and move time by hand instead of sleeping.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Time since the UNIX epoch.
    fn now(&self) -> Duration;

    /// Milliseconds since the UNIX epoch: the unit of stored expiry times.
    fn now_ms(&self) -> u64 {
        millis(self.now())
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`: the one
/// conversion every stored time and TTL goes through.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    /// Read on every cache hit: whole seconds and milliseconds, without
    /// the 128-bit arithmetic of `Duration::as_millis`.
    fn now_ms(&self) -> u64 {
        let now = self.now();
        now.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(now.subsec_millis()))
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing the current system time.
    pub fn new() -> Self {
        let now = SystemClock.now();
        ManualClock {
            micros: Arc::new(AtomicU64::new(
                u64::try_from(now.as_micros()).unwrap_or(u64::MAX),
            )),
        }
    }

    /// A clock showing `since_epoch`.
    pub fn starting_at(since_epoch: Duration) -> Self {
        ManualClock {
            micros: Arc::new(AtomicU64::new(
                u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX),
            )),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }
}
