//! Reading [`RedisConfig`] from `REDIS_*` environment variables.
//!
//! The variables are documented on [`RedisConfig::from_env`].
//!
//! Neither `REDIS_URL` nor `REDIS_HOST` set means "no Redis": the embedded
//! store. An empty variable counts as unset.

use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

use super::{ClusterConfig, NodeAddress, RedisConfig, Secret, SentinelConfig, Topology};
use crate::error::{Error, Result};

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<OsString>,
}

impl Env<'_> {
    /// The variable's value, `None` when unset or empty.
    fn get(&self, name: &str) -> Result<Option<String>> {
        match (self.lookup)(name) {
            None => Ok(None),
            Some(value) => match value.into_string() {
                Ok(value) if value.trim().is_empty() => Ok(None),
                Ok(value) => Ok(Some(value.trim().to_owned())),
                Err(_) => Err(Error::invalid_config(
                    name,
                    "the value is not valid UTF-8",
                    "UTF-8 text",
                )),
            },
        }
    }

    /// A secret: never echoed, not trimmed.
    fn secret(&self, name: &str) -> Result<Option<Secret>> {
        match (self.lookup)(name) {
            None => Ok(None),
            Some(value) => match value.into_string() {
                Ok(value) if value.is_empty() => Ok(None),
                Ok(value) => Ok(Some(Secret::new(value))),
                Err(_) => Err(Error::invalid_config(
                    name,
                    "the value is not valid UTF-8",
                    "UTF-8 text",
                )),
            },
        }
    }

    fn parse<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>> {
        let Some(raw) = self.get(name)? else {
            return Ok(None);
        };
        if raw.starts_with('-') && raw[1..].chars().all(|c| c.is_ascii_digit()) && raw.len() > 1 {
            return Err(Error::invalid_config(
                name,
                format!("`{raw}` is negative"),
                expected,
            ));
        }
        raw.parse().map(Some).map_err(|_| {
            let problem = if raw.chars().all(|c| c.is_ascii_digit()) {
                format!("`{raw}` is out of range")
            } else {
                format!("`{raw}` is not a number")
            };
            Error::invalid_config(name, problem, expected)
        })
    }

    fn port(&self, name: &str) -> Result<Option<u16>> {
        const EXPECTED: &str = "a TCP port from 1 to 65535";
        match self.parse::<u16>(name, EXPECTED)? {
            Some(0) => Err(Error::invalid_config(name, "`0` is out of range", EXPECTED)),
            port => Ok(port),
        }
    }

    fn duration_ms(&self, name: &str) -> Result<Option<Duration>> {
        const EXPECTED: &str = "a whole number of milliseconds greater than zero, such as 500";
        match self.parse::<u64>(name, EXPECTED)? {
            Some(0) => Err(Error::invalid_config(name, "`0` is not allowed", EXPECTED)),
            value => Ok(value.map(Duration::from_millis)),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>> {
        let Some(raw) = self.get(name)? else {
            return Ok(None);
        };
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(Error::invalid_config(
                name,
                format!("`{raw}` is not a boolean"),
                "true or false (also 1/0, yes/no, on/off)",
            )),
        }
    }
}

