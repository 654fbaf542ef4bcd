//! `http_tasks_mixed` and `http_tasks_mixed_exact`: the reference service
//! under a realistic mix, next to `http_tasks_cached`'s best case.
//!
//! - **1,000 users**, each with their own session cookie and 20 tasks;
//! - **100 keep-alive connections from 50 client addresses** (loopback
//!   source addresses `127.0.0.2` … `127.0.0.51`, two connections each), so
//!   the API limit counts 50 keys; a user always comes from the same address
//!   (user `u` from address `u mod 50`), and each request of a connection
//!   picks one of its address' 20 users at random;
//! - **90 % `GET /tasks?limit=20`** (the user's first page, cached), **5 %
//!   `PATCH /tasks/{id}`** (flips `done` of one of the user's first 20
//!   tasks), **5 % `POST /tasks`** (a new task, after the first page, so the
//!   page keeps its size); both writes invalidate the user's cached pages, so
//!   sessions, rate-limit keys and cache entries are cold and hot in a
//!   realistic spread;
//! - the API limit is set where this load does not reach it.
//!
//! `_exact` runs the service with its two local layers off (no session
//! cache, no rate-limit leases): every request reads its session from Redis
//! and counts in Redis.
//!
//! **Setup, bounded:** one user registers through `POST /auth/register` (one
//! argon2 hash, the real path); the 999 others are inserted into the
//! service's database with that user's password hash, and their sessions
//! are created through redkit's `Sessions` API with the data a login writes
//! — 1,000 argon2 hashes would cost ~30 s of CPU per run and measure nothing
//! this scenario is about. Tasks are inserted through the database API.
//!
//! **Baseline, same run:** a trivial axum route answering every method and
//! path with a static copy of one user's first page (`200`), driven by the
//! identical client: same connections, source addresses, requests, bodies
//! and cookies.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, COOKIE, HOST, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, StatusCode, Uri};
use redkit_server::db::{NewTask, NewUserOutcome};
use redkit_server::{AppState, RunningServer, install_metrics_recorder};
use serde_json::json;

use super::http_kit::{
    Failures, baseline_server, connect, measure_clients, report_failures, service_config,
};
use super::progress;
use crate::env::Env;
use crate::measure::{self, Load, Measurement};
use crate::report::Report;

const USERS: usize = 1000;
const TASKS_PER_USER: usize = 20;
const SOURCE_ADDRESSES: usize = 50;
const PAGE: &str = "/tasks?limit=20";
const TARGET_RATIO: f64 = 0.35;
const TARGET_P99_US: f64 = 20_000.0;

/// One benchmark user: the cookie to send and the ids of its first tasks.
struct User {
    cookie: HeaderValue,
    tasks: Vec<i64>,
}

pub(super) async fn tasks_mixed(env: &Env, exact: bool) -> Report {
    let name = if exact {
        "http_tasks_mixed_exact"
    } else {
        "http_tasks_mixed"
    };
    let metrics = install_metrics_recorder();
    let kit = env.redkit().await;
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("temp dir: {err}"));
    let mut config = service_config(dir.path());
    if exact {
        config.sessions = config
            .sessions
            .local_cache(Duration::ZERO)
            .local_fail_safe(Duration::ZERO);
        config.rate_limit_leases = None;
    }
    let state = AppState::new(kit, metrics, config)
        .await
        .unwrap_or_else(|err| panic!("service: {err}"));
    // Pages an earlier run cached for the same user ids (other tasks).
    let _ = state.tasks.clear().await;
    let server = RunningServer::start(([127, 0, 0, 1], 0).into(), state.clone())
        .await
        .unwrap_or_else(|err| panic!("service: {err}"));
    progress(
        name,
        &format!(
            "service on {}, {USERS} users with {TASKS_PER_USER} tasks each",
            server.address
        ),
    );
    let users = Arc::new(fill(&state, server.address).await);
    let (status, _, body) = super::http::call(
        server.address,
        Method::GET,
        PAGE,
        Some(&users[0].cookie),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "first page");
    let (baseline_address, baseline_task) = baseline_server(body.clone()).await;

    let service = Arc::new(Target::new(server.address, false));
    let baseline = Arc::new(Target::new(baseline_address, true));
    let load = Load {
        tasks: env.connections,
        ..env.load
    };
    let paired = measure::paired(
        env.rounds,
        || {
            drive(
                name,
                "baseline: axum fallback route",
                baseline.clone(),
                users.clone(),
                load,
            )
        },
        || {
            drive(
                name,
                "90 % GET, 5 % PATCH, 5 % POST",
                service.clone(),
                users.clone(),
                load,
            )
        },
    )
    .await;
    baseline_task.abort();
    // The users' sessions and indexes, so runs do not pile them up.
    for user in 1..=USERS {
        let _ = state.sessions.destroy_all(&user.to_string()).await;
    }
    server
        .stop()
        .await
        .unwrap_or_else(|err| panic!("stopping the service: {err}"));
    drop(dir);

    let (measured, base) = (paired.scenario, paired.baseline);
    let mut details = serde_json::Map::new();
    details.insert("connections".to_owned(), env.connections.into());
    details.insert("users".to_owned(), USERS.into());
    details.insert("source_addresses".to_owned(), SOURCE_ADDRESSES.into());
    details.insert("body_bytes".to_owned(), body.len().into());
    let clean = report_failures(name, &mut details, &service.failures, &baseline.failures);
    details.insert("rounds".to_owned(), super::rounds_json(&paired));
    let by_kind = service.latency_by_kind();
    progress(name, &format!("latency by kind of request: {by_kind}"));
    details.insert("latency_by_kind".to_owned(), by_kind);
    let met = paired.ratio >= TARGET_RATIO && measured.p99_us < TARGET_P99_US && clean;
    Report {
        scenario: name.to_owned(),
        ops_per_sec: measured.ops_per_sec,
        p50_us: measured.p50_us,
        p99_us: measured.p99_us,
        baseline: format!(
            "axum route, same requests (static {} B JSON body)",
            body.len()
        ),
        baseline_ops_per_sec: Some(base.ops_per_sec),
        ratio: Some(paired.ratio),
        target: Some(format!(
            "ratio >= {TARGET_RATIO:.2}, p99 < {:.0} ms",
            TARGET_P99_US / 1000.0
        )),
        met: Some(met),
        details,
    }
}

