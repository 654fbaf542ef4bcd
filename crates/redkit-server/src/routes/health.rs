//! `GET /health/live`, `/health/ready`, `/health` and `/health/redis`.
//!
//! None of them makes Redis work: `live` does no I/O at all, the others
//! answer from the background probe's last report (taken every
//! `probe_interval`, see `dashboard::sampler`) and say how old it is
//! (`probe_age_ms`), so a load balancer polling them measures the service,
//! not Redis.
//!
//! - `live`: 200 while the process serves requests (restart it otherwise).
//! - `ready`: 200 when the service can serve its API — the probe is fresh,
//!   the verdict is not unhealthy, and with Redis configured, Redis answered
//!   (sessions live there only); 503 with the reason otherwise.
//! - `/health`: 200 while the service can serve (healthy, or degraded — for
//!   instance Redis down while the embedded fallback serves cached data),
//!   503 when it cannot or the last probe is stale — or when Redis refuses
//!   this instance for good (wrong password, missing permission, unknown
//!   database): the instance then serves apart from the others, and must
//!   leave the rotation until its settings are fixed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redkit::health::{HealthReport, HealthStatus};
use serde::Serialize;
use serde_json::json;

use crate::server::AppState;

#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    status: HealthStatus,
    backend: redkit::store::Backend,
    serving: redkit::store::Backend,
    connection: Option<redkit::connection::ConnectionState>,
    ping_ms: Option<f64>,
    reasons: Vec<String>,
    probe_age_ms: u64,
}

/// The whole report, with the age of the probe that took it.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    #[serde(flatten)]
    report: HealthReport,
    probe_age_ms: u64,
}

/// A probe older than this no longer vouches for the service: a few missed
/// intervals, or a probe stuck past any command timeout.
fn stale_after(state: &AppState) -> Duration {
    (state.dashboard.interval() * 3).max(Duration::from_secs(3))
}

fn millis(age: Duration) -> u64 {
    u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
}

fn code(report: &HealthReport, age: Duration, stale_after: Duration) -> StatusCode {
    match report.status {
        _ if age > stale_after => StatusCode::SERVICE_UNAVAILABLE,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
    }
}

fn stale_reason(age: Duration) -> String {
    format!(
        "the last health probe is {} ms old (the probe is stuck or the runtime is overloaded)",
        millis(age)
    )
}

/// The body when no probe was taken (unreachable once the state is built).
fn no_probe() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "starting", "reasons": ["no health probe yet"] })),
    )
}

/// GET /health/live: no I/O.
pub(crate) async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// GET /health/ready: can the service serve its API right now?
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let stale_after = stale_after(&state);
    state
        .dashboard
        .with_latest(|report, age| {
            let mut reasons = Vec::new();
            if age > stale_after {
                reasons.push(stale_reason(age));
            }
            if report.status == HealthStatus::Unhealthy {
                reasons.extend(report.reasons.iter().cloned());
            }
            if let Some(redis) = &report.redis
                && redis.ping_ms.is_none()
            {
                reasons.push(format!(
                    "redis at {} did not answer the last probe; sessions need it",
                    redis.address
                ));
            }
            let ready = reasons.is_empty();
            let body = json!({
                "status": if ready { "ready" } else { "not_ready" },
                "reasons": reasons,
                "probe_age_ms": millis(age),
            });
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, Json(body))
        })
        .unwrap_or_else(no_probe)
}

/// GET /health: status, backend and reasons, small enough for a probe every
/// second.
pub(crate) async fn summary(
    State(state): State<AppState>,
) -> (StatusCode, Json<serde_json::Value>) {
    let stale_after = stale_after(&state);
    state
        .dashboard
        .with_latest(|report, age| {
            let mut reasons = report.reasons.clone();
            if age > stale_after {
                reasons.push(stale_reason(age));
            }
            let summary = Summary {
                status: report.status,
                backend: report.backend,
                serving: report.serving,
                connection: report.redis.as_ref().map(|redis| redis.state),
                ping_ms: report.redis.as_ref().and_then(|redis| redis.ping_ms),
                reasons,
                probe_age_ms: millis(age),
            };
            let body = serde_json::to_value(summary).unwrap_or_default();
            (code(report, age, stale_after), Json(body))
        })
        .unwrap_or_else(no_probe)
}

/// GET /health/redis: the whole report — INFO essentials, dbsize, embedded
/// store statistics, caches — from the last probe.
pub(crate) async fn report(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let stale_after = stale_after(&state);
    state
        .dashboard
        .with_latest(|report, age| {
            let code = code(report, age, stale_after);
            let body = Report {
                report: report.clone(),
                probe_age_ms: millis(age),
            };
            (code, Json(serde_json::to_value(body).unwrap_or_default()))
        })
        .unwrap_or_else(no_probe)
}
