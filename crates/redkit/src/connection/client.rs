//! Turning a [`RedisConfig`] into `redis` crate clients and connections.
//!
//! This is the only place that knows how redkit's settings map onto the
//! `redis` crate's, so a major upgrade of that crate touches one file:
//! one node's `Client`, the sentinels' `SentinelClient` (asked on every
//! connection, so a failover is followed and a demoted master never used
//! again) and the `ClusterClient`.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
    TlsCertificates, TlsMode,
};

use super::link::Link;
use crate::config::{NodeAddress, RedisConfig, SentinelConfig, Topology};
use crate::error::{Error, Result};

/// Everything needed to open connections with the configured settings.
#[derive(Clone)]
pub(crate) struct Connector {
    target: Target,
    config: Arc<RedisConfig>,
    tcp: TcpSettings,
    root_cert: Option<Vec<u8>>,
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
        let mut tcp = TcpSettings::default().set_nodelay(true);
        if let Some(idle) = config.keep_alive {
            tcp = tcp.set_keepalive(
                socket2::TcpKeepalive::new()
                    .with_time(idle)
                    .with_interval(idle.min(std::time::Duration::from_secs(10))),
            );
        }
        let root_cert = match &config.tls_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|err| {
                Error::invalid_config(
                    "tls_ca_file",
                    format!("cannot read {}: {err}", path.display()),
                    "a readable PEM file with the CA certificate",
                )
            })?),
            None => None,
        };
        let mut connector = Connector {
            target: Target::Sentinel(SentinelConfig::new(Vec::new(), String::new())),
            config: config.clone(),
            tcp,
            root_cert,
        };
        connector.target = match &config.topology {
            Topology::Cluster(cluster) => {
                Target::Cluster(Box::new(connector.cluster_client(&cluster.nodes)?))
            }
            Topology::Sentinel(sentinel) => Target::Sentinel(sentinel.clone()),
            _ => Target::Standalone(
                connector.node_client(&NodeAddress::new(config.host.clone(), config.port))?,
            ),
        };
        Ok(connector)
    }

    pub(crate) fn config(&self) -> &RedisConfig {
        &self.config
    }

    fn certificates(&self) -> Option<TlsCertificates> {
        self.root_cert.clone().map(|root_cert| TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        })
    }

    /// The data-node settings: credentials and database.
    fn redis_settings(&self) -> RedisConnectionInfo {
        let mut settings = RedisConnectionInfo::default()
            .set_db(i64::from(self.config.db))
            .set_lib_name("redkit", env!("CARGO_PKG_VERSION"));
        if let Some(username) = &self.config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.config.password {
            settings = settings.set_password(password.expose());
        }
        settings
    }

    fn addr(&self, node: &NodeAddress) -> ConnectionAddr {
        if self.config.tls {
            ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(node.host.clone(), node.port)
        }
    }

    /// A client for one data node with the configured settings.
    fn node_client(&self, node: &NodeAddress) -> Result<Client> {
        let info = self
            .addr(node)
            .into_connection_info()
            .map_err(|err| config_error(&self.config, err))?
            .set_redis_settings(self.redis_settings())
            .set_tcp_settings(self.tcp.clone());
        match self.certificates() {
            Some(certificates) => Client::build_with_tls(info, certificates),
            None => Client::open(info),
        }
        .map_err(|err| config_error(&self.config, err))
    }

    fn cluster_client(&self, nodes: &[NodeAddress]) -> Result<ClusterClient> {
        let seeds: Vec<_> = nodes.iter().map(|node| self.addr(node)).collect();
        let mut builder = ClusterClientBuilder::new(seeds)
            .connection_timeout(self.config.connect_timeout)
            .response_timeout(self.config.command_timeout)
            // No command waits past the command timeout, retries included.
            .overall_response_timeout(Some(self.config.command_timeout))
            .retries(3)
            .tcp_settings(self.tcp.clone());
        if let Some(username) = &self.config.username {
            builder = builder.username(username);
        }
        if let Some(password) = &self.config.password {
            builder = builder.password(password.expose());
        }
        if self.config.tls {
            builder = builder.tls(TlsMode::Secure);
        }
        if let Some(certificates) = self.certificates() {
            builder = builder.certs(certificates);
        }
        builder
            .build()
            .map_err(|err| config_error(&self.config, err))
    }

    fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.command_timeout))
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
                let node = NodeAddress::new(self.config.host.clone(), self.config.port);
                let connection = self.checked_node(client, &node).await?;
                Ok(Opened {
                    link: Link::Node(connection),
                    master: Some(node),
                })
            }
            Target::Sentinel(sentinel) => {
                let (client, node) = self.resolve_master(sentinel).await?;
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
            .get_multiplexed_async_connection_with_config(&self.async_config())
            .await
            .map_err(|err| self.connect_error_at(node, err))?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|err| self.connect_error_at(node, err))?;
        let role = role_of(&mut connection)
            .await
            .map_err(|err| self.connect_error_at(node, err))?;
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
            address: self.config.address(),
            source,
        };
        let connect = client.get_async_connection();
        let mut connection = match tokio::time::timeout(self.connect_budget(), connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => return Err(self.connect_error(err)),
            Err(_) => {
                return Err(cluster_error(
                    format!("no cluster connection within {:?}", self.connect_budget()).into(),
                ));
            }
        };
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut connection)
            .await
            .map_err(|err| self.connect_error(err))?;
        if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
            return Err(cluster_error(
                "CLUSTER INFO does not say cluster_state:ok (slots uncovered or a master down)"
                    .into(),
            ));
        }
        Ok(connection)
    }

    /// Time allowed to find and open a link: the sentinels are asked one
    /// after the other, and a cluster's seeds too.
    fn connect_budget(&self) -> Duration {
        let hops = match &self.config.topology {
            Topology::Sentinel(sentinel) => sentinel.sentinels.len() + 1,
            Topology::Cluster(cluster) => cluster.nodes.len() + 1,
            _ => 1,
        };
        self.config.connect_timeout * u32::try_from(hops.min(8)).unwrap_or(8)
    }

    /// Asks the sentinels for the master's address (the `redis` crate
    /// checks that the node it names calls itself master).
    async fn resolve_master(&self, sentinel: &SentinelConfig) -> Result<(Client, NodeAddress)> {
        let mut builder = SentinelClientBuilder::new(
            sentinel.sentinels.iter().map(|node| self.plain_addr(node)),
            &sentinel.master_name,
            SentinelServerType::Master,
        )
        .map_err(|err| config_error(&self.config, err))?
        .set_client_to_redis_db(i64::from(self.config.db))
        .set_client_to_redis_tcp_settings(self.tcp.clone())
        .set_client_to_sentinel_tcp_settings(self.tcp.clone());
        if let Some(username) = &self.config.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.config.password {
            builder = builder.set_client_to_redis_password(password.expose());
        }
        if let Some(username) = &sentinel.username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = &sentinel.password {
            builder = builder.set_client_to_sentinel_password(password.expose());
        }
        if self.config.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        }
        if let Some(certificates) = self.certificates() {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates);
        }
        let mut client = builder
            .build()
            .map_err(|err| config_error(&self.config, err))?;
        let resolved = tokio::time::timeout(self.connect_budget(), client.async_get_client()).await;
        let master = match resolved {
            Ok(Ok(master)) => master,
            Ok(Err(err)) => {
                return Err(Error::Connect {
                    address: self.config.address(),
                    source: format!("the sentinels did not name a usable master: {err}").into(),
                });
            }
            Err(_) => {
                return Err(Error::Connect {
                    address: self.config.address(),
                    source: format!(
                        "the sentinels did not name a master within {:?}",
                        self.connect_budget()
                    )
                    .into(),
                });
            }
        };
        let node = match master.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                NodeAddress::new(host.clone(), *port)
            }
            other => {
                return Err(Error::Connect {
                    address: self.config.address(),
                    source: format!("the sentinels named an unusable address {other}").into(),
                });
            }
        };
        Ok((master, node))
    }

    /// `addr` without TLS parameters (the sentinel builder adds its own).
    fn plain_addr(&self, node: &NodeAddress) -> ConnectionAddr {
        ConnectionAddr::Tcp(node.host.clone(), node.port)
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
                    self.config.topology.kind()
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
                    .map_err(|err| self.connect_error(err)),
                Target::Sentinel(sentinel) => {
                    let (client, _) = self.resolve_master(sentinel).await?;
                    client
                        .get_async_pubsub()
                        .await
                        .map_err(|err| self.connect_error(err))
                }
                Target::Cluster(_) => {
                    let mut last = None;
                    for node in nodes {
                        match self.node_client(node)?.get_async_pubsub().await {
                            Ok(pubsub) => return Ok(pubsub),
                            Err(err) => last = Some(self.connect_error_at(node, err)),
                        }
                    }
                    Err(last.unwrap_or_else(|| Error::Connect {
                        address: self.config.address(),
                        source: "no cluster node is known".into(),
                    }))
                }
            }
        };
        match tokio::time::timeout(self.connect_budget(), connect).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                address: self.config.address(),
                source: format!("no connection within {:?}", self.connect_budget()).into(),
            }),
        }
    }

    /// A client for one sentinel, with the sentinels' own credentials.
    fn sentinel_client(&self, sentinel: &SentinelConfig, node: &NodeAddress) -> Result<Client> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(username) = &sentinel.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &sentinel.password {
            settings = settings.set_password(password.expose());
        }
        let info = self
            .addr(node)
            .into_connection_info()
            .map_err(|err| config_error(&self.config, err))?
            .set_redis_settings(settings)
            .set_tcp_settings(self.tcp.clone());
        match self.certificates() {
            Some(certificates) => Client::build_with_tls(info, certificates),
            None => Client::open(info),
        }
        .map_err(|err| config_error(&self.config, err))
    }

    /// Every sentinel with its `PING` round trip, for the health report.
    pub(crate) async fn ping_sentinels(&self) -> Vec<(String, Result<Duration>)> {
        let Target::Sentinel(sentinel) = &self.target else {
            return Vec::new();
        };
        let mut results = Vec::with_capacity(sentinel.sentinels.len());
        for node in &sentinel.sentinels {
            let started = std::time::Instant::now();
            let ping = async {
                let client = self.sentinel_client(sentinel, node)?;
                let mut connection = client
                    .get_multiplexed_async_connection_with_config(&self.async_config())
                    .await
                    .map_err(|err| self.connect_error_at(node, err))?;
                redis::cmd("PING")
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(|err| self.connect_error_at(node, err))?;
                Ok(started.elapsed())
            };
            let result = match tokio::time::timeout(self.config.connect_timeout, ping).await {
                Ok(result) => result,
                Err(_) => Err(Error::Connect {
                    address: node.to_string(),
                    source: "no answer within the connect timeout".into(),
                }),
            };
            results.push((node.to_string(), result));
        }
        results
    }

    /// A pub/sub connection to the first sentinel that answers (for
    /// `+switch-master`), with the sentinels' own credentials.
    pub(crate) async fn sentinel_pubsub(&self) -> Result<PubSub> {
        let Target::Sentinel(sentinel) = &self.target else {
            return Err(Error::Unsupported {
                what: "a sentinel connection".to_owned(),
                instead: "a redis+sentinel:// configuration".to_owned(),
            });
        };
        let mut last = None;
        for node in &sentinel.sentinels {
            let client = self.sentinel_client(sentinel, node)?;
            let connect =
                tokio::time::timeout(self.config.connect_timeout, client.get_async_pubsub());
            match connect.await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(err)) => last = Some(self.connect_error_at(node, err)),
                Err(_) => {
                    last = Some(Error::Connect {
                        address: node.to_string(),
                        source: "no sentinel connection within the connect timeout".into(),
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect {
            address: self.config.address(),
            source: "no sentinel is configured".into(),
        }))
    }

    fn connect_error_at(&self, node: &NodeAddress, err: redis::RedisError) -> Error {
        if is_database_refusal(&err) {
            Error::DatabaseRejected {
                address: node.to_string(),
                db: self.config.db,
                source: Box::new(err),
            }
        } else if is_auth_error(&err) {
            self.connect_error(err)
        } else {
            Error::Connect {
                address: node.to_string(),
                source: Box::new(err),
            }
        }
    }

    pub(crate) fn connect_error(&self, err: redis::RedisError) -> Error {
        if is_database_refusal(&err) {
            Error::DatabaseRejected {
                address: self.config.address(),
                db: self.config.db,
                source: Box::new(err),
            }
        } else if is_auth_error(&err) {
            Error::Authentication {
                user: self
                    .config
                    .username
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
                source: Box::new(err),
            }
        } else {
            Error::Connect {
                address: self.config.address(),
                source: Box::new(err),
            }
        }
    }
}

fn is_auth_error(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        err.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm)
    ) || matches!(err.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// The `SELECT` of the configured database failed (redis-rs reports it as
/// "refused to switch database", with the server's "DB index is out of
/// range").
fn is_database_refusal(err: &redis::RedisError) -> bool {
    err.to_string().contains("refused to switch database")
        || err
            .detail()
            .is_some_and(|detail| detail.contains("DB index"))
}

fn config_error(config: &RedisConfig, err: redis::RedisError) -> Error {
    Error::invalid_config(
        "redis connection settings",
        format!("the redis client rejected {}: {err}", config.address()),
        "a reachable host, port and database, with TLS support when rediss:// is used",
    )
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
