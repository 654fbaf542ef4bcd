//! The health report and the rules that grade it.

use std::time::Duration;

use serde::Serialize;

use super::RedisInfo;
use crate::cache::CacheStats;
use crate::config::TopologyKind;
use crate::connection::{ConnectionState, RedisConnection};
use crate::queue::QueueCounts;
use crate::store::{Backend, EmbeddedStats, EmbeddedStore};

/// Overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything within thresholds.
    Healthy,
    /// Serving, but something needs attention (see `reasons`).
    Degraded,
    /// Not serving correctly.
    Unhealthy,
}

impl HealthStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// Limits that turn numbers into a [`HealthStatus`].
///
/// | rule | status |
/// |---|---|
/// | Redis unreachable (not `Ready`, or PING fails) in `redis` mode | unhealthy |
/// | Redis unreachable in `fallback` mode (the embedded store serves) | degraded |
/// | PING slower than `max_ping` (default 10 ms) | degraded |
/// | `mem_fragmentation_ratio` above `max_fragmentation` (default 1.5) while `used_memory` is at least `fragmentation_min_used_memory` (default 64 MiB; small heaps always look fragmented) | degraded |
/// | `used_memory` above `max_memory_usage` (default 90 %) of `maxmemory` | degraded |
/// | last RDB save or AOF write failed | degraded |
/// | embedded store above `max_memory_usage` of its budget | degraded |
/// | a cache's hit rate below `min_cache_hit_rate` (default 50 %) after `cache_min_reads` reads (default 100) | degraded |
/// | a cache's error rate above `max_cache_error_rate` (default 1 %) after `cache_min_reads` operations | degraded |
/// | a queue's due jobs above `max_queue_waiting` (default 10 000) | degraded |
/// | a queue's oldest due job waiting longer than `max_queue_wait` (default 5 min) | degraded |
/// | a queue's dead jobs above `max_dead_jobs` (default 100) | degraded |
/// | a queue's counts cannot be read | degraded |
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// Slowest acceptable PING. Default: 10 ms.
    pub max_ping: Duration,
    /// Highest acceptable fragmentation ratio. Default: 1.5.
    pub max_fragmentation: f64,
    /// Fragmentation is only judged above this much used memory. Default: 64 MiB.
    pub fragmentation_min_used_memory: u64,
    /// Highest acceptable share of the memory limit in use. Default: 0.9.
    pub max_memory_usage: f64,
    /// Lowest acceptable cache hit rate (both tiers). Default: 0.5.
    pub min_cache_hit_rate: f64,
    /// Highest acceptable cache error rate. Default: 0.01.
    pub max_cache_error_rate: f64,
    /// Reads a cache needs before its rates are judged. Default: 100.
    pub cache_min_reads: u64,
    /// Most due jobs a queue may hold. Default: 10 000.
    pub max_queue_waiting: u64,
    /// Longest a queue's oldest due job may wait. Default: 5 min.
    pub max_queue_wait: Duration,
    /// Most dead jobs a queue may hold. Default: 100.
    pub max_dead_jobs: u64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            max_ping: Duration::from_millis(10),
            max_fragmentation: 1.5,
            fragmentation_min_used_memory: 64 * 1024 * 1024,
            max_memory_usage: 0.9,
            min_cache_hit_rate: 0.5,
            max_cache_error_rate: 0.01,
            cache_min_reads: 100,
            max_queue_waiting: 10_000,
            max_queue_wait: Duration::from_secs(300),
            max_dead_jobs: 100,
        }
    }
}

/// What was learned from Redis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisHealth {
    /// `host:port/db`, `sentinel:<master>/db` or `cluster:<seed>` (never
    /// credentials).
    pub address: String,
    /// `standalone`, `sentinel` or `cluster`.
    pub topology: TopologyKind,
    /// The master in use now (`host:port`; Standalone, Sentinel).
    pub master: Option<String>,
    /// On Sentinel: the sentinels and whether each answered `PING`.
    pub sentinels: Vec<NodeHealth>,
    /// On Cluster: `cluster_state` from `CLUSTER INFO` (`ok` or `fail`).
    pub cluster_state: Option<String>,
    /// On Cluster: every master, with its ping, memory and keys (`dbsize`
    /// is their sum).
    pub nodes: Vec<NodeHealth>,
    /// Connection state.
    pub state: ConnectionState,
    /// PING round trip in milliseconds, when it answered.
    pub ping_ms: Option<f64>,
    /// Parsed `INFO`, when it answered.
    pub info: Option<RedisInfo>,
    /// `DBSIZE`, when it answered.
    pub dbsize: Option<u64>,
    /// Why Redis could not be checked, when it could not.
    pub error: Option<String>,
}

