//! The crate's one error type.
//!
//! Every fallible redkit call returns [`Error`]. Variants say *what* went wrong
//! in words an operator can act on, and keep the underlying cause reachable
//! through [`std::error::Error::source`] instead of flattening it into a
//! string. The `redis` crate's error type stays behind `source()` so that its
//! major versions do not leak into redkit's API. No variant ever carries a
//! password.

use std::time::Duration;

use crate::connection_state::ConnectionState;

/// Result alias used across redkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed cause kept by [`Error`] variants.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in redkit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid. `setting` names the variable or field.
    #[error("invalid {setting}: {problem}; expected {expected}")]
    InvalidConfig {
        /// The environment variable or field that holds the bad value.
        setting: String,
        /// What is wrong with it (never includes a secret value).
        problem: String,
        /// The form that would be accepted.
        expected: String,
    },

    /// Redis is not connected right now (the handle is connecting,
    /// reconnecting or degraded); the call failed fast instead of waiting.
    #[error("redis is unavailable (connection is {state})")]
    Unavailable {
        /// The connection state when the call was made.
        state: ConnectionState,
    },

    /// The handle was shut down; no more commands are accepted.
    #[error("the redis connection is closed")]
    Closed,

    /// A command got no answer within the command timeout.
    #[error("redis command {command} timed out after {after:?}")]
    Timeout {
        /// The command name, such as `GET`.
        command: String,
        /// The configured command timeout.
        after: Duration,
    },

    /// The server rejected the credentials.
    #[error("redis authentication failed for user {user}: check REDIS_USERNAME / REDIS_PASSWORD")]
    Authentication {
        /// The user name used (`default` when none was given).
        user: String,
        /// The server's answer.
        #[source]
        source: BoxError,
    },

    /// The server refused the configured database index (`SELECT` failed:
    /// it has fewer databases, or it is a cluster node, which only has 0).
    #[error("redis at {address} refused to select database {db}: check REDIS_DB")]
    DatabaseRejected {
        /// `host:port` — never credentials.
        address: String,
        /// The configured database index.
        db: u32,
        /// The server's answer.
        #[source]
        source: BoxError,
    },

    /// A connection could not be established.
    #[error("cannot connect to redis at {address}")]
    Connect {
        /// `host:port/db` — never credentials.
        address: String,
        /// Why.
        #[source]
        source: BoxError,
    },

    /// The node answered but cannot take writes: it is a replica (a
    /// demoted master, or a replica configured by mistake). Never `Ready`:
    /// the supervisor keeps looking for the master.
    #[error("redis at {address} is a {role}, not a master: writes would fail")]
    NotWritable {
        /// `host:port` — never credentials.
        address: String,
        /// What `ROLE` answered (`slave`, `sentinel`).
        role: String,
    },

    /// The operation has no meaning on the configured topology (such as a
    /// connection to one node on Redis Cluster, where one node holds only
    /// some keys).
    #[error("{what} is not supported here; use {instead}")]
    Unsupported {
        /// What was asked for.
        what: String,
        /// What to use instead.
        instead: String,
    },

    /// A command failed (server error reply, broken connection, bad reply).
    #[error("redis command {command} failed")]
    Command {
        /// The command name, such as `GET`.
        command: String,
        /// The redis client's error.
        #[source]
        source: BoxError,
    },

    /// The key holds a value of another type (Redis' WRONGTYPE).
    #[error("key {key:?} holds a value of another type than {expected}")]
    WrongType {
        /// The key, as given by the caller.
        key: String,
        /// What the operation needed (`string`, `integer`, `set`).
        expected: &'static str,
    },

    /// A caller-supplied argument is not acceptable.
    #[error("invalid {what}: {problem}")]
    InvalidInput {
        /// What was wrong (`key`, `ttl`, `channel`, …).
        what: &'static str,
        /// Why, and what is expected.
        problem: String,
    },

    /// A session update kept losing the race against concurrent writers on
    /// other instances (each attempt found a newer version); retrying later
    /// usually succeeds.
    #[error("session update conflicted with concurrent writers {attempts} times; retry")]
    SessionConflict {
        /// Attempts made.
        attempts: usize,
    },

    /// The session has reached its absolute maximum lifetime
    /// (`SessionConfig::absolute_max`): it can no longer be updated or moved
    /// to a new id.
    #[error("the session's absolute lifetime is over")]
    SessionLifetimeOver,

    /// Every freshly generated random id collided with an existing one: the
    /// random generator cannot be trusted.
    #[error(
        "{attempts} random {what}s in a row collided with existing ones; the random generator is broken"
    )]
    IdCollision {
        /// Which id (`session id`).
        what: &'static str,
        /// Ids generated.
        attempts: usize,
    },

    /// Redis is away and the outage journal (changes to re-apply on Redis at
    /// recovery) is full: this change was made locally but would be undone
    /// when Redis comes back.
    #[error(
        "Redis is unavailable and the outage journal is full ({capacity} changes); this change would not survive recovery"
    )]
    JournalFull {
        /// The journal's capacity.
        capacity: usize,
    },

    /// The embedded store cannot make room for a value within its memory budget.
    #[error(
        "value of {size} bytes does not fit the embedded store's memory budget of {budget} bytes"
    )]
    OutOfMemory {
        /// Bytes the entry needs.
        size: usize,
        /// The configured budget.
        budget: usize,
    },

    /// A cache loader failed and no stale value could be served instead.
    #[error("loading cache key {key:?} failed")]
    Loader {
        /// The cache key.
        key: String,
        /// The loader's error.
        #[source]
        source: BoxError,
    },

    /// A cache loader ran past its hard timeout and no stale value could be
    /// served instead.
    #[error("loading cache key {key:?} took longer than {after:?}")]
    LoaderTimeout {
        /// The cache key.
        key: String,
        /// The hard timeout.
        after: Duration,
    },

    /// A value could not be encoded for the cache.
    #[error("cannot encode the value of cache key {key:?}")]
    Encode {
        /// The cache key.
        key: String,
        /// The codec's error.
        #[source]
        source: BoxError,
    },

    /// In fallback mode, Redis is unreachable and the queue's in-memory
    /// buffer is full: the job was not enqueued.
    #[error(
        "queue {queue}: redis is unreachable and the fallback buffer is full ({capacity} jobs); the job was not enqueued"
    )]
    QueueBufferFull {
        /// The queue's name.
        queue: String,
        /// The buffer's capacity (`QueueConfig::buffer_capacity`).
        capacity: usize,
    },

    /// A server-side script failed.
    #[error("script {script} failed: {message}")]
    Script {
        /// The script's name.
        script: &'static str,
        /// The error reported by the script.
        message: String,
    },
}

