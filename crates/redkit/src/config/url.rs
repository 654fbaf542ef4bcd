//! `redis://` and `rediss://` URL parsing, and the multi-host forms
//! `redis+sentinel://` and `redis+cluster://` (`rediss+…` for TLS).
//!
//! Errors never echo the URL: it may hold a password.

use super::{
    ClusterConfig, NodeAddress, RedisConfig, RedisConfigBuilder, Secret, SentinelConfig, Topology,
};
use crate::error::{Error, Result};

const EXPECTED: &str = "redis://[[username]:password@]host[:port][/db] or rediss://… for TLS";
const EXPECTED_SENTINEL: &str = "redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db] (rediss+sentinel:// for TLS)";
const EXPECTED_CLUSTER: &str =
    "redis+cluster://[user:password@]host:port[,host:port…] (rediss+cluster:// for TLS)";

impl RedisConfig {
    /// Parses `redis://[[user]:password@]host[:port][/db]` or `rediss://…`
    /// (TLS) into a configuration with default timeouts.
    ///
    /// The other topologies have multi-host forms:
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]`
    /// (the hosts are sentinels; the credentials are the data nodes', the
    /// sentinels' own go in [`SentinelConfig`]) and
    /// `redis+cluster://[user:password@]host:port[,host:port…]` (seed nodes);
    /// `rediss+sentinel://` and `rediss+cluster://` use TLS.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = redkit::config::RedisConfig::from_url("redis://:pw@127.0.0.1:6380/1")?;
    /// assert_eq!(config.address(), "127.0.0.1:6380/1");
    /// # Ok::<(), redkit::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the URL does not parse or holds an
    /// invalid value (scheme, port, database index).
    pub fn from_url(url: &str) -> Result<Self> {
        let mut config = RedisConfig::default();
        apply_url(&mut config, url, "redis URL")?;
        config.validate()?;
        Ok(config)
    }
}

impl RedisConfigBuilder {
    /// Starts from a parsed URL instead of the defaults.
    pub fn url(mut self, url: &str) -> Result<Self> {
        apply_url(&mut self.config, url, "redis URL")?;
        Ok(self)
    }
}

