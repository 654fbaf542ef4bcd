//! Local leases: admitting requests far from their limit without a round
//! trip, never admitting more than the limit.
//!
//! Why: an exact distributed limit costs one round trip per request, often
//! the largest cost of a cached API request. Like Gubernator's batching,
//! but conservative: instead of counting hits locally and sending them
//! later (which over-admits when instances race), an instance asks the
//! store for its request *plus a lease* of extra units in the same script
//! call. The store counts the lease at once, so the sum of everything
//! admitted anywhere never exceeds the limit; the instance then admits up
//! to the leased units locally for a short interval.
//!
//! A lease is at most `share` of the remaining quota, so near the limit
//! (remaining below `1 / share`) every request goes to the store and the
//! counts are exact. Lease sizes follow demand: they double while used up
//! within the interval, and shrink to what was used when not. Units leased
//! but not used by the end of the interval are dropped — they count as used
//! (the limiter errs on the strict side, by at most one lease per key and
//! instance). One lease request per key is in flight per instance; others
//! meanwhile go to the store for themselves (a request dropped before its
//! answer frees the slot after one interval).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::decision::{Decision, DecisionSource};
use super::policy::Policy;

/// Keys tracked at most.
const MAX_KEYS: usize = 100_000;

/// New keys between two sweeps of idle ones.
const SWEEP_EVERY: u64 = 1024;

/// What to do with one request.
#[derive(Debug)]
pub(super) enum Plan {
    /// Admitted from the lease.
    Local(Decision),
    /// Ask the store for the request plus `extra` leased units.
    Store {
        /// Units to lease on top of the request.
        extra: u64,
    },
}

#[derive(Debug, Default)]
struct Lease {
    /// Units left to admit locally.
    tokens: u64,
    /// When the current lease was granted.
    granted_at: Option<Instant>,
    /// Its size.
    granted: u64,
    /// Units admitted from it.
    used: u64,
    /// The store's remaining quota after the lease was counted.
    store_remaining: u64,
    /// The store's reset time when the lease was granted.
    reset_after: Duration,
    /// Since when a lease request is on its way to the store. Older than
    /// the interval counts as lost (a caller dropped mid-request never
    /// settles).
    in_flight: Option<Instant>,
    /// Decisions came from the store at least once.
    seen: bool,
}

/// The leases by key, at most [`MAX_KEYS`]. `quick_cache`: a lookup takes
/// a shard's read lock and clones one `Arc` (moka, used before, recorded
/// every read for its housekeeping, about 1 % of the HTTP mix's CPU). Keys
/// idle for `idle` are dropped by a sweep every [`SWEEP_EVERY`] new keys,
/// as moka's time-to-idle did.
type Entries = quick_cache::sync::Cache<
    String,
    Arc<parking_lot::Mutex<Lease>>,
    quick_cache::UnitWeighter,
    foldhash::quality::RandomState,
>;

