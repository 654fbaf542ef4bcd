//! Conformance checks of keys, values, TTLs, counters and sets.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;

use crate::error::Error;
use crate::store::{KeyTtl, SetEntry, Store};

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
