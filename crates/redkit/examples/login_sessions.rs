//! Login with redkit sessions in axum: the cookie holds only the session
//! id, the session lives in the store (shared by every instance), and
//! handlers take [`RequiredSession`] — 401 in JSON when there is none, 503
//! when the store cannot tell.
//!
//! ```sh
//! cargo run -p redkit --example login_sessions                  # embedded store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p redkit --example login_sessions
//! curl -i localhost:3000/me                                     # 401
//! curl -c jar -d 'username=ada' localhost:3000/login            # sets the cookie
//! curl -b jar localhost:3000/me                                 # {"user":"ada",...}
//! curl -b jar -X POST localhost:3000/logout
//! cargo run -p redkit --example login_sessions -- --check       # self-test, no network
//! ```
//!
//! (A real login checks a password first, and limits attempts: see the
//! `rate_limited_router` example.)

use axum::extract::{Form, FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redkit::Redkit;
use redkit::config::RedisConfig;
use redkit::session::{
    CookieSessions, OptionalSession, RequiredSession, SessionConfig, SessionCookie, Sessions,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Clone)]
struct AppState {
    sessions: Sessions,
    cookie_sessions: CookieSessions,
}

/// How the extractors find the sessions in this app's state.
impl FromRef<AppState> for CookieSessions {
    fn from_ref(state: &AppState) -> Self {
        state.cookie_sessions.clone()
    }
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

async fn login(
    State(app): State<AppState>,
    OptionalSession(previous): OptionalSession,
    Form(login): Form<Login>,
) -> Response {
    if login.username.is_empty() || login.username.len() > 64 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "username: 1 to 64 characters",
        )
            .into_response();
    }
    // A session id known before login is never the one authenticated after.
    if let Some(previous) = previous {
        let _ = app.sessions.destroy(&previous.id).await;
    }
    let mut data = serde_json::Map::new();
    data.insert("logins".to_owned(), 1.into());
    match app.sessions.create(&login.username, data).await {
        Ok(session) => {
            let ttl = app.sessions.config().ttl;
            let headers = app.cookie_sessions.cookie().set_headers(&session.id, ttl);
            (StatusCode::NO_CONTENT, headers).into_response()
        }
        Err(error) => {
            eprintln!("login: {error}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn me(RequiredSession(session): RequiredSession) -> Json<serde_json::Value> {
    Json(json!({ "user": session.user_id, "since_ms": session.created_at_ms }))
}

async fn logout(
    State(app): State<AppState>,
    RequiredSession(session): RequiredSession,
) -> Response {
    let _ = app.sessions.destroy(&session.id).await;
    let headers: HeaderMap = app.cookie_sessions.cookie().clear_headers();
    (StatusCode::NO_CONTENT, headers).into_response()
}

fn app(sessions: Sessions) -> Router {
    let cookie_sessions = CookieSessions::new(sessions.clone(), SessionCookie::default());
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .with_state(AppState {
            sessions,
            cookie_sessions,
        })
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
    // 24 h rolling sessions; with Redis, fail closed while it is down
    // rather than logging everyone in on an empty fallback.
    let config = SessionConfig::default().fail_closed(kit.connection().is_some());
    let sessions = Sessions::new(kit.store().clone(), config)?;
    let app = app(sessions);
    if std::env::args().any(|arg| arg == "--check") {
        check(app).await;
        println!("login_sessions: ok");
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
    }
    kit.shutdown().await;
    Ok(())
}

/// Drives the app in process and checks what the comments above promise.
async fn check(app: Router) {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let send = |request: Request<Body>| {
        let app = app.clone();
        async move {
            app.oneshot(request)
                .await
                .unwrap_or_else(|never| match never {})
        }
    };
    let me = |cookie: &str| {
        Request::get("/me")
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap_or_default()
    };
    let anonymous = send(me("")).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body = axum::body::to_bytes(anonymous.into_body(), 1 << 16)
        .await
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(body["error"]["code"], "unauthorized");

    let login = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("username=ada"))
        .unwrap_or_default();
    let response = send(login).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap_or("").to_owned();
    assert!(cookie.starts_with("redkit_session="));

    let response = send(me(&cookie)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(body["user"], "ada");

    let logout = Request::post("/logout")
        .header("cookie", &cookie)
        .body(Body::empty())
        .unwrap_or_default();
    assert_eq!(send(logout).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        send(me(&cookie)).await.status(),
        StatusCode::UNAUTHORIZED,
        "ended everywhere"
    );
}
