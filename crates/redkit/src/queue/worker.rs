//! [`Worker`]: fetches due jobs, runs them with a concurrency limit, keeps
//! their leases alive and records each outcome.
//!
//! The fetch loop leases at most as many jobs as it has free slots (one
//! script call also returns expired leases of dead workers to the queue).
//! Each job runs in its own task next to a heartbeat that renews its lease
//! every `heartbeat_interval`; the handler itself runs in a further task so a
//! panic fails the attempt instead of the worker. When the outcome cannot be
//! recorded (Redis away), it is retried until the lease would have expired;
//! after that the job is someone else's and runs again (at-least-once).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::handle::Queue;
use super::job::Job;
use super::metrics;
use super::reply::{int_at, text_at};
use super::scripts;
use super::shared::millis;
use crate::connection::Backoff;
use crate::error::{BoxError, Result};
use crate::store::{ScriptArg, ScriptValue};

/// The error recorded for a job whose worker stopped renewing its lease.
pub(super) const LOST_LEASE: &str =
    "the worker stopped renewing its lease (visibility timeout expired); it may have crashed";

/// Longest error text kept with a job, in bytes.
const MAX_ERROR_LEN: usize = 2000;

/// What a worker runs for each job: any `Fn(Job<T>) -> impl Future<Output =
/// Result<(), BoxError>>` (an async closure).
pub trait Handler<T>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = Result<(), BoxError>> + Send + 'static;
    /// Runs the job.
    fn call(&self, job: Job<T>) -> Self::Future;
}

impl<T, F, Fut> Handler<T> for F
where
    F: Fn(Job<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    type Future = Fut;
    fn call(&self, job: Job<T>) -> Fut {
        self(job)
    }
}

/// What [`Worker::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that finished (any outcome) after shutdown began.
    pub finished: usize,
    /// Jobs still running at the deadline: stopped, their leases left to
    /// expire so another worker runs them again.
    pub abandoned: usize,
}

/// A running worker; see [`Queue::start_worker`]. Dropping it stops
/// fetching and lets running jobs finish; [`Worker::shutdown`] also waits.
#[derive(Debug)]
pub struct Worker {
    stop: watch::Sender<Option<Instant>>,
    task: Mutex<Option<JoinHandle<ShutdownReport>>>,
    running: Arc<AtomicUsize>,
}

impl<T: DeserializeOwned + Send + 'static> Queue<T> {
    /// Starts a worker running `handler` for this queue's jobs, with this
    /// handle's concurrency, leases and retries; it runs until
    /// [`Worker::shutdown`]. A handler's `Err` (or panic) fails the attempt:
    /// the job is retried after a backoff, or dead-lettered after
    /// `max_attempts`. A payload that does not decode as `T` is dead-lettered
    /// at once with the decoding error.
    pub fn start_worker<H: Handler<T>>(&self, handler: H) -> Worker {
        Worker::start(self.clone(), handler)
    }
}

impl Worker {
    fn start<T, H>(queue: Queue<T>, handler: H) -> Worker
    where
        T: DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        let (stop, stopped) = watch::channel(None);
        let running = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(fetch_loop(
            queue,
            Arc::new(handler),
            stopped,
            running.clone(),
        ));
        Worker {
            stop,
            task: Mutex::new(Some(task)),
            running,
        }
    }

    /// Jobs running right now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Graceful shutdown: stops fetching, lets running jobs finish for up to
    /// `deadline`, then stops the rest (their leases expire and another
    /// worker runs them again). Calling it again returns an empty report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.stop.send_replace(Some(Instant::now() + deadline));
        let task = self.task.lock().take();
        match task {
            Some(task) => task.await.unwrap_or(ShutdownReport {
                finished: 0,
                abandoned: 0,
            }),
            None => ShutdownReport {
                finished: 0,
                abandoned: 0,
            },
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Stop fetching; running jobs finish on their own.
        self.stop.send_if_modified(|deadline| {
            if deadline.is_none() {
                *deadline = Some(Instant::now() + Duration::from_secs(365 * 24 * 3600));
                true
            } else {
                false
            }
        });
    }
}

struct Fetched {
    id: String,
    payload: Option<Bytes>,
    attempt: u32,
    waited: Duration,
}

