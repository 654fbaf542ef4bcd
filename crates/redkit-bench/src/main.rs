//! redkit's benchmark harness.
//!
//! Each scenario is measured against a raw baseline in the same run, with the
//! same concurrency (50 tasks), payload (100 B) and key count (10k), and
//! reports ops/s, p50, p99 and the ratio. Baseline and scenario alternate for
//! `--rounds` rounds; the median run of each side and the median of the
//! per-round ratios are reported, so that noise on this 2-core machine hits
//! both sides alike. Not a test: run it with
//!
//! ```sh
//! cargo run --release -p redkit-bench -- [--redis redis://127.0.0.1:6379] [--scenario NAME] [--json]
//! ```
//!
//! Without `--redis` it starts its own redis-server on a free port.
//!
//! `--topology cluster` measures `cache_get_l2_hit`, `ratelimit_check` and
//! `session_load` on a Redis Cluster (without `--redis`, one the harness
//! starts: three masters on free ports) against the `redis` crate's own
//! async cluster client, each with a target ratio of 0.85.
//!
//! `http_tasks_cached` runs the reference service (`redkit-server`) in
//! process and drives `GET /tasks` over `--connections` (100) keep-alive
//! HTTP/1.1 connections against a trivial axum route driven the same way;
//! see `scenarios/http.rs` for what makes the comparison fair.

mod env;
mod measure;
mod report;
mod scenarios;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// The allocator of the `redkit` binary, so that the HTTP scenarios, which
/// run the service in this process, measure it as shipped. Raw baselines
/// and redkit run under the same allocator in every scenario.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Benchmarks redkit against raw redis-rs and moka.
#[derive(Debug, Parser)]
#[command(name = "redkit-bench")]
struct Args {
    /// Redis to use; without it a redis-server (or a cluster) is started on free ports.
    #[arg(long)]
    redis: Option<String>,
    /// The deployment: `cluster` runs the cluster scenarios against the
    /// redis crate's cluster client (with `--redis`, a redis+cluster:// URL).
    #[arg(long, value_enum, default_value = "standalone")]
    topology: env::Topology,
    /// Run only this scenario (repeatable).
    #[arg(long = "scenario", value_parser = clap::builder::PossibleValuesParser::new(scenarios::ALL))]
    scenarios: Vec<String>,
    /// Print a JSON array instead of a table.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print Markdown tables (for docs/BENCHMARKS.md).
    #[arg(long)]
    markdown: bool,
    /// Concurrent tasks.
    #[arg(long, default_value_t = 50)]
    tasks: usize,
    /// Keep-alive connections of the HTTP scenarios (`http_tasks_cached`).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Baseline/scenario rounds (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.tasks == 0
        || args.connections == 0
        || args.keys == 0
        || args.seconds.is_nan()
        || args.seconds <= 0.0
    {
        eprintln!("error: --tasks, --connections, --keys and --seconds must be greater than zero");
        return ExitCode::from(2);
    }
    let cluster = args.topology == env::Topology::Cluster;
    if let Some(other) = args
        .scenarios
        .iter()
        .find(|name| cluster && !scenarios::CLUSTER.contains(&name.as_str()))
    {
        eprintln!(
            "error: scenario {other} has no cluster variant; with --topology cluster use {}",
            scenarios::CLUSTER.join(", ")
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let reports = runtime.block_on(async {
        let load = measure::Load {
            tasks: args.tasks,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs_f64(args.seconds),
        };
        let env = env::Env::new(
            args.redis.clone(),
            args.topology,
            load,
            args.keys,
            args.value_size,
            args.rounds,
            args.connections,
        );
        eprintln!(
            "redkit-bench: {} tasks, {} keys, {} B values, {} s × {} rounds, redis {}{}",
            args.tasks,
            args.keys,
            args.value_size,
            args.seconds,
            args.rounds,
            env.url,
            if env.owns_server() {
                " (started by the harness)"
            } else {
                ""
            }
        );
        let selected: Vec<&str> = if args.scenarios.is_empty() {
            if cluster {
                scenarios::CLUSTER.to_vec()
            } else {
                scenarios::ALL.to_vec()
            }
        } else {
            args.scenarios.iter().map(String::as_str).collect()
        };
        let mut reports = Vec::new();
        for (i, name) in selected.iter().enumerate() {
            eprintln!("[{}/{}] {name}", i + 1, selected.len());
            let measured = scenarios::run(name, &env).await;
            if cluster {
                reports.extend(measured.into_iter().map(scenarios::on_cluster));
            } else {
                reports.extend(measured);
            }
        }
        reports
    });
    if args.json {
        match serde_json::to_string_pretty(&reports) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else if args.markdown {
        report::print_markdown(&reports);
    } else {
        report::print_table(&reports);
    }
    ExitCode::SUCCESS
}
