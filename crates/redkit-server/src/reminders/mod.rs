//! Reminders: when a task's `due_at` comes, its owner's event streams get a
//! `reminder` event — on whichever instance they are connected to.
//!
//! Setting `due_at` enqueues one job on redkit's `reminders` queue, due at
//! that time, with the id `reminder:<task>:<due ms>`; changing or clearing
//! it, or deleting the task, cancels that job. Jobs live in Redis (or the
//! embedded store without Redis), so a reminder survives the instance that
//! scheduled it; any instance's worker delivers it.
//!
//! Cancellation is best effort (a job may already be running), so delivery
//! re-reads the task and drops a reminder whose task is gone or has another
//! due time: a reminder is never delivered for a time the task no longer
//! has. The job may run more than once (retries, a reclaimed lease), so the
//! event is appended to the user's log with the deduplication key
//! `reminder:<task>@<due_at>`: each (task, due time) is delivered once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redkit::Redkit;
use redkit::queue::{EnqueueOptions, Job, Queue, Worker};
use serde::{Deserialize, Serialize};

use crate::db::{Database, Task};
use crate::events::{TaskEvent, TaskEvents};
use crate::tasks::due_at_millis;

/// The queue's name.
pub const QUEUE: &str = "reminders";

/// One reminder to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReminderJob {
    user_id: i64,
    task_id: i64,
    due_at: String,
}

/// Schedules, cancels and delivers reminders.
#[derive(Debug)]
pub struct Reminders {
    queue: Queue<ReminderJob>,
    worker: Worker,
}

impl Reminders {
    /// Opens the queue and starts this instance's worker.
    pub fn start(kit: &Redkit, db: Database, events: TaskEvents) -> redkit::Result<Self> {
        let queue = kit.queue::<ReminderJob>(QUEUE)?;
        let worker = queue.start_worker(move |job: Job<ReminderJob>| {
            let (db, events) = (db.clone(), events.clone());
            async move { deliver(&db, &events, job.payload).await }
        });
        Ok(Reminders { queue, worker })
    }

    /// After a committed write: cancels the reminder of `before` (the due
    /// time the task had) when it changed, and schedules the one of `after`.
    pub async fn changed(
        &self,
        user_id: i64,
        task_id: i64,
        before: Option<&str>,
        after: Option<&Task>,
    ) {
        let after_due = after.and_then(|task| task.due_at.as_deref());
        if before == after_due {
            return;
        }
        if let Some(before) = before {
            self.cancel(task_id, before).await;
        }
        if let (Some(task), Some(due_at)) = (after, after_due) {
            self.schedule(user_id, task, due_at).await;
        }
    }

    async fn schedule(&self, user_id: i64, task: &Task, due_at: &str) {
        let Some(due_ms) = due_at_millis(due_at) else {
            tracing::error!(task = task.id, due_at, "a stored due time does not parse");
            return;
        };
        let due = UNIX_EPOCH + Duration::from_millis(u64::try_from(due_ms).unwrap_or(0));
        let delay = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let job = ReminderJob {
            user_id,
            task_id: task.id,
            due_at: due_at.to_owned(),
        };
        let options = EnqueueOptions::new()
            .id(job_id(task.id, due_ms))
            .delay(delay);
        if let Err(error) = self.queue.enqueue_with(&job, options).await {
            tracing::error!(%error, task = task.id, due_at, "cannot schedule a reminder");
        }
    }

    async fn cancel(&self, task_id: i64, due_at: &str) {
        let Some(due_ms) = due_at_millis(due_at) else {
            return;
        };
        if let Err(error) = self.queue.cancel(&job_id(task_id, due_ms)).await {
            // Harmless: delivery checks the task's current due time.
            tracing::warn!(%error, task = task_id, "cannot cancel a reminder");
        }
    }

    /// Stops fetching reminders and lets running deliveries finish.
    pub async fn shutdown(&self, deadline: Duration) {
        self.worker.shutdown(deadline).await;
    }
}

fn job_id(task_id: i64, due_ms: i64) -> String {
    format!("reminder:{task_id}:{due_ms}")
}

/// Delivers a reminder if its task still has that due time.
async fn deliver(
    db: &Database,
    events: &TaskEvents,
    job: ReminderJob,
) -> Result<(), redkit::BoxError> {
    let task = db.get_task(job.user_id, job.task_id).await?;
    let Some(task) = task.filter(|task| task.due_at.as_deref() == Some(job.due_at.as_str())) else {
        tracing::debug!(
            task = job.task_id,
            due_at = job.due_at,
            "dropping a reminder for a due time the task no longer has"
        );
        return Ok(());
    };
    let dedupe = format!("reminder:{}@{}", job.task_id, job.due_at);
    let event = TaskEvent::Reminder {
        task,
        due_at: job.due_at,
    };
    events.publish_once(job.user_id, &dedupe, event).await?;
    Ok(())
}
