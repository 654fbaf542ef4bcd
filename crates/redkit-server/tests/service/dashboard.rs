//! /dashboard in a real headless Chromium (chromedriver + fantoccini): the
//! page renders live values and follows changes — cache traffic, rate-limit
//! rejections, an SSE client, Redis going away — without reloading.

use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use redkit_testkit::{Chromedriver, RedisServer, headless_chrome_capabilities};
use serde_json::{Map, Value, json};

use crate::support::{Client, TestDb, TestServer, fast_redis_config, start_with, test_config};

/// Generous for a loaded two-core machine; polls end as soon as they pass.
const WITHIN: Duration = Duration::from_secs(20);

/// The live elements a test reads.
const IDS: &[&str] = &[
    "status",
    "backend",
    "connection-state",
    "serving",
    "topology",
    "ping-ms",
    "l1-hit-rate",
    "l2-hit-rate",
    "cache-l1-hits",
    "cache-l2-hits",
    "cache-misses",
    "ratelimit-allowed",
    "ratelimit-rejected",
    "memory",
    "memory-source",
    "sse-clients",
    "updated-at",
];

/// Reads every live element's text and the chart's point counts at once.
const SNAPSHOT: &str = r##"
    const out = {};
    for (const id of arguments[0]) {
        const el = document.getElementById(id);
        out[id] = el ? el.textContent : null;
    }
    for (const id of ["chart-ping", "chart-hit-rate"]) {
        const path = document.querySelector("#chart #" + id);
        out[id] = path ? Number(path.getAttribute("data-points")) : null;
    }
    out.loaded_once = window.__loadedOnce === true;
    return out;
"##;

/// A browser session on the dashboard of one server.
struct Page {
    browser: fantoccini::Client,
}

impl Page {
    async fn open(driver: &Chromedriver, server: &TestServer) -> Self {
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(headless_chrome_capabilities());
        let url = driver.url();
        let browser = tokio::time::timeout(Duration::from_secs(60), builder.connect(&url))
            .await
            .expect("a browser session within 60 s")
            .expect("chromedriver starts a headless Chromium");
        browser.goto(&server.url("/dashboard")).await.unwrap();
        assert_eq!(browser.title().await.unwrap(), "redkit dashboard");
        // Survives only if the page never reloads itself.
        browser
            .execute("window.__loadedOnce = true;", Vec::new())
            .await
            .unwrap();
        Page { browser }
    }

    async fn snapshot(&self) -> Map<String, Value> {
        let ids = IDS.iter().map(|id| Value::from(*id)).collect();
        match self
            .browser
            .execute(SNAPSHOT, vec![Value::Array(ids)])
            .await
        {
            Ok(Value::Object(snapshot)) => snapshot,
            other => panic!("unexpected snapshot: {other:?}"),
        }
    }

    /// Polls until `check` accepts the page, and returns that snapshot.
    async fn wait_until(
        &self,
        what: &str,
        check: impl Fn(&Map<String, Value>) -> bool,
    ) -> Map<String, Value> {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let snapshot = self.snapshot().await;
            if check(&snapshot) {
                assert_eq!(snapshot["loaded_once"], true, "the page reloaded");
                return snapshot;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dashboard did not show {what} within {WITHIN:?}; it shows {snapshot:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of element `id`, as WebDriver sees it rendered.
    async fn text(&self, id: &str) -> String {
        let element = self.browser.find(Locator::Id(id)).await.unwrap();
        element.text().await.unwrap()
    }

    async fn close(self) {
        self.browser.close().await.unwrap();
    }
}

fn text<'a>(snapshot: &'a Map<String, Value>, id: &str) -> &'a str {
    snapshot[id].as_str().unwrap_or_default()
}

/// The leading number of a text such as `0.42 ms`, `87.5 %` or `1,024`.
fn number(snapshot: &Map<String, Value>, id: &str) -> Option<f64> {
    let text = text(snapshot, id).replace(',', "");
    text.split_whitespace().next()?.parse().ok()
}

fn points(snapshot: &Map<String, Value>, series: &str) -> u64 {
    snapshot[series].as_u64().unwrap_or_default()
}

/// A server sampling every 200 ms, whose auth limit (2 per 5 minutes from
/// one address) the test exceeds on purpose.
async fn start_server(redis: Option<redkit::config::RedisConfig>) -> TestServer {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.probe_interval = Duration::from_millis(200);
    config.auth_policy = Some(crate::support::exact_policy(
        "auth",
        2,
        Duration::from_secs(300),
    ));
    start_with(redis, db, config).await
}

/// Reads through the `tasks` cache (one miss, then L1 hits) and gets
/// rejected by the auth limit; returns the user's client.
async fn make_traffic(server: &TestServer) -> Client {
    let mut client = Client::new(server);
    client.register("dash-user", "correct horse battery").await;
    for _ in 0..5 {
        assert_eq!(client.get("/tasks").await.status, 200);
    }
    let mut stranger = Client::new(server);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let reply = stranger.login("dash-user", "wrong password!").await;
        statuses.push(reply.status);
    }
    assert!(
        statuses.contains(&429),
        "the auth limit rejects: {statuses:?}"
    );
    client
}

