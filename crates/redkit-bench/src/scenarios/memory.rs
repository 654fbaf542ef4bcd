//! Memory: what one entry costs in the embedded store next to Redis.
//!
//! The same 100k keys (`mem:<n>`) with values of `--value-size` bytes go
//! into a fresh embedded store and into Redis. Both sides are measured the
//! same way: Redis' `used_memory` is what its allocator (jemalloc) has
//! handed out, and the embedded store's cost is the growth of what this
//! process' allocator (jemalloc too, the harness' global allocator) has
//! handed out (`stats.allocated`). The ratio is embedded ÷ Redis bytes per
//! entry (lower is better).
//!
//! Beside it: resident growth on both sides (`used_memory_rss` and this
//! process' RSS: what the machine pays, freed-but-kept pages included),
//! and the store's own budget accounting. Resident growth depends on the
//! heap's state — memory freed by earlier scenarios is reused by the fill —
//! which is why it is not the ratio.

use std::time::Instant;

use redkit::config::EmbeddedConfig;
use redkit::store::{EmbeddedStore, SetEntry, Store};

use super::progress;
use crate::env::Env;
use crate::report::Report;

const NAME: &str = "embedded_memory";
const ENTRIES: usize = 100_000;
const TARGET: f64 = 1.5;

/// Redis' `used_memory` and `used_memory_rss`.
async fn redis_memory(connection: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(connection)
        .await
        .unwrap_or_else(|err| panic!("INFO memory: {err}"));
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO memory has no {name}"))
    };
    (field("used_memory"), field("used_memory_rss"))
}

/// Bytes this process' allocator has handed out and not taken back.
fn allocated_bytes() -> u64 {
    tikv_jemalloc_ctl::epoch::advance()
        .and_then(|_| tikv_jemalloc_ctl::stats::allocated::read())
        .map(|bytes| bytes as u64)
        .unwrap_or_else(|err| panic!("jemalloc stats.allocated: {err}"))
}

pub(super) async fn embedded_memory(env: &Env) -> Report {
    let value = env.value().into_bytes();
    let keys: Vec<String> = (0..ENTRIES).map(|n| format!("mem:{n}")).collect();

    progress(NAME, "redis used_memory growth");
    let mut raw = env.raw().await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut raw)
        .await
        .unwrap_or_else(|err| panic!("FLUSHALL: {err}"));
    let redis_before = redis_memory(&mut raw).await;
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("SET").arg(key).arg(value.as_slice()).ignore();
        }
        let _: () = pipe
            .query_async(&mut raw)
            .await
            .unwrap_or_else(|err| panic!("SET pipeline: {err}"));
    }
    let redis_after = redis_memory(&mut raw).await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut raw)
        .await
        .unwrap_or_else(|err| panic!("FLUSHALL: {err}"));

    progress(NAME, "embedded store allocated growth");
    let store = EmbeddedStore::new(EmbeddedConfig::default().max_memory_bytes(1 << 30))
        .unwrap_or_else(|err| panic!("embedded store: {err}"));
    let resident_before = crate::measure::resident_bytes("self");
    let allocated_before = allocated_bytes();
    let mut batches = crate::measure::new_histogram();
    let started = Instant::now();
    for chunk in keys.chunks(1000) {
        let batch_started = Instant::now();
        let entries: Vec<SetEntry<'_>> = chunk
            .iter()
            .map(|key| SetEntry {
                key,
                value: &value,
                ttl: None,
            })
            .collect();
        store
            .set_many(&entries)
            .await
            .unwrap_or_else(|err| panic!("set_many: {err}"));
        let micros = u64::try_from(batch_started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = batches.record(micros.max(1));
    }
    let took = started.elapsed();
    let allocated_after = allocated_bytes();
    let resident_after = crate::measure::resident_bytes("self");
    let stats = store.stats();
    assert_eq!(stats.keys, ENTRIES, "the embedded store evicted entries");

    let per_entry = |before: u64, after: u64| after.saturating_sub(before) as f64 / ENTRIES as f64;
    let redis_per_entry = per_entry(redis_before.0, redis_after.0);
    let redis_resident_per_entry = per_entry(redis_before.1, redis_after.1);
    let embedded_per_entry = per_entry(allocated_before, allocated_after);
    let embedded_resident_per_entry = per_entry(resident_before, resident_after);
    let ratio = embedded_per_entry / redis_per_entry;
    let mut details = serde_json::Map::new();
    details.insert("entries".into(), ENTRIES.into());
    details.insert("value_bytes".into(), value.len().into());
    details.insert(
        "redis_bytes_per_entry".into(),
        redis_per_entry.round().into(),
    );
    details.insert(
        "embedded_allocated_bytes_per_entry".into(),
        embedded_per_entry.round().into(),
    );
    details.insert(
        "redis_resident_bytes_per_entry".into(),
        redis_resident_per_entry.round().into(),
    );
    details.insert(
        "embedded_resident_bytes_per_entry".into(),
        embedded_resident_per_entry.round().into(),
    );
    details.insert(
        "resident_ratio".into(),
        (embedded_resident_per_entry / redis_resident_per_entry).into(),
    );
    details.insert(
        "embedded_accounted_bytes_per_entry".into(),
        (stats.used_bytes as f64 / ENTRIES as f64).round().into(),
    );
    details.insert(
        "latency_is_of".into(),
        "one set_many of 1000 entries".into(),
    );
    Report {
        scenario: NAME.to_owned(),
        // Inserts per second into the embedded store, 1000 per set_many.
        ops_per_sec: ENTRIES as f64 / took.as_secs_f64(),
        p50_us: batches.value_at_quantile(0.5) as f64,
        p99_us: batches.value_at_quantile(0.99) as f64,
        baseline: "redis used_memory per entry (allocated bytes, both sides)".to_owned(),
        baseline_ops_per_sec: None,
        ratio: Some(ratio),
        target: Some(format!("bytes per entry ratio <= {TARGET:.2}")),
        met: Some(ratio <= TARGET),
        details,
    }
}
