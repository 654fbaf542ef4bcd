//! Wiring: state, router, listener and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use redkit::Redkit;
use redkit::cache::Cache;
use redkit::ratelimit::{RateLimitLayer, RateLimiter};
use redkit::session::{SessionId, Sessions};
use redkit::store::AnyStore;
use tokio::net::TcpListener;

use crate::api_error::ApiError;
use crate::auth::Passwords;
use crate::config::ServiceConfig;
use crate::dashboard::{self, Dashboard};
use crate::db::Database;
use crate::error::ServerError;
use crate::events::TaskEvents;
use crate::reminders::Reminders;
use crate::shutdown::Shutdown;
use crate::{auth, connections, events, routes, tasks};

/// How long shutdown waits for reminder deliveries in flight.
const REMINDER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What every handler can reach; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The redkit handle (store, connection, health).
    pub kit: Redkit,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The service's settings.
    pub config: Arc<ServiceConfig>,
    /// The SQLite database.
    pub db: Database,
    /// The task cache (namespace `tasks`), reported by `/health/redis`.
    pub tasks: Cache<AnyStore>,
    /// Sessions, shared by every instance on the same store.
    pub sessions: Sessions<AnyStore>,
    /// The rate limiter behind the auth and API policies.
    pub limiter: RateLimiter<AnyStore>,
    /// The bounded password-hashing pool.
    pub passwords: Passwords,
    /// Real-time task changes.
    pub events: TaskEvents,
    /// Reminders of due tasks (a job queue).
    pub reminders: Arc<Reminders>,
    /// The dashboard's sampled history (`/dashboard`).
    pub dashboard: Dashboard,
    /// Set when the service starts shutting down.
    pub shutdown: Shutdown,
}

impl AppState {
    /// Opens the database and builds the service's redkit parts on `kit`.
    pub async fn new(
        kit: Redkit,
        metrics: PrometheusHandle,
        config: ServiceConfig,
    ) -> Result<Self, ServerError> {
        let db = Database::open(&config.database).await?;
        let tasks = kit.cache("tasks").build().await?;
        let sessions = Sessions::new(session_store(kit.store()), config.sessions.clone())?;
        let mut limiter = RateLimiter::builder(kit.store().clone());
        if let Some((interval, share)) = config.rate_limit_leases {
            limiter = limiter.local_leases(interval, share);
        }
        let limiter = limiter.build()?;
        let passwords =
            Passwords::start(config.password_hashing).map_err(ServerError::HashingThreads)?;
        let shutdown = Shutdown::default();
        let events =
            TaskEvents::start(kit.store().clone(), config.events_kept, shutdown.clone()).await?;
        let reminders = Arc::new(Reminders::start(&kit, db.clone(), events.clone())?);
        let dashboard = Dashboard::start(
            kit.clone(),
            tasks.clone(),
            limiter.clone(),
            config.dashboard_interval,
            shutdown.clone(),
        );
        Ok(AppState {
            kit,
            metrics,
            config: Arc::new(config),
            db,
            tasks,
            sessions,
            limiter,
            passwords,
            events,
            reminders,
            dashboard,
            shutdown,
        })
    }

    /// The `Set-Cookie` header for session `id`.
    pub(crate) fn session_cookie(&self, id: &SessionId) -> axum::http::HeaderMap {
        auth::set_cookie(
            id,
            self.sessions.config().ttl.as_secs(),
            self.config.cookie_secure,
        )
    }
}

/// Where sessions live: Redis only when Redis is configured — never the
/// embedded fallback, which would not know sessions created before an
/// outage (every user would look logged out) and could keep alive a session
/// ended elsewhere. While Redis is down or hung, session-bound routes answer
/// 503 and clients keep their cookie.
fn session_store(store: &AnyStore) -> AnyStore {
    match store.redis_store() {
        Some(redis) => AnyStore::redis(redis.clone(), store.embedded_store().clone()),
        None => store.clone(),
    }
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    let config = &state.config;
    let ops = Router::new()
        .route("/health", get(routes::health::summary))
        .route("/health/redis", get(routes::health::report))
        .route("/metrics", get(routes::metrics::render));
    let dashboard_routes = Router::new()
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/data", get(dashboard::data));
    let mut credentials = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login));
    if let Some(policy) = &config.auth_policy {
        credentials = credentials.layer(
            RateLimitLayer::new(state.limiter.clone(), policy.clone())
                .scope("auth")
                .trusted_proxies(config.trusted_proxies.clone()),
        );
    }
    let account = Router::new()
        .route("/auth/logout", post(auth::logout))
        .route("/auth/logout-all", post(auth::logout_all))
        .route("/auth/me", get(auth::me));
    let mut api = Router::new()
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/tasks/{id}",
            get(tasks::get).patch(tasks::update).delete(tasks::delete),
        )
        .route("/events", get(events::events));
    if let Some(policy) = &config.api_policy {
        api = api.layer(
            RateLimitLayer::new(state.limiter.clone(), policy.clone())
                .scope("api")
                .trusted_proxies(config.trusted_proxies.clone()),
        );
    }
    Router::new()
        .merge(ops)
        .merge(dashboard_routes)
        .merge(credentials)
        .merge(account)
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            crate::deadline::enforce,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::record_request))
        .with_state(state)
}

/// A server running in the background (for tests and embedding).
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub address: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Binds `address` and serves `state` until [`RunningServer::stop`].
    pub async fn start(address: SocketAddr, state: AppState) -> Result<Self, ServerError> {
        let listener = bind(address).await?;
        let address = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { address, source })?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        Ok(RunningServer {
            address,
            shutdown,
            task,
        })
    }

    /// Stops accepting, ends event streams, drains requests, closes the
    /// database and Redis.
    pub async fn stop(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(());
        self.task
            .await
            .unwrap_or_else(|join| Err(ServerError::Serve(std::io::Error::other(join))))
    }
}

/// Binds the listen address.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind { address, source })
}

/// Serves until `shutdown` resolves, then ends event streams, lets
/// in-flight requests finish and closes the database and Redis.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (kit, db, stopping) = (state.kit.clone(), state.db.clone(), state.shutdown.clone());
    let reminders = state.reminders.clone();
    let limits = state.config.connections;
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.trigger();
        }
    };
    connections::serve(listener, router(state), limits, signal).await;
    stopping.trigger();
    // Deliveries in flight finish (or are left to another instance).
    reminders.shutdown(REMINDER_DRAIN).await;
    db.close().await;
    kit.shutdown().await;
    Ok(())
}