impl RedisConfig {
    /// Reads the configuration from the process environment. Call it once,
    /// at the edge of the program (in `main`).
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `REDIS_ENABLED` | `false` selects the embedded store |
    /// | `REDIS_URL` | `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS; also `redis+sentinel://…/master_name[/db]` and `redis+cluster://…` (see [`RedisConfig::from_url`]) |
    /// | `REDIS_HOST`, `REDIS_PORT` | address, when no URL is given |
    /// | `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER` | Sentinel: `host:port,host:port` of the sentinels and the master's name (instead of a URL or host) |
    /// | `REDIS_SENTINEL_USERNAME`, `REDIS_SENTINEL_PASSWORD` | the sentinels' own credentials, when they need them |
    /// | `REDIS_CLUSTER_NODES` | Cluster: `host:port,host:port` seed nodes (instead of a URL or host) |
    /// | `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_DB`, `REDIS_TLS` | credentials, database, TLS (also fill in what a URL leaves out) |
    /// | `REDIS_TLS_CA_FILE` | PEM CA certificate for TLS |
    /// | `REDIS_KEY_PREFIX` | prefix for keys and channels |
    /// | `REDIS_CONNECT_TIMEOUT_MS`, `REDIS_COMMAND_TIMEOUT_MS` | timeouts |
    /// | `REDIS_KEEPALIVE_SECS` | TCP keep-alive idle time, `0` disables |
    /// | `REDIS_POOL_SIZE` | multiplexed connections |
    /// | `REDIS_HEALTH_CHECK_INTERVAL_MS` | idle PING interval |
    /// | `REDIS_RETRY_INITIAL_DELAY_MS`, `REDIS_RETRY_MAX_DELAY_MS`, `REDIS_RETRY_MAX_ATTEMPTS`, `REDIS_DEGRADED_PROBE_INTERVAL_MS` | reconnection policy |
    /// | `REDIS_FALLBACK` | serve from the embedded store while Redis is down |
    ///
    ///
    /// Neither `REDIS_URL` nor `REDIS_HOST` set, or `REDIS_ENABLED=false`,
    /// gives a configuration with `enabled == false` (embedded store). An
    /// empty variable counts as unset. Unset settings keep the defaults
    /// documented on each field of [`RedisConfig`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> redkit::Result<()> {
    /// // REDIS_URL=rediss://app:secret@redis.internal:6380/2
    /// let config = redkit::config::RedisConfig::from_env()?;
    /// println!("{config:?}"); // the password prints as ***
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable, what is wrong with its
    /// value and what is expected (`REDIS_PORT: "abc" is not a number …`).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Like [`RedisConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self> {
        from_lookup(&lookup)
    }
}

