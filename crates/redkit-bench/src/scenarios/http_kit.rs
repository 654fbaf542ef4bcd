//! What the HTTP scenarios share: the service's configuration, the trivial
//! axum baseline server, keep-alive client connections, and the failures
//! seen on each side and how a report shows them.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use redkit::ratelimit::Policy;
use redkit_server::ServiceConfig;
use tokio::net::{TcpListener, TcpSocket};

use super::progress;
use crate::measure::{self, Load, Measurement};

/// The service's configuration in every HTTP scenario: a database in `dir`,
/// and rate limiting in the path with limits no run reaches (the API limit
/// is the largest per minute a policy allows: limit × window below 2^53 µs;
/// registration is limited per IP in Redis, across runs of the harness).
pub(super) fn service_config(dir: &std::path::Path) -> ServiceConfig {
    let mut config = ServiceConfig::with_database(dir.join("redkit.db"));
    config.api_policy = Some(
        Policy::new("api", 100_000_000, Duration::from_secs(60))
            .unwrap_or_else(|err| panic!("policy: {err}")),
    );
    config.auth_policy = Some(
        Policy::new("auth", 1_000_000, Duration::from_secs(60))
            .unwrap_or_else(|err| panic!("policy: {err}")),
    );
    config
}

/// The baseline: every method and path answered `200` with `body` as JSON,
/// served like the service (`axum::serve`, plain listener, `ConnectInfo`).
pub(super) async fn baseline_server(body: Bytes) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let router = Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
        }
    });
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap_or_else(|err| panic!("baseline: {err}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|err| panic!("baseline: {err}"));
    let task = tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("baseline server: {err}");
        }
    });
    (address, task)
}

/// A keep-alive HTTP/1.1 connection to `address` (`TCP_NODELAY`), from
/// loopback address `source` when given, its I/O driven by a task of its
/// own (as hyper documents it).
pub(super) async fn connect<B>(
    address: SocketAddr,
    source: Option<Ipv4Addr>,
) -> Result<SendRequest<B>, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let socket = TcpSocket::new_v4().map_err(|err| err.to_string())?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .map_err(|err| err.to_string())?;
    }
    let stream = socket
        .connect(address)
        .await
        .map_err(|err| err.to_string())?;
    stream.set_nodelay(true).map_err(|err| err.to_string())?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Failed requests of one side: how many, and the first one's problem.
#[derive(Debug, Default)]
pub(super) struct Failures {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Failures {
    pub(super) fn record(&self, problem: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.first.lock().get_or_insert(problem);
    }

    pub(super) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Puts both sides' failures in a report's `details` (`errors`,
/// `baseline_errors`, `first_error`, `baseline_first_error`) and warns on
/// stderr when there were any; returns whether there were none.
pub(super) fn report_failures(
    name: &str,
    details: &mut serde_json::Map<String, serde_json::Value>,
    service: &Failures,
    baseline: &Failures,
) -> bool {
    let (errors, baseline_errors) = (service.count(), baseline.count());
    details.insert("errors".to_owned(), errors.into());
    details.insert("baseline_errors".to_owned(), baseline_errors.into());
    for (side, failures) in [("first_error", service), ("baseline_first_error", baseline)] {
        if let Some(problem) = failures.first.lock().clone() {
            details.insert(side.to_owned(), problem.into());
        }
    }
    if errors + baseline_errors > 0 {
        eprintln!(
            "  {name}: WARNING: {errors} failed requests to the service, \
             {baseline_errors} to the baseline"
        );
    }
    errors + baseline_errors == 0
}

/// Drives `clients` (one closed-loop task each) with `op` and prints the
/// run's rate, latency and the failures recorded in `failures` meanwhile.
pub(super) async fn measure_clients<C, F, Fut>(
    name: &str,
    what: &str,
    failures: &Failures,
    load: Load,
    clients: Vec<C>,
    op: F,
) -> Measurement
where
    C: Send + 'static,
    F: Fn(C, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = C> + Send,
{
    let errors_before = failures.count();
    let measured = measure::measure_with(load, clients, op).await;
    let errors = failures.count() - errors_before;
    progress(
        name,
        &format!(
            "{what}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {errors} errors",
            measured.ops_per_sec, measured.p50_us, measured.p99_us
        ),
    );
    measured
}
