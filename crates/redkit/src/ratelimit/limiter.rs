//! The distributed limiter: at most one round trip per check (concurrent
//! checks share it, see `batch.rs`), local blocking of keys already over
//! their limit, and an insurance limiter while Redis is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::EmbeddedConfig;
use crate::error::{Error, Result};
use crate::store::{AnyStore, EmbeddedStore, RedisStore, Replay, Store};

use super::algorithm::{WRONG_TYPE, check_args};
use super::batch::{Batches, Reply, run_one};
use super::decision::{Decision, DecisionSource};
use super::lease::{Leases, Plan};
use super::policy::Policy;

/// Longest accepted rate-limit key, in bytes.
const MAX_KEY_LEN: usize = 512;

/// What to do while the store is unavailable: unreachable, timing out, or
/// answering that it cannot count now (out of memory, loading, read-only:
/// see [`Error::is_refused_for_now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenUnavailable {
    /// Count in a per-instance embedded limiter with the same math (each
    /// instance then enforces the whole limit on its own). Default.
    #[default]
    Insurance,
    /// Admit every request.
    FailOpen,
    /// Reject with the store's error (the layer answers 503 with
    /// `{"error": {"code": "rate_limiter_unavailable", "message": …}}`).
    FailClosed,
}

/// Counts of this limiter's decisions since it was built (this instance
/// only), for dashboards and health pages; the same counts go to the
/// `metrics` facade as `redkit_ratelimit_decisions_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimiterStats {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests rejected (any source).
    pub rejected: u64,
    /// Of the rejected, those answered by the local block without a round trip.
    pub rejected_locally: u64,
    /// Decisions taken by the insurance limiter or failing open while the
    /// store was unavailable.
    pub degraded: u64,
    /// Of the admitted, those admitted from a local lease without a round
    /// trip.
    pub leased: u64,
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    rejected: AtomicU64,
    rejected_locally: AtomicU64,
    degraded: AtomicU64,
    leased: AtomicU64,
    /// `redkit_ratelimit_decisions_total`'s handles per policy name.
    handles: DecisionCounters,
}

impl Counters {
    fn record(&self, decision: &Decision) {
        if decision.allowed {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        match decision.source {
            DecisionSource::Store => {}
            DecisionSource::LocalBlock => {
                self.rejected_locally.fetch_add(1, Ordering::Relaxed);
            }
            DecisionSource::Insurance | DecisionSource::FailOpen => {
                self.degraded.fetch_add(1, Ordering::Relaxed);
            }
            DecisionSource::Lease => {
                self.leased.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.handles.increment(decision);
    }

    fn snapshot(&self) -> RateLimiterStats {
        RateLimiterStats {
            allowed: self.allowed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            rejected_locally: self.rejected_locally.load(Ordering::Relaxed),
            degraded: self.degraded.load(Ordering::Relaxed),
            leased: self.leased.load(Ordering::Relaxed),
        }
    }
}

/// Handles of `redkit_ratelimit_decisions_total`, each registered at its
/// first use: looking a metric up by name and labels hashes them all, which
/// cost about 0.8 % of the service's CPU in the HTTP mix when done per
/// decision. Past [`MAX_POLICIES`] names (policies made per key by mistake)
/// a decision looks its counter up each time, so the map stays bounded.
#[derive(Debug, Default)]
struct DecisionCounters {
    by_policy: parking_lot::RwLock<HashMap<String, PolicyCounters>>,
}

/// One counter per (outcome, source), allowed ones first; set at first use,
/// so the exposition lists only the pairs that happened.
type PolicyCounters = [OnceLock<metrics::Counter>; 2 * SOURCES.len()];

/// Every source with its label, in the order of [`PolicyCounters`].
const SOURCES: [(DecisionSource, &str); 5] = [
    (DecisionSource::Store, "store"),
    (DecisionSource::LocalBlock, "local_block"),
    (DecisionSource::Insurance, "insurance"),
    (DecisionSource::FailOpen, "fail_open"),
    (DecisionSource::Lease, "lease"),
];

/// Policies whose decision counters are kept.
const MAX_POLICIES: usize = 256;

impl DecisionCounters {
    fn increment(&self, decision: &Decision) {
        let source = SOURCES
            .iter()
            .position(|(source, _)| *source == decision.source)
            .unwrap_or_default();
        let index = usize::from(!decision.allowed) * SOURCES.len() + source;
        if let Some(counters) = self.by_policy.read().get(&decision.policy) {
            counters[index]
                .get_or_init(|| register(&decision.policy, index))
                .increment(1);
            return;
        }
        let counter = register(&decision.policy, index);
        counter.increment(1);
        let mut by_policy = self.by_policy.write();
        if by_policy.len() < MAX_POLICIES {
            let counters = by_policy.entry(decision.policy.clone()).or_default();
            let _ = counters[index].set(counter);
        }
    }
}

/// The counter of `policy` at `index` of [`PolicyCounters`].
fn register(policy: &str, index: usize) -> metrics::Counter {
    let outcome = if index < SOURCES.len() {
        "allowed"
    } else {
        "rejected"
    };
    metrics::counter!(
        "redkit_ratelimit_decisions_total",
        "policy" => policy.to_owned(),
        "outcome" => outcome,
        "source" => SOURCES[index % SOURCES.len()].1,
    )
}

/// A distributed rate limiter; clones share state.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> redkit::Result<()> {
/// use std::time::Duration;
/// use redkit::ratelimit::{Policy, RateLimiter};
///
/// let kit = redkit::Redkit::builder().build()?;
/// let limiter = RateLimiter::new(kit.store().clone())?;
/// let policy = Policy::new("login", 2, Duration::from_secs(60))?;
/// assert!(limiter.check(&policy, "ip:192.0.2.1", 1).await?.allowed);
/// assert!(limiter.check(&policy, "ip:192.0.2.1", 1).await?.allowed);
/// let third = limiter.check(&policy, "ip:192.0.2.1", 1).await?;
/// assert!(!third.allowed);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`RateLimiter::check`] fails with [`Error::InvalidInput`] for an invalid
/// key, and with the store's error only when the limiter is set to fail
/// closed ([`WhenUnavailable`]); by default an insurance limiter answers
/// instead.
#[derive(Clone)]
pub struct RateLimiter<S: Store = AnyStore> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    insurance: EmbeddedStore,
    when_unavailable: WhenUnavailable,
    local_block: bool,
    blocked: moka::sync::Cache<String, Instant>,
    /// Whether any key was ever blocked locally: until one is, checks skip
    /// building the block key and looking it up.
    ever_blocked: std::sync::atomic::AtomicBool,
    counters: Counters,
    leases: Option<Leases>,
    /// Checks on their way to the store, sent together under load.
    batches: Batches,
}

impl<S: Store> std::fmt::Debug for RateLimiter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("when_unavailable", &self.inner.when_unavailable)
            .field("blocked_keys", &self.inner.blocked.entry_count())
            .finish()
    }
}

