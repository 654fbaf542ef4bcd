//! The multi-tier cache: one behavioural suite on the embedded store and on
//! Redis, plus multi-instance and failure scenarios on real redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redkit::Error;
use redkit::cache::{Cache, Codec, Loaded};
use redkit::clock::ManualClock;
use redkit::config::EmbeddedConfig;
use redkit::store::{EmbeddedStore, KeyTtl, RedisStore, Store};
use redkit_testkit::RedisServer;
use serde::{Deserialize, Serialize};

use crate::support::{command_calls, connected, eventually};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    id: u64,
    title: String,
}

fn task(id: u64) -> Task {
    Task {
        id,
        title: format!("task {id}"),
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The behaviour every store must give the cache.
mod suite {
    use super::*;

    pub async fn get_set_delete<S: Store>(store: S) {
        let cache = Cache::builder(store, "suite").build().await.unwrap();
        let options = cache.options();
        assert_eq!(cache.get::<Task>("t1").await.unwrap(), None);
        cache.set("t1", &task(1), &options).await.unwrap();
        assert_eq!(cache.get::<Task>("t1").await.unwrap(), Some(task(1)));
        assert!(cache.delete("t1").await.unwrap());
        assert_eq!(cache.get::<Task>("t1").await.unwrap(), None);
        let stats = cache.stats();
        assert_eq!((stats.l1_hits, stats.misses), (1, 2), "{stats:?}");
    }

    pub async fn l2_serves_when_l1_is_off<S: Store>(store: S) {
        let writer = Cache::builder(store.clone(), "l2").build().await.unwrap();
        let reader = Cache::builder(store, "l2").l1(false).build().await.unwrap();
        writer.set("k", &task(7), &writer.options()).await.unwrap();
        assert_eq!(reader.get::<Task>("k").await.unwrap(), Some(task(7)));
        assert_eq!(reader.stats().l2_hits, 1);
    }

    pub async fn bulk_operations<S: Store>(store: S) {
        let cache = Cache::builder(store, "bulk").build().await.unwrap();
        let entries: Vec<(String, Task)> = (0..50).map(|i| (format!("k{i}"), task(i))).collect();
        let refs: Vec<(&str, Task)> = entries
            .iter()
            .map(|(k, t)| (k.as_str(), t.clone()))
            .collect();
        cache
            .set_many(&refs, &cache.options().l1(false))
            .await
            .unwrap();
        let keys: Vec<&str> = vec!["k0", "missing", "k49"];
        let values = cache.get_many::<Task>(&keys).await.unwrap();
        assert_eq!(values, vec![Some(task(0)), None, Some(task(49))]);
        // Now k0 and k49 are in L1 too: a second read is all L1.
        let before = cache.stats().l1_hits;
        cache.get_many::<Task>(&["k0", "k49"]).await.unwrap();
        assert_eq!(cache.stats().l1_hits, before + 2);
        assert_eq!(cache.delete_many(&["k0", "k1", "nope"]).await.unwrap(), 2);
        assert_eq!(cache.get::<Task>("k0").await.unwrap(), None);
    }

    /// `get_many` serves L1 by the same rules as `get`: a tagged entry is an
    /// L1 hit while its tags are current, and gone once one is invalidated.
    pub async fn get_many_follows_get_l1_rules<S: Store>(store: S) {
        let cache = Cache::builder(store, "bulk-tags").build().await.unwrap();
        let tagged = cache.options().tags(["owner:1"]);
        cache.set("a", &task(1), &tagged).await.unwrap();
        let before = cache.stats();
        let values = cache.get_many::<Task>(&["a"]).await.unwrap();
        assert_eq!(values, vec![Some(task(1))]);
        let after = cache.stats();
        assert_eq!(
            (
                after.l1_hits - before.l1_hits,
                after.l2_hits - before.l2_hits
            ),
            (1, 0),
            "{after:?}"
        );
        cache.invalidate_tag("owner:1").await.unwrap();
        assert_eq!(cache.get_many::<Task>(&["a"]).await.unwrap(), vec![None]);
        assert_eq!(cache.get::<Task>("a").await.unwrap(), None);
    }

    pub async fn single_flight<S: Store>(store: S) {
        let cache = Cache::builder(store, "flight").build().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_set("cold", &cache.options(), move || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, Failure>(task(42))
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for task_handle in tasks {
            assert_eq!(task_handle.await.unwrap(), task(42));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the loader ran more than once"
        );
    }

    pub async fn stale_while_revalidate<S: Store>(store: S) {
        let cache = Cache::builder(store, "swr").build().await.unwrap();
        let options = cache
            .options()
            .ttl(Duration::from_millis(150))
            .stale_window(Duration::from_secs(10));
        let first = cache
            .get_or_set("k", &options, || async { Ok::<_, Failure>(1u32) })
            .await
            .unwrap();
        assert_eq!(first, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let stale = cache
            .get_or_set("k", &options, || async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, Failure>(2u32)
            })
            .await
            .unwrap();
        assert_eq!(stale, 1, "the stale value is served at once");
        assert!(started.elapsed() < Duration::from_millis(80));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let fresh = cache
            .get_or_set("k", &options, || async { Ok::<_, Failure>(3u32) })
            .await
            .unwrap();
        assert_eq!(fresh, 2, "the background refresh landed");
        assert!(cache.stats().stale_served >= 1);
    }

    pub async fn fail_safe_and_timeouts<S: Store>(store: S) {
        let cache = Cache::builder(store, "failsafe").build().await.unwrap();
        // No throttle here: the soft timeout below must call the loader again.
        let options = cache
            .options()
            .ttl(Duration::from_millis(100))
            .fail_safe_max(Duration::from_secs(30))
            .fail_safe_throttle(Duration::ZERO);
        cache
            .get_or_set("k", &options, || async { Ok::<_, Failure>(1u32) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let served = cache
            .get_or_set("k", &options, || async {
                Err::<u32, Failure>("database down".into())
            })
            .await
            .unwrap();
        assert_eq!(served, 1, "fail-safe serves the stale value");
        // Without a stale value the loader's error comes back, with its cause.
        let error = cache
            .get_or_set("other", &options, || async {
                Err::<u32, Failure>("database down".into())
            })
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Loader { .. }), "{error:?}");
        assert_eq!(
            std::error::Error::source(&error).unwrap().to_string(),
            "database down"
        );
        // Hard timeout.
        let error = cache
            .get_or_set(
                "slow",
                &options.clone().hard_timeout(Duration::from_millis(50)),
                || async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<_, Failure>(1u32)
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(error, Error::LoaderTimeout { .. }), "{error:?}");
        // Soft timeout: the stale value comes back after it, the load lands later.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let soft = options
            .clone()
            .ttl(Duration::from_secs(10))
            .soft_timeout(Duration::from_millis(30));
        let started = Instant::now();
        let value = cache
            .get_or_set("k", &soft, || async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok::<_, Failure>(9u32)
            })
            .await
            .unwrap();
        assert_eq!(value, 1);
        assert!(
            started.elapsed() < Duration::from_millis(120),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(9));
    }

    pub async fn fail_safe_throttle_spares_the_loader<S: Store>(store: S) {
        let clock = ManualClock::starting_at(Duration::from_secs(1_000_000));
        let cache = Cache::builder(store, "throttle")
            .clock(Arc::new(clock.clone()))
            .build()
            .await
            .unwrap();
        let options = cache
            .options()
            .ttl(Duration::from_secs(1))
            .fail_safe_max(Duration::from_secs(60))
            .fail_safe_throttle(Duration::from_secs(2));
        let calls = Arc::new(AtomicUsize::new(0));
        let read = |fails: bool| {
            let calls = calls.clone();
            cache.get_or_set("k", &options, move || async move {
                let call = calls.fetch_add(1, Ordering::SeqCst) as u32;
                if fails {
                    Err::<u32, Failure>("database down".into())
                } else {
                    Ok(call)
                }
            })
        };
        assert_eq!(read(false).await.unwrap(), 0);
        clock.advance(Duration::from_millis(1500));
        for _ in 0..10 {
            assert_eq!(read(true).await.unwrap(), 0, "the stale value is served");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one failed load, then the throttle serves the stale value without the loader"
        );
        clock.advance(Duration::from_millis(2100));
        assert_eq!(read(true).await.unwrap(), 0);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "after the throttle the loader runs again"
        );
        clock.advance(Duration::from_millis(2100));
        assert_eq!(
            read(false).await.unwrap(),
            3,
            "a working loader is used at once"
        );
    }

    pub async fn an_invalidation_during_a_load_is_not_lost<S: Store>(store: S) {
        let cache = Cache::builder(store, "racing").build().await.unwrap();
        let options = cache.options().tag("user:1");
        let writer = cache.clone();
        // The loader reads the old data, then a write commits and
        // invalidates before the loaded value is stored.
        let value = cache
            .get_or_set("list", &options, move || async move {
                writer.invalidate_tag("user:1").await.unwrap();
                Ok::<_, Failure>(1u32)
            })
            .await
            .unwrap();
        assert_eq!(value, 1, "the caller still gets what was loaded");
        let reloaded = cache
            .get_or_set("list", &options, || async { Ok::<_, Failure>(2u32) })
            .await
            .unwrap();
        assert_eq!(
            reloaded, 2,
            "a value loaded before an invalidation was cached"
        );
    }

    pub async fn loader_controls_caching<S: Store>(store: S) {
        let cache = Cache::builder(store, "loaded").build().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let calls = calls.clone();
            let value = cache
                .get_or_set_with("nf", &cache.options(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Failure>(Loaded::new(Option::<u32>::None).do_not_cache())
                })
                .await
                .unwrap();
            assert_eq!(value, None);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "do_not_cache was cached");
        cache
            .get_or_set_with("short", &cache.options(), || async {
                Ok::<_, Failure>(Loaded::new(5u8).ttl(Duration::from_millis(50)))
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(cache.get::<u8>("short").await.unwrap(), None);
    }

    pub async fn tags_invalidate_only_their_entries<S: Store>(store: S) {
        let cache = Cache::builder(store, "tags").build().await.unwrap();
        let user1 = cache.options().tag("user:1");
        let user2 = cache.options().tag("user:2");
        cache.set("a", &1u8, &user1).await.unwrap();
        cache
            .set("b", &2u8, &user1.clone().tag("all"))
            .await
            .unwrap();
        cache.set("c", &3u8, &user2).await.unwrap();
        cache.invalidate_tag("user:1").await.unwrap();
        assert_eq!(cache.get::<u8>("a").await.unwrap(), None);
        assert_eq!(cache.get::<u8>("b").await.unwrap(), None);
        assert_eq!(cache.get::<u8>("c").await.unwrap(), Some(3));
        // Written after the invalidation: valid again.
        cache.set("a", &4u8, &user1).await.unwrap();
        assert_eq!(cache.get::<u8>("a").await.unwrap(), Some(4));
        cache.invalidate_tags(&["user:2", "all"]).await.unwrap();
        assert_eq!(cache.get::<u8>("c").await.unwrap(), None);
        assert_eq!(cache.get::<u8>("a").await.unwrap(), Some(4));
    }

    pub async fn hostile_keys_and_patterns<S: Store>(store: S) {
        let cache = Cache::builder(store.clone(), "hostile")
            .build()
            .await
            .unwrap();
        let options = cache.options();
        let keys = ["a*", "a?", "a[bc]", "ab", "abc", "a\\", "a*tail"];
        for (i, key) in keys.iter().enumerate() {
            cache.set(key, &i, &options).await.unwrap();
        }
        assert_eq!(cache.invalidate_prefix("a*").await.unwrap(), 2);
        assert_eq!(cache.get::<usize>("a*").await.unwrap(), None);
        assert_eq!(cache.get::<usize>("a*tail").await.unwrap(), None);
        for key in ["a?", "a[bc]", "ab", "abc", "a\\"] {
            assert!(
                cache.get::<usize>(key).await.unwrap().is_some(),
                "{key} was invalidated"
            );
        }
        assert_eq!(cache.invalidate_prefix("a[").await.unwrap(), 1);
        assert!(cache.get::<usize>("ab").await.unwrap().is_some());
        // Glob characters in tags are literal too.
        cache
            .set("t", &1u8, &options.clone().tag("t*"))
            .await
            .unwrap();
        cache
            .set("u", &1u8, &options.clone().tag("tx"))
            .await
            .unwrap();
        cache.invalidate_tag("t*").await.unwrap();
        assert_eq!(cache.get::<u8>("t").await.unwrap(), None);
        assert_eq!(cache.get::<u8>("u").await.unwrap(), Some(1));
        // Control characters and huge keys are refused, clearly.
        for bad in ["new\nline", "nul\0", &"k".repeat(5000)] {
            let error = cache.set(bad, &1u8, &options).await.unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::InvalidInput {
                        what: "cache key",
                        ..
                    }
                ),
                "{error:?}"
            );
            assert!(cache.get::<u8>(bad).await.is_err());
        }
        let error = cache
            .invalidate_tag("tab\there")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("U+0009"), "{error}");
    }

    pub async fn corrupt_values_are_misses_and_deleted<S: Store>(store: S) {
        let cache = Cache::builder(store.clone(), "corrupt")
            .build()
            .await
            .unwrap();
        store
            .set("corrupt:v:garbage", b"\x00\x01not an envelope", None)
            .await
            .unwrap();
        assert_eq!(cache.get::<Task>("garbage").await.unwrap(), None);
        assert_eq!(
            store.get("corrupt:v:garbage").await.unwrap(),
            None,
            "not deleted"
        );
        // A valid envelope of another type (an incompatible version).
        let other = Cache::builder(store.clone(), "corrupt")
            .l1(false)
            .build()
            .await
            .unwrap();
        other
            .set("typed", &"a string", &other.options())
            .await
            .unwrap();
        let reader = Cache::builder(store.clone(), "corrupt")
            .l1(false)
            .build()
            .await
            .unwrap();
        assert_eq!(reader.get::<Task>("typed").await.unwrap(), None);
        assert_eq!(store.get("corrupt:v:typed").await.unwrap(), None);
        assert_eq!(
            cache.stats().decode_errors + reader.stats().decode_errors,
            2
        );
        // get_or_set reloads over a corrupt value.
        store
            .set("corrupt:v:reload", b"RK\x01", None)
            .await
            .unwrap();
        let value = cache
            .get_or_set("reload", &cache.options(), || async {
                Ok::<_, Failure>(task(3))
            })
            .await
            .unwrap();
        assert_eq!(value, task(3));
    }

    pub async fn ttl_jitter_stays_within_bounds<S: Store>(store: S) {
        let cache = Cache::builder(store.clone(), "jitter")
            .build()
            .await
            .unwrap();
        let options = cache
            .options()
            .ttl(Duration::from_secs(10))
            .ttl_jitter(Duration::from_secs(5));
        let entries: Vec<(String, u8)> = (0..200).map(|i| (format!("k{i}"), 1)).collect();
        let refs: Vec<(&str, u8)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let written = std::time::Instant::now();
        cache.set_many(&refs, &options).await.unwrap();
        let mut ttls = Vec::new();
        for (key, _) in &entries {
            match store.ttl(&format!("jitter:v:{key}")).await.unwrap() {
                KeyTtl::ExpiresIn(ttl) => ttls.push(ttl),
                other => panic!("{key}: {other:?}"),
            }
        }
        // The TTLs run down while they are read (200 reads, slow on a busy
        // cluster): the lowest may be below 10 s by the time that took.
        let reading = written.elapsed();
        let (min, max) = (ttls.iter().min().unwrap(), ttls.iter().max().unwrap());
        assert!(
            *min + reading + Duration::from_millis(10) >= Duration::from_secs(10),
            "{min:?} after {reading:?}"
        );
        assert!(*max <= Duration::from_secs(15), "{max:?}");
        assert!(
            *max - *min > Duration::from_secs(1),
            "no jitter: {min:?}..{max:?}"
        );
    }

    pub async fn clear_touches_only_its_namespace<S: Store>(store: S) {
        let a = Cache::builder(store.clone(), "spaceA")
            .build()
            .await
            .unwrap();
        let b = Cache::builder(store.clone(), "spaceAB")
            .build()
            .await
            .unwrap();
        a.set("k", &1u8, &a.options().tag("t")).await.unwrap();
        a.invalidate_tag("t").await.unwrap();
        b.set("k", &2u8, &b.options()).await.unwrap();
        store.set("spaceA-unrelated", b"keep", None).await.unwrap();
        assert!(a.clear().await.unwrap() >= 1);
        assert_eq!(a.get::<u8>("k").await.unwrap(), None);
        assert_eq!(b.get::<u8>("k").await.unwrap(), Some(2));
        assert_eq!(
            store.get("spaceA-unrelated").await.unwrap().unwrap(),
            "keep"
        );
        assert_eq!(
            store.get("spaceA:t:t").await.unwrap(),
            None,
            "tag versions stay"
        );
    }

    pub async fn codecs_and_compression<S: Store>(store: S) {
        // MessagePack with the `msgpack` feature (the workspace's tests turn
        // it on through redkit-bench), JSON without.
        #[cfg(feature = "msgpack")]
        let codec = Codec::MessagePack;
        #[cfg(not(feature = "msgpack"))]
        let codec = Codec::Json;
        let cache = Cache::builder(store.clone(), "codec")
            .codec(codec)
            .compress_above(64)
            .build()
            .await
            .unwrap();
        let big: Vec<Task> = (0..100).map(task).collect();
        cache
            .set("big", &big, &cache.options().l1(false))
            .await
            .unwrap();
        let stored = store.get("codec:v:big").await.unwrap().unwrap();
        let json_len = serde_json::to_vec(&big).unwrap().len();
        assert!(
            stored.len() < json_len / 2,
            "{} vs {json_len}",
            stored.len()
        );
        let reader = Cache::builder(store, "codec")
            .l1(false)
            .build()
            .await
            .unwrap();
        assert_eq!(reader.get::<Vec<Task>>("big").await.unwrap(), Some(big));
    }
}

