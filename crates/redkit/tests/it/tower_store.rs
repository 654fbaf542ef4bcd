//! `redkit::session::SessionStore` as a `tower_sessions::SessionStore`:
//! the store behaviours tower-sessions' own store tests check, run on the
//! embedded store and on a real redis-server, and the rolling rule (a load
//! only ever lengthens a record's life).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, header};
use redkit::config::EmbeddedConfig;
use redkit::session::SessionStore;
use redkit::store::{EmbeddedStore, KeyTtl, RedisStore, Store};
use redkit_testkit::RedisServer;
use serde_json::json;
use time::OffsetDateTime;
use tower::ServiceExt;
use tower_sessions::SessionStore as _;
use tower_sessions::session::{Id, Record};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::support::connected;

/// A record expiring `life` from now, with nested data.
fn record(life: time::Duration) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("user".to_owned(), json!({"id": 7, "roles": ["a", "b"]}));
    data.insert("n".to_owned(), json!(42));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + life,
    }
}

/// The key's remaining life in the store.
async fn key_life<S: Store>(store: &S, id: &Id) -> Duration {
    match store.ttl(&format!("tsess:{id}")).await.unwrap() {
        KeyTtl::ExpiresIn(left) => left,
        other => panic!("tsess:{id} is {other:?}"),
    }
}

mod suite {
    use super::*;

    /// `create` then `load` gives back the very record: id, data and expiry
    /// date to the nanosecond.
    pub async fn exact_record_round_trip<S: Store + std::fmt::Debug>(store: S) {
        let sessions = SessionStore::new(store);
        let mut created = record(time::Duration::hours(1));
        let original = created.clone();
        sessions.create(&mut created).await.unwrap();
        assert_eq!(created, original, "a free id is kept");
        assert_eq!(sessions.load(&created.id).await.unwrap(), Some(original));
    }

    /// `save` of a record that was never created stores it (an upsert),
    /// expiring at its date.
    pub async fn save_of_a_record_never_created<S: Store + std::fmt::Debug>(store: S) {
        let sessions = SessionStore::new(store.clone());
        let fresh = record(time::Duration::minutes(10));
        sessions.save(&fresh).await.unwrap();
        assert_eq!(sessions.load(&fresh.id).await.unwrap(), Some(fresh.clone()));
        let life = key_life(&store, &fresh.id).await;
        assert!(life > Duration::from_secs(590) && life <= Duration::from_secs(600));
        // Already expired: nothing is stored.
        let expired = record(time::Duration::seconds(-1));
        sessions.save(&expired).await.unwrap();
        assert_eq!(sessions.load(&expired.id).await.unwrap(), None);
    }

    /// `delete` then `load` is `None`; deleting again is not an error.
    pub async fn delete_then_load<S: Store + std::fmt::Debug>(store: S) {
        let sessions = SessionStore::new(store);
        let mut created = record(time::Duration::hours(1));
        sessions.create(&mut created).await.unwrap();
        sessions.delete(&created.id).await.unwrap();
        assert_eq!(sessions.load(&created.id).await.unwrap(), None);
        sessions.delete(&created.id).await.unwrap();
        sessions.delete(&Id::default()).await.unwrap();
    }

    /// `create` with an id already taken picks a fresh id and leaves the
    /// existing record untouched.
    pub async fn id_collision_on_create<S: Store + std::fmt::Debug>(store: S) {
        let sessions = SessionStore::new(store);
        let mut existing = record(time::Duration::hours(1));
        sessions.create(&mut existing).await.unwrap();
        let mut colliding = record(time::Duration::hours(2));
        colliding.id = existing.id;
        colliding.data.insert("n".to_owned(), json!("intruder"));
        sessions.create(&mut colliding).await.unwrap();
        assert_ne!(colliding.id, existing.id, "a fresh id was chosen");
        assert_eq!(
            sessions.load(&existing.id).await.unwrap(),
            Some(existing.clone()),
            "the existing record is untouched"
        );
        assert_eq!(sessions.load(&colliding.id).await.unwrap(), Some(colliding));
    }

