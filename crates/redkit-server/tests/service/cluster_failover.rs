//! The service on a Redis Cluster whose master dies: once its replica takes
//! over, the service serves again — with the data written before.

use std::time::Duration;

use redkit::session::{SessionId, session_key};
use redkit_testkit::RedisCluster;
use serde_json::json;

use crate::support::{Client, eventually, fast_redis_config, start};

/// The store key of `client`'s session, read from its cookie.
fn session_key_of(client: &Client) -> String {
    let cookie = client.cookie.as_deref().expect("a session cookie");
    let (_, id) = cookie.split_once('=').expect("name=value");
    session_key(&SessionId::parse(id).expect("a session id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_again_after_a_replica_takes_over_a_killed_master() {
    // Its own cluster: the shared one must keep all its masters.
    let mut cluster = RedisCluster::start();
    let server = start(Some(fast_redis_config(&cluster.url()))).await;
    let mut alice = Client::registered(&server, "alice").await;
    let first = alice.post("/tasks", json!({"title": "before"})).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(alice.get("/tasks").await.status, 200);

    // Kill the master holding Alice's session, once its replica caught up.
    let victim = cluster.master_of(&session_key_of(&alice));
    cluster.wait_ready();
    cluster.node_mut(victim).kill();

    // Back means back on Redis: logging in writes Alice's new session in
    // the dead master's slot (her sessions share a slot), which the
    // session fail-safe or the embedded fallback never do.
    let started = std::time::Instant::now();
    let back = eventually(Duration::from_secs(30), || {
        let server = &server;
        async move {
            let mut fresh = Client::new(server);
            fresh.login("alice", "alice-password").await.status == 200
                && fresh.get("/auth/me").await.status == 200
                && fresh.post("/tasks", json!({"title": "after"})).await.status == 201
        }
    })
    .await;
    assert!(back, "the service did not serve again within 30 s");
    let took = started.elapsed();
    cluster.wait_ready();
    assert_ne!(cluster.master_of(&session_key_of(&alice)), victim);
    // The replica had caught up before the kill (offsets equal), so the
    // session from before the failover survived it.
    let listed = alice.get("/tasks").await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let titles: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|task| task["title"].as_str())
        .collect();
    assert_eq!(titles.first(), Some(&"before"), "{listed:?}");
    assert!(titles.contains(&"after"), "{listed:?}");
    println!(
        "service: logging in works again {:.1} s after a cluster master was killed",
        took.as_secs_f64()
    );
    server.stop().await;
}
