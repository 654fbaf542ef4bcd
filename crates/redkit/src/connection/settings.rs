//! How every connection to a data node or a sentinel is configured: one
//! place that maps redkit's settings (credentials, database, TLS, TCP
//! options, timeouts) onto the `redis` crate's, whatever the topology.
//!
//! Errors never hold the password: it is passed to the `redis` crate and
//! never formatted.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
    TlsCertificates, TlsMode,
};

use crate::config::{NodeAddress, RedisConfig, SentinelConfig, Topology};
use crate::error::{Error, Result};

/// The configuration and what is derived from it once (TCP options, the
/// CA certificate's bytes).
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) config: Arc<RedisConfig>,
    pub(super) tcp: TcpSettings,
    root_cert: Option<Vec<u8>>,
}

impl Settings {
    /// Reads the CA file (the one I/O of building a handle).
    pub(super) fn new(config: Arc<RedisConfig>) -> Result<Self> {
        let mut tcp = TcpSettings::default().set_nodelay(true);
        if let Some(idle) = config.keep_alive {
            tcp = tcp.set_keepalive(
                socket2::TcpKeepalive::new()
                    .with_time(idle)
                    .with_interval(idle.min(Duration::from_secs(10))),
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
        Ok(Settings {
            config,
            tcp,
            root_cert,
        })
    }

    pub(super) fn certificates(&self) -> Option<TlsCertificates> {
        self.root_cert.clone().map(|root_cert| TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        })
    }

    /// The data-node settings: credentials and database.
    pub(super) fn redis_settings(&self) -> RedisConnectionInfo {
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

    pub(super) fn addr(&self, node: &NodeAddress) -> ConnectionAddr {
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
    pub(super) fn node_client(&self, node: &NodeAddress) -> Result<Client> {
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

    pub(super) fn cluster_client(&self, nodes: &[NodeAddress]) -> Result<ClusterClient> {
        let seeds: Vec<_> = nodes.iter().map(|node| self.addr(node)).collect();
        let mut builder = ClusterClientBuilder::new(seeds)
            .connection_timeout(self.config.connect_timeout)
            // No command waits past the command timeout, retries and
            // redirections included. One timer per command: a per-node
            // response timeout as well would add a second one to every
            // command and bound nothing more.
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

    /// A client for one sentinel, with the sentinels' own credentials.
    pub(super) fn sentinel_client(
        &self,
        sentinel: &SentinelConfig,
        node: &NodeAddress,
    ) -> Result<Client> {
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

    pub(super) fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.command_timeout))
    }

    /// Time allowed to find and open a link: the sentinels are asked one
    /// after the other, and a cluster's seeds too.
    pub(super) fn connect_budget(&self) -> Duration {
        let hops = match &self.config.topology {
            Topology::Sentinel(sentinel) => sentinel.sentinels.len() + 1,
            Topology::Cluster(cluster) => cluster.nodes.len() + 1,
            _ => 1,
        };
        self.config.connect_timeout * u32::try_from(hops.min(8)).unwrap_or(8)
    }

    pub(super) fn connect_error_at(&self, node: &NodeAddress, err: redis::RedisError) -> Error {
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

    pub(super) fn connect_error(&self, err: redis::RedisError) -> Error {
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

pub(super) fn config_error(config: &RedisConfig, err: redis::RedisError) -> Error {
    Error::invalid_config(
        "redis connection settings",
        format!("the redis client rejected {}: {err}", config.address()),
        "a reachable host, port and database, with TLS support when rediss:// is used",
    )
}
