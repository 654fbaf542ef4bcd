//! Closed-loop load: N tasks each running one operation after another for a
//! fixed time, recording every latency.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Throughput and latency of one measured run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measurement {
    pub(crate) ops_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// CPU time this process and the harness' Redis spent per operation
    /// while measuring, in µs (see [`cpu_micros`]): steadier than
    /// throughput on a shared machine, since time the machine gives to
    /// others is not counted.
    pub(crate) cpu_us_per_op: f64,
}

/// How load is applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) tasks: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// Runs `op(task, iteration)` from `load.tasks` tasks for the warm-up, then
/// measures for `load.duration`.
pub(crate) async fn measure<F, Fut>(load: Load, op: F) -> Measurement
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    measure_with(load, (0..load.tasks).collect(), move |task, iteration| {
        let run = op(task, iteration);
        async move {
            run.await;
            task
        }
    })
    .await
}

/// Like [`measure`], with one task per element of `states` (`load.tasks` is
/// not used): each task owns its state (a connection, say), passes it to
/// `op` by value and gets it back, so no task shares or locks it.
pub(crate) async fn measure_with<St, F, Fut>(load: Load, states: Vec<St>, op: F) -> Measurement
where
    St: Send + 'static,
    F: Fn(St, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = St> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + load.warmup;
    let stop = measure_from + load.duration;
    // On a blocking thread: load tasks that never yield (an L1 hit) would
    // starve a sampling task on the runtime.
    let cpu = tokio::task::spawn_blocking(move || {
        std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
        let before = cpu_micros();
        std::thread::sleep(stop.saturating_duration_since(Instant::now()));
        cpu_micros().saturating_sub(before)
    });
    let handles: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(task, state)| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut state = state;
                let mut histogram = new_histogram();
                let mut count = 0u64;
                let mut iteration = task as u64 * 7919;
                tokio::time::sleep_until(start.into()).await;
                loop {
                    let began = Instant::now();
                    if began >= stop {
                        break;
                    }
                    state = op(state, iteration).await;
                    iteration += 1;
                    if began >= measure_from {
                        let micros = began.elapsed().as_nanos() as u64 / 1000;
                        let _ = histogram.record(micros.max(1));
                        count += 1;
                    }
                }
                (histogram, count)
            })
        })
        .collect();
    let mut total = new_histogram();
    let mut count = 0u64;
    for handle in handles {
        if let Ok((histogram, n)) = handle.await {
            let _ = total.add(&histogram);
            count += n;
        }
    }
    let cpu = cpu.await.unwrap_or_default();
    Measurement {
        ops_per_sec: count as f64 / load.duration.as_secs_f64(),
        p50_us: total.value_at_quantile(0.50) as f64,
        p99_us: total.value_at_quantile(0.99) as f64,
        cpu_us_per_op: cpu as f64 / count.max(1) as f64,
    }
}

/// The process id of the Redis the harness started, if it did: its CPU
/// time counts in [`cpu_micros`] (a `--redis` server's cannot be read).
pub(crate) static REDIS_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// CPU time (user + system) used so far by this process and the harness'
/// Redis, in µs, at the 10 ms resolution of `/proc/<pid>/stat`.
fn cpu_micros() -> u64 {
    let redis = REDIS_PID.get().map_or(0, |pid| cpu_ticks(&pid.to_string()));
    (cpu_ticks("self") + redis) * 10_000
}

/// `utime + stime` of `pid` in clock ticks (`USER_HZ`, 100 per second on
/// Linux); 0 when it cannot be read.
fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|err| panic!("histogram: {err}"))
}

/// Baseline and scenario runs of one comparison.
#[derive(Debug, Clone)]
pub(crate) struct Paired {
    pub(crate) baseline: Measurement,
    pub(crate) scenario: Measurement,
    /// Median of the per-round ratios: each round measures the baseline and
    /// then the scenario back to back, so a round's ratio compares runs that
    /// saw the same machine conditions.
    pub(crate) ratio: f64,
    /// Every round, in order.
    pub(crate) rounds: Vec<Round>,
}

/// One round: the baseline run, then the scenario run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round {
    pub(crate) baseline: Measurement,
    pub(crate) scenario: Measurement,
    pub(crate) ratio: f64,
}

/// Runs baseline and scenario `rounds` times, alternating which goes first;
/// reports the median run of each side and the median of the per-round
/// ratios.
pub(crate) async fn paired<B, BF, S, SF>(rounds: usize, baseline: B, scenario: S) -> Paired
where
    B: Fn() -> BF,
    BF: Future<Output = Measurement>,
    S: Fn() -> SF,
    SF: Future<Output = Measurement>,
{
    let mut baselines = Vec::new();
    let mut scenarios = Vec::new();
    let mut ratios = Vec::new();
    let mut all = Vec::new();
    for round in 0..rounds.max(1) {
        // Every other round runs the scenario first, so a side that runs
        // second is never always the one to follow the other's load.
        let (b, s) = if round % 2 == 0 {
            let b = baseline().await;
            (b, scenario().await)
        } else {
            let s = scenario().await;
            (baseline().await, s)
        };
        let ratio = s.ops_per_sec / b.ops_per_sec.max(f64::MIN_POSITIVE);
        ratios.push(ratio);
        baselines.push(b);
        scenarios.push(s);
        all.push(Round {
            baseline: b,
            scenario: s,
            ratio,
        });
    }
    Paired {
        baseline: median_run(baselines),
        scenario: median_run(scenarios),
        ratio: median(ratios),
        rounds: all,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_run(mut runs: Vec<Measurement>) -> Measurement {
    runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    runs[runs.len() / 2]
}

/// Resident memory of process `pid` (`self` for this one), in bytes
/// (`VmRSS`); 0 when it cannot be read.
pub(crate) fn resident_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}
