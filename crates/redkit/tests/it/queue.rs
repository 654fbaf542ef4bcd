//! The shared queue suite on each store, plus Redis-only behaviour: the
//! fallback buffer through an outage and persistence across a SIGKILL.

use std::time::Duration;

use redkit::Redkit;
use redkit::config::{EmbeddedConfig, RedisConfig};
use redkit_testkit::RedisServer;

use crate::support::fast_redis_config;

mod embedded {
    use super::*;

    async fn make() -> (Redkit, ()) {
        let kit = Redkit::builder()
            .embedded(EmbeddedConfig::default())
            .build()
            .unwrap();
        (kit, ())
    }

    redkit::queue_conformance_tests!(make);
}

async fn on_redis(config: RedisConfig) -> Redkit {
    redkit::test_util::ready(Redkit::builder().redis(config)).await
}

mod redis {
    use super::*;

    async fn make() -> (Redkit, RedisServer) {
        let server = RedisServer::new();
        let mut config = fast_redis_config(&server.url());
        config.fallback = false;
        (on_redis(config).await, server)
    }

    redkit::queue_conformance_tests!(make);
}

/// On this binary's shared Redis Cluster (one queue's keys share a hash
/// tag, so a queue lives on one master; workers read through a cluster
/// connection of their own).
mod cluster {
    use super::*;

    async fn make() -> (Redkit, ()) {
        let cluster = redkit_testkit::RedisCluster::shared();
        let mut config = fast_redis_config(&cluster.url());
        config.fallback = false;
        config.key_prefix = crate::support::unique_prefix();
        (on_redis(config).await, ())
    }

    redkit::queue_conformance_tests!(make);
}

mod fallback_while_redis_is_up {
    use super::*;

    async fn make() -> (Redkit, RedisServer) {
        let server = RedisServer::new();
        let mut config = fast_redis_config(&server.url());
        config.key_prefix = "app:".to_owned();
        (on_redis(config).await, server)
    }

    redkit::queue_conformance_tests!(make);
}

/// The environment variable that turns `worker_child_process` into a worker.
const CHILD_URL: &str = "REDKIT_TEST_QUEUE_CHILD_URL";

fn crash_config() -> redkit::queue::QueueConfig {
    redkit::queue::QueueConfig::default()
        .visibility_timeout(Duration::from_millis(1500))
        .heartbeat_interval(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(20))
}

/// Not a test: the worker process `a_worker_killed_mid_job_…` starts (this
/// test binary, run with `--ignored --exact`) and SIGKILLs. Its handler marks
/// the job started and then works for a minute.
#[tokio::test]
#[ignore = "helper process for a_worker_killed_mid_job_leaves_it_to_another_worker"]
async fn worker_child_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let mut config = fast_redis_config(&url);
    config.fallback = false;
    let kit = on_redis(config).await;
    let store = kit.store().clone();
    let queue = kit
        .queue::<u32>("crash")
        .unwrap()
        .with_config(crash_config())
        .unwrap();
    let _worker = queue.start_worker(move |job: redkit::queue::Job<u32>| {
        let store = store.clone();
        async move {
            use redkit::store::Store;
            store
                .set(&format!("started:{}", job.id), b"child", None)
                .await?;
            tokio::time::sleep(Duration::from_secs(60)).await;
            store.incr_by("completions", 1).await?;
            Ok(())
        }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// A worker process SIGKILLed mid-job: after the visibility timeout another
/// worker runs the job; exactly one completion is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_leaves_it_to_another_worker() {
    use redkit::store::Store;
    let server = RedisServer::new();
    let mut config = fast_redis_config(&server.url());
    config.fallback = false;
    let kit = on_redis(config).await;
    let queue = kit
        .queue::<u32>("crash")
        .unwrap()
        .with_config(crash_config())
        .unwrap();
    let job = queue.enqueue(&42).await.unwrap();

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "queue::worker_child_process",
            "--nocapture",
        ])
        .env(CHILD_URL, server.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started_key = format!("started:{}", job.id);
    let started = crate::support::eventually(Duration::from_secs(30), || async {
        kit.store().get(&started_key).await.unwrap().is_some()
    })
    .await;
    assert!(started, "the child worker never started the job");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = std::time::Instant::now();

    let store = kit.store().clone();
    let worker = queue.start_worker(move |job: redkit::queue::Job<u32>| {
        let store = store.clone();
        async move {
            assert_eq!(job.payload, 42);
            assert_eq!(job.attempt, 2, "the second attempt");
            store.incr_by("completions", 1).await?;
            Ok(())
        }
    });
    let completed = crate::support::eventually(Duration::from_secs(10), || async {
        queue.state(&job.id).await.unwrap().is_none()
    })
    .await;
    assert!(completed, "the job was not completed by the second worker");
    assert!(
        killed_at.elapsed() >= Duration::from_millis(500),
        "taken over before the lease could expire"
    );
    worker.shutdown(Duration::from_secs(1)).await;
    assert_eq!(kit.store().get("completions").await.unwrap().unwrap(), "1");
}

