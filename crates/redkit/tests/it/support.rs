//! Helpers shared by the integration tests.

use std::time::Duration;

use redkit::Redkit;
use redkit::connection::{ConnectionState, RedisConnection};
pub use redkit::test_util::fast_redis_config;
use redkit_testkit::RedisServer;

/// A `Redkit` on `server` (short timeouts), its connection ready.
pub async fn ready_kit(server: &RedisServer) -> Redkit {
    redkit::test_util::ready(Redkit::builder().redis(fast_redis_config(&server.url()))).await
}

/// Starts `server` again and waits until `connection` is `Ready` on it.
pub async fn restart_and_wait(server: &mut RedisServer, connection: &RedisConnection) {
    server.start();
    wait_for_state(connection, ConnectionState::Ready, Duration::from_secs(5)).await;
}

/// A connected handle to `server`.
pub async fn connected(server: &RedisServer) -> RedisConnection {
    let connection = RedisConnection::connect(fast_redis_config(&server.url())).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    connection
}

/// Like [`connected`], with 5 s for each command and health check instead
/// of 500 ms, for tests that count exactly and are not about outages: on a
/// loaded two-core CI machine one reply slower than 500 ms makes a rate
/// limiter answer from its per-instance insurance (as it should during an
/// outage), and an exact count looks wrong.
pub async fn patiently_connected(server: &RedisServer) -> RedisConnection {
    let mut config = fast_redis_config(&server.url());
    config.command_timeout = Duration::from_secs(5);
    let connection = RedisConnection::connect(config).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    connection
}

/// Calls of `command` (lower case, as `INFO commandstats` names it) the
/// Redis behind `connection` has served so far.
pub async fn command_calls(connection: &RedisConnection, command: &str) -> u64 {
    let info: String = connection
        .query(::redis::cmd("INFO").arg("commandstats"))
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
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

/// A key prefix no other test of this binary uses (tests share one cluster).
pub fn unique_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("t{n}:")
}

/// A connected handle to this binary's shared Redis Cluster, with `prefix`.
pub async fn cluster_connection(prefix: &str) -> RedisConnection {
    let cluster = redkit_testkit::RedisCluster::shared();
    let mut config = fast_redis_config(&cluster.url());
    config.key_prefix = prefix.to_owned();
    let connection = RedisConnection::connect(config).unwrap();
    connection
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    connection
}

/// A store on this binary's shared Redis Cluster, under a prefix of its own.
pub async fn cluster_store() -> redkit::store::RedisStore {
    redkit::store::RedisStore::new(cluster_connection(&unique_prefix()).await)
}
