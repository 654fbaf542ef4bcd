//! Sentinel failover and a demoted node, on real processes: writes follow
//! the new master, an old master that comes back empty is never written
//! to, and health never says healthy while writes fail.
//!
//! One Sentinel topology is shared by the tests of this binary (it takes a
//! few seconds to settle); the tests that kill a node hold its lock.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redkit::Redkit;
use redkit::config::{RedisConfig, TopologyKind};
use redkit::connection::{ConnectionState, RedisConnection, redis};
use redkit::health::HealthStatus;
use redkit::store::Store;
use redkit_testkit::{RedisSentinel, RedisServer};

use crate::support::{eventually, fast_redis_config, wait_for_state};

/// The shared topology; a test that kills or restarts a node holds the lock.
fn sentinel() -> &'static tokio::sync::Mutex<RedisSentinel> {
    static TOPOLOGY: OnceLock<tokio::sync::Mutex<RedisSentinel>> = OnceLock::new();
    TOPOLOGY.get_or_init(|| tokio::sync::Mutex::new(RedisSentinel::start()))
}

fn sentinel_config(topology: &RedisSentinel, fallback: bool) -> RedisConfig {
    let mut config = fast_redis_config(&topology.url());
    config.fallback = fallback;
    config
}

fn address_of(server: &RedisServer) -> String {
    format!("127.0.0.1:{}", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_resolves_the_master_and_reports_the_topology() {
    let topology = sentinel().lock().await;
    let kit =
        redkit::test_util::ready(Redkit::builder().redis(sentinel_config(&topology, false))).await;
    let connection = kit.connection().expect("redis configured");
    assert_eq!(connection.topology_kind(), TopologyKind::Sentinel);
    let master = address_of(&topology.servers()[topology.master()]);
    assert_eq!(connection.master().as_deref(), Some(master.as_str()));
    let _: () = connection
        .query(redis::cmd("SET").arg("topo:resolve").arg("1"))
        .await
        .unwrap();

    let report = kit.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
    let redis = report.redis.expect("redis health");
    assert_eq!(redis.topology, TopologyKind::Sentinel);
    assert_eq!(redis.master.as_deref(), Some(master.as_str()));
    assert_eq!(redis.sentinels.len(), 3);
    assert!(redis.sentinels.iter().all(|node| node.ping_ms.is_some()));
    let json = serde_json::to_string(&redis).unwrap();
    assert!(json.contains("\"topology\":\"sentinel\""), "{json}");
    kit.shutdown().await;
}

/// What the writer saw: the key, whether the write was acknowledged, when,
/// and the health right after a failure.
struct Write {
    key: String,
    ok: bool,
    at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_moves_writes_to_the_new_master_and_never_back_to_the_old() {
    let mut topology = sentinel().lock().await;
    let kit =
        redkit::test_util::ready(Redkit::builder().redis(sentinel_config(&topology, false))).await;
    let connection = kit.connection().expect("redis configured").clone();
    tokio::task::block_in_place(|| topology.wait_ready());
    let old = topology.master();
    // A follower of a channel, to check pub/sub comes back on the new
    // master and reports the gap.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let _following = redkit::store::follow(kit.store().clone(), &["topo:events"], move |event| {
        let _ = events_tx.send(event);
        std::ops::ControlFlow::Continue(())
    })
    .await;

    let writes = Arc::new(Mutex::new(Vec::<Write>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (connection, writes, stop, kit) = (
            connection.clone(),
            writes.clone(),
            stop.clone(),
            kit.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let key = format!("topo:failover:{n}");
                let result: redkit::Result<()> =
                    connection.query(redis::cmd("SET").arg(&key).arg(n)).await;
                if result.is_err() {
                    // Health never says healthy while writes fail: right
                    // after a failed write, either the report is not
                    // healthy or writes work again (a new master was
                    // found in between).
                    let report = kit.health().await;
                    if report.status == HealthStatus::Healthy {
                        let again: redkit::Result<()> = connection
                            .query(redis::cmd("SET").arg(format!("{key}:probe")).arg(1))
                            .await;
                        assert!(
                            again.is_ok(),
                            "health said healthy while writes failed: {:?}",
                            report.redis
                        );
                    }
                }
                writes.lock().push(Write {
                    key,
                    ok: result.is_ok(),
                    at: Instant::now(),
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    topology.server_mut(old).kill();
    let new = tokio::task::block_in_place(|| topology.wait_failover_from(old));
    let promoted_at = Instant::now();
    let new_address = address_of(&topology.servers()[new]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            connection.master().as_deref() == Some(new_address.as_str())
                && connection.state() == ConnectionState::Ready
        })
        .await,
        "redkit did not move to the new master {new_address} within 5 s of its promotion \
         (master {:?}, state {})",
        connection.master(),
        connection.state()
    );
    let moved_at = Instant::now();
    // Pub/sub is back on the new master, after telling of the gap.
    let mut seen = Vec::new();
    let mut heard = false;
    for _ in 0..50 {
        let _ = kit.store().publish("topo:events", b"after").await;
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), events.recv()).await
        {
            if matches!(event, redkit::store::FollowEvent::Message(_)) {
                heard = true;
                break;
            }
            seen.push(event);
        }
    }
    assert!(heard, "no message after the failover; events: {seen:?}");
    assert!(
        seen.contains(&redkit::store::FollowEvent::Missed),
        "the failover's gap was not reported: {seen:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            writes
                .lock()
                .iter()
                .any(|write| write.ok && write.at > promoted_at)
        })
        .await,
        "no write succeeded within 5 s of the promotion"
    );

    // The old master comes back empty and calls itself master until the
    // sentinels demote it: redkit must not write to it meanwhile.
    topology.server_mut(old).start();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    tokio::task::block_in_place(|| topology.wait_ready());
    assert_eq!(
        topology.master(),
        new,
        "the sentinels changed the master again"
    );

    // Every write acknowledged after redkit moved is on the master now: a
    // write that went to the restarted old master would have been erased
    // when it was demoted and resynchronised.
    let acknowledged: Vec<String> = writes
        .lock()
        .iter()
        .filter(|write| write.ok && write.at > moved_at)
        .map(|write| write.key.clone())
        .collect();
    assert!(
        acknowledged.len() > 20,
        "too few writes: {}",
        acknowledged.len()
    );
    let values: Vec<Option<String>> = connection
        .query(redis::cmd("MGET").arg(&acknowledged))
        .await
        .unwrap();
    let lost: Vec<&String> = acknowledged
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(key, _)| key)
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert_eq!(connection.master().as_deref(), Some(new_address.as_str()));
    kit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_turned_replica_is_left_and_used_again_when_master() {
    let primary = RedisServer::new();
    let other = RedisServer::new();
    let kit =
        redkit::test_util::ready(Redkit::builder().redis(fast_redis_config(&primary.url()))).await;
    let connection: RedisConnection = kit.connection().expect("redis configured").clone();
    assert_eq!(kit.health().await.status, HealthStatus::Healthy);

    let reply = primary.cli(&["REPLICAOF", "127.0.0.1", &other.port().to_string()]);
    assert_eq!(reply.trim(), "OK");
    // The idle ROLE check leaves the node; no write reaches it meanwhile.
    assert!(
        eventually(Duration::from_secs(3), || async {
            connection.state() != ConnectionState::Ready
        })
        .await,
        "a replica is still used for writes"
    );
    let write: redkit::Result<()> = connection
        .query(redis::cmd("SET").arg("topo:replica").arg(1))
        .await;
    assert!(write.is_err(), "a write went to a replica");
    let report = kit.health().await;
    assert_ne!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
    // The fallback serves meanwhile (the default), so the service is
    // degraded, not down.
    assert_eq!(
        report.status,
        HealthStatus::Degraded,
        "{:?}",
        report.reasons
    );

    let reply = primary.cli(&["REPLICAOF", "NO", "ONE"]);
    assert_eq!(reply.trim(), "OK");
    wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(5)).await;
    let _: () = connection
        .query(redis::cmd("SET").arg("topo:replica").arg(2))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), || async {
            kit.health().await.status == HealthStatus::Healthy
        })
        .await
    );
    kit.shutdown().await;
}

