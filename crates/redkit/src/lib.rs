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

pub mod cache;
pub mod clock;
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
#[cfg(feature = "test-util")]
pub mod test_util;

pub use error::{BoxError, Error, Result};
pub use redkit::{Redkit, RedkitBuilder};
