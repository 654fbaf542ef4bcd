//! [`RateLimitLayer`]: which policy, which key, which headers.

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;
use tower::Layer;

use super::service::RateLimit;
use crate::ratelimit::{Policy, RateLimiter, TrustedProxies};
use crate::store::{AnyStore, Store};

/// A function from a request to its rate-limit key.
pub type KeyFn = Arc<dyn Fn(&Parts, IpAddr) -> Option<String> + Send + Sync>;

/// How a request is turned into a rate-limit key.
#[derive(Clone)]
pub enum KeyBy {
    /// The client IP (see [`TrustedProxies`]). Default.
    ClientIp,
    /// The value of a request header (for example an API key); requests
    /// without it are keyed by client IP.
    Header(http::HeaderName),
    /// A function of the request (for example the user id an auth middleware
    /// put in the extensions); `None` falls back to the client IP.
    Custom(KeyFn),
}

impl KeyBy {
    /// A custom key function.
    pub fn custom(f: impl Fn(&Parts, IpAddr) -> Option<String> + Send + Sync + 'static) -> Self {
        KeyBy::Custom(Arc::new(f))
    }

    pub(super) fn key(&self, parts: &Parts, ip: IpAddr) -> String {
        let custom = match self {
            KeyBy::ClientIp => None,
            KeyBy::Header(name) => parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| format!("h:{value}")),
            KeyBy::Custom(f) => f(parts, ip).map(|key| format!("c:{key}")),
        };
        custom.unwrap_or_else(|| format!("ip:{ip}"))
    }
}

impl std::fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyBy::ClientIp => f.write_str("ClientIp"),
            KeyBy::Header(name) => f.debug_tuple("Header").field(name).finish(),
            KeyBy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Applies a [`Policy`] to every request of the wrapped service.
///
/// Rejected requests get `429 Too Many Requests` with `Retry-After` and a
/// small JSON body; every response carries the IETF draft headers
/// `RateLimit-Policy` and `RateLimit` (and, when enabled, the legacy
/// `X-RateLimit-Limit/Remaining/Reset`). While the store is unavailable and
/// the limiter fails closed, requests get 503.
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer<S: Store = AnyStore> {
    pub(super) config: Arc<LayerConfig<S>>,
}

#[derive(Debug)]
pub(super) struct LayerConfig<S: Store> {
    pub(super) limiter: RateLimiter<S>,
    pub(super) policy: Policy,
    pub(super) key_by: KeyBy,
    pub(super) scope: Option<String>,
    pub(super) cost: u64,
    pub(super) proxies: TrustedProxies,
    pub(super) legacy_headers: bool,
}

impl<S: Store> RateLimitLayer<S> {
    /// Limits by client IP with `policy`.
    pub fn new(limiter: RateLimiter<S>, policy: Policy) -> Self {
        RateLimitLayer {
            config: Arc::new(LayerConfig {
                limiter,
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
        let mut config = match Arc::try_unwrap(self.config) {
            Ok(config) => config,
            Err(shared) => LayerConfig {
                limiter: shared.limiter.clone(),
                policy: shared.policy.clone(),
                key_by: shared.key_by.clone(),
                scope: shared.scope.clone(),
                cost: shared.cost,
                proxies: shared.proxies.clone(),
                legacy_headers: shared.legacy_headers,
            },
        };
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
