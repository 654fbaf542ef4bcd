//! A rate-limited axum router: a strict limit on `/login`, a looser one on
//! `/api/*`, per client IP, counted in one round trip on the store so every
//! instance shares the limits. Over the limit: 429 with `Retry-After` and
//! the IETF `RateLimit` headers.
//!
//! ```sh
//! cargo run -p redkit --example rate_limited_router                 # embedded store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p redkit --example rate_limited_router
//! for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}\n' -X POST localhost:3000/login; done
//! cargo run -p redkit --example rate_limited_router -- --check       # self-test, no network
//! ```
//!
//! Behind a reverse proxy, add `.trusted_proxies(TrustedProxies::parse([...])?)`
//! to each layer, or every client looks like the proxy.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit::ratelimit::{Policy, RateLimitLayer, RateLimiter};

fn app(limiter: RateLimiter) -> Result<Router, redkit::Error> {
    // 5 attempts per 5 minutes per IP (the AUTH preset).
    let login = Router::new()
        .route("/login", post(|| async { "welcome" }))
        .layer(RateLimitLayer::new(limiter.clone(), Policy::auth()).scope("login"));
    // 100 per minute per IP, GCRA: smooth, bursts of up to 20.
    let api_policy = Policy::gcra("api", 100, Duration::from_secs(60), 20)?;
    let api = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .layer(RateLimitLayer::new(limiter, api_policy).scope("api"));
    Ok(Router::new().merge(login).merge(api))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kit = Redkit::builder().redis(RedisConfig::from_env()?).build()?;
    if let Some(connection) = kit.connection() {
        // The connection is lazy: give Redis a moment, so the first
        // requests use it (while it is down, the app still starts).
        let _ = connection
            .wait_ready(std::time::Duration::from_secs(5))
            .await;
    }
    let limiter = RateLimiter::new(kit.store().clone())?;
    let app = app(limiter)?;
    if std::env::args().any(|arg| arg == "--check") {
        check(app).await;
        println!("rate_limited_router: ok");
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("listening on http://{}", listener.local_addr()?);
        // The client IP comes from the connection: serve with ConnectInfo.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await?;
    }
    kit.shutdown().await;
    Ok(())
}

/// Drives the app in process and checks what the comments above promise.
async fn check(app: Router) {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    let from = |ip: [u8; 4], method: &str, path: &str| {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap_or_default();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        request
    };
    let send = |request: Request<Body>| {
        let app = app.clone();
        async move {
            app.oneshot(request)
                .await
                .unwrap_or_else(|never| match never {})
        }
    };
    for attempt in 1..=5 {
        let response = send(from([192, 0, 2, 1], "POST", "/login")).await;
        assert_eq!(response.status(), StatusCode::OK, "attempt {attempt}");
        assert!(response.headers().contains_key("ratelimit-policy"));
    }
    let limited = send(from([192, 0, 2, 1], "POST", "/login")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    // Another client, and another route, have their own counts.
    assert_eq!(
        send(from([192, 0, 2, 2], "POST", "/login")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(from([192, 0, 2, 1], "GET", "/api/hello"))
            .await
            .status(),
        StatusCode::OK
    );
}
