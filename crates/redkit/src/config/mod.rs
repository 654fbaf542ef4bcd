//! Configuration: what to connect to and how to behave when it is not there.
//!
//! Every setting has a documented default, so `RedisConfig::default()` is a
//! usable local configuration. Three ways in, all validated with the same
//! rules and the same messages:
//!
//! - [`RedisConfig::builder`], a consuming builder for code;
//! - [`RedisConfig::from_url`] for `redis://` / `rediss://` URLs, and
//!   `redis+sentinel://` / `redis+cluster://` for the other [`Topology`]s;
//! - [`RedisConfig::from_env`] for twelve-factor services — meant to be called
//!   once at the edge (in `main`), never deep inside a module.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `***`.

mod embedded;
mod env;
mod redis;
mod secret;
mod topology;
mod url;

pub use embedded::EmbeddedConfig;
pub use redis::{RedisConfig, RedisConfigBuilder, RetryConfig};
pub use secret::Secret;
pub use topology::{ClusterConfig, NodeAddress, SentinelConfig, Topology, TopologyKind};