    /// A live session moved from an inactivity expiry to a fixed date, to
    /// "on session end" (tower-sessions' two weeks) and back: the key's life
    /// follows each saved date; a date in the past ends it.
    pub async fn changing_the_expiry_type_of_a_live_session<S: Store + std::fmt::Debug>(store: S) {
        let sessions = SessionStore::new(store.clone());
        let mut live = record(time::Duration::minutes(5));
        sessions.create(&mut live).await.unwrap();
        assert!(key_life(&store, &live.id).await <= Duration::from_secs(300));

        live.expiry_date = OffsetDateTime::now_utc() + time::Duration::days(3);
        sessions.save(&live).await.unwrap();
        assert!(key_life(&store, &live.id).await > Duration::from_secs(3 * 86_400 - 60));
        assert_eq!(sessions.load(&live.id).await.unwrap(), Some(live.clone()));

        live.expiry_date = OffsetDateTime::now_utc() + time::Duration::weeks(2);
        sessions.save(&live).await.unwrap();
        assert!(key_life(&store, &live.id).await > Duration::from_secs(14 * 86_400 - 60));

        live.expiry_date = OffsetDateTime::now_utc() + time::Duration::seconds(30);
        sessions.save(&live).await.unwrap();
        assert!(key_life(&store, &live.id).await <= Duration::from_secs(30));

        live.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        sessions.save(&live).await.unwrap();
        assert_eq!(sessions.load(&live.id).await.unwrap(), None);
    }

    /// Rolling only extends: a record expiring in a day keeps its day after
    /// a load with `.rolling(60 s)`, in the store and in the record; one
    /// expiring in 10 s is extended to 60 s.
    pub async fn rolling_never_shortens_a_life<S: Store + std::fmt::Debug>(store: S) {
        let sessions = SessionStore::new(store.clone()).rolling(Duration::from_secs(60));
        let mut long = record(time::Duration::days(1));
        sessions.create(&mut long).await.unwrap();
        let loaded = sessions.load(&long.id).await.unwrap().unwrap();
        assert_eq!(loaded.expiry_date, long.expiry_date);
        assert!(
            key_life(&store, &long.id).await > Duration::from_secs(86_400 - 60),
            "a load cut a one-day life short"
        );

        let mut short = record(time::Duration::seconds(10));
        sessions.create(&mut short).await.unwrap();
        let loaded = sessions.load(&short.id).await.unwrap().unwrap();
        assert!(loaded.expiry_date > OffsetDateTime::now_utc() + time::Duration::seconds(50));
        assert!(key_life(&store, &short.id).await > Duration::from_secs(50));
        assert_eq!(sessions.load(&Id::default()).await.unwrap(), None);
    }

    /// Through `SessionManagerLayer`: a request that leaves the session
    /// untouched gets no `Set-Cookie`; an unknown well-formed id is never
    /// adopted (a new id is issued and the unknown one stays unused); an
    /// `AtDateTime` session survives rolling loads.
    pub async fn layer_cookies<S: Store + std::fmt::Debug>(store: S) {
        let app = app(
            SessionStore::new(store.clone()).rolling(Duration::from_secs(60)),
            Expiry::AtDateTime(OffsetDateTime::now_utc() + time::Duration::days(1)),
        );
        let (cookie, _) = call(&app, "/insert", None).await;
        let cookie = cookie.expect("a session cookie");
        let (untouched, body) = call(&app, "/get", Some(&cookie)).await;
        assert_eq!(body, "42");
        assert_eq!(untouched, None, "Set-Cookie on an untouched session");
        let id: Id = cookie.trim_start_matches("id=").parse().unwrap();
        assert!(key_life(&store, &id).await > Duration::from_secs(86_400 - 120));

        let unknown = Id::default();
        let (issued, body) = call(&app, "/insert", Some(&format!("id={unknown}"))).await;
        assert_eq!(body, "");
        let issued = issued.expect("a cookie for the new session");
        assert_ne!(issued, format!("id={unknown}"), "an unknown id was adopted");
        assert_eq!(
            SessionStore::new(store.clone())
                .load(&unknown)
                .await
                .unwrap(),
            None
        );
        assert_eq!(call(&app, "/get", Some(&issued)).await.1, "42");
    }

