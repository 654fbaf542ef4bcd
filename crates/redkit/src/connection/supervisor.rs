//! The background task that connects, watches and reconnects.
//!
//! One supervisor runs per [`RedisConnection`](super::RedisConnection). It
//! alternates between two phases until shutdown:
//!
//! 1. **connect**: open `pool_size` connections; on failure wait the backoff
//!    delay and retry; after `max_attempts` failures the state is `Degraded`
//!    and the wait becomes the slow probe interval — it never stops trying;
//! 2. **watch**: while `Ready`, PING every `health_check_interval` and wake up
//!    at once when a command reports the connection dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ConnectionState;
use super::backoff::Backoff;
use super::handle::{Inner, Live};
use crate::error::{Error, Result};

pub(super) async fn run(inner: Arc<Inner>) {
    let mut closing = inner.closing.subscribe();
    let backoff = Backoff::new(inner.connector.config().retry.clone());
    let mut has_connected = false;
    loop {
        // Connect phase.
        let mut failures = 0u32;
        loop {
            if is_closing(&closing) {
                return;
            }
            let attempt = tokio::select! {
                result = connect_all(&inner) => result,
                _ = wait_closing(&mut closing) => return,
            };
            match attempt {
                Ok(live) => {
                    inner.live.store(Some(Arc::new(live)));
                    if has_connected {
                        inner.metrics.reconnects.increment(1);
                    }
                    has_connected = true;
                    set_state(&inner, ConnectionState::Ready);
                    break;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff.delay(failures);
                    log_failure(&inner, &error, failures, delay);
                    if backoff.exhausted(failures) {
                        set_state(&inner, ConnectionState::Degraded);
                    } else if has_connected {
                        set_state(&inner, ConnectionState::Reconnecting);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = wait_closing(&mut closing) => return,
                    }
                }
            }
        }

        // Watch phase.
        let interval = inner.connector.config().health_check_interval;
        loop {
            tokio::select! {
                _ = inner.broken.notified() => break,
                _ = tokio::time::sleep(interval) => {
                    if inner.live.load().is_none() {
                        break;
                    }
                    if let Err(error) = health_ping(&inner).await {
                        tracing::warn!(
                            address = %inner.connector.config().address(),
                            error = %error,
                            "redis health check failed; reconnecting"
                        );
                        break;
                    }
                }
                _ = wait_closing(&mut closing) => return,
            }
        }
        inner.live.store(None);
        if is_closing(&closing) {
            return;
        }
        set_state(&inner, ConnectionState::Reconnecting);
    }
}

/// Resolves once shutdown starts (or the handle is gone).
async fn wait_closing(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

fn is_closing(closing: &tokio::sync::watch::Receiver<bool>) -> bool {
    *closing.borrow()
}

/// Opens the configured number of connections, all or nothing.
async fn connect_all(inner: &Arc<Inner>) -> Result<Live> {
    let generation = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
    let size = inner.connector.config().pool_size;
    let mut connections = Vec::with_capacity(size);
    for _ in 0..size {
        connections.push(inner.connector.multiplexed().await?);
    }
    Ok(Live {
        generation,
        connections,
    })
}

async fn health_ping(inner: &Inner) -> Result<()> {
    let live = inner.live.load_full().ok_or(Error::Unavailable {
        state: ConnectionState::Reconnecting,
    })?;
    for connection in &live.connections {
        let mut connection = connection.clone();
        let ping = redis::cmd("PING");
        let pong = ping.query_async::<String>(&mut connection);
        match tokio::time::timeout(inner.connector.config().command_timeout, pong).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                return Err(Error::Command {
                    command: "PING".to_owned(),
                    source: Box::new(error),
                });
            }
            Err(_) => {
                return Err(Error::Timeout {
                    command: "PING".to_owned(),
                    after: inner.connector.config().command_timeout,
                });
            }
        }
    }
    Ok(())
}

/// Called when a command on connection `generation` found it dead: drops the
/// live set (so later commands fail fast) and wakes the supervisor.
pub(super) fn mark_broken(inner: &Inner, generation: u64) {
    let current = inner.live.load();
    let is_current = current
        .as_ref()
        .is_some_and(|live| live.generation == generation);
    if !is_current {
        return;
    }
    inner.live.store(None);
    if !*inner.closing.borrow() {
        set_state(inner, ConnectionState::Reconnecting);
    }
    inner.broken.notify_one();
}

/// Records a state change: watch channel, log line and metrics.
pub(super) fn set_state(inner: &Inner, next: ConnectionState) {
    inner.state_now.store(next.index(), Ordering::Release);
    let previous = inner.state.send_replace(next);
    if previous == next {
        return;
    }
    inner.metrics.state(next);
    let config = inner.connector.config();
    match next {
        ConnectionState::Ready => tracing::info!(
            host = %config.host, port = config.port, db = config.db,
            from = %previous, "redis connection ready"
        ),
        ConnectionState::Degraded => tracing::error!(
            host = %config.host, port = config.port, db = config.db,
            probe_interval = ?config.retry.degraded_probe_interval,
            "redis unreachable after {} attempts; degraded, probing slowly", config.retry.max_attempts
        ),
        _ => tracing::warn!(
            host = %config.host, port = config.port, db = config.db,
            from = %previous, to = %next, "redis connection state changed"
        ),
    }
}

fn log_failure(inner: &Inner, error: &Error, failures: u32, delay: Duration) {
    let config = inner.connector.config();
    let cause = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    tracing::warn!(
        host = %config.host, port = config.port, db = config.db,
        attempt = failures, retry_in = ?delay, error = %error, cause = %cause,
        "redis connection attempt failed"
    );
}
