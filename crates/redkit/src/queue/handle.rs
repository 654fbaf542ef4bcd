//! [`Queue`]: the typed handle producers, workers and operators use.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use super::config::QueueConfig;
use super::job::{DeadJob, EnqueueOptions, Enqueued, JobInfo, JobState, QueueCounts};
use super::keys::validate_job_id;
use super::reply::{int_at, text_at};
use super::scripts;
use super::shared::QueueShared;
use crate::error::{Error, Result};
use crate::store::{ScriptArg, ScriptValue};

/// Most dead jobs one [`Queue::retry_dead`] / [`Queue::purge_dead`] call
/// touches (so one call never blocks Redis for long); call again for more.
pub const DEAD_BATCH: usize = 1000;

/// A typed job queue on the handle's store; see the [module](super) docs.
/// Cheap to clone; every handle of one name in a process shares its state.
pub struct Queue<T> {
    pub(super) shared: Arc<QueueShared>,
    pub(super) config: Arc<QueueConfig>,
    payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
            config: self.config.clone(),
            payload: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.shared.name())
            .field("config", &self.config)
            .finish()
    }
}

impl<T> Queue<T> {
    pub(crate) fn new(shared: Arc<QueueShared>) -> Self {
        Queue {
            shared,
            config: Arc::new(QueueConfig::default()),
            payload: PhantomData,
        }
    }

    /// The same queue with `config` for this handle's enqueues and workers.
    pub fn with_config(mut self, config: QueueConfig) -> Result<Self> {
        config.validate()?;
        self.config = Arc::new(config);
        Ok(self)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// The settings of this handle.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Removes a job that is still waiting or delayed (or buffered); false
    /// when there is none (unknown, already running, dead or done). A
    /// running job cannot be cancelled: its handler should check whether
    /// its work still applies.
    pub async fn cancel(&self, id: &str) -> Result<bool> {
        if let Some(buffer) = &self.shared.buffer
            && buffer.cancel(id)
        {
            return Ok(true);
        }
        let reply = self
            .shared
            .run(&scripts::CANCEL, &[ScriptArg::from(id)])
            .await?;
        Ok(reply.as_i64() == Some(1))
    }

    /// Where job `id` is, or `None` when it is not pending (unknown or done).
    pub async fn state(&self, id: &str) -> Result<Option<JobInfo>> {
        if self.shared.buffer.as_ref().is_some_and(|b| b.contains(id)) {
            return Ok(Some(JobInfo {
                state: JobState::Buffered,
                attempts: 0,
                last_error: None,
            }));
        }
        let reply = self
            .shared
            .run(&scripts::STATE, &[ScriptArg::from(id)])
            .await?;
        let items = reply.as_array().unwrap_or_default();
        let state = match items.first() {
            Some(ScriptValue::Bytes(state)) => match &state[..] {
                b"waiting" => JobState::Waiting,
                b"delayed" => JobState::Delayed,
                b"running" => JobState::Running,
                b"dead" => JobState::Dead,
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(JobInfo {
            state,
            attempts: int_at(items, 1).try_into().unwrap_or(0),
            last_error: text_at(items, 2),
        }))
    }

    /// How many jobs are in each state (one round trip); also sets the
    /// oldest-waiting gauge.
    pub async fn counts(&self) -> Result<QueueCounts> {
        let reply = self.shared.run(&scripts::COUNTS, &[]).await?;
        let items = reply.as_array().unwrap_or_default();
        let count = |i| u64::try_from(int_at(items, i)).unwrap_or(0);
        let oldest = u64::try_from(int_at(items, 4)).ok();
        self.shared.metrics.oldest_waiting(oldest);
        Ok(QueueCounts {
            waiting: count(0),
            delayed: count(1),
            running: count(2),
            dead: count(3),
            buffered: self.shared.buffer.as_ref().map_or(0, |b| b.len() as u64),
            oldest_waiting_ms: oldest,
        })
    }

    /// Dead jobs, oldest death first, skipping `offset`, at most `limit`.
    pub async fn dead_jobs(&self, offset: usize, limit: usize) -> Result<Vec<DeadJob>> {
        let args = [
            ScriptArg::Int(as_i64(offset)),
            ScriptArg::Int(as_i64(limit)),
        ];
        let reply = self.shared.run(&scripts::DEAD_LIST, &args).await?;
        Ok(reply
            .as_array()
            .unwrap_or_default()
            .chunks_exact(5)
            .map(|job| DeadJob {
                id: text_at(job, 0).unwrap_or_default(),
                payload: text_at(job, 1).unwrap_or_default(),
                attempts: int_at(job, 2).try_into().unwrap_or(0),
                error: text_at(job, 3).unwrap_or_default(),
                died_at_ms: int_at(job, 4),
            })
            .collect())
    }

    /// Puts dead job `id` (or, with `None`, up to [`DEAD_BATCH`] of the
    /// oldest) back to waiting with a fresh attempt count; returns how many.
    pub async fn retry_dead(&self, id: Option<&str>) -> Result<u64> {
        self.dead_action("retry", id).await
    }

    /// Deletes dead job `id` (or, with `None`, up to [`DEAD_BATCH`] of the
    /// oldest); returns how many.
    pub async fn purge_dead(&self, id: Option<&str>) -> Result<u64> {
        self.dead_action("purge", id).await
    }

    async fn dead_action(&self, action: &str, id: Option<&str>) -> Result<u64> {
        let args = [
            ScriptArg::from(action),
            ScriptArg::from(id.unwrap_or("")),
            ScriptArg::Int(as_i64(DEAD_BATCH)),
        ];
        let reply = self.shared.run(&scripts::DEAD_ACTION, &args).await?;
        let affected = u64::try_from(reply.as_i64().unwrap_or(0)).unwrap_or(0);
        if action == "retry" && affected > 0 {
            self.shared.wakeup.notify_waiters();
        }
        Ok(affected)
    }
}

impl<T: Serialize> Queue<T> {
    /// Enqueues `payload`, due now.
    pub async fn enqueue(&self, payload: &T) -> Result<Enqueued> {
        self.enqueue_with(payload, EnqueueOptions::new()).await
    }

    /// Enqueues `payload`, due after `delay`.
    pub async fn enqueue_after(&self, payload: &T, delay: Duration) -> Result<Enqueued> {
        self.enqueue_with(payload, EnqueueOptions::new().delay(delay))
            .await
    }

    /// Enqueues `payload`, due at `at`.
    pub async fn enqueue_at(&self, payload: &T, at: SystemTime) -> Result<Enqueued> {
        self.enqueue_with(payload, EnqueueOptions::new().at(at))
            .await
    }

    /// Enqueues `payload` as `options` say (id, delay). Fails with
    /// [`Error::QueueBufferFull`] when Redis is unreachable in fallback mode
    /// and the buffer is full, and with [`Error::Unavailable`] in Redis-only
    /// mode: an enqueue that returns `Ok` is stored (or buffered, as
    /// [`Enqueued::buffered`] says).
    pub async fn enqueue_with(&self, payload: &T, options: EnqueueOptions) -> Result<Enqueued> {
        if let Some(id) = &options.id {
            validate_job_id(id)?;
        }
        let bytes = serde_json::to_vec(payload).map_err(|source| Error::Encode {
            key: format!("queue {} job", self.name()),
            source: Box::new(source),
        })?;
        self.shared
            .enqueue(
                options.id,
                Bytes::from(bytes),
                options.delay,
                self.config.buffer_capacity,
            )
            .await
    }
}

fn as_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