/// Redis SIGKILLed (AOF on) and restarted while jobs flow: no acknowledged
/// enqueue is lost, jobs enqueued during the outage are buffered and
/// delivered in order when Redis is back, and a full buffer is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_no_acknowledged_job() {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use parking_lot::Mutex;
    use redkit::queue::{Job, QueueConfig};

    let mut server = RedisServer::builder()
        .arg("appendonly", "yes")
        .arg("appendfsync", "always")
        .start();
    let kit = on_redis(fast_redis_config(&server.url())).await;
    let config = QueueConfig::default()
        .concurrency(1)
        .visibility_timeout(Duration::from_millis(800))
        .poll_interval(Duration::from_millis(20));
    let queue = kit
        .queue::<u32>("outage")
        .unwrap()
        .with_config(config.clone())
        .unwrap();
    let processed: Arc<Mutex<Vec<u32>>> = Arc::default();
    let record = processed.clone();
    let handler = move |job: Job<u32>| {
        record.lock().push(job.payload);
        std::future::ready(Ok(()))
    };
    let mut worker = None;

    // Jobs 0..100 are in Redis (not yet processed) when it is killed.
    let mut acknowledged = BTreeSet::new();
    let mut buffered = Vec::new();
    for n in 0..300u32 {
        if n == 100 {
            server.kill();
        }
        if n == 150 {
            worker = Some(queue.start_worker(handler.clone()));
        }
        if n == 200 {
            // A second handle with a tiny buffer: full means an error.
            let tiny = kit
                .queue::<u32>("outage-tiny")
                .unwrap()
                .with_config(config.clone().buffer_capacity(2))
                .unwrap();
            if tiny.enqueue(&0).await.is_ok_and(|e| e.buffered) {
                tiny.enqueue(&1).await.unwrap();
                let error = tiny.enqueue(&2).await.unwrap_err();
                assert!(
                    matches!(error, redkit::Error::QueueBufferFull { capacity: 2, .. }),
                    "{error}"
                );
            }
            server.start();
        }
        match queue.enqueue(&n).await {
            Ok(enqueued) => {
                acknowledged.insert(n);
                if enqueued.buffered {
                    buffered.push(n);
                }
            }
            Err(error) => panic!("enqueue {n} failed in fallback mode: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !buffered.is_empty(),
        "some jobs were enqueued during the outage"
    );
    let all_done = crate::support::eventually(Duration::from_secs(20), || async {
        let seen: BTreeSet<u32> = processed.lock().iter().copied().collect();
        acknowledged.is_subset(&seen)
    })
    .await;
    worker.unwrap().shutdown(Duration::from_secs(1)).await;
    let processed = processed.lock().clone();
    let seen: BTreeSet<u32> = processed.iter().copied().collect();
    let missing: Vec<_> = acknowledged.difference(&seen).collect();
    assert!(all_done, "acknowledged jobs never processed: {missing:?}");
    let buffered_order: Vec<u32> = processed
        .iter()
        .copied()
        .filter(|n| buffered.contains(n))
        .collect();
    let mut deduped = buffered_order.clone();
    deduped.dedup();
    assert_eq!(deduped, buffered, "buffered jobs arrive in enqueue order");
}

/// Health lists the queues opened through the handle with their counts, and
/// grades them by the thresholds.
#[tokio::test]
async fn health_reports_queue_counts_against_thresholds() {
    use redkit::health::{HealthStatus, HealthThresholds};
    use redkit::queue::{EnqueueOptions, QueueConfig};

    let mut thresholds = HealthThresholds::default();
    thresholds.max_queue_waiting = 2;
    thresholds.max_dead_jobs = 0;
    thresholds.max_queue_wait = Duration::from_millis(100);
    let kit = Redkit::builder()
        .health_thresholds(thresholds)
        .build()
        .unwrap();
    let queue = kit
        .queue::<u32>("watched")
        .unwrap()
        .with_config(QueueConfig::default())
        .unwrap();
    let report = kit.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
    assert_eq!(report.queues[0].name, "watched");
    for n in 0..3 {
        queue.enqueue(&n).await.unwrap();
    }
    queue
        .enqueue_with(&9, EnqueueOptions::new().delay(Duration::from_secs(60)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = kit.health().await;
    let counts = report.queues[0].counts.unwrap();
    assert_eq!((counts.waiting, counts.delayed, counts.dead), (3, 1, 0));
    assert!(counts.oldest_waiting_ms.unwrap() >= 150);
    assert_eq!(report.status, HealthStatus::Degraded);
    let reasons = report.reasons.join("\n");
    assert!(
        reasons.contains("queue watched has 3 due jobs, above 2"),
        "{reasons}"
    );
    assert!(reasons.contains("oldest due job has waited"), "{reasons}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["queues"][0]["counts"]["waiting"], 3);
}

/// Entries written into a queue's Stream by something else (not JSON, not
/// UTF-8, a job with no payload) are dead-lettered with a clear error; the queue
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_in_redis_are_dead_lettered() {
    use redkit::queue::{Job, JobState, QueueConfig};

    let server = RedisServer::new();
    let kit = on_redis(fast_redis_config(&server.url())).await;
    let connection = kit.connection().unwrap().clone();
    let raw = |args: &[&[u8]]| {
        let mut command = ::redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command
    };
    // Entries appended to the queue's Stream by something else: a payload
    // that is not JSON (nor UTF-8), one nested too deep, and one with no
    // payload at all.
    for (id, payload) in [
        ("garbage", &b"\xff\x00not json"[..]),
        ("deep", &b"[[[[[[[[[[[[[[[[[[[["[..]),
    ] {
        let _: String = connection
            .query(&raw(&[
                b"XADD",
                b"rq:{hostile}:stream",
                b"*",
                b"p",
                payload,
                b"j",
                id.as_bytes(),
            ]))
            .await
            .unwrap();
    }
    let _: String = connection
        .query(&raw(&[
            b"XADD",
            b"rq:{hostile}:stream",
            b"*",
            b"j",
            b"ghost",
        ]))
        .await
        .unwrap();
    let queue = kit
        .queue::<u32>("hostile")
        .unwrap()
        .with_config(QueueConfig::default().poll_interval(Duration::from_millis(20)))
        .unwrap();
    queue.enqueue(&7).await.unwrap();
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = queue.start_worker(move |job: Job<u32>| {
        record.lock().push(job.payload);
        std::future::ready(Ok(()))
    });
    let settled = crate::support::eventually(Duration::from_secs(5), || async {
        queue.counts().await.unwrap().dead == 3 && seen.lock().len() == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(1)).await;
    assert!(
        settled,
        "counts {:?}, seen {:?}",
        queue.counts().await.unwrap(),
        seen.lock()
    );
    for id in ["garbage", "deep"] {
        let info = queue.state(id).await.unwrap().unwrap();
        assert_eq!(info.state, JobState::Dead);
        assert!(info.last_error.unwrap().starts_with("malformed payload:"));
    }
    let ghost = queue.state("ghost").await.unwrap().unwrap();
    assert!(ghost.last_error.unwrap().contains("payload is missing"));
    assert_eq!(*seen.lock(), vec![7]);
}

/// On Redis a worker waits in a blocking read, so a job enqueued by another
/// process starts at once, not at the worker's next poll (here 30 s away);
/// its own connection is not the shared one, whose commands keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_from_another_process_starts_without_waiting_for_a_poll() {
    use redkit::queue::QueueConfig;

    let server = RedisServer::new();
    let config = || {
        let mut config = fast_redis_config(&server.url());
        config.fallback = false;
        config
    };
    let (worker_kit, producer_kit) = (on_redis(config()).await, on_redis(config()).await);
    let slow_poll = QueueConfig::default().poll_interval(Duration::from_secs(30));
    let consumer = worker_kit
        .queue::<u32>("blocking")
        .unwrap()
        .with_config(slow_poll)
        .unwrap();
    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
    let worker = consumer.start_worker(move |job: redkit::queue::Job<u32>| {
        let _ = started.send(job.payload);
        std::future::ready(Ok(()))
    });
    let producer = producer_kit.queue::<u32>("blocking").unwrap();
    for n in 1..=3 {
        let enqueued_at = std::time::Instant::now();
        producer.enqueue(&n).await.unwrap();
        let started = tokio::time::timeout(Duration::from_secs(5), starts.recv())
            .await
            .unwrap_or_else(|_| panic!("job {n} did not start within 5 s (the poll is 30 s)"));
        assert_eq!(started, Some(n));
        // The worker's shared connection is free meanwhile.
        redkit::store::Store::set(worker_kit.store(), "free", b"yes", None)
            .await
            .unwrap();
        assert!(enqueued_at.elapsed() < Duration::from_secs(5));
    }
    worker.shutdown(Duration::from_secs(2)).await;
}
