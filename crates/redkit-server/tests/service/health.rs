//! /health, /health/redis and /metrics in each mode.

use std::time::Duration;

use redkit_testkit::RedisServer;

use crate::support::{TestServer, fast_redis_config, get_json, metric_value, start};

#[tokio::test]
async fn embedded_mode_is_healthy_without_redis() {
    let server = start(None).await;
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["backend"], "embedded");
    let (status, report) = get_json(&server, "/health/redis").await;
    assert_eq!(status, 200);
    assert!(report["redis"].is_null());
    assert!(report["embedded"]["max_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["caches"][0]["name"], "tasks", "{report}");
    assert!(report["caches"][0]["stats"]["l1_hits"].is_u64(), "{report}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_redis_down_and_becomes_healthy_when_it_starts() {
    let mut redis = RedisServer::builder()
        .requirepass("pw-not-in-output")
        .prepare();
    let server = start(Some(fast_redis_config(&redis.url()))).await;

    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(
        status, 200,
        "fallback serves, so it is degraded, not down: {body}"
    );
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["backend"], "fallback");
    assert_eq!(body["serving"], "embedded");
    assert!(
        body["reasons"][0].as_str().unwrap().contains("unreachable"),
        "{body}"
    );

    redis.start();
    let healthy = async {
        loop {
            let (status, body) = get_json(&server, "/health").await;
            if body["status"] == "healthy" {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), healthy)
        .await
        .expect("healthy within 5 s of redis starting, without a restart");
    assert_eq!(status, 200);
    assert_eq!(body["serving"], "redis");
    assert_eq!(body["connection"], "ready");

    let (_, report) = get_json(&server, "/health/redis").await;
    let info = &report["redis"]["info"];
    assert!(info["version"].is_string(), "{report}");
    assert!(info["used_memory"].as_u64().unwrap() > 0);
    assert!(report["redis"]["dbsize"].is_u64());
    assert!(!report.to_string().contains("pw-not-in-output"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_only_mode_answers_503_while_redis_is_down() {
    let redis = RedisServer::builder().prepare();
    let mut config = fast_redis_config(&redis.url());
    config.fallback = false;
    let server = start(Some(config)).await;
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unhealthy");
    let (status, _) = get_json(&server, "/health/redis").await;
    assert_eq!(status, 503);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_connection_state_commands_latency_and_reconnects() {
    let mut redis = RedisServer::new();
    let server = start(Some(fast_redis_config(&redis.url()))).await;
    // Health checks send PING, INFO and DBSIZE through the shared connection.
    let ready = async {
        loop {
            let (_, body) = get_json(&server, "/health").await;
            if body["status"] == "healthy" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ready)
        .await
        .unwrap();
    redis.restart();
    // Health answers from the background probe, so wait for the supervisor
    // to count the reconnect rather than for /health.
    let reconnected = async {
        loop {
            let text = metrics_text(&server).await;
            let reconnects: f64 = text
                .lines()
                .find_map(|line| line.strip_prefix("redkit_redis_reconnects_total "))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0.0);
            let (_, body) = get_json(&server, "/health").await;
            if reconnects >= 1.0 && body["status"] == "healthy" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reconnected)
        .await
        .unwrap();

    let response = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let ready = format!(
        "redkit_redis_connection_state{{state=\"ready\",address=\"127.0.0.1:{}/0\"}} 1",
        redis.port()
    );
    for metric in [
        ready.as_str(),
        "redkit_redis_commands_total",
        "redkit_redis_command_errors_total",
        "redkit_redis_command_duration_seconds_bucket",
        "redkit_redis_reconnects_total",
        "redkit_cache_l1_hits_total{cache=\"tasks\"}",
        "redkit_cache_misses_total{cache=\"tasks\"}",
    ] {
        assert!(text.contains(metric), "/metrics lacks {metric}:\n{text}");
    }
    let reconnects = metric_value(&text, "redkit_redis_reconnects_total ");
    assert!(reconnects >= 1.0, "the restart was not counted:\n{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template_and_rate_limit_decisions() {
    let server = start(None).await;
    let mut client = crate::support::Client::registered(&server, "metrics").await;
    assert_eq!(client.get("/tasks").await.status, 200);
    assert_eq!(client.get("/tasks/7").await.status, 404);
    assert_eq!(client.get("/no/such/path/12345").await.status, 404);
    assert_eq!(client.send("BREW", "/tasks", None).await.status, 405);
    let text = metrics_text(&server).await;
    for metric in [
        r#"redkit_http_requests_total{method="GET",route="/tasks",status="200"}"#,
        r#"redkit_http_requests_total{method="GET",route="/tasks/{id}",status="404"}"#,
        r#"redkit_http_requests_total{method="POST",route="/auth/register",status="201"}"#,
        r#"redkit_http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"redkit_http_requests_total{method="other",route="/tasks",status="405"}"#,
        r#"redkit_http_request_duration_seconds_bucket{method="GET",route="/tasks""#,
        r#"redkit_ratelimit_decisions_total{policy="api",outcome="allowed",source="store"}"#,
    ] {
        assert!(text.contains(metric), "/metrics lacks {metric}:\n{text}");
    }
    assert!(
        !text.contains("/tasks/7"),
        "raw paths must not become labels"
    );
    assert!(!text.contains("12345"), "raw paths must not become labels");
    assert!(
        !text.contains("BREW"),
        "unknown methods must not become labels"
    );
    // Every later request counts too (their metrics' handles are kept
    // after the first); other tests of this process count as well, so the
    // count grows by at least these requests.
    let listed = r#"redkit_http_requests_total{method="GET",route="/tasks",status="200"} "#;
    let admitted = r#"redkit_ratelimit_decisions_total{policy="api",outcome="allowed","#;
    let before = metric_value(&text, listed);
    let admitted_before = metric_sum(&text, admitted);
    for _ in 0..3 {
        assert_eq!(client.get("/tasks").await.status, 200);
    }
    let text = metrics_text(&server).await;
    let after = metric_value(&text, listed);
    assert!(after >= before + 3.0, "{before} then {after}");
    let admitted_after = metric_sum(&text, admitted);
    assert!(
        admitted_after >= admitted_before + 3.0,
        "{admitted_before} then {admitted_after} admitted by the API policy"
    );
    server.stop().await;
}

/// The text `GET /metrics` answers.
async fn metrics_text(server: &TestServer) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of every series starting with `prefix` (any further labels).
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A wrong Redis password is not "Redis is down": `/health` is 503
/// (unhealthy, connection `rejected`, a reason without the password) even
/// though the embedded fallback keeps serving; fixed on the server, the
/// instance heals by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_redis_password_is_a_503_until_fixed() {
    let redis = RedisServer::builder().requirepass("the-right-one").start();
    let url = format!("redis://:a-wrong-one@127.0.0.1:{}", redis.port());
    let server = start(Some(fast_redis_config(&url))).await;
    let rejected = crate::support::eventually(Duration::from_secs(5), || async {
        get_json(&server, "/health").await.1["connection"] == "rejected"
    })
    .await;
    assert!(rejected, "{}", get_json(&server, "/health").await.1);
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{body}"
    );
    let (status, report) = get_json(&server, "/health/redis").await;
    assert_eq!(status, 503);
    for output in [body.to_string(), report.to_string()] {
        assert!(!output.contains("a-wrong-one"), "{output}");
        assert!(!output.contains("the-right-one"), "{output}");
    }
    redis.cli(&["CONFIG", "SET", "requirepass", "a-wrong-one"]);
    let healed = crate::support::eventually(Duration::from_secs(5), || async {
        get_json(&server, "/health").await.0 == 200
    })
    .await;
    assert!(healed, "{}", get_json(&server, "/health").await.1);
    server.stop().await;
}
