//! Client connections: accepted, bounded, timed out and drained here.
//!
//! `axum::serve` keeps a connection for as long as the client likes: a
//! socket that never sends a byte, or sends a header byte every few seconds
//! (slowloris), holds a descriptor forever, and with the common limit of
//! 1024 descriptors a thousand such sockets stop the service answering
//! anyone. This loop is axum's, with three bounds added:
//!
//! - **a connection cap** ([`ConnectionLimits::max_connections`]): past it a
//!   new connection is closed at once, so the service keeps descriptors for
//!   its database, Redis and the clients it already serves;
//! - **a header-read timeout** ([`ConnectionLimits::header_read_timeout`]):
//!   a request head must arrive whole within it, counted from when the
//!   connection starts waiting for one — so it also closes idle keep-alive
//!   and never-speaking connections (hyper's own timer);
//! - `TCP_NODELAY` on every accepted socket (unless
//!   [`ConnectionLimits::tcp_nodelay`] is off), so small answers are not held
//!   back by Nagle's algorithm waiting for the client's delayed ACK.
//!
//! A request that has started is bounded by the service's request deadline
//! (`deadline.rs`), and a long response (an SSE stream) by its session and
//! by shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Bounds on client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; more are closed as they arrive.
    /// Default: 512 (half the common 1024-descriptor limit).
    pub max_connections: usize,
    /// How long a client has to send a whole request head, counted from when
    /// the connection is ready for one (new or idle between requests).
    /// Default: 5 s.
    pub header_read_timeout: Duration,
    /// Set `TCP_NODELAY` on accepted sockets. Default: true (measured
    /// faster, see docs/BENCHMARKS.md, `http_tcp_nodelay_off`).
    pub tcp_nodelay: bool,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(5),
            tcp_nodelay: true,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then stops accepting and waits for open connections to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept:
                    // wait a moment instead of spinning on the error.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("redkit_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        if limits.tcp_nodelay {
            let _ = stream.set_nodelay(true);
        }
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: axum::http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                request.map(Body::new)
            },
        ));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
