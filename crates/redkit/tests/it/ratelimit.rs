//! Rate limiting: exact counts at window edges (embedded store, manual
//! clock), the same scripts on Redis, shared limits, outages, the layer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{Request, StatusCode};
use redkit::clock::ManualClock;
use redkit::config::EmbeddedConfig;
use redkit::ratelimit::{
    DecisionSource, KeyBy, Policy, RateLimitLayer, RateLimiter, TrustedProxies, WhenUnavailable,
};
use redkit::store::{EmbeddedStore, RedisStore, Store};
use redkit_testkit::RedisServer;
use tower::ServiceExt;

use crate::support::{connected, patiently_connected};

/// A limiter on `store` without local blocks: every check reaches the
/// store (and local blocks follow the real clock).
fn unblocked<S: Store>(store: S) -> RateLimiter<S> {
    RateLimiter::builder(store)
        .local_block(false)
        .build()
        .unwrap()
}

/// A limiter on an embedded store whose clock starts at `at_secs` (a window
/// boundary), without local blocks (they follow the real clock).
fn manual(at_secs: u64) -> (RateLimiter<EmbeddedStore>, ManualClock) {
    let clock = ManualClock::starting_at(Duration::from_secs(at_secs));
    let store =
        EmbeddedStore::with_clock(EmbeddedConfig::default(), Arc::new(clock.clone())).unwrap();
    let limiter = unblocked(store);
    (limiter, clock)
}

