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

/// Which sessions were extended recently: a sharded map of keyed id hashes
/// to the time of extension. Cheaper than a general cache on the read path.
///
/// Bounded: a shard holds at most `SHARD_CAP` hashes. When it
/// is full it drops the ones older than the interval, at most once per
/// `PRUNE_EVERY` or per interval, whichever is shorter (never one scan per
/// read). If it is still full,
/// a new session is not memoized and is simply extended on each read.
pub(super) struct TouchMemo {
    interval: Duration,
    shard_cap: usize,
    hasher: std::hash::RandomState,
    shards: Vec<parking_lot::Mutex<Shard>>,
}

/// One shard: id digests → when extended, and when it was last pruned. The
/// map's keys are already keyed SipHash digests, so it hashes them no
/// further.
#[derive(Default)]
struct Shard {
    extended: std::collections::HashMap<u64, Instant, std::hash::BuildHasherDefault<Digest>>,
    pruned_at: Option<Instant>,
}

/// A `Hasher` for keys that are already uniformly distributed digests.
#[derive(Default)]
pub(super) struct Digest(u64);

impl std::hash::Hasher for Digest {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl TouchMemo {
    const SHARDS: usize = 16;
    const SHARD_CAP: usize = 65_536;
    const PRUNE_EVERY: Duration = Duration::from_secs(1);

    pub(super) fn new(interval: Duration) -> Self {
        Self::with_shard_cap(interval, Self::SHARD_CAP)
    }

    fn with_shard_cap(interval: Duration, shard_cap: usize) -> Self {
        TouchMemo {
            interval,
            shard_cap,
            hasher: std::hash::RandomState::new(),
            shards: (0..Self::SHARDS).map(|_| Default::default()).collect(),
        }
    }

    fn slot(&self, id: &SessionId) -> (u64, &parking_lot::Mutex<Shard>) {
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
            .extended
            .get(&hash)
            .is_some_and(|at| at.elapsed() < self.interval)
    }

    /// Records that session `id` (which exists) was just extended.
    pub(super) fn mark(&self, id: &SessionId) {
        if self.interval.is_zero() {
            return;
        }
        let (hash, shard) = self.slot(id);
        let mut shard = shard.lock();
        let now = Instant::now();
        if shard.extended.len() >= self.shard_cap && !shard.extended.contains_key(&hash) {
            if shard
                .pruned_at
                .is_none_or(|at| now.duration_since(at) >= self.interval.min(Self::PRUNE_EVERY))
            {
                let interval = self.interval;
                shard
                    .extended
                    .retain(|_, at| now.duration_since(*at) < interval);
                shard.pruned_at = Some(now);
            }
            if shard.extended.len() >= self.shard_cap {
                return;
            }
        }
        shard.extended.insert(hash, now);
    }

    /// How many sessions are memoized (for Debug and tests).
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().extended.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<SessionId> {
        (0..n)
            .map(|_| SessionId::generate().expect("an id"))
            .collect()
    }

    #[test]
    fn the_memo_stays_bounded_and_prunes_what_is_old() {
        let memo = TouchMemo::with_shard_cap(Duration::from_millis(20), 4);
        let cap = 4 * TouchMemo::SHARDS;
        let first = ids(1000);
        for id in &first {
            memo.mark(id);
        }
        assert!(memo.len() <= cap, "{} entries, cap {cap}", memo.len());
        let memoized = first.iter().filter(|id| memo.recently(id)).count();
        assert_eq!(memoized, memo.len(), "what is kept answers `recently`");

        std::thread::sleep(Duration::from_millis(30));
        assert!(
            first.iter().all(|id| !memo.recently(id)),
            "past the interval"
        );
        let later = ids(1000);
        for id in &later {
            memo.mark(id);
        }
        assert!(memo.len() <= cap);
        assert!(
            later.iter().any(|id| memo.recently(id)),
            "old entries were pruned to make room"
        );
    }
}
