//! One behavioural suite, run against every [`Store`].
//!
//! Like tower-sessions' route tests, the checks are written once here and
//! instantiated for each store with [`store_conformance_tests!`](crate::store_conformance_tests):
//!
//! ```ignore
//! async fn make() -> (EmbeddedStore, ()) { (EmbeddedStore::new(Default::default()).unwrap(), ()) }
//! redkit::store_conformance_tests!(make);
//! ```
//!
//! `make` returns the store and a guard kept alive for the test (for example
//! the `redis-server` process). Each check uses its own keys. A store that
//! fails one of these behaves differently from Redis: that is a bug.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;

use super::{
    KeyTtl, Script, ScriptArg, ScriptContext, ScriptValue, SetEntry, Store, escape_glob, scan_all,
};
use crate::error::{Error, Result};

/// Instantiates every conformance check as a `#[tokio::test]` for the store
/// made by the async function `$make` (returning `(store, guard)`).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@each $make;
            get_set_roundtrip,
            missing_keys_are_none,
            ttl_expiry_is_exact,
            set_replaces_value_and_ttl,
            get_and_expire_extends_a_lifetime,
            expire_and_ttl_follow_redis,
            zero_ttl_is_rejected,
            set_if_absent_sets_once,
            bulk_get_and_set,
            delete_counts_existing_keys,
            counters_are_atomic_and_keep_ttl,
            counters_reject_non_integers,
            sets_track_members,
            types_do_not_mix,
            scan_finds_every_matching_key,
            glob_characters_in_keys_stay_literal,
            pubsub_delivers_to_subscribers,
            scripts_run_atomically,
            script_errors_are_reported,
            large_values_roundtrip,
            collections_in_scripts_follow_redis
        );
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $make().await;
                $crate::store::conformance::$check(&store).await;
            }
        )*
    };
}

/// Values of every kind come back byte for byte.
pub async fn get_set_roundtrip<S: Store>(store: &S) {
    for (key, value) in [
        ("rt:text", b"hello".as_slice()),
        ("rt:empty", b"".as_slice()),
        ("rt:binary", [0u8, 255, 10, 13, 0].as_slice()),
        ("rt:utf8 ключ ✓", "значение ✓".as_bytes()),
    ] {
        store.set(key, value, None).await.unwrap();
        assert_eq!(
            store.get(key).await.unwrap(),
            Some(Bytes::copy_from_slice(value))
        );
    }
}

/// Missing keys read as `None`, and deleting them is not an error.
pub async fn missing_keys_are_none<S: Store>(store: &S) {
    assert_eq!(store.get("missing:1").await.unwrap(), None);
    assert_eq!(store.ttl("missing:1").await.unwrap(), KeyTtl::Missing);
    assert_eq!(store.delete(&["missing:1"]).await.unwrap(), 0);
    assert_eq!(
        store.set_members("missing:set").await.unwrap(),
        Vec::<String>::new()
    );
}

/// A key is there just before its TTL and gone just after.
pub async fn ttl_expiry_is_exact<S: Store>(store: &S) {
    let ttl = Duration::from_millis(400);
    store.set("ttl:exact", b"v", Some(ttl)).await.unwrap();
    let started = tokio::time::Instant::now();
    match store.ttl("ttl:exact").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(
            left <= ttl && left > ttl - Duration::from_millis(100),
            "ttl reported {left:?} for a {ttl:?} key"
        ),
        other => panic!("expected a TTL, got {other:?}"),
    }
    tokio::time::sleep_until(started + Duration::from_millis(250)).await;
    assert!(
        store.get("ttl:exact").await.unwrap().is_some(),
        "expired early"
    );
    tokio::time::sleep_until(started + Duration::from_millis(420)).await;
    assert_eq!(
        store.get("ttl:exact").await.unwrap(),
        None,
        "still there after its TTL"
    );
    assert_eq!(store.ttl("ttl:exact").await.unwrap(), KeyTtl::Missing);
    assert_eq!(store.get_many(&["ttl:exact"]).await.unwrap(), vec![None]);
}

