//! The background sampler and the bounded history it fills.
//!
//! Every `probe_interval` (1 s by default) the sampler asks redkit for its
//! health report (one PING, INFO and DBSIZE when Redis is configured) and
//! reads the `tasks` cache's and the rate limiter's counters. It is the
//! service's one health probe: `/health`, `/health/ready` and
//! `/health/redis` answer from its last report, so no request makes Redis
//! work. It keeps the report for the
//! current values and appends one [`Sample`] to a ring buffer of about the
//! last [`HISTORY`]; older samples fall off, so memory stays bounded.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redkit::Redkit;
use redkit::cache::{Cache, CacheStats};
use redkit::connection::ConnectionState;
use redkit::health::{HealthReport, HealthStatus};
use redkit::ratelimit::RateLimiter;
use redkit::store::{AnyStore, Backend};
use serde::Serialize;
use tokio::time::MissedTickBehavior;

use crate::shutdown::Shutdown;

/// How far back the history reaches.
pub(crate) const HISTORY: Duration = Duration::from_secs(300);

/// The most samples kept, whatever the interval.
const MAX_SAMPLES: usize = 1500;

/// The shortest sampling interval (shorter settings are raised to it).
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The interval actually used for a configured one.
pub(crate) fn effective_interval(configured: Duration) -> Duration {
    configured.max(MIN_INTERVAL)
}

/// Samples kept at `interval` to cover [`HISTORY`], at most [`MAX_SAMPLES`].
pub(crate) fn capacity(interval: Duration) -> usize {
    let wanted = HISTORY.as_millis().div_ceil(interval.as_millis().max(1));
    usize::try_from(wanted)
        .unwrap_or(MAX_SAMPLES)
        .clamp(1, MAX_SAMPLES)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One point of the history. Rates and counts cover the time since the
/// previous sample, so the chart shows what happened then, not since start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Sample {
    /// When it was taken, in Unix milliseconds.
    pub(crate) t: u64,
    /// The health verdict.
    pub(crate) status: HealthStatus,
    /// Who served: `redis` or `embedded`.
    pub(crate) serving: Backend,
    /// The Redis connection state, when Redis is configured.
    pub(crate) connection: Option<ConnectionState>,
    /// PING round trip, when Redis answered.
    pub(crate) ping_ms: Option<f64>,
    /// `tasks` cache hits (either layer) over reads, when there were reads.
    pub(crate) hit_rate: Option<f64>,
    /// L1 hits over reads.
    pub(crate) l1_hit_rate: Option<f64>,
    /// L2 hits over the reads that reached L2.
    pub(crate) l2_hit_rate: Option<f64>,
    /// `tasks` cache reads.
    pub(crate) reads: u64,
    /// Requests the rate limiter admitted.
    pub(crate) allowed: u64,
    /// Requests the rate limiter rejected.
    pub(crate) rejected: u64,
    /// Redis `used_memory`, when Redis answered.
    pub(crate) redis_used_memory: Option<u64>,
    /// Bytes the embedded store counts against its budget.
    pub(crate) embedded_used_bytes: u64,
}

/// What the sampler shares with the data endpoint.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The last samples, oldest first, at most `capacity`.
    history: VecDeque<Sample>,
    capacity: usize,
    /// The last health report and when it was taken.
    latest: Option<(u64, HealthReport)>,
}

impl Shared {
    pub(crate) fn new(capacity: usize) -> Self {
        Shared {
            history: VecDeque::with_capacity(capacity),
            capacity,
            latest: None,
        }
    }

    fn record(&mut self, sample: Sample, report: HealthReport) {
        while self.history.len() >= self.capacity {
            self.history.pop_front();
        }
        self.latest = Some((sample.t, report));
        self.history.push_back(sample);
    }

    /// The samples taken after `since` (Unix ms), oldest first.
    pub(crate) fn since(&self, since: u64) -> Vec<Sample> {
        let start = self.history.partition_point(|sample| sample.t <= since);
        self.history.range(start..).cloned().collect()
    }

    /// The last health report and when it was taken.
    pub(crate) fn latest(&self) -> Option<&(u64, HealthReport)> {
        self.latest.as_ref()
    }
}

/// Locks `shared`; a panic elsewhere while it was held leaves whole values
/// behind (every update is one push or one assignment), so poisoning is
/// ignored.
pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the sampler reads.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) kit: Redkit,
    pub(crate) tasks: Cache<AnyStore>,
    pub(crate) limiter: RateLimiter<AnyStore>,
}

/// Counter values at one sample, to difference with the next.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    cache: CacheStats,
    allowed: u64,
    rejected: u64,
}

impl Counters {
    pub(crate) fn read(sources: &Sources) -> Self {
        let limiter = sources.limiter.stats();
        Counters {
            cache: sources.tasks.stats(),
            allowed: limiter.allowed,
            rejected: limiter.rejected,
        }
    }
}

