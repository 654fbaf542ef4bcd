//! A counter split over cache lines.
//!
//! Why: counters touched by every operation (cache hits, commands in
//! flight) would otherwise have every core fight over one cache line at
//! millions of updates per second. Each thread updates its own stripe;
//! readers, which are rare, sum the stripes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Stripes per counter: more than the worker threads of a typical runtime.
const STRIPES: usize = 8;

/// A counter split over cache lines. Updates wrap: a unit added on one
/// thread and taken away on another leaves two stripes off by one each,
/// and their sum right.
#[derive(Default)]
pub(crate) struct Striped {
    cells: [Padded; STRIPES],
}

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Striped {
    /// This thread's stripe.
    fn cell(&self) -> &AtomicU64 {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static STRIPE: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES as u64) as usize;
        }
        &self.cells[STRIPE.with(|stripe| *stripe)].0
    }

    /// Adds `n` (ordered with `ordering`).
    pub(crate) fn add(&self, n: u64, ordering: Ordering) {
        self.cell().fetch_add(n, ordering);
    }

    /// Takes `n` away (ordered with `ordering`).
    pub(crate) fn sub(&self, n: u64, ordering: Ordering) {
        self.cell().fetch_sub(n, ordering);
    }

    /// The total (ordered with `ordering`).
    pub(crate) fn sum(&self, ordering: Ordering) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |sum, cell| sum.wrapping_add(cell.0.load(ordering)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_moved_between_threads_keep_the_sum() {
        let counter = std::sync::Arc::new(Striped::default());
        counter.add(3, Ordering::SeqCst);
        let other = counter.clone();
        std::thread::spawn(move || other.sub(2, Ordering::SeqCst))
            .join()
            .expect("thread");
        assert_eq!(counter.sum(Ordering::SeqCst), 1);
        counter.sub(1, Ordering::SeqCst);
        assert_eq!(counter.sum(Ordering::SeqCst), 0);
    }
}
