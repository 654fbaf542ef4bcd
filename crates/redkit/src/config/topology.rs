//! Which Redis deployment to talk to: one node, a Sentinel-managed master,
//! or a Cluster.
//!
//! The topology only says how to *find* the data nodes; credentials, TLS,
//! the key prefix and every timeout stay on [`RedisConfig`](super::RedisConfig)
//! and apply to the data nodes whatever the topology. Sentinels may have
//! their own credentials ([`SentinelConfig::username`] /
//! [`SentinelConfig::password`]), since they are separate processes with
//! their own ACLs.

use std::fmt;

use super::Secret;
use crate::error::{Error, Result};

/// How the data nodes are found.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Topology {
    /// One node at `RedisConfig::host`/`port` (which must be a master).
    #[default]
    Standalone,
    /// The master of a Sentinel-managed group, resolved through the
    /// sentinels on every (re)connect.
    Sentinel(SentinelConfig),
    /// A Redis Cluster, discovered from seed nodes.
    Cluster(ClusterConfig),
}

impl Topology {
    /// The kind, without the addresses.
    pub fn kind(&self) -> TopologyKind {
        match self {
            Topology::Standalone => TopologyKind::Standalone,
            Topology::Sentinel(_) => TopologyKind::Sentinel,
            Topology::Cluster(_) => TopologyKind::Cluster,
        }
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Standalone => f.write_str("Standalone"),
            Topology::Sentinel(sentinel) => f.debug_tuple("Sentinel").field(sentinel).finish(),
            Topology::Cluster(cluster) => f.debug_tuple("Cluster").field(cluster).finish(),
        }
    }
}

/// The kind of a [`Topology`], for health output and branching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TopologyKind {
    /// One node.
    Standalone,
    /// A Sentinel-managed master.
    Sentinel,
    /// A Redis Cluster.
    Cluster,
}

impl TopologyKind {
    /// `standalone`, `sentinel` or `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            TopologyKind::Standalone => "standalone",
            TopologyKind::Sentinel => "sentinel",
            TopologyKind::Cluster => "cluster",
        }
    }
}

impl fmt::Display for TopologyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `host:port` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddress {
    /// A node address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        NodeAddress {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port` (`[v6]:port` for IPv6); the port is required.
    /// `setting` names the source in errors.
    pub fn parse(text: &str, setting: &str) -> Result<Self> {
        const EXPECTED: &str = "host:port, such as 10.0.0.5:26379 or [::1]:7000";
        let text = text.trim();
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            Error::invalid_config(setting, format!("`{text}` has no port"), EXPECTED)
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(Error::invalid_config(
                    setting,
                    format!("`{port}` in `{text}` is not a TCP port from 1 to 65535"),
                    EXPECTED,
                ));
            }
            Ok(port) => port,
        };
        let address = NodeAddress::new(host, port);
        address.validate(setting)?;
        Ok(address)
    }

    /// Parses a comma-separated list of addresses (at least one).
    pub fn parse_list(text: &str, setting: &str) -> Result<Vec<Self>> {
        let addresses = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| NodeAddress::parse(part, setting))
            .collect::<Result<Vec<_>>>()?;
        if addresses.is_empty() {
            return Err(Error::invalid_config(
                setting,
                "no address is given",
                "a comma-separated list of host:port",
            ));
        }
        Ok(addresses)
    }

    fn validate(&self, setting: &str) -> Result<()> {
        if self.host.is_empty()
            || self
                .host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '/' | '@'))
        {
            return Err(Error::invalid_config(
                setting,
                format!("{:?} is not a host name", self.host),
                "a host name or IP address without spaces, commas, `/` or `@`",
            ));
        }
        if self.port == 0 {
            return Err(Error::invalid_config(
                setting,
                format!("port 0 of {}", self.host),
                "a TCP port from 1 to 65535",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A Sentinel-managed master: which sentinels to ask, for which master.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelConfig {
    /// The sentinels (any reachable one answers).
    pub sentinels: Vec<NodeAddress>,
    /// The master's name in the sentinels' configuration (`sentinel
    /// monitor <name> …`).
    pub master_name: String,
    /// ACL user on the sentinels, when they need one. Default: `None`.
    pub username: Option<String>,
    /// Password of the sentinels, when they need one (`requirepass` of the
    /// sentinel processes, not of the data nodes). Default: `None`.
    pub password: Option<Secret>,
}

impl SentinelConfig {
    /// Sentinels at `sentinels` monitoring `master_name`, without
    /// sentinel credentials.
    pub fn new(sentinels: Vec<NodeAddress>, master_name: impl Into<String>) -> Self {
        SentinelConfig {
            sentinels,
            master_name: master_name.into(),
            username: None,
            password: None,
        }
    }

    /// Sets the sentinels' ACL user.
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the sentinels' password.
    #[must_use]
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A Redis Cluster: the seed nodes the slot map is first read from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Seed nodes (any reachable one is enough; the rest is discovered).
    pub nodes: Vec<NodeAddress>,
}

impl ClusterConfig {
    /// A cluster discovered from `nodes`.
    pub fn new(nodes: Vec<NodeAddress>) -> Self {
        ClusterConfig { nodes }
    }
}

/// The topology's own rules (the rest of `RedisConfig` is checked by
/// `RedisConfig::validate`).
pub(super) fn validate(topology: &Topology, db: u32) -> Result<()> {
    match topology {
        Topology::Standalone => Ok(()),
        Topology::Sentinel(sentinel) => {
            if sentinel.sentinels.is_empty() {
                return Err(Error::invalid_config(
                    "sentinels",
                    "no sentinel address is given",
                    "at least one sentinel host:port (REDIS_SENTINELS)",
                ));
            }
            for address in &sentinel.sentinels {
                address.validate("sentinels")?;
            }
            let name = &sentinel.master_name;
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid_config(
                    "sentinel master name",
                    format!("{name:?} is not a master name"),
                    "the name the sentinels monitor (REDIS_SENTINEL_MASTER, or the path of a \
                     redis+sentinel:// URL), without spaces",
                ));
            }
            Ok(())
        }
        Topology::Cluster(cluster) => {
            if cluster.nodes.is_empty() {
                return Err(Error::invalid_config(
                    "cluster nodes",
                    "no node address is given",
                    "at least one cluster node host:port (REDIS_CLUSTER_NODES)",
                ));
            }
            for address in &cluster.nodes {
                address.validate("cluster nodes")?;
            }
            if db != 0 {
                return Err(Error::invalid_config(
                    "db",
                    format!("database {db} with Redis Cluster"),
                    "database 0: Redis Cluster has only one database",
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_parse_with_their_port() {
        let address = NodeAddress::parse(" 10.0.0.5:26379 ", "x").unwrap();
        assert_eq!(address, NodeAddress::new("10.0.0.5", 26379));
        let v6 = NodeAddress::parse("[::1]:7000", "x").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:7000");
        let list = NodeAddress::parse_list("a:1, b:2,", "x").unwrap();
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn malformed_addresses_are_named() {
        for bad in [
            "host",
            "host:",
            "host:0",
            "host:70000",
            ":6379",
            "a b:1",
            "h:x",
        ] {
            let error = NodeAddress::parse(bad, "REDIS_SENTINELS").unwrap_err();
            assert!(
                error.to_string().contains("REDIS_SENTINELS"),
                "{bad}: {error}"
            );
        }
        assert!(NodeAddress::parse_list(" , ", "REDIS_CLUSTER_NODES").is_err());
    }
}
