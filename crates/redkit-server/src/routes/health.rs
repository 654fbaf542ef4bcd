//! `GET /health` and `GET /health/redis`.
//!
//! Load balancers read the status code: 200 while the service can serve
//! (healthy or degraded — degraded includes "Redis is down but the embedded
//! fallback serves"), 503 when it cannot — or when Redis refuses this
//! instance for good (wrong password, missing permission, unknown
//! database): the instance then serves apart from the others, and must
//! leave the rotation until its settings are fixed.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redkit::health::{HealthReport, HealthStatus};
use serde::Serialize;

use crate::server::AppState;

#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    status: HealthStatus,
    backend: redkit::store::Backend,
    serving: redkit::store::Backend,
    connection: Option<redkit::connection::ConnectionState>,
    ping_ms: Option<f64>,
    reasons: Vec<String>,
}

fn code(report: &HealthReport) -> StatusCode {
    match report.status {
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
    }
}

/// Status, backend and reasons: small enough for a probe every second.
pub(crate) async fn summary(State(state): State<AppState>) -> (StatusCode, Json<Summary>) {
    let report = state.kit.health().await;
    let summary = Summary {
        status: report.status,
        backend: report.backend,
        serving: report.serving,
        connection: report.redis.as_ref().map(|redis| redis.state),
        ping_ms: report.redis.as_ref().and_then(|redis| redis.ping_ms),
        reasons: report.reasons.clone(),
    };
    (code(&report), Json(summary))
}

/// The whole report: INFO essentials, dbsize, embedded store statistics.
pub(crate) async fn report(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let report = state.kit.health().await;
    (code(&report), Json(report))
}
