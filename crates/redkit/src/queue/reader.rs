//! How a worker waits for jobs.
//!
//! On Redis a worker reads with `XREADGROUP … BLOCK` on a connection of its
//! own: Redis hands it a job the moment any process enqueues one, with no
//! poll and no extra round trip after the `XADD` (a blocking read on the
//! shared connection would stall every other command behind it). The block
//! is short (at most the poll interval, under the command timeout), so the
//! maintenance still runs every poll and shutdown never waits long; a read
//! in flight is always finished, never dropped, so the jobs it leased run
//! here instead of waiting out their visibility timeout.
//!
//! On the embedded store the read does not block: a local enqueue wakes the
//! worker (there is no other process to wait for).

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;

use super::shared::{QueueShared, read_command, stream_reply};
use crate::config::TopologyKind;
use crate::connection::ConnectionState;
use crate::error::{Error, Result};
use crate::store::ScriptValue;

/// A worker's own connection for blocking reads (opened on first use,
/// dropped on any error and opened again: on Sentinel that finds the new
/// master).
#[derive(Default)]
pub(super) struct Reader {
    connection: Option<Blocking>,
}

enum Blocking {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Reader {
    /// Whether reads of `shared` block on Redis (else: poll and wakeups).
    pub(super) fn blocks(shared: &QueueShared) -> bool {
        shared.redis().is_some()
    }

    /// `XREADGROUP … COUNT count BLOCK block … >` on this worker's
    /// connection: up to `count` new entries, waiting at most `block` for
    /// the first.
    pub(super) async fn read(
        &mut self,
        shared: &QueueShared,
        count: usize,
        block: Duration,
    ) -> Result<ScriptValue> {
        let Some(redis) = shared.redis() else {
            return shared.read(count).await;
        };
        let state = redis.connection().state();
        if state != ConnectionState::Ready {
            // Do not dial Redis on every poll while it is away.
            return Err(Error::Unavailable { state });
        }
        // Under the command timeout, which also bounds this connection's
        // replies.
        let block = block.min(redis.connection().config().command_timeout / 2);
        let stream = redis.key(shared.keys.all()[0]);
        let command = read_command(&stream, count, Some(block));
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let opened = match redis.connection().topology_kind() {
                    TopologyKind::Cluster => {
                        Blocking::Cluster(redis.connection().dedicated_cluster().await?)
                    }
                    _ => Blocking::Node(redis.connection().dedicated().await?),
                };
                self.connection.insert(opened)
            }
        };
        let reply = match connection {
            Blocking::Node(node) => node.req_packed_command(&command).await,
            Blocking::Cluster(cluster) => cluster.req_packed_command(&command).await,
        };
        match reply {
            Ok(reply) => Ok(stream_reply(reply)),
            Err(source) => {
                self.connection = None;
                Err(Error::Command {
                    command: "XREADGROUP".to_owned(),
                    source: Box::new(source),
                })
            }
        }
    }
}