/// Applies the address, credentials, database and TLS mode of `url` to
/// `config`. `setting` names the source in errors (such as `REDIS_URL`).
pub(super) fn apply_url(config: &mut RedisConfig, url: &str, setting: &str) -> Result<()> {
    let url = url.trim();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((tls, kind)) = multi_host_scheme(scheme)
    {
        return apply_multi_host(config, rest, tls, kind, setting);
    }
    config.topology = Topology::Standalone;
    let parsed = url::Url::parse(url).map_err(|err| {
        Error::invalid_config(setting, format!("not a valid URL ({err})"), EXPECTED)
    })?;
    config.tls = match parsed.scheme() {
        "redis" | "valkey" => false,
        "rediss" | "valkeys" => true,
        other => {
            return Err(Error::invalid_config(
                setting,
                format!("unknown scheme `{other}://`"),
                EXPECTED,
            ));
        }
    };
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| Error::invalid_config(setting, "the URL has no host", EXPECTED))?;
    config.host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    config.port = parsed.port().unwrap_or(6379);
    if !parsed.username().is_empty() {
        config.username = Some(decode(parsed.username(), setting, "user name")?);
    }
    if let Some(password) = parsed.password() {
        config.password = Some(Secret::new(decode(password, setting, "password")?));
    }
    let path = parsed.path().trim_start_matches('/');
    if !path.is_empty() {
        // Not echoed: a password holding `/` lands here when not encoded.
        config.db = path.parse().map_err(|_| {
            Error::invalid_config(
                setting,
                "the path after the host is not a database number",
                format!("{EXPECTED} (a `/`, `?` or `#` in a password must be percent-encoded)"),
            )
        })?;
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        // Not echoed either: a password holding `?` or `#` lands here.
        return Err(Error::invalid_config(
            setting,
            "the URL has parameters (`?…`) or a fragment (`#…`)",
            format!(
                "{EXPECTED}, without parameters (use the other REDIS_* settings; \
                 a `?` or `#` in a password must be percent-encoded)"
            ),
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MultiHost {
    Sentinel,
    Cluster,
}

/// `(tls, kind)` of a `redis+sentinel`-style scheme.
fn multi_host_scheme(scheme: &str) -> Option<(bool, MultiHost)> {
    match scheme.to_ascii_lowercase().as_str() {
        "redis+sentinel" | "valkey+sentinel" => Some((false, MultiHost::Sentinel)),
        "rediss+sentinel" | "valkeys+sentinel" => Some((true, MultiHost::Sentinel)),
        "redis+cluster" | "valkey+cluster" => Some((false, MultiHost::Cluster)),
        "rediss+cluster" | "valkeys+cluster" => Some((true, MultiHost::Cluster)),
        _ => None,
    }
}

/// `[user:password@]host:port[,host:port…][/path]` after the scheme.
fn apply_multi_host(
    config: &mut RedisConfig,
    rest: &str,
    tls: bool,
    kind: MultiHost,
    setting: &str,
) -> Result<()> {
    let expected = match kind {
        MultiHost::Sentinel => EXPECTED_SENTINEL,
        MultiHost::Cluster => EXPECTED_CLUSTER,
    };
    if rest.contains(['?', '#']) {
        // Not echoed: a password holding `?` or `#` lands here.
        return Err(Error::invalid_config(
            setting,
            "the URL has parameters (`?…`) or a fragment (`#…`)",
            format!(
                "{expected}, without parameters (a `?` or `#` in a password must be percent-encoded)"
            ),
        ));
    }
    let (credentials, after) = match rest.rsplit_once('@') {
        Some((credentials, after)) => (Some(credentials), after),
        None => (None, rest),
    };
    let (hosts, path) = after.split_once('/').unwrap_or((after, ""));
    // The list itself holds no secret, but a password with an unencoded `/`
    // or `@` would end up in it: name the problem without echoing the text.
    let nodes = NodeAddress::parse_list(hosts, setting).map_err(|_| {
        Error::invalid_config(
            setting,
            "the host list is not a comma-separated list of host:port (every host needs its port)",
            format!("{expected} (a `/` or `@` in a password must be percent-encoded)"),
        )
    })?;
    if let Some(credentials) = credentials {
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (credentials, None),
        };
        if !user.is_empty() {
            config.username = Some(decode(user, setting, "user name")?);
        }
        if let Some(password) = password.filter(|password| !password.is_empty()) {
            config.password = Some(Secret::new(decode(password, setting, "password")?));
        }
    }
    let mut segments = path.split('/').filter(|segment| !segment.is_empty());
    config.tls = tls;
    match kind {
        MultiHost::Sentinel => {
            let master = segments.next().ok_or_else(|| {
                Error::invalid_config(setting, "the URL names no master", expected)
            })?;
            let master = decode(master, setting, "master name")?;
            if let Some(db) = segments.next() {
                config.db = db.parse().map_err(|_| {
                    Error::invalid_config(
                        setting,
                        "the path after the master name is not a database number",
                        expected,
                    )
                })?;
            }
            config.topology = Topology::Sentinel(SentinelConfig::new(nodes, master));
        }
        MultiHost::Cluster => {
            if segments.next().is_some() {
                return Err(Error::invalid_config(
                    setting,
                    "a cluster URL has a path (a database?)",
                    format!("{expected}: Redis Cluster has only database 0"),
                ));
            }
            config.topology = Topology::Cluster(ClusterConfig::new(nodes));
        }
    }
    if segments.next().is_some() {
        return Err(Error::invalid_config(
            setting,
            "the URL's path has more parts than expected",
            expected,
        ));
    }
    Ok(())
}

fn decode(value: &str, setting: &str, what: &str) -> Result<String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| {
            Error::invalid_config(
                setting,
                format!("the {what} is not valid UTF-8 once percent-decoded"),
                EXPECTED,
            )
        })
}
