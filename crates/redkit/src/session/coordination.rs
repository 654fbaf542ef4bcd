//! What one instance remembers per session to coordinate its own work:
//! the queue of writers of a session and when it last extended one. Both
//! are striped by a hash of the id, so memory stays bounded whatever the
//! number of sessions, and neither keeps an id (a bearer secret).

use std::time::{Duration, Instant};

use super::SessionId;

/// Striped async locks keyed by session id: bounded memory, and two
/// updates of one session in this process never conflict with each other.
pub(super) struct WriterLocks {
    hasher: std::hash::RandomState,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl WriterLocks {
    const STRIPES: usize = 64;

    pub(super) fn new() -> Self {
        WriterLocks {
            hasher: std::hash::RandomState::new(),
            stripes: (0..Self::STRIPES).map(|_| Default::default()).collect(),
        }
    }

    /// Waits for this instance's earlier writers of `id` (and of the ids
    /// sharing its stripe: a rare, short extra wait that keeps memory
    /// bounded). Tokio's mutex is fair, so writers go in arrival order.
    pub(super) async fn lock(&self, id: &SessionId) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id.expose());
        self.stripes[hash as usize % Self::STRIPES].lock().await
    }
}

/// Which sessions were extended recently: a sharded map of id hashes to the
/// time of extension. Cheaper than a general cache on the read path.
pub(super) struct TouchMemo {
    interval: Duration,
    hasher: std::hash::RandomState,
    shards: Vec<parking_lot::Mutex<std::collections::HashMap<u64, Instant>>>,
}

impl TouchMemo {
    const SHARDS: usize = 16;
    const PRUNE_ABOVE: usize = 65_536;

    pub(super) fn new(interval: Duration) -> Self {
        TouchMemo {
            interval,
            hasher: std::hash::RandomState::new(),
            shards: (0..Self::SHARDS).map(|_| Default::default()).collect(),
        }
    }

    fn slot(
        &self,
        id: &SessionId,
    ) -> (
        u64,
        &parking_lot::Mutex<std::collections::HashMap<u64, Instant>>,
    ) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id.expose());
        (hash, &self.shards[hash as usize % Self::SHARDS])
    }

    pub(super) fn recently(&self, id: &SessionId) -> bool {
        if self.interval.is_zero() {
            return false;
        }
        let (hash, shard) = self.slot(id);
        shard
            .lock()
            .get(&hash)
            .is_some_and(|at| at.elapsed() < self.interval)
    }

    pub(super) fn mark(&self, id: &SessionId) {
        if self.interval.is_zero() {
            return;
        }
        let (hash, shard) = self.slot(id);
        let mut shard = shard.lock();
        if shard.len() > Self::PRUNE_ABOVE {
            shard.retain(|_, at| at.elapsed() < self.interval);
        }
        shard.insert(hash, Instant::now());
    }
}
