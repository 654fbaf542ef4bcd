//! One live link to the data: a multiplexed connection to a master
//! (Standalone, Sentinel) or the `redis` crate's cluster connection, which
//! routes each command by its key's slot and follows `MOVED` / `ASK`.
//!
//! Both are cheap to clone and both are a `redis::aio::ConnectionLike`, so
//! the hot path (`query`) does not care which one it holds.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A live connection of the shared set.
#[derive(Clone)]
pub(super) enum Link {
    /// One node: the master.
    Node(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Node(connection) => connection.req_packed_command(cmd),
            Link::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Node(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Node(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}
