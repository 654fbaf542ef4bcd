//! Health reports for each backend and state.

use std::time::Duration;

use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit::health::HealthStatus;
use redkit::store::Backend;
use redkit_testkit::RedisServer;

use crate::support::{fast_redis_config, ready_kit};

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
    let kit = ready_kit(&server).await;
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
    let kit = Redkit::builder()
        .redis(fast_redis_config(&server.url()))
        .health_thresholds({
            let mut thresholds = redkit::health::HealthThresholds::default();
            thresholds.max_ping = Duration::from_nanos(1);
            thresholds
        })
        .build()
        .unwrap();
    kit.connection()
        .unwrap()
        .wait_ready(Duration::from_secs(5))
        .await
        .unwrap();
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
