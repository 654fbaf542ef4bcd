//! `http_tasks_cached`: the reference service's `GET /tasks` (cached) over
//! HTTP/1.1 keep-alive, against a trivial axum route driven by the same load
//! generator.
//!
//! What is compared, and why it is fair to both sides:
//!
//! - **Same process, same runtime.** The service under test, the baseline
//!   server and the load generator all run on the harness's multi-threaded
//!   tokio runtime (one worker per core), so both sides share the two cores
//!   with their client in the same way; neither gets a runtime of its own.
//! - **Same transport.** Both servers are served by `axum::serve` on a plain
//!   `TcpListener` with `ConnectInfo` (as `redkit_server::serve` does); the
//!   client opens `--connections` persistent HTTP/1.1 connections
//!   (`TCP_NODELAY`, one per load task, opened before each run) and sends
//!   one request after another on each, reading every body to the end.
//! - **Same bytes back.** The baseline route returns, from a static `Bytes`,
//!   the exact JSON body `GET /tasks` returns (same length, `application/json`),
//!   so the ratio measures the service's stack — the rate-limit layer
//!   (`EVALSHA`), the session extractor (a `GET`), the cache's L1 hit, the
//!   JSON encoding of the tasks — and not the size of the response.
//! - **A lean client.** Each load task owns its connection (no lock, no
//!   shared pool), builds its request from pre-parsed parts (URI, `Host`,
//!   `Cookie`: reference-counted clones) and discards the body frames after
//!   counting their bytes. Profiled on the baseline, the client takes about
//!   as much CPU as the server (≈ 40 % each, two thirds of it in the
//!   kernel's loopback TCP); polling each connection's I/O inside its load
//!   task instead of hyper's spawned connection task did not lower that
//!   share and made the service's runs slower, so the client uses hyper as
//!   documented.
//!
//! A response that is not `200` with the expected body length counts as an
//! error; a run with errors does not meet its target and says so.
//!
//! This scenario installs the service's Prometheus recorder (as the `redkit`
//! binary does), so redkit handles built after it record metrics; it runs
//! after the other scenarios.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, COOKIE, HOST, HeaderMap, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, StatusCode, Uri};
use redkit::Redkit;
use redkit_server::{AppState, RunningServer, install_metrics_recorder};
use serde_json::json;

use super::http_kit::{
    Failures, baseline_server, connect, measure_clients, report_failures, service_config,
};
use super::progress;
use crate::env::Env;
use crate::measure::{self, Load, Measurement};
use crate::report::Report;

/// Tasks the benchmark user owns.
const TASKS: usize = 20;

/// Targets of the Redis-backed scenario.
const TARGET_RATIO: f64 = 0.50;
const TARGET_P99_US: f64 = 10_000.0;

/// Which store the service under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    /// The Redis given by `--redis` (or started by the harness).
    Redis,
    /// redkit's embedded store: no network round trip behind the service.
    Embedded,
}

pub(super) async fn tasks_cached(env: &Env, backend: Backend) -> Report {
    let name = match backend {
        Backend::Redis => "http_tasks_cached",
        Backend::Embedded => "http_tasks_cached_embedded",
    };
    // Before the redkit handle, as the binary does: handles built earlier
    // would record nowhere.
    let _ = install_metrics_recorder();
    let kit = match backend {
        Backend::Redis => env.redkit().await,
        Backend::Embedded => Redkit::builder()
            .build()
            .unwrap_or_else(|err| panic!("redkit: {err}")),
    };
    let running = Service::start(name, kit, true).await;
    let body = running.body.clone();
    let (baseline_address, baseline_task) = baseline_server(body.clone()).await;
    let service = running.target.clone();
    let baseline = Arc::new(Target::new(baseline_address, "/", None, body.len()));
    let connections = env.connections;
    let load = Load {
        tasks: connections,
        ..env.load
    };
    let paired = measure::paired(
        env.rounds,
        || {
            drive(
                name,
                "baseline: axum GET / (static body)",
                baseline.clone(),
                load,
            )
        },
        || drive(name, "GET /tasks (cached)", service.clone(), load),
    )
    .await;
    baseline_task.abort();
    running.stop().await;

    let (measured, base) = (paired.scenario, paired.baseline);
    let mut details = serde_json::Map::new();
    details.insert("connections".to_owned(), connections.into());
    details.insert("tasks".to_owned(), TASKS.into());
    details.insert("body_bytes".to_owned(), body.len().into());
    let clean = report_failures(name, &mut details, &service.failures, &baseline.failures);
    details.insert("rounds".to_owned(), super::rounds_json(&paired));
    let (target, met) = match backend {
        Backend::Redis => (
            Some(format!(
                "ratio >= {TARGET_RATIO:.2}, p99 < {:.0} ms",
                TARGET_P99_US / 1000.0
            )),
            Some(paired.ratio >= TARGET_RATIO && measured.p99_us < TARGET_P99_US && clean),
        ),
        Backend::Embedded => (None, None),
    };
    Report {
        scenario: name.to_owned(),
        ops_per_sec: measured.ops_per_sec,
        p50_us: measured.p50_us,
        p99_us: measured.p99_us,
        baseline: format!("axum GET / (same {} B JSON body)", body.len()),
        baseline_ops_per_sec: Some(base.ops_per_sec),
        ratio: Some(paired.ratio),
        target,
        met,
        details,
    }
}

