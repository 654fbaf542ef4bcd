//! The queue's metrics, through the `metrics` facade (all labelled `queue`):
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `redkit_queue_enqueued_total` | counter | jobs added (a deduplicated enqueue is not counted) |
//! | `redkit_queue_buffered_total` | counter | jobs buffered in memory while Redis was unreachable |
//! | `redkit_queue_started_total` | counter | attempts started |
//! | `redkit_queue_completed_total` | counter | attempts that succeeded (job removed) |
//! | `redkit_queue_failed_total` | counter | attempts that failed (handler error, panic, malformed payload) |
//! | `redkit_queue_retried_total` | counter | failed attempts scheduled for a retry |
//! | `redkit_queue_dead_total` | counter | jobs moved to the dead-letter list |
//! | `redkit_queue_reclaimed_total` | counter | jobs taken back from a worker whose lease expired |
//! | `redkit_queue_handler_duration_seconds` | histogram | handler run time |
//! | `redkit_queue_oldest_waiting_seconds` | gauge | age of the oldest due job, set whenever counts are read |

//!
//! The handles are registered once per queue ([`QueueMetrics::new`]), so
//! the hot path (one enqueue, one job) neither allocates the label nor
//! looks the metric up again.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

/// One queue's metric handles.
#[derive(Debug)]
pub(super) struct QueueMetrics {
    enqueued: Counter,
    buffered: Counter,
    started: Counter,
    completed: Counter,
    failed: Counter,
    retried: Counter,
    dead: Counter,
    reclaimed: Counter,
    handler_duration: Histogram,
    oldest_waiting: Gauge,
}

impl QueueMetrics {
    /// Registers the handles of queue `queue`.
    pub(super) fn new(queue: &str) -> Self {
        let label = || queue.to_owned();
        QueueMetrics {
            enqueued: metrics::counter!("redkit_queue_enqueued_total", "queue" => label()),
            buffered: metrics::counter!("redkit_queue_buffered_total", "queue" => label()),
            started: metrics::counter!("redkit_queue_started_total", "queue" => label()),
            completed: metrics::counter!("redkit_queue_completed_total", "queue" => label()),
            failed: metrics::counter!("redkit_queue_failed_total", "queue" => label()),
            retried: metrics::counter!("redkit_queue_retried_total", "queue" => label()),
            dead: metrics::counter!("redkit_queue_dead_total", "queue" => label()),
            reclaimed: metrics::counter!("redkit_queue_reclaimed_total", "queue" => label()),
            handler_duration: metrics::histogram!(
                "redkit_queue_handler_duration_seconds",
                "queue" => label()
            ),
            oldest_waiting: metrics::gauge!(
                "redkit_queue_oldest_waiting_seconds",
                "queue" => label()
            ),
        }
    }

    pub(super) fn enqueued(&self) {
        self.enqueued.increment(1);
    }

    pub(super) fn buffered(&self) {
        self.buffered.increment(1);
    }

    pub(super) fn started(&self) {
        self.started.increment(1);
    }

    pub(super) fn completed(&self, took: Duration) {
        self.completed.increment(1);
        self.handler_duration.record(took.as_secs_f64());
    }

    pub(super) fn failed(&self, took: Duration, retried: bool) {
        self.failed.increment(1);
        if retried {
            self.retried.increment(1);
        } else {
            self.dead(1);
        }
        self.handler_duration.record(took.as_secs_f64());
    }

    pub(super) fn dead(&self, jobs: u64) {
        self.dead.increment(jobs);
    }

    pub(super) fn reclaimed(&self, jobs: u64) {
        self.reclaimed.increment(jobs);
    }

    pub(super) fn oldest_waiting(&self, age: Option<u64>) {
        let seconds = age.map_or(0.0, |ms| ms as f64 / 1000.0);
        self.oldest_waiting.set(seconds);
    }
}
