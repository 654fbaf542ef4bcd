//! What one instance remembers per session to coordinate its own work:
//! the queue of writers of a session and when it last extended one. Both
//! are found by a hash of the id, so memory stays bounded whatever the
//! number of sessions, and neither keeps an id (a bearer secret).

use std::sync::atomic::{AtomicU64, Ordering};
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

/// Which sessions were extended recently, asked on every read: a fixed
/// table of atomic slots, found by a keyed hash of the id. A slot holds the
/// hash's upper half (a tag that tells ids apart) and when that session was
/// extended, in milliseconds since the memo started (wrapping: 32 bits
/// serve for 49 days).
///
/// Lock-free, one cache line per read, and bounded by construction
/// (`BUCKETS` × `WAYS` slots, 512 KiB): a bucket fills one cache line with
/// eight sessions, and a ninth evicts the one extended longest ago. (Four
/// per line left half of every line empty and doubled the table: a read is
/// usually a cache miss, and a table twice the size misses more often.)
/// Losing a slot, a tag collision, or a wrap of the clock costs one
/// extension more or one fewer, never a session.
pub(super) struct TouchMemo {
    /// Zero when the memo is off.
    interval_ms: u32,
    started: Instant,
    hasher: foldhash::quality::RandomState,
    buckets: Box<[Bucket]>,
}

/// `WAYS` slots in one cache line. An empty slot is zero, and no tag is.
#[repr(align(64))]
#[derive(Default)]
struct Bucket([AtomicU64; TouchMemo::WAYS]);

impl TouchMemo {
    const BUCKETS: usize = 1 << 13;
    const WAYS: usize = 8;

    pub(super) fn new(interval: Duration) -> Self {
        // Capped at half the clock's range, so a wrapped age never passes
        // for a recent one within the interval.
        let interval_ms = u32::try_from(interval.as_millis())
            .unwrap_or(u32::MAX)
            .min(u32::MAX / 2);
        TouchMemo {
            interval_ms,
            started: Instant::now(),
            hasher: foldhash::quality::RandomState::default(),
            buckets: if interval_ms == 0 {
                Box::default()
            } else {
                (0..Self::BUCKETS).map(|_| Bucket::default()).collect()
            },
        }
    }

    /// The bucket of `id` and its tag.
    fn slot(&self, id: &SessionId) -> (&Bucket, u32) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id.expose());
        let bucket = &self.buckets[hash as usize % Self::BUCKETS];
        (bucket, (hash >> 32) as u32 | 1)
    }

    /// Now, in the memo's wrapping milliseconds.
    fn now(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    fn is_recent(&self, slot: u64, now: u32) -> bool {
        now.wrapping_sub(slot as u32) < self.interval_ms
    }

    pub(super) fn recently(&self, id: &SessionId) -> bool {
        if self.interval_ms == 0 {
            return false;
        }
        let (bucket, tag) = self.slot(id);
        let now = self.now();
        bucket.0.iter().any(|slot| {
            let slot = slot.load(Ordering::Relaxed);
            (slot >> 32) as u32 == tag && self.is_recent(slot, now)
        })
    }

    /// Records that session `id` (which exists) was just extended: in its
    /// own slot if it has one, else in the slot extended longest ago.
    pub(super) fn mark(&self, id: &SessionId) {
        if self.interval_ms == 0 {
            return;
        }
        let (bucket, tag) = self.slot(id);
        let now = self.now();
        let target = bucket
            .0
            .iter()
            .find(|slot| (slot.load(Ordering::Relaxed) >> 32) as u32 == tag)
            .or_else(|| {
                bucket.0.iter().max_by_key(|slot| {
                    let slot = slot.load(Ordering::Relaxed);
                    if slot == 0 {
                        u32::MAX
                    } else {
                        now.wrapping_sub(slot as u32)
                    }
                })
            });
        if let Some(target) = target {
            target.store(u64::from(tag) << 32 | u64::from(now), Ordering::Relaxed);
        }
    }

    /// How many sessions are memoized as recently extended (for Debug
    /// and tests).
    pub(super) fn len(&self) -> usize {
        let now = self.now();
        self.buckets
            .iter()
            .flat_map(|bucket| &bucket.0)
            .filter(|slot| {
                let slot = slot.load(Ordering::Relaxed);
                slot != 0 && self.is_recent(slot, now)
            })
            .count()
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
    fn marked_sessions_are_recent_for_the_interval() {
        let memo = TouchMemo::new(Duration::from_millis(50));
        let first = ids(1000);
        assert!(first.iter().all(|id| !memo.recently(id)), "nothing yet");
        for id in &first {
            memo.mark(id);
        }
        assert_eq!(memo.len(), 1000);
        assert!(first.iter().all(|id| memo.recently(id)));
        assert!(
            ids(1000).iter().all(|id| !memo.recently(id)),
            "others are not"
        );

        std::thread::sleep(Duration::from_millis(60));
        assert!(
            first.iter().all(|id| !memo.recently(id)),
            "past the interval"
        );
        assert_eq!(memo.len(), 0);
    }

    #[test]
    fn the_memo_stays_bounded_and_keeps_the_latest() {
        let memo = TouchMemo::new(Duration::from_secs(60));
        let capacity = TouchMemo::BUCKETS * TouchMemo::WAYS;
        let many = ids(capacity * 2);
        for id in &many {
            memo.mark(id);
        }
        assert!(memo.len() <= capacity, "{} > {capacity}", memo.len());
        assert!(
            memo.len() > capacity / 2,
            "the table is used: {}",
            memo.len()
        );
        let latest = &many[many.len() - 1000..];
        let kept = latest.iter().filter(|id| memo.recently(id)).count();
        assert!(
            kept > 900,
            "the latest marks win their slots: {kept} of 1000"
        );
    }

    #[test]
    fn a_bucket_is_one_full_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(
            TouchMemo::BUCKETS * std::mem::size_of::<Bucket>(),
            512 * 1024
        );
    }

    #[test]
    fn a_zero_interval_turns_the_memo_off() {
        let memo = TouchMemo::new(Duration::ZERO);
        let id = SessionId::generate().expect("an id");
        memo.mark(&id);
        assert!(!memo.recently(&id));
        assert_eq!(memo.len(), 0);
    }
}