impl<S: Store> RateLimiter<S> {
    /// A limiter counting in `store`, with an insurance limiter for outages
    /// and local blocking on.
    pub fn new(store: S) -> Result<Self> {
        Self::builder(store).build()
    }

    /// A builder to choose the outage behaviour and local blocking.
    pub fn builder(store: S) -> RateLimiterBuilder<S> {
        RateLimiterBuilder {
            store,
            when_unavailable: WhenUnavailable::default(),
            local_block: true,
            local_leases: None,
        }
    }

    /// Counts one request of `cost` for `key` under `policy`.
    pub async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision> {
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        let decision = self.consume(policy, key, cost).await?;
        self.inner.counters.record(&decision);
        Ok(decision)
    }

    /// This instance's decision counts so far (checks only, not penalties
    /// given through [`RateLimiter::penalize`] or rewards).
    pub fn stats(&self) -> RateLimiterStats {
        self.inner.counters.snapshot()
    }

    /// Takes `points` more from `key`'s quota (for example after a failed
    /// login), admitted or not.
    ///
    /// During an outage (fallback mode) the penalty is also journaled and
    /// replayed on Redis before Redis serves again, so recovery does not
    /// forgive it; if the journal is full it is dropped with a warning (this
    /// instance's local block still holds).
    pub async fn penalize(&self, policy: &Policy, key: &str, points: u64) -> Result<Decision> {
        let points = i64::try_from(points).unwrap_or(i64::MAX);
        let decision = self.consume(policy, key, points).await?;
        journal_penalty(&self.inner.store, policy, key, points);
        Ok(decision)
    }

    /// Gives `points` back to `key`'s quota (for example after a successful
    /// login), and lifts a local block.
    pub async fn reward(&self, policy: &Policy, key: &str, points: u64) -> Result<Decision> {
        let points = i64::try_from(points).unwrap_or(i64::MAX);
        self.inner.blocked.invalidate(&block_key(policy, key));
        self.consume(policy, key, -points).await
    }