    /// tower-sessions' own route tests: insert, get, remove, cycle, flush, expiry.
    pub async fn routes<S: Store + std::fmt::Debug>(store: S) {
        let app = app(
            SessionStore::new(store.clone()).rolling(Duration::from_secs(60)),
            Expiry::OnInactivity(time::Duration::seconds(60)),
        );
        let (cookie, _) = call(&app, "/insert", None).await;
        let cookie = cookie.expect("a session cookie");
        assert!(cookie.starts_with("id="));
        assert_eq!(call(&app, "/get", Some(&cookie)).await.1, "42");
        assert_eq!(
            call(&app, "/get", None).await.1,
            "0",
            "no cookie, no session"
        );
        assert_eq!(call(&app, "/get", Some("id=forged")).await.1, "0");
        let (cycled, _) = call(&app, "/cycle", Some(&cookie)).await;
        let cycled = cycled.expect("a new cookie after cycle_id");
        assert_ne!(cycled, cookie);
        assert_eq!(
            call(&app, "/get", Some(&cookie)).await.1,
            "0",
            "the old id still works"
        );
        assert_eq!(call(&app, "/get", Some(&cycled)).await.1, "42");
        call(&app, "/remove", Some(&cycled)).await;
        assert_eq!(call(&app, "/get", Some(&cycled)).await.1, "0");
        call(&app, "/insert", Some(&cycled)).await;
        call(&app, "/flush", Some(&cycled)).await;
        assert_eq!(call(&app, "/get", Some(&cycled)).await.1, "0");
        // Short-lived sessions expire in the store.
        let brief = app_with_expiry(store, 1);
        let (cookie, _) = call(&brief, "/insert", None).await;
        let cookie = cookie.unwrap();
        assert_eq!(call(&brief, "/get", Some(&cookie)).await.1, "42");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(call(&brief, "/get", Some(&cookie)).await.1, "0");
    }

    fn app_with_expiry<S: Store + std::fmt::Debug>(store: S, seconds: i64) -> Router {
        app(
            SessionStore::new(store),
            Expiry::OnInactivity(time::Duration::seconds(seconds)),
        )
    }
}

/// An axum app using tower-sessions on `store`: tower-sessions' own route tests.
fn app<S: Store + std::fmt::Debug>(store: SessionStore<S>, expiry: Expiry) -> Router {
    Router::new()
        .route(
            "/insert",
            get(|session: Session| async move {
                session.insert("foo", 42).await.unwrap();
            }),
        )
        .route(
            "/get",
            get(|session: Session| async move {
                format!(
                    "{}",
                    session.get::<usize>("foo").await.unwrap().unwrap_or(0)
                )
            }),
        )
        .route(
            "/remove",
            get(|session: Session| async move {
                session.remove::<usize>("foo").await.unwrap();
            }),
        )
        .route(
            "/cycle",
            get(|session: Session| async move {
                session.cycle_id().await.unwrap();
            }),
        )
        .route(
            "/flush",
            get(|session: Session| async move {
                session.flush().await.unwrap();
            }),
        )
        .layer(
            SessionManagerLayer::new(store)
                .with_secure(false)
                .with_expiry(expiry),
        )
}

/// The `name=value` of the response's `Set-Cookie`, if any, and the body.
async fn call(app: &Router, path: &str, cookie: Option<&str>) -> (Option<String>, String) {
    let mut request = Request::builder().uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let cookie = response.headers().get(header::SET_COOKIE).map(|value| {
        value
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    });
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    (cookie, String::from_utf8(body.to_vec()).unwrap())
}

macro_rules! tower_store_suite {
    ($make:path) => {
        tower_store_suite!(@each $make; exact_record_round_trip, save_of_a_record_never_created,
            delete_then_load, id_collision_on_create, changing_the_expiry_type_of_a_live_session,
            rolling_never_shortens_a_life, layer_cookies, routes);
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $make().await;
                super::suite::$check(store).await;
            }
        )*
    };
}

mod embedded {
    use super::*;

    async fn make() -> (EmbeddedStore, ()) {
        (EmbeddedStore::new(EmbeddedConfig::default()).unwrap(), ())
    }

    tower_store_suite!(make);
}

mod redis {
    use super::*;

    async fn make() -> (RedisStore, RedisServer) {
        let server = RedisServer::new();
        (RedisStore::new(connected(&server).await), server)
    }

    tower_store_suite!(make);
}
