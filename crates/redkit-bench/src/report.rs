//! What a scenario reports, as a table row or JSON.

use serde::Serialize;

/// One scenario's result. `ratio` is `ops_per_sec / baseline_ops_per_sec`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: String,
    pub(crate) ops_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) baseline: String,
    pub(crate) baseline_ops_per_sec: Option<f64>,
    pub(crate) ratio: Option<f64>,
    /// The target, in words (`ratio >= 0.90`, `worst PING < 10 ms`).
    pub(crate) target: Option<String>,
    /// Whether the target was met (`None` when there is none).
    pub(crate) met: Option<bool>,
    /// Scenario-specific figures (durations, worst PING latency; for the
    /// HTTP scenarios, errors and every round).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub(crate) details: serde_json::Map<String, serde_json::Value>,
}

pub(crate) fn print_table(reports: &[Report]) {
    println!(
        "{:<34} {:>12} {:>9} {:>9} {:>12} {:>7}  {:<26} met",
        "scenario", "ops/s", "p50 µs", "p99 µs", "baseline/s", "ratio", "target"
    );
    for report in reports {
        println!(
            "{:<34} {:>12.0} {:>9.0} {:>9.0} {:>12} {:>7}  {:<26} {}",
            report.scenario,
            report.ops_per_sec,
            report.p50_us,
            report.p99_us,
            report
                .baseline_ops_per_sec
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "-".to_owned()),
            report
                .ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".to_owned()),
            report.target.as_deref().unwrap_or("-"),
            match report.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
        for (name, value) in &report.details {
            println!("    {name}: {value}");
        }
    }
}

/// Whether `report` is an invalidation scenario (its own table).
fn is_invalidation(report: &Report) -> bool {
    report.details.contains_key("keys")
}

/// Failed requests of an HTTP scenario, both sides (0 for the others).
fn errors(report: &Report) -> u64 {
    ["errors", "baseline_errors"]
        .iter()
        .filter_map(|name| report.details.get(*name)?.as_u64())
        .sum()
}

/// Markdown tables (ratio scenarios, then invalidation scenarios), as pasted
/// into docs/BENCHMARKS.md.
pub(crate) fn print_markdown(reports: &[Report]) {
    println!(
        "| scenario | ops/s | p50 µs | p99 µs | baseline | baseline ops/s | ratio | target | met |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---|---|");
    for report in reports.iter().filter(|r| !is_invalidation(r)) {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            report.scenario,
            report.ops_per_sec,
            report.p50_us,
            report.p99_us,
            report.baseline,
            report
                .baseline_ops_per_sec
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "–".to_owned()),
            report
                .ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "–".to_owned()),
            report.target.as_deref().unwrap_or("–"),
            yes_no(report.met),
        );
    }
    for report in reports.iter().filter(|r| errors(r) > 0) {
        println!();
        println!(
            "**{}: {} failed requests** (details in `--json`).",
            report.scenario,
            errors(report)
        );
    }
    println!();
    println!(
        "| scenario | keys | duration ms | worst PING µs | PING p50 / p99 µs | target | met |"
    );
    println!("|---|---:|---:|---:|---|---|---|");
    for report in reports.iter().filter(|r| is_invalidation(r)) {
        let detail = |name: &str| report.details.get(name).cloned().unwrap_or_default();
        println!(
            "| {} | {} | {:.2} | {} | {:.0} / {:.0} | {} | {} |",
            report.scenario,
            detail("keys"),
            detail("duration_ms").as_f64().unwrap_or_default(),
            detail("worst_ping_us"),
            report.p50_us,
            report.p99_us,
            report.target.as_deref().unwrap_or("–"),
            yes_no(report.met),
        );
    }
}

fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "–",
    }
}
