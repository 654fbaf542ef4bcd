//! The connection's Prometheus-style metrics, through the `metrics` facade.
//!
//! Handles are registered once per connection so that the hot path only
//! touches atomics. The service must install its recorder before connecting.

use metrics::{Counter, Histogram};

use super::ConnectionState;

/// Commands sent to Redis.
pub(crate) const COMMANDS: &str = "redkit_redis_commands_total";
/// Commands that failed (error reply, timeout, broken connection).
pub(crate) const ERRORS: &str = "redkit_redis_command_errors_total";
/// Command latency in seconds.
pub(crate) const DURATION: &str = "redkit_redis_command_duration_seconds";
/// Successful reconnections after a lost connection.
pub(crate) const RECONNECTS: &str = "redkit_redis_reconnects_total";
/// 1 for the current connection state, 0 for the others.
pub(crate) const STATE: &str = "redkit_redis_connection_state";

#[derive(Clone)]
pub(crate) struct ConnectionMetrics {
    /// `host:port/db`, labelling the state gauge so that several connections
    /// in one process each report their own state.
    address: String,
    pub(crate) commands: Counter,
    pub(crate) errors: Counter,
    pub(crate) duration: Histogram,
    pub(crate) reconnects: Counter,
}

impl ConnectionMetrics {
    pub(crate) fn register(address: String) -> Self {
        metrics::describe_counter!(COMMANDS, "Commands sent to Redis");
        metrics::describe_counter!(ERRORS, "Redis commands that failed");
        metrics::describe_histogram!(DURATION, metrics::Unit::Seconds, "Redis command latency");
        metrics::describe_counter!(RECONNECTS, "Reconnections after a lost Redis connection");
        metrics::describe_gauge!(STATE, "1 for the current Redis connection state");
        ConnectionMetrics {
            address,
            commands: metrics::counter!(COMMANDS),
            errors: metrics::counter!(ERRORS),
            duration: metrics::histogram!(DURATION),
            reconnects: metrics::counter!(RECONNECTS),
        }
    }

    pub(crate) fn state(&self, current: ConnectionState) {
        for state in ConnectionState::ALL {
            let value = if state == current { 1.0 } else { 0.0 };
            metrics::gauge!(STATE, "state" => state.as_str(), "address" => self.address.clone())
                .set(value);
        }
    }
}
