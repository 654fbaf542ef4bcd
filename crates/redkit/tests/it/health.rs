//! Health reports for each backend and state.

use std::time::Duration;

use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit::health::{HealthStatus, HealthThresholds};
use redkit::store::{Backend, Store};
use redkit_testkit::RedisServer;

use crate::support::fast_redis_config;

#[tokio::test]
async fn embedded_mode_is_healthy() {
    let kit = Redkit::builder().build().unwrap();
    let report = kit.health().await;
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(report.backend, Backend::Embedded);
    assert!(report.redis.is_none());
}

#[tokio::test]
async fn redis_mode_reports_info_and_dbsize_without_the_password() {
    let server = RedisServer::builder().requirepass("topsecret").start();
    // A loaded CI machine can take more than the default 10 ms to answer a
    // PING; this test is about what the report holds, not about latency.
    let mut thresholds = HealthThresholds::default();
    thresholds.max_ping = Duration::from_secs(1);
    let kit = redkit::test_util::ready(
        Redkit::builder()
            .redis(fast_redis_config(&server.url()))
            .health_thresholds(thresholds),
    )
    .await;
    let report = kit.health().await;
    let redis = report.redis.as_ref().unwrap();
    assert!(redis.ping_ms.unwrap() >= 0.0);
    let info = redis.info.as_ref().unwrap();
    assert!(
        info.version
            .as_deref()
            .unwrap()
            .starts_with(|c: char| c.is_ascii_digit())
    );
    assert!(info.connected_clients.unwrap() >= 1);
    assert!(info.used_memory.unwrap() > 0);
    assert_eq!(info.role.as_deref(), Some("master"));
    assert_eq!(redis.dbsize, Some(0));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("topsecret"), "{json}");
    assert!(json.contains("\"backend\":\"fallback\""), "{json}");
    assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
}

#[tokio::test]
async fn unreachable_redis_is_unhealthy_or_degraded_with_fallback() {
    let server = RedisServer::builder().prepare();
    let fallback = Redkit::builder()
        .redis(fast_redis_config(&server.url()))
        .build()
        .unwrap();
    let report = fallback.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.serving, Backend::Embedded);
    assert!(
        report.reasons[0].contains("unreachable"),
        "{:?}",
        report.reasons
    );

    let mut strict: RedisConfig = fast_redis_config(&server.url());
    strict.fallback = false;
    let strict = Redkit::builder().redis(strict).build().unwrap();
    let report = strict.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
}

#[tokio::test]
async fn slow_ping_degrades() {
    let server = RedisServer::new();
    let kit = redkit::test_util::ready(
        Redkit::builder()
            .redis(fast_redis_config(&server.url()))
            .health_thresholds({
                let mut thresholds = redkit::health::HealthThresholds::default();
                thresholds.max_ping = Duration::from_nanos(1);
                thresholds
            }),
    )
    .await;
    let report = kit.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(
        report.reasons.iter().any(|r| r.contains("ping")),
        "{:?}",
        report.reasons
    );
}

#[tokio::test]
async fn cache_hit_and_error_rates_are_reported_and_graded() {
    let kit = Redkit::builder().build().unwrap();
    let cache = kit.cache("tasks").build().await.unwrap();
    for i in 0..150 {
        assert_eq!(cache.get::<u8>(&format!("k{i}")).await.unwrap(), None);
    }
    let report = kit.health().await;
    assert_eq!(report.caches.len(), 1);
    let tasks = &report.caches[0];
    assert_eq!(tasks.name, "tasks");
    assert_eq!(tasks.stats.misses, 150);
    assert_eq!(tasks.hit_rate, Some(0.0));
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(
        report
            .reasons
            .iter()
            .any(|r| r.contains("cache tasks hit rate 0 %")),
        "{:?}",
        report.reasons
    );
    // Hits bring it back.
    cache.set("hot", &1u8, &cache.options()).await.unwrap();
    for _ in 0..300 {
        cache.get::<u8>("hot").await.unwrap();
    }
    let report = kit.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
    assert!(report.caches[0].l1_hit_rate.unwrap() > 0.6);
    drop(cache);
    assert!(kit.health().await.caches.is_empty());
}

/// A wrong password is a rejection, not an outage: the connection state is
/// `rejected`, health is unhealthy with a reason that names the rejection
/// (and never the password), even with the embedded fallback serving; when
/// the password is fixed server-side, the slow probe notices and it heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unhealthy_until_fixed_on_the_server() {
    use redkit::connection::ConnectionState;

    let server = RedisServer::builder().requirepass("right").start();
    let url = format!("redis://:not-the-password@127.0.0.1:{}", server.port());
    let kit = Redkit::builder()
        .redis(fast_redis_config(&url))
        .build()
        .unwrap();
    let connection = kit.connection().unwrap().clone();
    crate::support::wait_for_state(
        &connection,
        ConnectionState::Rejected,
        Duration::from_secs(5),
    )
    .await;
    let reason = connection.rejection().expect("a reason while rejected");
    assert!(reason.contains("authentication failed"), "{reason}");
    assert!(reason.contains("user default"), "{reason}");
    let report = kit.health().await;
    assert_eq!(
        report.status,
        HealthStatus::Unhealthy,
        "{:?}",
        report.reasons
    );
    assert_eq!(report.serving, Backend::Embedded);
    assert!(
        report.reasons[0].contains("rejected this client"),
        "{:?}",
        report.reasons
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"state\":\"rejected\""), "{json}");
    assert!(!json.contains("not-the-password"), "{json}");
    assert!(!json.contains("right\""), "{json}");
    // The fallback keeps serving meanwhile (documented).
    kit.store().set("k", b"v", None).await.unwrap();

    server.cli(&["CONFIG", "SET", "requirepass", "not-the-password"]);
    crate::support::wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(5))
        .await;
    assert_eq!(connection.rejection(), None);
    let report = kit.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
}

/// A server that wants a password none was given for (`NOAUTH`), and a
/// database index the server does not have, are rejections too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_and_an_unknown_database_are_rejections() {
    use redkit::connection::{ConnectionState, RedisConnection};

    let guarded = RedisServer::builder().requirepass("right").start();
    let connection = RedisConnection::connect(fast_redis_config(&format!(
        "redis://127.0.0.1:{}",
        guarded.port()
    )))
    .unwrap();
    crate::support::wait_for_state(
        &connection,
        ConnectionState::Rejected,
        Duration::from_secs(5),
    )
    .await;
    let reason = connection.rejection().unwrap();
    assert!(reason.contains("NOAUTH"), "{reason}");

    let open = RedisServer::new();
    let url = format!("{}/99", open.url());
    let connection = RedisConnection::connect(fast_redis_config(&url)).unwrap();
    crate::support::wait_for_state(
        &connection,
        ConnectionState::Rejected,
        Duration::from_secs(5),
    )
    .await;
    let reason = connection.rejection().unwrap();
    assert!(reason.contains("database 99"), "{reason}");
}
