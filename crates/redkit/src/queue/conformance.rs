//! One behavioural suite for the job queue, run on every store.
//!
//! Instantiated per store with [`queue_conformance_tests!`](crate::queue_conformance_tests),
//! whose argument is an async function returning `(Redkit, guard)`:
//!
//! ```ignore
//! async fn make() -> (redkit::Redkit, ()) { (redkit::Redkit::builder().build().unwrap(), ()) }
//! redkit::queue_conformance_tests!(make);
//! ```
//!
//! Times are short (tens to hundreds of milliseconds) and every wait polls
//! for its condition with a generous bound, so the suite stays fast and
//! holds under CPU load.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{EnqueueOptions, Job, JobState, Queue, QueueConfig};
use crate::Redkit;
use crate::config::RetryConfig;
use crate::error::BoxError;

/// Instantiates every queue conformance check as a `#[tokio::test]` for the
/// handle made by the async function `$make` (returning `(Redkit, guard)`).
#[macro_export]
macro_rules! queue_conformance_tests {
    ($make:path) => {
        $crate::queue_conformance_tests!(@each $make;
            jobs_are_delivered_and_removed,
            jobs_start_in_enqueue_order,
            delayed_jobs_wait_until_due,
            an_id_deduplicates_while_pending,
            pending_jobs_can_be_cancelled,
            failures_retry_with_backoff_then_dead_letter,
            dead_jobs_can_be_listed_retried_and_purged,
            concurrency_is_limited,
            shutdown_lets_running_jobs_finish,
            jobs_abandoned_at_shutdown_run_again_after_the_visibility_timeout,
            heartbeats_keep_long_jobs_from_running_twice,
            malformed_payloads_are_dead_lettered,
            panicking_handlers_fail_the_attempt,
            bad_names_and_ids_are_rejected,
            a_lease_taken_back_is_fenced,
            a_lease_lost_on_the_last_attempt_dead_letters_the_job,
            counts_and_generated_ids_follow_jobs_everywhere
        );
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (kit, _guard) = $make().await;
                $crate::queue::conformance::$check(&kit).await;
            }
        )*
    };
}

/// The payload used by the suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// A number to tell jobs apart.
    pub n: u32,
}

/// Short leases and retries, for tests.
pub fn fast_config() -> QueueConfig {
    QueueConfig::default()
        .concurrency(4)
        .visibility_timeout(Duration::from_millis(600))
        .poll_interval(Duration::from_millis(20))
        .retry(
            RetryConfig::default()
                .initial_delay(Duration::from_millis(40))
                .max_delay(Duration::from_millis(160))
                .max_attempts(3),
        )
}

fn queue(kit: &Redkit, name: &str, config: QueueConfig) -> Queue<Work> {
    kit.queue::<Work>(name)
        .unwrap()
        .with_config(config)
        .unwrap()
}

/// Polls `probe` every 10 ms until true; panics with `what` after `within`.
async fn wait_until<F, Fut>(what: &str, within: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

type Seen = Arc<Mutex<Vec<(u32, u32)>>>;

/// A handler recording `(n, attempt)` and succeeding.
fn recorder(
    seen: &Seen,
) -> impl Fn(Job<Work>) -> std::future::Ready<Result<(), BoxError>> + Send + Sync + 'static {
    let seen = seen.clone();
    move |job: Job<Work>| {
        seen.lock().push((job.payload.n, job.attempt));
        std::future::ready(Ok(()))
    }
}

/// Enqueued jobs reach the handler once each and leave the queue.
pub async fn jobs_are_delivered_and_removed(kit: &Redkit) {
    let q = queue(kit, "deliver", fast_config());
    // Enough jobs finishing together for their successes to be
    // acknowledged in batches.
    for n in 0..200 {
        let enqueued = q.enqueue(&Work { n }).await.unwrap();
        assert!(enqueued.added && enqueued.id.starts_with('#'));
    }
    assert_eq!(q.counts().await.unwrap().waiting, 200);
    let seen: Seen = Arc::default();
    let worker = q.start_worker(recorder(&seen));
    wait_until("200 jobs", Duration::from_secs(10), || async {
        seen.lock().len() == 200
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let mut got = seen.lock().clone();
    got.sort_unstable();
    assert_eq!(got, (0..200).map(|n| (n, 1)).collect::<Vec<_>>());
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.waiting, counts.running, counts.dead), (0, 0, 0));
    assert_eq!(counts.oldest_waiting_ms, None);
    assert!(
        kit.queue_names()
            .await
            .unwrap()
            .contains(&"deliver".to_owned())
    );
}