fn from_lookup(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<RedisConfig> {
    let env = Env { lookup };
    let mut config = RedisConfig::default();

    let url = env.get("REDIS_URL")?;
    let host = env.get("REDIS_HOST")?;
    let port = env.port("REDIS_PORT")?;
    let username = env.get("REDIS_USERNAME")?;
    let password = env.secret("REDIS_PASSWORD")?;
    let db = env.parse::<u32>("REDIS_DB", "a database index of 0 or more")?;
    let tls = env.bool("REDIS_TLS")?;
    let enabled = env.bool("REDIS_ENABLED")?;
    let topology = topology_from_env(&env, url.is_some(), host.is_some())?;

    match (&url, &host) {
        (Some(url), None) => {
            if port.is_some() {
                return Err(Error::invalid_config(
                    "REDIS_PORT",
                    "it is set together with REDIS_URL",
                    "the port inside REDIS_URL, or REDIS_HOST + REDIS_PORT without REDIS_URL",
                ));
            }
            super::url::apply_url(&mut config, url, "REDIS_URL")?;
            fill_in(&mut config, username, password, db, tls)?;
        }
        (None, Some(host)) => {
            config.host = host.clone();
            if let Some(port) = port {
                config.port = port;
            }
            config.username = username;
            config.password = password;
            config.db = db.unwrap_or(0);
            config.tls = tls.unwrap_or(false);
        }
        (Some(_), Some(_)) => {
            return Err(Error::invalid_config(
                "REDIS_HOST",
                "it is set together with REDIS_URL",
                "either REDIS_URL, or REDIS_HOST (+ REDIS_PORT), not both",
            ));
        }
        (None, None) => match topology {
            Some(topology) => {
                config.topology = topology;
                config.username = username;
                config.password = password;
                config.db = db.unwrap_or(0);
                config.tls = tls.unwrap_or(false);
            }
            None => config.enabled = false,
        },
    }
    if let Topology::Sentinel(sentinel) = &mut config.topology {
        sentinel.username = env.get("REDIS_SENTINEL_USERNAME")?;
        sentinel.password = env.secret("REDIS_SENTINEL_PASSWORD")?;
    } else {
        for name in ["REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD"] {
            if (env.lookup)(name).is_some_and(|value| !value.is_empty()) {
                return Err(Error::invalid_config(
                    name,
                    "it is set but no Sentinel is configured",
                    "REDIS_SENTINELS + REDIS_SENTINEL_MASTER (or a redis+sentinel:// REDIS_URL) as well",
                ));
            }
        }
    }
    if enabled == Some(false) {
        config.enabled = false;
    }
    if enabled == Some(true) && !config.enabled {
        return Err(Error::invalid_config(
            "REDIS_ENABLED",
            "it is true but no Redis address is given",
            "REDIS_URL, REDIS_HOST, REDIS_SENTINELS or REDIS_CLUSTER_NODES to be set as well",
        ));
    }

    if let Some(path) = env.get("REDIS_TLS_CA_FILE")? {
        config.tls_ca_file = Some(path.into());
    }
    if let Some(prefix) = env.get("REDIS_KEY_PREFIX")? {
        config.key_prefix = prefix;
    }
    if let Some(timeout) = env.duration_ms("REDIS_CONNECT_TIMEOUT_MS")? {
        config.connect_timeout = timeout;
    }
    if let Some(timeout) = env.duration_ms("REDIS_COMMAND_TIMEOUT_MS")? {
        config.command_timeout = timeout;
    }
    if let Some(secs) = env.parse::<u64>(
        "REDIS_KEEPALIVE_SECS",
        "a whole number of seconds, 0 to disable keep-alive",
    )? {
        config.keep_alive = (secs > 0).then(|| Duration::from_secs(secs));
    }
    if let Some(size) =
        env.parse::<usize>("REDIS_POOL_SIZE", "a number of connections from 1 to 64")?
    {
        if size == 0 || size > 64 {
            return Err(Error::invalid_config(
                "REDIS_POOL_SIZE",
                format!("`{size}` is out of range"),
                "a number of connections from 1 to 64",
            ));
        }
        config.pool_size = size;
    }
    if let Some(interval) = env.duration_ms("REDIS_HEALTH_CHECK_INTERVAL_MS")? {
        config.health_check_interval = interval;
    }
    if let Some(delay) = env.duration_ms("REDIS_RETRY_INITIAL_DELAY_MS")? {
        config.retry.initial_delay = delay;
    }
    if let Some(delay) = env.duration_ms("REDIS_RETRY_MAX_DELAY_MS")? {
        config.retry.max_delay = delay;
    }
    if let Some(attempts) = env.parse::<u32>(
        "REDIS_RETRY_MAX_ATTEMPTS",
        "a number of attempts of 1 or more",
    )? {
        if attempts == 0 {
            return Err(Error::invalid_config(
                "REDIS_RETRY_MAX_ATTEMPTS",
                "`0` is not allowed",
                "a number of attempts of 1 or more",
            ));
        }
        config.retry.max_attempts = attempts;
    }
    if let Some(interval) = env.duration_ms("REDIS_DEGRADED_PROBE_INTERVAL_MS")? {
        config.retry.degraded_probe_interval = interval;
    }
    if let Some(fallback) = env.bool("REDIS_FALLBACK")? {
        config.fallback = fallback;
    }
    config.validate().map_err(name_variables)?;
    Ok(config)
}

/// The Sentinel or Cluster topology the `REDIS_SENTINELS` /
/// `REDIS_CLUSTER_NODES` variables ask for, checking they are the only way
/// an address is given.
fn topology_from_env(env: &Env<'_>, has_url: bool, has_host: bool) -> Result<Option<Topology>> {
    let sentinels = env.get("REDIS_SENTINELS")?;
    let master = env.get("REDIS_SENTINEL_MASTER")?;
    let cluster = env.get("REDIS_CLUSTER_NODES")?;
    let other_address = if has_url {
        Some("REDIS_URL")
    } else if has_host {
        Some("REDIS_HOST")
    } else {
        None
    };
    if let (Some(_), Some(_)) = (&sentinels, &cluster) {
        return Err(Error::invalid_config(
            "REDIS_CLUSTER_NODES",
            "it is set together with REDIS_SENTINELS",
            "one topology: REDIS_SENTINELS + REDIS_SENTINEL_MASTER, or REDIS_CLUSTER_NODES",
        ));
    }
    for (name, value) in [
        ("REDIS_SENTINELS", &sentinels),
        ("REDIS_CLUSTER_NODES", &cluster),
    ] {
        if let (Some(_), Some(other)) = (value, other_address) {
            return Err(Error::invalid_config(
                name,
                format!("it is set together with {other}"),
                format!("one way to give the address: {name}, or {other}, not both"),
            ));
        }
    }
    if master.is_some() && sentinels.is_none() {
        return Err(Error::invalid_config(
            "REDIS_SENTINEL_MASTER",
            if has_url {
                "it is set together with REDIS_URL"
            } else {
                "it is set but REDIS_SENTINELS is not"
            },
            "REDIS_SENTINELS=host:port,host:port with REDIS_SENTINEL_MASTER=name, or the master \
             name in the path of a redis+sentinel:// REDIS_URL",
        ));
    }
    if let Some(sentinels) = sentinels {
        let master = master.ok_or_else(|| {
            Error::invalid_config(
                "REDIS_SENTINELS",
                "it is set but REDIS_SENTINEL_MASTER (the master's name) is not",
                "REDIS_SENTINEL_MASTER=<name the sentinels monitor> as well",
            )
        })?;
        let sentinels = NodeAddress::parse_list(&sentinels, "REDIS_SENTINELS")?;
        return Ok(Some(Topology::Sentinel(SentinelConfig::new(
            sentinels, master,
        ))));
    }
    if let Some(cluster) = cluster {
        let nodes = NodeAddress::parse_list(&cluster, "REDIS_CLUSTER_NODES")?;
        return Ok(Some(Topology::Cluster(ClusterConfig::new(nodes))));
    }
    Ok(None)
}

/// Validation names fields (`retry.max_delay`); read from the environment,
/// the error names the variables a user sets instead.
fn name_variables(error: Error) -> Error {
    const NAMES: &[(&str, &str)] = &[
        (
            "retry.degraded_probe_interval",
            "REDIS_DEGRADED_PROBE_INTERVAL_MS",
        ),
        ("retry.initial_delay", "REDIS_RETRY_INITIAL_DELAY_MS"),
        ("retry.max_delay", "REDIS_RETRY_MAX_DELAY_MS"),
        ("retry.max_attempts", "REDIS_RETRY_MAX_ATTEMPTS"),
        ("health_check_interval", "REDIS_HEALTH_CHECK_INTERVAL_MS"),
        ("connect_timeout", "REDIS_CONNECT_TIMEOUT_MS"),
        ("command_timeout", "REDIS_COMMAND_TIMEOUT_MS"),
        ("keep_alive", "REDIS_KEEPALIVE_SECS"),
        ("host", "REDIS_HOST (or the host of REDIS_URL)"),
        ("port", "REDIS_PORT (or the port of REDIS_URL)"),
    ];
    let rename = |text: &str| {
        NAMES
            .iter()
            .fold(text.to_owned(), |text, (field, variable)| {
                text.replace(field, variable)
            })
    };
    match error {
        Error::InvalidConfig {
            setting,
            problem,
            expected,
        } if setting == "db" => Error::InvalidConfig {
            setting: "REDIS_DB (or the database of REDIS_URL)".to_owned(),
            problem,
            expected,
        },
        Error::InvalidConfig {
            setting,
            problem,
            expected,
        } => Error::InvalidConfig {
            setting: NAMES
                .iter()
                .find(|(field, _)| *field == setting)
                .map_or(setting, |(_, variable)| (*variable).to_owned()),
            problem: rename(&problem),
            expected,
        },
        other => other,
    }
}

/// With a URL, the separate variables may fill in what the URL leaves out,
/// but never contradict it.
fn fill_in(
    config: &mut RedisConfig,
    username: Option<String>,
    password: Option<Secret>,
    db: Option<u32>,
    tls: Option<bool>,
) -> Result<()> {
    if let Some(username) = username {
        if config.username.as_ref().is_some_and(|u| *u != username) {
            return Err(both("REDIS_USERNAME", "a user name"));
        }
        config.username = Some(username);
    }
    if let Some(password) = password {
        if config.password.is_some() {
            return Err(both("REDIS_PASSWORD", "a password"));
        }
        config.password = Some(password);
    }
    if let Some(db) = db {
        if config.db != 0 && config.db != db {
            return Err(both("REDIS_DB", "a database"));
        }
        config.db = db;
    }
    if let Some(tls) = tls
        && tls != config.tls
    {
        return Err(Error::invalid_config(
            "REDIS_TLS",
            format!("`{tls}` contradicts the scheme of REDIS_URL"),
            "rediss:// for TLS, redis:// without; or leave REDIS_TLS unset",
        ));
    }
    Ok(())
}

fn both(setting: &str, what: &str) -> Error {
    Error::invalid_config(
        setting,
        format!("REDIS_URL already contains {what}"),
        format!("{what} in one place only: REDIS_URL or {setting}"),
    )
}