    /// One check, cheapest answer first: the local block, then a lease,
    /// then the store. Many tasks run this for one key at once; nothing here
    /// holds a lock across an `.await`, so the only shared decisions are the
    /// store's (atomic per script) and the lease's (under its own mutex).
    async fn consume(&self, policy: &Policy, key: &str, cost: i64) -> Result<Decision> {
        validate_key(key)?;
        let inner = &self.inner;
        // The local key, built only when a local layer needs it.
        let needs_local = inner.leases.is_some()
            || (inner.local_block && inner.ever_blocked.load(Ordering::Relaxed));
        let local = if needs_local {
            block_key(policy, key)
        } else {
            String::new()
        };
        // A rejection's retry time is the same for every caller until it
        // passes, so concurrent callers need not ask the store again.
        // Rewards (cost ≤ 0) always reach the store, which may lift it.
        if cost > 0
            && inner.local_block
            && inner.ever_blocked.load(Ordering::Relaxed)
            && let Some(until) = inner.blocked.get(&local)
        {
            let now = Instant::now();
            if until > now {
                let wait = until - now;
                return Ok(Decision {
                    allowed: false,
                    policy: policy.name().to_owned(),
                    limit: policy.limit(),
                    remaining: 0,
                    retry_after: wait,
                    reset_after: wait,
                    source: DecisionSource::LocalBlock,
                });
            }
            inner.blocked.invalidate(&local);
        }
        // `plan` either admits from units the store already counted, or
        // tells us how many extra units to ask for with this request (zero
        // while another caller's lease request is in flight, so at most one
        // lease per key and instance is being asked for at a time).
        let plan = match &inner.leases {
            Some(leases) if cost > 0 => leases.plan(policy, &local, cost.unsigned_abs()),
            _ => Plan::Store { extra: 0 },
        };
        let extra = match plan {
            Plan::Local(decision) => return Ok(decision),
            Plan::Store { extra } => extra,
        };
        let store_key = store_key(policy, key);
        let asked = cost.saturating_add(i64::try_from(extra).unwrap_or(i64::MAX));
        let mut result = self.decide(policy, &store_key, asked).await;
        let mut granted = extra;
        if extra > 0 && result.as_ref().is_ok_and(|decision| !decision.allowed) {
            // The lease did not fit (near the limit): ask for the request alone.
            granted = 0;
            result = self.decide(policy, &store_key, cost).await;
        }
        // Settle even on errors: `plan` marked a lease request in flight,
        // and until it is settled (or an interval passes) no other caller
        // of this key may ask for one.
        if let Some(leases) = &inner.leases
            && cost > 0
        {
            let decided = result.as_ref().ok();
            let granted = if decided.is_some_and(|d| d.allowed && d.source == DecisionSource::Store)
            {
                granted
            } else {
                0
            };
            leases.settle(&local, decided, extra, granted);
        }
        let mut decision = result?;
        if decision.allowed && decision.source == DecisionSource::Store {
            // Leased units are still this caller's to use.
            decision.remaining = decision.remaining.saturating_add(granted);
        }
        // Concurrent rejections insert the same deadline give or take a
        // round trip; the last write wins, which is harmless.
        if inner.local_block && !decision.allowed && !decision.retry_after.is_zero() {
            let local = if local.is_empty() {
                block_key(policy, key)
            } else {
                local
            };
            inner
                .blocked
                .insert(local, Instant::now() + decision.retry_after);
            inner.ever_blocked.store(true, Ordering::Relaxed);
        }
        Ok(decision)
    }

    /// One decision from the store, or from the outage behaviour while it
    /// is unavailable.
    async fn decide(&self, policy: &Policy, store_key: &str, cost: i64) -> Result<Decision> {
        let inner = &self.inner;
        let reply = inner
            .batches
            .check(&inner.store, store_key.to_owned(), check_args(policy, cost))
            .await;
        match reply.and_then(|reply| decision(policy, store_key, reply)) {
            Ok(decision) => Ok(decision),
            Err(error) if is_outage(&error) => match inner.when_unavailable {
                WhenUnavailable::Insurance => {
                    let mut decision = run(&inner.insurance, policy, store_key, cost).await?;
                    decision.source = DecisionSource::Insurance;
                    Ok(decision)
                }
                WhenUnavailable::FailOpen => Ok(Decision {
                    allowed: true,
                    policy: policy.name().to_owned(),
                    limit: policy.limit(),
                    remaining: policy.limit(),
                    retry_after: Duration::ZERO,
                    reset_after: Duration::ZERO,
                    source: DecisionSource::FailOpen,
                }),
                WhenUnavailable::FailClosed => Err(error),
            },
            Err(error) => Err(error),
        }
    }
}

/// Consuming builder of [`RateLimiter`].
#[derive(Debug)]
#[must_use]
pub struct RateLimiterBuilder<S> {
    store: S,
    when_unavailable: WhenUnavailable,
    local_block: bool,
    local_leases: Option<(Duration, f64)>,
}

impl<S: Store> RateLimiterBuilder<S> {
    /// What to do while the store is unavailable. Default: insurance limiter.
    pub fn when_unavailable(mut self, behaviour: WhenUnavailable) -> Self {
        self.when_unavailable = behaviour;
        self
    }

