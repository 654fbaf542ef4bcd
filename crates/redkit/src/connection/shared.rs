//! The state one connection handle and its supervisor share, and the only
//! code that changes it.
//!
//! Like mini-redis's `Shared`: the handle (hot path) and the supervisor
//! (background task) both hold an `Arc<Shared>` and only call its methods,
//! so every transition — a new live set, a dead connection, a state change,
//! shutdown — is written once, here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, watch};

use super::ConnectionState;
use super::client::Connector;
use super::link::Link;
use super::metrics::ConnectionMetrics;
use crate::config::{NodeAddress, RedisConfig};
use crate::error::{Error, Result};
use crate::striped::Striped;

/// The live connections of one successful (re)connection.
pub(super) struct Live {
    generation: u64,
    connections: Vec<Link>,
    /// The node the links go to (Standalone, Sentinel); `None` on Cluster.
    master: Option<NodeAddress>,
}

pub(super) struct Shared {
    connector: Connector,
    live: ArcSwapOption<Live>,
    /// Why Redis refused this client, while the state is `Rejected`.
    rejection: ArcSwapOption<String>,
    /// Why the last connection attempt failed, until one succeeds.
    last_failure: ArcSwapOption<String>,
    generation: AtomicU64,
    state: watch::Sender<ConnectionState>,
    /// The current state as a number, for lock-free reads on the hot path.
    state_now: AtomicU8,
    /// Mirrors `closing` for lock-free reads on the hot path.
    closed: AtomicBool,
    /// Wakes the supervisor when a command saw the connection die.
    broken: Notify,
    /// `true` once shutdown started.
    closing: watch::Sender<bool>,
    /// Commands in flight, striped: every command counts itself in and out,
    /// and one shared counter would be a cache line all cores fight over.
    in_flight: Striped,
    drained: Notify,
    metrics: ConnectionMetrics,
}

impl Shared {
    pub(super) fn new(connector: Connector, metrics: ConnectionMetrics) -> Self {
        metrics.state(ConnectionState::Connecting);
        Shared {
            connector,
            live: ArcSwapOption::empty(),
            rejection: ArcSwapOption::empty(),
            last_failure: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            state: watch::Sender::new(ConnectionState::Connecting),
            state_now: AtomicU8::new(ConnectionState::Connecting.index()),
            closed: AtomicBool::new(false),
            broken: Notify::new(),
            closing: watch::Sender::new(false),
            in_flight: Striped::default(),
            drained: Notify::new(),
            metrics,
        }
    }

    pub(super) fn config(&self) -> &RedisConfig {
        self.connector.config()
    }

    pub(super) fn connector(&self) -> &Connector {
        &self.connector
    }

    pub(super) fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    pub(super) fn state(&self) -> ConnectionState {
        ConnectionState::from_index(self.state_now.load(Ordering::Acquire))
    }

    pub(super) fn subscribe_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    pub(super) fn subscribe_closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub(super) fn is_closed(&self) -> bool {
        // SeqCst, like the in-flight count: see `checkout`.
        self.closed.load(Ordering::SeqCst)
    }

    /// Records a state change: watch channel, log line and metrics.
    pub(super) fn set_state(&self, next: ConnectionState) {
        self.state_now.store(next.index(), Ordering::Release);
        let previous = self.state.send_replace(next);
        if previous == next {
            return;
        }
        self.metrics.state(next);
        let config = self.config();
        match next {
            ConnectionState::Ready => tracing::info!(
                address = %config.address(),
                master = %self.master().map(|node| node.to_string()).unwrap_or_default(),
                from = %previous, "redis connection ready"
            ),
            // Logged by `reject`, once per reason.
            ConnectionState::Rejected => {}
            ConnectionState::Degraded => tracing::error!(
                address = %config.address(),
                probe_interval = ?config.retry.degraded_probe_interval,
                "redis unreachable after {} attempts; degraded, probing slowly", config.retry.max_attempts
            ),
            _ => tracing::warn!(
                address = %config.address(),
                from = %previous, to = %next, "redis connection state changed"
            ),
        }
    }

    /// Records that Redis refused this client for `reason` (which never
    /// holds a secret): state `Rejected`, and one error log line per
    /// distinct reason, not one per probe.
    pub(super) fn reject(&self, reason: String) {
        let changed = self
            .rejection
            .load()
            .as_deref()
            .is_none_or(|previous| *previous != reason);
        if changed {
            let config = self.config();
            tracing::error!(
                address = %config.address(),
                reason = %reason,
                probe_interval = ?config.retry.degraded_probe_interval,
                "redis rejected this client; not a transient outage: fix the settings or the server (still probing)"
            );
            self.rejection.store(Some(Arc::new(reason)));
        }
        self.set_state(ConnectionState::Rejected);
    }

    /// Records why a connection attempt failed (never holds a secret).
    pub(super) fn record_failure(&self, reason: String) {
        self.last_failure.store(Some(Arc::new(reason)));
    }

    /// Why the last connection attempt failed, while no attempt since
    /// succeeded.
    pub(super) fn last_failure(&self) -> Option<String> {
        if self.state() == ConnectionState::Ready {
            return None;
        }
        self.last_failure.load().as_deref().cloned()
    }