/// SET replaces the value and drops the old TTL unless given a new one.
pub async fn set_replaces_value_and_ttl<S: Store>(store: &S) {
    store
        .set("replace:k", b"one", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    store.set("replace:k", b"two", None).await.unwrap();
    assert_eq!(store.get("replace:k").await.unwrap().unwrap(), "two");
    assert_eq!(store.ttl("replace:k").await.unwrap(), KeyTtl::Persistent);
}

/// GETEX PX returns the value and resets its TTL; a missing key stays missing.
pub async fn get_and_expire_extends_a_lifetime<S: Store>(store: &S) {
    assert_eq!(
        store
            .get_and_expire("getex:missing", Duration::from_secs(5))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.ttl("getex:missing").await.unwrap(), KeyTtl::Missing);
    store
        .set("getex:k", b"v", Some(Duration::from_millis(200)))
        .await
        .unwrap();
    let value = store
        .get_and_expire("getex:k", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(value.unwrap(), "v");
    match store.ttl("getex:k").await.unwrap() {
        KeyTtl::ExpiresIn(left) => assert!(left > Duration::from_secs(59), "{left:?}"),
        other => panic!("expected a TTL, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.get("getex:k").await.unwrap().unwrap(), "v");
}

/// EXPIRE on a missing key is false; on a present one it sets the TTL.
pub async fn expire_and_ttl_follow_redis<S: Store>(store: &S) {
    assert!(
        !store
            .expire("exp:missing", Duration::from_secs(5))
            .await
            .unwrap()
    );
    store.set("exp:k", b"v", None).await.unwrap();
    assert_eq!(store.ttl("exp:k").await.unwrap(), KeyTtl::Persistent);
    assert!(store.expire("exp:k", Duration::from_secs(5)).await.unwrap());
    match store.ttl("exp:k").await.unwrap() {
        KeyTtl::ExpiresIn(left) => {
            assert!(left > Duration::from_secs(4) && left <= Duration::from_secs(5))
        }
        other => panic!("expected a TTL, got {other:?}"),
    }
}

/// A zero TTL is a caller error, not "expire now" or "forever".
pub async fn zero_ttl_is_rejected<S: Store>(store: &S) {
    let error = store
        .set("zero:k", b"v", Some(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidInput { what: "ttl", .. }),
        "{error:?}"
    );
    assert_eq!(store.get("zero:k").await.unwrap(), None);
}

/// SET NX writes once.
pub async fn set_if_absent_sets_once<S: Store>(store: &S) {
    assert!(
        store
            .set_if_absent("nx:k", b"first", Some(Duration::from_secs(5)))
            .await
            .unwrap()
    );
    assert!(!store.set_if_absent("nx:k", b"second", None).await.unwrap());
    assert_eq!(store.get("nx:k").await.unwrap().unwrap(), "first");
    assert!(matches!(
        store.ttl("nx:k").await.unwrap(),
        KeyTtl::ExpiresIn(_)
    ));
}

/// MGET answers in order with gaps; pipelined sets honour per-entry TTLs.
pub async fn bulk_get_and_set<S: Store>(store: &S) {
    let values: Vec<String> = (0..100).map(|i| format!("value-{i}")).collect();
    let keys: Vec<String> = (0..100).map(|i| format!("bulk:{i}")).collect();
    let entries: Vec<SetEntry<'_>> = keys
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, (key, value))| SetEntry {
            key,
            value: value.as_bytes(),
            ttl: (i % 2 == 0).then(|| Duration::from_secs(30)),
        })
        .collect();
    store.set_many(&entries).await.unwrap();
    let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
    wanted.insert(50, "bulk:absent");
    let got = store.get_many(&wanted).await.unwrap();
    assert_eq!(got.len(), 101);
    assert_eq!(got[50], None);
    assert_eq!(got[0].as_deref(), Some(b"value-0".as_slice()));
    assert_eq!(got[100].as_deref(), Some(b"value-99".as_slice()));
    assert!(matches!(
        store.ttl("bulk:0").await.unwrap(),
        KeyTtl::ExpiresIn(_)
    ));
    assert_eq!(store.ttl("bulk:1").await.unwrap(), KeyTtl::Persistent);
    assert_eq!(
        store.get_many(&[]).await.unwrap(),
        Vec::<Option<Bytes>>::new()
    );
    store.set_many(&[]).await.unwrap();
}

/// UNLINK returns how many of the keys existed.
pub async fn delete_counts_existing_keys<S: Store>(store: &S) {
    store.set("del:a", b"1", None).await.unwrap();
    store.set("del:b", b"2", None).await.unwrap();
    assert_eq!(store.delete(&["del:a", "del:b", "del:c"]).await.unwrap(), 2);
    assert_eq!(store.get("del:a").await.unwrap(), None);
    assert_eq!(store.delete(&[]).await.unwrap(), 0);
}

/// 50 concurrent writers lose no increment; INCRBY keeps the TTL.
pub async fn counters_are_atomic_and_keep_ttl<S: Store>(store: &S) {
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    store.incr_by("counter:shared", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.incr_by("counter:shared", 0).await.unwrap(), 2000);
    assert_eq!(store.incr_by("counter:neg", -5).await.unwrap(), -5);
    store
        .expire("counter:neg", Duration::from_secs(30))
        .await
        .unwrap();
    store.incr_by("counter:neg", 2).await.unwrap();
    assert!(matches!(
        store.ttl("counter:neg").await.unwrap(),
        KeyTtl::ExpiresIn(_)
    ));
    assert_eq!(store.get("counter:neg").await.unwrap().unwrap(), "-3");
}

/// INCRBY on text or past i64 is a type error and changes nothing.
pub async fn counters_reject_non_integers<S: Store>(store: &S) {
    store.set("counter:text", b"abc", None).await.unwrap();
    let error = store.incr_by("counter:text", 1).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::WrongType {
                expected: "integer",
                ..
            }
        ),
        "{error:?}"
    );
    store
        .set("counter:max", i64::MAX.to_string().as_bytes(), None)
        .await
        .unwrap();
    let error = store.incr_by("counter:max", 1).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::WrongType {
                expected: "integer",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        store.get("counter:max").await.unwrap().unwrap(),
        i64::MAX.to_string()
    );
}

