//! The axum session extractors: 401 without a session, the session with
//! one, 503 (never "logged out") while the store cannot be reached.

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use http::{Request, StatusCode};
use redkit::connection::RedisConnection;
use redkit::session::{
    CookieSessions, OptionalSession, RequiredSession, SessionConfig, SessionCookie, Sessions,
};
use redkit::store::{EmbeddedStore, RedisStore, Store};
use redkit_testkit::RedisServer;
use serde_json::Value;
use tower::ServiceExt;

use redkit::test_util::fast_redis_config;

fn app<S: Store>(sessions: Sessions<S>) -> Router {
    let cookie = SessionCookie::new("app_session").unwrap();
    Router::new()
        .route(
            "/me",
            get(|RequiredSession(session): RequiredSession| async move { session.user_id }),
        )
        .route(
            "/maybe",
            get(|OptionalSession(session): OptionalSession| async move {
                session.map_or("nobody".to_owned(), |session| session.user_id)
            }),
        )
        .with_state(CookieSessions::new(sessions, cookie))
}

async fn get_with(app: &Router, path: &str, cookie: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn required_and_optional_sessions_from_the_cookie() {
    let sessions = Sessions::new(
        EmbeddedStore::new(Default::default()).unwrap(),
        SessionConfig::default(),
    )
    .unwrap();
    let app = app(sessions.clone());
    let session = sessions.create("ada", Default::default()).await.unwrap();
    let cookie = format!("theme=dark; app_session={}", session.id.expose());

    let response = get_with(&app, "/me", Some(&cookie)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "ada");
    // A planted cookie — malformed, or well-formed but unknown — before the
    // real one does not log the user out.
    let stranger = redkit::session::SessionId::generate().unwrap();
    for planted in ["garbage".to_owned(), stranger.expose().to_owned()] {
        let both = format!("app_session={planted}; {cookie}");
        let response = get_with(&app, "/me", Some(&both)).await;
        assert_eq!(response.status(), StatusCode::OK, "{planted}");
        assert_eq!(text(response).await, "ada");
    }
    assert_eq!(
        text(get_with(&app, "/maybe", Some(&cookie)).await).await,
        "ada"
    );

    let unknown = format!(
        "app_session={}",
        redkit::session::SessionId::generate().unwrap().expose()
    );
    for cookie in [
        None,
        Some("app_session=not-an-id"),
        Some(unknown.as_str()),
        Some("other=1"),
    ] {
        let response = get_with(&app, "/me", cookie).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cookie:?}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .contains("json")
        );
        let body: Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert!(body["error"]["message"].is_string());
        let response = get_with(&app, "/maybe", cookie).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "nobody");
    }

    sessions.destroy(&session.id).await.unwrap();
    let response = get_with(&app, "/me", Some(&cookie)).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "ended sessions are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_answers_503_not_401() {
    let redis = RedisServer::builder().prepare(); // never started
    let connection = RedisConnection::connect(fast_redis_config(&redis.url())).unwrap();
    let sessions = Sessions::new(
        RedisStore::new(connection.clone()),
        SessionConfig::default(),
    )
    .unwrap();
    let app = app(sessions);
    let cookie = format!(
        "app_session={}",
        redkit::session::SessionId::generate().unwrap().expose()
    );
    for path in ["/me", "/maybe"] {
        let response = get_with(&app, path, Some(&cookie)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert!(!body.to_string().contains(&cookie[12..]), "the id leaked");
    }
    // Without a cookie there is nothing to ask the store: 401 at once.
    assert_eq!(
        get_with(&app, "/me", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    connection.shutdown().await;
}
