//! The benchmark environment: Redis, load shape and data sizes.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit_testkit::{RedisCluster, RedisServer};

use crate::measure::Load;

/// The deployment the harness measures on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Topology {
    /// One redis-server.
    Standalone,
    /// A Redis Cluster (started by the harness: three masters).
    Cluster,
}

/// Everything a scenario needs.
pub(crate) struct Env {
    pub(crate) url: String,
    pub(crate) topology: Topology,
    pub(crate) load: Load,
    pub(crate) keys: usize,
    pub(crate) value_size: usize,
    pub(crate) rounds: usize,
    /// Keep-alive connections of the HTTP scenarios (one load task each).
    pub(crate) connections: usize,
    _server: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

impl Env {
    pub(crate) fn new(
        url: Option<String>,
        topology: Topology,
        load: Load,
        keys: usize,
        value_size: usize,
        rounds: usize,
        connections: usize,
    ) -> Self {
        let (url, server, cluster) = match (url, topology) {
            (Some(url), _) => (url, None, None),
            (None, Topology::Standalone) => {
                let server = RedisServer::new();
                if let Some(pid) = server.pid() {
                    let _ = crate::measure::REDIS_PID.set(pid);
                }
                (server.url(), Some(server), None)
            }
            (None, Topology::Cluster) => {
                let cluster = RedisCluster::start_with(3, 0);
                (cluster.url(), None, Some(cluster))
            }
        };
        Env {
            url,
            topology,
            load,
            keys,
            value_size,
            rounds,
            connections,
            _server: server,
            _cluster: cluster,
        }
    }

    /// Whether the harness started its own redis-server or cluster.
    pub(crate) fn owns_server(&self) -> bool {
        self._server.is_some() || self._cluster.is_some()
    }

    /// The raw baseline on the harness' topology: [`Env::raw`], or the
    /// `redis` crate's own async cluster client (slot routing, MOVED/ASK)
    /// with the same socket options.
    pub(crate) async fn raw_client(&self) -> RawConnection {
        match self.topology {
            Topology::Standalone => RawConnection::Node(self.raw().await),
            Topology::Cluster => RawConnection::Cluster(self.raw_cluster().await),
        }
    }

    async fn raw_cluster(&self) -> ClusterConnection {
        let config =
            RedisConfig::from_url(&self.url).unwrap_or_else(|err| panic!("bad --redis URL: {err}"));
        let redkit::config::Topology::Cluster(cluster) = &config.topology else {
            panic!(
                "--topology cluster needs a redis+cluster:// URL, got {}",
                self.url
            );
        };
        let nodes: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("redis://{node}"))
            .collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        if let Some(username) = &config.username {
            builder = builder.username(username);
        }
        if let Some(password) = &config.password {
            builder = builder.password(password.expose());
        }
        builder
            .build()
            .unwrap_or_else(|err| panic!("cluster client: {err}"))
            .get_async_connection()
            .await
            .unwrap_or_else(|err| panic!("cannot connect to {}: {err}", self.url))
    }

    /// Sets every key to `value` through `connection`: one pipeline on one
    /// node; on a cluster (where a pipeline may hold one slot only) one SET
    /// per key, 1000 at a time.
    pub(crate) async fn fill_raw(&self, connection: &RawConnection, keys: &[String], value: &str) {
        match connection {
            RawConnection::Node(node) => {
                let mut pipe = redis::pipe();
                for key in keys {
                    pipe.cmd("SET").arg(key).arg(value).ignore();
                }
                let _: () = pipe
                    .query_async(&mut node.clone())
                    .await
                    .unwrap_or_else(|err| panic!("fill: {err}"));
            }
            RawConnection::Cluster(cluster) => {
                for chunk in keys.chunks(1000) {
                    let sets = chunk.iter().map(|key| {
                        let mut cluster = cluster.clone();
                        async move {
                            let _: () = redis::cmd("SET")
                                .arg(key)
                                .arg(value)
                                .query_async(&mut cluster)
                                .await
                                .unwrap_or_else(|err| panic!("fill: {err}"));
                        }
                    });
                    futures_util::future::join_all(sets).await;
                }
            }
        }
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

/// A raw `redis` crate connection of either topology, usable wherever the
/// crate takes a connection (`query_async`).
#[derive(Clone)]
pub(crate) enum RawConnection {
    /// A multiplexed connection to one node.
    Node(MultiplexedConnection),
    /// The async cluster client.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RawConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RawConnection::Node(node) => node.req_packed_command(cmd),
            RawConnection::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RawConnection::Node(node) => node.req_packed_commands(pipeline, offset, count),
            RawConnection::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RawConnection::Node(node) => node.get_db(),
            RawConnection::Cluster(cluster) => cluster.get_db(),
        }
    }
}