/// SADD/SREM count changes; an emptied set disappears; members come sorted.
pub async fn sets_track_members<S: Store>(store: &S) {
    assert_eq!(store.set_add("set:k", &["b", "a", "c"]).await.unwrap(), 3);
    assert_eq!(store.set_add("set:k", &["a", "d"]).await.unwrap(), 1);
    assert_eq!(
        store.set_members("set:k").await.unwrap(),
        ["a", "b", "c", "d"]
    );
    assert_eq!(store.set_remove("set:k", &["a", "x"]).await.unwrap(), 1);
    assert_eq!(
        store.set_remove("set:k", &["b", "c", "d"]).await.unwrap(),
        3
    );
    assert_eq!(store.ttl("set:k").await.unwrap(), KeyTtl::Missing);
    assert_eq!(store.set_add("set:k", &[]).await.unwrap(), 0);
}

/// A set is not a string and a string is not a set.
pub async fn types_do_not_mix<S: Store>(store: &S) {
    store.set_add("type:set", &["m"]).await.unwrap();
    store.set("type:string", b"v", None).await.unwrap();
    assert!(matches!(
        store.get("type:set").await.unwrap_err(),
        Error::WrongType { .. }
    ));
    assert!(matches!(
        store.set_add("type:string", &["m"]).await.unwrap_err(),
        Error::WrongType { .. }
    ));
    // MGET answers nil for a key of another type.
    assert_eq!(store.get_many(&["type:set"]).await.unwrap(), vec![None]);
    // SET overwrites any type.
    store.set("type:set", b"now a string", None).await.unwrap();
    assert_eq!(
        store.get("type:set").await.unwrap().unwrap(),
        "now a string"
    );
}

