//! The outage journal: changes made on the embedded store while Redis was
//! away that must not be undone when Redis comes back.
//!
//! In fallback mode the embedded store serves while Redis is down, and it is
//! cleared on recovery. Most of what was written there is a cache fill or a
//! counter and may be lost; but an invalidation, a session destroy or a
//! rate-limit penalty made during the outage would be *undone* by recovery —
//! Redis still holds the old value, the live session, the lower count. So the
//! modules that make such changes record how to re-apply them ([`Replay`]),
//! and [`AnyStore`](super::AnyStore) runs every recorded replay on Redis
//! *before* it routes this instance's calls to Redis again (FusionCache's
//! auto-recovery, extended to sessions and limits).
//!
//! Bounds and fail-safe (documented choice): the journal holds at most
//! [`JOURNAL_CAPACITY`] changes; a change recorded again under the same id
//! (the same tag, session or key) replaces the earlier one, so a long outage
//! of repeated invalidations stays small. When it is full, a change is
//! refused ([`crate::Error::JournalFull`]) and the module
//! falls back to a coarser replay kept apart (at most [`FAIL_SAFE_CAPACITY`]):
//! a cache replays as the clear of its whole namespace; a session destroy is
//! answered with the error, so the caller knows the logout did not stick.
//! Replays run in the order recorded, are idempotent (a key deleted twice, a
//! tag set to the same version twice), and are retried until Redis takes
//! them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use indexmap::IndexMap;
use parking_lot::Mutex;

use super::RedisStore;
use crate::error::{Error, Result};

/// Distinct changes the journal keeps (ids replace earlier entries).
pub const JOURNAL_CAPACITY: usize = 10_000;

/// Coarse replays accepted once the journal is full (one per cache
/// namespace in practice).
pub const FAIL_SAFE_CAPACITY: usize = 1_024;

type ReplayFn =
    dyn Fn(RedisStore) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync;

/// How to re-apply one change on Redis at recovery.
#[derive(Clone)]
pub struct Replay(Arc<ReplayFn>);

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Replay")
    }
}

impl Replay {
    /// A replay running `apply` on the Redis store (possibly several times:
    /// it must be idempotent).
    pub fn new<F, Fut>(apply: F) -> Self
    where
        F: Fn(RedisStore) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Replay(Arc::new(move |redis| Box::pin(apply(redis))))
    }

    pub(crate) async fn run(&self, redis: RedisStore) -> Result<()> {
        (self.0)(redis).await
    }
}

/// Recorded changes, in order, by id.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    changes: IndexMap<String, Replay>,
    fail_safe: IndexMap<String, Replay>,
}

impl Journal {
    /// Records `replay` under `id` (replacing an earlier one).
    pub(crate) fn record(&self, id: String, replay: Replay) -> Result<()> {
        let mut entries = self.entries.lock();
        if entries.changes.len() >= JOURNAL_CAPACITY && !entries.changes.contains_key(&id) {
            return Err(Error::JournalFull {
                capacity: JOURNAL_CAPACITY,
            });
        }
        entries.changes.shift_remove(&id);
        entries.changes.insert(id, replay);
        Ok(())
    }

    /// Records a coarse replay standing for changes the journal refused.
    pub(crate) fn record_fail_safe(&self, id: String, replay: Replay) -> Result<()> {
        let mut entries = self.entries.lock();
        if entries.fail_safe.len() >= FAIL_SAFE_CAPACITY && !entries.fail_safe.contains_key(&id) {
            return Err(Error::JournalFull {
                capacity: FAIL_SAFE_CAPACITY,
            });
        }
        entries.fail_safe.insert(id, replay);
        Ok(())
    }

    /// Takes every recorded replay, fail-safe ones last.
    pub(crate) fn take(&self) -> Vec<(String, Replay)> {
        let mut entries = self.entries.lock();
        let mut taken: Vec<(String, Replay)> = entries.changes.drain(..).collect();
        taken.extend(entries.fail_safe.drain(..));
        taken
    }

    /// Puts back replays that could not run yet, before anything recorded
    /// since (which is newer).
    pub(crate) fn put_back(&self, rest: Vec<(String, Replay)>) {
        let mut entries = self.entries.lock();
        let newer = std::mem::take(&mut entries.changes);
        for (id, replay) in rest {
            entries.changes.insert(id, replay);
        }
        for (id, replay) in newer {
            entries.changes.shift_remove(&id);
            entries.changes.insert(id, replay);
        }
    }

    /// Runs `then` while holding the journal if it is empty; false (and
    /// nothing run) otherwise. Recovery uses it to switch to Redis only when
    /// nothing is left to replay.
    pub(crate) fn if_empty(&self, then: impl FnOnce()) -> bool {
        let entries = self.entries.lock();
        if entries.changes.is_empty() && entries.fail_safe.is_empty() {
            then();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn noop() -> Replay {
        Replay::new(|_| async { Ok(()) })
    }

    #[test]
    fn ids_replace_and_capacity_is_enforced() {
        let journal = Journal::default();
        for i in 0..JOURNAL_CAPACITY {
            journal.record(format!("k{i}"), noop()).unwrap();
        }
        journal.record("k0".to_owned(), noop()).unwrap();
        let error = journal.record("new".to_owned(), noop()).unwrap_err();
        assert!(matches!(error, Error::JournalFull { .. }), "{error:?}");
        journal
            .record_fail_safe("cache:x".to_owned(), noop())
            .unwrap();
        let taken = journal.take();
        assert_eq!(taken.len(), JOURNAL_CAPACITY + 1);
        assert_eq!(
            taken[JOURNAL_CAPACITY - 1].0,
            "k0",
            "replaced ids move last"
        );
        assert_eq!(
            taken[JOURNAL_CAPACITY].0, "cache:x",
            "fail-safe replays run last"
        );
        assert!(journal.if_empty(|| {}));
    }

    #[test]
    fn put_back_keeps_newer_changes_after_older_ones() {
        let journal = Journal::default();
        journal.record("a".to_owned(), noop()).unwrap();
        journal.record("b".to_owned(), noop()).unwrap();
        let taken = journal.take();
        journal.record("a".to_owned(), noop()).unwrap();
        journal.put_back(taken);
        let order: Vec<String> = journal.take().into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, ["b", "a"]);
    }
}