async fn fetch_loop<T, H>(
    queue: Queue<T>,
    handler: Arc<H>,
    mut stop: watch::Receiver<Option<Instant>>,
    running: Arc<AtomicUsize>,
) -> ShutdownReport
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let config = queue.config.clone();
    let mut jobs = JoinSet::new();
    let mut fetch_failing = false;
    while stop.borrow().is_none() {
        while jobs.try_join_next().is_some() {}
        let free = config.concurrency.saturating_sub(jobs.len());
        if free == 0 {
            tokio::select! {
                _ = jobs.join_next() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let wakeup = queue.shared.wakeup.notified();
        tokio::pin!(wakeup);
        wakeup.as_mut().enable();
        match fetch(&queue, free).await {
            Ok(fetched) if !fetched.is_empty() => {
                fetch_failing = false;
                for job in fetched {
                    running.fetch_add(1, Ordering::Relaxed);
                    let running = running.clone();
                    let queue = queue.clone();
                    let handler = handler.clone();
                    jobs.spawn(async move {
                        run_job(&queue, handler.as_ref(), job).await;
                        running.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                continue;
            }
            Ok(_) => {
                if fetch_failing {
                    tracing::info!(queue = queue.name(), "fetching jobs again");
                    fetch_failing = false;
                }
            }
            Err(error) => {
                // Once per outage, not once per poll.
                if !fetch_failing {
                    tracing::warn!(queue = queue.name(), %error, "cannot fetch jobs; retrying every poll interval");
                    fetch_failing = true;
                }
            }
        }
        tokio::select! {
            () = &mut wakeup => {}
            () = tokio::time::sleep(config.poll_interval) => {}
            _ = stop.changed() => {}
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    let deadline = (*stop.borrow()).unwrap_or_else(Instant::now);
    let mut finished = 0;
    let _ = tokio::time::timeout_at(deadline, async {
        while jobs.join_next().await.is_some() {
            finished += 1;
        }
    })
    .await;
    let abandoned = jobs.len();
    jobs.abort_all();
    while jobs.join_next().await.is_some() {}
    running.fetch_sub(
        abandoned.min(running.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    if abandoned > 0 {
        tracing::warn!(
            queue = queue.name(),
            abandoned,
            "shutdown deadline reached; abandoned jobs run again after their visibility timeout"
        );
    }
    ShutdownReport {
        finished,
        abandoned,
    }
}

async fn fetch<T>(queue: &Queue<T>, limit: usize) -> Result<Vec<Fetched>> {
    let config = &queue.config;
    let args = [
        ScriptArg::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        ScriptArg::Int(millis(config.visibility_timeout)),
        ScriptArg::Int(i64::from(config.retry.max_attempts)),
        ScriptArg::from(LOST_LEASE),
    ];
    let reply = queue.shared.run(&scripts::FETCH, &args).await?;
    let items = reply.as_array().unwrap_or_default();
    let (reclaimed, dead) = (int_at(items, 0), int_at(items, 1));
    if reclaimed > 0 || dead > 0 {
        tracing::warn!(
            queue = queue.name(),
            reclaimed,
            dead,
            "took back jobs of a worker whose lease expired"
        );
        metrics::reclaimed(queue.name(), u64::try_from(reclaimed + dead).unwrap_or(0));
        metrics::dead(queue.name(), u64::try_from(dead).unwrap_or(0));
    }
    Ok(items
        .get(2..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|job| Fetched {
            id: text_at(job, 0).unwrap_or_default(),
            payload: match &job[1] {
                ScriptValue::Bytes(bytes) => Some(bytes.clone()),
                _ => None,
            },
            attempt: u32::try_from(int_at(job, 2)).unwrap_or(u32::MAX),
            waited: Duration::from_millis(u64::try_from(int_at(job, 3)).unwrap_or(0)),
        })
        .collect())
}

/// How an attempt ended.
enum Outcome {
    Done,
    Retry(Duration, String),
    Dead(String),
}

async fn run_job<T, H>(queue: &Queue<T>, handler: &H, fetched: Fetched)
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let name = queue.name();
    metrics::started(name);
    let started = Instant::now();
    let payload = match decode::<T>(fetched.payload.as_deref()) {
        Ok(payload) => payload,
        Err(problem) => {
            tracing::error!(queue = name, job = %fetched.id, %problem, "dead-lettering a malformed job");
            finish(queue, &fetched, Outcome::Dead(problem)).await;
            metrics::failed(name, started.elapsed(), false);
            return;
        }
    };
    let job = Job {
        id: fetched.id.clone(),
        attempt: fetched.attempt,
        waited: fetched.waited,
        payload,
    };
    let heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
        queue.clone(),
        fetched.id.clone(),
        fetched.attempt,
    )));
    let handler_task = AbortOnDrop(tokio::spawn(handler.call(job)));
    let result = match wait(handler_task).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error_text(&*error)),
        Err(panic) => Err(format!("the handler panicked: {panic}")),
    };
    drop(heartbeat);
    let took = started.elapsed();
    let backoff = Backoff::new(queue.config.retry.clone());
    let outcome = match result {
        Ok(()) => Outcome::Done,
        Err(error) if backoff.exhausted(fetched.attempt) => Outcome::Dead(error),
        Err(error) => Outcome::Retry(backoff.delay(fetched.attempt), error),
    };
    match &outcome {
        Outcome::Done => metrics::completed(name, took),
        Outcome::Retry(delay, error) => {
            tracing::warn!(queue = name, job = %fetched.id, attempt = fetched.attempt, ?delay, %error, "job failed; retrying");
            metrics::failed(name, took, true);
        }
        Outcome::Dead(error) => {
            tracing::error!(queue = name, job = %fetched.id, attempt = fetched.attempt, %error, "job failed for the last time; dead-lettered");
            metrics::failed(name, took, false);
        }
    }
    finish(queue, &fetched, outcome).await;
}

/// The task's value, or the text of its panic.
async fn wait<F: Send + 'static>(mut task: AbortOnDrop<F>) -> std::result::Result<F, String> {
    match (&mut task.0).await {
        Ok(value) => Ok(value),
        Err(error) => Err(panic_text(error)),
    }
}

fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".to_owned()),
        Err(error) => error.to_string(),
    }
}

