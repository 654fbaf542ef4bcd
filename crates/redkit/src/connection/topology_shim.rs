//! TEMPORARY stand-in for the lead's topology API (removed at the merge
//! with main): the same signatures, Standalone behaviour only.

use redis::{Cmd, FromRedisValue};

use super::RedisConnection;
use crate::error::Result;

/// Which kind of deployment a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyKind {
    /// One node.
    Standalone,
    /// A master found through Sentinel.
    Sentinel,
    /// A Redis Cluster.
    Cluster,
}

impl RedisConnection {
    /// The topology.
    pub fn topology_kind(&self) -> TopologyKind {
        TopologyKind::Standalone
    }

    /// Every master.
    pub async fn masters(&self) -> Result<Vec<String>> {
        Ok(vec![self.config().address()])
    }

    /// One command on `node`.
    pub async fn query_on<T: FromRedisValue>(&self, node: &str, cmd: &Cmd) -> Result<T> {
        let _ = node;
        self.query(cmd).await
    }
}
