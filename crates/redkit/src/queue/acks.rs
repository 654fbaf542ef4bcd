//! Successes acknowledged in batches: when many jobs of a worker finish at
//! once, one `XACK id…` + `XDEL id…` records them all, instead of a round
//! trip per job.
//!
//! A finished job's entry joins the pending batch; the first job task that
//! finds no flush running becomes the flusher and sends batches until none
//! is left (the others return at once). A job is still removed only after
//! its handler succeeded; a crash before the flush costs what a crash
//! before a single ack costs: the job runs again after the visibility
//! timeout. Fencing is unchanged: an entry whose lease was taken back no
//! longer exists, so acknowledging it changes nothing.
//!
//! Every recorded outcome, batched here or a worker's single retry or
//! failure, is retried while the store is unavailable, until the job's lease
//! would have expired ([`while_available`]).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::handle::Queue;
use crate::coalesce::Coalesced;
use crate::error::Result;

/// Entries acknowledged by one command, at most.
const MAX_BATCH: usize = 500;

/// The successes of one worker waiting to be recorded.
#[derive(Default)]
pub(super) struct Acks {
    entries: Coalesced<String>,
}

impl Acks {
    /// Records the success of the job leased as `entry`: now, or with the
    /// batch a running flush is about to send.
    pub(super) async fn done<T>(&self, queue: &Queue<T>, entry: String) {
        if self.entries.push([entry]) {
            let send = |batch: Vec<String>| async move { send(queue, &batch).await };
            self.entries.flush(MAX_BATCH, send).await;
        }
    }
}

/// Sends one batch, retrying while the store is unavailable until the
/// leases would have expired (then the jobs are someone else's).
async fn send<T>(queue: &Queue<T>, batch: &[String]) {
    match while_available(queue, || queue.shared.ack(batch)).await {
        Ok(acked) => {
            let taken_over = (batch.len() as u64).saturating_sub(acked);
            if taken_over > 0 {
                tracing::warn!(
                    queue = queue.name(),
                    jobs = taken_over,
                    "the leases of finished jobs were taken over before they finished; their outcome is not recorded here"
                );
            }
        }
        Err(error) => {
            tracing::error!(queue = queue.name(), jobs = batch.len(), %error, "cannot record finished jobs; they run again after their visibility timeout");
        }
    }
}

/// Runs `record` (a job's outcome), retrying while the store is
/// unavailable until the job's lease would have expired: after that the
/// job is someone else's and the last error is returned.
pub(super) async fn while_available<T, R, F>(
    queue: &Queue<T>,
    mut record: impl FnMut() -> F,
) -> Result<R>
where
    F: Future<Output = Result<R>>,
{
    let give_up = Instant::now() + queue.config.visibility_timeout;
    loop {
        match record().await {
            Err(error) if error.is_unavailable() && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}
