//! Starting in-process servers for tests, and a small JSON client that
//! carries its session cookie.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit::ratelimit::Policy;
pub use redkit::test_util::fast_redis_config;
use redkit_server::{AppState, RunningServer, ServiceConfig, install_metrics_recorder};
use serde_json::Value;

/// A temporary directory holding one SQLite file, shared by the servers of
/// a test.
#[derive(Debug, Clone)]
pub struct TestDb {
    dir: Arc<tempfile::TempDir>,
}

impl TestDb {
    pub fn new() -> Self {
        TestDb {
            dir: Arc::new(tempfile::tempdir().unwrap()),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("redkit.db")
    }
}

/// A policy admitting exactly `count` requests from one client over
/// `window`, whatever the time of day: GCRA with a burst of `count`, because
/// a sliding window's count is lenient by its rounding right after a window
/// boundary (see redkit's edge tests), which a test may happen to cross.
pub fn exact_policy(name: &str, count: u64, window: Duration) -> Policy {
    Policy::gcra(name, count, window, count).unwrap()
}

/// `redis` with 5 s for each command and health check instead of the test
/// default's 500 ms, for tests that count exactly and are not about
/// outages: on a loaded two-core CI machine one reply slower than 500 ms
/// makes the rate limiter answer from its per-instance insurance (as it
/// should during an outage), and a shared count looks lost.
pub fn patient(redis: &RedisConfig) -> RedisConfig {
    let mut redis = redis.clone();
    redis.command_timeout = Duration::from_secs(5);
    redis
}

/// The service's defaults on `db`, with an auth limit tests do not reach
/// unless they mean to.
pub fn test_config(db: &Path) -> ServiceConfig {
    let mut config = ServiceConfig::with_database(db);
    config.auth_policy = Some(Policy::new("auth", 1000, Duration::from_secs(300)).unwrap());
    config.api_policy = Some(Policy::new("api", 100_000, Duration::from_secs(60)).unwrap());
    // Tests about the deadline set their own; the others must not trip it
    // on a loaded machine.
    config.request_timeout = Duration::from_secs(10);
    config
}

/// A running server and the database it keeps alive.
#[derive(Debug)]
pub struct TestServer {
    pub server: RunningServer,
    /// Keeps the database's directory until the server is dropped.
    _db: TestDb,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.address)
    }

    pub async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

/// Starts a server on 127.0.0.1:0 with `redis` (or the embedded store) and
/// a fresh database.
pub async fn start(redis: Option<RedisConfig>) -> TestServer {
    let db = TestDb::new();
    let config = test_config(&db.path());
    start_with(redis, db, config).await
}

/// Starts a server with `redis` on `db` with `config`.
pub async fn start_with(
    redis: Option<RedisConfig>,
    db: TestDb,
    config: ServiceConfig,
) -> TestServer {
    start_kit(kit_for(redis), db, config).await
}

/// Like [`start_with`], once Redis is ready (5 s at most): a service that
/// starts while its Redis is still connecting serves from the embedded
/// fallback store meanwhile, where two instances do not share counts.
/// Connecting to a Cluster (the topology is discovered first) took long
/// enough on a loaded CI for the first requests to land there.
pub async fn start_ready(redis: RedisConfig, db: TestDb, config: ServiceConfig) -> TestServer {
    let kit = kit_for(Some(redis));
    if let Some(connection) = kit.connection() {
        connection
            .wait_ready(Duration::from_secs(5))
            .await
            .expect("the test's Redis is ready within 5 s");
    }
    start_kit(kit, db, config).await
}

fn kit_for(redis: Option<RedisConfig>) -> Redkit {
    let mut builder = Redkit::builder();
    if let Some(redis) = redis {
        builder = builder.redis(redis);
    }
    builder.build().unwrap()
}

async fn start_kit(kit: Redkit, db: TestDb, config: ServiceConfig) -> TestServer {
    let metrics = install_metrics_recorder();
    let state = AppState::new(kit, metrics, config).await.unwrap();
    let server = RunningServer::start(([127, 0, 0, 1], 0).into(), state)
        .await
        .unwrap();
    TestServer { server, _db: db }
}

/// GET `path` and return the status and the body as JSON.
pub async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    let response = reqwest::get(server.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A JSON client of one server that keeps the session cookie it is given.
#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    pub cookie: Option<String>,
    pub http: reqwest::Client,
}

