//! `store::follow`: the one subscribe-and-resubscribe loop every listener
//! uses — first subscribe retried, an interruption reported as `Missed`,
//! messages flowing again after it.

use std::ops::ControlFlow;
use std::time::Duration;

use redkit::connection::RedisConnection;
use redkit::store::{FollowEvent, RedisStore, Store, follow};
use redkit_testkit::RedisServer;
use tokio::sync::mpsc;

use crate::support::{connected, eventually, fast_redis_config, restart_and_wait};

/// Follows `channel` on `store`, forwarding every event.
async fn record(
    store: RedisStore,
    channel: &str,
) -> (
    redkit::store::Following,
    mpsc::UnboundedReceiver<FollowEvent>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let following = follow(store, &[channel], move |event| {
        if sender.send(event).is_err() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await;
    (following, receiver)
}

async fn next(receiver: &mut mpsc::UnboundedReceiver<FollowEvent>) -> FollowEvent {
    tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("no event within 5 s")
        .expect("the follower stopped")
}

/// Publishes until the follower hears a message (a resubscription may
/// still be on its way), returning the events seen before it.
async fn publish_until_heard(
    store: &RedisStore,
    channel: &str,
    receiver: &mut mpsc::UnboundedReceiver<FollowEvent>,
) -> Vec<FollowEvent> {
    let mut before = Vec::new();
    for _ in 0..50 {
        let _ = store.publish(channel, b"ping").await;
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), receiver.recv()).await
        {
            if matches!(event, FollowEvent::Message(_)) {
                return before;
            }
            before.push(event);
        }
    }
    panic!("no message heard; events: {before:?}");
}

#[tokio::test]
async fn a_redis_restart_is_reported_as_missed_and_messages_flow_again() {
    let mut server = RedisServer::new();
    let connection = connected(&server).await;
    let store = RedisStore::new(connection.clone());
    let (_following, mut events) = record(store.clone(), "follow:a").await;
    assert_eq!(next(&mut events).await, FollowEvent::Subscribed);
    store.publish("follow:a", b"one").await.unwrap();
    let FollowEvent::Message(message) = next(&mut events).await else {
        panic!("expected a message");
    };
    assert_eq!(message.channel, "follow:a");
    assert_eq!(&message.payload[..], b"one");

    server.kill();
    restart_and_wait(&mut server, &connection).await;
    let before = publish_until_heard(&store, "follow:a", &mut events).await;
    assert!(
        before.contains(&FollowEvent::Missed),
        "the interruption was not reported: {before:?}"
    );
}

#[tokio::test]
async fn a_first_subscribe_that_fails_is_retried_until_redis_is_there() {
    let mut server = RedisServer::builder().prepare();
    let connection = RedisConnection::connect(fast_redis_config(&server.url())).unwrap();
    let store = RedisStore::new(connection.clone());
    let (_following, mut events) = record(store.clone(), "follow:b").await;
    assert_eq!(next(&mut events).await, FollowEvent::Lost);
    server.start();
    assert!(
        eventually(Duration::from_secs(5), || async {
            connection.state() == redkit::connection::ConnectionState::Ready
        })
        .await
    );
    let before = publish_until_heard(&store, "follow:b", &mut events).await;
    assert!(before.contains(&FollowEvent::Missed), "{before:?}");
}

#[tokio::test]
async fn dropping_the_handle_or_breaking_stops_following() {
    let server = RedisServer::new();
    let store = RedisStore::new(connected(&server).await);
    let (following, mut events) = record(store.clone(), "follow:c").await;
    assert_eq!(next(&mut events).await, FollowEvent::Subscribed);
    drop(following);
    // The task is gone: its sender is dropped, so the channel closes.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while events.recv().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the follower kept running after its handle was dropped"
    );
    // The server notices the closed subscriber connection shortly after.
    let probe = connected(&server).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            let reply: Vec<redkit::connection::redis::Value> = probe
                .query(
                    redkit::connection::redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg("follow:c"),
                )
                .await
                .unwrap();
            reply.get(1) == Some(&redkit::connection::redis::Value::Int(0))
        })
        .await,
        "still subscribed after the handle was dropped"
    );
}
