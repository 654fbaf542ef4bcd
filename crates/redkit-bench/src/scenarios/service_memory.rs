//! `service_memory`: the reference service's resident memory with 10k live
//! sessions and 1k SSE clients.
//!
//! The service runs as its own process — the `redkit` binary built beside
//! this harness (`cargo build --release -p redkit-server -p redkit-bench`)
//! — so its `VmRSS` is the service's alone, not the load generator's. It
//! gets the harness' Redis, a temporary SQLite file, a connection cap and an
//! API limit this load does not reach, and otherwise its defaults.
//!
//! Steps, with the service's `VmRSS` read after each (after a short settle):
//! 1. started, idle;
//! 2. 10,000 sessions created in Redis through redkit's `Sessions` API (as a
//!    login writes them: one user each, no password hashing), each used once
//!    by `GET /tasks` over 50 keep-alive connections — so the service holds
//!    what it keeps per live session: its local session cache, touch memo,
//!    index refresh memo and each user's cached first page;
//! 3. 1,000 of them open `GET /events` (SSE) and stay connected.
//!
//! The report's `ops_per_sec` is the session requests per second of step 2;
//! the figures are in `details` (bytes), and no target is set.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{COOKIE, HOST, HeaderValue, SET_COOKIE};
use hyper::{Request, Uri};
use redkit::session::{SessionConfig, Sessions};

use super::progress;
use crate::env::Env;
use crate::report::Report;

const NAME: &str = "service_memory";
const SESSIONS: usize = 10_000;
const SSE_CLIENTS: usize = 1_000;
const CONNECTIONS: usize = 50;

/// The service process; killed when dropped.
struct ServiceProcess {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServiceProcess {
    fn start(env: &Env) -> Self {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("redkit")))
            .filter(|path| path.exists())
            .unwrap_or_else(|| {
                panic!(
                    "{NAME} runs the `redkit` binary built beside redkit-bench: \
                     cargo build --release -p redkit-server -p redkit-bench"
                )
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|err| panic!("free port: {err}"))
            .port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("temp dir: {err}"));
        let child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg(address.to_string())
            .arg("--db")
            .arg(dir.path().join("redkit.db"))
            .arg("--max-connections")
            .arg("4096")
            .arg("--api-rate-limit")
            .arg("100000000/1m")
            .env("REDIS_URL", &env.url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("starting the service: {err}"));
        ServiceProcess {
            child,
            address,
            _dir: dir,
        }
    }

    /// The service's resident memory, in bytes.
    fn resident_bytes(&self) -> u64 {
        crate::measure::resident_bytes(&self.child.id().to_string())
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut sender) = super::http_kit::connect(self.address, None).await
                && let Ok((status, _)) = get(&mut sender, self.address, "/health/live", None).await
                && status == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not start within 30 s");
    }
}

