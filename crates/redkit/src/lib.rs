//! redkit: the Redis layer backend services keep writing by hand, done once.
//!
//! One cheap-to-clone [`Redkit`] handle gives a service a shared Redis
//! connection that retries, heals and reports its state
//! ([`connection`]), a narrow [`Store`](store::Store) with a Redis and an
//! embedded in-memory implementation of the same behaviour ([`store`]), and
//! a graded [`HealthReport`](health::HealthReport) ([`health`]). With no Redis
//! configured everything runs on the embedded store; with Redis configured and
//! fallback on (the default), the embedded store serves while Redis is down.
//!
//! ```no_run
//! # async fn demo() -> redkit::Result<()> {
//! use redkit::store::Store;
//!
//! let redis = redkit::config::RedisConfig::from_env()?;
//! let kit = redkit::Redkit::builder().redis(redis).build()?;
//! kit.store().set("greeting", b"hello", None).await?;
//! let report = kit.health().await;
//! println!("{}", report.status.as_str());
//! kit.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The parts: [`cache`] (multi-tier cache-aside with tags, stale-while-
//! revalidate and fail-safe), [`session`] (sessions with a per-user index,
//! axum extractors, a tower-sessions store), [`ratelimit`] (GCRA and sliding
//! window, a tower layer), [`health`], [`config`] (every setting with its
//! default; `REDIS_*` variables), [`connection`] (the shared connection, and
//! the one low-level corner that shows the `redis` crate's types).
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `ratelimit::RateLimitLayer` and the session extractors (`session::RequiredSession`, `session::OptionalSession`); pulls in axum and tower |
//! | `tower-sessions` | yes | `session::SessionStore` for `tower_sessions` |
//! | `lz4` | yes | LZ4 compression of large cached values; without it values are stored uncompressed (compressed entries written elsewhere read as misses) |
//! | `msgpack` | no | `cache::Codec::MessagePack` |
//!
//! With `default-features = false` the core — connection, stores, cache,
//! sessions, rate limiter, health — builds on tokio, redis, quick_cache, moka and serde
//! alone.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cache;
pub mod clock;
mod coalesce;
pub mod config;
pub mod connection;
mod connection_state;
mod error;
pub mod events;
pub mod health;
pub mod queue;
pub mod ratelimit;
mod redkit;
pub mod session;
pub mod store;
mod striped;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use error::{BoxError, Error, Result};

/// The code of the crate's README, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadme;

/// The code of the workspace README, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct WorkspaceReadme;
pub use redkit::{Redkit, RedkitBuilder};
