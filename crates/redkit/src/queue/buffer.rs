//! The fallback buffer: jobs enqueued while Redis is unreachable wait here,
//! in order, until the queue's flusher delivers them.
//!
//! It is bounded (a full buffer is an [`Error::QueueBufferFull`], never a
//! silent drop) and lives in process memory: jobs buffered in a process that
//! dies before Redis is back are lost, which is why
//! [`Enqueued::buffered`] tells the caller.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::job::Enqueued;
use crate::error::{Error, Result};

/// An id for a job buffered without one: `#b`, a per-process random prefix
/// and a sequence number, so buffered jobs due in the same millisecond still
/// start in enqueue order (ties are broken by id).
fn buffered_id() -> String {
    static PREFIX: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| fastrand::u32(..));
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    format!(
        "#b{:08x}{:012}",
        *PREFIX,
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BufferedJob {
    /// The caller's id, or one generated here (`#b…`) so the job can be
    /// cancelled and deduplicated before it reaches Redis.
    pub(super) id: Option<String>,
    pub(super) payload: Bytes,
    pub(super) due_at: SystemTime,
}

#[derive(Debug, Default)]
pub(super) struct Buffer {
    jobs: Mutex<VecDeque<BufferedJob>>,
    /// `jobs.len()`, kept beside it: every enqueue in fallback mode asks
    /// whether the buffer is empty, and should not take the lock for that.
    len: AtomicUsize,
    arrived: Notify,
}

impl Buffer {
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Runs `change` on the jobs and records their new count.
    fn change<R>(&self, change: impl FnOnce(&mut VecDeque<BufferedJob>) -> R) -> R {
        let mut jobs = self.jobs.lock();
        let result = change(&mut jobs);
        self.len.store(jobs.len(), Ordering::Release);
        result
    }

    /// Appends `job` unless a job with its id is already buffered.
    pub(super) fn push(
        &self,
        queue: &str,
        mut job: BufferedJob,
        capacity: usize,
    ) -> Result<Enqueued> {
        let enqueued = self.change(|jobs| {
            if let Some(id) = &job.id
                && jobs.iter().any(|other| other.id.as_ref() == Some(id))
            {
                return Ok(Enqueued {
                    id: id.clone(),
                    added: false,
                    buffered: true,
                });
            }
            if jobs.len() >= capacity {
                return Err(Error::QueueBufferFull {
                    queue: queue.to_owned(),
                    capacity,
                });
            }
            let id = job.id.get_or_insert_with(buffered_id).clone();
            jobs.push_back(job);
            Ok(Enqueued {
                id,
                added: true,
                buffered: true,
            })
        })?;
        if enqueued.added {
            self.arrived.notify_one();
        }
        Ok(enqueued)
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.jobs
            .lock()
            .iter()
            .any(|job| job.id.as_deref() == Some(id))
    }

    pub(super) fn front(&self) -> Option<BufferedJob> {
        self.jobs.lock().front().cloned()
    }

    /// Removes the front job if it is still `job` (it may have been
    /// cancelled meanwhile).
    pub(super) fn pop_front(&self, job: &BufferedJob) {
        self.change(|jobs| {
            if jobs.front() == Some(job) {
                jobs.pop_front();
            }
        });
    }

    /// Removes the buffered job `id`; whether it was there.
    pub(super) fn cancel(&self, id: &str) -> bool {
        self.change(|jobs| {
            let before = jobs.len();
            jobs.retain(|job| job.id.as_deref() != Some(id));
            jobs.len() != before
        })
    }

    /// Resolves when a job is pushed after this call.
    pub(super) fn wait_for_jobs(&self) -> impl Future<Output = ()> + '_ {
        self.arrived.notified()
    }
}
