//! The scenarios, by name.

mod cache;
mod http;
mod http_kit;
mod http_mixed;
mod limits;
mod memory;
mod queue;
mod service_memory;

use crate::env::Env;
use crate::report::Report;

/// Every scenario name, in the order they run.
pub(crate) const ALL: &[&str] = &[
    "connection_get",
    "store_get",
    "cache_get_l2_hit",
    "cache_get_l1_hit",
    "cache_get_l1_hit_owned",
    "cache_get_or_set_hit",
    "cache_set",
    "cache_invalidate_tag",
    "cache_invalidate_prefix",
    "ratelimit_check",
    "ratelimit_gcra_cost",
    "ratelimit_sliding_cost",
    "session_load",
    "queue_enqueue",
    "queue_roundtrip",
    "embedded_memory",
    "service_memory",
    // Last: they install the service's metrics recorder for the process.
    "http_tasks_cached",
    "http_tasks_cached_embedded",
    "http_tasks_mixed",
    "http_tasks_mixed_exact",
    "http_tcp_nodelay_off",
];

/// The scenarios `--topology cluster` runs: the same code on a cluster,
/// against the redis crate's cluster client.
pub(crate) const CLUSTER: &[&str] = &["cache_get_l2_hit", "ratelimit_check", "session_load"];

/// The target ratio of every scenario on a cluster.
const CLUSTER_TARGET: f64 = 0.85;

/// `report`, measured on a cluster: named so, against the cluster target.
pub(crate) fn on_cluster(mut report: Report) -> Report {
    report.scenario = format!("{} (cluster)", report.scenario);
    report.baseline = format!("{} (cluster client)", report.baseline);
    report.target = Some(format!("ratio >= {CLUSTER_TARGET:.2}"));
    report.met = report.ratio.map(|ratio| ratio >= CLUSTER_TARGET);
    report
}

/// Runs one scenario (some report several sizes).
pub(crate) async fn run(name: &str, env: &Env) -> Vec<Report> {
    match name {
        "connection_get" => vec![cache::connection_get(env).await],
        "store_get" => vec![cache::store_get(env).await],
        "cache_get_l2_hit" => vec![cache::get_l2_hit(env).await],
        "cache_get_l1_hit" => vec![cache::get_l1_hit(env).await],
        "cache_get_l1_hit_owned" => vec![cache::get_l1_hit_owned(env).await],
        "cache_get_or_set_hit" => vec![cache::get_or_set_hit(env).await],
        "cache_set" => vec![cache::set(env).await],
        "cache_invalidate_tag" => cache::invalidate(env, cache::Invalidation::Tag).await,
        "cache_invalidate_prefix" => cache::invalidate(env, cache::Invalidation::Prefix).await,
        "ratelimit_check" => vec![limits::ratelimit_check(env).await],
        "ratelimit_gcra_cost" => vec![limits::ratelimit_cost(env, "gcra").await],
        "ratelimit_sliding_cost" => vec![limits::ratelimit_cost(env, "sliding").await],
        "session_load" => vec![limits::session_load(env).await],
        "queue_enqueue" => vec![queue::enqueue(env).await],
        "queue_roundtrip" => vec![queue::roundtrip(env).await],
        "embedded_memory" => vec![memory::embedded_memory(env).await],
        "service_memory" => vec![service_memory::service_memory(env).await],
        "http_tasks_cached" => vec![http::tasks_cached(env, http::Backend::Redis).await],
        "http_tasks_cached_embedded" => {
            vec![http::tasks_cached(env, http::Backend::Embedded).await]
        }
        "http_tasks_mixed" => vec![http_mixed::tasks_mixed(env, false).await],
        "http_tasks_mixed_exact" => vec![http_mixed::tasks_mixed(env, true).await],
        "http_tcp_nodelay_off" => vec![http::tcp_nodelay_off(env).await],
        other => panic!("unknown scenario {other}"),
    }
}

/// A ratio report: scenario against baseline, with a target ratio.
pub(crate) fn ratio_report(
    scenario: &str,
    baseline: &str,
    paired: crate::measure::Paired,
    target: Option<f64>,
) -> Report {
    let (measured, base, ratio) = (paired.scenario, paired.baseline, paired.ratio);
    let mut details = serde_json::Map::new();
    details.insert("rounds".to_owned(), rounds_json(&paired));
    Report {
        scenario: scenario.to_owned(),
        ops_per_sec: measured.ops_per_sec,
        p50_us: measured.p50_us,
        p99_us: measured.p99_us,
        baseline: baseline.to_owned(),
        baseline_ops_per_sec: Some(base.ops_per_sec),
        ratio: Some(ratio),
        target: target.map(|t| format!("ratio >= {t:.2}")),
        met: target.map(|t| ratio >= t),
        details,
    }
}

/// Every round of `paired`, for a report's `details` (shown by `--json`).
pub(crate) fn rounds_json(paired: &crate::measure::Paired) -> serde_json::Value {
    paired
        .rounds
        .iter()
        .map(|round| {
            serde_json::json!({
                "baseline_ops_per_sec": round.baseline.ops_per_sec.round(),
                "baseline_p50_us": round.baseline.p50_us,
                "baseline_p99_us": round.baseline.p99_us,
                "ops_per_sec": round.scenario.ops_per_sec.round(),
                "p50_us": round.scenario.p50_us,
                "p99_us": round.scenario.p99_us,
                "ratio": (round.ratio * 1000.0).round() / 1000.0,
                "baseline_cpu_us_per_op": (round.baseline.cpu_us_per_op * 100.0).round() / 100.0,
                "cpu_us_per_op": (round.scenario.cpu_us_per_op * 100.0).round() / 100.0,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

/// Prints a progress line on stderr.
pub(crate) fn progress(scenario: &str, step: &str) {
    eprintln!("  {scenario}: {step}");
}
