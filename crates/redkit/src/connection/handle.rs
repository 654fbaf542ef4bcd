//! The shared, cheap-to-clone connection handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{Cmd, FromRedisValue, Pipeline};
use tokio::sync::watch;

use super::ConnectionState;
use super::client::Connector;
use super::metrics::ConnectionMetrics;
use super::shared::Shared;
use crate::config::RedisConfig;
use crate::error::{Error, Result, is_connection_error};

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

    /// A stream of state changes, starting with the current state.
    pub fn state_changes(&self) -> StateChanges {
        let mut receiver = self.shared().subscribe_state();
        receiver.mark_changed();
        StateChanges { receiver }
    }

    /// Waits until the state is `Ready`, for at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut receiver = self.shared().subscribe_state();
        let ready = receiver
            .wait_for(|state| matches!(state, ConnectionState::Ready | ConnectionState::Closed));
        match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(state)) if *state == ConnectionState::Ready => Ok(()),
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
    /// stall everyone else's commands on the shared one.
    pub async fn dedicated(&self) -> Result<MultiplexedConnection> {
        self.ensure_open()?;
        self.shared().connector().multiplexed().await
    }

    /// Opens a dedicated pub/sub connection with the same settings.
    pub async fn pubsub(&self) -> Result<PubSub> {
        self.ensure_open()?;
        self.shared().connector().pubsub().await
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
        let decoded = result.and_then(|value| T::from_redis_value(value).map_err(Into::into));
        let error = match decoded {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        metrics.errors.increment(1);
        let command = name();
        if error.is_timeout() {
            return Err(Error::Timeout {
                command,
                after: self.config().command_timeout,
            });
        }
        if is_connection_error(&error) {
            self.shared().mark_broken(generation);
        }
        Err(Error::Command {
            command,
            source: Box::new(error),
        })
    }
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
