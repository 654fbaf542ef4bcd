//! What only a Redis Cluster can show: keys spread over every master, slots
//! that scripts must respect, nodes without the script, and a master lost.
//! (The store, cache, session and rate-limit suites run on the shared
//! cluster in their own files.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redkit::cache::Cache;
use redkit::connection::{RedisConnection, key_slot};
use redkit::store::{RedisStore, Script, ScriptArg, ScriptContext, ScriptValue, Store};
use redkit_testkit::RedisCluster;

use crate::support::{cluster_connection, fast_redis_config, unique_prefix};

/// Keys of `prefix` on each running master of `cluster`, counted by the
/// masters themselves (not through redkit).
fn keys_per_master(cluster: &RedisCluster, prefix: &str) -> Vec<usize> {
    cluster
        .masters()
        .into_iter()
        .map(|index| {
            let node = &cluster.nodes()[index];
            node.cli(&["--scan", "--pattern", &format!("{prefix}*")])
                .lines()
                .filter(|line| !line.trim().is_empty())
                .count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_invalidation_and_clear_reach_every_master() {
    let cluster = RedisCluster::shared();
    let prefix = unique_prefix();
    let store = RedisStore::new(cluster_connection(&prefix).await);
    let cache = Cache::builder(store, "inv").build().await.unwrap();
    let options = cache.options();
    let keys: Vec<String> = (0..30).map(|i| format!("user:7:item:{i}")).collect();
    for key in &keys {
        cache.set(key, &key.len(), &options).await.unwrap();
    }
    cache.set("other:1", &1u8, &options).await.unwrap();
    let spread = keys_per_master(cluster, &format!("{prefix}inv:v:user:7:"));
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert!(
        spread.iter().all(|&count| count > 0),
        "the keys should be on every master: {spread:?}"
    );

    assert_eq!(cache.invalidate_prefix("user:7:").await.unwrap(), 30);
    assert_eq!(
        keys_per_master(cluster, &format!("{prefix}inv:v:user:7:")),
        [0, 0, 0]
    );
    for key in &keys {
        assert_eq!(cache.get::<usize>(key).await.unwrap(), None);
    }
    assert_eq!(cache.get::<u8>("other:1").await.unwrap(), Some(1));

    for key in &keys {
        cache.set(key, &1u8, &options).await.unwrap();
    }
    assert!(cache.clear().await.unwrap() >= 31);
    assert_eq!(
        keys_per_master(cluster, &format!("{prefix}inv:")),
        [0, 0, 0]
    );
}

fn two_key_script() -> Script {
    fn native(ctx: &mut dyn ScriptContext, _: &[ScriptArg]) -> redkit::Result<ScriptValue> {
        Ok(ScriptValue::Int(ctx.incr_by(0, 1)? + ctx.incr_by(1, 1)?))
    }
    Script::new(
        "cluster_two_keys",
        "return redis.call('INCRBY', KEYS[1], 1) + redis.call('INCRBY', KEYS[2], 1)",
        native,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_need_one_slot_and_load_where_their_keys_live() {
    let cluster = RedisCluster::shared();
    let store = RedisStore::new(cluster_connection(&unique_prefix()).await);
    let script = two_key_script();
    assert_ne!(key_slot(b"a"), key_slot(b"b"));
    let error = store
        .run_script(&script, &["a", "b"], &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cluster_two_keys") && error.contains("hash tag"),
        "{error}"
    );
    assert_eq!(store.get("a").await.unwrap(), None, "nothing ran");

    // Keys sharing a tag run, on whichever master holds the tag's slot.
    for tag in ["{x}", "{y}", "{z}", "{w}"] {
        let keys = [format!("{tag}:1"), format!("{tag}:2")];
        let reply = store
            .run_script(&script, &[&keys[0], &keys[1]], &[])
            .await
            .unwrap();
        assert_eq!(reply, ScriptValue::Int(2));
    }
    // Every node forgets every script: each master gets it back on first use.
    for node in cluster.nodes() {
        assert_eq!(node.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    for tag in ["{x}", "{y}", "{z}", "{w}"] {
        let keys = [format!("{tag}:1"), format!("{tag}:2")];
        let reply = store
            .run_script(&script, &[&keys[0], &keys[1]], &[])
            .await
            .unwrap();
        assert_eq!(reply, ScriptValue::Int(4));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_operations_span_every_master_in_order() {
    let cluster = RedisCluster::shared();
    let prefix = unique_prefix();
    let store = RedisStore::new(cluster_connection(&prefix).await);
    let keys: Vec<String> = (0..200).map(|i| format!("bulk:{i}")).collect();
    let slots: HashSet<u16> = keys
        .iter()
        .map(|key| key_slot(format!("{prefix}{key}").as_bytes()))
        .collect();
    assert!(slots.len() > 150, "the keys should span many slots");
    let values: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    let entries: Vec<redkit::store::SetEntry<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(key, value)| redkit::store::SetEntry {
            key,
            value: value.as_bytes(),
            ttl: Some(Duration::from_secs(60)),
        })
        .collect();
    store.set_many(&entries).await.unwrap();
    assert!(
        keys_per_master(cluster, &format!("{prefix}bulk:"))
            .iter()
            .all(|&count| count > 0)
    );
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = store.get_many(&refs).await.unwrap();
    for (value, got) in values.iter().zip(&got) {
        assert_eq!(got.as_deref(), Some(value.as_bytes()));
    }
    assert_eq!(store.delete(&refs).await.unwrap(), 200);
    assert_eq!(
        keys_per_master(cluster, &format!("{prefix}bulk:")),
        [0, 0, 0]
    );
}

/// Writes and reads `key` until one round succeeds, for at most `within`.
async fn recovers(store: &RedisStore, key: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let value = format!("{}", started.elapsed().as_millis());
        if store.set(key, value.as_bytes(), None).await.is_ok()
            && store.get(key).await.ok().flatten().as_deref() == Some(value.as_bytes())
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_succeed_again_after_a_replica_takes_over_a_killed_master() {
    // Its own cluster: killing a node of the shared one would disturb the
    // other tests.
    let mut cluster = RedisCluster::start();
    let connection = RedisConnection::connect(fast_redis_config(&cluster.url())).unwrap();
    connection
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let store = RedisStore::new(connection);
    let keys: Vec<String> = (0..30).map(|i| format!("failover:{i}")).collect();
    for key in &keys {
        store.set(key, b"before", None).await.unwrap();
    }
    let victim = cluster.master_of(&keys[0]);
    // Only a replica that caught up takes over with the data.
    cluster.wait_ready();

    // Commands stream on every key while the master dies, until a whole
    // round succeeds after the failover.
    let recovered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streaming = {
        let (store, keys, recovered) = (store.clone(), keys.clone(), recovered.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let mut round_ok = true;
                for key in &keys {
                    if store.get(key).await.is_err() {
                        failures += 1;
                        round_ok = false;
                    }
                }
                if round_ok && recovered.load(std::sync::atomic::Ordering::Acquire) {
                    return (failures, true);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (failures, false)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.node_mut(victim).kill();

    let took = recovers(&store, &keys[0], Duration::from_secs(30)).await;
    let took = took.expect("the key's slot served again within 30 s");
    recovered.store(true, std::sync::atomic::Ordering::Release);
    assert_ne!(cluster.master_of(&keys[0]), victim);
    let (failures, clean_round) = streaming.await.unwrap();
    assert!(clean_round, "reads kept failing after the failover");
    // Every key — on the promoted replica and on the other masters — reads
    // back what was written before the failover.
    for key in &keys[1..] {
        let value = store.get(key).await.unwrap();
        assert_eq!(value.as_deref(), Some(b"before".as_slice()), "{key}");
    }
    eprintln!("failover: {failures} failed reads; writes back after {took:?}");
}
