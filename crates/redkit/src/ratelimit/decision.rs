//! What a check answers: a leaf both the limiter and its local leases use.

use std::time::Duration;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The policy's name.
    pub policy: String,
    /// The policy's limit.
    pub limit: u64,
    /// Requests still admitted now.
    pub remaining: u64,
    /// When a rejected request may be retried (zero when admitted).
    pub retry_after: Duration,
    /// Until the quota is fully available again.
    pub reset_after: Duration,
    /// Who decided.
    pub source: DecisionSource,
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    /// The shared store (Redis, or the embedded store when that is the backend).
    Store,
    /// The in-process block of a key already over its limit (no round trip).
    LocalBlock,
    /// The per-instance insurance limiter, while the store is unavailable.
    Insurance,
    /// Admitted without counting: the store is unavailable and the limiter
    /// fails open.
    FailOpen,
    /// Admitted locally from units this instance leased from the store
    /// beforehand (see [`RateLimiterBuilder::local_leases`](super::RateLimiterBuilder::local_leases)).
    Lease,
}
