//! Opening links per topology: one node's multiplexed connection (to the
//! configured host, or to the master the sentinels name — see
//! `sentinel.rs`) or a cluster connection, each checked that it can take
//! writes before it is used. How each client is configured lives in
//! `settings.rs`; together these are the only files that build `redis`
//! crate clients, so a major upgrade of that crate stays here.

use std::sync::Arc;
use std::time::Duration;

use redis::Client;
use redis::aio::{MultiplexedConnection, PubSub};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use super::link::Link;
use super::sentinel;
use super::settings::Settings;
use crate::config::{NodeAddress, RedisConfig, SentinelConfig, Topology};
use crate::error::{Error, Result};

/// Everything needed to open connections with the configured settings.
#[derive(Clone)]
pub(crate) struct Connector {
    settings: Settings,
    target: Target,
}

/// How the data nodes are reached, per topology.
#[derive(Clone)]
enum Target {
    Standalone(Client),
    /// Resolved through the sentinels on every connection.
    Sentinel(SentinelConfig),
    Cluster(Box<ClusterClient>),
}

/// One opened link and, on one node, which node it is.
pub(crate) struct Opened {
    pub(crate) link: Link,
    pub(crate) master: Option<NodeAddress>,
}

impl Connector {
    pub(crate) fn new(config: Arc<RedisConfig>) -> Result<Self> {
        let settings = Settings::new(config)?;
        let target = match &settings.config.topology {
            Topology::Cluster(cluster) => {
                Target::Cluster(Box::new(settings.cluster_client(&cluster.nodes)?))
            }
            Topology::Sentinel(sentinel) => Target::Sentinel(sentinel.clone()),
            _ => Target::Standalone(settings.node_client(&NodeAddress::new(
                settings.config.host.clone(),
                settings.config.port,
            ))?),
        };
        Ok(Connector { settings, target })
    }

    pub(crate) fn config(&self) -> &RedisConfig {
        &self.settings.config
    }

    /// On Sentinel, every sentinel with its `PING` round trip; empty
    /// elsewhere.
    pub(crate) async fn ping_sentinels(&self) -> Vec<(String, Result<Duration>)> {
        match &self.target {
            Target::Sentinel(config) => sentinel::ping_sentinels(&self.settings, config).await,
            _ => Vec::new(),
        }
    }

    /// A subscription-ready connection to a sentinel (Sentinel only).
    pub(crate) async fn sentinel_pubsub(&self) -> Result<PubSub> {
        match &self.target {
            Target::Sentinel(config) => sentinel::sentinel_pubsub(&self.settings, config).await,
            _ => Err(Error::Unsupported {
                what: "a sentinel connection".to_owned(),
                instead: "a redis+sentinel:// configuration".to_owned(),
            }),
        }
    }

    /// Opens one link and checks that it can take writes.
    ///
    /// On one node: a `PING` (a server that wants a password none was given
    /// for accepts the socket and answers `NOAUTH` to the first command,
    /// which must count as a rejection, not as a working connection), then
    /// `ROLE`: a replica is refused, so a demoted master or a replica given
    /// by mistake is never `Ready` (every write would fail). On Sentinel the
    /// master is resolved through the sentinels first. On Cluster: the slot
    /// map is read and `CLUSTER INFO` must say `cluster_state:ok`.
    ///
    /// A dropped connection is noticed by the next command's error or by the
    /// supervisor's check (the client's disconnect notification needs RESP3,
    /// which older servers lack).
    pub(crate) async fn open(&self) -> Result<Opened> {
        match &self.target {
            Target::Standalone(client) => {
                let node =
                    NodeAddress::new(self.settings.config.host.clone(), self.settings.config.port);
                let connection = self.checked_node(client, &node).await?;
                Ok(Opened {
                    link: Link::Node(connection),
                    master: Some(node),
                })
            }
            Target::Sentinel(sentinel) => {
                let (client, node) = sentinel::resolve_master(&self.settings, sentinel).await?;
                let connection = self.checked_node(&client, &node).await?;
                Ok(Opened {
                    link: Link::Node(connection),
                    master: Some(node),
                })
            }
            Target::Cluster(client) => Ok(Opened {
                link: Link::Cluster(self.checked_cluster(client).await?),
                master: None,
            }),
        }
    }

