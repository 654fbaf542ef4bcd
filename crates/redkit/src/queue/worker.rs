//! [`Worker`]: reads due jobs, runs them with a concurrency limit, keeps
//! their leases alive and records each outcome.
//!
//! The loop reads at most as many jobs as it has free slots with one
//! `XREADGROUP` ([`super::reader`]: blocking on Redis, woken by local
//! enqueues on the embedded store); every `poll_interval` it also runs the
//! maintenance script (due delayed jobs to the Stream, expired leases taken
//! back). Each job runs in its own task; one heartbeat task renews all the
//! worker's leases every `heartbeat_interval` ([`super::leases`]); a panic in the handler fails the
//! attempt, not the worker. When the outcome cannot be recorded (Redis
//! away), it is retried until the lease would have expired; after that the
//! job is someone else's and runs again (at-least-once).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::acks::{Acks, while_available};
use super::handle::Queue;
use super::job::Job;
use super::leases::{self, Leases};
use super::reader::Reader;
use super::reply::int_at;
use super::scripts::{self, EntryFields};
use super::shared::millis;
use crate::connection::Backoff;
use crate::error::{BoxError, Result};
use crate::store::{ScriptArg, ScriptValue, StreamId};

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

/// A job leased by a read: its entry (the lease) and what it says.
pub(super) struct Fetched {
    pub(super) entry: String,
    pub(super) job: EntryFields,
    pub(super) waited: Duration,
}

impl Fetched {
    fn attempt(&self) -> u32 {
        self.job.attempts.saturating_add(1)
    }
}

