//! Cache scenarios against raw redis-rs and raw moka.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redkit::cache::Cache;
use redkit::store::AnyStore;

use super::{progress, ratio_report};
use crate::env::Env;
use crate::measure::{self, Measurement, new_histogram};
use crate::report::Report;

/// A reference-counted text value, cached the way an application caches a
/// value it hands out often (the service's rendered task lists work the same
/// way; `Arc<T>` does with serde's `rc` feature): an L1 hit is a reference
/// count bump, as the moka baseline's `Bytes` clone is.
#[derive(Debug, Clone)]
struct SharedText(Arc<str>);

impl From<String> for SharedText {
    fn from(text: String) -> Self {
        SharedText(Arc::from(text))
    }
}

impl serde::Serialize for SharedText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SharedText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SharedText::from)
    }
}

async fn cache(env: &Env, namespace: &str, l1: bool) -> Cache<AnyStore> {
    let kit = env.redkit().await;
    Cache::builder(kit.store().clone(), namespace)
        .l1(l1)
        .l1_max_bytes(256 * 1024 * 1024)
        .build()
        .await
        .unwrap_or_else(|err| panic!("cache: {err}"))
}

/// Raw redis-rs GET of `env.keys` keys holding `env.value_size` bytes.
pub(super) async fn raw_get(env: &Env) -> Measurement {
    let connection = env.raw_client().await;
    let keys = Arc::new(env.key_names("bench:raw:"));
    env.fill_raw(&connection, &keys, &env.value()).await;
    measure::measure_with(
        env.load,
        per_task(env, (connection, keys)),
        |(mut connection, keys), i| async move {
            let key = &keys[i as usize % keys.len()];
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut connection)
                .await
                .unwrap_or_else(|err| panic!("GET: {err}"));
            std::hint::black_box(value);
            (connection, keys)
        },
    )
    .await
}

/// One clone of `state` per load task: each task owns its handles, so no
/// operation pays for shared reference counts (on either side of a
/// comparison).
pub(super) fn per_task<T: Clone>(env: &Env, state: T) -> Vec<T> {
    vec![state; env.load.tasks]
}

/// Raw moka get of `env.keys` keys holding `env.value_size` bytes.
async fn raw_moka(env: &Env) -> Measurement {
    let moka: moka::sync::Cache<String, Bytes> = moka::sync::Cache::new(1_000_000);
    let keys = Arc::new(env.key_names("bench:moka:"));
    for key in keys.iter() {
        moka.insert(key.clone(), Bytes::from(env.value()));
    }
    measure::measure_with(
        env.load,
        per_task(env, (moka, keys)),
        |(moka, keys), i| async move {
            std::hint::black_box(moka.get(&keys[i as usize % keys.len()]));
            (moka, keys)
        },
    )
    .await
}

/// A cache holding `env.keys` values of type `T` (in L1 too when `l1`).
async fn filled<T>(env: &Env, namespace: &str, l1: bool) -> (Cache<AnyStore>, Arc<Vec<String>>)
where
    T: serde::Serialize + Clone + Send + Sync + From<String> + 'static,
{
    let cache = cache(env, namespace, l1).await;
    let keys = env.key_names("k");
    let value = T::from(env.value());
    for chunk in keys.chunks(1000) {
        let entries: Vec<(&str, T)> = chunk.iter().map(|k| (k.as_str(), value.clone())).collect();
        cache
            .set_many(&entries, &cache.options().ttl(Duration::from_secs(3600)))
            .await
            .unwrap_or_else(|err| panic!("fill: {err}"));
    }
    (cache, Arc::new(keys))
}

/// The layers under the cache, to show where L2 time goes.
pub(super) async fn connection_get(env: &Env) -> Report {
    const NAME: &str = "connection_get";
    let kit = env.redkit().await;
    let connection = kit
        .connection()
        .cloned()
        .unwrap_or_else(|| panic!("no redis"));
    let keys = Arc::new(env.key_names("bench:raw:"));
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw redis-rs GET");
            raw_get(env)
        },
        || {
            progress(NAME, "RedisConnection::query GET");
            let (connection, keys) = (connection.clone(), keys.clone());
            measure::measure(env.load, move |_, i| {
                let (connection, keys) = (connection.clone(), keys.clone());
                async move {
                    let value: Option<Vec<u8>> = connection
                        .query(redis::cmd("GET").arg(&keys[i as usize % keys.len()]))
                        .await
                        .unwrap_or_else(|err| panic!("GET: {err}"));
                    assert!(value.is_some());
                }
            })
        },
    )
    .await;
    ratio_report(NAME, "raw redis-rs GET", paired, None)
}

