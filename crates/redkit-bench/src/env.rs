//! The benchmark environment: Redis, load shape and data sizes.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit_testkit::RedisServer;

use crate::measure::Load;

/// Everything a scenario needs.
pub(crate) struct Env {
    pub(crate) url: String,
    pub(crate) load: Load,
    pub(crate) keys: usize,
    pub(crate) value_size: usize,
    pub(crate) rounds: usize,
    /// Keep-alive connections of the HTTP scenarios (one load task each).
    pub(crate) connections: usize,
    _server: Option<RedisServer>,
}

impl Env {
    pub(crate) fn new(
        url: Option<String>,
        load: Load,
        keys: usize,
        value_size: usize,
        rounds: usize,
        connections: usize,
    ) -> Self {
        let (url, server) = match url {
            Some(url) => (url, None),
            None => {
                let server = RedisServer::new();
                (server.url(), Some(server))
            }
        };
        Env {
            url,
            load,
            keys,
            value_size,
            rounds,
            connections,
            _server: server,
        }
    }

    /// Whether the harness started its own redis-server.
    pub(crate) fn owns_server(&self) -> bool {
        self._server.is_some()
    }

    /// A plain redis-rs multiplexed connection: the raw baseline.
    pub(crate) async fn raw(&self) -> MultiplexedConnection {
        use redis::IntoConnectionInfo;
        // The same socket options as redkit's connection (TCP_NODELAY, as
        // ioredis and most clients set it), so the ratio measures redkit.
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .unwrap_or_else(|err| panic!("bad --redis URL: {err}"))
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client =
            redis::Client::open(info).unwrap_or_else(|err| panic!("bad --redis URL: {err}"));
        client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|err| panic!("cannot connect to {}: {err}", self.url))
    }

    /// A redkit handle on the same Redis (fallback mode, the default).
    pub(crate) async fn redkit(&self) -> Redkit {
        self.redkit_prefixed("").await
    }

    /// A redkit handle on the same Redis whose keys and channels start with
    /// `prefix` (two services side by side that must not share data).
    pub(crate) async fn redkit_prefixed(&self, prefix: &str) -> Redkit {
        let mut config =
            RedisConfig::from_url(&self.url).unwrap_or_else(|err| panic!("bad --redis URL: {err}"));
        if !prefix.is_empty() {
            config.key_prefix = prefix.to_owned();
        }
        let kit = Redkit::builder()
            .redis(config)
            .build()
            .unwrap_or_else(|err| panic!("redkit: {err}"));
        if let Some(connection) = kit.connection() {
            connection
                .wait_ready(Duration::from_secs(10))
                .await
                .unwrap_or_else(|err| panic!("redis at {} not ready: {err}", self.url));
        }
        kit
    }

    pub(crate) fn value(&self) -> String {
        "x".repeat(self.value_size)
    }

    pub(crate) fn key_names(&self, prefix: &str) -> Vec<String> {
        (0..self.keys).map(|i| format!("{prefix}{i}")).collect()
    }
}
