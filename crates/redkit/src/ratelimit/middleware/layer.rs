//! [`RateLimitLayer`]: which policy, which key, which headers.

use std::sync::Arc;

use tower::Layer;

use super::config::LayerConfig;
use super::key::KeyBy;
use super::service::RateLimit;
use crate::ratelimit::{Policy, RateLimiter, TrustedProxies};
use crate::store::{AnyStore, Store};

/// Applies a [`Policy`] to every request of the wrapped service.
///
/// Rejected requests get `429 Too Many Requests` with `Retry-After` and a
/// small JSON body; every response carries the IETF draft headers
/// `RateLimit-Policy` and `RateLimit` (and, when enabled, the legacy
/// `X-RateLimit-Limit/Remaining/Reset`). While the store is unavailable and
/// the limiter fails closed, requests get 503.
///
/// The client IP comes from the connection: serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()`, and name your
/// reverse proxies with [`RateLimitLayer::trusted_proxies`].
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::post};
/// use redkit::ratelimit::{Policy, RateLimitLayer, RateLimiter, TrustedProxies};
///
/// # fn main() -> redkit::Result<()> {
/// let kit = redkit::Redkit::builder().build()?;
/// let limiter = RateLimiter::new(kit.store().clone())?;
/// let login = RateLimitLayer::new(limiter, Policy::auth()) // 5 per 5 minutes
///     .scope("login")
///     .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"])?);
/// let app: Router = Router::new().route("/login", post(|| async { "welcome" }).layer(login));
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer<S: Store = AnyStore> {
    pub(super) config: Arc<LayerConfig<S>>,
}

impl<S: Store> RateLimitLayer<S> {
    /// Limits by client IP with `policy`.
    pub fn new(limiter: RateLimiter<S>, policy: Policy) -> Self {
        RateLimitLayer {
            config: Arc::new(LayerConfig {
                limiter,
                policy_header: super::headers::policy_header(&policy),
                policy,
                key_by: KeyBy::ClientIp,
                scope: None,
                cost: 1,
                proxies: TrustedProxies::none(),
                legacy_headers: false,
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut LayerConfig<S>)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        change(&mut config);
        RateLimitLayer {
            config: Arc::new(config),
        }
    }

    /// How requests are keyed. Default: client IP.
    pub fn key_by(self, key_by: KeyBy) -> Self {
        self.with(|config| config.key_by = key_by)
    }

    /// A scope added to every key, to count a route separately from others
    /// that share the policy. Default: none.
    pub fn scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.with(|config| config.scope = Some(scope))
    }

    /// Points each request costs. Default: 1.
    pub fn cost(self, cost: u64) -> Self {
        self.with(|config| config.cost = cost.max(1))
    }

    /// Proxies whose forwarding headers are believed. Default: none.
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Self {
        self.with(|config| config.proxies = proxies)
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`. Default: off.
    pub fn legacy_headers(self, enabled: bool) -> Self {
        self.with(|config| config.legacy_headers = enabled)
    }
}

impl<S: Store, Inner> Layer<Inner> for RateLimitLayer<S> {
    type Service = RateLimit<Inner, S>;

    fn layer(&self, inner: Inner) -> Self::Service {
        RateLimit::new(inner, self.config.clone())
    }
}
