//! Work queued by many tasks and sent in batches by one of them at a time:
//! the cache backplane's "keys written" notices, the queue's
//! acknowledgements, and, through [`Lanes`], rate-limit checks and session
//! reads. While a batch is in flight the next items gather, so
//! under load one round trip carries many of them, and when idle an item
//! goes out at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Times a flusher yields between two batches at most while the tasks it
/// woke keep queueing (see [`Coalesced::flush`]).
const MAX_YIELDS: usize = 4;

/// Items waiting for the next batch, and whether a flusher is running.
#[derive(Debug)]
pub(crate) struct Coalesced<T> {
    pending: Mutex<Vec<T>>,
    flushing: AtomicBool,
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Coalesced {
            pending: Mutex::new(Vec::new()),
            flushing: AtomicBool::new(false),
        }
    }
}

impl<T> Coalesced<T> {
    /// Queues `items`. True when no flush is running: the caller is now the
    /// flusher and must run [`Coalesced::flush`] (or call
    /// [`Coalesced::next_batch`] until it says `None`).
    pub(crate) fn push(&self, items: impl IntoIterator<Item = T>) -> bool {
        self.pending.lock().extend(items);
        !self.flushing.swap(true, Ordering::AcqRel)
    }

    /// The flusher's turn: sends batches of at most `max` items with `send`
    /// until none is left. After each batch it yields to the runtime, so
    /// the tasks that batch's replies woke run first and queue their next
    /// items for the next batch — again while the queue still grows, up to
    /// [`MAX_YIELDS`] times. Without it the next batch left with the few
    /// items queued meanwhile and the others waited a whole round trip
    /// more (docs/BENCHMARKS.md, session 16: one yield gave 12–36 % more
    /// session loads and rate-limit checks per second, yielding while the
    /// queue grows a few % more).
    pub(crate) async fn flush<F, Fut>(&self, max: usize, mut send: F)
    where
        F: FnMut(Vec<T>) -> Fut,
        Fut: Future<Output = ()>,
    {
        while let Some(batch) = self.next_batch(max) {
            send(batch).await;
            let mut queued = self.pending.lock().len();
            for _ in 0..MAX_YIELDS {
                tokio::task::yield_now().await;
                let now = self.pending.lock().len();
                if now == queued || now >= max {
                    break;
                }
                queued = now;
            }
        }
    }

    /// The flusher's next batch of at most `max` items; `None` when nothing
    /// is left, which ends its turn.
    pub(crate) fn next_batch(&self, max: usize) -> Option<Vec<T>> {
        loop {
            {
                let mut pending = self.pending.lock();
                if !pending.is_empty() {
                    let take = pending.len().min(max);
                    return Some(pending.drain(..take).collect());
                }
            }
            self.flushing.store(false, Ordering::Release);
            // An item queued after the drain above and before the store
            // found the flag still set: take it, unless another task has
            // become the flusher meanwhile.
            if self.pending.lock().is_empty() || self.flushing.swap(true, Ordering::AcqRel) {
                return None;
            }
        }
    }
}

/// Calls one [`Lanes`] may have in flight at once: while Redis runs one, the
/// replies of another are handed out and the next gathers.
const LANES: usize = 2;

/// Items answered by calls in background tasks (the rate limiter's checks,
/// session reads): each lane sends one call at a time, the items arriving
/// meanwhile gather for its next one, and an item joins a lane at random.
/// The tasks send the calls, so a caller that gives up never strands the
/// items of others.
#[derive(Debug)]
pub(crate) struct Lanes<T> {
    lanes: [Arc<Coalesced<T>>; LANES],
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            lanes: std::array::from_fn(|_| Arc::default()),
        }
    }
}

impl<T: Send + 'static> Lanes<T> {
    /// Queues `item`; when its lane has no call running, starts a task that
    /// sends the lane's batches of at most `max` items, each with
    /// `send(context, batch)`, until none is left. `context` (the store) is
    /// cloned only then and once per batch, never per item.
    pub(crate) fn push<C, F, Fut>(&self, item: T, max: usize, context: &C, send: F)
    where
        C: Clone + Send + 'static,
        F: Fn(C, Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let lane = &self.lanes[fastrand::usize(..LANES)];
        if lane.push([item]) {
            let (lane, context) = (lane.clone(), context.clone());
            tokio::spawn(async move {
                lane.flush(max, move |batch| send(context.clone(), batch))
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flusher_at_a_time_takes_everything_in_batches() {
        let coalesced = Coalesced::default();
        assert!(coalesced.push([1, 2, 3]), "the first pusher flushes");
        assert!(!coalesced.push([4, 5]), "others only queue");
        assert_eq!(coalesced.next_batch(2), Some(vec![1, 2]));
        assert_eq!(coalesced.next_batch(2), Some(vec![3, 4]));
        assert!(!coalesced.push([6]));
        assert_eq!(coalesced.next_batch(2), Some(vec![5, 6]));
        assert_eq!(coalesced.next_batch(2), None, "the turn ends when empty");
        assert!(coalesced.push([7]), "the next pusher flushes again");
        assert_eq!(coalesced.next_batch(10), Some(vec![7]));
        assert_eq!(coalesced.next_batch(10), None);
    }

    #[test]
    fn nothing_is_left_behind_by_concurrent_pushers() {
        let coalesced = std::sync::Arc::new(Coalesced::default());
        let sent = std::sync::Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (coalesced, sent) = (coalesced.clone(), sent.clone());
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        if coalesced.push([t * 1000 + i]) {
                            while let Some(batch) = coalesced.next_batch(7) {
                                sent.lock().extend(batch);
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a pusher");
        }
        let mut sent = sent.lock().clone();
        sent.sort_unstable();
        assert_eq!(sent, (0..4000).collect::<Vec<_>>());
    }
}