/// Builds the sample for `report`, with rates over `now - before`.
fn sample(t: u64, report: &HealthReport, before: Counters, now: Counters) -> Sample {
    let reads = CacheStats {
        l1_hits: now.cache.l1_hits.saturating_sub(before.cache.l1_hits),
        l2_hits: now.cache.l2_hits.saturating_sub(before.cache.l2_hits),
        misses: now.cache.misses.saturating_sub(before.cache.misses),
        ..CacheStats::default()
    };
    let redis = report.redis.as_ref();
    Sample {
        t,
        status: report.status,
        serving: report.serving,
        connection: redis.map(|redis| redis.state),
        ping_ms: redis.and_then(|redis| redis.ping_ms),
        hit_rate: reads.hit_rate(),
        l1_hit_rate: reads.l1_hit_rate(),
        l2_hit_rate: reads.l2_hit_rate(),
        reads: reads.l1_hits + reads.l2_hits + reads.misses,
        allowed: now.allowed.saturating_sub(before.allowed),
        rejected: now.rejected.saturating_sub(before.rejected),
        redis_used_memory: redis
            .and_then(|redis| redis.info.as_ref())
            .and_then(|info| info.used_memory),
        embedded_used_bytes: u64::try_from(report.embedded.used_bytes).unwrap_or(u64::MAX),
    }
}

/// Takes one health report and sample into `shared`; returns the counters
/// it read, for the next sample's rates.
pub(crate) async fn probe(sources: &Sources, shared: &Mutex<Shared>, before: Counters) -> Counters {
    let report = sources.kit.health().await;
    let now = Counters::read(sources);
    let sample = sample(unix_ms(), &report, before, now);
    lock(shared).record(sample, report);
    now
}

/// Samples every `interval` into `shared` until `shutdown`, or until the
/// dashboard is dropped. The first tick comes one interval after start
/// (the caller took the first sample).
pub(crate) async fn run(
    sources: Sources,
    shared: Weak<Mutex<Shared>>,
    interval: Duration,
    shutdown: Shutdown,
    mut before: Counters,
) {
    let mut stopping = pin!(shutdown.wait());
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A slow health check (Redis timing out) delays the next sample rather
    // than bunching several up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stopping => return,
            _ = ticker.tick() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        before = tokio::select! {
            () = &mut stopping => return,
            now = probe(&sources, &shared, before) => now,
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(t: u64) -> Sample {
        Sample {
            t,
            status: HealthStatus::Healthy,
            serving: Backend::Embedded,
            connection: None,
            ping_ms: None,
            hit_rate: None,
            l1_hit_rate: None,
            l2_hit_rate: None,
            reads: 0,
            allowed: 0,
            rejected: 0,
            redis_used_memory: None,
            embedded_used_bytes: 0,
        }
    }

    #[test]
    fn capacity_covers_the_history_within_bounds() {
        assert_eq!(capacity(Duration::from_secs(2)), 150);
        assert_eq!(capacity(Duration::from_millis(200)), 1500);
        assert_eq!(capacity(Duration::from_millis(1)), MAX_SAMPLES);
        assert_eq!(capacity(Duration::from_secs(3600)), 1);
        assert_eq!(effective_interval(Duration::ZERO), MIN_INTERVAL);
    }

    #[tokio::test]
    async fn history_is_a_bounded_ring_read_after_a_time() {
        let kit = Redkit::builder().build().unwrap();
        let report = kit.health().await;
        let mut shared = Shared::new(3);
        for t in 1..=5 {
            shared.record(at(t), report.clone());
        }
        let kept: Vec<u64> = shared.since(0).iter().map(|sample| sample.t).collect();
        assert_eq!(kept, [3, 4, 5]);
        let newer: Vec<u64> = shared.since(3).iter().map(|sample| sample.t).collect();
        assert_eq!(newer, [4, 5]);
        assert!(shared.since(5).is_empty());
        assert_eq!(shared.latest().map(|(t, _)| *t), Some(5));
    }

    #[tokio::test]
    async fn rates_cover_the_interval_only() {
        let kit = Redkit::builder().build().unwrap();
        let report = kit.health().await;
        let before = Counters {
            cache: CacheStats {
                l1_hits: 100,
                misses: 100,
                ..CacheStats::default()
            },
            allowed: 10,
            rejected: 1,
        };
        let now = Counters {
            cache: CacheStats {
                l1_hits: 103,
                l2_hits: 0,
                misses: 101,
                ..CacheStats::default()
            },
            allowed: 14,
            rejected: 3,
        };
        let sample = sample(7, &report, before, now);
        assert_eq!(sample.reads, 4);
        assert_eq!(sample.hit_rate, Some(0.75));
        assert_eq!(sample.l1_hit_rate, Some(0.75));
        assert_eq!(sample.l2_hit_rate, Some(0.0));
        assert_eq!((sample.allowed, sample.rejected), (4, 2));
        assert_eq!(sample.serving, Backend::Embedded);
        assert_eq!(sample.ping_ms, None);
        let idle = super::sample(8, &report, now, now);
        assert_eq!((idle.reads, idle.hit_rate), (0, None));
    }
}
