//! The background task that connects, watches and reconnects.
//!
//! One supervisor runs per [`RedisConnection`](super::RedisConnection). It
//! alternates between two phases until shutdown:
//!
//! 1. **connect**: open `pool_size` connections; on failure wait the backoff
//!    delay and retry; after `max_attempts` failures the state is `Degraded`
//!    and the wait becomes the slow probe interval — it never stops trying;
//!    a definitive rejection (wrong password, missing permission, unknown
//!    database) is `Rejected` at once and probed at the slow interval: no
//!    fast retries can fix it, but a fix on the server must be noticed;
//! 2. **watch**: while `Ready`, check every `health_check_interval` (`ROLE`
//!    on one node, so a demoted master is left; `PING` on Cluster), wake up
//!    at once when a command reports the connection dropped or the node no
//!    longer writable, and — on Sentinel — when a sentinel announces
//!    `+switch-master` for our master: the next connect phase asks the
//!    sentinels again, so the new master is used within about a second of
//!    the announcement and the old one never again.

use std::sync::Arc;
use std::time::Duration;

use super::ConnectionState;
use super::backoff::Backoff;
use super::client::role_of;
use super::link::Link;
use super::sentinel_watch;
use super::shared::Shared;
use crate::error::{Error, Result};

pub(super) async fn run(shared: Arc<Shared>) {
    let mut closing = shared.subscribe_closing();
    let backoff = Backoff::new(shared.config().retry.clone());
    let mut has_connected = false;
    loop {
        // Connect phase. Commands fail fast meanwhile (no live set), so
        // nothing waits on this loop but the supervisor itself.
        let mut failures = 0u32;
        loop {
            if is_closing(&closing) {
                return;
            }
            // Shutdown must not wait for a connect timeout.
            let attempt = tokio::select! {
                result = shared.open() => result,
                _ = wait_closing(&mut closing) => return,
            };
            match attempt {
                Ok(live) => {
                    // Install before announcing Ready: whoever sees Ready
                    // can send at once.
                    shared.install(live);
                    shared.clear_rejection();
                    if has_connected {
                        shared.metrics().reconnects.increment(1);
                    }
                    has_connected = true;
                    shared.set_state(ConnectionState::Ready);
                    break;
                }
                Err(error) if error.is_rejection() => {
                    shared.record_failure(rejection_reason(&error));
                    shared.reject(rejection_reason(&error));
                    tokio::select! {
                        _ = tokio::time::sleep(shared.config().retry.degraded_probe_interval) => {}
                        _ = wait_closing(&mut closing) => return,
                    }
                }
                Err(error) => {
                    shared.clear_rejection();
                    failures = failures.saturating_add(1);
                    let delay = backoff.delay(failures);
                    log_failure(&shared, &error, failures, delay);
                    shared.record_failure(rejection_reason(&error));
                    if backoff.exhausted(failures) {
                        shared.set_state(ConnectionState::Degraded);
                    } else if has_connected {
                        shared.set_state(ConnectionState::Reconnecting);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = wait_closing(&mut closing) => return,
                    }
                }
            }
        }

        // Watch phase. Commands report a dead connection themselves
        // (`mark_broken` wakes us); the idle check catches one nobody used;
        // on Sentinel, an announced failover ends the phase at once.
        let interval = shared.config().health_check_interval;
        let switch = sentinel_watch::switch_announced(&shared);
        tokio::pin!(switch);
        loop {
            tokio::select! {
                _ = shared.broken() => break,
                new_master = &mut switch => {
                    tracing::warn!(
                        address = %shared.config().address(),
                        new_master = %new_master,
                        "sentinel announced a failover; reconnecting to the new master"
                    );
                    break;
                }
                _ = tokio::time::sleep(interval) => {
                    let Some(connections) = shared.live_connections() else {
                        break;
                    };
                    if let Err(error) = health_ping(&shared, connections).await {
                        tracing::warn!(
                            address = %shared.config().address(),
                            error = %error,
                            "redis health check failed; reconnecting"
                        );
                        break;
                    }
                }
                _ = wait_closing(&mut closing) => return,
            }
        }
        // Drop the old set before reconnecting, so no command keeps using
        // a connection the next generation replaces.
        shared.take_live();
        if is_closing(&closing) {
            return;
        }
        shared.set_state(ConnectionState::Reconnecting);
    }
}

/// Resolves once shutdown starts (or the handle is gone).
async fn wait_closing(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

fn is_closing(closing: &tokio::sync::watch::Receiver<bool>) -> bool {
    *closing.borrow()
}

/// The idle check of every live connection: on one node `ROLE`, which
/// answers like PING and also catches a master demoted to replica (a
/// replica answers PING, so PING alone would keep writing to it); on
/// Cluster a `PING` through the cluster connection.
async fn health_ping(shared: &Shared, connections: Vec<Link>) -> Result<()> {
    for mut connection in connections {
        let command = match connection {
            Link::Node(_) => "ROLE",
            Link::Cluster(_) => "PING",
        };
        let check = async {
            let outcome: redis::RedisResult<Option<String>> = match &mut connection {
                Link::Node(node) => {
                    let role = role_of(node).await?;
                    Ok(Some(role).filter(|role| role != "master"))
                }
                Link::Cluster(cluster) => {
                    redis::cmd("PING").query_async::<()>(cluster).await?;
                    Ok(None)
                }
            };
            outcome
        };
        match tokio::time::timeout(shared.config().command_timeout, check).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(role))) => {
                return Err(Error::NotWritable {
                    address: shared
                        .master()
                        .map(|node| node.to_string())
                        .unwrap_or_else(|| shared.config().address()),
                    role,
                });
            }
            Ok(Err(error)) => {
                return Err(Error::Command {
                    command: command.to_owned(),
                    source: Box::new(error),
                });
            }
            Err(_) => {
                return Err(Error::Timeout {
                    command: command.to_owned(),
                    after: shared.config().command_timeout,
                });
            }
        }
    }
    Ok(())
}

/// The error and its cause, in words (neither holds a secret: the password
/// is never part of an error).
fn rejection_reason(error: &Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error} ({cause})"),
        None => error.to_string(),
    }
}

fn log_failure(shared: &Shared, error: &Error, failures: u32, delay: Duration) {
    let config = shared.config();
    let cause = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    tracing::warn!(
        address = %config.address(),
        attempt = failures, retry_in = ?delay, error = %error, cause = %cause,
        "redis connection attempt failed"
    );
}