pub(super) async fn service_memory(env: &Env) -> Report {
    let service = ServiceProcess::start(env);
    service.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = service.resident_bytes();
    progress(NAME, &format!("idle: {} KiB", idle / 1024));

    progress(NAME, &format!("creating {SESSIONS} sessions"));
    let kit = env.redkit().await;
    let sessions = Sessions::new(kit.store().clone(), SessionConfig::default())
        .unwrap_or_else(|err| panic!("sessions: {err}"));
    let mut cookies = Vec::with_capacity(SESSIONS);
    let cookie = redkit::session::SessionCookie::new(redkit_server::auth::COOKIE_NAME)
        .unwrap_or_else(|err| panic!("cookie: {err}"));
    // User ids far from the ones other scenarios register.
    let user_base = 1_000_000;
    for user in 0..SESSIONS {
        let mut data = serde_json::Map::new();
        data.insert("username".to_owned(), format!("mem{user}").into());
        let session = sessions
            .create(&(user_base + user).to_string(), data)
            .await
            .unwrap_or_else(|err| panic!("session: {err}"));
        let headers = cookie.set_headers(&session.id, Duration::from_secs(3600));
        let pair = headers
            .get(SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .and_then(|pair| HeaderValue::from_str(pair).ok())
            .unwrap_or_else(|| panic!("cookie header"));
        cookies.push(pair);
    }

    progress(NAME, "one GET /tasks per session");
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let mine: Vec<HeaderValue> = cookies
                .iter()
                .skip(worker)
                .step_by(CONNECTIONS)
                .cloned()
                .collect();
            let address = service.address;
            tokio::spawn(async move {
                let mut sender = super::http_kit::connect(address, None)
                    .await
                    .unwrap_or_else(|err| panic!("{err}"));
                for cookie in mine {
                    let (status, _) = get(&mut sender, address, "/tasks", Some(cookie))
                        .await
                        .unwrap_or_else(|err| panic!("GET /tasks: {err}"));
                    assert_eq!(status, StatusCode::OK, "GET /tasks");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap_or_else(|err| panic!("{err}"));
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_sessions = service.resident_bytes();
    progress(
        NAME,
        &format!("after {SESSIONS} sessions: {} KiB", with_sessions / 1024),
    );

    progress(NAME, &format!("opening {SSE_CLIENTS} SSE clients"));
    let mut streams = Vec::with_capacity(SSE_CLIENTS);
    for cookie in cookies.iter().take(SSE_CLIENTS) {
        let mut sender = super::http_kit::connect(service.address, None)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = Uri::from_static("/events");
        request.headers_mut().insert(
            HOST,
            HeaderValue::try_from(service.address.to_string())
                .unwrap_or_else(|err| panic!("{err}")),
        );
        request.headers_mut().insert(COOKIE, cookie.clone());
        let response = sender
            .send_request(request)
            .await
            .unwrap_or_else(|err| panic!("GET /events: {err}"));
        assert_eq!(response.status(), StatusCode::OK, "GET /events");
        // Kept open (body unread beyond what the socket buffers).
        streams.push((sender, response));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_streams = service.resident_bytes();
    progress(
        NAME,
        &format!(
            "with {SSE_CLIENTS} SSE clients: {} KiB",
            with_streams / 1024
        ),
    );
    drop(streams);
    for user in 0..SESSIONS {
        let _ = sessions.destroy_all(&(user_base + user).to_string()).await;
    }

    let mut details = serde_json::Map::new();
    details.insert("sessions".to_owned(), SESSIONS.into());
    details.insert("sse_clients".to_owned(), SSE_CLIENTS.into());
    details.insert("rss_idle_bytes".to_owned(), idle.into());
    details.insert("rss_with_sessions_bytes".to_owned(), with_sessions.into());
    details.insert("rss_with_sse_bytes".to_owned(), with_streams.into());
    details.insert(
        "bytes_per_session".to_owned(),
        (with_sessions.saturating_sub(idle) / SESSIONS as u64).into(),
    );
    details.insert(
        "bytes_per_sse_client".to_owned(),
        (with_streams.saturating_sub(with_sessions) / SSE_CLIENTS as u64).into(),
    );
    Report {
        scenario: NAME.to_owned(),
        ops_per_sec: SESSIONS as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: 0.0,
        p99_us: 0.0,
        baseline: "service RSS (details)".to_owned(),
        baseline_ops_per_sec: None,
        ratio: None,
        target: None,
        met: None,
        details,
    }
}

/// One GET, read to the end.
async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    address: SocketAddr,
    path: &'static str,
    cookie: Option<HeaderValue>,
) -> Result<(StatusCode, usize), String> {
    sender.ready().await.map_err(|err| err.to_string())?;
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = Uri::from_static(path);
    request.headers_mut().insert(
        HOST,
        HeaderValue::try_from(address.to_string()).map_err(|err| err.to_string())?,
    );
    if let Some(cookie) = cookie {
        request.headers_mut().insert(COOKIE, cookie);
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    Ok((status, body.len()))
}