fn decode<T: DeserializeOwned>(payload: Option<&[u8]>) -> std::result::Result<T, String> {
    let payload = payload.ok_or("malformed job: its payload is missing")?;
    serde_json::from_slice(payload).map_err(|error| {
        format!(
            "malformed payload: {error}; expected the JSON of a {}",
            std::any::type_name::<T>()
        )
    })
}

/// The error and its causes, `: `-separated, at most [`MAX_ERROR_LEN`] bytes.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Renews the lease every `heartbeat_interval` until aborted or lost.
async fn heartbeat<T>(queue: Queue<T>, id: String, attempt: u32) {
    let config = &queue.config;
    let mut ticker = tokio::time::interval(config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let args = [
            ScriptArg::from(id.as_str()),
            ScriptArg::Int(i64::from(attempt)),
            ScriptArg::Int(millis(config.visibility_timeout)),
        ];
        match queue.shared.run(&scripts::HEARTBEAT, &args).await {
            Ok(reply) if reply.as_i64() == Some(1) => {}
            Ok(_) => {
                tracing::warn!(queue = queue.name(), job = %id, "lost the lease of a running job; another worker may run it too");
                return;
            }
            Err(error) => {
                tracing::warn!(queue = queue.name(), job = %id, %error, "cannot renew a job's lease");
            }
        }
    }
}

/// Records the outcome, retrying while the store is unavailable until the
/// lease would have expired.
async fn finish<T>(queue: &Queue<T>, fetched: &Fetched, outcome: Outcome) {
    let (kind, delay, error) = match outcome {
        Outcome::Done => ("done", Duration::ZERO, String::new()),
        Outcome::Retry(delay, error) => ("retry", delay, error),
        Outcome::Dead(error) => ("dead", Duration::ZERO, error),
    };
    let args = [
        ScriptArg::from(fetched.id.as_str()),
        ScriptArg::Int(i64::from(fetched.attempt)),
        ScriptArg::from(kind),
        ScriptArg::Int(millis(delay)),
        ScriptArg::from(error.as_str()),
    ];
    let give_up = Instant::now() + queue.config.visibility_timeout;
    loop {
        match queue.shared.run(&scripts::FINISH, &args).await {
            Ok(reply) => {
                if reply.as_i64() != Some(1) {
                    tracing::warn!(queue = queue.name(), job = %fetched.id, "the job's lease was taken over before it finished; its outcome is not recorded here");
                }
                if kind == "retry" {
                    queue.shared.wakeup.notify_waiters();
                }
                return;
            }
            Err(error) if error.is_unavailable() && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                tracing::error!(queue = queue.name(), job = %fetched.id, %error, "cannot record a job's outcome; it runs again after its visibility timeout");
                return;
            }
        }
    }
}

/// A task aborted when dropped (so a stopped job stops its handler too).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
