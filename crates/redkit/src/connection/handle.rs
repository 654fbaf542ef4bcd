//! The shared, cheap-to-clone connection handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{MultiplexedConnection, PubSub};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline};
use tokio::sync::watch;

use super::ConnectionState;
use super::client::Connector;
use super::link::Link;
use super::metrics::ConnectionMetrics;
use super::shared::Shared;
use crate::config::{NodeAddress, RedisConfig, Topology, TopologyKind};
use crate::error::{Error, Result, is_connection_error, is_not_writable};

/// The shared Redis connection; clone it freely, every clone is the same
/// connection. See the [module docs](super).
#[derive(Clone)]
pub struct RedisConnection {
    owner: Arc<Owner>,
}

/// Shared by all clones; when the last clone goes, the supervisor stops and
/// the connections close.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.abandon();
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("address", &self.shared().config().address())
            .field("state", &self.state())
            .finish()
    }
}

impl RedisConnection {
    /// Creates the handle and starts connecting in the background.
    ///
    /// Returns at once, whether Redis is up or not; only an invalid
    /// configuration (or an unreadable TLS CA file) is an error. Must be called
    /// inside a Tokio runtime.
    pub fn connect(config: RedisConfig) -> Result<Self> {
        config.validate()?;
        let metrics = ConnectionMetrics::register(config.address());
        let connector = Connector::new(Arc::new(config))?;
        let shared = Arc::new(Shared::new(connector, metrics));
        tokio::spawn(super::supervisor::run(shared.clone()));
        Ok(RedisConnection {
            owner: Arc::new(Owner { shared }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.owner.shared
    }

    /// The configuration this handle was built from.
    pub fn config(&self) -> &RedisConfig {
        self.shared().config()
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.shared().state()
    }

    /// Why Redis refuses this client (wrong credentials, missing
    /// permission, unknown database), while the state is
    /// [`ConnectionState::Rejected`]; never holds the password.
    pub fn rejection(&self) -> Option<String> {
        self.shared().rejection()
    }

    /// Why the last connection attempt failed (unreachable, refused, a
    /// replica instead of a master, a cluster not `ok`), while the state is
    /// not `Ready`; never holds the password. A rejection is also in
    /// [`RedisConnection::rejection`].
    pub fn last_failure(&self) -> Option<String> {
        self.shared().last_failure()
    }

    /// A stream of state changes, starting with the current state.
    pub fn state_changes(&self) -> StateChanges {
        let mut receiver = self.shared().subscribe_state();
        receiver.mark_changed();
        StateChanges { receiver }
    }

    /// Waits until the state is `Ready`, for at most `timeout`.
    ///
    /// Returns at once with [`Error::Unavailable`] (state `Rejected`) when
    /// Redis refuses this client (see [`RedisConnection::rejection`]):
    /// waiting longer cannot help until the settings or the server change.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut receiver = self.shared().subscribe_state();
        let ready = receiver.wait_for(|state| {
            matches!(
                state,
                ConnectionState::Ready | ConnectionState::Closed | ConnectionState::Rejected
            )
        });
        match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(state)) if *state == ConnectionState::Ready => Ok(()),
            Ok(Ok(state)) if *state == ConnectionState::Rejected => Err(Error::Unavailable {
                state: ConnectionState::Rejected,
            }),
            Ok(_) => Err(Error::Closed),
            Err(_) => Err(Error::Unavailable {
                state: self.state(),
            }),
        }
    }

