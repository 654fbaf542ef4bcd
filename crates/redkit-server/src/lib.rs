//! `redkit serve`: the reference service, built on redkit's public API only.
//!
//! This first cut serves the operator endpoints every later feature reports
//! through: `GET /health` (200 when healthy or degraded, 503 when unhealthy),
//! `GET /health/redis` (the whole [`redkit::health::HealthReport`]) and
//! `GET /metrics` (Prometheus text). Configuration is parsed at the edge
//! (`main.rs`, [`cli`]); everything below takes typed values.

pub mod cli;
mod error;
mod metrics;
mod routes;
mod server;

pub use error::ServerError;
pub use metrics::install_metrics_recorder;
pub use server::{AppState, RunningServer, bind as server_bind, router, serve};
