//! The shared conformance suite on each store, plus Redis-only details.

use std::time::Duration;

use redkit::config::EmbeddedConfig;
use redkit::store::{EmbeddedStore, RedisStore, Store};
use redkit_testkit::RedisServer;

use crate::support::connected;

mod embedded {
    use super::*;

    async fn make() -> (EmbeddedStore, ()) {
        (EmbeddedStore::new(EmbeddedConfig::default()).unwrap(), ())
    }

    redkit::store_conformance_tests!(make);
}

mod redis {
    use super::*;

    async fn make() -> (RedisStore, RedisServer) {
        let server = RedisServer::new();
        let store = RedisStore::new(connected(&server).await);
        (store, server)
    }

    redkit::store_conformance_tests!(make);
}

mod cluster {
    use super::*;

    async fn make() -> (RedisStore, ()) {
        (crate::support::cluster_store().await, ())
    }

    redkit::store_conformance_tests!(make);
}

mod redis_with_prefix {
    use super::*;

    async fn make() -> (RedisStore, RedisServer) {
        let server = RedisServer::new();
        let config = crate::support::fast_redis_config(&server.url());
        let mut config = config;
        config.key_prefix = "app*[1]:".to_owned();
        let connection = redkit::connection::RedisConnection::connect(config).unwrap();
        connection.wait_ready(Duration::from_secs(5)).await.unwrap();
        (RedisStore::new(connection), server)
    }

    redkit::store_conformance_tests!(make);
}

mod fallback_while_redis_is_up {
    use super::*;
    use redkit::store::AnyStore;

    async fn make() -> (AnyStore, RedisServer) {
        let server = RedisServer::new();
        let redis = RedisStore::new(connected(&server).await);
        let store = AnyStore::fallback(
            redis,
            EmbeddedStore::new(EmbeddedConfig::default()).unwrap(),
        );
        (store, server)
    }

    redkit::store_conformance_tests!(make);
}

#[tokio::test]
async fn key_prefix_namespaces_keys_on_the_server() {
    let server = RedisServer::new();
    let mut config = crate::support::fast_redis_config(&server.url());
    config.key_prefix = "tenant:".to_owned();
    let connection = redkit::connection::RedisConnection::connect(config).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    let store = RedisStore::new(connection.clone());
    store.set("k", b"v", None).await.unwrap();
    let raw: Option<String> = connection
        .query(::redis::cmd("GET").arg("tenant:k"))
        .await
        .unwrap();
    assert_eq!(raw.as_deref(), Some("v"));
    let plain: Option<String> = connection
        .query(::redis::cmd("GET").arg("k"))
        .await
        .unwrap();
    assert_eq!(plain, None);
    let keys = redkit::store::scan_all(&store, "*", 100).await.unwrap();
    assert_eq!(keys, ["k"]);
}

#[tokio::test]
async fn scripts_are_reloaded_after_script_flush() {
    use redkit::store::{Script, ScriptArg, ScriptContext, ScriptValue};
    fn native(ctx: &mut dyn ScriptContext, _: &[ScriptArg]) -> redkit::Result<ScriptValue> {
        Ok(ScriptValue::Int(ctx.incr_by(0, 1)?))
    }
    let script = Script::new("incr", "return redis.call('INCRBY', KEYS[1], 1)", native);
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let store = RedisStore::new(connection.clone());
    assert_eq!(
        store.run_script(&script, &["n"], &[]).await.unwrap(),
        ScriptValue::Int(1)
    );
    let _: String = connection
        .query(::redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    assert_eq!(
        store.run_script(&script, &["n"], &[]).await.unwrap(),
        ScriptValue::Int(2)
    );
}

#[tokio::test]
async fn embedded_store_evicts_to_stay_within_its_budget() {
    let store = EmbeddedStore::new(
        EmbeddedConfig::default()
            .max_memory_bytes(100 * 1024)
            .shards(4),
    )
    .unwrap();
    let value = vec![7u8; 1000];
    for i in 0..1000 {
        store.set(&format!("k{i}"), &value, None).await.unwrap();
    }
    let stats = store.stats();
    assert!(stats.used_bytes <= 100 * 1024, "{stats:?}");
    assert!(stats.evicted_keys >= 900, "{stats:?}");
    // The most recent write survives eviction.
    assert!(store.get("k999").await.unwrap().is_some());
    let too_big = vec![0u8; 200 * 1024];
    let error = store.set("huge", &too_big, None).await.unwrap_err();
    assert!(
        matches!(error, redkit::Error::OutOfMemory { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn embedded_store_expires_unread_keys_in_the_background() {
    let store = EmbeddedStore::new(
        EmbeddedConfig::default().active_expiry_interval(Duration::from_millis(20)),
    )
    .unwrap();
    for i in 0..200 {
        store
            .set(&format!("k{i}"), b"v", Some(Duration::from_millis(30)))
            .await
            .unwrap();
    }
    assert_eq!(store.stats().keys, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = store.stats();
    assert_eq!(stats.keys, 0, "{stats:?}");
    assert_eq!(stats.expired_keys, 200);
}

#[tokio::test]
async fn embedded_store_follows_an_injected_clock() {
    use redkit::clock::ManualClock;
    use redkit::store::KeyTtl;
    let clock = ManualClock::new();
    let store = EmbeddedStore::with_clock(
        EmbeddedConfig::default(),
        std::sync::Arc::new(clock.clone()),
    )
    .unwrap();
    store
        .set("k", b"v", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(59_999));
    assert_eq!(
        store.ttl("k").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_millis(1))
    );
    assert!(store.get("k").await.unwrap().is_some());
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.get("k").await.unwrap(), None);
}