    /// Sends one command and decodes its reply.
    ///
    /// Fails fast with [`Error::Unavailable`] when not connected, and never
    /// waits past the command timeout ([`Error::Timeout`]).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let (mut connection, generation, _guard) = self.shared().checkout()?;
        let started = Instant::now();
        let result = cmd.query_async::<redis::Value>(&mut connection).await;
        self.finish(started, generation, result, || {
            command_name(cmd.args_iter())
        })
    }

    /// Sends a pipeline (or a MULTI/EXEC transaction) in one round trip.
    ///
    /// On Cluster a pipeline goes to one node, so every key in it must be
    /// in one hash slot (give related keys a common `{hash tag}`); a
    /// pipeline whose keys span slots is refused with
    /// [`Error::InvalidInput`] before anything is sent (the `redis` crate
    /// checks) — never half-run on the wrong node. A multi-key command
    /// whose keys span slots gets the same error. Group commands by [`key_slot`](super::key_slot)
    /// first, or send them one by one with [`RedisConnection::query`].
    pub async fn query_pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline) -> Result<T> {
        let (mut connection, generation, _guard) = self.shared().checkout()?;
        let started = Instant::now();
        let result = pipeline.query_async::<redis::Value>(&mut connection).await;
        self.finish(started, generation, result, || "PIPELINE".to_owned())
    }

    /// Sends PING and returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(started.elapsed())
    }

    /// Opens a new multiplexed connection with the same settings, outside the
    /// shared set: for blocking commands (`BLPOP`, `XREAD BLOCK`) that would
    /// stall everyone else's commands on the shared one. It goes to the
    /// current master (on Sentinel, resolved now; it does not follow a later
    /// failover — open a new one when it fails).
    ///
    /// On Cluster one node holds only some keys, so this is
    /// [`Error::Unsupported`]; use [`RedisConnection::dedicated_cluster`].
    pub async fn dedicated(&self) -> Result<MultiplexedConnection> {
        self.ensure_open()?;
        self.shared().connector().multiplexed().await
    }

    /// Opens a new cluster connection outside the shared one (routing by
    /// key slot, following `MOVED`), for blocking commands on Cluster.
    /// [`Error::Unsupported`] on the other topologies.
    pub async fn dedicated_cluster(&self) -> Result<ClusterConnection> {
        self.ensure_open()?;
        self.shared().connector().cluster().await
    }

    /// Opens a dedicated pub/sub connection with the same settings: to the
    /// master on Standalone and Sentinel; on Cluster to one reachable
    /// master — classic `PUBLISH` is broadcast to every node of a cluster,
    /// so one node's subscription receives every message. When that node
    /// fails the connection drops; open a new one (the stores' subscriptions
    /// do, and report [`crate::store::PubSubEvent::Resubscribed`]).
    pub async fn pubsub(&self) -> Result<PubSub> {
        self.ensure_open()?;
        let nodes = match &self.config().topology {
            Topology::Cluster(cluster) => {
                let mut nodes = self.cluster_masters().await.unwrap_or_default();
                nodes.extend(cluster.nodes.iter().cloned());
                nodes
            }
            _ => Vec::new(),
        };
        self.shared().connector().pubsub(&nodes).await
    }

    /// The node's `ROLE` (`master`, `slave`) on Standalone and Sentinel;
    /// `master` when the user may not run `ROLE` (see the module docs).
    pub async fn role(&self) -> Result<String> {
        let (connection, generation, _guard) = self.shared().checkout()?;
        let Link::Node(mut node) = connection else {
            return Err(Error::Unsupported {
                what: "ROLE on Redis Cluster".to_owned(),
                instead: "masters() and query_on()".to_owned(),
            });
        };
        let started = Instant::now();
        let result = super::client::role_of(&mut node)
            .await
            .map(redis::Value::SimpleString);
        self.finish(started, generation, result, || "ROLE".to_owned())
    }

    /// On Sentinel, every configured sentinel with its `PING` round trip
    /// (or why it did not answer); empty on other topologies.
    pub async fn ping_sentinels(&self) -> Vec<(String, Result<Duration>)> {
        self.shared().connector().ping_sentinels().await
    }

    /// Standalone, Sentinel or Cluster.
    pub fn topology_kind(&self) -> TopologyKind {
        self.config().topology.kind()
    }

    /// The master the connection uses now (`host:port`), on Standalone and
    /// Sentinel while connected; `None` on Cluster or while disconnected.
    pub fn master(&self) -> Option<String> {
        self.shared().master().map(|node| node.to_string())
    }

    /// Every master now (`host:port`): the one master on Standalone and
    /// Sentinel; on Cluster every master that serves slots and is not
    /// failing, from `CLUSTER NODES`. For commands that must run on every
    /// master ([`RedisConnection::query_on`]): `SCAN`, `DBSIZE`, `INFO`.
    pub async fn masters(&self) -> Result<Vec<String>> {
        match self.topology_kind() {
            TopologyKind::Cluster => Ok(self
                .cluster_masters()
                .await?
                .iter()
                .map(ToString::to_string)
                .collect()),
            _ => match self.shared().master() {
                Some(master) => Ok(vec![master.to_string()]),
                None => Err(Error::Unavailable {
                    state: self.state(),
                }),
            },
        }
    }

    async fn cluster_masters(&self) -> Result<Vec<NodeAddress>> {
        let nodes: String = self.query(redis::cmd("CLUSTER").arg("NODES")).await?;
        Ok(parse_cluster_masters(&nodes))
    }

    /// Sends one command to the node `node` (`host:port`, one of
    /// [`RedisConnection::masters`]): on Cluster through the cluster
    /// connection's link to that node, elsewhere through the shared
    /// connection when `node` is the current master.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `node` is not `host:port` or (outside
    /// Cluster) not the current master.
    pub async fn query_on<T: FromRedisValue>(&self, node: &str, cmd: &Cmd) -> Result<T> {
        let address = NodeAddress::parse(node, "node").map_err(|_| Error::InvalidInput {
            what: "node",
            problem: "not host:port".to_owned(),
        })?;
        let (connection, generation, _guard) = self.shared().checkout()?;
        match connection {
            Link::Cluster(mut cluster) => {
                let started = Instant::now();
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: address.host,
                    port: address.port,
                });
                let result = cluster.route_command(cmd.clone(), routing).await;
                self.finish(started, generation, result, || {
                    command_name(cmd.args_iter())
                })
            }
            Link::Node(_) => {
                if self.shared().master().as_ref() != Some(&address) {
                    return Err(Error::InvalidInput {
                        what: "node",
                        problem: format!("{node} is not the current master"),
                    });
                }
                drop(_guard);
                self.query(cmd).await
            }
        }
    }

    /// Stops accepting commands, lets in-flight ones finish (for at most the
    /// command timeout), closes the connections and ends in `Closed`.
    pub async fn shutdown(&self) {
        if self.shared().start_closing() {
            self.shared().finish_closing().await;
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.shared().is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn finish<T: FromRedisValue>(
        &self,
        started: Instant,
        generation: u64,
        result: redis::RedisResult<redis::Value>,
        name: impl FnOnce() -> String,
    ) -> Result<T> {
        let metrics = self.shared().metrics();
        metrics.commands.increment(1);
        metrics.duration.record(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(value) => match T::from_redis_value(value) {
                Ok(decoded) => return Ok(decoded),
                // A reply of another shape than asked for is the caller's
                // mismatch, not a broken connection (the `redis` crate
                // classes parse errors as "reconnect").
                Err(mismatch) => {
                    metrics.errors.increment(1);
                    return Err(Error::Command {
                        command: name(),
                        source: Box::new(redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "the reply does not have the expected type",
                            mismatch.to_string(),
                        ))),
                    });
                }
            },
            Err(error) => error,
        };
        metrics.errors.increment(1);
        let command = name();
        if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot) {
            return Err(Error::InvalidInput {
                what: "keys",
                problem: format!(
                    "{command} names keys in more than one cluster hash slot; on Redis Cluster \
                     the keys of one command, pipeline or script must share a slot: give them \
                     a common {{hash tag}} or split the call by key_slot"
                ),
            });
        }
        if error.is_timeout() {
            return Err(Error::Timeout {
                command,
                after: self.config().command_timeout,
            });
        }
        // A node that stopped taking writes is a broken connection on one
        // node (the master moved: look for it again); on Cluster the
        // cluster connection follows such moves itself.
        if is_connection_error(&error)
            || (is_not_writable(&error) && self.topology_kind() != TopologyKind::Cluster)
        {
            self.shared().mark_broken(generation);
        }
        Err(Error::Command {
            command,
            source: Box::new(error),
        })
    }
}

