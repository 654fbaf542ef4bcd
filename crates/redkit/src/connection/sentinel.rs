//! Asking the sentinels: which node is the master (on every connect, so a
//! failover is followed and a demoted master is never used again), whether
//! each sentinel answers (health), and a subscription for `+switch-master`
//! (see `sentinel_watch.rs`). The `redis` crate's `SentinelClient` does the
//! protocol; this file only configures it.

use std::time::Duration;

use redis::aio::PubSub;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, TlsMode};

use super::settings::{Settings, config_error};
use crate::config::{NodeAddress, SentinelConfig};
use crate::error::{Error, Result};

/// Asks the sentinels for the master's address (the `redis` crate
/// checks that the node it names calls itself master).
pub(super) async fn resolve_master(
    settings: &Settings,
    sentinel: &SentinelConfig,
) -> Result<(Client, NodeAddress)> {
    let mut builder = SentinelClientBuilder::new(
        sentinel.sentinels.iter().map(plain_addr),
        &sentinel.master_name,
        SentinelServerType::Master,
    )
    .map_err(|err| config_error(&settings.config, err))?
    .set_client_to_redis_db(i64::from(settings.config.db))
    .set_client_to_redis_tcp_settings(settings.tcp.clone())
    .set_client_to_sentinel_tcp_settings(settings.tcp.clone());
    if let Some(username) = &settings.config.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &settings.config.password {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if let Some(username) = &sentinel.username {
        builder = builder.set_client_to_sentinel_username(username);
    }
    if let Some(password) = &sentinel.password {
        builder = builder.set_client_to_sentinel_password(password.expose());
    }
    if settings.config.tls {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
    }
    if let Some(certificates) = settings.certificates() {
        builder = builder
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_certificates(certificates);
    }
    let mut client = builder
        .build()
        .map_err(|err| config_error(&settings.config, err))?;
    let resolved = tokio::time::timeout(settings.connect_budget(), client.async_get_client()).await;
    let master = match resolved {
        Ok(Ok(master)) => master,
        Ok(Err(err)) => {
            return Err(Error::Connect {
                address: settings.config.address(),
                source: format!("the sentinels did not name a usable master: {err}").into(),
            });
        }
        Err(_) => {
            return Err(Error::Connect {
                address: settings.config.address(),
                source: format!(
                    "the sentinels did not name a master within {:?}",
                    settings.connect_budget()
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
                address: settings.config.address(),
                source: format!("the sentinels named an unusable address {other}").into(),
            });
        }
    };
    Ok((master, node))
}

/// `addr` without TLS parameters (the sentinel builder adds its own).
fn plain_addr(node: &NodeAddress) -> ConnectionAddr {
    ConnectionAddr::Tcp(node.host.clone(), node.port)
}

/// Every sentinel with its `PING` round trip, for the health report.
pub(super) async fn ping_sentinels(
    settings: &Settings,
    sentinel: &SentinelConfig,
) -> Vec<(String, Result<Duration>)> {
    let mut results = Vec::with_capacity(sentinel.sentinels.len());
    for node in &sentinel.sentinels {
        let started = std::time::Instant::now();
        let ping = async {
            let client = settings.sentinel_client(sentinel, node)?;
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&settings.async_config())
                .await
                .map_err(|err| settings.connect_error_at(node, err))?;
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await
                .map_err(|err| settings.connect_error_at(node, err))?;
            Ok(started.elapsed())
        };
        let result = match tokio::time::timeout(settings.config.connect_timeout, ping).await {
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
pub(super) async fn sentinel_pubsub(
    settings: &Settings,
    sentinel: &SentinelConfig,
) -> Result<PubSub> {
    let mut last = None;
    for node in &sentinel.sentinels {
        let client = settings.sentinel_client(sentinel, node)?;
        let connect =
            tokio::time::timeout(settings.config.connect_timeout, client.get_async_pubsub());
        match connect.await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(err)) => last = Some(settings.connect_error_at(node, err)),
            Err(_) => {
                last = Some(Error::Connect {
                    address: node.to_string(),
                    source: "no sentinel connection within the connect timeout".into(),
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Connect {
        address: settings.config.address(),
        source: "no sentinel is configured".into(),
    }))
}
