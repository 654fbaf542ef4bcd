//! The settings a layer hands to each service it wraps: a leaf both the
//! layer (which builds them) and the service (which reads them) use.

use http::HeaderValue;

use super::key::KeyBy;
use crate::ratelimit::{Policy, RateLimiter, TrustedProxies};
use crate::store::Store;

#[derive(Debug, Clone)]
pub(super) struct LayerConfig<S: Store> {
    pub(super) limiter: RateLimiter<S>,
    pub(super) policy: Policy,
    /// `RateLimit-Policy`, the same on every response: built once.
    pub(super) policy_header: Option<HeaderValue>,
    pub(super) key_by: KeyBy,
    pub(super) scope: Option<String>,
    pub(super) cost: u64,
    pub(super) proxies: TrustedProxies,
    pub(super) legacy_headers: bool,
}
