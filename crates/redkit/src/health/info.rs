//! Parsing the essentials out of Redis' `INFO` reply.

use std::collections::HashMap;

use serde::Serialize;

/// The `INFO` fields an operator looks at first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RedisInfo {
    /// `redis_version`.
    pub version: Option<String>,
    /// `uptime_in_seconds`.
    pub uptime_seconds: Option<u64>,
    /// `connected_clients`.
    pub connected_clients: Option<u64>,
    /// `blocked_clients`.
    pub blocked_clients: Option<u64>,
    /// `used_memory`, bytes.
    pub used_memory: Option<u64>,
    /// `used_memory_peak`, bytes.
    pub used_memory_peak: Option<u64>,
    /// `used_memory_rss`, bytes.
    pub used_memory_rss: Option<u64>,
    /// `mem_fragmentation_ratio`.
    pub mem_fragmentation_ratio: Option<f64>,
    /// `maxmemory`, bytes (0 = no limit).
    pub maxmemory: Option<u64>,
    /// `maxmemory_policy`.
    pub maxmemory_policy: Option<String>,
    /// `keyspace_hits`.
    pub keyspace_hits: Option<u64>,
    /// `keyspace_misses`.
    pub keyspace_misses: Option<u64>,
    /// `evicted_keys`.
    pub evicted_keys: Option<u64>,
    /// `expired_keys`.
    pub expired_keys: Option<u64>,
    /// `instantaneous_ops_per_sec`.
    pub instantaneous_ops_per_sec: Option<u64>,
    /// `rejected_connections`.
    pub rejected_connections: Option<u64>,
    /// `rdb_last_bgsave_status` (`ok` / `err`).
    pub rdb_last_bgsave_status: Option<String>,
    /// `rdb_changes_since_last_save`.
    pub rdb_changes_since_last_save: Option<u64>,
    /// `aof_enabled`.
    pub aof_enabled: Option<bool>,
    /// `aof_last_write_status` (`ok` / `err`).
    pub aof_last_write_status: Option<String>,
    /// `role` (`master` / `slave`).
    pub role: Option<String>,
}

impl RedisInfo {
    /// Parses the text of an `INFO` reply; unknown and malformed lines are
    /// skipped, missing fields stay `None`.
    pub fn parse(text: &str) -> Self {
        let fields: HashMap<&str, &str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.trim_end_matches('\r').split_once(':'))
            .collect();
        let text = |name: &str| fields.get(name).map(|value| (*value).to_owned());
        let number = |name: &str| fields.get(name).and_then(|value| value.parse().ok());
        RedisInfo {
            version: text("redis_version"),
            uptime_seconds: number("uptime_in_seconds"),
            connected_clients: number("connected_clients"),
            blocked_clients: number("blocked_clients"),
            used_memory: number("used_memory"),
            used_memory_peak: number("used_memory_peak"),
            used_memory_rss: number("used_memory_rss"),
            mem_fragmentation_ratio: fields
                .get("mem_fragmentation_ratio")
                .and_then(|value| value.parse().ok()),
            maxmemory: number("maxmemory"),
            maxmemory_policy: text("maxmemory_policy"),
            keyspace_hits: number("keyspace_hits"),
            keyspace_misses: number("keyspace_misses"),
            evicted_keys: number("evicted_keys"),
            expired_keys: number("expired_keys"),
            instantaneous_ops_per_sec: number("instantaneous_ops_per_sec"),
            rejected_connections: number("rejected_connections"),
            rdb_last_bgsave_status: text("rdb_last_bgsave_status"),
            rdb_changes_since_last_save: number("rdb_changes_since_last_save"),
            aof_enabled: fields.get("aof_enabled").map(|value| *value == "1"),
            aof_last_write_status: text("aof_last_write_status"),
            role: text("role"),
        }
    }

    /// `keyspace_hits / (hits + misses)`, when any lookups happened.
    pub fn hit_rate(&self) -> Option<f64> {
        let hits = self.keyspace_hits? as f64;
        let total = hits + self.keyspace_misses? as f64;
        (total > 0.0).then(|| hits / total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_essentials_and_skips_noise() {
        let info = RedisInfo::parse(
            "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\r\n# Memory\r\n\
             used_memory:1000\r\nmem_fragmentation_ratio:1.25\r\nmaxmemory_policy:noeviction\r\n\
             garbage line\r\nkeyspace_hits:3\r\nkeyspace_misses:1\r\naof_enabled:0\r\nrole:master\r\n",
        );
        assert_eq!(info.version.as_deref(), Some("7.0.15"));
        assert_eq!(info.uptime_seconds, Some(42));
        assert_eq!(info.used_memory, Some(1000));
        assert_eq!(info.mem_fragmentation_ratio, Some(1.25));
        assert_eq!(info.maxmemory_policy.as_deref(), Some("noeviction"));
        assert_eq!(info.aof_enabled, Some(false));
        assert_eq!(info.role.as_deref(), Some("master"));
        assert_eq!(info.hit_rate(), Some(0.75));
        assert_eq!(info.connected_clients, None);
    }
}