/// Every key matching the pattern is found, and nothing else.
pub async fn scan_finds_every_matching_key<S: Store>(store: &S) {
    let keys: Vec<String> = (0..600).map(|i| format!("scan:a:{i}")).collect();
    let entries: Vec<SetEntry<'_>> = keys
        .iter()
        .map(|key| SetEntry {
            key,
            value: b"v",
            ttl: None,
        })
        .collect();
    store.set_many(&entries).await.unwrap();
    for i in 0..40 {
        store.set(&format!("scan:b:{i}"), b"v", None).await.unwrap();
    }
    let found = scan_all(store, "scan:a:*", 50).await.unwrap();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(scan_all(store, "scan:b:?", 1000).await.unwrap().len(), 10);
    assert!(
        scan_all(store, "scan:none:*", 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Glob characters inside keys never widen a pattern built with
/// [`escape_glob`].
pub async fn glob_characters_in_keys_stay_literal<S: Store>(store: &S) {
    let hostile = ["glob:*", "glob:?", "glob:[a]", "glob:\\", "glob:a"];
    for key in hostile {
        store.set(key, b"v", None).await.unwrap();
    }
    for key in hostile {
        let found = scan_all(store, &escape_glob(key), 100).await.unwrap();
        assert_eq!(found, [key], "pattern for {key:?} matched {found:?}");
    }
    let prefixed = scan_all(store, &format!("{}*", escape_glob("glob:[")), 100)
        .await
        .unwrap();
    assert_eq!(prefixed, ["glob:[a]"]);
}

/// Subscribers get messages of their channels only, in order.
pub async fn pubsub_delivers_to_subscribers<S: Store>(store: &S) {
    let mut subscription = store.subscribe(&["chan:a"]).await.unwrap();
    let mut other = store.subscribe(&["chan:b"]).await.unwrap();
    for i in 0..3 {
        let delivered = store
            .publish("chan:a", format!("m{i}").as_bytes())
            .await
            .unwrap();
        assert_eq!(delivered, 1);
    }
    for i in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(2), subscription.next_message())
            .await
            .expect("message within 2 s")
            .unwrap();
        assert_eq!(message.channel, "chan:a");
        assert_eq!(message.payload, format!("m{i}"));
    }
    let nothing = tokio::time::timeout(Duration::from_millis(100), other.next()).await;
    assert!(nothing.is_err(), "chan:b got {nothing:?}");
    drop(subscription);
    drop(other);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.publish("chan:a", b"late").await.unwrap(), 0);
}

fn window_counter() -> Script {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        let amount = args[0].as_i64().unwrap_or(1);
        let window = args[1].as_i64().unwrap_or(1000);
        let count = ctx.incr_by(0, amount)?;
        if count == amount {
            ctx.expire(0, Duration::from_millis(window.unsigned_abs()))?;
        }
        let ttl = match ctx.ttl(0)? {
            KeyTtl::ExpiresIn(left) => left.as_millis() as i64,
            KeyTtl::Persistent => -1,
            KeyTtl::Missing => -2,
        };
        Ok(ScriptValue::Array(vec![
            ScriptValue::Int(count),
            ScriptValue::Int(ttl),
        ]))
    }
    Script::new(
        "conformance_window_counter",
        r"
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {count, redis.call('PTTL', KEYS[1])}
",
        native,
    )
}

