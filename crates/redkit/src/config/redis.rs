//! The Redis connection settings and their builder.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::Secret;
use super::topology::{self, Topology};
use crate::error::{Error, Result};

/// How to reach Redis and how hard to try.
///
/// Build it with [`RedisConfig::builder`], [`RedisConfig::from_url`] or
/// [`RedisConfig::from_env`]; each field below says its default. `Debug`
/// never prints the password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Whether Redis is used at all. `false` selects the embedded store.
    /// Default: `true`.
    pub enabled: bool,
    /// Standalone (the node at `host`/`port`), Sentinel or Cluster.
    /// Default: [`Topology::Standalone`].
    pub topology: Topology,
    /// Host name or IP address (Standalone). Default: `127.0.0.1`.
    pub host: String,
    /// TCP port (Standalone). Default: `6379`.
    pub port: u16,
    /// ACL user name; `None` authenticates as `default`. Default: `None`.
    pub username: Option<String>,
    /// Password (`AUTH`). Default: `None`.
    pub password: Option<Secret>,
    /// Logical database index (`SELECT`). Default: `0`.
    pub db: u32,
    /// Connect with TLS (`rediss://`), using rustls. Default: `false`.
    pub tls: bool,
    /// PEM file with the CA certificate(s) that sign the server's certificate,
    /// when it is not signed by a CA in the system's trust store.
    /// Default: `None` (system trust store).
    pub tls_ca_file: Option<PathBuf>,
    /// Prefix added to every key and channel, to share one Redis between
    /// applications. Default: empty.
    pub key_prefix: String,
    /// Time allowed to open a connection (TCP, TLS, AUTH, SELECT).
    /// Default: 2 s.
    pub connect_timeout: Duration,
    /// Time allowed for one command's answer; no call waits longer.
    /// Default: 1 s.
    pub command_timeout: Duration,
    /// TCP keep-alive idle time; `None` disables keep-alive probes.
    /// Default: 30 s.
    pub keep_alive: Option<Duration>,
    /// Number of multiplexed connections commands are spread over.
    /// Default: 1 (one multiplexed connection pipelines well).
    pub pool_size: usize,
    /// How often a connected handle sends PING to notice a silently dead
    /// server. Default: 1 s.
    pub health_check_interval: Duration,
    /// Reconnection policy.
    pub retry: RetryConfig,
    /// While Redis is unavailable, serve from the embedded store instead of
    /// failing. Default: `true`.
    pub fallback: bool,
}

/// Capped exponential backoff with jitter, then slow probing.
///
/// Attempt `n` (from 1) waits `min(initial_delay * 2^(n-1), max_delay)`, with
/// "equal jitter": a random delay between half of that and all of it. After
/// `max_attempts` failed attempts the connection is `Degraded` and keeps
/// probing every `degraded_probe_interval`: it never gives up for good. A
/// definitive rejection (wrong password, `NOAUTH`, `NOPERM`, unknown
/// database) skips the fast retries — they cannot succeed — and is probed
/// at `degraded_probe_interval` from the first attempt (state `Rejected`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Delay before the first retry. Default: 50 ms.
    pub initial_delay: Duration,
    /// Upper bound of a retry delay. Default: 1 s, so a recovered Redis is
    /// used again within about a second.
    pub max_delay: Duration,
    /// Failed attempts before the state becomes `Degraded`. Default: 10.
    pub max_attempts: u32,
    /// Interval between probes while degraded or rejected. Default: 1 s
    /// (one connection attempt per second costs nothing and keeps recovery
    /// within a second).
    pub degraded_probe_interval: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            max_attempts: 10,
            degraded_probe_interval: Duration::from_secs(1),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            enabled: true,
            topology: Topology::Standalone,
            host: "127.0.0.1".to_owned(),
            port: 6379,
            username: None,
            password: None,
            db: 0,
            tls: false,
            tls_ca_file: None,
            key_prefix: String::new(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(1),
            keep_alive: Some(Duration::from_secs(30)),
            pool_size: 1,
            health_check_interval: Duration::from_secs(1),
            retry: RetryConfig::default(),
            fallback: true,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("enabled", &self.enabled)
            .field("topology", &self.topology)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("pool_size", &self.pool_size)
            .field("health_check_interval", &self.health_check_interval)
            .field("retry", &self.retry)
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl RedisConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RedisConfigBuilder {
        RedisConfigBuilder {
            config: RedisConfig::default(),
        }
    }

    /// Where the data lives, for logs and health output (never
    /// credentials): `host:port/db` on Standalone,
    /// `sentinel:<master name>/db` on Sentinel (the master's address
    /// changes with failovers; the health report shows the current one),
    /// `cluster:<first seed node>` on Cluster.
    pub fn address(&self) -> String {
        match &self.topology {
            Topology::Standalone => format!("{}:{}/{}", self.host, self.port, self.db),
            Topology::Sentinel(sentinel) => {
                format!("sentinel:{}/{}", sentinel.master_name, self.db)
            }
            Topology::Cluster(cluster) => match cluster.nodes.first() {
                Some(node) => format!("cluster:{node}"),
                None => "cluster".to_owned(),
            },
        }
    }

    /// Checks every value; the same rules apply to every way of building.
    pub fn validate(&self) -> Result<()> {
        topology::validate(&self.topology, self.db)?;
        if self.host.is_empty()
            || self
                .host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid_config(
                "host",
                format!("{:?} is not a host name", self.host),
                "a host name or IP address without spaces",
            ));
        }
        if self.port == 0 {
            return Err(Error::invalid_config(
                "port",
                "0 is not a usable port",
                "a TCP port from 1 to 65535",
            ));
        }
        positive("connect_timeout", self.connect_timeout)?;
        positive("command_timeout", self.command_timeout)?;
        positive("health_check_interval", self.health_check_interval)?;
        positive("retry.initial_delay", self.retry.initial_delay)?;
        positive("retry.max_delay", self.retry.max_delay)?;
        positive(
            "retry.degraded_probe_interval",
            self.retry.degraded_probe_interval,
        )?;
        if let Some(keep_alive) = self.keep_alive {
            positive("keep_alive", keep_alive)?;
        }
        if self.retry.max_delay < self.retry.initial_delay {
            return Err(Error::invalid_config(
                "retry.max_delay",
                format!(
                    "{:?} is shorter than retry.initial_delay ({:?})",
                    self.retry.max_delay, self.retry.initial_delay
                ),
                "a maximum delay at least as long as the initial delay",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::invalid_config(
                "retry.max_attempts",
                "0 attempts",
                "at least 1",
            ));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(Error::invalid_config(
                "pool_size",
                format!("{} is out of range", self.pool_size),
                "a number of connections from 1 to 64",
            ));
        }
        if self.tls_ca_file.is_some() && !self.tls {
            return Err(Error::invalid_config(
                "tls_ca_file",
                "a CA file is set but TLS is off",
                "TLS enabled (rediss:// or REDIS_TLS=true) when a CA file is given",
            ));
        }
        Ok(())
    }
}