pub(super) async fn store_get(env: &Env) -> Report {
    use redkit::store::Store;
    const NAME: &str = "store_get";
    let kit = env.redkit().await;
    let store = kit.store().clone();
    let keys = Arc::new(env.key_names("bench:raw:"));
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw redis-rs GET");
            raw_get(env)
        },
        || {
            progress(NAME, "AnyStore::get (fallback mode, Redis ready)");
            let (store, keys) = (store.clone(), keys.clone());
            measure::measure(env.load, move |_, i| {
                let (store, keys) = (store.clone(), keys.clone());
                async move {
                    let value = store.get(&keys[i as usize % keys.len()]).await;
                    assert!(matches!(value, Ok(Some(_))));
                }
            })
        },
    )
    .await;
    ratio_report(NAME, "raw redis-rs GET", paired, None)
}

pub(super) async fn get_l2_hit(env: &Env) -> Report {
    cache_get::<String>(env, "cache_get_l2_hit", false, Some(0.90)).await
}

pub(super) async fn get_l1_hit(env: &Env) -> Report {
    cache_get::<SharedText>(env, "cache_get_l1_hit", true, Some(0.85)).await
}

/// The L1 hit of a value that is not reference-counted: each hit copies it.
pub(super) async fn get_l1_hit_owned(env: &Env) -> Report {
    cache_get::<String>(env, "cache_get_l1_hit_owned", true, None).await
}

/// `cache.get::<T>` hits with L1 on (against raw moka) or off (against raw
/// GET). The moka baseline hands out a reference-counted `Bytes`;
/// [`SharedText`] does the same, `String` copies the value on every hit.
async fn cache_get<T>(env: &Env, name: &'static str, l1: bool, target: Option<f64>) -> Report
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + Send
        + Sync
        + From<String>
        + std::fmt::Debug
        + 'static,
{
    progress(name, "filling 10k keys");
    let (cache, keys) = filled::<T>(env, name, l1).await;
    let baseline = if l1 {
        "raw moka get"
    } else {
        "raw redis-rs GET"
    };
    let paired = measure::paired(
        env.rounds,
        || {
            progress(name, baseline);
            async move {
                if l1 {
                    raw_moka(env).await
                } else {
                    raw_get(env).await
                }
            }
        },
        || {
            progress(
                name,
                if l1 {
                    "cache.get, L1 hit"
                } else {
                    "cache.get, L1 off"
                },
            );
            measure::measure_with(
                env.load,
                per_task(env, (cache.clone(), keys.clone())),
                |(cache, keys), i| async move {
                    let value = cache.get::<T>(&keys[i as usize % keys.len()]).await;
                    assert!(matches!(value, Ok(Some(_))), "miss: {value:?}");
                    (cache, keys)
                },
            )
        },
    )
    .await;
    ratio_report(name, baseline, paired, target)
}

pub(super) async fn get_or_set_hit(env: &Env) -> Report {
    const NAME: &str = "cache_get_or_set_hit";
    progress(NAME, "filling 10k keys");
    let (cache, keys) = filled::<SharedText>(env, "bench_gos", true).await;
    let options = Arc::new(cache.options().ttl(Duration::from_secs(3600)));
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw moka get");
            raw_moka(env)
        },
        || {
            progress(NAME, "cache.get_or_set, L1 hit");
            measure::measure_with(
                env.load,
                per_task(env, (cache.clone(), keys.clone(), options.clone())),
                |(cache, keys, options), i| async move {
                    let value = cache
                        .get_or_set(&keys[i as usize % keys.len()], &options, || async {
                            Err::<SharedText, &str>("the loader must not run on a hit")
                        })
                        .await;
                    assert!(value.is_ok(), "{value:?}");
                    (cache, keys, options)
                },
            )
        },
    )
    .await;
    ratio_report(NAME, "raw moka get", paired, Some(0.85))
}

