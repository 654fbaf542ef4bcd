//! `redkit serve`: the reference service, a real-time task-manager API
//! built on redkit's public API only.
//!
//! - `POST /auth/register`, `/auth/login`, `/auth/logout`, `/auth/logout-all`,
//!   `GET /auth/me` ([`auth`]): argon2 passwords, redkit sessions in an
//!   `HttpOnly` cookie, the AUTH rate-limit policy;
//! - `GET|POST /tasks`, `GET|PATCH|DELETE /tasks/{id}` (`tasks`): SQLite
//!   ([`db`]) behind redkit's cache, tagged per user;
//! - `GET /events` ([`events`]): the user's task changes as Server-Sent
//!   Events, across instances through pub/sub;
//! - `GET /health/live`, `/health/ready`, `/health`: probes answered without
//!   Redis round trips (from a background probe);
//! - `GET /health/redis`, `/metrics`, `/dashboard`: operator routes, on their
//!   own listener with `admin_listen` and behind a bearer token with
//!   `admin_token`;
//! - `GET /dashboard` (`dashboard`): a live page of connection state, ping,
//!   cache hit rates, rate-limit rejections and memory, with a chart of the
//!   last minutes, sampled in the background; its JSON at `/dashboard/data`.
//!
//! - `redkit doctor` ([`doctor`]): audits the configured Redis.
//!
//! Configuration is parsed at the edge (`main.rs`, [`cli`]) into a
//! [`ServiceConfig`]; everything below takes typed values.

mod api_error;
pub mod auth;
pub mod cli;
mod config;
mod connections;
mod dashboard;
pub mod db;
mod deadline;
pub mod doctor;
mod error;
pub mod events;
mod json;
mod metrics;
pub mod queue_admin;
pub mod reminders;
mod routes;
mod server;
mod shutdown;
mod tasks;

pub use api_error::{ApiError, error_chain};
pub use auth::HashingLimits;
pub use config::ServiceConfig;
pub use connections::ConnectionLimits;
pub use dashboard::Dashboard;
pub use error::ServerError;
pub use metrics::install_metrics_recorder;
pub use server::{
    AppParts, AppState, RunningServer, admin_router, bind, local_address, router, serve,
    serve_with_admin,
};
pub use shutdown::Shutdown;
