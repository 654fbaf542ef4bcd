//! Wiring: state, router, listener and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use redkit::Redkit;
use redkit::cache::Cache;
use redkit::ratelimit::{RateLimitLayer, RateLimiter};
use redkit::session::{CookieSessions, SessionCookie, SessionId, Sessions};
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

/// What every handler can reach, behind one reference count: axum clones
/// the state for every extractor and middleware of every request, and
/// cloning the parts one by one (each a handful of reference counts that
/// both cores touch) took about a tenth of the service's CPU on cached
/// reads (docs/BENCHMARKS.md, session 8).
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct AppParts {
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
    /// The same sessions behind their cookie, for redkit's extractors.
    pub cookie_sessions: CookieSessions,
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
        let cookie = SessionCookie::new(auth::COOKIE_NAME)?.secure(config.cookie_secure);
        let cookie_sessions = CookieSessions::new(sessions.clone(), cookie);
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
            config.probe_interval,
            shutdown.clone(),
        )
        .await;
        Ok(AppState(Arc::new(AppParts {
            kit,
            metrics,
            config: Arc::new(config),
            db,
            tasks,
            sessions,
            cookie_sessions,
            limiter,
            passwords,
            events,
            reminders,
            dashboard,
            shutdown,
        })))
    }

    /// The `Set-Cookie` header for session `id`.
    pub(crate) fn session_cookie(&self, id: &SessionId) -> axum::http::HeaderMap {
        self.cookie_sessions
            .cookie()
            .set_headers(id, self.sessions.config().ttl)
    }
}

impl FromRef<AppState> for CookieSessions {
    fn from_ref(state: &AppState) -> Self {
        state.cookie_sessions.clone()
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

/// The operator routes: metrics, the full health report, the dashboard —
/// behind the admin token when one is configured.
fn operator_routes(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/health/redis", get(routes::health::report))
        .route("/metrics", get(routes::metrics::render))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/data", get(dashboard::data));
    match &state.config.admin_token {
        Some(token) => routes.layer(axum::middleware::from_fn_with_state(
            token.clone(),
            routes::admin::require_token,
        )),
        None => routes,
    }
}

/// The admin listener's routes (`--admin-listen`): the operator routes only.
pub fn admin_router(state: AppState) -> Router {
    operator_routes(&state)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn(crate::metrics::record_request))
        .with_state(state)
}

/// The service's public routes; the operator routes too unless they have
/// their own listener (`admin_listen`).
pub fn router(state: AppState) -> Router {
    let config = &state.config;
    let mut ops = Router::new()
        .route("/health", get(routes::health::summary))
        .route("/health/live", get(routes::health::live))
        .route("/health/ready", get(routes::health::ready));
    if config.admin_listen.is_none() {
        ops = ops.merge(operator_routes(&state));
    }
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
    /// The admin listener's bound address, when `admin_listen` is set.
    pub admin_address: Option<SocketAddr>,
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
        let admin = match state.config.admin_listen {
            Some(admin) => Some(bind(admin).await?),
            None => None,
        };
        let admin_address = admin
            .as_ref()
            .map(|listener| local_address(listener, address))
            .transpose()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve_with_admin(listener, admin, state, async {
            let _ = stopped.await;
        }));
        Ok(RunningServer {
            address,
            admin_address,
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

/// The address `listener` is bound to.
pub fn local_address(listener: &TcpListener, asked: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        address: asked,
        source,
    })
}

/// Serves until `shutdown` resolves, then ends event streams, lets
/// in-flight requests finish and closes the database and Redis.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with_admin(listener, None, state, shutdown).await
}

/// [`serve`], with the operator routes on `admin` when it is given (bind it
/// from `admin_listen`).
pub async fn serve_with_admin(
    listener: TcpListener,
    admin: Option<TcpListener>,
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
    let admin_task = admin.map(|admin| {
        let app = admin_router(state.clone());
        let stopping = stopping.clone();
        tokio::spawn(async move {
            connections::serve(admin, app, limits, async move { stopping.wait().await }).await;
        })
    });
    connections::serve(listener, router(state), limits, signal).await;
    stopping.trigger();
    if let Some(admin_task) = admin_task {
        // The admin listener stops with the same signal; a panic in it
        // has been logged by the runtime and changes nothing here.
        let _ = admin_task.await;
    }
    // Deliveries in flight finish (or are left to another instance).
    reminders.shutdown(REMINDER_DRAIN).await;
    db.close().await;
    kit.shutdown().await;
    Ok(())
}