fn positive(setting: &str, value: Duration) -> Result<()> {
    if value.is_zero() {
        return Err(Error::invalid_config(
            setting,
            "zero",
            "a duration greater than zero",
        ));
    }
    Ok(())
}

/// Consuming builder for [`RedisConfig`]; [`RedisConfigBuilder::build`]
/// validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisConfigBuilder {
    pub(super) config: RedisConfig,
}

impl RedisConfigBuilder {
    /// Whether Redis is used at all.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// Standalone, Sentinel or Cluster.
    pub fn topology(mut self, topology: Topology) -> Self {
        self.config.topology = topology;
        self
    }

    /// A Sentinel-managed master (shorthand for
    /// `topology(Topology::Sentinel(..))`).
    pub fn sentinel(self, sentinel: super::SentinelConfig) -> Self {
        self.topology(Topology::Sentinel(sentinel))
    }

    /// A Redis Cluster (shorthand for `topology(Topology::Cluster(..))`).
    pub fn cluster(self, cluster: super::ClusterConfig) -> Self {
        self.topology(Topology::Cluster(cluster))
    }

    /// Host name or IP address.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.config.host = host.into();
        self
    }

    /// TCP port.
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// ACL user name.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.config.username = Some(username.into());
        self
    }

    /// Password.
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.config.password = Some(password.into());
        self
    }

    /// Database index.
    pub fn db(mut self, db: u32) -> Self {
        self.config.db = db;
        self
    }

    /// TLS on or off.
    pub fn tls(mut self, tls: bool) -> Self {
        self.config.tls = tls;
        self
    }

    /// CA certificate file (PEM) for TLS.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.tls_ca_file = Some(path.into());
        self
    }

    /// Key and channel prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// Connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Command timeout.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// TCP keep-alive idle time, or `None` to disable.
    pub fn keep_alive(mut self, keep_alive: Option<Duration>) -> Self {
        self.config.keep_alive = keep_alive;
        self
    }

    /// Number of multiplexed connections.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.config.pool_size = size;
        self
    }

    /// Interval of the idle PING.
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.config.health_check_interval = interval;
        self
    }

    /// Reconnection policy.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.config.retry = retry;
        self
    }

    /// Serve from the embedded store while Redis is down.
    pub fn fallback(mut self, fallback: bool) -> Self {
        self.config.fallback = fallback;
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = redkit::config::RedisConfig::builder()
    ///     .url("redis://127.0.0.1:6379")?
    ///     .command_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// assert!(config.enabled);
    /// # Ok::<(), redkit::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first invalid setting.
    pub fn build(self) -> Result<RedisConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

impl RetryConfig {
    /// Sets the first retry delay.
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the maximum retry delay.
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the attempts before `Degraded`.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the probe interval while degraded.
    #[must_use]
    pub fn degraded_probe_interval(mut self, interval: Duration) -> Self {
        self.degraded_probe_interval = interval;
        self
    }
}