/// The service under test, started in process with one user and its tasks.
struct Service {
    server: RunningServer,
    /// `GET /tasks` with the user's cookie.
    target: Arc<Target>,
    /// The body `GET /tasks` answers.
    body: Bytes,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service on `kit` (accepted sockets with `TCP_NODELAY`
    /// when `nodelay`), registers the user and creates its tasks.
    async fn start(name: &str, kit: Redkit, nodelay: bool) -> Self {
        let metrics = install_metrics_recorder();
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("temp dir: {err}"));
        let mut config = service_config(dir.path());
        config.connections.tcp_nodelay = nodelay;
        let state = AppState::new(kit, metrics, config)
            .await
            .unwrap_or_else(|err| panic!("service: {err}"));
        let server = RunningServer::start(([127, 0, 0, 1], 0).into(), state)
            .await
            .unwrap_or_else(|err| panic!("service: {err}"));
        progress(
            name,
            &format!("service on {}, one user with {TASKS} tasks", server.address),
        );
        let (cookie, body) = fill(server.address).await;
        let target = Arc::new(Target::new(
            server.address,
            "/tasks",
            Some(cookie),
            body.len(),
        ));
        Service {
            server,
            target,
            body,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.server
            .stop()
            .await
            .unwrap_or_else(|err| panic!("stopping the service: {err}"));
    }
}

/// `http_tcp_nodelay_off`: the A/B of `TCP_NODELAY` on the service's
/// accepted sockets. Two instances of the service on the same Redis (each
/// under its own key prefix, so neither reads the other's cache), one with
/// the option (the default: the baseline), one without, driven alternately
/// with the `http_tasks_cached` load; ratio = without ÷ with.
pub(super) async fn tcp_nodelay_off(env: &Env) -> Report {
    const NAME: &str = "http_tcp_nodelay_off";
    let _ = install_metrics_recorder();
    let with = Service::start(NAME, env.redkit().await, true).await;
    let without =
        Service::start(NAME, env.redkit_prefixed("bench-nodelay-off:").await, false).await;
    let load = Load {
        tasks: env.connections,
        ..env.load
    };
    let paired = measure::paired(
        env.rounds,
        || drive(NAME, "TCP_NODELAY on", with.target.clone(), load),
        || drive(NAME, "TCP_NODELAY off", without.target.clone(), load),
    )
    .await;
    let errors = with.target.failures.count() + without.target.failures.count();
    with.stop().await;
    without.stop().await;
    let mut report = super::ratio_report(
        NAME,
        "the same service with TCP_NODELAY (GET /tasks, cached)",
        paired,
        None,
    );
    report.details.insert("errors".to_owned(), errors.into());
    report
}

/// Registers the benchmark user, creates its tasks and reads the list once
/// (which fills the cache); returns the session cookie and the list's body.
async fn fill(address: SocketAddr) -> (HeaderValue, Bytes) {
    let credentials = json!({"username": "bench", "password": "bench-password"});
    let (status, headers, body) = call(
        address,
        Method::POST,
        "/auth/register",
        None,
        Some(credentials),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "register: {}",
        String::from_utf8_lossy(&body)
    );
    let cookie = headers
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .and_then(|pair| HeaderValue::from_str(pair).ok())
        .unwrap_or_else(|| panic!("register: no session cookie"));
    for i in 0..TASKS {
        let task = json!({
            "title": format!("Task {i}: write the quarterly report"),
            "description": "Collect the figures, draft the summary, send it for review.",
            "done": i % 3 == 0,
        });
        let (status, _, body) =
            call(address, Method::POST, "/tasks", Some(&cookie), Some(task)).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _, body) = call(address, Method::GET, "/tasks", Some(&cookie), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "list: {}",
        String::from_utf8_lossy(&body)
    );
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&body).unwrap_or_else(|err| panic!("list: {err}"));
    assert_eq!(listed.len(), TASKS, "list: wrong number of tasks");
    (cookie, body)
}

