//! [`ServiceConfig`]: the service's typed settings. The command line
//! ([`crate::cli`]) builds one; tests build their own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use redkit::config::Secret;
use redkit::ratelimit::{Policy, TrustedProxies};
use redkit::session::SessionConfig;

use crate::auth::HashingLimits;
use crate::connections::ConnectionLimits;

/// Everything the service needs besides Redis.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServiceConfig {
    /// The SQLite file. Default: `./redkit.db`.
    pub database: PathBuf,
    /// Mark the session cookie `Secure` (serve behind TLS). Default: false.
    pub cookie_secure: bool,
    /// Largest accepted request body, in bytes. Default: 64 KiB.
    pub max_body_bytes: usize,
    /// Most tasks one user may keep: creating one more gets 409
    /// (`task_limit`). The API limit bounds how fast an account writes;
    /// this bounds how much of the database it can fill. Default: 10,000.
    pub max_tasks_per_user: u32,
    /// Most accounts the service keeps: registering one more gets 409
    /// (`account_limit`). The auth limit bounds registrations per client
    /// (IPv6: per /56); this bounds them all, so clients on many addresses
    /// cannot fill the database with accounts. Default: 1,000,000.
    pub max_accounts: u32,
    /// Limit of `/auth/register` and `/auth/login`, per client IP; `None`
    /// disables it. Default: the AUTH preset, 5 per 5 minutes.
    pub auth_policy: Option<Policy>,
    /// Limit of `/tasks` and `/events`, per client IP; `None` disables it.
    /// Default: the DEFAULT preset, 100 per minute.
    pub api_policy: Option<Policy>,
    /// Local leases of the rate limiter (interval, share of the remaining
    /// quota): requests far from their limit are admitted without a round
    /// trip, never more than the limit (see
    /// `redkit::ratelimit::RateLimiterBuilder::local_leases`); near the
    /// limit every request is counted in Redis. `None` counts every request
    /// in Redis. Default: 100 ms, 10 %.
    pub rate_limit_leases: Option<(Duration, f64)>,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` are believed.
    /// Default: none.
    pub trusted_proxies: TrustedProxies,
    /// Sessions. Default: redkit's (24 h rolling) with a 2 s local cache
    /// (most requests then read their session without a round trip; ends
    /// and changes reach every instance through pub/sub) and a 10 s local
    /// fail-safe. With Redis configured they are kept in Redis only (no
    /// embedded fallback): while it cannot be reached, a session this
    /// instance read from it in the last 10 s keeps working, read-only;
    /// others get 503, as do login and logout (nothing can be created or
    /// ended meanwhile). The trade-off: a session ended on another instance
    /// during a partition is accepted here for up to those 10 s.
    pub sessions: SessionConfig,
    /// How long a task list stays cached. Default: 5 minutes (writes
    /// invalidate it at once).
    pub tasks_ttl: Duration,
    /// How often the background probe takes the health report that
    /// `/health`, `/health/ready`, `/health/redis` and the dashboard answer
    /// from. Default: 1 s.
    pub probe_interval: Duration,
    /// A separate listener for the operator routes (`/metrics`,
    /// `/health/redis`, `/dashboard`, `/dashboard/data`), which then leave
    /// the public one. Default: none (they share the public listener).
    pub admin_listen: Option<SocketAddr>,
    /// When set, the operator routes require `Authorization: Bearer
    /// <token>` (compared in constant time; never logged). Default: none.
    pub admin_token: Option<Secret>,
    /// Events kept per user for `Last-Event-ID` replay (the newest; a
    /// user's log is dropped 24 h after their last event). Default: 1000.
    pub events_kept: usize,
    /// Every request is answered within this (from Redis, from a fallback,
    /// or as 503 with `Retry-After`), whatever Redis' latency. Default: 2 s.
    pub request_timeout: Duration,
    /// Client connections: cap and header-read timeout. Default: 512, 5 s.
    pub connections: ConnectionLimits,
    /// How long `redkit serve` waits for Redis before it listens. Until
    /// Redis is ready the store serves from its embedded fallback, where
    /// instances share no rate-limit counts and sessions cannot be created;
    /// past the wait the service starts anyway, degraded, and moves to
    /// Redis once it connects. Zero listens at once. Default: 5 s.
    pub redis_startup_wait: Duration,
    /// Password hashing threads and queue. Default: CPUs (≤ 4), 32.
    pub password_hashing: HashingLimits,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            database: PathBuf::from("./redkit.db"),
            cookie_secure: false,
            max_body_bytes: 64 * 1024,
            max_tasks_per_user: 10_000,
            max_accounts: 1_000_000,
            auth_policy: Some(Policy::auth()),
            api_policy: Some(Policy::default_preset()),
            rate_limit_leases: Some((Duration::from_millis(100), 0.1)),
            trusted_proxies: TrustedProxies::none(),
            sessions: SessionConfig::default()
                .local_cache(Duration::from_secs(2))
                .local_fail_safe(Duration::from_secs(10)),
            tasks_ttl: Duration::from_secs(300),
            probe_interval: Duration::from_secs(1),
            admin_listen: None,
            admin_token: None,
            events_kept: 1000,
            request_timeout: Duration::from_secs(2),
            connections: ConnectionLimits::default(),
            redis_startup_wait: Duration::from_secs(5),
            password_hashing: HashingLimits::default(),
        }
    }
}

impl ServiceConfig {
    /// The default configuration with the database at `path`.
    pub fn with_database(path: impl Into<PathBuf>) -> Self {
        ServiceConfig {
            database: path.into(),
            ..ServiceConfig::default()
        }
    }
}