macro_rules! cache_suite {
    ($make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $make().await;
                super::suite::$check(store).await;
            }
        )*
    };
}

macro_rules! every_check {
    ($make:path) => {
        cache_suite!($make;
            get_set_delete,
            l2_serves_when_l1_is_off,
            bulk_operations,
            get_many_follows_get_l1_rules,
            single_flight,
            stale_while_revalidate,
            fail_safe_and_timeouts,
            fail_safe_throttle_spares_the_loader,
            an_invalidation_during_a_load_is_not_lost,
            loader_controls_caching,
            tags_invalidate_only_their_entries,
            hostile_keys_and_patterns,
            corrupt_values_are_misses_and_deleted,
            ttl_jitter_stays_within_bounds,
            clear_touches_only_its_namespace,
            codecs_and_compression,
        );
    };
}

mod embedded {
    use super::*;

    async fn make() -> (EmbeddedStore, ()) {
        (EmbeddedStore::new(EmbeddedConfig::default()).unwrap(), ())
    }

    every_check!(make);
}

mod redis {
    use super::*;

    async fn make() -> (RedisStore, RedisServer) {
        let server = RedisServer::new();
        (RedisStore::new(connected(&server).await), server)
    }

    every_check!(make);
}

mod cluster {
    use super::*;

    async fn make() -> (RedisStore, ()) {
        (crate::support::cluster_store().await, ())
    }