pub(super) async fn set(env: &Env) -> Report {
    const NAME: &str = "cache_set";
    let cache = cache(env, "bench_set", true).await;
    let keys = Arc::new(env.key_names("k"));
    let value = Arc::new(env.value());
    let options = Arc::new(cache.options().ttl(Duration::from_secs(3600)));
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw redis-rs SET PX");
            let (keys, value) = (keys.clone(), value.clone());
            async move {
                let connection = env.raw().await;
                measure::measure_with(
                    env.load,
                    per_task(env, (connection, keys, value)),
                    |(mut connection, keys, value), i| async move {
                        let _: () = redis::cmd("SET")
                            .arg(format!("bench:rawset:{}", keys[i as usize % keys.len()]))
                            .arg(value.as_str())
                            .arg("PX")
                            .arg(3_600_000)
                            .query_async(&mut connection)
                            .await
                            .unwrap_or_else(|err| panic!("SET: {err}"));
                        (connection, keys, value)
                    },
                )
                .await
            }
        },
        || {
            progress(
                NAME,
                "cache.set (SET, then the coalesced backplane PUBLISH)",
            );
            let state = (cache.clone(), keys.clone(), value.clone(), options.clone());
            measure::measure_with(
                env.load,
                per_task(env, state),
                |(cache, keys, value, options), i| async move {
                    cache
                        .set(&keys[i as usize % keys.len()], &*value, &options)
                        .await
                        .unwrap_or_else(|err| panic!("set: {err}"));
                    (cache, keys, value, options)
                },
            )
        },
    )
    .await;
    ratio_report(NAME, "raw redis-rs SET PX", paired, Some(0.85))
}

/// Which invalidation to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Invalidation {
    Tag,
    Prefix,
}

/// Fills N tagged keys, invalidates them while another connection PINGs in a
/// loop, and reports the time and the PING latencies seen meanwhile.
pub(super) async fn invalidate(env: &Env, kind: Invalidation) -> Vec<Report> {
    let name = match kind {
        Invalidation::Tag => "cache_invalidate_tag",
        Invalidation::Prefix => "cache_invalidate_prefix",
    };
    let mut reports = Vec::new();
    for count in [1_000usize, 10_000, 100_000] {
        let scenario = format!("{name}_{}k", count / 1000);
        let cache = cache(env, &format!("bench_inv{}", count / 1000), false).await;
        progress(&scenario, &format!("filling {count} tagged keys"));
        let value = env.value();
        let options = cache.options().ttl(Duration::from_secs(3600)).tag("bench");
        let keys: Vec<String> = (0..count).map(|i| format!("p:{i}")).collect();
        for chunk in keys.chunks(1000) {
            let entries: Vec<(&str, String)> =
                chunk.iter().map(|k| (k.as_str(), value.clone())).collect();
            cache
                .set_many(&entries, &options)
                .await
                .unwrap_or_else(|err| panic!("fill: {err}"));
        }
        progress(&scenario, "invalidating while PINGing");
        let active = Arc::new(AtomicBool::new(true));
        let pinger = {
            let active = active.clone();
            let mut connection = env.raw().await;
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                while active.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let _: String = redis::cmd("PING")
                        .query_async(&mut connection)
                        .await
                        .unwrap_or_else(|err| panic!("PING: {err}"));
                    let _ = histogram.record((started.elapsed().as_micros() as u64).max(1));
                }
                histogram
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        match kind {
            Invalidation::Tag => cache.invalidate_tag("bench").await.map(|()| 0),
            Invalidation::Prefix => cache.invalidate_prefix("p:").await,
        }
        .unwrap_or_else(|err| panic!("invalidate: {err}"));
        let elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_millis(20)).await;
        active.store(false, Ordering::Relaxed);
        let pings = pinger.await.unwrap_or_else(|err| panic!("pinger: {err}"));
        // Every entry is gone for readers, whichever way it was invalidated.
        let probe = cache
            .get::<String>("p:0")
            .await
            .unwrap_or_else(|err| panic!("get: {err}"));
        assert!(probe.is_none(), "p:0 survived the invalidation");
        let worst = pings.max() as f64;
        let mut details = serde_json::Map::new();
        details.insert("keys".to_owned(), count.into());
        details.insert(
            "duration_ms".to_owned(),
            (elapsed.as_secs_f64() * 1000.0).into(),
        );
        details.insert("worst_ping_us".to_owned(), worst.into());
        details.insert("pings".to_owned(), pings.len().into());
        reports.push(Report {
            scenario,
            ops_per_sec: count as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: pings.value_at_quantile(0.5) as f64,
            p99_us: pings.value_at_quantile(0.99) as f64,
            baseline: "concurrent PING latency (p50/p99 are PING's)".to_owned(),
            baseline_ops_per_sec: None,
            ratio: None,
            target: Some("worst PING < 10 ms".to_owned()),
            met: Some(worst < 10_000.0),
            details,
        });
        let _ = cache.clear().await;
    }
    reports
}
