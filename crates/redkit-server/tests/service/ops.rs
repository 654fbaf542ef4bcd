//! /health/live and /health/ready through outages, /health answered from
//! the background probe, and the admin listener with its token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redkit::config::Secret;
use redkit_testkit::RedisServer;

use crate::support::{TestDb, eventually, fast_redis_config, get_json, start_with, test_config};

/// How many times redis-server ran `command` (INFO commandstats), asked
/// over a raw connection so the count is not disturbed by the service.
fn command_calls(port: u16, command: &str) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    // `$<len>\r\n<payload>\r\n`: read until the whole payload arrived.
    loop {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0, "redis closed the connection");
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
        if let Some((header, body)) = text.split_once("\r\n") {
            let len: usize = header.trim_start_matches('$').parse().unwrap();
            if body.len() >= len {
                break;
            }
        }
    }
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

async fn status(url: String) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_ready_follow_redis_down_hung_and_back() {
    let mut redis = RedisServer::builder().prepare();
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.probe_interval = Duration::from_millis(200);
    let server = start_with(Some(fast_redis_config(&redis.url())), db, config).await;
    let (live, ready) = (server.url("/health/live"), server.url("/health/ready"));

    // Down from the start: alive, not ready, and the reason names Redis.
    assert_eq!(status(live.clone()).await, 200);
    let (code, body) = get_json(&server, "/health/ready").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    let reason = body["reasons"].to_string();
    assert!(
        reason.contains(&format!("127.0.0.1:{}", redis.port())),
        "{body}"
    );
    assert!(body["probe_age_ms"].is_u64(), "{body}");

    redis.start();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(ready.clone()).await == 200
        })
        .await,
        "ready once redis is up"
    );

    // Hung (SIGSTOP): still alive, no longer ready.
    redis.pause();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(ready.clone()).await == 503
        })
        .await,
        "not ready while redis hangs"
    );
    assert_eq!(status(live.clone()).await, 200);
    redis.resume();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(ready.clone()).await == 200
        })
        .await,
        "ready again after SIGCONT"
    );

    // Killed, then back.
    redis.kill();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(ready.clone()).await == 503
        })
        .await,
        "not ready while redis is down"
    );
    assert_eq!(status(live.clone()).await, 200);
    redis.start();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(ready.clone()).await == 200
        })
        .await,
        "ready again when redis is back"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_from_the_probe_without_reaching_redis() {
    let redis = RedisServer::new();
    // A probe per hour: only the one taken at start.
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.probe_interval = Duration::from_secs(3600);
    let server = start_with(Some(fast_redis_config(&redis.url())), db, config).await;
    let before = command_calls(redis.port(), "dbsize");
    for path in ["/health", "/health/redis", "/health/ready", "/health/live"] {
        for _ in 0..25 {
            let (_, body) = get_json(&server, path).await;
            assert!(body["status"].is_string(), "{path}: {body}");
        }
    }
    let (_, body) = get_json(&server, "/health").await;
    assert!(body["probe_age_ms"].is_u64(), "{body}");
    assert_eq!(
        command_calls(redis.port(), "dbsize"),
        before,
        "health requests reached redis"
    );
    server.stop().await;

    // The control: a probing server does show up in the count.
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.probe_interval = Duration::from_millis(100);
    let server = start_with(Some(fast_redis_config(&redis.url())), db, config).await;
    let before = command_calls(redis.port(), "dbsize");
    assert!(
        eventually(Duration::from_secs(10), || async {
            command_calls(redis.port(), "dbsize") >= before + 3
        })
        .await,
        "the background probe runs DBSIZE"
    );
    server.stop().await;
}

const TOKEN: &str = "admin-token-for-tests-0123";

async fn get_with(url: String, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_admin_listener_takes_the_operator_routes_behind_the_token() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.admin_listen = Some(([127, 0, 0, 1], 0).into());
    config.admin_token = Some(Secret::new(TOKEN));
    assert!(
        !format!("{config:?}").contains(TOKEN),
        "the token leaked into Debug"
    );
    let server = start_with(None, db, config).await;
    let admin = server.server.admin_address.unwrap();
    assert_ne!(admin, server.server.address);
    let operator = ["/metrics", "/health/redis", "/dashboard", "/dashboard/data"];

    for path in operator {
        let public = get_with(server.url(path), Some(TOKEN)).await;
        assert_eq!(
            public.status(),
            404,
            "{path} is still on the public listener"
        );
        let url = format!("http://{admin}{path}");
        let missing = get_with(url.clone(), None).await;
        assert_eq!(missing.status(), 401, "{path} without the token");
        assert_eq!(missing.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = missing.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(!body.to_string().contains(TOKEN));
        let wrong = get_with(url.clone(), Some("admin-token-for-tests-0124")).await;
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let right = get_with(url, Some(TOKEN)).await;
        assert_eq!(right.status(), 200, "{path} with the token");
    }
    // Probes stay public and open; the API is not on the admin listener.
    for path in ["/health", "/health/live", "/health/ready"] {
        assert_eq!(status(server.url(path)).await, 200, "{path}");
    }
    let api = get_with(format!("http://{admin}/tasks"), Some(TOKEN)).await;
    assert_eq!(api.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn the_token_guards_operator_routes_on_the_public_listener_too() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.admin_token = Some(Secret::new(TOKEN));
    let server = start_with(None, db, config).await;
    assert!(server.server.admin_address.is_none());
    assert_eq!(get_with(server.url("/metrics"), None).await.status(), 401);
    assert_eq!(
        get_with(server.url("/metrics"), Some(TOKEN)).await.status(),
        200
    );
    assert_eq!(status(server.url("/health")).await, 200);
    server.stop().await;
}