    every_check!(make);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_see_each_others_sets_deletes_and_tag_invalidations() {
    let server = RedisServer::new();
    let a = Cache::builder(RedisStore::new(connected(&server).await), "shared")
        .build()
        .await
        .unwrap();
    let b = Cache::builder(RedisStore::new(connected(&server).await), "shared")
        .build()
        .await
        .unwrap();
    let options = a.options().tag("project:1");
    a.set("k", &1u32, &options).await.unwrap();
    assert_eq!(b.get::<u32>("k").await.unwrap(), Some(1)); // now in B's L1

    a.set("k", &2u32, &options).await.unwrap();
    let seen = eventually(Duration::from_millis(100), || async {
        b.get::<u32>("k").await.unwrap() == Some(2)
    })
    .await;
    assert!(seen, "B's L1 was not evicted within 100 ms of A's set");

    a.delete("k").await.unwrap();
    let gone = eventually(Duration::from_millis(100), || async {
        b.get::<u32>("k").await.unwrap().is_none()
    })
    .await;
    assert!(gone, "B still serves a key A deleted");

    b.set("t", &3u32, &options).await.unwrap();
    assert_eq!(a.get::<u32>("t").await.unwrap(), Some(3)); // in A's L1 too
    assert_eq!(b.get::<u32>("t").await.unwrap(), Some(3));
    a.invalidate_tag("project:1").await.unwrap();
    let invalidated = eventually(Duration::from_millis(100), || async {
        b.get::<u32>("t").await.unwrap().is_none()
    })
    .await;
    assert!(
        invalidated,
        "B still serves an entry whose tag A invalidated"
    );

    a.set("p:1", &1u32, &a.options()).await.unwrap();
    assert_eq!(b.get::<u32>("p:1").await.unwrap(), Some(1));
    a.invalidate_prefix("p:").await.unwrap();
    let evicted = eventually(Duration::from_millis(100), || async {
        b.get::<u32>("p:1").await.unwrap().is_none()
    })
    .await;
    assert!(evicted, "B still serves a key under a prefix A invalidated");
}

/// A write is announced only once its value is stored: another instance
/// that reacts to the notice (evicts, then reads L2) must find the new value,
/// or it would cache the old one again. Checked for every key of a burst of
/// concurrent first writes, whose notices are coalesced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_announced_only_after_its_value_is_stored() {
    let server = RedisServer::new();
    let observer = RedisStore::new(connected(&server).await);
    let mut notices = observer.subscribe(&["redkit:cache:order"]).await.unwrap();
    let cache = Cache::builder(RedisStore::new(connected(&server).await), "order")
        .build()
        .await
        .unwrap();
    const KEYS: usize = 400;
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for i in (writer..KEYS).step_by(8) {
                    cache
                        .set(&format!("k{i}"), &i, &cache.options())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut announced = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while announced.len() < KEYS {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, notices.next_message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {KEYS} keys announced", announced.len()))
            .unwrap();
        let notice: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(notice["op"], "set", "{notice}");
        for key in notice["k"].as_array().unwrap() {
            let key = key.as_str().unwrap();
            let stored = observer.get(&format!("order:v:{key}")).await.unwrap();
            assert!(stored.is_some(), "{key} was announced before it was stored");
            announced.insert(key.to_owned());
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

/// The read that follows an invalidation (the reference service's GET after
/// a write) reads L2 once: the entry found there is stale by its tag, and
/// the load does not look it up again (its flight checks L1 only) nor
/// delete it before its write replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_after_a_tag_invalidation_reads_l2_once_and_deletes_nothing() {
    let server = RedisServer::new();
    let cache = Cache::builder(RedisStore::new(connected(&server).await), "reread")
        .build()
        .await
        .unwrap();
    let options = cache.options().tag("user:1");
    cache.set("page", &1u32, &options).await.unwrap();
    cache.invalidate_tag("user:1").await.unwrap();
    let observer = connected(&server).await;
    let gets_before = command_calls(&observer, "get").await;
    let deletes_before =
        command_calls(&observer, "unlink").await + command_calls(&observer, "del").await;
    let loads = Arc::new(AtomicUsize::new(0));
    let counted = loads.clone();
    let value = cache
        .get_or_set("page", &options, move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(2u32)
        })
        .await
        .unwrap();
    assert_eq!((value, loads.load(Ordering::SeqCst)), (2, 1));
    assert_eq!(command_calls(&observer, "get").await - gets_before, 1);
    // The invalidated entry is replaced by the write, not deleted first.
    let deletes = command_calls(&observer, "unlink").await + command_calls(&observer, "del").await;
    assert_eq!(deletes - deletes_before, 0);
    // And what it stored is served from L1 and L2 alike.
    assert_eq!(cache.get::<u32>("page").await.unwrap(), Some(2));
    let other = Cache::builder(RedisStore::new(connected(&server).await), "reread")
        .build()
        .await
        .unwrap();
    assert_eq!(other.get::<u32>("page").await.unwrap(), Some(2));
}

/// A value that counts how often it is decoded (only the test below uses it).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct CountsDecodes(u32);

static DECODES: AtomicUsize = AtomicUsize::new(0);

impl<'de> Deserialize<'de> for CountsDecodes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::SeqCst);
        u32::deserialize(deserializer).map(CountsDecodes)
    }
}

