//! Wiring: state, router, listener and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use redkit::Redkit;
use redkit::cache::Cache;
use redkit::store::AnyStore;
use tokio::net::TcpListener;

use crate::error::ServerError;
use crate::routes;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The redkit handle (store, connection, health).
    pub kit: Redkit,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The task cache (namespace `tasks`), reported by `/health/redis`.
    pub tasks: Cache<AnyStore>,
}

impl AppState {
    /// Builds the service's caches on `kit`.
    pub async fn new(kit: Redkit, metrics: PrometheusHandle) -> Result<Self, ServerError> {
        let tasks = kit.cache("tasks").build().await?;
        Ok(AppState {
            kit,
            metrics,
            tasks,
        })
    }
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(routes::health::summary))
        .route("/health/redis", get(routes::health::report))
        .route("/metrics", get(routes::metrics::render))
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

    /// Stops accepting, drains requests, closes Redis.
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

/// Serves until `shutdown` resolves, then lets in-flight requests finish and
/// closes the Redis connection.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let kit = state.kit.clone();
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve);
    kit.shutdown().await;
    result
}