/// One node of a Sentinel or Cluster deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeHealth {
    /// `host:port`.
    pub address: String,
    /// PING round trip in milliseconds, when it answered.
    pub ping_ms: Option<f64>,
    /// `used_memory` in bytes (Cluster masters).
    pub used_memory: Option<u64>,
    /// `DBSIZE` (Cluster masters).
    pub keys: Option<u64>,
    /// Why it could not be checked.
    pub error: Option<String>,
}

/// The whole health picture; serializes to the JSON of `/health/redis`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// Overall verdict.
    pub status: HealthStatus,
    /// The configured mode: `redis`, `embedded` or `fallback`.
    pub backend: Backend,
    /// Who serves right now: `redis` or `embedded`.
    pub serving: Backend,
    /// Redis details, when Redis is configured.
    pub redis: Option<RedisHealth>,
    /// The embedded store's size and activity.
    pub embedded: EmbeddedStats,
    /// The caches built through the handle.
    pub caches: Vec<CacheHealth>,
    /// The job queues opened through the handle.
    pub queues: Vec<QueueHealth>,
    /// Why the status is not `healthy`, in words.
    pub reasons: Vec<String>,
}

/// One cache's activity and rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheHealth {
    /// The cache's namespace.
    pub name: String,
    /// Hits (either tier) over reads.
    pub hit_rate: Option<f64>,
    /// L1 hits over reads.
    pub l1_hit_rate: Option<f64>,
    /// L2 hits over reads that reached L2.
    pub l2_hit_rate: Option<f64>,
    /// Failed L2 operations and loader calls over operations.
    pub error_rate: Option<f64>,
    /// The raw counters.
    pub stats: CacheStats,
}

/// One job queue's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueHealth {
    /// The queue's name.
    pub name: String,
    /// Its counts, when they could be read.
    pub counts: Option<QueueCounts>,
}

/// Adds queue `name` to `report`, graded by `thresholds`.
pub(crate) fn grade_queue(
    report: &mut HealthReport,
    name: &str,
    counts: crate::Result<QueueCounts>,
    thresholds: &HealthThresholds,
) {
    let mut flag = |reason: String| {
        report.status = report.status.max(HealthStatus::Degraded);
        report.reasons.push(reason);
    };
    let counts = match counts {
        Ok(counts) => Some(counts),
        Err(error) => {
            flag(format!("queue {name}: counts unavailable ({error})"));
            None
        }
    };
    if let Some(counts) = &counts {
        if counts.waiting > thresholds.max_queue_waiting {
            flag(format!(
                "queue {name} has {} due jobs, above {}",
                counts.waiting, thresholds.max_queue_waiting
            ));
        }
        if let Some(age) = counts.oldest_waiting_ms
            && u128::from(age) > thresholds.max_queue_wait.as_millis()
        {
            flag(format!(
                "queue {name}'s oldest due job has waited {} s, above {} s",
                age / 1000,
                thresholds.max_queue_wait.as_secs()
            ));
        }
        if counts.dead > thresholds.max_dead_jobs {
            flag(format!(
                "queue {name} has {} dead jobs, above {}",
                counts.dead, thresholds.max_dead_jobs
            ));
        }
    }
    report.queues.push(QueueHealth {
        name: name.to_owned(),
        counts,
    });
}

