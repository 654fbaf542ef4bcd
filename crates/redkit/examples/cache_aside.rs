//! Cache-aside in an axum app: `GET /users/{id}` reads through redkit's
//! cache (L1 in process, L2 on Redis or the embedded store), `PUT
//! /users/{id}` writes the "database" and invalidates the user's tag on
//! every instance.
//!
//! ```sh
//! cargo run -p redkit --example cache_aside                     # embedded store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p redkit --example cache_aside
//! curl localhost:3000/users/7        # x-database-loads: 1
//! curl localhost:3000/users/7        # still 1: served from the cache
//! curl -X PUT -H 'content-type: application/json' -d '{"name":"Ada"}' localhost:3000/users/7
//! curl localhost:3000/users/7        # 2: the write invalidated the entry
//! cargo run -p redkit --example cache_aside -- --check           # self-test, no network
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use redkit::Redkit;
use redkit::cache::Cache;
use redkit::config::RedisConfig;
use redkit::store::AnyStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// A stand-in for a real database: a map, a delay, a load counter.
#[derive(Debug, Default)]
struct Database {
    names: Mutex<HashMap<u64, String>>,
    loads: AtomicU64,
}

impl Database {
    async fn load(&self, id: u64) -> Result<User, std::io::Error> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.loads.fetch_add(1, Ordering::Relaxed);
        let names = self
            .names
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let name = names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("user {id}"));
        Ok(User { id, name })
    }
}

#[derive(Clone)]
struct AppState {
    users: Cache<AnyStore>,
    db: Arc<Database>,
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

fn tag(id: u64) -> String {
    format!("user:{id}")
}

async fn get_user(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    let options = app
        .users
        .options()
        .ttl(Duration::from_secs(60))
        .tag(tag(id));
    let db = app.db.clone();
    let loaded = app
        .users
        .get_or_set(&format!("user:{id}"), &options, move || async move {
            db.load(id).await
        })
        .await;
    match loaded {
        Ok(user) => {
            let loads = app.db.loads.load(Ordering::Relaxed).to_string();
            ([("x-database-loads", loads)], Json(user)).into_response()
        }
        Err(error) => {
            eprintln!("loading user {id}: {error}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn rename_user(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    Json(rename): Json<Rename>,
) -> StatusCode {
    if let Ok(mut names) = app.db.names.lock() {
        names.insert(id, rename.name);
    }
    // After the write commits: every instance drops the entries tagged
    // with this user.
    match app.users.invalidate_tag(&tag(id)).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn app(users: Cache<AnyStore>) -> Router {
    let state = AppState {
        users,
        db: Arc::new(Database::default()),
    };
    Router::new()
        .route("/users/{id}", get(get_user).put(rename_user))
        .with_state(state)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No REDIS_URL / REDIS_HOST: the embedded store; with one: Redis, with
    // the embedded store as fallback while it is down.
    let kit = Redkit::builder().redis(RedisConfig::from_env()?).build()?;
    if let Some(connection) = kit.connection() {
        // The connection is lazy: give Redis a moment, so the first
        // requests use it (while it is down, the app still starts).
        let _ = connection
            .wait_ready(std::time::Duration::from_secs(5))
            .await;
    }
    let users = kit.cache("users").build().await?;
    let app = app(users);
    if std::env::args().any(|arg| arg == "--check") {
        check(app).await;
        println!("cache_aside: ok");
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

    let get = |app: Router| async move {
        let response = app
            .oneshot(
                Request::get("/users/7")
                    .body(Body::empty())
                    .unwrap_or_default(),
            )
            .await
            .unwrap_or_else(|never| match never {});
        assert_eq!(response.status(), StatusCode::OK);
        let loads = response.headers()["x-database-loads"]
            .to_str()
            .unwrap_or("")
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let user: User = serde_json::from_slice(&body).unwrap_or(User {
            id: 0,
            name: String::new(),
        });
        (loads, user.name)
    };
    assert_eq!(
        get(app.clone()).await,
        ("1".to_owned(), "user 7".to_owned())
    );
    assert_eq!(
        get(app.clone()).await,
        ("1".to_owned(), "user 7".to_owned()),
        "second read is a hit"
    );
    let rename = Request::put("/users/7")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"name":"Ada"}"#))
        .unwrap_or_default();
    let response = app
        .clone()
        .oneshot(rename)
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(app).await,
        ("2".to_owned(), "Ada".to_owned()),
        "the write invalidated the entry"
    );
}
