//! `GET /dashboard`: a live page for operators, and `GET /dashboard/data`,
//! the JSON it polls.
//!
//! Why: `/health/redis` and `/metrics` answer "now" for machines; during an
//! incident an operator wants the last minutes at a glance — is Redis up,
//! how fast, is the cache hitting, is the limiter rejecting — without a
//! Prometheus and Grafana setup. The page is one self-contained file built
//! into the binary (`page.html`: inline CSS and vanilla JS, no build step, no
//! CDN) that fetches `/dashboard/data` about every second and redraws in
//! place.
//!
//! Redis is only touched by the background sampler (`sampler.rs`), once per
//! `probe_interval`, however many browsers are open: the data endpoint
//! reads the sampler's last health report and its bounded history (about
//! five minutes), plus in-process counters (cache, rate limiter, SSE
//! clients, embedded store) that cost no round trip.

mod data;
mod sampler;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use redkit::Redkit;
use redkit::cache::Cache;
use redkit::health::HealthReport;
use redkit::ratelimit::RateLimiter;
use redkit::store::AnyStore;

pub(crate) use data::data;

use crate::shutdown::Shutdown;
use sampler::{Shared, Sources};

/// The page, served as is.
const PAGE: &str = include_str!("page.html");

/// Nothing from elsewhere: inline styles and script, fetches to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The service's background health probe and the dashboard's sampled
/// history; cheap to clone.
#[derive(Debug, Clone)]
pub struct Dashboard {
    shared: Arc<Mutex<Shared>>,
    interval: Duration,
}

impl Dashboard {
    /// Starts the sampler: one sample every `interval` from `kit`'s health
    /// report and the counters of `tasks` and `limiter`, until `shutdown`
    /// or until every clone of the dashboard is dropped.
    pub(crate) async fn start(
        kit: Redkit,
        tasks: Cache<AnyStore>,
        limiter: RateLimiter<AnyStore>,
        interval: Duration,
        shutdown: Shutdown,
    ) -> Self {
        let interval = sampler::effective_interval(interval);
        let shared = Arc::new(Mutex::new(Shared::new(sampler::capacity(interval))));
        let sources = Sources {
            kit,
            tasks,
            limiter,
        };
        // The first probe before serving: health endpoints always have a
        // report to answer from.
        let counters = sampler::Counters::read(&sources);
        let counters = sampler::probe(&sources, &shared, counters).await;
        tokio::spawn(sampler::run(
            sources,
            Arc::downgrade(&shared),
            interval,
            shutdown,
            counters,
        ));
        Dashboard { shared, interval }
    }

    /// The probe interval actually used.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Applies `read` to the last health report and its age; `None` before
    /// the first probe (never, once `start` returned).
    pub(crate) fn with_latest<R>(
        &self,
        read: impl FnOnce(&HealthReport, Duration) -> R,
    ) -> Option<R> {
        let shared = sampler::lock(&self.shared);
        let (taken_ms, report) = shared.latest()?;
        let age = Duration::from_millis(sampler::unix_ms().saturating_sub(*taken_ms));
        Some(read(report, age))
    }
}

/// GET /dashboard.
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}