/// Checks everything and grades it.
pub(crate) async fn check(
    mode: Backend,
    connection: Option<&RedisConnection>,
    embedded: &EmbeddedStore,
    caches: &[(String, CacheStats)],
    thresholds: &HealthThresholds,
) -> HealthReport {
    let mut status = HealthStatus::Healthy;
    let mut reasons = Vec::new();
    let mut flag = |level: HealthStatus, reason: String| {
        status = status.max(level);
        reasons.push(reason);
    };

    let redis = match connection {
        Some(connection) => Some(check_redis(connection).await),
        None => None,
    };
    let mut serving = Backend::Embedded;
    if let Some(redis) = &redis {
        let reachable = redis.ping_ms.is_some();
        if reachable {
            serving = Backend::Redis;
        } else if redis.state == ConnectionState::Rejected {
            // Not an outage: retries cannot fix it, other instances may be
            // serving the shared data meanwhile, so this one must leave
            // the load balancer's rotation and be looked at.
            let serving_note = if mode == Backend::Fallback {
                "; serving from this instance's embedded store, apart from other instances"
            } else {
                ""
            };
            flag(
                HealthStatus::Unhealthy,
                format!(
                    "redis rejected this client: {}{serving_note}",
                    redis.error.as_deref().unwrap_or("no reason given")
                ),
            );
        } else {
            let level = if mode == Backend::Fallback {
                HealthStatus::Degraded
            } else {
                HealthStatus::Unhealthy
            };
            let serving_note = if mode == Backend::Fallback {
                "; serving from the embedded store"
            } else {
                ""
            };
            let why = redis
                .error
                .as_deref()
                .map(|error| format!(": {error}"))
                .unwrap_or_default();
            flag(
                level,
                format!(
                    "redis is unreachable (connection {}{why}){serving_note}",
                    redis.state
                ),
            );
        }
        if let Some(ping) = redis.ping_ms
            && ping > thresholds.max_ping.as_secs_f64() * 1000.0
        {
            flag(
                HealthStatus::Degraded,
                format!(
                    "redis ping {ping:.1} ms is above {} ms",
                    thresholds.max_ping.as_millis()
                ),
            );
        }
        if let Some(info) = &redis.info {
            grade_info(info, thresholds, &mut flag);
        }
    }

    let stats = embedded.stats();
    if serving == Backend::Embedded
        && stats.used_bytes as f64 > stats.max_bytes as f64 * thresholds.max_memory_usage
    {
        flag(
            HealthStatus::Degraded,
            format!(
                "embedded store uses {} of its {} byte budget",
                stats.used_bytes, stats.max_bytes
            ),
        );
    }

    let caches: Vec<CacheHealth> = caches
        .iter()
        .map(|(name, stats)| CacheHealth {
            name: name.clone(),
            hit_rate: stats.hit_rate(),
            l1_hit_rate: stats.l1_hit_rate(),
            l2_hit_rate: stats.l2_hit_rate(),
            error_rate: stats.error_rate(),
            stats: *stats,
        })
        .collect();
    for cache in &caches {
        let reads = cache.stats.l1_hits + cache.stats.l2_hits + cache.stats.misses;
        if reads < thresholds.cache_min_reads {
            continue;
        }
        if let Some(rate) = cache.hit_rate
            && rate < thresholds.min_cache_hit_rate
        {
            flag(
                HealthStatus::Degraded,
                format!(
                    "cache {} hit rate {:.0} % is below {:.0} %",
                    cache.name,
                    rate * 100.0,
                    thresholds.min_cache_hit_rate * 100.0
                ),
            );
        }
        if let Some(rate) = cache.error_rate
            && rate > thresholds.max_cache_error_rate
        {
            flag(
                HealthStatus::Degraded,
                format!(
                    "cache {} error rate {:.1} % is above {:.1} %",
                    cache.name,
                    rate * 100.0,
                    thresholds.max_cache_error_rate * 100.0
                ),
            );
        }
    }

    HealthReport {
        status,
        backend: mode,
        serving,
        redis,
        embedded: stats,
        caches,
        queues: Vec::new(),
        reasons,
    }
}

fn grade_info(
    info: &RedisInfo,
    thresholds: &HealthThresholds,
    flag: &mut impl FnMut(HealthStatus, String),
) {
    if let (Some(ratio), Some(used)) = (info.mem_fragmentation_ratio, info.used_memory)
        && ratio > thresholds.max_fragmentation
        && used >= thresholds.fragmentation_min_used_memory
    {
        flag(
            HealthStatus::Degraded,
            format!(
                "memory fragmentation ratio {ratio:.2} is above {}",
                thresholds.max_fragmentation
            ),
        );
    }
    if let (Some(used), Some(max)) = (info.used_memory, info.maxmemory)
        && max > 0
        && used as f64 > max as f64 * thresholds.max_memory_usage
    {
        flag(
            HealthStatus::Degraded,
            format!("redis uses {used} of its {max} byte maxmemory"),
        );
    }
    if info.rdb_last_bgsave_status.as_deref() == Some("err") {
        flag(
            HealthStatus::Degraded,
            "the last RDB save failed".to_owned(),
        );
    }
    if info.aof_last_write_status.as_deref() == Some("err") {
        flag(
            HealthStatus::Degraded,
            "the last AOF write failed".to_owned(),
        );
    }
}

