//! `redis://` and `rediss://` URL parsing.
//!
//! Errors never echo the URL: it may hold a password.

use super::{RedisConfig, RedisConfigBuilder, Secret};
use crate::error::{Error, Result};

const EXPECTED: &str = "redis://[[username]:password@]host[:port][/db] or rediss://… for TLS";

impl RedisConfig {
    /// Parses `redis://[[user]:password@]host[:port][/db]` or `rediss://…`
    /// (TLS) into a configuration with default timeouts.
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
    let parsed = url::Url::parse(url.trim()).map_err(|err| {
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