/// A response: status, headers and body (JSON, or `Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Client {
    pub fn new(server: &TestServer) -> Self {
        Client {
            base: server.url(""),
            cookie: None,
            http: reqwest::Client::new(),
        }
    }

    /// A new client of `server`, registered (and so logged in) as `username`
    /// with the password `<username>-password`.
    pub async fn registered(server: &TestServer, username: &str) -> Self {
        let mut client = Client::new(server);
        client
            .register(username, &format!("{username}-password"))
            .await;
        client
    }

    /// The same session, against another server.
    pub fn on(&self, server: &TestServer) -> Self {
        Client {
            base: server.url(""),
            ..self.clone()
        }
    }

    pub async fn send(&mut self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        self.reply(response).await
    }

    /// Sends `raw` as the body with `content_type`.
    pub async fn send_raw(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        raw: Vec<u8>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(raw);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        self.reply(response).await
    }

    async fn reply(&mut self, response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(set) = headers.get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = pair
                .split_once('=')
                .filter(|(_, v)| !v.is_empty())
                .map(|_| pair.clone());
        }
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body)).await
    }

    /// Whether `GET path` answers `status` within `within` (polling).
    pub async fn answers_within(&self, path: &str, status: u16, within: Duration) -> bool {
        eventually(within, || {
            let mut client = self.clone();
            async move { client.get(path).await.status == status }
        })
        .await
    }

    pub async fn register(&mut self, username: &str, password: &str) -> Reply {
        let reply = self
            .post(
                "/auth/register",
                serde_json::json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply
    }

    pub async fn login(&mut self, username: &str, password: &str) -> Reply {
        self.post(
            "/auth/login",
            serde_json::json!({ "username": username, "password": password }),
        )
        .await
    }
}

/// Retries `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Server-Sent-Events client of `GET /events`.
pub struct Events {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// The `id:` of the last event [`Events::next`] returned, if it had one.
    pub id: Option<String>,
}

impl Events {
    /// Opens the stream with `client`'s session and waits for `ready`.
    pub async fn open(client: &Client) -> Self {
        Self::open_after(client, None).await
    }

    /// Opens the stream sending `Last-Event-ID: last_event_id` (when given)
    /// and waits for `ready`.
    pub async fn open_after(client: &Client, last_event_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new().get(format!("{}/events", client.base));
        if let Some(cookie) = &client.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut events = Events {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            id: None,
        };
        let (name, _) = events
            .next(Duration::from_secs(5))
            .await
            .expect("a ready event");
        assert_eq!(name, "ready");
        events
    }

    /// Whether the server ends the stream within `within` without sending
    /// another event.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.buffer.contains("data:") {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(chunk)) => match chunk {
                    Ok(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                    // The connection closed under the read: ended too.
                    Err(_) => return true,
                },
            }
        }
    }

    /// The next event's name and JSON data; `None` at the end of the stream
    /// or after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<(String, Value)> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                let mut id = None;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                self.id = id;
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }
}

/// The `redkit` binary, without the `REDIS_*` / `REDKIT_*` variables of the
/// environment the tests run in.
pub fn redkit_binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_redkit"));
    for (name, _) in std::env::vars() {
        if name.starts_with("REDIS_") || name.starts_with("REDKIT_") {
            command.env_remove(name);
        }
    }
    command
}

/// The service's stdout, line by line.
pub type ServiceOutput = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

/// The `redkit` binary serving on a free port with a fresh database at `db`
/// and `args`: the process, the rest of its stdout (drain it, or the service
/// blocks on a full pipe) and the address it listens on.
pub fn start_service(args: &[&str], db: &Path) -> (std::process::Child, ServiceOutput, String) {
    let (child, lines, address, _) = start_service_logged(args, db, &[]);
    (child, lines, address)
}

/// [`start_service`] with environment variables (`REDIS_URL`, …), also
/// giving the lines the service printed before it listened.
pub fn start_service_logged(
    args: &[&str],
    db: &Path,
    env: &[(&str, &str)],
) -> (std::process::Child, ServiceOutput, String, Vec<String>) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = redkit_binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the redkit binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (address, earlier) = until_listening(&mut lines);
    (child, lines, address, earlier)
}

/// Reads a service's stdout until it prints the address it listens on.
pub fn listening_address(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
    until_listening(lines).0
}

/// The address a service listens on and the lines it printed before.
fn until_listening(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> (String, Vec<String>) {
    let mut earlier = Vec::new();
    for line in lines.map_while(Result::ok) {
        match line.split_once("listening on http://") {
            Some((_, rest)) => return (rest.trim().to_owned(), earlier),
            None => earlier.push(line),
        }
    }
    panic!("the service ended before printing its address: {earlier:?}")
}

/// The value of the metric whose line starts with `prefix` (name and
/// labels) in a `GET /metrics` text; panics when there is none.
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}