async fn check_redis(connection: &RedisConnection) -> RedisHealth {
    let topology = connection.topology_kind();
    let mut health = RedisHealth {
        address: connection.config().address(),
        topology,
        master: connection.master(),
        sentinels: Vec::new(),
        cluster_state: None,
        nodes: Vec::new(),
        state: connection.state(),
        ping_ms: None,
        info: None,
        dbsize: None,
        error: None,
    };
    if topology == TopologyKind::Sentinel {
        health.sentinels = connection
            .ping_sentinels()
            .await
            .into_iter()
            .map(|(address, result)| node_health(address, result))
            .collect();
    }
    if let Some(reason) = connection.rejection() {
        health.error = Some(reason);
        return health;
    }
    match connection.ping().await {
        Ok(rtt) => health.ping_ms = Some(rtt.as_secs_f64() * 1000.0),
        Err(error) => {
            // Why the connection is down says more than "unavailable".
            health.error = Some(
                connection
                    .last_failure()
                    .unwrap_or_else(|| error.to_string()),
            );
            return health;
        }
    }
    if topology == TopologyKind::Cluster {
        check_cluster(connection, &mut health).await;
        return health;
    }
    // A replica answers PING: only a master can take the writes.
    match connection.role().await {
        Ok(role) if role == "master" => {}
        Ok(role) => {
            health.ping_ms = None;
            health.error = Some(format!(
                "{} is a {role}, not a master: writes fail",
                health.master.as_deref().unwrap_or("the node")
            ));
            return health;
        }
        Err(error) => health.error = Some(error.to_string()),
    }
    match connection.query::<String>(&redis::cmd("INFO")).await {
        Ok(text) => health.info = Some(RedisInfo::parse(&text)),
        Err(error) => health.error = Some(error.to_string()),
    }
    match connection.query::<u64>(&redis::cmd("DBSIZE")).await {
        Ok(size) => health.dbsize = Some(size),
        Err(error) => health.error = Some(error.to_string()),
    }
    health
}

/// `CLUSTER INFO`, then every master: PING, `INFO memory`, `DBSIZE`.
/// A cluster that is not `ok` (a master down and not replaced yet, slots
/// uncovered) fails writes to some keys: it counts as unreachable.
async fn check_cluster(connection: &RedisConnection, health: &mut RedisHealth) {
    match connection
        .query::<String>(redis::cmd("CLUSTER").arg("INFO"))
        .await
    {
        Ok(text) => {
            let state = text
                .lines()
                .find_map(|line| line.trim().strip_prefix("cluster_state:"))
                .map(str::to_owned);
            if state.as_deref() != Some("ok") {
                health.ping_ms = None;
                health.error = Some(format!(
                    "cluster_state is {}: writes to some keys fail",
                    state.as_deref().unwrap_or("unknown")
                ));
            }
            health.cluster_state = state;
        }
        Err(error) => {
            health.ping_ms = None;
            health.error = Some(error.to_string());
            return;
        }
    }
    let masters = match connection.masters().await {
        Ok(masters) => masters,
        Err(error) => {
            health.error = Some(error.to_string());
            return;
        }
    };
    let mut total = 0;
    for address in masters {
        let started = std::time::Instant::now();
        let ping = connection
            .query_on::<String>(&address, &redis::cmd("PING"))
            .await
            .map(|_| started.elapsed());
        let mut node = node_health(address.clone(), ping);
        if node.error.is_none() {
            if let Ok(text) = connection
                .query_on::<String>(&address, redis::cmd("INFO").arg("memory"))
                .await
            {
                node.used_memory = RedisInfo::parse(&text).used_memory;
            }
            match connection
                .query_on::<u64>(&address, &redis::cmd("DBSIZE"))
                .await
            {
                Ok(keys) => {
                    total += keys;
                    node.keys = Some(keys);
                }
                Err(error) => node.error = Some(error.to_string()),
            }
        }
        health.nodes.push(node);
    }
    if let Some(failing) = health.nodes.iter().find(|node| node.error.is_some()) {
        health.ping_ms = None;
        health.error = Some(format!(
            "cluster master {} does not answer: {}",
            failing.address,
            failing.error.as_deref().unwrap_or("")
        ));
    }
    health.dbsize = Some(total);
}

fn node_health(address: String, result: crate::Result<Duration>) -> NodeHealth {
    let (ping_ms, error) = match result {
        Ok(rtt) => (Some(rtt.as_secs_f64() * 1000.0), None),
        Err(error) => (None, Some(error.to_string())),
    };
    NodeHealth {
        address,
        ping_ms,
        used_memory: None,
        keys: None,
        error,
    }
}
