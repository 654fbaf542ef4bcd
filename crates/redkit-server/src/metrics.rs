//! The Prometheus recorder behind `GET /metrics`, and the service's own
//! per-request metrics.
//!
//! redkit records through the `metrics` facade; the service installs the
//! Prometheus exporter once per process, before building the redkit handle
//! (handles registered earlier would record nowhere). [`record_request`]
//! adds `redkit_http_requests_total{method, route, status}` and
//! `redkit_http_request_duration_seconds{method, route}`, labelled by the
//! route template (`/tasks/{id}`, or `unmatched`), never the raw path, so
//! label sets stay bounded whatever clients send.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its
/// handle; later calls return the same handle.
///
/// # Panics
/// When another `metrics` recorder was installed first.
pub fn install_metrics_recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .unwrap_or_else(|err| panic!("cannot install the Prometheus recorder: {err}"));
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .unwrap_or_else(|err| panic!("cannot start the metrics upkeep thread: {err}"));
            handle
        })
        .clone()
}

/// Middleware recording every request's count and duration.
pub(crate) async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| intern(path.as_str()));
    let response = next.run(request).await;
    let status = intern(response.status().as_str());
    let labels = (method, route, status);
    let elapsed = started.elapsed().as_secs_f64();
    let handles = HANDLES.get_or_init(Default::default);
    if let Some((duration, count)) = handles.read().get(&labels) {
        duration.record(elapsed);
        count.increment(1);
        return response;
    }
    let (duration, count) = register(labels);
    duration.record(elapsed);
    count.increment(1);
    let mut handles = handles.write();
    if handles.len() < MAX_LABEL_SETS {
        handles.insert(labels, (duration, count));
    }
    response
}

/// A request's labels: method, route template, status.
type Labels = (&'static str, &'static str, &'static str);

/// The metrics of each label set seen, registered once: looking a metric
/// up by name and labels hashes all of them, twice per request (about 1 %
/// of the service's CPU in the HTTP mix). The recorder is installed before
/// any request is served (see the module docs), so these handles record
/// into it.
static HANDLES: OnceLock<parking_lot::RwLock<HashMap<Labels, (Histogram, Counter)>>> =
    OnceLock::new();

/// At most this many label sets keep their handles; past it (never with
/// this router) a request registers its metrics each time.
const MAX_LABEL_SETS: usize = 4096;

/// The duration histogram and the request counter of `labels`.
fn register((method, route, status): Labels) -> (Histogram, Counter) {
    let duration = metrics::histogram!(
        "redkit_http_request_duration_seconds",
        "method" => method,
        "route" => route,
    );
    let count = metrics::counter!(
        "redkit_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => status,
    );
    (duration, count)
}

/// The method's label: the standard ones by name, any other `other` (a
/// client must not be able to grow the label set).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find(|(standard, _)| standard == method)
        .map_or("other", |(_, name)| name)
}

/// Label values live for the whole process: a request then costs no
/// allocation for its labels. The set is bounded — route templates of the
/// router, status codes, and methods — because only those reach here
/// (`unmatched` stands for every unknown path).
fn intern(value: &str) -> &'static str {
    static INTERNED: OnceLock<parking_lot::RwLock<HashSet<&'static str>>> = OnceLock::new();
    const MAX: usize = 4096;
    let set = INTERNED.get_or_init(Default::default);
    if let Some(found) = set.read().get(value) {
        return found;
    }
    let mut set = set.write();
    if let Some(found) = set.get(value) {
        return found;
    }
    if set.len() >= MAX {
        return "other";
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}