    /// Forgets a rejection (Redis accepted us again, or stopped answering).
    pub(super) fn clear_rejection(&self) {
        self.rejection.store(None);
    }

    /// Why Redis refuses this client, while it does.
    pub(super) fn rejection(&self) -> Option<String> {
        (self.state() == ConnectionState::Rejected)
            .then(|| self.rejection.load().as_deref().cloned())
            .flatten()
    }

    /// Opens the configured number of connections, all or nothing, under a
    /// new generation number. On Cluster one cluster connection (it holds a
    /// multiplexed connection per node already). On Sentinel every
    /// connection of the set goes to the same master: a failover between
    /// two opens makes the set fail and start again.
    pub(super) async fn open(&self) -> Result<Live> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let first = self.connector.open().await?;
        let master = first.master;
        let size = if master.is_some() {
            self.config().pool_size
        } else {
            1
        };
        let mut connections = Vec::with_capacity(size);
        connections.push(first.link);
        while connections.len() < size {
            let next = self.connector.open().await?;
            if next.master != master {
                return Err(Error::Connect {
                    address: self.config().address(),
                    source: "the master changed while connecting".into(),
                });
            }
            connections.push(next.link);
        }
        Ok(Live {
            generation,
            connections,
            master,
        })
    }

    /// Makes `live` the set commands use.
    pub(super) fn install(&self, live: Live) {
        self.last_failure.store(None);
        self.live.store(Some(Arc::new(live)));
    }

    /// Drops the live set: commands fail fast until the next `install`.
    pub(super) fn take_live(&self) {
        self.live.store(None);
    }

    /// The master the live set is connected to (Standalone, Sentinel).
    pub(super) fn master(&self) -> Option<NodeAddress> {
        self.live
            .load()
            .as_ref()
            .and_then(|live| live.master.clone())
    }

    /// The live set, if any (the supervisor checks it).
    pub(super) fn live_connections(&self) -> Option<Vec<Link>> {
        self.live
            .load()
            .as_ref()
            .map(|live| live.connections.clone())
    }

    /// Resolves when a command reported the live set dead.
    pub(super) async fn broken(&self) {
        self.broken.notified().await;
    }

    /// Called when a command on connection `generation` found it dead: drops
    /// the live set (so later commands fail fast) and wakes the supervisor.
    /// A report about an older generation is ignored: the supervisor already
    /// replaced that set, and dropping the new one would cost a reconnect.
    pub(super) fn mark_broken(&self, generation: u64) {
        let current = self.live.load();
        let is_current = current
            .as_ref()
            .is_some_and(|live| live.generation == generation);
        if !is_current {
            return;
        }
        self.live.store(None);
        if !*self.closing.borrow() {
            self.set_state(ConnectionState::Reconnecting);
        }
        self.broken.notify_one();
    }

    /// Picks a live connection at random (with its generation, to report
    /// it broken later), or fails fast. The returned guard counts the
    /// command in flight until dropped.
    pub(super) fn checkout(&self) -> Result<(Link, u64, InFlight<'_>)> {
        // Count first, then check `closed`: shutdown sets `closed` before it
        // reads the count, so either it sees this command or we see `closed`
        // (both sides SeqCst: a store then a load on each side).
        let guard = InFlight::enter(self);
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let live = self.live.load();
        let Some(live) = live.as_ref() else {
            return Err(Error::Unavailable {
                state: self.state(),
            });
        };
        // At random (a thread-local generator), not round-robin: a shared
        // cursor would be one more line every command writes.
        let index = match live.connections.len() {
            1 => 0,
            n => fastrand::usize(..n),
        };
        Ok((live.connections[index].clone(), live.generation, guard))
    }

    /// Marks the handle closed and tells the supervisor; false when shutdown
    /// had already started.
    pub(super) fn start_closing(&self) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        !self.closing.send_replace(true)
    }

    /// Waits (for at most the command timeout) until no command is in
    /// flight, drops the live set and ends in `Closed`.
    pub(super) async fn finish_closing(&self) {
        let drained = self.drained.notified();
        tokio::pin!(drained);
        // Registered before the count is read, so a command finishing in
        // between still wakes us.
        drained.as_mut().enable();
        if self.in_flight.sum(Ordering::SeqCst) > 0 {
            let _ = tokio::time::timeout(self.config().command_timeout, drained).await;
        }
        self.live.store(None);
        self.set_state(ConnectionState::Closed);
    }

    /// The last handle is gone: stop everything without waiting.
    pub(super) fn abandon(&self) {
        self.start_closing();
        self.live.store(None);
    }
}

/// Counts a command in flight so that shutdown can wait for it.
pub(super) struct InFlight<'a> {
    shared: &'a Shared,
}

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.in_flight.add(1, Ordering::SeqCst);
        InFlight { shared }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared.in_flight.sub(1, Ordering::SeqCst);
        if self.shared.is_closed() && self.shared.in_flight.sum(Ordering::SeqCst) == 0 {
            self.shared.drained.notify_waiters();
        }
    }
}
