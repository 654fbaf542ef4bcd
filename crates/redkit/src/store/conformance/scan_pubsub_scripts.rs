//! Conformance checks of SCAN, pub/sub and scripts.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::{
    KeyTtl, Script, ScriptArg, ScriptContext, ScriptValue, SetEntry, Store, escape_glob, scan_all,
};

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
        // One subscriber; on Redis Cluster the count is only that of the
        // node that ran PUBLISH (see `Store::publish`), so 0 there too.
        assert!(delivered <= 1, "{delivered} subscribers counted");
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

/// `set_then_publish` stores the value (with its TTL) and announces it, and
/// a subscriber that reads the key on each message never finds a value
/// older than the one announced.
pub async fn set_then_publish_announces_only_stored_values<S: Store>(store: &S) {
    let mut subscription = store.subscribe(&["chan:stored"]).await.unwrap();
    let writes = async {
        for i in 0..20u32 {
            store
                .set_then_publish(
                    "announced",
                    &i.to_be_bytes(),
                    Some(Duration::from_secs(60)),
                    "chan:stored",
                    &i.to_be_bytes(),
                )
                .await
                .unwrap();
        }
    };
    // Reads as the messages come, while the writes go on.
    let reads = async {
        for i in 0..20u32 {
            let message = tokio::time::timeout(Duration::from_secs(2), subscription.next_message())
                .await
                .expect("message within 2 s")
                .unwrap();
            assert_eq!(message.payload.as_ref(), i.to_be_bytes());
            let stored = store.get("announced").await.unwrap().expect("stored");
            let stored = u32::from_be_bytes(stored.as_ref().try_into().expect("4 bytes"));
            assert!(
                stored >= i,
                "message {i} arrived while the key held {stored}"
            );
        }
    };
    tokio::join!(writes, reads);
    assert!(matches!(
        store.ttl("announced").await.unwrap(),
        KeyTtl::ExpiresIn(left) if left > Duration::from_secs(50)
    ));
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
