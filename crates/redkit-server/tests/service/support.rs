//! Starting in-process servers for tests.

use std::time::Duration;

use redkit::Redkit;
use redkit::config::{RedisConfig, RetryConfig};
use redkit_server::{AppState, RunningServer, install_metrics_recorder};

/// A Redis configuration with short timeouts for `url`.
pub fn fast_redis(url: &str) -> RedisConfig {
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

/// Starts a server on 127.0.0.1:0 with `redis` (or the embedded store).
pub async fn start(redis: Option<RedisConfig>) -> RunningServer {
    let metrics = install_metrics_recorder();
    let mut builder = Redkit::builder();
    if let Some(redis) = redis {
        builder = builder.redis(redis);
    }
    let kit = builder.build().unwrap();
    let state = AppState::new(kit, metrics).await.unwrap();
    RunningServer::start(([127, 0, 0, 1], 0).into(), state)
        .await
        .unwrap()
}

/// GET `path` and return the status and the body as JSON.
pub async fn get_json(server: &RunningServer, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("http://{}{path}", server.address))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}
