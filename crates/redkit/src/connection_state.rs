//! The connection's lifecycle states: a leaf at the bottom of the crate, so
//! that the error enum can name them without importing the connection
//! module (which imports the error enum). Re-exported as
//! [`connection::ConnectionState`](crate::connection::ConnectionState).

use std::fmt;

use serde::Serialize;

/// Where the shared connection is in its lifecycle.
///
/// `Connecting` → `Ready` → (`Reconnecting` → `Ready`)* → `Closed`, with
/// `Degraded` entered after the configured number of failed attempts and left
/// as soon as a slow probe succeeds, and `Rejected` while Redis answers but
/// refuses this client for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// First connection not made yet.
    Connecting,
    /// Connected; commands are sent.
    Ready,
    /// The connection was lost; retrying with backoff.
    Reconnecting,
    /// Retries are exhausted; probing at a slow interval until Redis is back.
    Degraded,
    /// Redis answered and refused this client: wrong password or user
    /// (`WRONGPASS`, `NOAUTH`), missing permission (`NOPERM`), or a database
    /// index it does not have. Not an outage — retrying with the same
    /// settings fails until the server or the settings change — so health
    /// reports it as unhealthy; the connection still probes at the slow
    /// interval, in case it is fixed server-side.
    Rejected,
    /// Shut down; no command is accepted any more.
    Closed,
}

impl ConnectionState {
    /// Every state, in lifecycle order.
    pub const ALL: [ConnectionState; 6] = [
        ConnectionState::Connecting,
        ConnectionState::Ready,
        ConnectionState::Reconnecting,
        ConnectionState::Degraded,
        ConnectionState::Rejected,
        ConnectionState::Closed,
    ];

    pub(crate) fn index(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_index(index: u8) -> Self {
        Self::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or(ConnectionState::Closed)
    }

    /// Lower-case name, as in logs, health output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Ready => "ready",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Degraded => "degraded",
            ConnectionState::Rejected => "rejected",
            ConnectionState::Closed => "closed",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