/// Checks what the traffic must have changed on the page.
async fn sees_traffic(page: &Page) {
    let snapshot = page
        .wait_until("the cache reads and rate-limit rejections", |s| {
            number(s, "cache-l1-hits") >= Some(4.0)
                && number(s, "cache-misses") >= Some(1.0)
                && number(s, "l1-hit-rate").is_some_and(|rate| rate > 0.0)
                && number(s, "ratelimit-rejected") >= Some(1.0)
                && points(s, "chart-hit-rate") >= 1
        })
        .await;
    let l2 = number(&snapshot, "l2-hit-rate").expect("an L2 rate once reads reached L2");
    assert!((0.0..=100.0).contains(&l2), "{snapshot:#?}");
    assert!(
        number(&snapshot, "ratelimit-allowed") >= Some(7.0),
        "{snapshot:#?}"
    );
    assert!(page.text("l1-hit-rate").await.ends_with(" %"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_redis_in_a_real_browser() {
    let mut redis = RedisServer::new();
    let server = start_server(Some(fast_redis_config(&redis.url()))).await;
    let driver = Chromedriver::start();
    let page = Page::open(&driver, &server).await;

    // Live values from the sampler, before any traffic.
    let first = page
        .wait_until("a connected Redis with a ping", |s| {
            text(s, "connection-state") == "ready"
                && text(s, "serving") == "redis"
                && number(s, "ping-ms").is_some()
                && text(s, "memory-source").starts_with("Redis used_memory")
        })
        .await;
    assert_eq!(text(&first, "backend"), "fallback");
    assert_eq!(
        text(&first, "topology"),
        format!("standalone · master 127.0.0.1:{}", redis.port()),
        "{first:#?}"
    );
    assert!(text(&first, "ping-ms").ends_with(" ms"), "{first:#?}");
    assert!(number(&first, "ping-ms").unwrap() >= 0.0);
    assert!(number(&first, "memory").unwrap() > 0.0, "{first:#?}");
    assert_eq!(text(&first, "l1-hit-rate"), "—", "no reads yet");
    assert_eq!(page.text("connection-state").await, "ready");

    // The page refreshes by itself and the chart fills.
    let updated = text(&first, "updated-at").to_owned();
    page.wait_until("a newer refresh and ping points on the chart", |s| {
        text(s, "updated-at") != updated && points(s, "chart-ping") >= 2
    })
    .await;

    let client = make_traffic(&server).await;
    sees_traffic(&page).await;

    // An SSE client appears.
    let stream = reqwest::Client::new()
        .get(server.url("/events"))
        .header("cookie", client.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    page.wait_until("one SSE client", |s| text(s, "sse-clients") == "1")
        .await;

    // Redis goes away: the connection state and the memory source follow.
    redis.kill();
    let down = page
        .wait_until("the lost connection", |s| {
            text(s, "connection-state") != "ready"
                && text(s, "ping-ms") == "no answer"
                && text(s, "serving") == "embedded"
        })
        .await;
    assert!(
        ["reconnecting", "degraded", "connecting"].contains(&text(&down, "connection-state")),
        "{down:#?}"
    );
    assert!(text(&down, "memory-source").starts_with("embedded store"));
    assert_eq!(text(&down, "status"), "degraded");
    let path = page
        .browser
        .find(Locator::Css("#chart #chart-ping"))
        .await
        .unwrap()
        .attr("d")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(path.starts_with('M'), "ping series path: {path:?}");

    drop(stream);
    page.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_embedded_store_in_a_real_browser() {
    let server = start_server(None).await;
    let driver = Chromedriver::start();
    let page = Page::open(&driver, &server).await;

    let first = page
        .wait_until("the embedded store", |s| {
            text(s, "connection-state") == "embedded"
                && text(s, "status") == "healthy"
                && text(s, "memory-source").starts_with("embedded store of ")
        })
        .await;
    assert_eq!(text(&first, "backend"), "embedded");
    assert_eq!(text(&first, "serving"), "embedded");
    assert_eq!(text(&first, "topology"), "no Redis configured");
    assert_eq!(text(&first, "ping-ms"), "n/a", "no Redis, no ping");
    assert_eq!(text(&first, "sse-clients"), "0");
    let before = number(&first, "cache-l1-hits").unwrap();

    let mut client = make_traffic(&server).await;
    sees_traffic(&page).await;
    // A reminder far ahead: one delayed job in the `reminders` queue.
    let later = json!({"title": "later", "due_at": "2099-01-01T00:00:00Z"});
    assert_eq!(client.post("/tasks", later).await.status, 201);
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let table = page.text("queues").await;
        if table.contains("reminders 0 0 1 0") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the jobs card never showed the delayed reminder: {table:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = page
        .wait_until("a hit-rate series and no ping series", |s| {
            points(s, "chart-hit-rate") >= 1 && number(s, "memory").is_some_and(|m| m > 0.0)
        })
        .await;
    assert!(number(&after, "cache-l1-hits").unwrap() > before);
    assert_eq!(points(&after, "chart-ping"), 0, "{after:#?}");

    page.close().await;
    server.stop().await;
}

#[tokio::test]
async fn dashboard_data_is_json_with_a_bounded_incremental_history() {
    let server = start_server(None).await;
    let http = reqwest::Client::new();
    let page = http.get(server.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    for id in IDS.iter().chain(&["chart", "chart-ping", "chart-hit-rate"]) {
        assert!(html.contains(&format!("id=\"{id}\"")), "missing #{id}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resources"
    );

    let mut history = Vec::new();
    let deadline = tokio::time::Instant::now() + WITHIN;
    while history.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no samples");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let data: Value = http
            .get(server.url("/dashboard/data"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        history = data["history"].as_array().unwrap().clone();
    }
    let data: Value = http
        .get(server.url("/dashboard/data"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(data["backend"], "embedded");
    assert!(data["connection"].is_null());
    assert_eq!(data["interval_ms"], 200);
    assert_eq!(data["window_ms"], 300_000, "five minutes at 200 ms");
    assert_eq!(data["cache"]["name"], "tasks");
    assert!(data["rate_limit"]["rejected"].is_u64());
    assert_eq!(data["memory"]["source"], "embedded");
    assert_eq!(data["queues"][0]["name"], "reminders");
    assert_eq!(data["queues"][0]["counts"]["dead"], 0);
    let sample = &history[0];
    for field in [
        "t",
        "status",
        "serving",
        "reads",
        "rejected",
        "embedded_used_bytes",
    ] {
        assert!(!sample[field].is_null(), "{field} in {sample}");
    }
    assert!(sample["ping_ms"].is_null());

    let last = history.last().unwrap()["t"].as_u64().unwrap();
    let newer: Value = http
        .get(server.url(&format!("/dashboard/data?since={last}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        newer["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|sample| sample["t"].as_u64().unwrap() > last),
        "{newer}"
    );
    let bad = http
        .get(server.url("/dashboard/data?since=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    server.stop().await;
}