/// With one worker slot, jobs start in the order they were enqueued.
pub async fn jobs_start_in_enqueue_order(kit: &Redkit) {
    let q = queue(kit, "order", fast_config().concurrency(1));
    for n in 0..20 {
        q.enqueue(&Work { n }).await.unwrap();
    }
    let seen: Seen = Arc::default();
    let worker = q.start_worker(recorder(&seen));
    wait_until("20 jobs", Duration::from_secs(5), || async {
        seen.lock().len() == 20
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let order: Vec<u32> = seen.lock().iter().map(|(n, _)| *n).collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
}

/// A delayed job is `delayed` until due and starts only then.
pub async fn delayed_jobs_wait_until_due(kit: &Redkit) {
    let q = queue(kit, "delay", fast_config());
    let started = Instant::now();
    let job = q
        .enqueue_after(&Work { n: 1 }, Duration::from_millis(400))
        .await
        .unwrap();
    let state = q.state(&job.id).await.unwrap().unwrap();
    assert_eq!(state.state, JobState::Delayed);
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.waiting, counts.delayed), (0, 1));
    let ran_at: Arc<Mutex<Option<Duration>>> = Arc::default();
    let record = ran_at.clone();
    let worker = q.start_worker(move |_job: Job<Work>| {
        *record.lock() = Some(started.elapsed());
        std::future::ready(Ok::<(), BoxError>(()))
    });
    wait_until("the delayed job", Duration::from_secs(5), || async {
        ran_at.lock().is_some()
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let ran = ran_at.lock().unwrap();
    assert!(ran >= Duration::from_millis(380), "ran after {ran:?}");
    // Enqueue at a time in the past: due now.
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    let job = q.enqueue_at(&Work { n: 2 }, past).await.unwrap();
    assert_eq!(
        q.state(&job.id).await.unwrap().unwrap().state,
        JobState::Waiting
    );
}

/// Enqueueing an id that is waiting, delayed or running changes nothing;
/// once the job is done the id can be used again.
pub async fn an_id_deduplicates_while_pending(kit: &Redkit) {
    let q = queue(kit, "dedupe", fast_config());
    let first = q
        .enqueue_with(
            &Work { n: 1 },
            EnqueueOptions::new()
                .id("job-1")
                .delay(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert!(first.added);
    assert_eq!(first.id, "job-1");
    let again = q
        .enqueue_with(&Work { n: 2 }, EnqueueOptions::new().id("job-1"))
        .await
        .unwrap();
    assert!(!again.added);
    let counts = q.counts().await.unwrap();
    assert_eq!(counts.waiting + counts.delayed, 1);
    let seen: Seen = Arc::default();
    let worker = q.start_worker(recorder(&seen));
    wait_until("job-1", Duration::from_secs(5), || async {
        seen.lock().len() == 1
    })
    .await;
    assert_eq!(seen.lock()[0], (1, 1), "the first payload is kept");
    wait_until("job-1 removed", Duration::from_secs(5), || async {
        q.state("job-1").await.unwrap().is_none()
    })
    .await;
    let later = q
        .enqueue_with(&Work { n: 3 }, EnqueueOptions::new().id("job-1"))
        .await
        .unwrap();
    assert!(later.added);
    wait_until("job-1 again", Duration::from_secs(5), || async {
        seen.lock().len() == 2
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen.lock()[1], (3, 1));
}

/// A waiting or delayed job can be cancelled; it never runs.
pub async fn pending_jobs_can_be_cancelled(kit: &Redkit) {
    let q = queue(kit, "cancel", fast_config());
    q.enqueue_with(
        &Work { n: 1 },
        EnqueueOptions::new()
            .id("later")
            .delay(Duration::from_millis(150)),
    )
    .await
    .unwrap();
    q.enqueue_with(&Work { n: 2 }, EnqueueOptions::new().id("now"))
        .await
        .unwrap();
    assert!(q.cancel("later").await.unwrap());
    assert!(q.cancel("now").await.unwrap());
    assert!(!q.cancel("later").await.unwrap(), "already cancelled");
    assert!(!q.cancel("never-enqueued").await.unwrap());
    assert_eq!(q.state("later").await.unwrap(), None);
    q.enqueue(&Work { n: 3 }).await.unwrap();
    let seen: Seen = Arc::default();
    let worker = q.start_worker(recorder(&seen));
    wait_until("the uncancelled job", Duration::from_secs(5), || async {
        !seen.lock().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(*seen.lock(), vec![(3, 1)]);
}

/// A failing job is retried after growing delays, then dead-lettered with
/// its last error after `max_attempts`.
pub async fn failures_retry_with_backoff_then_dead_letter(kit: &Redkit) {
    let q = queue(kit, "retry", fast_config());
    let job = q.enqueue(&Work { n: 7 }).await.unwrap();
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let record = attempts.clone();
    let worker = q.start_worker(move |job: Job<Work>| {
        record.lock().push(Instant::now());
        let attempt = job.attempt;
        async move { Err::<(), BoxError>(format!("boom on attempt {attempt}").into()) }
    });
    wait_until("the job to die", Duration::from_secs(5), || async {
        q.state(&job.id)
            .await
            .unwrap()
            .is_some_and(|info| info.state == JobState::Dead)
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let times = attempts.lock().clone();
    assert_eq!(times.len(), 3, "max_attempts is 3");
    // Backoff ceilings 40 ms then 80 ms, jitter keeps at least half.
    assert!(
        times[1] - times[0] >= Duration::from_millis(20),
        "{:?}",
        times[1] - times[0]
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(40),
        "{:?}",
        times[2] - times[1]
    );
    let info = q.state(&job.id).await.unwrap().unwrap();
    assert_eq!(info.attempts, 3);
    assert_eq!(info.last_error.as_deref(), Some("boom on attempt 3"));
    let counts = q.counts().await.unwrap();
    assert_eq!(
        (counts.waiting, counts.delayed, counts.running, counts.dead),
        (0, 0, 0, 1)
    );
}

/// Dead jobs are listed with payload and error, and can be retried (with a
/// fresh attempt count) or purged.
pub async fn dead_jobs_can_be_listed_retried_and_purged(kit: &Redkit) {
    let config = fast_config().retry(RetryConfig::default().max_attempts(1));
    let q = queue(kit, "dead", config);
    for n in 0..3 {
        q.enqueue_with(&Work { n }, EnqueueOptions::new().id(format!("d{n}")))
            .await
            .unwrap();
    }
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let seen: Seen = Arc::default();
    let (fail_in, seen_in) = (fail.clone(), seen.clone());
    let worker = q.start_worker(move |job: Job<Work>| {
        let failing = fail_in.load(Ordering::SeqCst);
        if !failing {
            seen_in.lock().push((job.payload.n, job.attempt));
        }
        std::future::ready(if failing {
            Err::<(), BoxError>("nope".into())
        } else {
            Ok(())
        })
    });
    wait_until("3 dead jobs", Duration::from_secs(5), || async {
        q.counts().await.unwrap().dead == 3
    })
    .await;
    let dead = q.dead_jobs(0, 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    let mut ids: Vec<&str> = dead.iter().map(|job| job.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["d0", "d1", "d2"]);
    assert!(
        dead.iter()
            .all(|job| job.error == "nope" && job.attempts == 1)
    );
    assert!(dead.iter().any(|job| job.payload == r#"{"n":1}"#));
    assert_eq!(q.dead_jobs(1, 1).await.unwrap().len(), 1);
    fail.store(false, Ordering::SeqCst);
    assert_eq!(q.retry_dead(Some("d1")).await.unwrap(), 1);
    assert_eq!(q.retry_dead(Some("d1")).await.unwrap(), 0);
    wait_until("d1 retried", Duration::from_secs(5), || async {
        seen.lock().len() == 1
    })
    .await;
    assert_eq!(seen.lock()[0], (1, 1), "fresh attempt count");
    assert_eq!(q.purge_dead(Some("d0")).await.unwrap(), 1);
    assert_eq!(q.counts().await.unwrap().dead, 1);
    assert_eq!(q.purge_dead(None).await.unwrap(), 1);
    assert_eq!(q.counts().await.unwrap().dead, 0);
    assert_eq!(q.state("d2").await.unwrap(), None);
    worker.shutdown(Duration::from_secs(1)).await;
}

/// A worker never runs more jobs at once than its concurrency.
pub async fn concurrency_is_limited(kit: &Redkit) {
    let q = queue(kit, "concurrency", fast_config().concurrency(3));
    for n in 0..12 {
        q.enqueue(&Work { n }).await.unwrap();
    }
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (now_in, peak_in, done_in) = (now.clone(), peak.clone(), done.clone());
    let worker = q.start_worker(move |_job: Job<Work>| {
        let (now, peak, done) = (now_in.clone(), peak_in.clone(), done_in.clone());
        async move {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(60)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<(), BoxError>(())
        }
    });
    wait_until("12 jobs", Duration::from_secs(10), || async {
        done.load(Ordering::SeqCst) == 12
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

/// Shutdown stops fetching and waits for running jobs within the deadline.
pub async fn shutdown_lets_running_jobs_finish(kit: &Redkit) {
    let q = queue(kit, "shutdown", fast_config().concurrency(1));
    q.enqueue(&Work { n: 1 }).await.unwrap();
    q.enqueue(&Work { n: 2 }).await.unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let worker = q.start_worker(move |job: Job<Work>| {
        let record = record.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            record.lock().push((job.payload.n, job.attempt));
            Ok::<(), BoxError>(())
        }
    });
    wait_until("a running job", Duration::from_secs(5), || async {
        worker.running() == 1
    })
    .await;
    let report = worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.finished, report.abandoned), (1, 0));
    assert_eq!(*seen.lock(), vec![(1, 1)]);
    let counts = q.counts().await.unwrap();
    assert_eq!(
        (counts.waiting, counts.running),
        (1, 0),
        "the second job was not fetched"
    );
}

/// A job still running at the shutdown deadline is stopped; after its
/// visibility timeout another worker runs it again.
pub async fn jobs_abandoned_at_shutdown_run_again_after_the_visibility_timeout(kit: &Redkit) {
    let q = queue(kit, "abandon", fast_config());
    let job = q.enqueue(&Work { n: 9 }).await.unwrap();
    let slow = q.start_worker(|_job: Job<Work>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<(), BoxError>(())
    });
    wait_until("the job to start", Duration::from_secs(5), || async {
        slow.running() == 1
    })
    .await;
    let report = slow.shutdown(Duration::from_millis(50)).await;
    assert_eq!((report.finished, report.abandoned), (0, 1));
    assert_eq!(
        q.state(&job.id).await.unwrap().unwrap().state,
        JobState::Running
    );
    let seen: Seen = Arc::default();
    let stopped_at = Instant::now();
    let worker = q.start_worker(recorder(&seen));
    wait_until("the job to run again", Duration::from_secs(5), || async {
        !seen.lock().is_empty()
    })
    .await;
    assert!(
        stopped_at.elapsed() >= Duration::from_millis(300),
        "not before the lease expired"
    );
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(*seen.lock(), vec![(9, 2)]);
    let info = q.state(&job.id).await.unwrap();
    assert_eq!(info, None);
}

/// A job running longer than the visibility timeout keeps its lease by
/// heartbeats: a second worker never gets it.
pub async fn heartbeats_keep_long_jobs_from_running_twice(kit: &Redkit) {
    let config = fast_config()
        .visibility_timeout(Duration::from_millis(300))
        .heartbeat_interval(Duration::from_millis(60));
    let q = queue(kit, "heartbeat", config);
    q.enqueue(&Work { n: 1 }).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let runs = runs.clone();
        move |_job: Job<Work>| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1000)).await;
                Ok::<(), BoxError>(())
            }
        }
    };
    let first = q.start_worker(handler.clone());
    let second = q.start_worker(handler);
    wait_until("the job to finish", Duration::from_secs(10), || async {
        runs.load(Ordering::SeqCst) >= 1 && q.counts().await.unwrap().running == 0
    })
    .await;
    first.shutdown(Duration::from_secs(1)).await;
    second.shutdown(Duration::from_secs(1)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(q.counts().await.unwrap().waiting, 0);
}

/// A payload that does not decode goes to the dead-letter list at once with
/// the decoding error; the queue keeps going.
pub async fn malformed_payloads_are_dead_lettered(kit: &Redkit) {
    let typed = queue(kit, "hostile", fast_config());
    let raw = kit.queue::<serde_json::Value>("hostile").unwrap();
    let bad = raw
        .enqueue(&serde_json::json!({"n": "not a number", "<script>": [1, 2]}))
        .await
        .unwrap();
    let also_bad = raw.enqueue(&serde_json::json!(null)).await.unwrap();
    typed.enqueue(&Work { n: 5 }).await.unwrap();
    let seen: Seen = Arc::default();
    let worker = typed.start_worker(recorder(&seen));
    wait_until("the good job", Duration::from_secs(5), || async {
        seen.lock().len() == 1
    })
    .await;
    wait_until("2 dead jobs", Duration::from_secs(5), || async {
        typed.counts().await.unwrap().dead == 2
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    for id in [&bad.id, &also_bad.id] {
        let info = typed.state(id).await.unwrap().unwrap();
        assert_eq!(info.state, JobState::Dead);
        assert_eq!(info.attempts, 1, "not retried");
        let error = info.last_error.unwrap();
        assert!(
            error.starts_with("malformed payload:") && error.contains("Work"),
            "{error}"
        );
    }
}

/// A panicking handler fails its attempt (retried, then dead) and the
/// worker keeps running.
pub async fn panicking_handlers_fail_the_attempt(kit: &Redkit) {
    let q = queue(kit, "panics", fast_config());
    let job = q.enqueue(&Work { n: 0 }).await.unwrap();
    q.enqueue(&Work { n: 1 }).await.unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let worker = q.start_worker(move |job: Job<Work>| {
        let record = record.clone();
        async move {
            assert!(job.payload.n != 0, "cannot handle zero");
            record.lock().push((job.payload.n, job.attempt));
            Ok::<(), BoxError>(())
        }
    });
    wait_until(
        "the panicking job to die",
        Duration::from_secs(5),
        || async {
            q.state(&job.id)
                .await
                .unwrap()
                .is_some_and(|info| info.state == JobState::Dead)
        },
    )
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(*seen.lock(), vec![(1, 1)]);
    let error = q.state(&job.id).await.unwrap().unwrap().last_error.unwrap();
    assert!(
        error.contains("panicked") && error.contains("cannot handle zero"),
        "{error}"
    );
}

/// Queue names and job ids that would break keys are refused with a clear
/// error, never stored.
pub async fn bad_names_and_ids_are_rejected(kit: &Redkit) {
    for name in ["", "a{b}", "line\nbreak", &"x".repeat(201)] {
        let error = kit.queue::<Work>(name).unwrap_err();
        assert!(error.to_string().contains("queue name"), "{error}");
    }
    let q = queue(kit, "ids", fast_config());
    for id in ["", "#123", "tab\there", &"y".repeat(201)] {
        let error = q
            .enqueue_with(&Work { n: 1 }, EnqueueOptions::new().id(id))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("job id"), "{error}");
    }
    assert!(QueueConfig::default().concurrency(0).validate().is_err());
    assert!(
        QueueConfig::default()
            .heartbeat_interval(Duration::from_secs(60))
            .validate()
            .is_err()
    );
    assert_eq!(q.counts().await.unwrap().waiting, 0);
}

/// Leases one job the way a worker does, without running it or renewing
/// its lease: a worker that hangs or died.
async fn lease_one(q: &Queue<Work>) -> super::worker::Fetched {
    super::worker::maintain(q).await.unwrap();
    let mut fetched = super::worker::fetch_now(q, 1).await.unwrap();
    assert_eq!(fetched.len(), 1, "one job to lease");
    fetched.remove(0)
}

/// Runs the maintenance (as idle workers do every poll) until the lease of
/// job `id` has been taken back.
async fn until_taken_back(q: &Queue<Work>, id: &str) -> JobState {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        super::worker::maintain(q).await.unwrap();
        let state = q.state(id).await.unwrap().unwrap().state;
        if state != JobState::Running {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the lease to expire"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A worker whose lease expired and was taken back can no longer renew,
/// complete, retry or dead-letter the job: the lease is fenced. The job
/// runs again with the lost attempt counted, and completes once.
pub async fn a_lease_taken_back_is_fenced(kit: &Redkit) {
    use super::worker::{Outcome, finish};

    let q = queue(kit, "fenced", fast_config());
    q.enqueue_with(&Work { n: 5 }, EnqueueOptions::new().id("fenced"))
        .await
        .unwrap();
    let plain = q.enqueue(&Work { n: 6 }).await.unwrap();
    let stale = lease_one(&q).await;
    let stale_plain = lease_one(&q).await;
    assert_eq!(stale.job.id, "fenced");
    assert_eq!(stale_plain.job.id, plain.id);
    let both = vec![stale.entry.clone(), stale_plain.entry.clone()];
    let mut renewed = q.shared.touch(&both).await.unwrap();
    renewed.sort_unstable();
    let mut expected = both.clone();
    expected.sort_unstable();
    assert_eq!(renewed, expected, "one heartbeat renews every held lease");
    assert_eq!(until_taken_back(&q, "fenced").await, JobState::Waiting);
    assert_eq!(until_taken_back(&q, &plain.id).await, JobState::Waiting);
    let info = q.state("fenced").await.unwrap().unwrap();
    assert_eq!(info.attempts, 1, "the lost attempt counts");
    assert!(info.last_error.unwrap().contains("visibility timeout"));

    assert_eq!(
        q.shared.touch(&both).await.unwrap(),
        Vec::<String>::new(),
        "heartbeat"
    );
    assert!(!finish(&q, &stale, Outcome::Done).await, "complete");
    assert!(!finish(&q, &stale_plain, Outcome::Done).await, "complete");
    let retry = Outcome::Retry(Duration::ZERO, "late".into());
    assert!(!finish(&q, &stale, retry).await, "retry");
    assert!(
        !finish(&q, &stale, Outcome::Dead("late".into())).await,
        "dead-letter"
    );
    assert_eq!(q.counts().await.unwrap().dead, 0);
    assert_eq!(q.counts().await.unwrap().waiting, 2);

    let seen: Seen = Arc::default();
    let worker = q.start_worker(recorder(&seen));
    wait_until("both jobs", Duration::from_secs(5), || async {
        q.state("fenced").await.unwrap().is_none() && q.state(&plain.id).await.unwrap().is_none()
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    let mut seen = seen.lock().clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        vec![(5, 2), (6, 2)],
        "each ran once more, as attempt 2"
    );
}

/// Attempts lost to crashes count toward `max_attempts`: a lease that
/// expires on the last attempt sends the job to the dead-letter list.
pub async fn a_lease_lost_on_the_last_attempt_dead_letters_the_job(kit: &Redkit) {
    let config = fast_config().retry(RetryConfig::default().max_attempts(1));
    let q = queue(kit, "lost", config);
    let job = q.enqueue(&Work { n: 1 }).await.unwrap();
    let stale = lease_one(&q).await;
    assert_eq!(until_taken_back(&q, &job.id).await, JobState::Dead);
    assert!(!super::worker::finish(&q, &stale, super::worker::Outcome::Done).await);
    let dead = q.dead_jobs(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, job.id);
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].payload, r#"{"n":1}"#);
    assert!(
        dead[0].error.contains("visibility timeout"),
        "{}",
        dead[0].error
    );
}

/// Due counts cover both places a due job waits (the Stream, and the
/// delayed set before a worker moves it); a generated id names its job
/// for `state` and `cancel`, like a given one.
pub async fn counts_and_generated_ids_follow_jobs_everywhere(kit: &Redkit) {
    let q = queue(kit, "counts", fast_config());
    let now = q.enqueue(&Work { n: 1 }).await.unwrap();
    let soon = q
        .enqueue_after(&Work { n: 2 }, Duration::from_millis(50))
        .await
        .unwrap();
    let later = q
        .enqueue_after(&Work { n: 3 }, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(now.id.starts_with('#') && soon.id.starts_with('#'));
    wait_until("the short delay", Duration::from_secs(5), || async {
        q.counts().await.unwrap().waiting == 2
    })
    .await;
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.delayed, counts.running, counts.dead), (1, 0, 0));
    assert!(counts.oldest_waiting_ms.is_some());
    assert_eq!(
        q.state(&now.id).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    assert_eq!(
        q.state(&later.id).await.unwrap().unwrap().state,
        JobState::Delayed
    );
    assert!(q.cancel(&now.id).await.unwrap());
    assert!(q.cancel(&later.id).await.unwrap());
    assert_eq!(q.state(&now.id).await.unwrap(), None);
    assert!(!q.cancel("#1-0").await.unwrap(), "an id naming no job");
    let seen: Seen = Arc::default();
    let worker = q.start_worker(recorder(&seen));
    wait_until("the due job", Duration::from_secs(5), || async {
        !seen.lock().is_empty()
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(*seen.lock(), vec![(2, 1)]);
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.waiting, counts.delayed, counts.running), (0, 0, 0));
    assert_eq!(counts.oldest_waiting_ms, None);
}
