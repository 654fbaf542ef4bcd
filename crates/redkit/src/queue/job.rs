//! What producers, workers and operators see of a job.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// A job handed to a worker's handler.
#[derive(Debug, Clone)]
pub struct Job<T> {
    /// The job id: given at enqueue, or generated — `#` and the job's first
    /// Stream entry id, or for a delayed job `#` and a sequence number.
    pub id: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// How long the job waited between becoming due and starting.
    pub waited: Duration,
    /// The payload.
    pub payload: T,
}

/// When and under which id to enqueue a job; see [`Queue::enqueue_with`](super::Queue::enqueue_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct EnqueueOptions {
    pub(super) id: Option<String>,
    pub(super) delay: Duration,
}

impl EnqueueOptions {
    /// Due now, with a generated id.
    pub fn new() -> Self {
        Self::default()
    }

    /// An id of your own (1 to 200 bytes, not starting with `#`): while a
    /// job with this id is waiting, delayed or running, enqueueing it again
    /// changes nothing; it can be [cancelled](super::Queue::cancel) while it
    /// waits.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Due after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Due at `at` (a time in the past means now).
    pub fn at(mut self, at: SystemTime) -> Self {
        self.delay = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self
    }
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id.
    pub id: String,
    /// False when a job with this id was already pending (nothing changed).
    pub added: bool,
    /// True when the job was buffered in memory because Redis was
    /// unreachable (fallback mode); it reaches Redis when Redis is back.
    pub buffered: bool,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Due, waiting for a worker.
    Waiting,
    /// Not due yet (enqueued with a delay, or waiting to be retried).
    Delayed,
    /// Leased to a worker.
    Running,
    /// In the dead-letter list.
    Dead,
    /// Buffered in this process while Redis is unreachable.
    Buffered,
}

/// A job's state, attempts so far and last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// The error of the last failed attempt, if any.
    pub last_error: Option<String>,
}

/// A job in the dead-letter list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadJob {
    /// The job id.
    pub id: String,
    /// The stored payload, as text (lossy for non-UTF-8 bytes).
    pub payload: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: String,
    /// When it died, milliseconds since the UNIX epoch (store clock).
    pub died_at_ms: i64,
}

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Due and not started.
    pub waiting: u64,
    /// Not due yet.
    pub delayed: u64,
    /// Leased to workers.
    pub running: u64,
    /// In the dead-letter list.
    pub dead: u64,
    /// Buffered in this process while Redis is unreachable.
    pub buffered: u64,
    /// How long the oldest due job has been waiting, in milliseconds.
    pub oldest_waiting_ms: Option<u64>,
}
