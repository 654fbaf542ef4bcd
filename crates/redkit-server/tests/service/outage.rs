//! Redis killed under the service and restarted: bounded answers, limits
//! still enforced, automatic recovery with sessions intact.

use std::time::{Duration, Instant};

use redkit_testkit::RedisServer;
use serde_json::json;

use crate::support::{Client, fast_redis, get_json, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_the_service() {
    // Persisted on every write, so sessions survive the SIGKILL.
    let mut redis = RedisServer::builder()
        .arg("appendonly", "yes")
        .arg("appendfsync", "always")
        .start();
    let server = start(Some(fast_redis(&redis.url()))).await;
    let mut alice = Client::registered(&server, "alice").await;
    alice.post("/tasks", json!({"title": "survives"})).await;
    assert_eq!(alice.get("/tasks").await.status, 200);

    // Hung (SIGSTOP): once the session's local entry (2 s) is gone,
    // answers come within the command timeout, 503; then back.
    redis.pause();
    let hung = alice
        .answers_within("/tasks", 503, Duration::from_secs(5))
        .await;
    assert!(
        hung,
        "authenticated routes should fail closed while Redis hangs"
    );
    for _ in 0..3 {
        let started = Instant::now();
        let reply = alice.get("/tasks").await;
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    redis.resume();
    let back = alice
        .answers_within("/tasks", 200, Duration::from_secs(5))
        .await;
    assert!(back, "the session works again once Redis answers");

    redis.kill();
    // Every answer comes back quickly: 503 for session-bound routes (the
    // cookie is kept), health degraded, never a hang.
    let down = alice
        .answers_within("/tasks", 503, Duration::from_secs(5))
        .await;
    assert!(
        down,
        "authenticated routes should fail closed while Redis is down"
    );
    for _ in 0..5 {
        let started = Instant::now();
        let reply = alice.get("/tasks").await;
        assert_eq!(reply.status, 503, "{reply:?}");
        assert_eq!(reply.body["error"]["code"], "unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("degraded")),
        "{health}"
    );
    // Rate limits keep being enforced (insurance limiter) on open routes.
    let login = alice.login("alice", "wrong-password").await;
    assert!(
        login.status == 401 || login.status == 429,
        "login during the outage: {login:?}"
    );
    assert!(login.headers.contains_key("ratelimit-policy"), "{login:?}");

    redis.start();
    let recovered = alice
        .answers_within("/tasks", 200, Duration::from_secs(5))
        .await;
    assert!(recovered, "the same session works again once Redis is back");
    assert_eq!(alice.get("/tasks").await.body[0]["title"], "survives");
    assert_eq!(alice.get("/auth/me").await.body["username"], "alice");
    server.stop().await;
}
