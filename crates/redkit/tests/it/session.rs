//! Sessions: one behavioural suite on the embedded store and on Redis, plus
//! multi-instance and outage tests (the tower-sessions store and its route
//! tests are in `tower_store.rs`).

use std::time::Duration;

use redkit::config::EmbeddedConfig;
use redkit::connection::RedisConnection;
use redkit::session::{SessionConfig, SessionId, SessionUpdate, Sessions};
use redkit::store::{EmbeddedStore, KeyTtl, RedisStore, Store};
use redkit_testkit::RedisServer;
use serde_json::{Map, Value, json};

use crate::support::connected;

fn data(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

mod suite {
    use super::*;

    pub async fn lifecycle<S: Store>(store: S) {
        let sessions = Sessions::new(store, SessionConfig::default()).unwrap();
        let a = sessions
            .create("ada", data(&[("theme", json!("dark"))]))
            .await
            .unwrap();
        let b = sessions.create("ada", Map::new()).await.unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.expose().len(), 47);
        assert!(
            !format!("{a:?}").contains(a.id.expose()),
            "Debug shows the id"
        );
        let loaded = sessions.get(&a.id).await.unwrap().unwrap();
        assert_eq!(loaded.user_id, "ada");
        assert_eq!(loaded.data["theme"], "dark");
        let updated = sessions
            .update(
                &a.id,
                &SessionUpdate::new().set("lang", "fr").remove("theme"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.data, data(&[("lang", json!("fr"))]));
        assert!(sessions.destroy(&a.id).await.unwrap());
        assert!(!sessions.destroy(&a.id).await.unwrap());
        assert_eq!(sessions.get(&a.id).await.unwrap(), None);
        assert!(
            sessions
                .update(&a.id, &SessionUpdate::new().set("x", 1))
                .await
                .unwrap()
                .is_none()
        );
        let listed: Vec<SessionId> = sessions
            .list("ada")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, vec![b.id]);
    }

    pub async fn default_ttl_is_24_hours<S: Store>(store: S) {
        let sessions = Sessions::new(store.clone(), SessionConfig::default()).unwrap();
        let session = sessions.create("u", Map::new()).await.unwrap();
        match store
            .ttl(&redkit::session::session_key(&session.id))
            .await
            .unwrap()
        {
            KeyTtl::ExpiresIn(left) => assert!(left > Duration::from_secs(24 * 3600 - 5)),
            other => panic!("{other:?}"),
        }
    }

    pub async fn rolling_and_absolute_expiry<S: Store>(store: S) {
        // Margins of 300 ms around every expiry, so a loaded machine's
        // scheduling delays cannot flip an assertion.
        let rolling = Sessions::new(
            store.clone(),
            SessionConfig::default()
                .ttl(Duration::from_millis(900))
                .touch_interval(Duration::ZERO),
        )
        .unwrap();
        let kept = rolling.create("u", Map::new()).await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(450)).await;
            assert!(
                rolling.get(&kept.id).await.unwrap().is_some(),
                "a read did not extend it"
            );
        }
        assert!(rolling.touch(&kept.id).await.unwrap());
        // With a touch interval, reads within it do not extend (one GETEX per
        // interval); an explicit touch always does.
        let throttled = Sessions::new(
            store.clone(),
            SessionConfig::default()
                .ttl(Duration::from_millis(900))
                .touch_interval(Duration::from_secs(60)),
        )
        .unwrap();
        let lapsing = throttled.create("u", Map::new()).await.unwrap();
        assert!(throttled.get(&lapsing.id).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(throttled.get(&lapsing.id).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(throttled.get(&lapsing.id).await.unwrap(), None);
        let fixed = Sessions::new(
            store.clone(),
            SessionConfig::default()
                .ttl(Duration::from_millis(900))
                .rolling(false),
        )
        .unwrap();
        let dropped = fixed.create("u", Map::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(fixed.get(&dropped.id).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(fixed.get(&dropped.id).await.unwrap(), None);
        let capped = Sessions::new(
            store,
            SessionConfig::default()
                .absolute_max(Duration::from_millis(1200))
                .touch_interval(Duration::ZERO),
        )
        .unwrap();
        let short = capped.create("u", Map::new()).await.unwrap();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(450)).await;
            assert!(capped.get(&short.id).await.unwrap().is_some());
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            capped.get(&short.id).await.unwrap(),
            None,
            "outlived its absolute maximum"
        );
    }

    pub async fn cycle_id_keeps_data_under_a_new_id<S: Store>(store: S) {
        let sessions = Sessions::new(store, SessionConfig::default()).unwrap();
        let old = sessions
            .create("u", data(&[("cart", json!([1, 2]))]))
            .await
            .unwrap();
        let new = sessions.cycle_id(&old.id).await.unwrap().unwrap();
        assert_ne!(new.id, old.id);
        assert_eq!(new.data, old.data);
        assert_eq!(new.created_at_ms, old.created_at_ms);
        assert_eq!(sessions.get(&old.id).await.unwrap(), None);
        assert_eq!(sessions.get(&new.id).await.unwrap().unwrap().data, old.data);
        let listed: Vec<SessionId> = sessions
            .list("u")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, vec![new.id]);
    }

    pub async fn destroy_all_and_index_cleanup<S: Store>(store: S) {
        let sessions = Sessions::new(store.clone(), SessionConfig::default()).unwrap();
        for _ in 0..3 {
            sessions.create("bob", Map::new()).await.unwrap();
        }
        let other = sessions.create("eve", Map::new()).await.unwrap();
        assert_eq!(sessions.list("bob").await.unwrap().len(), 3);
        assert_eq!(sessions.destroy_all("bob").await.unwrap(), 3);
        assert!(sessions.list("bob").await.unwrap().is_empty());
        assert_eq!(
            store.ttl(&redkit::session::index_key("bob")).await.unwrap(),
            KeyTtl::Missing
        );
        assert!(
            sessions.get(&other.id).await.unwrap().is_some(),
            "another user's session was touched"
        );
        // Expired sessions leave the index: the listing prunes them...
        let short = Sessions::new(
            store.clone(),
            SessionConfig::default().absolute_max(Duration::from_millis(100)),
        )
        .unwrap();
        let gone = short.create("eve", Map::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let members = store
            .set_members(&redkit::session::index_key("eve"))
            .await
            .unwrap();
        assert!(members.contains(&gone.id.expose().to_owned()));
        let listed = sessions.list("eve").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            store
                .set_members(&redkit::session::index_key("eve"))
                .await
                .unwrap(),
            vec![other.id.expose().to_owned()]
        );
        // ...and when all of a user's sessions expired, the index expires too.
        let brief = Sessions::new(
            store.clone(),
            SessionConfig::default()
                .ttl(Duration::from_millis(150))
                .index_refresh(Duration::from_millis(100)),
        )
        .unwrap();
        brief.create("tmp", Map::new()).await.unwrap();
        brief.create("tmp", Map::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            store.ttl(&redkit::session::index_key("tmp")).await.unwrap(),
            KeyTtl::Missing,
            "index garbage left behind"
        );
    }

    pub async fn concurrent_updates_merge<S: Store>(store: S) {
        // Two instances on one store, ten writers each: local writers queue,
        // the instances race through version checks.
        let sessions = Sessions::new(store.clone(), SessionConfig::default()).unwrap();
        let other = Sessions::new(store, SessionConfig::default()).unwrap();
        let session = sessions.create("u", Map::new()).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let instance = if i % 2 == 0 { &sessions } else { &other };
                let (sessions, id) = (instance.clone(), session.id.clone());
                tokio::spawn(async move {
                    sessions
                        .update(&id, &SessionUpdate::new().set(format!("k{i}"), i))
                        .await
                        .unwrap()
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let merged = sessions.get(&session.id).await.unwrap().unwrap();
        assert_eq!(
            merged.data.len(),
            20,
            "a concurrent writer's key was lost: {:?}",
            merged.data
        );
    }

    pub async fn bad_input_is_refused<S: Store>(store: S) {
        let sessions = Sessions::new(store, SessionConfig::default()).unwrap();
        assert!(sessions.create("", Map::new()).await.is_err());
        assert!(sessions.create("a\nb", Map::new()).await.is_err());
        let huge = data(&[("blob", json!("x".repeat(2 * 1024 * 1024)))]);
        let error = sessions.create("u", huge).await.unwrap_err().to_string();
        assert!(error.contains("bytes"), "{error}");
        assert!(SessionId::parse("../../etc/passwd").is_none());
    }

    pub async fn errors_never_show_session_ids<S: Store>(store: S) {
        let sessions = Sessions::new(store.clone(), SessionConfig::default()).unwrap();
        let session = sessions.create("u", Map::new()).await.unwrap();
        let key = redkit::session::session_key(&session.id);
        store.delete(&[&key]).await.unwrap();
        store.set_add(&key, &["not a session"]).await.unwrap();
        let error = sessions.get(&session.id).await.unwrap_err();
        assert!(!error.to_string().contains(session.id.expose()), "{error}");
        assert!(
            !format!("{error:?}").contains(session.id.expose()),
            "{error:?}"
        );
    }

    pub async fn local_cache_serves_reads_and_stays_coherent<S: Store>(store: S) {
        let config = SessionConfig::default().local_cache(Duration::from_millis(800));
        let a = Sessions::new(store.clone(), config.clone()).unwrap();
        let b = Sessions::new(store.clone(), config).unwrap();
        // Let both subscriptions become active.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first = a.create("u", Map::new()).await.unwrap();
        let second = a.create("u", Map::new()).await.unwrap();
        for session in [&first, &second] {
            assert!(b.get(&session.id).await.unwrap().is_some());
        }

        // A read on B is served locally: the key removed behind redkit's
        // back is still seen, until the local entry's time is up.
        let key = redkit::session::session_key(&first.id);
        let raw = store.get(&key).await.unwrap().unwrap();
        store.delete(&[&key]).await.unwrap();
        assert!(
            b.get(&first.id).await.unwrap().is_some(),
            "not served locally"
        );
        assert!(
            crate::support::eventually(Duration::from_secs(1), || async {
                b.get(&first.id).await.unwrap().is_none()
            })
            .await,
            "a local entry outlived local_cache"
        );
        store.set(&key, &raw, None).await.unwrap();
        assert!(b.get(&first.id).await.unwrap().is_some());

        // An update on A reaches B's cached copy.
        a.update(&first.id, &SessionUpdate::new().set("theme", "dark"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            crate::support::eventually(Duration::from_secs(1), || async {
                b.get(&first.id).await.unwrap().unwrap().data.get("theme")
                    == Some(&Value::from("dark"))
            })
            .await,
            "B kept a stale session after A's update"
        );
        // A destroy on A, and a destroy-all on B, reach the other's cache.
        assert!(a.destroy(&first.id).await.unwrap());
        assert!(
            crate::support::eventually(Duration::from_secs(1), || async {
                b.get(&first.id).await.unwrap().is_none()
            })
            .await,
            "B kept a destroyed session"
        );
        assert!(a.get(&second.id).await.unwrap().is_some());
        assert_eq!(b.destroy_all("u").await.unwrap(), 1);
        assert!(
            crate::support::eventually(Duration::from_secs(1), || async {
                a.get(&second.id).await.unwrap().is_none()
            })
            .await,
            "A kept a session ended by destroy-all on B"
        );
        // Cycling on B ends the old id on A.
        let third = a.create("u", Map::new()).await.unwrap();
        assert!(a.get(&third.id).await.unwrap().is_some());
        let cycled = b.cycle_id(&third.id).await.unwrap().unwrap();
        assert!(
            crate::support::eventually(Duration::from_secs(1), || async {
                a.get(&third.id).await.unwrap().is_none()
            })
            .await,
            "A kept the id B cycled"
        );
        assert!(a.get(&cycled.id).await.unwrap().is_some());
    }
}

macro_rules! session_suite {
    ($make:path) => {
        session_suite!(@each $make; lifecycle, default_ttl_is_24_hours, rolling_and_absolute_expiry,
            cycle_id_keeps_data_under_a_new_id, destroy_all_and_index_cleanup,
            concurrent_updates_merge, bad_input_is_refused, errors_never_show_session_ids,
            local_cache_serves_reads_and_stays_coherent);
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

    session_suite!(make);
}

mod redis {
    use super::*;

    async fn make() -> (RedisStore, RedisServer) {
        let server = RedisServer::new();
        (RedisStore::new(connected(&server).await), server)
    }

    session_suite!(make);
}

mod cluster {
    use super::*;

    async fn make() -> (RedisStore, ()) {
        (crate::support::cluster_store().await, ())
    }

    session_suite!(make);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_all_on_one_instance_is_seen_by_another() {
    let server = RedisServer::new();
    let a = Sessions::new(
        RedisStore::new(connected(&server).await),
        SessionConfig::default(),
    )
    .unwrap();
    let b = Sessions::new(
        RedisStore::new(connected(&server).await),
        SessionConfig::default(),
    )
    .unwrap();
    let created = b.create("carol", Map::new()).await.unwrap();
    assert!(
        a.get(&created.id).await.unwrap().is_some(),
        "a session from B is valid on A"
    );
    assert_eq!(a.destroy_all("carol").await.unwrap(), 1);
    assert_eq!(b.get(&created.id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_sessions_fail_closed_or_keep_serving() {
    let mut server = RedisServer::new();
    let kit = crate::support::ready_kit(&server).await;
    let closed = Sessions::new(
        kit.store().clone(),
        SessionConfig::default().fail_closed(true),
    )
    .unwrap();
    let open = Sessions::new(kit.store().clone(), SessionConfig::default()).unwrap();
    closed.create("u", Map::new()).await.unwrap();
    server.kill();
    let started = std::time::Instant::now();
    let error = closed.create("u", Map::new()).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(
        started.elapsed()
            < kit.connection().unwrap().config().command_timeout + Duration::from_millis(200)
    );
    let local = open.create("u", Map::new()).await.unwrap();
    assert!(
        open.get(&local.id).await.unwrap().is_some(),
        "the embedded fallback serves"
    );
}

#[test]
fn a_local_cache_needs_a_tokio_runtime() {
    let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
    let config = SessionConfig::default().local_cache(Duration::from_secs(1));
    let error = Sessions::new(store, config).unwrap_err();
    assert!(error.to_string().contains("local_cache"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_read_earlier_stand_in_while_redis_hangs() {
    let server = RedisServer::new();
    let config = SessionConfig::default()
        .local_cache(Duration::from_millis(100))
        .local_fail_safe(Duration::from_secs(30));
    let sessions = Sessions::new(RedisStore::new(connected(&server).await), config).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let read = sessions.create("u", Map::new()).await.unwrap();
    let unread = sessions.create("u", Map::new()).await.unwrap();
    assert!(sessions.get(&read.id).await.unwrap().is_some());
    server.pause();
    tokio::time::sleep(Duration::from_millis(150)).await; // past local_cache
    let started = std::time::Instant::now();
    let session = sessions.get(&read.id).await.unwrap();
    assert_eq!(session.map(|s| s.id), Some(read.id.clone()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A session this instance never read cannot be vouched for.
    let error = sessions.get(&unread.id).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    server.resume();

    let error = Sessions::new(
        EmbeddedStore::new(EmbeddedConfig::default()).unwrap(),
        SessionConfig::default().local_fail_safe(Duration::from_secs(1)),
    )
    .unwrap_err();
    assert!(error.to_string().contains("local_fail_safe"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fail_safe_never_outlives_a_sessions_absolute_end() {
    let server = RedisServer::new();
    let config = SessionConfig::default()
        .absolute_max(Duration::from_millis(1500))
        .local_cache(Duration::from_millis(50))
        .local_fail_safe(Duration::from_secs(30));
    let sessions = Sessions::new(RedisStore::new(connected(&server).await), config).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let session = sessions.create("u", Map::new()).await.unwrap();
    assert!(sessions.get(&session.id).await.unwrap().is_some());
    server.pause();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // At most 100 ms + the command timeout (500 ms) after creation.
    assert!(
        sessions.get(&session.id).await.unwrap().is_some(),
        "fail-safe"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await; // past the absolute end
    let error = sessions.get(&session.id).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    server.resume();
}

/// A session whose absolute end has passed while its key still exists (the
/// store's clock stands still here) cannot be updated or moved: a runtime
/// condition with its own error, not an input error.
#[tokio::test]
async fn a_session_past_its_absolute_end_reports_lifetime_over() {
    let clock = redkit::clock::ManualClock::new();
    let store =
        EmbeddedStore::with_clock(EmbeddedConfig::default(), std::sync::Arc::new(clock)).unwrap();
    let sessions = Sessions::new(
        store,
        SessionConfig::default().absolute_max(Duration::from_millis(20)),
    )
    .unwrap();
    let session = sessions.create("u", Map::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    let update = SessionUpdate::new().set("k", 1);
    let error = sessions.update(&session.id, &update).await.unwrap_err();
    assert!(
        matches!(error, redkit::Error::SessionLifetimeOver),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "the session's absolute lifetime is over");
    let error = sessions.cycle_id(&session.id).await.unwrap_err();
    assert!(
        matches!(error, redkit::Error::SessionLifetimeOver),
        "{error:?}"
    );
}

/// Instance B cut off from Redis (blackholed) while A ends every session of
/// a user: B accepts the ended session, read-only, for at most its
/// fail-safe window counted from its last successful read — then refuses
/// it. Nothing B does meanwhile can give it a new life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_instance_stops_accepting_an_ended_session_within_the_fail_safe() {
    use redkit_testkit::{Fault, FaultProxy};

    let server = RedisServer::new();
    let proxy = FaultProxy::start(server.port());
    let fail_safe = Duration::from_millis(1500);
    let config = SessionConfig::default()
        .local_cache(Duration::from_millis(100))
        .local_fail_safe(fail_safe);
    let a = Sessions::new(RedisStore::new(connected(&server).await), config.clone()).unwrap();
    let b_connection =
        RedisConnection::connect(crate::support::fast_redis_config(&proxy.url())).unwrap();
    b_connection
        .wait_ready(Duration::from_secs(5))
        .await
        .unwrap();
    let b = Sessions::new(RedisStore::new(b_connection), config).unwrap();
    let session = a.create("dora", Map::new()).await.unwrap();
    // B's local cache serves once its subscription is up.
    assert!(
        crate::support::eventually(Duration::from_secs(5), || async {
            b.get(&session.id).await.unwrap().is_some()
                && b.get(&session.id).await.unwrap().is_some()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(150)).await; // past local_cache
    assert!(b.get(&session.id).await.unwrap().is_some());
    let last_read = std::time::Instant::now();

    proxy.set(Fault::Blackhole);
    assert_eq!(a.destroy_all("dora").await.unwrap(), 1);
    assert_eq!(a.get(&session.id).await.unwrap(), None);

    // Read-only meanwhile: no update, extension, new id or destroy.
    let update = SessionUpdate::new().set("k", 1);
    assert!(
        b.update(&session.id, &update)
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert!(b.touch(&session.id).await.unwrap_err().is_unavailable());
    assert!(b.cycle_id(&session.id).await.unwrap_err().is_unavailable());

    // Within the bound (the fail-safe after the last successful read, plus
    // the command timeout of the read that finds it over and some slack
    // for a loaded machine), B refuses it.
    let bound = fail_safe + Duration::from_millis(500) + Duration::from_secs(1);
    let refused =
        crate::support::eventually(bound, || async { b.get(&session.id).await.is_err() }).await;
    assert!(refused, "B still accepts the ended session");
    assert!(
        last_read.elapsed() <= bound,
        "refused only {:?} after the last successful read",
        last_read.elapsed()
    );
    // And stays refusing.
    for _ in 0..3 {
        assert!(b.get(&session.id).await.is_err());
    }
    proxy.heal();
    assert!(
        crate::support::eventually(Duration::from_secs(5), || async {
            matches!(b.get(&session.id).await, Ok(None))
        })
        .await,
        "once healed, B learns the session ended"
    );
}

/// Ids a client makes up are looked up but never remembered: the memo of
/// recently extended sessions holds only sessions that exist.
#[tokio::test]
async fn unknown_session_ids_are_not_remembered() {
    let sessions = Sessions::new(
        EmbeddedStore::new(EmbeddedConfig::default()).unwrap(),
        SessionConfig::default(),
    )
    .unwrap();
    for _ in 0..500 {
        let made_up = SessionId::generate().unwrap();
        assert!(sessions.get(&made_up).await.unwrap().is_none());
    }
    assert!(
        format!("{sessions:?}").contains("extended_recently: 0"),
        "{sessions:?}"
    );
    let real = sessions.create("u1", Map::new()).await.unwrap();
    assert!(sessions.get(&real.id).await.unwrap().is_some());
    assert!(
        format!("{sessions:?}").contains("extended_recently: 1"),
        "{sessions:?}"
    );
}

/// Loads that reach Redis together share `MGET`s (rolling off, so every
/// load is a plain read): each caller gets its own session, or `None` for
/// an id that does not exist or a key holding another type; callers that
/// give up strand no one; and an outage fails every waiting load as an
/// outage, not as some other error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_share_mgets_and_each_gets_its_own_session() {
    let mut server = RedisServer::new();
    let counter = connected(&server).await;
    let store = RedisStore::new(connected(&server).await);
    let sessions = Sessions::new(store.clone(), SessionConfig::default().rolling(false)).unwrap();
    let mut known = Vec::new();
    for user in 0..50 {
        let session = sessions
            .create(&format!("user{user}"), data(&[("n", json!(user))]))
            .await
            .unwrap();
        known.push(session.id);
    }
    let known = std::sync::Arc::new(known);
    // A session key that holds a set reads as no session.
    let wrong_type = SessionId::generate().unwrap();
    store
        .set_add(&redkit::session::session_key(&wrong_type), &["x"])
        .await
        .unwrap();
    let before = crate::support::command_calls(&counter, "mget").await;
    let mut tasks = Vec::new();
    for task in 0..40usize {
        let (sessions, known, wrong_type) = (sessions.clone(), known.clone(), wrong_type.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25usize {
                let user = (task * 7 + i) % known.len();
                let session = sessions.get(&known[user]).await.unwrap().unwrap();
                assert_eq!(session.user_id, format!("user{user}"));
                assert_eq!(session.data["n"], json!(user));
                if i % 5 == 0 {
                    let made_up = SessionId::generate().unwrap();
                    assert_eq!(sessions.get(&made_up).await.unwrap(), None);
                    assert_eq!(sessions.get(&wrong_type).await.unwrap(), None);
                }
            }
        }));
    }
    // Loads abandoned at once, while the others wait in the same MGETs.
    for i in 0..40usize {
        let (sessions, known) = (sessions.clone(), known.clone());
        let load = tokio::spawn(async move { sessions.get(&known[i % known.len()]).await });
        if i % 2 == 0 {
            load.abort();
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mgets = crate::support::command_calls(&counter, "mget").await - before;
    assert!(
        (1..700).contains(&mgets),
        "{mgets} MGETs for 1,400 concurrent loads: they should share calls"
    );
    assert_eq!(crate::support::command_calls(&counter, "get").await, 0);

    server.kill();
    let loads: Vec<_> = (0..20usize)
        .map(|i| {
            let (sessions, known) = (sessions.clone(), known.clone());
            tokio::spawn(async move { sessions.get(&known[i]).await })
        })
        .collect();
    for load in loads {
        let error = load.await.unwrap().unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
    }
}