/// One request on a connection of its own (setup only).
pub(super) async fn call(
    address: SocketAddr,
    method: Method,
    path: &str,
    cookie: Option<&HeaderValue>,
    body: Option<serde_json::Value>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut sender = connect::<Full<Bytes>>(address, None)
        .await
        .unwrap_or_else(|err| panic!("connect to {address}: {err}"));
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, address.to_string());
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie.clone());
    }
    let content = match body {
        Some(body) => {
            request = request.header(CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(content))
        .unwrap_or_else(|err| panic!("request: {err}"));
    let response = sender
        .send_request(request)
        .await
        .unwrap_or_else(|err| panic!("{path}: {err}"));
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .unwrap_or_else(|err| panic!("{path}: {err}"))
        .to_bytes();
    (parts.status, parts.headers, body)
}

/// Where the load goes, what a good response looks like, and the errors.
#[derive(Debug)]
struct Target {
    address: SocketAddr,
    path: Uri,
    host: HeaderValue,
    cookie: Option<HeaderValue>,
    body_len: usize,
    failures: Failures,
}

impl Target {
    fn new(address: SocketAddr, path: &str, cookie: Option<HeaderValue>, body_len: usize) -> Self {
        Target {
            address,
            path: Uri::try_from(path).unwrap_or_else(|err| panic!("{path}: {err}")),
            host: HeaderValue::try_from(address.to_string())
                .unwrap_or_else(|err| panic!("{address}: {err}")),
            cookie,
            body_len,
            failures: Failures::default(),
        }
    }
}

/// Opens the connections, then drives `target` with one closed-loop task
/// per connection.
async fn drive(name: &str, what: &str, target: Arc<Target>, load: Load) -> Measurement {
    let mut clients = Vec::with_capacity(load.tasks);
    for _ in 0..load.tasks {
        let sender = connect(target.address, None)
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {err}", target.address));
        clients.push(Client {
            target: target.clone(),
            sender: Some(sender),
        });
    }
    measure_clients(name, what, &target.failures, load, clients, |client, _| {
        client.get()
    })
    .await
}

/// One load task's keep-alive connection.
struct Client {
    target: Arc<Target>,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

/// Why a request failed, and whether its connection can be used again.
struct Failure {
    problem: String,
    reconnect: bool,
}

impl Failure {
    fn transport(problem: impl std::fmt::Display) -> Self {
        Failure {
            problem: problem.to_string(),
            reconnect: true,
        }
    }
}

impl Client {
    /// One `GET`, read to the end; failures are counted on the target.
    async fn get(mut self) -> Self {
        if let Err(failure) = self.try_get().await {
            if failure.reconnect {
                self.sender = None;
            }
            self.target.failures.record(failure.problem);
        }
        self
    }

    async fn try_get(&mut self) -> Result<(), Failure> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            none => match connect(self.target.address, None).await {
                Ok(sender) => none.insert(sender),
                Err(err) => {
                    // Do not spin on a server that refuses connections.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return Err(Failure::transport(format!("connect: {err}")));
                }
            },
        };
        sender.ready().await.map_err(Failure::transport)?;
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.target.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.target.host.clone());
        if let Some(cookie) = &self.target.cookie {
            headers.insert(COOKIE, cookie.clone());
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(Failure::transport)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.map_err(Failure::transport)?.data_ref() {
                len += data.len();
            }
        }
        if status != StatusCode::OK || len != self.target.body_len {
            return Err(Failure {
                problem: format!("status {status}, {len} B body"),
                reconnect: false,
            });
        }
        Ok(())
    }
}
