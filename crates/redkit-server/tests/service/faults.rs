//! The service behind a faulty network to Redis: the testkit's `FaultProxy`
//! injects latency, a blackhole, resets and refusals while a user keeps
//! working. Whatever the fault, every answer comes within the request
//! deadline, no acknowledged write is lost, and the service heals by itself
//! when the network does.

use std::time::{Duration, Instant};

use redkit_testkit::{Fault, FaultProxy, RedisServer};
use serde_json::json;

use crate::support::{Client, TestDb, eventually, fast_redis_config, start_with, test_config};

/// The service's request deadline in these tests.
const DEADLINE: Duration = Duration::from_millis(1000);
/// What a loaded CI machine may add to an answer cut at the deadline.
const SLACK: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_answered_in_time_loses_no_write_and_heals() {
    let redis = RedisServer::new();
    let proxy = FaultProxy::start(redis.port());
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.request_timeout = DEADLINE;
    let server = start_with(Some(fast_redis_config(&proxy.url())), db, config).await;
    let mut alice = Client::registered(&server, "alice").await;

    let faults = [
        Fault::Latency(Duration::from_millis(50)),
        Fault::Latency(Duration::from_millis(200)),
        Fault::Latency(Duration::from_millis(500)),
        Fault::Blackhole,
        Fault::Reset,
        Fault::Refuse,
    ];
    let mut acknowledged = Vec::new();
    let mut report = Vec::new();
    for fault in faults {
        proxy.set(fault);
        let (mut slowest, mut answered, mut unavailable) = (Duration::ZERO, 0, 0);
        let until = Instant::now() + Duration::from_millis(1500);
        let mut n = 0;
        while Instant::now() < until {
            n += 1;
            let title = format!("{fault:?} #{n}");
            let (method, path, body) = match n % 3 {
                0 => ("POST", "/tasks", Some(json!({ "title": title }))),
                1 => ("GET", "/tasks", None),
                _ => ("GET", "/auth/me", None),
            };
            let started = Instant::now();
            let reply = alice.send(method, path, body).await;
            let took = started.elapsed();
            slowest = slowest.max(took);
            assert!(
                took < DEADLINE + SLACK,
                "{method} {path} under {fault:?} took {took:?}"
            );
            match reply.status {
                200 => answered += 1,
                201 => {
                    answered += 1;
                    acknowledged.push(title);
                }
                503 => {
                    unavailable += 1;
                    assert!(reply.headers.contains_key("retry-after"), "{reply:?}");
                    assert!(reply.body["error"]["code"].is_string(), "{reply:?}");
                }
                _ => panic!("{method} {path} under {fault:?}: {reply:?}"),
            }
        }
        proxy.heal();
        let healed = Instant::now();
        assert!(
            alice
                .answers_within("/tasks", 200, Duration::from_secs(5))
                .await,
            "the service did not heal after {fault:?}"
        );
        report.push(format!(
            "{fault:?}: {answered} answered, {unavailable} × 503, slowest {slowest:?}, healed in {:?}",
            healed.elapsed()
        ));
    }
    eprintln!("{}", report.join("\n"));

    // No acknowledged write is lost, and none stays out of the list.
    assert!(!acknowledged.is_empty());
    let listed = eventually(Duration::from_secs(10), || {
        let mut alice = alice.clone();
        let acknowledged = acknowledged.clone();
        async move {
            // Every page: the service may take more than one page of
            // writes in the time the faults last.
            let mut titles = std::collections::HashSet::new();
            let mut after = 0;
            loop {
                let page = alice.get(&format!("/tasks?limit=1000&after={after}")).await;
                let tasks = page.body.as_array().cloned().unwrap_or_default();
                titles.extend(
                    tasks
                        .iter()
                        .filter_map(|task| task["title"].as_str().map(str::to_owned)),
                );
                match tasks.last().and_then(|task| task["id"].as_i64()) {
                    Some(last) if tasks.len() == 1000 => after = last,
                    _ => break,
                }
            }
            acknowledged.iter().all(|title| titles.contains(title))
        }
    })
    .await;
    assert!(
        listed,
        "some of the {} acknowledged writes are missing from the list",
        acknowledged.len()
    );
    server.stop().await;
}