impl Error {
    /// This error again, for each caller a batched call carried: the same
    /// kind, so that each tells an outage from a refusal as it would alone.
    /// `None` for kinds a batched call does not produce (the caller names
    /// its own).
    pub(crate) fn duplicate(&self) -> Option<Error> {
        Some(match self {
            Error::Unavailable { state } => Error::Unavailable { state: *state },
            Error::Closed => Error::Closed,
            Error::Timeout { command, after } => Error::Timeout {
                command: command.clone(),
                after: *after,
            },
            Error::NotWritable { address, role } => Error::NotWritable {
                address: address.clone(),
                role: role.clone(),
            },
            Error::Command { command, source } => Error::Command {
                command: command.clone(),
                source: match source.downcast_ref::<redis::RedisError>() {
                    Some(redis_error) => Box::new(redis_error.clone()),
                    None => source.to_string().into(),
                },
            },
            Error::Connect { address, source } => Error::Connect {
                address: address.clone(),
                source: source.to_string().into(),
            },
            _ => return None,
        })
    }

    /// Whether the error means "Redis could not be reached" (as opposed to
    /// "Redis answered no"): the fallback store switches to the embedded store
    /// on these. A node that cannot take writes (`READONLY`, `MASTERDOWN`,
    /// `LOADING`: the master moved or is not ready) counts as unreachable:
    /// the connection looks for the master again meanwhile.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. }
                | Error::Closed
                | Error::Timeout { .. }
                | Error::Connect { .. }
                | Error::NotWritable { .. }
        ) || matches!(self, Error::Command { source, .. }
            if source
                .downcast_ref::<redis::RedisError>()
                .is_some_and(|error| is_connection_error(error) || is_not_writable(error)))
    }

    /// Whether Redis answered and refused this client for good (wrong
    /// credentials, missing permission, unknown database): retrying with the
    /// same settings cannot succeed until the server or the settings change,
    /// unlike an outage.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::Authentication { .. } | Error::DatabaseRejected { .. }
        )
    }

    /// Whether Redis answered but cannot carry out the command for now:
    /// out of memory under a `noeviction` policy (`OOM`), loading its
    /// dataset (`LOADING`), busy running a script (`BUSY`), a read-only
    /// replica (`READONLY`), refusing writes after a failed save
    /// (`MISCONF`), a master or cluster down (`MASTERDOWN`, `CLUSTERDOWN`,
    /// `TRYAGAIN`) or too few replicas (`NOREPLICAS`). Neither the caller's
    /// mistake nor a definitive rejection: the same command may succeed
    /// once the server recovers. The rate limiter treats these like
    /// unavailability (its insurance limiter answers); other modules keep
    /// reporting them as errors.
    pub fn is_refused_for_now(&self) -> bool {
        const CODES: [&str; 9] = [
            "OOM",
            "LOADING",
            "BUSY",
            "READONLY",
            "MISCONF",
            "MASTERDOWN",
            "CLUSTERDOWN",
            "TRYAGAIN",
            "NOREPLICAS",
        ];
        matches!(self, Error::Command { source, .. }
            if source
                .downcast_ref::<redis::RedisError>()
                .and_then(redis::RedisError::code)
                .is_some_and(|code| CODES.contains(&code)))
    }

    pub(crate) fn invalid_config(
        setting: impl Into<String>,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            setting: setting.into(),
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    pub(crate) fn invalid_input(what: &'static str, problem: impl Into<String>) -> Self {
        Error::InvalidInput {
            what,
            problem: problem.into(),
        }
    }
}