/// A script's Lua and native twin agree, and run atomically under load.
pub async fn scripts_run_atomically<S: Store>(store: &S) {
    let script = std::sync::Arc::new(window_counter());
    let args = [ScriptArg::Int(1), ScriptArg::Int(60_000)];
    let first = store
        .run_script(&script, &["script:c"], &args)
        .await
        .unwrap();
    let first = first.as_array().unwrap();
    assert_eq!(first[0], ScriptValue::Int(1));
    let ttl = first[1].as_i64().unwrap();
    assert!(ttl > 59_000 && ttl <= 60_000, "ttl {ttl}");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, script) = (store.clone(), script.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    let args = [ScriptArg::Int(1), ScriptArg::Int(60_000)];
                    store
                        .run_script(&script, &["script:c"], &args)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let last = store
        .run_script(&script, &["script:c"], &args)
        .await
        .unwrap();
    assert_eq!(last.as_array().unwrap()[0], ScriptValue::Int(402));
}

/// A failing script is reported as [`Error::Script`] by every store.
pub async fn script_errors_are_reported<S: Store>(store: &S) {
    store
        .set("script:text", b"not a number", None)
        .await
        .unwrap();
    let args = [ScriptArg::Int(1), ScriptArg::Int(1000)];
    let error = store
        .run_script(&window_counter(), &["script:text"], &args)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Script {
                script: "conformance_window_counter",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        store.get("script:text").await.unwrap().unwrap(),
        "not a number"
    );
}

/// A 1 MiB value survives the round trip.
pub async fn large_values_roundtrip<S: Store>(store: &S) {
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    store.set("large:k", &value, None).await.unwrap();
    assert_eq!(store.get("large:k").await.unwrap().unwrap(), value);
}

