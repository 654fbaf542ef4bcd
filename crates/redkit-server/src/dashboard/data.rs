//! GET /dashboard/data: current values and the sampled history as JSON.
//!
//! `?since=<unix ms>` limits the history to the samples taken after that
//! time, so a page that already has the older ones only fetches what is new.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use redkit::config::TopologyKind;
use redkit::connection::ConnectionState;
use redkit::health::{HealthStatus, NodeHealth, QueueHealth, RedisHealth};
use redkit::store::Backend;
use serde::Serialize;

use super::sampler::{self, Sample};
use crate::api_error::ApiError;
use crate::server::AppState;

/// The whole answer.
#[derive(Debug, Serialize)]
pub(crate) struct Data {
    /// The server's clock, Unix ms (the page's time axis ends here).
    now: u64,
    /// How often the sampler samples.
    interval_ms: u64,
    /// How often the page should poll.
    refresh_ms: u64,
    /// How far back the history reaches when full.
    window_ms: u64,
    /// The configured mode: `redis`, `embedded` or `fallback`.
    backend: Backend,
    /// The Redis connection state now; `null` without Redis.
    connection: Option<ConnectionState>,
    /// When the last sample was taken; `null` before the first.
    sampled_at: Option<u64>,
    /// The last sample's health verdict and its reasons.
    status: Option<HealthStatus>,
    reasons: Vec<String>,
    /// Who served at the last sample.
    serving: Option<Backend>,
    /// The last sample's PING round trip; `null` without an answer.
    ping_ms: Option<f64>,
    /// How Redis is deployed, at the last sample; `null` without Redis.
    topology: Option<TopologyView>,
    /// The `tasks` cache since start.
    cache: CacheView,
    /// The rate limiter since start.
    rate_limit: RateLimitView,
    /// Memory of whoever serves.
    memory: MemoryView,
    /// Server-Sent-Events clients connected to this instance.
    sse_clients: usize,
    /// Job queues at the last sample: waiting (due), running, delayed, dead.
    queues: Vec<QueueHealth>,
    /// Samples after `since`, oldest first.
    history: Vec<Sample>,
}

/// Standalone, Sentinel (master in use, sentinels answering) or Cluster
/// (state and every master).
#[derive(Debug, Serialize)]
struct TopologyView {
    kind: TopologyKind,
    master: Option<String>,
    sentinels_up: usize,
    sentinels: usize,
    cluster_state: Option<String>,
    nodes: Vec<NodeHealth>,
}

impl TopologyView {
    fn of(redis: &RedisHealth) -> Self {
        TopologyView {
            kind: redis.topology,
            master: redis.master.clone(),
            sentinels_up: redis
                .sentinels
                .iter()
                .filter(|sentinel| sentinel.ping_ms.is_some())
                .count(),
            sentinels: redis.sentinels.len(),
            cluster_state: redis.cluster_state.clone(),
            nodes: redis.nodes.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct CacheView {
    name: &'static str,
    l1_hits: u64,
    l2_hits: u64,
    misses: u64,
    hit_rate: Option<f64>,
    l1_hit_rate: Option<f64>,
    l2_hit_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
struct RateLimitView {
    allowed: u64,
    rejected: u64,
    rejected_locally: u64,
    degraded: u64,
}

#[derive(Debug, Serialize)]
struct MemoryView {
    /// `redis` (its `used_memory`) or `embedded` (the store's counted bytes).
    source: Backend,
    used_bytes: u64,
    /// Redis `maxmemory` or the embedded budget; `null` when unlimited.
    max_bytes: Option<u64>,
}

/// The `since` parameter, 0 when absent.
fn since(query: Option<&str>) -> Result<u64, ApiError> {
    let value = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("since="));
    match value {
        None => Ok(0),
        Some(value) => value
            .parse()
            .map_err(|_| ApiError::invalid_field("since", "must be a Unix time in milliseconds")),
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// GET /dashboard/data.
pub(crate) async fn data(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let since = since(query.as_deref())?;
    let dashboard = &state.dashboard;
    let embedded = state.kit.store().embedded_store().stats();
    let embedded_memory = MemoryView {
        source: Backend::Embedded,
        used_bytes: u64::try_from(embedded.used_bytes).unwrap_or(u64::MAX),
        max_bytes: u64::try_from(embedded.max_bytes).ok(),
    };
    let (history, sampled_at, status, reasons, serving, ping_ms, memory, topology) = {
        let shared = sampler::lock(&dashboard.shared);
        let history = shared.since(since);
        match shared.latest() {
            None => (
                history,
                None,
                None,
                Vec::new(),
                None,
                None,
                embedded_memory,
                None,
            ),
            Some((t, report)) => {
                let redis = report.redis.as_ref();
                let info = redis.and_then(|redis| redis.info.as_ref());
                // On Cluster there is no one INFO: the masters' sum.
                let cluster_memory = redis
                    .filter(|redis| !redis.nodes.is_empty())
                    .map(|redis| redis.nodes.iter().filter_map(|node| node.used_memory).sum());
                let memory = match info.and_then(|info| info.used_memory).or(cluster_memory) {
                    Some(used) if report.serving == Backend::Redis => MemoryView {
                        source: Backend::Redis,
                        used_bytes: used,
                        max_bytes: info.and_then(|info| info.maxmemory).filter(|max| *max > 0),
                    },
                    _ => embedded_memory,
                };
                (
                    history,
                    Some(*t),
                    Some(report.status),
                    report.reasons.clone(),
                    Some(report.serving),
                    redis.and_then(|redis| redis.ping_ms),
                    memory,
                    redis.map(TopologyView::of),
                )
            }
        }
    };
    let queues = sampler::lock(&dashboard.shared)
        .latest()
        .map(|(_, report)| report.queues.clone())
        .unwrap_or_default();
    let cache = state.tasks.stats();
    let limiter = state.limiter.stats();
    let interval = dashboard.interval;
    let window = interval.saturating_mul(u32::try_from(sampler::capacity(interval)).unwrap_or(1));
    let data = Data {
        now: sampler::unix_ms(),
        interval_ms: millis(interval),
        refresh_ms: millis(interval).clamp(250, 1000),
        window_ms: millis(window),
        backend: state.kit.backend(),
        connection: state.kit.connection().map(|connection| connection.state()),
        sampled_at,
        status,
        reasons,
        serving,
        ping_ms,
        topology,
        cache: CacheView {
            name: "tasks",
            l1_hits: cache.l1_hits,
            l2_hits: cache.l2_hits,
            misses: cache.misses,
            hit_rate: cache.hit_rate(),
            l1_hit_rate: cache.l1_hit_rate(),
            l2_hit_rate: cache.l2_hit_rate(),
        },
        rate_limit: RateLimitView {
            allowed: limiter.allowed,
            rejected: limiter.rejected,
            rejected_locally: limiter.rejected_locally,
            degraded: limiter.degraded,
        },
        memory,
        sse_clients: state.events.clients(),
        queues,
        history,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(data)))
}

#[cfg(test)]
mod tests {
    use super::since;

    #[test]
    fn since_defaults_to_zero_and_rejects_garbage() {
        assert_eq!(since(None).ok(), Some(0));
        assert_eq!(since(Some("")).ok(), Some(0));
        assert_eq!(since(Some("x=1&since=42")).ok(), Some(42));
        assert_eq!(
            since(Some("since=-1")).map_err(|error| error.status.as_u16()),
            Err(422)
        );
    }
}
