//! Distributed rate limiting: GCRA and sliding window, one round trip per
//! check (concurrent checks share it).
//!
//! Hand-written limiters usually count by IP and route with fixed presets
//! and two round trips (INCR then EXPIRE), racing between them. redkit's
//! [`RateLimiter`] runs each check as one
//! server-side script on the store's own clock, with the same integer math in
//! Lua (Redis) and Rust (embedded store), so every instance shares one limit:
//!
//! - [`Policy`]: named limits as data, with common presets (`default`
//!   100/min, `api` 1000/h, `auth` 5 per 5 min, `static` 1000/min), GCRA or
//!   sliding window, a cost per request, penalties and rewards;
//! - keys already over their limit are rejected in process until their retry
//!   time, without a round trip;
//! - optionally, keys far from their limit are admitted in process from
//!   units leased with an earlier check ([`RateLimiterBuilder::local_leases`]):
//!   the store counts a lease when it grants it, so no instance can push a
//!   key past its limit, and near the limit every check is exact;
//! - while the store is unavailable an insurance limiter (embedded, per
//!   instance) counts instead — or the limiter fails open or closed, as
//!   configured ([`WhenUnavailable`]);
//! - [`RateLimitLayer`] (feature `axum`) puts it in front of any tower service: client IP that
//!   ignores forwarding headers unless the peer is a [`TrustedProxies`] entry,
//!   429 with `Retry-After` and a JSON body, IETF `RateLimit-Policy` /
//!   `RateLimit` headers on every response.

mod algorithm;
mod batch;
mod client_ip;
mod decision;
mod lease;
mod limiter;
#[cfg(feature = "axum")]
mod middleware;
mod policy;

#[cfg(feature = "test-util")]
pub use algorithm::script_invocation;
pub use client_ip::TrustedProxies;
pub use decision::{Decision, DecisionSource};
pub use limiter::{RateLimiter, RateLimiterBuilder, RateLimiterStats, WhenUnavailable};
#[cfg(feature = "axum")]
pub use middleware::{KeyBy, KeyFn, RateLimit, RateLimitLayer, future};
pub use policy::{Algorithm, Policy};
