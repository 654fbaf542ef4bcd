//! Helpers shared by the integration tests.

use std::time::Duration;

use redkit::config::{RedisConfig, RetryConfig};
use redkit::connection::{ConnectionState, RedisConnection};
use redkit_testkit::RedisServer;

/// A configuration for `server` with short timeouts so tests run fast.
pub fn fast_config(url: &str) -> RedisConfig {
    RedisConfig::builder()
        .url(url)
        .unwrap()
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
        .unwrap()
}

/// A connected handle to `server`.
pub async fn connected(server: &RedisServer) -> RedisConnection {
    let connection = RedisConnection::connect(fast_config(&server.url())).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    connection
}

/// Waits until `connection` reaches `state`, panicking after `within`.
pub async fn wait_for_state(
    connection: &RedisConnection,
    state: ConnectionState,
    within: Duration,
) {
    let mut changes = connection.state_changes();
    let reached = tokio::time::timeout(within, async {
        while let Some(current) = changes.next().await {
            if current == state {
                return;
            }
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "connection did not reach {state} within {within:?}; it is {}",
        connection.state()
    );
}

/// Polls `probe` until it returns true, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if probe().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
