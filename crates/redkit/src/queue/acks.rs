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

use super::handle::Queue;
use super::worker::while_available;
use crate::coalesce::Coalesced;

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
            while let Some(batch) = self.entries.next_batch(MAX_BATCH) {
                send(queue, &batch).await;
            }
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