/// Jobs moved or taken back by one maintenance run, at most.
const MAINTENANCE_BATCH: i64 = 100;

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
    let leases = Arc::new(Leases::default());
    let acks = Arc::new(Acks::default());
    let renewing = tokio::spawn(leases::renew(queue.clone(), leases.clone()));
    let mut jobs = JoinSet::new();
    let mut fetch_failing = false;
    let mut next_maintenance = Instant::now();
    let mut reader = Reader::default();
    let blocks = Reader::blocks(&queue.shared);
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
        if Instant::now() >= next_maintenance {
            next_maintenance = Instant::now() + config.poll_interval;
            if let Err(error) = maintain(&queue).await
                && !fetch_failing
            {
                tracing::warn!(queue = queue.name(), %error, "cannot maintain the queue; retrying every poll interval");
                fetch_failing = true;
            }
        }
        let block = next_maintenance.saturating_duration_since(Instant::now());
        match fetch(&queue, &mut reader, free, block).await {
            Ok(fetched) if !fetched.is_empty() => {
                fetch_failing = false;
                for job in fetched {
                    running.fetch_add(1, Ordering::Relaxed);
                    let running = running.clone();
                    let queue = queue.clone();
                    let handler = handler.clone();
                    let (leases, acks) = (leases.clone(), acks.clone());
                    jobs.spawn(async move {
                        run_job(&queue, handler.as_ref(), &leases, &acks, job).await;
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
                // A missing group (a flushed or restarted Redis) is created
                // by the maintenance script: run it at the next turn.
                if !error.is_unavailable() {
                    next_maintenance = Instant::now();
                }
                // Once per outage, not once per poll.
                if !fetch_failing {
                    tracing::warn!(queue = queue.name(), %error, "cannot fetch jobs; retrying every poll interval");
                    fetch_failing = true;
                }
            }
        }
        // A blocking read that found nothing waited already (unless it
        // failed). Otherwise sleep until a local enqueue, the next
        // maintenance or shutdown (a job finishing frees a slot, but there
        // is nothing to fill it with).
        if blocks && !fetch_failing {
            continue;
        }
        tokio::select! {
            () = &mut wakeup => {}
            () = tokio::time::sleep_until(next_maintenance.max(Instant::now() + Duration::from_millis(1))) => {}
            _ = stop.changed() => {}
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
    renewing.abort();
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

/// Moves due delayed jobs to the Stream and takes back expired leases.
pub(super) async fn maintain<T>(queue: &Queue<T>) -> Result<()> {
    let config = &queue.config;
    let args = [
        ScriptArg::Int(millis(config.visibility_timeout)),
        ScriptArg::Int(i64::from(config.retry.max_attempts)),
        ScriptArg::from(LOST_LEASE),
        ScriptArg::Int(MAINTENANCE_BATCH),
    ];
    let reply = queue.shared.run(&scripts::MAINTAIN, &args).await?;
    let items = reply.as_array().unwrap_or_default();
    let (reclaimed, dead) = (int_at(items, 1), int_at(items, 2));
    if reclaimed > 0 || dead > 0 {
        tracing::warn!(
            queue = queue.name(),
            reclaimed,
            dead,
            "took back jobs of a worker whose lease expired"
        );
        queue
            .shared
            .metrics
            .reclaimed(u64::try_from(reclaimed + dead).unwrap_or(0));
        queue.shared.metrics.dead(u64::try_from(dead).unwrap_or(0));
    }
    Ok(())
}

/// Leases up to `limit` due jobs (one `XREADGROUP`, which on Redis waits up
/// to `block` for the first).
async fn fetch<T>(
    queue: &Queue<T>,
    reader: &mut Reader,
    limit: usize,
    block: Duration,
) -> Result<Vec<Fetched>> {
    parse_fetched(reader.read(&queue.shared, limit, block).await?)
}

/// Leases up to `limit` due jobs now (one non-blocking `XREADGROUP`): for
/// the conformance suite, which leases jobs by hand.
#[cfg(feature = "test-util")]
pub(super) async fn fetch_now<T>(queue: &Queue<T>, limit: usize) -> Result<Vec<Fetched>> {
    parse_fetched(queue.shared.read(limit).await?)
}

fn parse_fetched(reply: ScriptValue) -> Result<Vec<Fetched>> {
    let now_ms = crate::clock::millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let mut fetched = Vec::new();
    for stream in reply.as_array().unwrap_or_default() {
        let entries = stream.as_array().and_then(|s| s.get(1)?.as_array());
        for item in entries.unwrap_or_default() {
            let Some([ScriptValue::Bytes(entry), fields]) = item.as_array() else {
                continue;
            };
            let Ok(entry_id) = std::str::from_utf8(entry).unwrap_or("").parse::<StreamId>() else {
                continue;
            };
            let pairs: Vec<(Bytes, Bytes)> = fields
                .as_array()
                .unwrap_or_default()
                .chunks_exact(2)
                .filter_map(|pair| match pair {
                    [ScriptValue::Bytes(name), ScriptValue::Bytes(value)] => {
                        Some((name.clone(), value.clone()))
                    }
                    _ => None,
                })
                .collect();
            fetched.push(Fetched {
                entry: entry_id.to_string(),
                job: EntryFields::parse(entry_id, &pairs),
                // The entry id is when it was appended (the store's clock;
                // this process' clock may differ a little).
                waited: Duration::from_millis(now_ms.saturating_sub(entry_id.ms)),
            });
        }
    }
    Ok(fetched)
}

/// How an attempt ended.
pub(super) enum Outcome {
    Done,
    Retry(Duration, String),
    Dead(String),
}

async fn run_job<T, H>(
    queue: &Queue<T>,
    handler: &H,
    leases: &Leases,
    acks: &Acks,
    fetched: Fetched,
) where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    let name = queue.name();
    let metrics = &queue.shared.metrics;
    metrics.started();
    let started = Instant::now();
    let attempt = fetched.attempt();
    let payload = match decode::<T>(fetched.job.payload.as_deref()) {
        Ok(payload) => payload,
        Err(problem) => {
            tracing::error!(queue = name, job = %fetched.job.id, %problem, "dead-lettering a malformed job");
            finish(queue, &fetched, Outcome::Dead(problem)).await;
            metrics.failed(started.elapsed(), false);
            return;
        }
    };
    let job = Job {
        id: fetched.job.id.clone(),
        attempt,
        waited: fetched.waited,
        payload,
    };
    leases.hold(&fetched.entry, &fetched.job.id);
    let handled = AssertUnwindSafe(handler.call(job)).catch_unwind().await;
    leases.release(&fetched.entry);
    let result = match handled {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error_text(&*error)),
        Err(panic) => Err(format!("the handler panicked: {}", panic_text(&*panic))),
    };
    let took = started.elapsed();
    let backoff = Backoff::new(queue.config.retry.clone());
    let outcome = match result {
        Ok(()) => Outcome::Done,
        Err(error) if backoff.exhausted(attempt) => Outcome::Dead(error),
        Err(error) => Outcome::Retry(backoff.delay(attempt), error),
    };
    match &outcome {
        Outcome::Done => metrics.completed(took),
        Outcome::Retry(delay, error) => {
            tracing::warn!(queue = name, job = %fetched.job.id, attempt, ?delay, %error, "job failed; retrying");
            metrics.failed(took, true);
        }
        Outcome::Dead(error) => {
            tracing::error!(queue = name, job = %fetched.job.id, attempt, %error, "job failed for the last time; dead-lettered");
            metrics.failed(took, false);
        }
    }
    match outcome {
        // A job never named nor retried has nothing to clean up but its
        // entry: acknowledged with the other successes finishing now.
        Outcome::Done if !fetched.job.named => acks.done(queue, fetched.entry).await,
        outcome => {
            finish(queue, &fetched, outcome).await;
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_owned())
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

/// Records the outcome, retrying while the store is unavailable until the
/// lease would have expired; false when the lease was taken over (or the
/// outcome could not be recorded) and nothing changed.
pub(super) async fn finish<T>(queue: &Queue<T>, fetched: &Fetched, outcome: Outcome) -> bool {
    let recorded = while_available(queue, || finish_script(queue, fetched, &outcome)).await;
    match recorded {
        Ok(ours) => {
            if !ours {
                tracing::warn!(queue = queue.name(), job = %fetched.job.id, "the job's lease was taken over before it finished; its outcome is not recorded here");
            }
            if matches!(outcome, Outcome::Retry(..)) {
                queue.shared.wakeup.notify_waiters();
            }
            ours
        }
        Err(error) => {
            tracing::error!(queue = queue.name(), job = %fetched.job.id, %error, "cannot record a job's outcome; it runs again after its visibility timeout");
            false
        }
    }
}

async fn finish_script<T>(queue: &Queue<T>, fetched: &Fetched, outcome: &Outcome) -> Result<bool> {
    let (kind, delay, error) = match outcome {
        Outcome::Done => ("done", Duration::ZERO, ""),
        Outcome::Retry(delay, error) => ("retry", *delay, error.as_str()),
        Outcome::Dead(error) => ("dead", Duration::ZERO, error.as_str()),
    };
    let args = [
        ScriptArg::from(fetched.entry.as_str()),
        ScriptArg::from(fetched.job.id.as_str()),
        ScriptArg::from(kind),
        ScriptArg::Int(millis(delay)),
        ScriptArg::from(error),
        ScriptArg::Bytes(fetched.job.payload.clone().unwrap_or_default()),
        ScriptArg::Int(i64::from(fetched.attempt())),
    ];
    let reply = queue.shared.run(&scripts::FINISH, &args).await?;
    Ok(reply.as_i64() == Some(1))
}
