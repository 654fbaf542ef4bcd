//! Settings of a queue's producers and workers.

use std::time::Duration;

use crate::config::RetryConfig;
use crate::error::{Error, Result};

/// How a queue retries, leases and buffers jobs. Every field documents its
/// default; build on [`QueueConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Jobs a worker runs at the same time. Default: 10.
    pub concurrency: usize,
    /// How long a started job is leased to its worker. A worker that stops
    /// renewing the lease (it crashed, hung, lost Redis) loses the job to
    /// another worker after this long. Default: 30 s.
    pub visibility_timeout: Duration,
    /// How often a running job's lease is renewed. Default: 10 s (a third
    /// of the visibility timeout); must be below `visibility_timeout`.
    pub heartbeat_interval: Duration,
    /// Retry delays after a failed attempt (capped exponential backoff with
    /// jitter: `initial_delay`, doubling up to `max_delay`) and the number
    /// of attempts before a job goes to the dead-letter list
    /// (`max_attempts`). Default: 1 s, 5 min, 5 attempts.
    pub retry: RetryConfig,
    /// How often a worker runs the maintenance (delayed jobs that came due,
    /// expired leases). On Redis a worker waits for new jobs in a blocking
    /// read, at most this long at a time; on the embedded store it also
    /// looks for jobs this often (local enqueues wake it at once). Default:
    /// 200 ms.
    pub poll_interval: Duration,
    /// In fallback mode, jobs buffered in memory while Redis is unreachable
    /// before enqueue fails with [`Error::QueueBufferFull`]. Default: 10 000.
    pub buffer_capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            concurrency: 10,
            visibility_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            retry: RetryConfig::default()
                .initial_delay(Duration::from_secs(1))
                .max_delay(Duration::from_secs(300))
                .max_attempts(5),
            poll_interval: Duration::from_millis(200),
            buffer_capacity: 10_000,
        }
    }
}

impl QueueConfig {
    /// Sets `concurrency`.
    #[must_use]
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs;
        self
    }

    /// Sets `visibility_timeout`, and `heartbeat_interval` to a third of it.
    #[must_use]
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self.heartbeat_interval = timeout / 3;
        self
    }

    /// Sets `heartbeat_interval`.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets `retry`.
    #[must_use]
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Sets `poll_interval`.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets `buffer_capacity`.
    #[must_use]
    pub fn buffer_capacity(mut self, jobs: usize) -> Self {
        self.buffer_capacity = jobs;
        self
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |setting: &str, problem: String, expected: &str| {
            Err(Error::invalid_config(setting, problem, expected))
        };
        if self.concurrency == 0 {
            return bad("queue concurrency", "0".into(), "at least 1");
        }
        if self.visibility_timeout < Duration::from_millis(10) {
            return bad(
                "queue visibility_timeout",
                format!("{:?}", self.visibility_timeout),
                "at least 10 ms",
            );
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.visibility_timeout {
            return bad(
                "queue heartbeat_interval",
                format!("{:?}", self.heartbeat_interval),
                "more than 0 and less than visibility_timeout",
            );
        }
        if self.retry.max_attempts == 0 {
            return bad("queue retry.max_attempts", "0".into(), "at least 1");
        }
        if self.poll_interval.is_zero() {
            return bad("queue poll_interval", "0".into(), "more than 0");
        }
        Ok(())
    }
}