async fn admitted<S: Store>(
    limiter: &RateLimiter<S>,
    policy: &Policy,
    key: &str,
    n: usize,
) -> usize {
    let mut count = 0;
    for _ in 0..n {
        if limiter.check(policy, key, 1).await.unwrap().allowed {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn sliding_window_counts_exactly_at_window_edges() {
    let (limiter, clock) = manual(1_700_000_000); // a multiple of 10 s
    let policy = Policy::new("edge", 10, Duration::from_secs(10)).unwrap();
    assert_eq!(admitted(&limiter, &policy, "k", 15).await, 10);
    let rejected = limiter.check(&policy, "k", 1).await.unwrap();
    assert!(!rejected.allowed);
    assert_eq!(rejected.remaining, 0);
    assert_eq!(rejected.retry_after, Duration::from_secs(10));
    assert_eq!(rejected.reset_after, Duration::from_secs(10));

    // 1 µs before the edge: the same window, still full.
    clock.advance(Duration::from_secs(10) - Duration::from_micros(1));
    assert_eq!(admitted(&limiter, &policy, "k", 1).await, 0);
    // On the edge: the previous window counts fully (10 × 10/10): still full.
    clock.advance(Duration::from_micros(1));
    assert_eq!(admitted(&limiter, &policy, "k", 1).await, 0);
    // 1 µs later the previous window weighs 10 × (10 s − 1 µs)/10 s → 9: one more.
    clock.advance(Duration::from_micros(1));
    assert_eq!(admitted(&limiter, &policy, "k", 5).await, 1);
    // Half-way: previous weighs 5, current holds 1 → 4 more.
    clock.advance(Duration::from_secs(5) - Duration::from_micros(1));
    assert_eq!(admitted(&limiter, &policy, "k", 10).await, 4);
    // Two windows later nothing is left of either.
    clock.advance(Duration::from_secs(20));
    assert_eq!(admitted(&limiter, &policy, "k", 15).await, 10);
}

#[tokio::test]
async fn gcra_admits_the_burst_then_one_per_emission_interval() {
    let (limiter, clock) = manual(1_700_000_000);
    let policy = Policy::gcra("smooth", 10, Duration::from_secs(1), 5).unwrap();
    assert_eq!(admitted(&limiter, &policy, "k", 8).await, 5);
    let rejected = limiter.check(&policy, "k", 1).await.unwrap();
    assert!(!rejected.allowed);
    assert_eq!(rejected.retry_after, Duration::from_millis(100));
    clock.advance(Duration::from_millis(100) - Duration::from_micros(1));
    assert_eq!(admitted(&limiter, &policy, "k", 1).await, 0);
    clock.advance(Duration::from_micros(1));
    assert_eq!(admitted(&limiter, &policy, "k", 3).await, 1);
    // After a full idle period the whole burst is back.
    clock.advance(Duration::from_secs(1));
    let decision = limiter.check(&policy, "k", 1).await.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 4);
    assert_eq!(admitted(&limiter, &policy, "k", 10).await, 4);
}

#[tokio::test]
async fn costs_penalties_and_rewards() {
    let (limiter, _clock) = manual(1_700_000_000);
    let policy = Policy::new("login", 5, Duration::from_secs(300)).unwrap();
    assert!(limiter.check(&policy, "u", 3).await.unwrap().allowed);
    assert!(!limiter.check(&policy, "u", 3).await.unwrap().allowed);
    limiter.reward(&policy, "u", 3).await.unwrap();
    assert_eq!(limiter.check(&policy, "u", 1).await.unwrap().remaining, 4);
    limiter.penalize(&policy, "u", 4).await.unwrap();
    assert!(!limiter.check(&policy, "u", 1).await.unwrap().allowed);
    let error = limiter.check(&policy, "bad\nkey", 1).await.unwrap_err();
    assert!(
        matches!(error, redkit::Error::InvalidInput { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn presets_match_the_seeds() {
    for (policy, name, limit, secs) in [
        (Policy::default_preset(), "default", 100, 60),
        (Policy::api(), "api", 1000, 3600),
        (Policy::auth(), "auth", 5, 300),
        (Policy::static_files(), "static", 1000, 60),
    ] {
        assert_eq!(
            (policy.name(), policy.limit(), policy.window().as_secs()),
            (name, limit, secs)
        );
    }
    let error = Policy::new("bad name!", 1, Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(error.contains("expected"), "{error}");
    assert!(Policy::new("zero", 0, Duration::from_secs(1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lua_scripts_agree_with_the_native_ones_on_redis() {
    let server = RedisServer::new();
    scripts_agree_with_native_ones(RedisStore::new(patiently_connected(&server).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lua_scripts_agree_with_the_native_ones_on_a_cluster() {
    scripts_agree_with_native_ones(crate::support::cluster_store().await).await;
}

async fn scripts_agree_with_native_ones(store: RedisStore) {
    let limiter = unblocked(store);
    // Hour-long windows: the test cannot straddle a window edge in practice.
    let sliding = Policy::new("sw", 10, Duration::from_secs(3600)).unwrap();
    assert_eq!(admitted(&limiter, &sliding, "k", 15).await, 10);
    let rejected = limiter.check(&sliding, "k", 1).await.unwrap();
    assert!(!rejected.allowed && rejected.remaining == 0);
    assert!(
        rejected.retry_after > Duration::ZERO && rejected.retry_after <= Duration::from_secs(3600)
    );
    let gcra = Policy::gcra("g", 10, Duration::from_secs(3600), 5).unwrap();
    assert_eq!(admitted(&limiter, &gcra, "k", 8).await, 5);
    let rejected = limiter.check(&gcra, "k", 1).await.unwrap();
    let interval = Duration::from_secs(360);
    assert!(
        rejected.retry_after > interval - Duration::from_secs(1)
            && rejected.retry_after <= interval
    );
    limiter.reward(&gcra, "k", 2).await.unwrap();
    assert_eq!(admitted(&limiter, &gcra, "k", 5).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_limit() {
    let server = RedisServer::new();
    instances_share_one_limit(
        RedisStore::new(patiently_connected(&server).await),
        RedisStore::new(patiently_connected(&server).await),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_limit_on_a_cluster() {
    let prefix = crate::support::unique_prefix();
    instances_share_one_limit(
        RedisStore::new(crate::support::cluster_connection(&prefix).await),
        RedisStore::new(crate::support::cluster_connection(&prefix).await),
    )
    .await;
}

async fn instances_share_one_limit(a: RedisStore, b: RedisStore) {
    let a = RateLimiter::new(a).unwrap();
    let b = RateLimiter::new(b).unwrap();
    let policy = Policy::new("shared", 10, Duration::from_secs(3600)).unwrap();
    let mut total = 0;
    for _ in 0..10 {
        total += admitted(&a, &policy, "ip:1", 1).await;
        total += admitted(&b, &policy, "ip:1", 1).await;
    }
    assert_eq!(total, 10);
    // Over the limit, the key is now blocked locally: no round trip.
    let blocked = a.check(&policy, "ip:1", 1).await.unwrap();
    assert!(!blocked.allowed);
    assert_eq!(blocked.source, DecisionSource::LocalBlock);
    let (stats_a, stats_b) = (a.stats(), b.stats());
    assert_eq!(stats_a.allowed + stats_b.allowed, 10);
    assert_eq!(stats_a.rejected + stats_b.rejected, 11);
    assert!(stats_a.rejected_locally >= 1, "{stats_a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insurance_limiter_while_redis_is_killed_then_redis_again() {
    let mut server = RedisServer::new();
    let connection = connected(&server).await;
    let limiter = unblocked(RedisStore::new(connection.clone()));
    let policy = Policy::new("outage", 5, Duration::from_secs(3600)).unwrap();
    assert_eq!(admitted(&limiter, &policy, "k", 2).await, 2);
    server.kill();
    // Limits stay enforced, per instance, by the insurance limiter.
    let mut sources = Vec::new();
    let mut allowed = 0;
    for _ in 0..10 {
        let decision = limiter.check(&policy, "k", 1).await.unwrap();
        allowed += usize::from(decision.allowed);
        sources.push(decision.source);
    }
    assert_eq!(allowed, 5, "the insurance limiter enforces the whole limit");
    assert!(
        sources.iter().all(|s| *s == DecisionSource::Insurance),
        "{sources:?}"
    );
    crate::support::restart_and_wait(&mut server, &connection).await;
    let decision = limiter.check(&policy, "k", 1).await.unwrap();
    assert_eq!(decision.source, DecisionSource::Store);
    // Admitted: 2 before the outage, 5 by insurance, 1 back on Redis (which
    // had counted only 2 of 5); rejected: 5 by insurance.
    let stats = limiter.stats();
    assert_eq!(
        (
            stats.allowed,
            stats.rejected,
            stats.degraded,
            stats.rejected_locally
        ),
        (8, 5, 10, 0),
        "{stats:?}"
    );

    // The other behaviours while down.
    server.kill();
    let open = RateLimiter::builder(RedisStore::new(connection.clone()))
        .when_unavailable(WhenUnavailable::FailOpen)
        .build()
        .unwrap();
    let decision = open.check(&policy, "k", 1).await.unwrap();
    assert!(decision.allowed && decision.source == DecisionSource::FailOpen);
    assert_eq!(open.stats().degraded, 1);
    let closed = RateLimiter::builder(RedisStore::new(connection.clone()))
        .when_unavailable(WhenUnavailable::FailClosed)
        .build()
        .unwrap();
    assert!(
        closed
            .check(&policy, "k", 1)
            .await
            .unwrap_err()
            .is_unavailable()
    );
}

/// Redis at `maxmemory` with `noeviction` answers every write
/// `-OOM command not allowed …`: it answered, but it cannot count. The
/// limiter then counts in its insurance limiter (limits stay enforced) and
/// the layer keeps answering 200 / 429, never 503; once Redis has room
/// again, Redis counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_is_an_outage_for_the_limiter_not_a_503() {
    let server = RedisServer::builder()
        .arg("maxmemory-policy", "noeviction")
        .start();
    let connection = connected(&server).await;
    let limiter = unblocked(RedisStore::new(connection.clone()));
    let policy = Policy::new("full", 3, Duration::from_secs(3600)).unwrap();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(limiter.clone(), policy.clone()));
    // Filled: whatever it holds is more than it may use.
    server.cli(&["SET", "ballast", &"x".repeat(64 * 1024)]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let full = redkit::store::RedisStore::new(connection.clone())
        .set("probe", b"v", None)
        .await
        .unwrap_err();
    assert!(full.is_refused_for_now(), "{full:?}");
    assert!(!full.is_unavailable(), "{full:?}");

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send(&router, "10.0.0.1:1", &[]).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429], "limits stay enforced");
    let decision = limiter.check(&policy, "other", 1).await.unwrap();
    assert_eq!(decision.source, DecisionSource::Insurance);

    // Fail closed: the layer's 503 has the documented error shape.
    let closed = RateLimiter::builder(RedisStore::new(connection.clone()))
        .when_unavailable(WhenUnavailable::FailClosed)
        .build()
        .unwrap();
    let error = closed.check(&policy, "k", 1).await.unwrap_err();
    assert!(error.is_refused_for_now(), "{error:?}");
    let closed_router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(closed, policy.clone()));
    let response = send(&closed_router, "10.0.0.1:1", &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limiter_unavailable", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // Room again: Redis counts.
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let decision = limiter.check(&policy, "again", 1).await.unwrap();
    assert_eq!(decision.source, DecisionSource::Store);
}

fn app(layer: RateLimitLayer<EmbeddedStore>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

/// A limiter on a fresh embedded store, with the defaults.
fn embedded_limiter() -> RateLimiter<EmbeddedStore> {
    RateLimiter::new(EmbeddedStore::new(EmbeddedConfig::default()).unwrap()).unwrap()
}

/// Sends one request from `peer` with `headers` through `router`.
async fn send(router: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    router
        .clone()
        .oneshot(request(peer, headers))
        .await
        .unwrap()
}

/// The statuses of requests from `peer`, one per value of `header`, in order.
async fn statuses_by_header(
    router: &Router,
    peer: &str,
    header: &str,
    values: &[&str],
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for value in values {
        statuses.push(
            send(router, peer, &[(header, value)])
                .await
                .status()
                .as_u16(),
        );
    }
    statuses
}

fn request(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::builder().uri("/");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

#[tokio::test]
async fn the_layer_sends_ietf_headers_and_a_429_with_retry_after() {
    let limiter = embedded_limiter();
    let router = app(RateLimitLayer::new(limiter, Policy::auth()).legacy_headers(true));
    for remaining in (0..5).rev() {
        let response = send(&router, "203.0.113.1:1000", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["ratelimit-policy"], "\"auth\";q=5;w=300");
        let ratelimit = headers["ratelimit"].to_str().unwrap();
        assert!(
            ratelimit.starts_with(&format!("\"auth\";r={remaining};t=")),
            "{ratelimit}"
        );
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert_eq!(
            headers["x-ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let response = send(&router, "203.0.113.1:1000", &[]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["policy"], "auth");
    assert_eq!(body["retry_after_seconds"], retry);
    // Another client is not affected.
    let other = send(&router, "203.0.113.2:1000", &[]).await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_do_not_change_the_key() {
    let limiter = embedded_limiter();
    let policy = Policy::new("spoof", 3, Duration::from_secs(60)).unwrap();
    let layer = RateLimitLayer::new(limiter.clone(), policy.clone())
        .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).unwrap());
    let router = app(layer);
    let mut statuses = Vec::new();
    for i in 0..5 {
        let spoof = format!("198.51.100.{i}");
        let forwarded = format!("for={spoof}");
        let headers = [
            ("x-forwarded-for", spoof.as_str()),
            ("forwarded", &forwarded),
        ];
        let response = send(&router, "203.0.113.7:1000", &headers).await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429],
        "spoofing reset the limit"
    );
    // Behind a trusted proxy, the forwarded client is the key.
    for i in 0..3 {
        let client = format!("198.51.100.{i}");
        let response = send(&router, "10.1.2.3:1000", &[("x-forwarded-for", &client)]).await;
        assert_eq!(response.status(), StatusCode::OK, "{client}");
    }
}

/// A client with an IPv6 network cannot reset its limit by moving to
/// another address of it: the key is its /56; the next /56 is another client.
#[tokio::test]
async fn ipv6_addresses_of_one_network_share_a_limit() {
    let limiter = embedded_limiter();
    let policy = Policy::new("v6", 3, Duration::from_secs(60)).unwrap();
    let router = app(RateLimitLayer::new(limiter, policy));
    let mut statuses = Vec::new();
    for i in 0..5 {
        let peer = format!("[2001:db8:7:{:x}::{i}]:1000", i * 7);
        statuses.push(send(&router, &peer, &[]).await.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429],
        "rotating addresses reset the limit"
    );
    let next_network = send(&router, "[2001:db8:7:100::1]:1000", &[]).await;
    assert_eq!(next_network.status(), StatusCode::OK);
    // An IPv4-mapped peer is its IPv4 client.
    for _ in 0..3 {
        let response = send(&router, "192.0.2.44:1000", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mapped = send(&router, "[::ffff:192.0.2.44]:1000", &[]).await;
    assert_eq!(mapped.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn keys_by_header_or_custom_function_and_scope() {
    let limiter = embedded_limiter();
    let policy = Policy::new("keyed", 1, Duration::from_secs(60)).unwrap();
    let by_header = app(RateLimitLayer::new(limiter.clone(), policy.clone())
        .key_by(KeyBy::Header(http::HeaderName::from_static("x-api-key")))
        .scope("route-a"));
    let same_ip = "203.0.113.9:1";
    assert_eq!(
        statuses_by_header(&by_header, same_ip, "x-api-key", &["one", "two", "one"]).await,
        [200, 200, 429]
    );
    let by_user = app(RateLimitLayer::new(limiter, policy)
        .key_by(KeyBy::custom(|parts, _| {
            parts
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        }))
        .scope("route-b"));
    assert_eq!(
        statuses_by_header(&by_user, same_ip, "x-user", &["ada", "bob", "ada"]).await,
        [200, 200, 429]
    );
}

/// `EVALSHA` calls Redis has served so far.
async fn evalsha_calls(connection: &redkit::connection::RedisConnection) -> u64 {
    crate::support::command_calls(connection, "evalsha").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_leases_save_round_trips_and_never_over_admit_across_instances() {
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let leasing = |connection| {
        RateLimiter::builder(RedisStore::new(connection))
            .local_leases(Duration::from_millis(100), 0.5)
            .build()
            .unwrap()
    };
    let a = leasing(patiently_connected(&server).await);
    let b = leasing(patiently_connected(&server).await);
    let policy = Policy::new("leased", 1000, Duration::from_secs(3600)).unwrap();
    let before = evalsha_calls(&connection).await;
    let mut tasks = Vec::new();
    for limiter in [&a, &b, &a, &b, &a, &b] {
        let (limiter, policy) = (limiter.clone(), policy.clone());
        tasks.push(tokio::spawn(async move {
            admitted(&limiter, &policy, "hot", 500).await
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let calls = evalsha_calls(&connection).await - before;
    assert!(total <= 1000, "over-admitted: {total}");
    assert!(
        total >= 900,
        "leases wasted too much: {total} admitted of 1000"
    );
    assert!(calls < 1000, "{calls} round trips for 3000 checks");
    let leased = a.stats().leased + b.stats().leased;
    assert!(leased > 500, "{leased} admitted locally");
    assert_eq!(a.stats().allowed + b.stats().allowed, total as u64);
}

#[tokio::test]
async fn local_leases_are_exact_near_the_limit_and_waste_nothing_on_quiet_keys() {
    let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
    let leasing = RateLimiter::builder(store.clone())
        .local_leases(Duration::from_millis(50), 0.5)
        .build()
        .unwrap();
    let plain = unblocked(store);
    // A small limit: leases shrink to nothing as the quota runs out.
    let small = Policy::new("small", 10, Duration::from_secs(3600)).unwrap();
    assert_eq!(admitted(&leasing, &small, "k", 20).await, 10);
    assert!(leasing.stats().leased > 0, "{:?}", leasing.stats());
    assert!(!plain.check(&small, "k", 1).await.unwrap().allowed);
    // A key seen once in a while leases nothing: each check counts one.
    let quiet = Policy::new("quiet", 100, Duration::from_secs(3600)).unwrap();
    for _ in 0..5 {
        assert!(leasing.check(&quiet, "q", 1).await.unwrap().allowed);
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    assert_eq!(plain.check(&quiet, "q", 1).await.unwrap().remaining, 94);
    // Bad settings are refused.
    for (interval, share) in [
        (Duration::ZERO, 0.5),
        (Duration::from_secs(1), 0.0),
        (Duration::from_secs(1), 1.5),
    ] {
        let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
        let error = RateLimiter::builder(store)
            .local_leases(interval, share)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("local_leases"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_request_dropped_mid_flight_does_not_stop_leasing() {
    let server = RedisServer::new();
    let limiter = RateLimiter::builder(RedisStore::new(connected(&server).await))
        .local_leases(Duration::from_millis(50), 0.5)
        .build()
        .unwrap();
    let policy = Policy::new("dropped", 1000, Duration::from_secs(3600)).unwrap();
    assert!(limiter.check(&policy, "k", 1).await.unwrap().allowed);
    // The next check asks for a lease; its caller gives up while Redis hangs.
    server.pause();
    let dropped = tokio::time::timeout(Duration::from_millis(20), limiter.check(&policy, "k", 1));
    assert!(dropped.await.is_err(), "the check should still be waiting");
    server.resume();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(admitted(&limiter, &policy, "k", 10).await, 10);
    assert!(limiter.stats().leased > 0, "{:?}", limiter.stats());
}

/// Like tower's services, `RateLimit` gives access to the service it wraps,
/// and its future lives in `ratelimit::future`.
#[tokio::test]
async fn the_service_exposes_what_it_wraps() {
    use tower::Layer;

    let limiter = embedded_limiter();
    let policy = Policy::new("wrap", 1, Duration::from_secs(60)).unwrap();
    let inner = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    });
    let mut service = RateLimitLayer::new(limiter, policy).layer((inner, 7u8));
    assert_eq!(service.get_ref().1, 7);
    service.get_mut().1 = 8;
    assert_eq!(service.into_inner().1, 8);

    let limiter = embedded_limiter();
    let mut service = RateLimitLayer::new(
        limiter,
        Policy::new("wrap", 1, Duration::from_secs(60)).unwrap(),
    )
    .layer(inner);
    let ready = service.ready().await.unwrap();
    let future: redkit::ratelimit::future::ResponseFuture<http::Response<Body>, _> =
        tower::Service::call(ready, request("203.0.113.9:1000", &[]));
    assert_eq!(future.await.unwrap().status(), StatusCode::OK);
}

/// A key the limiter refuses (here a 600-byte API key) is a 400 in the one
/// error shape, `{"error": {"code", "message"}}`.
#[tokio::test]
async fn a_refused_key_is_a_400_in_the_documented_error_shape() {
    let policy = Policy::new("keyed", 5, Duration::from_secs(60)).unwrap();
    let layer = RateLimitLayer::new(embedded_limiter(), policy)
        .key_by(KeyBy::Header(http::HeaderName::from_static("x-api-key")));
    let long = "k".repeat(600);
    let response = send(&app(layer), "10.0.0.1:1", &[("x-api-key", &long)]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected 1 to 512"),
        "{body}"
    );
}

/// Concurrent checks on one Redis go in few script calls (those arriving
/// while a call is in flight share the next), yet each key is counted
/// exactly, for both algorithms mixed in the same calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_share_calls_and_count_each_key_exactly() {
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let limiter = unblocked(RedisStore::new(patiently_connected(&server).await));
    let sliding = Policy::new("batch_sw", 300, Duration::from_secs(3600)).unwrap();
    let gcra = Policy::gcra("batch_g", 200, Duration::from_secs(3600), 200).unwrap();
    let before = evalsha_calls(&connection).await;
    let mut tasks = Vec::new();
    for task in 0..40 {
        let (limiter, sliding, gcra) = (limiter.clone(), sliding.clone(), gcra.clone());
        tasks.push(tokio::spawn(async move {
            let mut admitted = [0usize; 3];
            for i in 0..25 {
                // Two hot keys every task hits, and one key of this task's own.
                let hot_sliding = limiter.check(&sliding, "hot", 1).await.unwrap();
                let hot_gcra = limiter.check(&gcra, "hot", 1).await.unwrap();
                let own = limiter
                    .check(&sliding, &format!("own:{task}"), 1)
                    .await
                    .unwrap();
                for (count, decision) in admitted.iter_mut().zip([hot_sliding, hot_gcra, own]) {
                    *count += usize::from(decision.allowed);
                }
                if i % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            admitted
        }));
    }
    let mut totals = [0usize; 3];
    for task in tasks {
        let admitted = task.await.unwrap();
        assert_eq!(admitted[2], 25, "a key of its own is never over its limit");
        for (total, count) in totals.iter_mut().zip(admitted) {
            *total += count;
        }
    }
    assert_eq!(
        totals[0], 300,
        "sliding window: exactly its limit of 1000 checks"
    );
    assert_eq!(totals[1], 200, "GCRA: exactly its burst of 1000 checks");
    let calls = evalsha_calls(&connection).await - before;
    assert!(
        calls < 1500,
        "{calls} script calls for 3000 concurrent checks: they should share calls"
    );
    assert_eq!(limiter.stats().allowed, 300 + 200 + 1000);
}

/// A key holding another type of value fails its own check with a
/// `WrongType` error naming it, on Redis as in the embedded store; the
/// checks that share its script call are answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_fails_only_its_own_check() {
    let server = RedisServer::new();
    let redis = RedisStore::new(patiently_connected(&server).await);
    let embedded = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
    wrong_type_fails_alone_on_every_path(RateLimiter::new(redis.clone()).unwrap(), redis).await;
    wrong_type_fails_alone_on_every_path(RateLimiter::new(embedded.clone()).unwrap(), embedded)
        .await;
}

/// Admitted, denied (more than the limit at once) and a reward, for both
/// algorithms: each answer path of the script meets the foreign key.
async fn wrong_type_fails_alone_on_every_path<S: Store>(limiter: RateLimiter<S>, store: S) {
    let sliding = Policy::new("typed", 10, Duration::from_secs(3600)).unwrap();
    let gcra = Policy::gcra("typed_gcra", 10, Duration::from_secs(3600), 10).unwrap();
    for policy in [sliding, gcra] {
        for cost in [1, 20, -1] {
            wrong_type_fails_alone(&limiter, &store, &policy, cost).await;
        }
    }
}

async fn wrong_type_fails_alone<S: Store>(
    limiter: &RateLimiter<S>,
    store: &S,
    policy: &Policy,
    cost: i64,
) {
    let foreign = format!("rl:{}:a-set", policy.name());
    store.set_add(&foreign, &["member"]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (limiter, policy) = (limiter.clone(), policy.clone());
        let key = if i % 10 == 0 {
            "a-set".to_owned()
        } else {
            format!("user:{cost}:{i}")
        };
        tasks.push(tokio::spawn(async move {
            let decision = if cost < 0 {
                limiter.reward(&policy, &key, cost.unsigned_abs()).await
            } else {
                limiter.check(&policy, &key, cost.unsigned_abs()).await
            };
            (key.clone(), decision)
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            (key, Ok(decision)) => {
                assert_ne!(key, "a-set", "{decision:?}");
                assert_eq!(decision.allowed, cost <= 10, "{decision:?}");
                if cost == 1 {
                    assert_eq!(decision.remaining, 9, "{decision:?}");
                }
            }
            (key, Err(error)) => {
                assert_eq!(key, "a-set", "cost {cost}: {error}");
                assert!(
                    matches!(error, redkit::Error::WrongType { .. }),
                    "{error:?}"
                );
                assert!(error.to_string().contains(&foreign), "{error}");
            }
        }
    }
    // The set is left as it was.
    assert_eq!(
        store.set_members(&foreign).await.unwrap(),
        vec!["member".to_owned()]
    );
}

/// Callers that give up while their checks wait for Redis (dropped
/// requests) do not strand the checks of others, nor later checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_given_up_while_redis_hangs_strand_no_other_check() {
    let server = RedisServer::new();
    let limiter = unblocked(RedisStore::new(connected(&server).await));
    let policy = Policy::new("given_up", 1000, Duration::from_secs(3600)).unwrap();
    assert!(limiter.check(&policy, "k", 1).await.unwrap().allowed);
    server.pause();
    let mut patient = Vec::new();
    for i in 0..10 {
        let (limiter, policy) = (limiter.clone(), policy.clone());
        let check = async move { limiter.check(&policy, &format!("k{}", i % 3), 1).await };
        if i % 2 == 0 {
            let given_up = tokio::time::timeout(Duration::from_millis(20), check).await;
            assert!(given_up.is_err(), "the check should still be waiting");
        } else {
            patient.push(tokio::spawn(check));
        }
    }
    server.resume();
    for check in patient {
        let decision = tokio::time::timeout(Duration::from_secs(5), check)
            .await
            .expect("a waiting check is answered once Redis is back")
            .unwrap()
            .unwrap();
        assert!(decision.allowed, "{decision:?}");
    }
    let later = tokio::time::timeout(Duration::from_secs(5), admitted(&limiter, &policy, "k", 20))
        .await
        .expect("later checks are answered");
    assert_eq!(later, 20);
}

/// Checks of different costs and policies that share script calls each
/// count with their own cost: a call names each distinct check once and
/// every key its own (on Redis the concurrent checks share calls; the
/// embedded store runs them one by one, and both must agree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_of_different_costs_each_count_their_own_cost() {
    let server = RedisServer::new();
    let redis = unblocked(RedisStore::new(patiently_connected(&server).await));
    each_check_counts_its_own_cost(redis).await;
    each_check_counts_its_own_cost(embedded_limiter()).await;
}

async fn each_check_counts_its_own_cost<S: Store>(limiter: RateLimiter<S>) {
    // Capacity 60 per key; each key is asked for 1 + 2 + 3 ten times over
    // (60 in all), so every check fits and the key ends exactly full.
    let gcra = Policy::gcra("costs_g", 60, Duration::from_secs(3600), 60).unwrap();
    let sliding = Policy::new("costs_sw", 60, Duration::from_secs(3600)).unwrap();
    let mut tasks = Vec::new();
    for policy in [&gcra, &sliding] {
        for key in ["a", "b", "c"] {
            for cost in (1..=3).cycle().take(30) {
                let (limiter, policy) = (limiter.clone(), policy.clone());
                tasks.push(tokio::spawn(async move {
                    limiter.check(&policy, key, cost).await.unwrap().allowed
                }));
            }
        }
    }
    for task in tasks {
        assert!(
            task.await.unwrap(),
            "a check within the capacity was refused"
        );
    }
    for policy in [&gcra, &sliding] {
        for key in ["a", "b", "c"] {
            let next = limiter.check(policy, key, 1).await.unwrap();
            assert!(
                !next.allowed && next.remaining == 0,
                "{} {key}: {next:?} after 60 units",
                policy.name()
            );
        }
    }
}