/// Per-key leases of one limiter.
pub(super) struct Leases {
    interval: Duration,
    share: f64,
    /// How long a key goes unused before a sweep drops its lease.
    idle: Duration,
    entries: Entries,
    new_keys: AtomicU64,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Leases")
            .field("interval", &self.interval)
            .field("share", &self.share)
            .field("keys", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Leases {
    pub(super) fn new(interval: Duration, share: f64) -> Self {
        Leases {
            interval,
            share,
            idle: interval.saturating_mul(20).max(Duration::from_secs(1)),
            entries: Entries::with(
                MAX_KEYS,
                MAX_KEYS as u64,
                quick_cache::UnitWeighter,
                foldhash::quality::RandomState::default(),
                Default::default(),
            ),
            new_keys: AtomicU64::new(0),
        }
    }

    fn entry(&self, key: &str) -> Arc<parking_lot::Mutex<Lease>> {
        if let Some(entry) = self.entries.get(key) {
            return entry;
        }
        let mut inserted = false;
        let Ok(entry) = self.entries.get_or_insert_with(key, || {
            inserted = true;
            Ok::<_, Infallible>(Arc::default())
        });
        let new_keys = || self.new_keys.fetch_add(1, Ordering::Relaxed) + 1;
        if inserted && new_keys().is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        entry
    }

    /// Drops the leases of keys unused for `idle`: none granted or asked
    /// for since (a key in use is granted a lease, or a plain answer, at
    /// least once per interval).
    fn sweep(&self) {
        let idle = self.idle;
        let recent = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < idle);
        self.entries.retain(|_, entry| {
            // A lease locked right now is in use.
            entry
                .try_lock()
                .is_none_or(|lease| recent(lease.granted_at) || recent(lease.in_flight))
        });
    }

    /// Admits `cost` from the lease of `key`, or says what to ask the store.
    pub(super) fn plan(&self, policy: &Policy, key: &str, cost: u64) -> Plan {
        let entry = self.entry(key);
        let mut lease = entry.lock();
        if let Some(at) = lease.granted_at {
            let age = at.elapsed();
            if age < self.interval && lease.tokens >= cost {
                lease.tokens -= cost;
                lease.used += cost;
                return Plan::Local(Decision {
                    allowed: true,
                    policy: policy.name().to_owned(),
                    limit: policy.limit(),
                    remaining: lease.store_remaining.saturating_add(lease.tokens),
                    retry_after: Duration::ZERO,
                    reset_after: lease.reset_after.saturating_sub(age),
                    source: DecisionSource::Lease,
                });
            }
        }
        let in_flight = lease
            .in_flight
            .is_some_and(|since| since.elapsed() < self.interval);
        if in_flight || !lease.seen {
            return Plan::Store { extra: 0 };
        }
        let demand = match lease.granted_at {
            // Used up within the interval: demand is higher.
            Some(at) if at.elapsed() < self.interval => lease.granted.max(1).saturating_mul(2),
            // Expired: as much as was used during it (nothing for a key
            // seen once in a while, so quiet keys waste nothing).
            Some(_) => lease.used,
            None => 0,
        };
        // Precision loss is fine: this is a share of a count.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        #[allow(clippy::cast_sign_loss)]
        let cap = (lease.store_remaining as f64 * self.share).floor() as u64;
        let extra = demand.min(cap);
        lease.tokens = 0;
        lease.granted_at = None;
        lease.in_flight = (extra > 0).then(Instant::now);
        Plan::Store { extra }
    }

    /// Records the store's answer to a request that asked for `extra`
    /// (`granted` of them were leased); `None` when the store failed.
    ///
    /// Runs under the key's mutex, like `plan`, so a settlement and a local
    /// admission never interleave: a caller sees either the old lease or
    /// the new one, never units counted twice.
    pub(super) fn settle(&self, key: &str, decision: Option<&Decision>, extra: u64, granted: u64) {
        let entry = self.entry(key);
        let mut lease = entry.lock();
        // Only the caller that asked for a lease clears the in-flight mark;
        // plain requests that ran meanwhile must not open the door early.
        if extra > 0 {
            lease.in_flight = None;
        }
        // Insurance and fail-open answers say nothing about the shared
        // quota: learn from the store's answers only.
        let Some(decision) = decision.filter(|d| d.source == DecisionSource::Store) else {
            return;
        };
        lease.seen = true;
        lease.store_remaining = decision.remaining;
        lease.reset_after = decision.reset_after;
        // What was left of the previous lease was dropped by `plan` when it
        // asked for this one: counted by the store, given up (strict).
        if granted > 0 {
            lease.tokens = granted;
            lease.granted = granted;
            lease.used = 0;
            lease.granted_at = Some(Instant::now());
        } else if extra > 0 || lease.granted_at.is_none() {
            // A plain answer: the next request may ask for a lease.
            lease.granted = 0;
            lease.used = 0;
            lease.granted_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store_answer(remaining: u64) -> Decision {
        Decision {
            allowed: true,
            policy: "p".to_owned(),
            limit: 1000,
            remaining,
            retry_after: Duration::ZERO,
            reset_after: Duration::from_secs(60),
            source: DecisionSource::Store,
        }
    }

    /// A lease in use survives the sweeps new keys cause; once unused for
    /// the idle time, the next sweep drops it; keys that never got an
    /// answer are dropped by the first sweep after them.
    #[test]
    fn sweeps_drop_the_leases_of_idle_keys_only() {
        let leases = Leases::new(Duration::from_millis(1), 0.5);
        assert_eq!(leases.idle, Duration::from_secs(1));
        leases.settle("busy", Some(&store_answer(900)), 10, 10);
        // With "busy", SWEEP_EVERY new keys: the last one sweeps.
        for i in 1..SWEEP_EVERY {
            leases.entry(&format!("passing {i}"));
        }
        assert!(
            leases.entries.get("busy").is_some(),
            "an active lease was swept"
        );
        assert_eq!(leases.entries.len(), 1, "keys without an answer stayed");
        std::thread::sleep(Duration::from_millis(1100));
        for i in 0..SWEEP_EVERY {
            leases.entry(&format!("later {i}"));
        }
        assert!(leases.entries.get("busy").is_none(), "an idle lease stayed");
    }
}
