//! A circuit breaker in front of L2.
//!
//! When Redis is slow or failing, every call would pay the command timeout
//! before falling back. After `threshold` consecutive L2 failures the breaker
//! opens and the cache skips L2 (serving L1, stale values and loaders) for
//! `open_for`; then one call is let through to probe, and a success closes it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    open_for_ms: u64,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            open_for_ms: u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether L2 may be used at `now_ms`.
    pub(crate) fn allows(&self, now_ms: u64) -> bool {
        now_ms >= self.open_until_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn is_open(&self, now_ms: u64) -> bool {
        !self.allows(now_ms)
    }

    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns true when this one opened the breaker.
    pub(crate) fn failure(&self, now_ms: u64) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold {
            self.failures.store(0, Ordering::Relaxed);
            self.open_until_ms
                .store(now_ms.saturating_add(self.open_for_ms), Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_closes_after_the_break() {
        let breaker = Breaker::new(3, Duration::from_millis(100));
        assert!(breaker.allows(0));
        assert!(!breaker.failure(0));
        breaker.success();
        assert!(!breaker.failure(0));
        assert!(!breaker.failure(0));
        assert!(breaker.failure(10));
        assert!(breaker.is_open(50));
        assert!(breaker.allows(110));
    }
}
