//! Capped exponential backoff with jitter.

use std::time::Duration;

use crate::config::RetryConfig;

/// Computes the delay before each reconnection attempt.
///
/// Attempt `n` (from 1) waits `min(initial * 2^(n-1), max)` with "equal
/// jitter": uniformly between half of that and all of it, so a fleet of
/// instances does not reconnect in lock-step. Once `max_attempts` is reached
/// the delay becomes the slow probe interval.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    retry: RetryConfig,
}

impl Backoff {
    /// A backoff following `retry`.
    pub(crate) fn new(retry: RetryConfig) -> Self {
        Backoff { retry }
    }

    /// Whether `failed_attempts` failures exhaust the retries (→ `Degraded`).
    pub(crate) fn exhausted(&self, failed_attempts: u32) -> bool {
        failed_attempts >= self.retry.max_attempts
    }

    /// The delay after `failed_attempts` consecutive failures (1 or more).
    pub(crate) fn delay(&self, failed_attempts: u32) -> Duration {
        if self.exhausted(failed_attempts) {
            return self.retry.degraded_probe_interval;
        }
        let ceiling = self.ceiling(failed_attempts);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(fastrand::u64(0..=spread))
    }

    /// The delay before jitter: `min(initial * 2^(n-1), max)`.
    pub(crate) fn ceiling(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(31);
        self.retry
            .initial_delay
            .saturating_mul(1u32 << exponent)
            .min(self.retry.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap_with_bounded_jitter() {
        let backoff = Backoff::new(
            RetryConfig::default()
                .initial_delay(Duration::from_millis(100))
                .max_delay(Duration::from_secs(1))
                .max_attempts(20),
        );
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(4), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(19), Duration::from_secs(1));
        for attempt in 1..19 {
            for _ in 0..200 {
                let delay = backoff.delay(attempt);
                let ceiling = backoff.ceiling(attempt);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{delay:?} vs {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn exhausted_retries_switch_to_the_probe_interval() {
        let backoff = Backoff::new(
            RetryConfig::default()
                .max_attempts(3)
                .degraded_probe_interval(Duration::from_secs(7)),
        );
        assert!(!backoff.exhausted(2));
        assert!(backoff.exhausted(3));
        assert_eq!(backoff.delay(3), Duration::from_secs(7));
        assert_eq!(backoff.delay(100), Duration::from_secs(7));
    }
}