/// The masters in a `CLUSTER NODES` reply that serve slots and are not
/// failing.
fn parse_cluster_masters(nodes: &str) -> Vec<NodeAddress> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = *fields.get(2)?;
            let serves_slots = fields.len() > 8;
            let is_master = flags.split(',').any(|flag| flag == "master");
            let failing = flags
                .split(',')
                .any(|flag| matches!(flag, "fail" | "fail?" | "handshake" | "noaddr"));
            if !is_master || failing || !serves_slots {
                return None;
            }
            // `ip:port@cport[,hostname]`
            let address = fields.get(1)?.split('@').next()?;
            NodeAddress::parse(address, "CLUSTER NODES").ok()
        })
        .collect()
}

/// The command's name (first argument), for errors.
fn command_name<'a>(mut args: impl Iterator<Item = redis::Arg<&'a [u8]>>) -> String {
    match args.next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => "command".to_owned(),
    }
}

/// A stream of [`ConnectionState`] changes; see
/// [`RedisConnection::state_changes`].
#[derive(Debug)]
pub struct StateChanges {
    receiver: watch::Receiver<ConnectionState>,
}

impl StateChanges {
    /// The next state, or `None` once the connection handle is gone.
    ///
    /// Intermediate states may be skipped when changes come faster than they
    /// are read; the last one is always delivered.
    pub async fn next(&mut self) -> Option<ConnectionState> {
        self.receiver.changed().await.ok()?;
        Some(*self.receiver.borrow_and_update())
    }
}
