//! One shared Redis connection for every module.
//!
//! Backend services keep writing the same connection code by hand: retry
//! with backoff, a health PING, logs on every state change, a
//! graceful `quit()` on SIGTERM. [`RedisConnection`] is that code done once:
//!
//! - **Cheap to clone**: clones share one set of multiplexed connections
//!   (`pool_size`, default 1 — one multiplexed connection pipelines every
//!   concurrent command).
//! - **Lazy**: [`RedisConnection::connect`] returns at once; a background
//!   supervisor connects, so a service starts and serves while Redis is down.
//! - **Fails fast**: while not [`ConnectionState::Ready`] a command returns
//!   [`Error::Unavailable`](crate::Error::Unavailable) immediately, and no
//!   command waits longer than the command timeout. Callers (the fallback
//!   store) can switch to the embedded store at once instead of queueing.
//! - **Heals itself**: capped exponential backoff with jitter; after
//!   `max_attempts` the state is `Degraded` and a slow probe keeps trying, so
//!   the handle recovers whenever Redis comes back — it never gives up.
//! - **Tells a rejection from an outage**: a wrong password or user, a
//!   missing permission or an unknown database is state
//!   [`ConnectionState::Rejected`] at once, with the reason
//!   ([`RedisConnection::rejection`], never the password), logged as an
//!   error once per reason and graded unhealthy by health checks; it is
//!   probed at the slow interval, so a fix on the server heals it.
//! - **Observable**: [`RedisConnection::state`], a stream of changes
//!   ([`RedisConnection::state_changes`]), a `tracing` event per transition
//!   (host, port, db — never the password) and `metrics` counters.
//!
//! # Low-level access: the `redis` crate's types
//!
//! This module is the one corner of redkit's public API that shows types of
//! the [`redis`] crate, whose major versions move faster than redkit's:
//! [`RedisConnection::query`] and [`RedisConnection::query_pipeline`] take a
//! `redis::Cmd` / `redis::Pipeline`, [`RedisConnection::dedicated`] and
//! [`RedisConnection::pubsub`] hand out `redis` connections. Use them for
//! commands redkit has no API for, through the re-export [`redis`] so the
//! versions always match. Everything else in redkit (stores, cache,
//! sessions, rate limits, health) speaks only redkit's own types.

mod backoff;
mod client;
mod handle;
mod link;
mod metrics;
mod sentinel;
mod sentinel_watch;
mod settings;
mod shared;
mod supervisor;

/// The `redis` crate redkit is built on, for the low-level methods of
/// [`RedisConnection`] (see the module docs).
pub use ::redis;

pub use crate::connection_state::ConnectionState;
pub(crate) use backoff::Backoff;
pub use handle::{RedisConnection, StateChanges};