#[tokio::test]
async fn a_write_answered_readonly_counts_as_a_lost_master() {
    // With a health check too slow to notice, the READONLY reply itself
    // must send the connection looking for the master.
    let primary = RedisServer::new();
    let other = RedisServer::new();
    let mut config = fast_redis_config(&primary.url());
    config.health_check_interval = Duration::from_secs(60);
    config.fallback = false;
    let connection = RedisConnection::connect(config).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    primary.cli(&["REPLICAOF", "127.0.0.1", &other.port().to_string()]);
    let write: redkit::Result<()> = connection
        .query(redis::cmd("SET").arg("topo:ro").arg(1))
        .await;
    let error = write.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert_ne!(connection.state(), ConnectionState::Ready);
    primary.cli(&["REPLICAOF", "NO", "ONE"]);
    wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(5)).await;
}

/// The Cluster shared by this binary's tests (3 masters + 3 replicas).
pub fn cluster() -> &'static tokio::sync::Mutex<redkit_testkit::RedisCluster> {
    static TOPOLOGY: OnceLock<tokio::sync::Mutex<redkit_testkit::RedisCluster>> = OnceLock::new();
    TOPOLOGY.get_or_init(|| tokio::sync::Mutex::new(redkit_testkit::RedisCluster::start()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_connection_routes_by_slot_and_reports_every_master() {
    let topology = cluster().lock().await;
    let kit =
        redkit::test_util::ready(Redkit::builder().redis(fast_redis_config(&topology.url()))).await;
    let connection = kit.connection().expect("redis configured");
    assert_eq!(connection.topology_kind(), TopologyKind::Cluster);
    assert_eq!(connection.master(), None);
    // Keys on every master, each routed to its slot's node.
    for n in 0..30 {
        let _: () = connection
            .query(redis::cmd("SET").arg(format!("topo:c:{n}")).arg(n))
            .await
            .unwrap();
    }
    let value: u32 = connection
        .query(redis::cmd("GET").arg("topo:c:17"))
        .await
        .unwrap();
    assert_eq!(value, 17);
    let masters = connection.masters().await.unwrap();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let mut keys = 0;
    for master in &masters {
        let dbsize: u64 = connection
            .query_on(master, &redis::cmd("DBSIZE"))
            .await
            .unwrap();
        keys += dbsize;
    }
    assert!(keys >= 30, "{keys} keys on the masters");

    // A pipeline whose keys span slots is refused before anything is sent;
    // one with a common hash tag runs.
    let mut spanning = redis::pipe();
    spanning
        .cmd("SET")
        .arg("topo:c:a")
        .arg(1)
        .cmd("SET")
        .arg("topo:c:b")
        .arg(2);
    let error = connection
        .query_pipeline::<()>(&spanning)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("hash slot"),
        "{error}: {:?}",
        std::error::Error::source(&error)
    );
    let mut tagged = redis::pipe();
    tagged
        .cmd("SET")
        .arg("{topo}:a")
        .arg(1)
        .cmd("SET")
        .arg("{topo}:b")
        .arg(2);
    connection.query_pipeline::<()>(&tagged).await.unwrap();
    // One node holds only some keys: no single-node connection.
    let dedicated = connection.dedicated().await.unwrap_err();
    assert!(
        matches!(dedicated, redkit::Error::Unsupported { .. }),
        "{dedicated}"
    );
    connection.dedicated_cluster().await.unwrap();

    let report = kit.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
    let redis = report.redis.expect("redis health");
    assert_eq!(redis.topology, TopologyKind::Cluster);
    assert_eq!(redis.cluster_state.as_deref(), Some("ok"));
    assert_eq!(redis.nodes.len(), 3);
    assert!(
        redis
            .nodes
            .iter()
            .all(|node| node.ping_ms.is_some() && node.keys.is_some())
    );
    assert!(redis.dbsize.unwrap() >= 30);
    kit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_pubsub_reaches_a_subscriber_on_any_node() {
    let topology = cluster().lock().await;
    let connection = RedisConnection::connect(fast_redis_config(&topology.url())).unwrap();
    connection
        .wait_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let store = redkit::store::RedisStore::new(connection.clone());
    use redkit::store::Store;
    let mut subscription = store.subscribe(&["topo:chan"]).await.unwrap();
    // Published through the cluster connection (to whichever node the
    // crate picks), received on the subscriber's node.
    let mut heard = None;
    for _ in 0..20 {
        store.publish("topo:chan", b"hello").await.unwrap();
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(200), subscription.next_message()).await
        {
            heard = Some(message);
            break;
        }
    }
    let message = heard.expect("no message through the cluster");
    assert_eq!(&message.payload[..], b"hello");
    connection.shutdown().await;
}