/// Creates the users, their sessions and tasks (see the module docs).
async fn fill(state: &AppState, address: SocketAddr) -> Vec<User> {
    let credentials = json!({"username": "mix0", "password": "bench-password"});
    let (status, headers, body) = super::http::call(
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
    let first_cookie = cookie_pair(
        headers
            .get(SET_COOKIE)
            .unwrap_or_else(|| panic!("register: no session cookie")),
    );
    let hash = state
        .db
        .find_user_by_name("mix0")
        .await
        .unwrap_or_else(|err| panic!("find user: {err}"))
        .unwrap_or_else(|| panic!("the registered user is missing"))
        .password_hash;
    let mut users = Vec::with_capacity(USERS);
    for index in 0..USERS {
        let (id, cookie) = if index == 0 {
            (1, first_cookie.clone())
        } else {
            let username = format!("mix{index}");
            let user = match state.db.create_user(&username, &hash, u32::MAX).await {
                Ok(NewUserOutcome::Created(user)) => user,
                Ok(other) => panic!("create user {username}: {other:?}"),
                Err(err) => panic!("create user {username}: {err}"),
            };
            let mut data = serde_json::Map::new();
            data.insert("username".to_owned(), username.into());
            let session = state
                .sessions
                .create(&user.id.to_string(), data)
                .await
                .unwrap_or_else(|err| panic!("session: {err}"));
            let headers = state
                .cookie_sessions
                .cookie()
                .set_headers(&session.id, Duration::from_secs(3600));
            let cookie = cookie_pair(
                headers
                    .get(SET_COOKIE)
                    .unwrap_or_else(|| panic!("no cookie header")),
            );
            (user.id, cookie)
        };
        assert_eq!(id, i64::try_from(index + 1).unwrap_or(0), "user ids");
        let mut tasks = Vec::with_capacity(TASKS_PER_USER);
        for i in 0..TASKS_PER_USER {
            let task = NewTask {
                title: format!("Task {i}: write the quarterly report"),
                description: "Collect the figures, draft the summary, send it for review."
                    .to_owned(),
                done: i % 3 == 0,
                due_at: None,
            };
            let created = state
                .db
                .create_task(id, &task, u32::MAX)
                .await
                .unwrap_or_else(|err| panic!("create task: {err}"))
                .unwrap_or_else(|| panic!("create task: no limit, yet refused"));
            tasks.push(created.id);
        }
        users.push(User { cookie, tasks });
    }
    users
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(header: &HeaderValue) -> HeaderValue {
    header
        .to_str()
        .ok()
        .and_then(|value| value.split(';').next())
        .and_then(|pair| HeaderValue::from_str(pair).ok())
        .unwrap_or_else(|| panic!("malformed Set-Cookie"))
}

/// Where the load goes, and the errors seen.
struct Target {
    address: SocketAddr,
    host: HeaderValue,
    /// The baseline answers `200` to everything.
    baseline: bool,
    failures: Failures,
    /// Latency (µs) of each kind of request over every round, in
    /// [`KINDS`] order: which of them makes the tail.
    by_kind: parking_lot::Mutex<[Histogram<u64>; 3]>,
}

/// The kinds of request of the mix.
const KINDS: [&str; 3] = ["GET", "PATCH", "POST"];

impl Target {
    fn new(address: SocketAddr, baseline: bool) -> Self {
        Target {
            address,
            host: HeaderValue::try_from(address.to_string())
                .unwrap_or_else(|err| panic!("{address}: {err}")),
            baseline,
            failures: Failures::default(),
            by_kind: parking_lot::Mutex::new(std::array::from_fn(|_| measure::new_histogram())),
        }
    }

    /// p50 and p99 (µs) and count of each kind of request, as JSON.
    fn latency_by_kind(&self) -> serde_json::Value {
        let by_kind = self.by_kind.lock();
        let kinds = KINDS.iter().zip(by_kind.iter()).map(|(kind, histogram)| {
            (
                (*kind).to_owned(),
                json!({
                    "requests": histogram.len(),
                    "p50_us": histogram.value_at_quantile(0.5),
                    "p99_us": histogram.value_at_quantile(0.99),
                }),
            )
        });
        serde_json::Value::Object(kinds.collect())
    }
}

/// Opens the connections (connection `c` from source address
/// `127.0.0.(2 + c mod 50)`), then drives them closed-loop.
async fn drive(
    name: &str,
    what: &str,
    target: Arc<Target>,
    users: Arc<Vec<User>>,
    load: Load,
) -> Measurement {
    let mut clients = Vec::with_capacity(load.tasks);
    for connection in 0..load.tasks {
        let source = connection % SOURCE_ADDRESSES;
        let sender = connect(target.address, source_address(source))
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {err}", target.address));
        clients.push(Client {
            target: target.clone(),
            users: users.clone(),
            source,
            sender: Some(sender),
            random: 0x9E37_79B9_7F4A_7C15 ^ (connection as u64 + 1),
        });
    }
    measure_clients(name, what, &target.failures, load, clients, |client, _| {
        client.request()
    })
    .await
}

/// One load task's keep-alive connection and its share of the users.
struct Client {
    target: Arc<Target>,
    users: Arc<Vec<User>>,
    /// Index of the source address; the connection serves the users `u`
    /// with `u mod 50` equal to it.
    source: usize,
    sender: Option<SendRequest<Full<Bytes>>>,
    random: u64,
}

impl Client {
    /// xorshift64*: cheap, deterministic per connection.
    fn next_random(&mut self) -> u64 {
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// One request of the mix; failures are counted on the target.
    async fn request(mut self) -> Self {
        let draw = self.next_random();
        let user_slot = usize::try_from(draw % (USERS / SOURCE_ADDRESSES) as u64).unwrap_or(0);
        let user = &self.users[user_slot * SOURCE_ADDRESSES + self.source];
        let (kind, method, path, body, expected) = match (draw >> 32) % 100 {
            0..90 => (0, Method::GET, PAGE.to_owned(), None, StatusCode::OK),
            90..95 => {
                let task =
                    user.tasks[usize::try_from((draw >> 40) % TASKS_PER_USER as u64).unwrap_or(0)];
                let body = json!({"done": (draw >> 48).is_multiple_of(2)}).to_string();
                (
                    1,
                    Method::PATCH,
                    format!("/tasks/{task}"),
                    Some(body),
                    StatusCode::OK,
                )
            }
            _ => {
                let body = json!({
                    "title": "A new task from the mix",
                    "description": "Created while others read their lists.",
                })
                .to_string();
                (
                    2,
                    Method::POST,
                    "/tasks".to_owned(),
                    Some(body),
                    StatusCode::CREATED,
                )
            }
        };
        let expected = if self.target.baseline {
            StatusCode::OK
        } else {
            expected
        };
        let cookie = user.cookie.clone();
        let started = std::time::Instant::now();
        let sent = self.send(method, &path, cookie, body, expected).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = self.target.by_kind.lock()[kind].record(micros.max(1));
        if let Err((problem, reconnect)) = sent {
            if reconnect {
                self.sender = None;
            }
            self.target.failures.record(problem);
        }
        self
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        cookie: HeaderValue,
        body: Option<String>,
        expected: StatusCode,
    ) -> Result<(), (String, bool)> {
        let transport = |error: &dyn std::fmt::Display| (error.to_string(), true);
        let sender = match &mut self.sender {
            Some(sender) => sender,
            none => match connect(self.target.address, source_address(self.source)).await {
                Ok(sender) => none.insert(sender),
                Err(err) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return Err((format!("connect: {err}"), true));
                }
            },
        };
        sender.ready().await.map_err(|err| transport(&err))?;
        let has_body = body.is_some();
        let mut request = Request::new(Full::new(body.map_or_else(Bytes::new, Bytes::from)));
        *request.method_mut() = method;
        *request.uri_mut() = Uri::try_from(path).map_err(|err| (err.to_string(), false))?;
        let headers = request.headers_mut();
        headers.insert(HOST, self.target.host.clone());
        headers.insert(COOKIE, cookie);
        if has_body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| transport(&err))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.map_err(|err| transport(&err))?.data_ref() {
                len += data.len();
            }
        }
        if status != expected || len == 0 {
            return Err((format!("{path}: status {status}, {len} B body"), false));
        }
        Ok(())
    }
}

/// Loopback source address number `source`: `127.0.0.(2 + source)`.
fn source_address(source: usize) -> Option<Ipv4Addr> {
    let octet = u8::try_from(2 + source).unwrap_or_else(|err| panic!("source {source}: {err}"));
    Some(Ipv4Addr::new(127, 0, 0, octet))
}