/// Whether a redis-rs error means the connection itself is gone.
/// Whether a reply says this node cannot take writes (any more): a replica
/// (`READONLY`), a replica cut off from its master (`MASTERDOWN`), or a
/// node still loading its data (`LOADING`). On one node that is a broken
/// connection — the master moved or is not ready — not a command error;
/// scripts report it inside their error text.
pub(crate) fn is_not_writable(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading
        )
    ) || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
    {
        return true;
    }
    let text = error.to_string();
    ["READONLY", "MASTERDOWN", "LOADING Redis is loading"]
        .iter()
        .any(|marker| text.contains(marker))
}

pub(crate) fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_unrecoverable_error()
        || err.is_connection_dropped()
        || err.is_io_error()
        || err.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn runtime_conditions_are_not_input_errors() {
        let conflict = Error::SessionConflict { attempts: 16 };
        assert_eq!(
            conflict.to_string(),
            "session update conflicted with concurrent writers 16 times; retry"
        );
        let collision = Error::IdCollision {
            what: "session id",
            attempts: 4,
        };
        assert_eq!(
            collision.to_string(),
            "4 random session ids in a row collided with existing ones; the random generator is broken"
        );
        for error in [conflict, collision, Error::SessionLifetimeOver] {
            assert!(!error.is_unavailable(), "{error:?}");
            assert!(std::error::Error::source(&error).is_none(), "{error:?}");
        }
    }
}
