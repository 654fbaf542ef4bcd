//! Redis hung, killed and restarted under the service: bounded answers,
//! reads served to logged-in users, limits still enforced, automatic
//! recovery with sessions intact.

use std::time::{Duration, Instant};

use redkit_testkit::RedisServer;
use serde_json::json;

use crate::support::{
    Client, TestDb, exact_policy, fast_redis_config, get_json, start, start_with, test_config,
};

/// GET `path` and check it answers `status` within two seconds.
async fn answers_quickly(client: &mut Client, path: &str, status: u16) -> serde_json::Value {
    let started = Instant::now();
    let reply = client.get(path).await;
    assert_eq!(reply.status, status, "{path}: {reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{path} took {:?}",
        started.elapsed()
    );
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_killed_and_restarted_under_the_service() {
    // Persisted on every write, so sessions survive the SIGKILL.
    let mut redis = RedisServer::builder()
        .arg("appendonly", "yes")
        .arg("appendfsync", "always")
        .start();
    let server = start(Some(fast_redis_config(&redis.url()))).await;
    let mut alice = Client::registered(&server, "alice").await;
    alice.post("/tasks", json!({"title": "survives"})).await;
    assert_eq!(alice.get("/tasks").await.status, 200);
    // Bob has a session in Redis that this instance has not read yet.
    let mut bob = Client::registered(&server, "bob").await;
    let bob_cookie = bob.cookie.clone();
    bob.post("/auth/logout", json!({})).await;
    let mut bob = Client::new(&server);
    assert_eq!(bob.login("bob", "bob-password").await.status, 200);
    let mut bob_elsewhere = Client {
        cookie: bob_cookie,
        ..bob.clone()
    };

    // Hung (SIGSTOP), then killed (SIGKILL): every answer within the
    // command timeout. Alice, whose session this instance read, keeps
    // reading her tasks (session fail-safe, cache L1); a session it cannot
    // vouch for gets 503 and keeps its cookie; nothing can log in.
    redis.pause();
    tokio::time::sleep(Duration::from_millis(2100)).await; // past the 2 s local cache
    for _ in 0..3 {
        let tasks = answers_quickly(&mut alice, "/tasks", 200).await;
        assert_eq!(tasks[0]["title"], "survives");
    }
    redis.resume();
    assert!(
        alice
            .answers_within("/tasks", 200, Duration::from_secs(5))
            .await
    );

    redis.kill();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..3 {
        answers_quickly(&mut alice, "/tasks", 200).await;
        let me = answers_quickly(&mut alice, "/auth/me", 200).await;
        assert_eq!(
            (me["username"].as_str(), me["sessions"].is_null()),
            (Some("alice"), true)
        );
    }
    // Bob's ended session and his new one were never read here: 503, the
    // cookie kept, until Redis can answer.
    let reply = answers_quickly(&mut bob_elsewhere, "/tasks", 503).await;
    assert_eq!(reply["error"]["code"], "unavailable");
    answers_quickly(&mut bob, "/tasks", 503).await;
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("degraded")),
        "{health}"
    );
    // Rate limits keep being enforced (insurance limiter); a login cannot
    // create a session while Redis is down.
    let login = Client::new(&server).login("alice", "alice-password").await;
    assert!(login.headers.contains_key("ratelimit-policy"), "{login:?}");
    assert_eq!(login.status, 503, "{login:?}");

    redis.start();
    assert!(
        alice
            .answers_within("/auth/me", 200, Duration::from_secs(5))
            .await,
        "the same session works once Redis is back"
    );
    assert_eq!(alice.get("/tasks").await.body[0]["title"], "survives");
    assert!(
        bob.answers_within("/tasks", 200, Duration::from_secs(5))
            .await
    );
    server.stop().await;
}

/// Redis at `maxmemory` (`noeviction`, filled) refuses every write with
/// `-OOM`: a logged-in user keeps reading, and the API limit is still
/// enforced (by the insurance limiter) instead of every request being 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_keeps_the_api_answering_and_limits_enforced() {
    let redis = RedisServer::builder()
        .arg("maxmemory-policy", "noeviction")
        .start();
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.api_policy = Some(exact_policy("api", 8, Duration::from_secs(3600)));
    config.rate_limit_leases = None;
    let server = start_with(Some(fast_redis_config(&redis.url())), db, config).await;
    let mut alice = Client::registered(&server, "alice").await;
    assert_eq!(
        alice.post("/tasks", json!({"title": "kept"})).await.status,
        201
    );
    assert_eq!(alice.get("/tasks").await.status, 200);

    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    assert!(
        redis.cli(&["SET", "probe", "v"]).contains("OOM"),
        "Redis is full"
    );

    // The insurance limiter counts from zero on this instance: eight more
    // requests are served, then 429 — never 503.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let reply = alice.get("/tasks").await;
        if reply.status == 200 {
            assert!(reply.body.to_string().contains("kept"), "{reply:?}");
        }
        statuses.push(reply.status);
    }
    assert!(!statuses.contains(&503), "{statuses:?}");
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert_eq!(statuses[11], 429, "limits stay enforced: {statuses:?}");
    server.stop().await;
}
