//! Two instances of the service on one Redis and one SQLite file: what
//! one does, the other sees — on a single redis-server, on a
//! Sentinel-managed master and on a Redis Cluster (the scenarios take the
//! Redis configuration; each test gets its own key prefix on the shared
//! topology).

use std::sync::OnceLock;
use std::time::Duration;

use redkit::config::RedisConfig;
use redkit_testkit::{Fault, FaultProxy, RedisCluster, RedisSentinel, RedisServer};
use serde_json::json;

use crate::support::{
    Client, Events, TestDb, TestServer, eventually, fast_redis_config, patient, start_ready,
    start_with, test_config,
};

/// Servers A and B on `redis` and one database, with `auth_limit` logins
/// and registrations per client IP across both.
/// Nothing here is about outages: [`patient`] timeouts.
async fn pair(redis: &RedisConfig, auth_limit: u64) -> (TestServer, TestServer) {
    let redis = &patient(redis);
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.auth_policy = Some(crate::support::exact_policy(
        "auth",
        auth_limit,
        Duration::from_secs(300),
    ));
    let a = start_ready(redis.clone(), db.clone(), config.clone()).await;
    let b = start_ready(redis.clone(), db, config).await;
    (a, b)
}

/// The Sentinel topology shared by this binary's tests (master, replica,
/// three sentinels); nothing here kills its nodes.
fn sentinel() -> &'static RedisSentinel {
    static TOPOLOGY: OnceLock<RedisSentinel> = OnceLock::new();
    TOPOLOGY.get_or_init(RedisSentinel::start)
}

/// A configuration for the shared Sentinel topology with its own key prefix.
fn on_sentinel(prefix: &str) -> RedisConfig {
    let mut config = fast_redis_config(&sentinel().url());
    config.key_prefix = format!("{prefix}:");
    config
}