    /// Reject keys already over their limit in process, without a round
    /// trip, until their retry time (measured on this machine's monotonic
    /// clock). Default: on.
    pub fn local_block(mut self, enabled: bool) -> Self {
        self.local_block = enabled;
        self
    }

    /// Admit requests far from their limit locally, from units leased from
    /// the store together with an earlier request: a lease is at most
    /// `share` (0 < share ≤ 1) of the remaining quota and is used for at most
    /// `interval`. Never admits more than the limit across instances (the
    /// store counts leases when it grants them); near the limit (remaining
    /// below `1 / share`) every request goes to the store, so counts stay
    /// exact there. Unused leased units count as used (stricter by at most
    /// one lease per key and instance). Default: off.
    pub fn local_leases(mut self, interval: Duration, share: f64) -> Self {
        self.local_leases = Some((interval, share));
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a lease interval of zero or a share
    /// outside `(0, 1]`, or when the insurance store cannot be built.
    pub fn build(self) -> Result<RateLimiter<S>> {
        let leases = match self.local_leases {
            None => None,
            Some((interval, share)) => {
                if interval.is_zero() || !(share > 0.0 && share <= 1.0) {
                    return Err(Error::invalid_config(
                        "rate-limit local_leases",
                        format!("interval {interval:?}, share {share}"),
                        "an interval above zero and a share in (0, 1]",
                    ));
                }
                Some(Leases::new(interval, share))
            }
        };
        let insurance =
            EmbeddedStore::new(EmbeddedConfig::default().max_memory_bytes(16 * 1024 * 1024))?;
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                store: self.store,
                insurance,
                when_unavailable: self.when_unavailable,
                local_block: self.local_block,
                blocked: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(Duration::from_secs(31 * 24 * 3600))
                    .build(),
                ever_blocked: std::sync::atomic::AtomicBool::new(false),
                counters: Counters::default(),
                leases,
                batches: Batches::default(),
            }),
        })
    }
}

/// One check on its own (the insurance limiter, replays after an outage).
async fn run<T: Store>(store: &T, policy: &Policy, key: &str, cost: i64) -> Result<Decision> {
    let reply = run_one(store, key, &check_args(policy, cost)).await?;
    decision(policy, key, reply)
}

/// The decision in the store's `reply` to a check of `key`.
fn decision(policy: &Policy, key: &str, reply: Reply) -> Result<Decision> {
    let [allowed, remaining, retry_us, reset_us] = reply;
    if allowed == WRONG_TYPE {
        return Err(Error::WrongType {
            key: key.to_owned(),
            expected: "string",
        });
    }
    Ok(Decision {
        allowed: allowed == 1,
        policy: policy.name().to_owned(),
        limit: policy.limit(),
        remaining: u64::try_from(remaining).unwrap_or(0),
        retry_after: Duration::from_micros(u64::try_from(retry_us).unwrap_or(0)),
        reset_after: Duration::from_micros(u64::try_from(reset_us).unwrap_or(0)),
        source: DecisionSource::Store,
    })
}

/// Records a penalty made on the outage fallback, to be taken again on
/// Redis at recovery (each penalty on its own: they add up).
fn journal_penalty<S: Store>(store: &S, policy: &Policy, key: &str, points: i64) {
    let store_key = store_key(policy, key);
    let id = format!("penalty:{store_key}:{:016x}", fastrand::u64(..));
    let name = policy.name().to_owned();
    let policy = policy.clone();
    let replay = Replay::new(move |redis: RedisStore| {
        let (policy, store_key) = (policy.clone(), store_key.clone());
        async move { run(&redis, &policy, &store_key, points).await.map(|_| ()) }
    });
    if let Err(error) = store.record_for_recovery(id, replay) {
        tracing::warn!(policy = name, %error, "penalty not journaled; Redis will not see it after recovery");
    }
}

/// The store key counting `key` under `policy`.
fn store_key(policy: &Policy, key: &str) -> String {
    ["rl:", policy.name(), ":", key].concat()
}

/// Whether the store cannot count now: unreachable, or it answered that it
/// cannot (out of memory, loading, read-only…). Counting must then go on
/// somewhere, or every request would fail.
fn is_outage(error: &Error) -> bool {
    error.is_unavailable() || error.is_refused_for_now()
}

fn block_key(policy: &Policy, key: &str) -> String {
    [policy.name(), ":", key].concat()
}

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_input(
            "rate-limit key",
            format!(
                "it is {} bytes long; expected 1 to {MAX_KEY_LEN}",
                key.len()
            ),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid_input(
            "rate-limit key",
            "it contains control characters; expected printable text",
        ));
    }
    Ok(())
}
