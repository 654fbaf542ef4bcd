//! Healing after Redis-side failures, on real redis-server processes: a tag
//! version store that went backwards (`FLUSHALL`), invalidations Redis
//! refuses (`maxmemory` + `noeviction`), and changes made on the embedded
//! fallback during an outage (replayed before Redis serves again).
//!
//! The "visible after" figures are printed (`--nocapture`) for the docs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redkit::Redkit;
use redkit::cache::{Cache, EntryOptions};
use redkit::ratelimit::{Policy, RateLimiter};
use redkit::session::{SessionConfig, Sessions};
use redkit::store::{Backend, RedisStore, Store};
use redkit_testkit::RedisServer;
use serde_json::Map;

use crate::support::{connected, eventually, ready_kit, wait_for_state};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The "database": the list a user sees, by version.
#[derive(Clone, Default)]
struct Db(Arc<AtomicU32>);

impl Db {
    async fn list<S: Store>(&self, cache: &Cache<S>, options: &EntryOptions) -> u32 {
        let db = self.0.clone();
        cache
            .get_or_set("u:1:list", options, move || async move {
                Ok::<_, Failure>(db.load(Ordering::SeqCst))
            })
            .await
            .unwrap()
    }

    fn write(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

async fn shared_cache(server: &RedisServer) -> Cache<RedisStore> {
    Cache::builder(RedisStore::new(connected(server).await), "tasks")
        .build()
        .await
        .unwrap()
}

/// Seconds until `probe` holds, polling; panics past `within`.
async fn seconds_until<F, Fut>(what: &str, within: Duration, mut probe: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let held = eventually(within, &mut probe).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(held, "{what}: not within {within:?}");
    println!("{what}: {seconds:.3} s");
    seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_flushall_a_write_is_visible_on_every_instance() {
    let server = RedisServer::new();
    let (a, b) = (shared_cache(&server).await, shared_cache(&server).await);
    let options = a.options().tag("user:1");
    let db = Db::default();
    // Some history: versions the instances hold and entries recorded them.
    for _ in 0..3 {
        let new = db.write();
        a.invalidate_tag("user:1").await.unwrap();
        assert_eq!(db.list(&a, &options).await, new);
        let seen = eventually(Duration::from_secs(1), || async {
            db.list(&b, &options).await == new
        })
        .await;
        assert!(seen);
    }
    let before = db.list(&b, &options).await;

    server.cli(&["FLUSHALL"]);
    // Writes after the flush: a counter would climb back to the versions
    // the old entries recorded.
    for _ in 0..3 {
        db.write();
        a.invalidate_tag("user:1").await.unwrap();
    }
    let now = db.0.load(Ordering::SeqCst);
    assert_ne!(before, now);
    seconds_until(
        "write visible through the other instance after FLUSHALL",
        Duration::from_secs(2),
        || async { db.list(&b, &options).await == now },
    )
    .await;
    assert_eq!(db.list(&a, &options).await, now);
    // And it stays so beyond the tag versions' max age (5 s by default is
    // too long for a test: a fresh reader with its own short max age).
    let reader = Cache::builder(RedisStore::new(connected(&server).await), "tasks")
        .l1(false)
        .tag_versions_max_age(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    assert_eq!(db.list(&reader, &options).await, now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_redis_refuses_to_invalidate_is_visible_within_the_bound() {
    let server = RedisServer::new();
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let (a, b) = (shared_cache(&server).await, shared_cache(&server).await);
    // An instance the backplane does not reach, reading L2 only.
    let cut_off = Cache::builder(RedisStore::new(connected(&server).await), "tasks")
        .l1(false)
        .backplane(false)
        .tag_versions_max_age(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let options = a.options().tag("user:1");
    let db = Db::default();
    assert_eq!(db.list(&a, &options).await, 0);
    assert_eq!(db.list(&b, &options).await, 0);
    assert_eq!(db.list(&cut_off, &options).await, 0);

    // Redis is full: every write command is refused with OOM.
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let refused = server.cli(&["SET", "probe", "x"]);
    assert!(refused.contains("OOM"), "{refused}");
    let new = db.write();
    a.invalidate_tag("user:1")
        .await
        .expect("a refused invalidation is kept and retried, not lost");
    assert_eq!(
        db.list(&a, &options).await,
        new,
        "the writer never reads its old value"
    );
    seconds_until(
        "write visible through another instance while Redis is at maxmemory",
        Duration::from_secs(1),
        || async { db.list(&b, &options).await == new },
    )
    .await;
    // The cut-off instance cannot know before Redis takes the new version.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        db.list(&b, &options).await,
        new,
        "B stays fresh while Redis is full"
    );

    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    seconds_until(
        "write visible through every instance after Redis leaves maxmemory",
        Duration::from_secs(2),
        || async { db.list(&cut_off, &options).await == new },
    )
    .await;
}

/// A fallback-mode kit on `server` whose data survives a restart (AOF).
fn durable_server() -> RedisServer {
    RedisServer::builder()
        .arg("appendonly", "yes")
        .arg("appendfsync", "always")
        .start()
}

/// Kills `server`, runs `during` (with `kits[0]` serving from its
/// fallback), restarts it and waits until every kit serves from Redis again
/// (journals replayed).
async fn outage<F, Fut>(server: &mut RedisServer, kits: &[&Redkit], during: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    server.kill();
    kits[0].store().get("wake-up").await.unwrap();
    assert_eq!(kits[0].store().backend(), Backend::Embedded);
    during().await;
    server.start();
    for kit in kits {
        wait_for_state(
            kit.connection().unwrap(),
            redkit::connection::ConnectionState::Ready,
            Duration::from_secs(5),
        )
        .await;
        let store = kit.store().clone();
        let back = eventually(Duration::from_secs(5), || {
            let store = store.clone();
            async move { store.backend() == Backend::Redis }
        })
        .await;
        assert!(back, "a kit did not serve from Redis again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidated_during_an_outage_is_invalid_elsewhere_after_recovery() {
    let mut server = durable_server();
    let (a_kit, b_kit) = (ready_kit(&server).await, ready_kit(&server).await);
    let a = a_kit.cache("tasks").build().await.unwrap();
    let b = b_kit.cache("tasks").build().await.unwrap();
    let options = a.options().tag("user:1");
    let db = Db::default();
    assert_eq!(db.list(&a, &options).await, 0);
    assert_eq!(db.list(&b, &options).await, 0);
    a.set("u:3:list", &7u32, &a.options()).await.unwrap();

    let new = db.write();
    outage(&mut server, &[&a_kit, &b_kit], || async {
        a.invalidate_tag("user:1").await.unwrap();
        a.invalidate_prefix("u:2:").await.unwrap();
    })
    .await;
    // B reads Redis again (the fallback would load 999)...
    let reads_redis = eventually(Duration::from_secs(3), || async {
        b.get::<u32>("u:3:list").await.unwrap() == Some(7)
    })
    .await;
    assert!(reads_redis, "B does not read Redis after recovery");
    // The restarted Redis has the old entry and the old tag version (AOF):
    // only the replayed invalidation makes it stale.
    seconds_until(
        "tag invalidated during the outage seen by the other instance after recovery",
        Duration::from_secs(3),
        || async { db.list(&b, &options).await == new },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_destroyed_during_an_outage_stay_destroyed_after_recovery() {
    let mut server = durable_server();
    let (a_kit, b_kit) = (ready_kit(&server).await, ready_kit(&server).await);
    let a = Sessions::new(a_kit.store().clone(), SessionConfig::default()).unwrap();
    let b = Sessions::new(b_kit.store().clone(), SessionConfig::default()).unwrap();
    let one = a.create("alice", Map::new()).await.unwrap();
    let all: Vec<_> = [
        a.create("bob", Map::new()).await.unwrap(),
        a.create("bob", Map::new()).await.unwrap(),
    ]
    .into();
    let control = a.create("carol", Map::new()).await.unwrap();
    assert!(b.get(&one.id).await.unwrap().is_some());

    outage(&mut server, &[&a_kit, &b_kit], || async {
        a.destroy(&one.id).await.unwrap();
        a.destroy_all("bob").await.unwrap();
    })
    .await;
    // B reads Redis again (the fallback knows no session)...
    let reads_redis = eventually(Duration::from_secs(3), || async {
        b.get(&control.id).await.unwrap().is_some()
    })
    .await;
    assert!(reads_redis, "B does not read Redis after recovery");
    assert!(
        b.get(&one.id).await.unwrap().is_none(),
        "a logout made during the outage was undone by recovery"
    );
    for session in &all {
        assert!(b.get(&session.id).await.unwrap().is_none());
    }
    assert!(b.list("bob").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalties_given_during_an_outage_hold_after_recovery() {
    let mut server = durable_server();
    let (a_kit, b_kit) = (ready_kit(&server).await, ready_kit(&server).await);
    let policy = Policy::new("auth", 5, Duration::from_secs(300)).unwrap();
    let a = RateLimiter::new(a_kit.store().clone()).unwrap();
    let b = RateLimiter::builder(b_kit.store().clone())
        .local_block(false)
        .build()
        .unwrap();
    assert!(b.check(&policy, "1.2.3.4", 1).await.unwrap().allowed);

    outage(&mut server, &[&a_kit, &b_kit], || async {
        a.penalize(&policy, "1.2.3.4", 4).await.unwrap();
    })
    .await;
    // Cost 0 reads the count without adding to it (a call right after
    // recovery may still be answered by the fallback: poll).
    let store = b.clone();
    let held = eventually(Duration::from_secs(3), || {
        let (store, policy) = (store.clone(), policy.clone());
        async move { store.check(&policy, "1.2.3.4", 0).await.unwrap().remaining == 0 }
    })
    .await;
    assert!(
        held,
        "a penalty given during the outage was forgiven by recovery"
    );
    assert!(!b.check(&policy, "1.2.3.4", 1).await.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_clears_the_cache_namespace_on_recovery() {
    let mut server = durable_server();
    let (a_kit, b_kit) = (ready_kit(&server).await, ready_kit(&server).await);
    let a = a_kit.cache("tasks").backplane(false).build().await.unwrap();
    let b = b_kit.cache("tasks").build().await.unwrap();
    let last = format!("t:{}", redkit::store::journal::JOURNAL_CAPACITY);
    let options = a.options().tag(last.clone());
    let db = Db::default();
    assert_eq!(db.list(&b, &options).await, 0);
    b.set("control", &7u32, &b.options()).await.unwrap();
    assert!(!server.cli(&["KEYS", "*tasks:v:control"]).trim().is_empty());

    let new = db.write();
    outage(&mut server, &[&a_kit, &b_kit], || async {
        // One more distinct change than the journal holds: the last one
        // is refused, and the cache records the clear of its namespace.
        for i in 0..=redkit::store::journal::JOURNAL_CAPACITY {
            a.invalidate_tag(&format!("t:{i}")).await.unwrap();
        }
    })
    .await;
    let cleared = eventually(Duration::from_secs(3), || async {
        b.get::<u32>("control").await.unwrap().is_none()
            && server.cli(&["KEYS", "*tasks:v:control"]).trim().is_empty()
    })
    .await;
    assert!(cleared, "the namespace was not cleared on Redis");
    assert_eq!(db.list(&b, &options).await, new);
}
