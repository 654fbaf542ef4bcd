//! The leases a worker holds, renewed together: one `XCLAIM … JUSTID` per
//! `heartbeat_interval` for all of them, instead of a timer and a command
//! per running job (which cost more than a short job itself).
//!
//! A job's lease is held from its start until its outcome is about to be
//! recorded. Any renewal happens at most `heartbeat_interval` after the
//! previous one (or after the job started), as with a per-job heartbeat.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::handle::Queue;

/// Leases held by one worker: entry id → job id (for the logs).
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<String, String>>,
}

impl Leases {
    pub(super) fn hold(&self, entry: &str, job: &str) {
        self.held.lock().insert(entry.to_owned(), job.to_owned());
    }

    pub(super) fn release(&self, entry: &str) {
        self.held.lock().remove(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.held.lock().keys().cloned().collect()
    }
}

/// Renews every held lease each `heartbeat_interval`, until aborted. A lease
/// found lost (taken back after an expiry) is logged and no longer renewed;
/// its job keeps running, and its outcome will not be recorded.
pub(super) async fn renew<T>(queue: Queue<T>, leases: Arc<Leases>) {
    let mut ticker = tokio::time::interval(queue.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let entries = leases.entries();
        for chunk in entries.chunks(RENEW_BATCH) {
            match queue.shared.touch(chunk).await {
                Ok(still_held) => {
                    if still_held.len() < chunk.len() {
                        forget_lost(&queue, &leases, chunk, &still_held);
                    }
                }
                Err(error) => {
                    tracing::warn!(queue = queue.name(), %error, leases = chunk.len(), "cannot renew job leases");
                }
            }
        }
    }
}

/// Leases renewed by one command, at most.
const RENEW_BATCH: usize = 500;

fn forget_lost<T>(queue: &Queue<T>, leases: &Leases, asked: &[String], still_held: &[String]) {
    let still_held: HashSet<&String> = still_held.iter().collect();
    let mut held = leases.held.lock();
    for entry in asked.iter().filter(|entry| !still_held.contains(entry)) {
        // Gone from the map already: the job finished meanwhile.
        if let Some(job) = held.remove(entry) {
            tracing::warn!(queue = queue.name(), job = %job, "lost the lease of a running job; another worker may run it too");
        }
    }
}