    async fn checked_node(
        &self,
        client: &Client,
        node: &NodeAddress,
    ) -> Result<MultiplexedConnection> {
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&self.settings.async_config())
            .await
            .map_err(|err| self.settings.connect_error_at(node, err))?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|err| self.settings.connect_error_at(node, err))?;
        let role = role_of(&mut connection)
            .await
            .map_err(|err| self.settings.connect_error_at(node, err))?;
        if role != "master" {
            return Err(Error::NotWritable {
                address: node.to_string(),
                role,
            });
        }
        Ok(connection)
    }

    async fn checked_cluster(&self, client: &ClusterClient) -> Result<ClusterConnection> {
        let cluster_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Connect {
            address: self.settings.config.address(),
            source,
        };
        let connect = client.get_async_connection();
        let mut connection =
            match tokio::time::timeout(self.settings.connect_budget(), connect).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(err)) => return Err(self.settings.connect_error(err)),
                Err(_) => {
                    return Err(cluster_error(
                        format!(
                            "no cluster connection within {:?}",
                            self.settings.connect_budget()
                        )
                        .into(),
                    ));
                }
            };
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut connection)
            .await
            .map_err(|err| self.settings.connect_error(err))?;
        if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
            return Err(cluster_error(
                "CLUSTER INFO does not say cluster_state:ok (slots uncovered or a master down)"
                    .into(),
            ));
        }
        Ok(connection)
    }

    /// A fresh cluster connection outside the shared one (for blocking
    /// commands on Cluster).
    pub(crate) async fn cluster(&self) -> Result<ClusterConnection> {
        match &self.target {
            Target::Cluster(client) => self.checked_cluster(client).await,
            _ => Err(Error::Unsupported {
                what: "a cluster connection".to_owned(),
                instead: format!(
                    "dedicated() on this {} topology",
                    self.settings.config.topology.kind()
                ),
            }),
        }
    }

    /// Opens one multiplexed connection to the master (Standalone,
    /// Sentinel); refused on Cluster, where one node holds only some keys.
    pub(crate) async fn multiplexed(&self) -> Result<MultiplexedConnection> {
        match self.open().await?.link {
            Link::Node(connection) => Ok(connection),
            Link::Cluster(_) => Err(Error::Unsupported {
                what: "a connection to one node (dedicated())".to_owned(),
                instead: "dedicated_cluster(), whose commands are routed by key slot".to_owned(),
            }),
        }
    }

    /// Opens a dedicated pub/sub connection: to the master on Standalone
    /// and Sentinel; on Cluster to the first reachable of `nodes` (classic
    /// `PUBLISH` reaches every node of a cluster, so one node's
    /// subscription receives every message).
    pub(crate) async fn pubsub(&self, nodes: &[NodeAddress]) -> Result<PubSub> {
        let connect = async {
            match &self.target {
                Target::Standalone(client) => client
                    .get_async_pubsub()
                    .await
                    .map_err(|err| self.settings.connect_error(err)),
                Target::Sentinel(sentinel) => {
                    let (client, _) = sentinel::resolve_master(&self.settings, sentinel).await?;
                    client
                        .get_async_pubsub()
                        .await
                        .map_err(|err| self.settings.connect_error(err))
                }
                Target::Cluster(_) => {
                    let mut last = None;
                    for node in nodes {
                        match self.settings.node_client(node)?.get_async_pubsub().await {
                            Ok(pubsub) => return Ok(pubsub),
                            Err(err) => last = Some(self.settings.connect_error_at(node, err)),
                        }
                    }
                    Err(last.unwrap_or_else(|| Error::Connect {
                        address: self.settings.config.address(),
                        source: "no cluster node is known".into(),
                    }))
                }
            }
        };
        match tokio::time::timeout(self.settings.connect_budget(), connect).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                address: self.settings.config.address(),
                source: format!("no connection within {:?}", self.settings.connect_budget()).into(),
            }),
        }
    }
}

/// The node's `ROLE`: `master`, `slave` or `sentinel`.
///
/// `ROLE` is in the `@admin` ACL category, which application users often
/// lack: a `NOPERM` answer counts as `master` (such a user is protected by
/// the `READONLY` replies of writes instead, which also count as a broken
/// connection). Grant `+role` to have a replica refused up front.
pub(crate) async fn role_of(
    connection: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<String> {
    let reply: redis::Value = match redis::cmd("ROLE").query_async(connection).await {
        Ok(reply) => reply,
        Err(error) if error.code() == Some("NOPERM") => return Ok("master".to_owned()),
        Err(error) => return Err(error),
    };
    let role = match reply {
        redis::Value::Array(items) => items.into_iter().next(),
        _ => None,
    };
    match role {
        Some(redis::Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Some(redis::Value::SimpleString(text)) => Ok(text),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "ROLE did not answer with a role",
        ))),
    }
}