/// The miss that follows every invalidation reads the stale L2 entry's
/// header only: its value (here compressed) is neither decompressed nor
/// decoded. A fresh L2 hit decodes it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_stale_by_its_tag_is_not_decoded() {
    let server = RedisServer::new();
    let build = || async {
        Cache::builder(RedisStore::new(connected(&server).await), "lazy")
            .compress_above(0)
            .build()
            .await
            .unwrap()
    };
    let (writer, reader) = (build().await, build().await);
    let options = writer.options().tag("user:7");
    writer
        .set("page", &CountsDecodes(1), &options)
        .await
        .unwrap();
    writer.invalidate_tag("user:7").await.unwrap();
    let value = reader
        .get_or_set("page", &options, || async {
            Ok::<_, std::io::Error>(CountsDecodes(2))
        })
        .await
        .unwrap();
    assert_eq!(value, CountsDecodes(2));
    assert_eq!(
        DECODES.load(Ordering::SeqCst),
        0,
        "the stale value was decoded"
    );
    assert_eq!(reader.stats().decode_errors, 0);
    // What the reload stored is served from the reader's L1 without a
    // decode, and from L2 to a third instance with exactly one.
    assert_eq!(reader.get("page").await.unwrap(), Some(CountsDecodes(2)));
    assert_eq!(DECODES.load(Ordering::SeqCst), 0);
    assert_eq!(
        build().await.get("page").await.unwrap(),
        Some(CountsDecodes(2))
    );
    assert_eq!(DECODES.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_lock_loads_once_across_instances() {
    let server = RedisServer::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..2 {
        let cache = Cache::builder(RedisStore::new(connected(&server).await), "locked")
            .build()
            .await
            .unwrap();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            handles.push(tokio::spawn(async move {
                let options = cache.options().distributed_lock(true);
                cache
                    .get_or_set("report", &options, move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        Ok::<_, Failure>(task(1))
                    })
                    .await
                    .unwrap()
            }));
        }
    }
    for handle in handles {
        assert_eq!(handle.await.unwrap(), task(1));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_serves_stale_while_redis_is_killed_and_recovers_after_restart() {
    let mut server = RedisServer::new();
    let connection = connected(&server).await;
    let cache = Cache::builder(RedisStore::new(connection.clone()), "outage")
        .build()
        .await
        .unwrap();
    let options = cache
        .options()
        .ttl(Duration::from_millis(200))
        .fail_safe_max(Duration::from_secs(60));
    let value = cache
        .get_or_set("k", &options, || async { Ok::<_, Failure>(task(1)) })
        .await
        .unwrap();
    assert_eq!(value, task(1));

    server.kill();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let timeout = connection.config().command_timeout;
    for _ in 0..20 {
        let started = Instant::now();
        // The database is down too: the stale value is served, quickly.
        let served = cache
            .get_or_set("k", &options, || async {
                Err::<Task, Failure>("database down".into())
            })
            .await
            .unwrap();
        assert_eq!(served, task(1));
        assert!(started.elapsed() <= timeout + Duration::from_millis(200));
    }
    assert!(cache.stats().stale_served >= 20);

    crate::support::restart_and_wait(&mut server, &connection).await;
    // Recovered: the loader's fresh value is cached in Redis again.
    let recovered = eventually(Duration::from_secs(3), || async {
        cache
            .get_or_set("k", &options, || async { Ok::<_, Failure>(task(2)) })
            .await
            .is_ok_and(|task| task.id == 2)
    })
    .await;
    assert!(recovered);
    let reader = Cache::builder(RedisStore::new(connection.clone()), "outage")
        .l1(false)
        .build()
        .await
        .unwrap();
    assert_eq!(reader.get::<Task>("k").await.unwrap(), Some(task(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_skips_a_hung_redis() {
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let cache = Cache::builder(RedisStore::new(connection.clone()), "breaker")
        .l1(false)
        .circuit_breaker(3, Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    server.pause();
    for _ in 0..3 {
        assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
    }
    let started = Instant::now();
    for _ in 0..100 {
        assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert!(cache.stats().l2_errors >= 3);
    server.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscribed_instance_drops_its_l1_because_it_may_have_missed_messages() {
    let server = RedisServer::new();
    let admin = connected(&server).await;
    let b = Cache::builder(RedisStore::new(connected(&server).await), "resub")
        .build()
        .await
        .unwrap();
    // A writer whose changes never reach the backplane: what B would miss
    // while its subscription is down.
    let silent = Cache::builder(RedisStore::new(connected(&server).await), "resub")
        .backplane(false)
        .build()
        .await
        .unwrap();
    silent.set("k", &1u32, &silent.options()).await.unwrap();
    assert_eq!(b.get::<u32>("k").await.unwrap(), Some(1)); // now in B's L1
    silent.set("k", &2u32, &silent.options()).await.unwrap();
    assert_eq!(
        b.get::<u32>("k").await.unwrap(),
        Some(1),
        "B serves its L1 copy"
    );

    // Drop every pub/sub connection, as a network blip would.
    let _: i64 = admin
        .query(
            &::redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .to_owned(),
        )
        .await
        .unwrap();
    let fresh = eventually(Duration::from_secs(3), || async {
        b.get::<u32>("k").await.unwrap() == Some(2)
    })
    .await;
    assert!(fresh, "B kept its L1 after resubscribing");
}
