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

use std::time::Duration;

pub(super) fn enqueued(queue: &str) {
    metrics::counter!("redkit_queue_enqueued_total", "queue" => queue.to_owned()).increment(1);
}

pub(super) fn buffered(queue: &str) {
    metrics::counter!("redkit_queue_buffered_total", "queue" => queue.to_owned()).increment(1);
}

pub(super) fn started(queue: &str) {
    metrics::counter!("redkit_queue_started_total", "queue" => queue.to_owned()).increment(1);
}

pub(super) fn completed(queue: &str, took: Duration) {
    metrics::counter!("redkit_queue_completed_total", "queue" => queue.to_owned()).increment(1);
    handler_duration(queue, took);
}

pub(super) fn failed(queue: &str, took: Duration, retried: bool) {
    metrics::counter!("redkit_queue_failed_total", "queue" => queue.to_owned()).increment(1);
    if retried {
        metrics::counter!("redkit_queue_retried_total", "queue" => queue.to_owned()).increment(1);
    } else {
        dead(queue, 1);
    }
    handler_duration(queue, took);
}

pub(super) fn dead(queue: &str, jobs: u64) {
    metrics::counter!("redkit_queue_dead_total", "queue" => queue.to_owned()).increment(jobs);
}

pub(super) fn reclaimed(queue: &str, jobs: u64) {
    metrics::counter!("redkit_queue_reclaimed_total", "queue" => queue.to_owned()).increment(jobs);
}

pub(super) fn oldest_waiting(queue: &str, age: Option<u64>) {
    let seconds = age.map_or(0.0, |ms| ms as f64 / 1000.0);
    metrics::gauge!("redkit_queue_oldest_waiting_seconds", "queue" => queue.to_owned())
        .set(seconds);
}

fn handler_duration(queue: &str, took: Duration) {
    metrics::histogram!("redkit_queue_handler_duration_seconds", "queue" => queue.to_owned())
        .record(took.as_secs_f64());
}
