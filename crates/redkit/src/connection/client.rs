//! Turning a [`RedisConfig`] into `redis` crate clients and connections.
//!
//! This is the only place that knows how redkit's settings map onto the
//! `redis` crate's, so a major upgrade of that crate touches one file.

use std::sync::Arc;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
};

use crate::config::RedisConfig;
use crate::error::{Error, Result};

/// Everything needed to open connections with the configured settings.
#[derive(Clone)]
pub(crate) struct Connector {
    client: Client,
    config: Arc<RedisConfig>,
}

impl Connector {
    pub(crate) fn new(config: Arc<RedisConfig>) -> Result<Self> {
        let addr = if config.tls {
            ConnectionAddr::TcpTls {
                host: config.host.clone(),
                port: config.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(config.host.clone(), config.port)
        };
        let mut redis_settings = RedisConnectionInfo::default()
            .set_db(i64::from(config.db))
            .set_lib_name("redkit", env!("CARGO_PKG_VERSION"));
        if let Some(username) = &config.username {
            redis_settings = redis_settings.set_username(username);
        }
        if let Some(password) = &config.password {
            redis_settings = redis_settings.set_password(password.expose());
        }
        let mut tcp = TcpSettings::default().set_nodelay(true);
        if let Some(idle) = config.keep_alive {
            tcp = tcp.set_keepalive(
                socket2::TcpKeepalive::new()
                    .with_time(idle)
                    .with_interval(idle.min(std::time::Duration::from_secs(10))),
            );
        }
        let info = addr
            .into_connection_info()
            .map_err(|err| config_error(&config, err))?
            .set_redis_settings(redis_settings)
            .set_tcp_settings(tcp);
        let client = match &config.tls_ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|err| {
                    Error::invalid_config(
                        "tls_ca_file",
                        format!("cannot read {}: {err}", path.display()),
                        "a readable PEM file with the CA certificate",
                    )
                })?;
                Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => Client::open(info),
        }
        .map_err(|err| config_error(&config, err))?;
        Ok(Connector { client, config })
    }

    pub(crate) fn config(&self) -> &RedisConfig {
        &self.config
    }

    fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.command_timeout))
    }

    /// Opens one multiplexed connection and checks it with a `PING`: a
    /// server that wants a password none was given for accepts the socket
    /// and answers `NOAUTH` to the first command, which must count as a
    /// rejection, not as a working connection.
    ///
    /// A dropped connection is noticed by the next command's error or by the
    /// supervisor's PING (the client's disconnect notification needs RESP3,
    /// which older servers lack).
    pub(crate) async fn multiplexed(&self) -> Result<MultiplexedConnection> {
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.async_config())
            .await
            .map_err(|err| self.connect_error(err))?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|err| self.connect_error(err))?;
        Ok(connection)
    }

    /// Opens a dedicated pub/sub connection.
    pub(crate) async fn pubsub(&self) -> Result<PubSub> {
        match tokio::time::timeout(self.config.connect_timeout, self.client.get_async_pubsub())
            .await
        {
            Ok(result) => result.map_err(|err| self.connect_error(err)),
            Err(_) => Err(Error::Connect {
                address: self.config.address(),
                source: format!("no connection within {:?}", self.config.connect_timeout).into(),
            }),
        }
    }

    pub(crate) fn connect_error(&self, err: redis::RedisError) -> Error {
        if is_database_refusal(&err) {
            Error::DatabaseRejected {
                address: format!("{}:{}", self.config.host, self.config.port),
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
