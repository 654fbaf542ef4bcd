//! Fallback mode: the embedded store serves while Redis is down, Redis again
//! once it is back.

use std::time::{Duration, Instant};

use redkit::Redkit;
use redkit::connection::ConnectionState;
use redkit::store::{Backend, PubSubEvent, Store};
use redkit_testkit::RedisServer;

use crate::support::{fast_redis_config, ready_kit, restart_and_wait, wait_for_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_the_embedded_store_while_redis_is_down() {
    let mut server = RedisServer::new();
    let kit = ready_kit(&server).await;
    let connection = kit.connection().unwrap().clone();
    let store = kit.store();
    store.set("k", b"from redis", None).await.unwrap();
    assert_eq!(store.backend(), Backend::Redis);

    server.kill();
    // Every call answers, none waits past the command timeout.
    let timeout = connection.config().command_timeout;
    for i in 0..50 {
        let started = Instant::now();
        store
            .set(&format!("outage:{i}"), b"local", None)
            .await
            .unwrap();
        assert!(started.elapsed() <= timeout + Duration::from_millis(200));
    }
    assert_eq!(store.backend(), Backend::Embedded);
    assert_eq!(store.get("outage:3").await.unwrap().unwrap(), "local");
    assert_eq!(
        store.get("k").await.unwrap(),
        None,
        "redis data is not in the embedded store"
    );

    restart_and_wait(&mut server, &connection).await;
    assert_eq!(store.backend(), Backend::Redis);
    // The restarted server kept nothing (no persistence) and nothing of the
    // outage was copied to it; the embedded store was cleared.
    assert_eq!(store.get("outage:3").await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.embedded_store().stats().keys, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_the_start_when_redis_never_came_up() {
    let server = RedisServer::builder().prepare();
    let kit = Redkit::builder()
        .redis(fast_redis_config(&server.url()))
        .build()
        .unwrap();
    let store = kit.store();
    store
        .set("k", b"v", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap().unwrap(), "v");
    assert_eq!(store.backend(), Backend::Embedded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_only_mode_fails_fast_instead() {
    let server = RedisServer::builder().prepare();
    let mut config = fast_redis_config(&server.url());
    config.fallback = false;
    let kit = Redkit::builder().redis(config).build().unwrap();
    let started = Instant::now();
    let error = kit.store().get("k").await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resubscribe_after_redis_restarts() {
    let mut server = RedisServer::new();
    let kit = ready_kit(&server).await;
    let connection = kit.connection().unwrap().clone();
    let store = kit.store();
    let mut subscription = store.subscribe(&["events"]).await.unwrap();
    store.publish("events", b"before").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), subscription.next_message()).await;
    assert_eq!(first.unwrap().unwrap().payload, "before");

    server.restart();
    wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(5)).await;
    let resubscribed = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await;
    assert_eq!(resubscribed.unwrap(), Some(PubSubEvent::Resubscribed));
    store.publish("events", b"after").await.unwrap();
    let after = tokio::time::timeout(Duration::from_secs(2), subscription.next_message()).await;
    assert_eq!(after.unwrap().unwrap().payload, "after");
}