/// One script touching a sorted set, a hash and a stream, returning
/// everything it observed in a flat array, so both stores can be compared.
fn collections_script() -> Script {
    fn native(ctx: &mut dyn ScriptContext, _args: &[ScriptArg]) -> Result<ScriptValue> {
        let mut out = Vec::new();
        let int = |n: i64| ScriptValue::Int(n);
        let text = |t: &str| ScriptValue::Bytes(Bytes::copy_from_slice(t.as_bytes()));
        out.push(int(i64::from(ctx.zadd(0, 20, "b")?)));
        out.push(int(i64::from(ctx.zadd(0, 10, "c")?)));
        out.push(int(i64::from(ctx.zadd(0, 10, "a")?)));
        out.push(int(i64::from(ctx.zadd(0, 30, "b")?)));
        for (member, score) in ctx.zrange_by_score(0, i64::MIN, 25, 0, 10)? {
            out.push(text(&member));
            out.push(int(score));
        }
        for (member, _) in ctx.zrange_by_score(0, i64::MIN, i64::MAX, 1, 1)? {
            out.push(text(&member));
        }
        out.push(int(ctx.zcount(0, 10, 10)? as i64));
        out.push(ctx.zscore(0, "b")?.map_or(ScriptValue::Nil, int));
        out.push(ctx.zscore(0, "zz")?.map_or(ScriptValue::Nil, int));
        out.push(int(i64::from(ctx.zrem(0, "a")?)));
        out.push(int(i64::from(ctx.zrem(0, "a")?)));
        ctx.hset(1, "f", Bytes::from_static(b"v1"))?;
        ctx.hset(1, "f", Bytes::from_static(b"v2"))?;
        out.push(
            ctx.hget(1, "f")?
                .map_or(ScriptValue::Nil, ScriptValue::Bytes),
        );
        out.push(
            ctx.hget(1, "g")?
                .map_or(ScriptValue::Nil, ScriptValue::Bytes),
        );
        out.push(int(i64::from(ctx.hdel(1, "f")?)));
        out.push(int(i64::from(ctx.hdel(1, "f")?)));
        let first = ctx.xadd(2, Bytes::from_static(b"e1"), 2)?;
        ctx.xadd(2, Bytes::from_static(b"e2"), 2)?;
        ctx.xadd(2, Bytes::from_static(b"e3"), 2)?;
        out.push(int(ctx.xrange(2, first, 10)?.len() as i64));
        for (_, payload) in ctx.xrange(2, super::StreamId::default(), 10)? {
            out.push(ScriptValue::Bytes(payload));
        }
        Ok(ScriptValue::Array(out))
    }
    Script::new(
        "conformance_collections",
        r"
local out = {}
out[#out + 1] = redis.call('ZADD', KEYS[1], 20, 'b')
out[#out + 1] = redis.call('ZADD', KEYS[1], 10, 'c')
out[#out + 1] = redis.call('ZADD', KEYS[1], 10, 'a')
out[#out + 1] = redis.call('ZADD', KEYS[1], 30, 'b')
local r = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', 25, 'WITHSCORES', 'LIMIT', 0, 10)
for i = 1, #r, 2 do out[#out + 1] = r[i]; out[#out + 1] = tonumber(r[i + 1]) end
local second = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '+inf', 'LIMIT', 1, 1)
out[#out + 1] = second[1]
out[#out + 1] = redis.call('ZCOUNT', KEYS[1], 10, 10)
local s = redis.call('ZSCORE', KEYS[1], 'b')
out[#out + 1] = s and tonumber(s) or false
local z = redis.call('ZSCORE', KEYS[1], 'zz')
out[#out + 1] = z and tonumber(z) or false
out[#out + 1] = redis.call('ZREM', KEYS[1], 'a')
out[#out + 1] = redis.call('ZREM', KEYS[1], 'a')
redis.call('HSET', KEYS[2], 'f', 'v1')
redis.call('HSET', KEYS[2], 'f', 'v2')
out[#out + 1] = redis.call('HGET', KEYS[2], 'f')
out[#out + 1] = redis.call('HGET', KEYS[2], 'g')
out[#out + 1] = redis.call('HDEL', KEYS[2], 'f')
out[#out + 1] = redis.call('HDEL', KEYS[2], 'f')
local first = redis.call('XADD', KEYS[3], 'MAXLEN', 2, '*', 'd', 'e1')
redis.call('XADD', KEYS[3], 'MAXLEN', 2, '*', 'd', 'e2')
redis.call('XADD', KEYS[3], 'MAXLEN', 2, '*', 'd', 'e3')
out[#out + 1] = #redis.call('XRANGE', KEYS[3], first, '+', 'COUNT', 10)
for _, e in ipairs(redis.call('XRANGE', KEYS[3], '0-0', '+', 'COUNT', 10)) do out[#out + 1] = e[2][2] end
return out
",
        native,
    )
}

/// Sorted sets, hashes and streams inside scripts (what the job queue and
/// the event log are built on) behave the same on every store: order by
/// score then member, ranges with offsets, deletion of emptied hashes,
/// exact stream trimming.
pub async fn collections_in_scripts_follow_redis<S: Store>(store: &S) {
    let keys = ["coll:{t}:z", "coll:{t}:h", "coll:{t}:x"];
    let reply = store
        .run_script(&collections_script(), &keys, &[])
        .await
        .unwrap();
    let int = ScriptValue::Int;
    let text = |t: &'static str| ScriptValue::Bytes(Bytes::from_static(t.as_bytes()));
    assert_eq!(
        reply,
        ScriptValue::Array(vec![
            int(1),
            int(1),
            int(1),
            int(0),
            text("a"),
            int(10),
            text("c"),
            int(10),
            text("c"),
            int(2),
            int(30),
            ScriptValue::Nil,
            int(1),
            int(0),
            text("v2"),
            ScriptValue::Nil,
            int(1),
            int(0),
            int(2),
            text("e2"),
            text("e3"),
        ])
    );
    // The emptied hash is gone; the others hold their values.
    assert_eq!(store.ttl("coll:{t}:h").await.unwrap(), KeyTtl::Missing);
    assert_eq!(store.ttl("coll:{t}:z").await.unwrap(), KeyTtl::Persistent);
    // Other commands on these keys are type errors, as in Redis.
    assert!(store.get("coll:{t}:z").await.is_err());
}
