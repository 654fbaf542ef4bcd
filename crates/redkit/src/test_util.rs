//! Helpers for test suites (feature `test-util`): shared by redkit's own
//! tests and the reference service's, so both run against Redis with the
//! same short timeouts.

use std::time::Duration;

use crate::config::{RedisConfig, RetryConfig};
use crate::{Redkit, RedkitBuilder};

/// A configuration for the Redis at `url` with timeouts short enough for
/// tests: 500 ms per command and connect, a health check every 200 ms, and
/// retries from 20 ms to 200 ms, degraded after 5 attempts and probing every
/// 300 ms — so outages and recoveries show within a second.
///
/// # Panics
/// When `url` is not a valid Redis URL (a test's own mistake).
pub fn fast_redis_config(url: &str) -> RedisConfig {
    let built = RedisConfig::builder().url(url).and_then(|builder| {
        builder
            .command_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500))
            .health_check_interval(Duration::from_millis(200))
            .retry(
                RetryConfig::default()
                    .initial_delay(Duration::from_millis(20))
                    .max_delay(Duration::from_millis(200))
                    .max_attempts(5)
                    .degraded_probe_interval(Duration::from_millis(300)),
            )
            .build()
    });
    match built {
        Ok(config) => config,
        Err(error) => panic!("test Redis URL rejected: {error}"),
    }
}

/// Builds `builder` and waits up to 5 s until its Redis connection is ready
/// (at once when no Redis is configured).
///
/// # Panics
/// When the handle cannot be built or Redis is not ready in time.
pub async fn ready(builder: RedkitBuilder) -> Redkit {
    let kit = match builder.build() {
        Ok(kit) => kit,
        Err(error) => panic!("cannot build the test Redkit: {error}"),
    };
    if let Some(connection) = kit.connection()
        && let Err(error) = connection.wait_ready(Duration::from_secs(5)).await
    {
        panic!("test Redis not ready: {error}");
    }
    kit
}