/// A configuration for this binary's shared Redis Cluster with its own key
/// prefix (nothing here kills its nodes).
fn on_cluster(prefix: &str) -> RedisConfig {
    let mut config = fast_redis_config(&RedisCluster::shared().url());
    config.key_prefix = format!("{prefix}:");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cluster_tasks_and_sessions_are_shared() {
    shares_tasks_and_sessions(&on_cluster("cluster-share")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cluster_logout_all_ends_sessions_on_both() {
    logout_all_reaches_both(&on_cluster("cluster-logout")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cluster_the_auth_limit_is_shared() {
    auth_limit_is_shared(&on_cluster("cluster-limit")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cluster_an_event_stream_on_b_receives_changes_made_on_a() {
    events_reach_both(&on_cluster("cluster-events")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_through_a_is_listed_by_b_and_a_session_from_a_is_valid_on_b() {
    let redis = RedisServer::new();
    shares_tasks_and_sessions(&fast_redis_config(&redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sentinel_tasks_and_sessions_are_shared() {
    shares_tasks_and_sessions(&on_sentinel("sentinel-share")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_on_a_ends_sessions_on_b() {
    let redis = RedisServer::new();
    logout_all_reaches_both(&fast_redis_config(&redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sentinel_logout_all_ends_sessions_on_both() {
    logout_all_reaches_both(&on_sentinel("sentinel-logout")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_counts_are_shared() {
    let redis = RedisServer::new();
    auth_limit_is_shared(&fast_redis_config(&redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sentinel_the_auth_limit_is_shared() {
    auth_limit_is_shared(&on_sentinel("sentinel-limit")).await;
}

/// A task written through A is listed by B (caches invalidated across
/// instances), and a session started on A is valid on B.
pub(crate) async fn shares_tasks_and_sessions(redis: &RedisConfig) {
    let (a, b) = pair(redis, 1000).await;
    let mut on_a = Client::registered(&a, "alice").await;
    let mut on_b = on_a.on(&b);
    assert_eq!(on_b.get("/auth/me").await.body["username"], "alice");
    // B caches the empty list (L1 and L2)...
    assert_eq!(on_b.get("/tasks").await.body, json!([]));
    assert_eq!(on_b.get("/tasks").await.body, json!([]));
    // ...and A's write invalidates it on B too.
    let created = on_a.post("/tasks", json!({"title": "from A"})).await.body;
    let listed = eventually(Duration::from_secs(2), || {
        let mut on_b = on_b.clone();
        let created = created.clone();
        async move { on_b.get("/tasks").await.body == json!([created]) }
    })
    .await;
    assert!(listed, "B kept serving its stale cached list");
    let id = created["id"].as_i64().unwrap();
    on_b.send(
        "PATCH",
        &format!("/tasks/{id}"),
        Some(json!({"done": true})),
    )
    .await;
    let seen = eventually(Duration::from_secs(2), || {
        let mut on_a = on_a.clone();
        async move { on_a.get(&format!("/tasks/{id}")).await.body["done"] == true }
    })
    .await;
    assert!(seen, "A kept serving its stale cached task");
    a.stop().await;
    b.stop().await;
}

/// Logout-all on A ends the user's sessions on B at once.
pub(crate) async fn logout_all_reaches_both(redis: &RedisConfig) {
    let (a, b) = pair(redis, 1000).await;
    let mut on_a = Client::registered(&a, "bob").await;
    let mut on_b = Client::new(&b);
    assert_eq!(on_b.login("bob", "bob-password").await.status, 200);
    assert_eq!(on_b.get("/auth/me").await.body["sessions"], 2);
    // B has both sessions in its local cache now.
    assert_eq!(on_a.on(&b).get("/auth/me").await.status, 200);
    let reply = on_a.post("/auth/logout-all", json!({})).await;
    assert_eq!(reply.body["ended"], 2);
    // The end reaches B through pub/sub within milliseconds.
    let ended = on_b
        .answers_within("/auth/me", 401, Duration::from_millis(500))
        .await;
    assert!(ended, "B still accepts a session ended on A");
    assert_eq!(on_b.get("/tasks").await.status, 401);
    assert_eq!(on_a.on(&b).get("/auth/me").await.status, 401);
    a.stop().await;
    b.stop().await;
}

/// The AUTH limit (4 per client IP) counts requests on both instances.
pub(crate) async fn auth_limit_is_shared(redis: &RedisConfig) {
    let (a, b) = pair(redis, 4).await;
    let mut on_a = Client::registered(&a, "carol").await; // 1
    let mut on_b = Client::new(&b);
    assert_eq!(on_b.login("carol", "wrong-password").await.status, 401); // 2
    assert_eq!(on_a.login("carol", "wrong-password").await.status, 401); // 3
    assert_eq!(on_b.login("carol", "carol-password").await.status, 200); // 4
    assert_eq!(on_a.login("carol", "carol-password").await.status, 429);
    assert_eq!(on_b.login("carol", "carol-password").await.status, 429);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_on_b_receives_changes_made_on_a() {
    let redis = RedisServer::new();
    events_reach_both(&fast_redis_config(&redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refetching_on_an_event_never_gets_the_list_from_before_it() {
    let redis = RedisServer::new();
    let (a, b) = pair(&fast_redis_config(&redis.url()), 1000).await;
    let mut on_a = Client::registered(&a, "erin").await;
    let mut on_b = on_a.on(&b);
    let mut events_on_b = Events::open(&on_b).await;
    let created = on_a.post("/tasks", json!({"title": "v0"})).await.body;
    let id = created["id"].as_i64().unwrap();
    events_on_b
        .next(Duration::from_secs(5))
        .await
        .expect("the creation on B");
    for round in 1..=20 {
        // B holds the current list in its cache (L1 and L2)...
        assert_eq!(on_b.get("/tasks").await.body[0]["id"], id);
        let title = format!("v{round}");
        on_a.send(
            "PATCH",
            &format!("/tasks/{id}"),
            Some(json!({"title": title})),
        )
        .await;
        // ...and the moment B's client hears of A's change, B lists it:
        // the invalidation reaches B ahead of the event, not eventually.
        events_on_b
            .next(Duration::from_secs(5))
            .await
            .expect("the change on B");
        assert_eq!(
            on_b.get("/tasks").await.body[0]["title"],
            title,
            "round {round}: B served the list from before the event"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// A change made through A reaches an event stream open on B.
async fn events_reach_both(redis: &RedisConfig) {
    let (a, b) = pair(redis, 1000).await;
    let mut on_a = Client::registered(&a, "dora").await;
    let mut events_on_b = Events::open(&on_a.on(&b)).await;
    let created = on_a
        .post("/tasks", json!({"title": "cross-instance"}))
        .await
        .body;
    let (name, data) = events_on_b
        .next(Duration::from_secs(5))
        .await
        .expect("A's change on B");
    assert_eq!(name, "task");
    assert_eq!(data, json!({"type": "created", "task": created}));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_flushall_a_task_created_through_a_is_listed_by_both_at_once() {
    let redis = RedisServer::new();
    let (a, b) = pair(&fast_redis_config(&redis.url()), 1000).await;
    let mut on_a = Client::registered(&a, "alice").await;
    for i in 0..3 {
        on_a.post("/tasks", json!({"title": format!("before {i}")}))
            .await;
    }
    let count = |reply: crate::support::Reply| reply.body.as_array().map_or(0, Vec::len);
    // Both instances cache the list of 3 (with the tag versions of then).
    assert_eq!(count(on_a.get("/tasks").await), 3);
    let on_b = on_a.on(&b);
    let cached = eventually(Duration::from_secs(2), || {
        let mut on_b = on_b.clone();
        async move { count(on_b.get("/tasks").await) == 3 }
    })
    .await;
    assert!(cached);

    redis.cli(&["FLUSHALL"]);
    // The sessions went with it: log in again. Then several writes (a
    // counter would climb back to the versions the cached lists recorded).
    let reply = on_a.login("alice", "alice-password").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for i in 0..3 {
        let reply = on_a
            .post("/tasks", json!({"title": format!("after {i}")}))
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
    }
    let started = std::time::Instant::now();
    let on_b = on_a.on(&b);
    let listed = eventually(Duration::from_secs(2), || {
        let (mut on_a, mut on_b) = (on_a.clone(), on_b.clone());
        async move { count(on_a.get("/tasks").await) == 6 && count(on_b.get("/tasks").await) == 6 }
    })
    .await;
    assert!(listed, "a list cached before FLUSHALL is still served");
    println!(
        "service: write visible on both instances after FLUSHALL within {:.3} s",
        started.elapsed().as_secs_f64()
    );
}

/// B cut off from Redis (its connection blackholed) while A runs
/// logout-all: B keeps accepting the ended session only within its session
/// fail-safe (counted from its last successful read of it), read-only —
/// then refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_instance_stops_accepting_a_session_ended_elsewhere() {
    let redis = RedisServer::new();
    let proxy = FaultProxy::start(redis.port());
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    let fail_safe = Duration::from_secs(2);
    config.sessions = config
        .sessions
        .local_cache(Duration::from_millis(200))
        .local_fail_safe(fail_safe);
    let a = start_with(
        Some(fast_redis_config(&redis.url())),
        db.clone(),
        config.clone(),
    )
    .await;
    let b = start_with(Some(fast_redis_config(&proxy.url())), db, config).await;
    let mut on_a = Client::registered(&a, "erin").await;
    let mut on_b = on_a.on(&b);
    assert_eq!(on_b.get("/tasks").await.status, 200);
    tokio::time::sleep(Duration::from_millis(250)).await; // past the local cache
    assert_eq!(on_b.get("/tasks").await.status, 200);
    let last_read = std::time::Instant::now();

    proxy.set(Fault::Blackhole);
    assert_eq!(
        on_a.post("/auth/logout-all", json!({})).await.body["ended"],
        1
    );
    // The documented bound: the fail-safe after the last successful read,
    // plus one command timeout (500 ms) and slack for a loaded machine.
    let bound = fail_safe + Duration::from_millis(1500);
    let refused = eventually(bound, || {
        let mut on_b = on_b.clone();
        async move {
            let status = on_b.get("/tasks").await.status;
            status != 200
        }
    })
    .await;
    assert!(refused, "B still accepts the session ended on A");
    assert!(last_read.elapsed() <= bound, "{:?}", last_read.elapsed());
    for _ in 0..3 {
        assert_ne!(on_b.clone().get("/tasks").await.status, 200);
    }
    // Nothing can start a session on B while it is cut off.
    let relogin = Client::new(&b).login("erin", "erin-password").await;
    assert_ne!(relogin.status, 200, "{relogin:?}");
    proxy.heal();
    assert!(
        on_b.answers_within("/auth/me", 401, Duration::from_secs(5))
            .await,
        "once healed, B knows the session ended"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sentinel_health_and_the_dashboard_show_the_topology() {
    let db = TestDb::new();
    let server = start_with(
        Some(on_sentinel("sentinel-health")),
        db.clone(),
        test_config(&db.path()),
    )
    .await;
    let master = format!(
        "127.0.0.1:{}",
        sentinel().servers()[sentinel().master()].port()
    );
    let client = Client::new(&server);
    // /health/redis shows the background probe's last report, which may
    // predate the connection: poll until a report names the master.
    let reported = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        let master = master.clone();
        async move {
            let health = client.get("/health/redis").await;
            let redis = &health.body["redis"];
            health.status == 200
                && redis["topology"] == "sentinel"
                && redis["master"] == master.as_str()
                && redis["sentinels"].as_array().map(Vec::len) == Some(3)
        }
    })
    .await;
    assert!(
        reported,
        "/health/redis does not show the Sentinel topology"
    );
    let shown = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        let master = master.clone();
        async move {
            let data = client.get("/dashboard/data").await.body;
            data["topology"]["kind"] == "sentinel"
                && data["topology"]["master"] == master.as_str()
                && data["topology"]["sentinels_up"] == 3
        }
    })
    .await;
    assert!(shown, "the dashboard does not show the Sentinel topology");
    server.stop().await;
}
