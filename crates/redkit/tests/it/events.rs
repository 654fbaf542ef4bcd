//! The event log behaves the same on the embedded store and on Redis.

use std::time::Duration;

use futures_util::StreamExt;
use redkit::config::EmbeddedConfig;
use redkit::events::{EventLog, EventLogConfig, Followed, Replay};
use redkit::store::{EmbeddedStore, RedisStore, Store, StreamId};
use redkit_testkit::RedisServer;

use crate::support::connected;

async fn check_append_and_replay_after_an_id<S: Store>(store: S) {
    let log = EventLog::new(store, EventLogConfig::default()).unwrap();
    let first = log.append("user:1", b"one").await.unwrap();
    let second = log.append("user:1", b"two").await.unwrap();
    let third = log.append("user:1", b"three").await.unwrap();
    assert!(first < second && second < third);
    log.append("user:2", b"other topic").await.unwrap();
    let Replay::Events(events) = log.read_after("user:1", first).await.unwrap() else {
        panic!("a known id replays");
    };
    let payloads: Vec<&[u8]> = events.iter().map(|e| &e.payload[..]).collect();
    assert_eq!(payloads, [&b"two"[..], b"three"]);
    assert_eq!(events[1].id, third);
    assert_eq!(
        log.read_after("user:1", third).await.unwrap(),
        Replay::Events(Vec::new())
    );
    // Unknown ids (never issued, in the future, other topic's) are gaps.
    let unknown = StreamId {
        ms: first.ms,
        seq: first.seq + 1000,
    };
    assert_eq!(
        log.read_after("user:1", unknown).await.unwrap(),
        Replay::Gap
    );
    assert_eq!(log.read_after("nobody", first).await.unwrap(), Replay::Gap);
}

async fn check_trimmed_ids_are_gaps<S: Store>(store: S) {
    let log = EventLog::new(store, EventLogConfig::default().max_len(3)).unwrap();
    let mut ids = Vec::new();
    for n in 0..5u8 {
        ids.push(log.append("t", &[n]).await.unwrap());
    }
    assert_eq!(log.read_after("t", ids[0]).await.unwrap(), Replay::Gap);
    assert_eq!(log.read_after("t", ids[1]).await.unwrap(), Replay::Gap);
    let Replay::Events(events) = log.read_after("t", ids[2]).await.unwrap() else {
        panic!("the oldest kept id replays");
    };
    assert_eq!(events.len(), 2);
    assert_eq!(
        log.range("t", StreamId::default(), 10).await.unwrap().len(),
        3
    );
}

async fn check_append_once_deduplicates<S: Store>(store: S) {
    let log = EventLog::new(store, EventLogConfig::default()).unwrap();
    let id = log.append_once("u", "task:1@t", b"first").await.unwrap();
    assert!(id.is_some());
    assert_eq!(
        log.append_once("u", "task:1@t", b"again").await.unwrap(),
        None
    );
    assert!(
        log.append_once("u", "task:1@u", b"other")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        log.range("u", StreamId::default(), 10).await.unwrap().len(),
        2
    );
}

async fn check_follow_replays_then_goes_live<S: Store>(store: S) {
    let config = EventLogConfig::default().poll_interval(Duration::from_millis(20));
    let log = EventLog::new(store, config).unwrap();
    let first = log.append("f", b"a").await.unwrap();
    log.append("f", b"b").await.unwrap();
    let mut stream = Box::pin(log.follow("f", Some(first)));
    assert_eq!(next_event(&mut stream).await, "b");
    log.append("f", b"c").await.unwrap();
    assert_eq!(next_event(&mut stream).await, "c");
    let mut gap = Box::pin(log.follow("f", Some(StreamId { ms: 1, seq: 0 })));
    let item = tokio::time::timeout(Duration::from_secs(5), gap.next())
        .await
        .unwrap();
    assert!(matches!(item, Some(Ok(Followed::Gap))), "{item:?}");
    assert!(gap.next().await.is_none(), "ends after a gap");
}

async fn next_event<F>(stream: &mut F) -> bytes::Bytes
where
    F: futures_util::Stream<Item = redkit::Result<Followed>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(Followed::Event(event)))) => event.payload,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn check_bad_topics_are_rejected<S: Store>(store: S) {
    let log = EventLog::new(store, EventLogConfig::default()).unwrap();
    for topic in ["", "a{b}", "new\nline"] {
        assert!(log.append(topic, b"x").await.is_err(), "{topic:?}");
    }
    assert!("12-x".parse::<StreamId>().is_err());
    assert!(EventLog::new(log_store_for_config(), EventLogConfig::default().max_len(0)).is_err());
}

fn log_store_for_config() -> EmbeddedStore {
    EmbeddedStore::new(EmbeddedConfig::default()).unwrap()
}

macro_rules! event_suite {
    ($make:path) => {
        #[tokio::test]
        async fn append_and_replay_after_an_id() {
            let (store, _guard) = $make().await;
            super::check_append_and_replay_after_an_id(store).await;
        }
        #[tokio::test]
        async fn trimmed_ids_are_gaps() {
            let (store, _guard) = $make().await;
            super::check_trimmed_ids_are_gaps(store).await;
        }
        #[tokio::test]
        async fn append_once_deduplicates() {
            let (store, _guard) = $make().await;
            super::check_append_once_deduplicates(store).await;
        }
        #[tokio::test]
        async fn follow_replays_then_goes_live() {
            let (store, _guard) = $make().await;
            super::check_follow_replays_then_goes_live(store).await;
        }
        #[tokio::test]
        async fn bad_topics_are_rejected() {
            let (store, _guard) = $make().await;
            super::check_bad_topics_are_rejected(store).await;
        }
    };
}

mod embedded {
    use super::*;

    async fn make() -> (EmbeddedStore, ()) {
        (log_store_for_config(), ())
    }

    event_suite!(make);
}

mod redis {
    use super::*;

    async fn make() -> (RedisStore, RedisServer) {
        let server = RedisServer::new();
        (RedisStore::new(connected(&server).await), server)
    }

    event_suite!(make);
}
