//! Property tests on everything that parses outside input: configuration
//! URLs and variables, cache keys, stored bytes, and glob patterns — whose
//! meaning in the embedded store must equal a real redis-server's.
//!
//! Thousands of generated cases per property; the properties are "never a
//! panic", "a clear error or a correct answer", and "the same answer as
//! Redis".

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redkit::cache::Cache;
use redkit::config::{EmbeddedConfig, RedisConfig};
use redkit::store::{EmbeddedStore, RedisStore, Store, escape_glob, scan_all};
use redkit_testkit::RedisServer;

use crate::support::connected;

fn cases(count: u32) -> Config {
    Config {
        cases: count,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Strings a hostile user would try: URL and glob syntax, control and
/// non-ASCII characters, long runs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9:/@?#%\\[\\]*\\\\^!{}.,=+-]{0,40}",
        proptest::collection::vec(
            prop_oneof![
                Just("redis://".to_owned()),
                Just("rediss://".to_owned()),
                Just(":".to_owned()),
                Just("@".to_owned()),
                Just("/".to_owned()),
                Just("%".to_owned()),
                Just("[::1]".to_owned()),
                Just("?".to_owned()),
                "[0-9]{1,12}",
                "[a-z]{1,8}",
                Just("\u{0}".to_owned()),
                Just("é".to_owned()),
            ],
            0..12
        )
        .prop_map(|parts| parts.concat()),
    ]
}

#[test]
fn any_redis_url_parses_or_is_refused_with_a_named_error_and_no_secret() {
    let mut runner = TestRunner::new(cases(4000));
    runner
        .run(&(hostile_text(), "[A-Za-z]{6,12}"), |(url, secret)| {
            let with_secret = url.replacen("@", &format!(":{secret}@"), 1);
            for candidate in [&url, &with_secret] {
                match RedisConfig::from_url(candidate) {
                    Ok(config) => {
                        prop_assert!(config.validate().is_ok());
                        let debug = format!("{config:?}");
                        prop_assert!(!debug.contains(&secret), "{}", debug);
                    }
                    Err(error) => {
                        let text = error.to_string();
                        prop_assert!(text.contains("expected"), "{candidate:?}: {text}");
                        prop_assert!(!text.contains(&secret), "{candidate:?}: {text}");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

const VARIABLES: &[&str] = &[
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_USERNAME",
    "REDIS_DB",
    "REDIS_TLS",
    "REDIS_ENABLED",
    "REDIS_FALLBACK",
    "REDIS_KEY_PREFIX",
    "REDIS_CONNECT_TIMEOUT_MS",
    "REDIS_COMMAND_TIMEOUT_MS",
    "REDIS_KEEPALIVE_SECS",
    "REDIS_POOL_SIZE",
    "REDIS_HEALTH_CHECK_INTERVAL_MS",
    "REDIS_RETRY_INITIAL_DELAY_MS",
    "REDIS_RETRY_MAX_DELAY_MS",
    "REDIS_RETRY_MAX_ATTEMPTS",
    "REDIS_DEGRADED_PROBE_INTERVAL_MS",
];

#[test]
fn any_environment_builds_a_valid_config_or_names_the_variable_at_fault() {
    let value = prop_oneof![
        hostile_text(),
        "-?[0-9]{1,25}",
        Just("true".to_owned()),
        Just("no".to_owned()),
        Just(String::new()),
    ];
    let environment = (
        proptest::collection::hash_map(proptest::sample::select(VARIABLES), value, 0..6),
        proptest::option::of("S3cr[A-Za-z0-9]{8}"),
    )
        .prop_map(|(mut environment, password)| {
            if let Some(password) = password {
                environment.insert("REDIS_PASSWORD", password);
            }
            environment
        });
    let mut runner = TestRunner::new(cases(4000));
    runner
        .run(&environment, |environment: HashMap<&str, String>| {
            let lookup = |name: &str| environment.get(name).map(OsString::from);
            match RedisConfig::from_lookup(lookup) {
                Ok(config) => prop_assert!(config.validate().is_ok()),
                Err(error) => {
                    let text = error.to_string();
                    prop_assert!(
                        environment.keys().any(|name| text.contains(name)),
                        "{environment:?}: {text} names none of the variables set"
                    );
                    if let Some(password) = environment.get("REDIS_PASSWORD") {
                        prop_assert!(!text.contains(password.as_str()), "{text}");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn hostile_cache_keys_round_trip_or_are_refused_never_mixed_up() {
    let runtime = runtime();
    let cache = runtime.block_on(async {
        let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
        Cache::builder(store, "props").build().await.unwrap()
    });
    let mut runner = TestRunner::new(cases(3000));
    runner
        .run(&(hostile_text(), hostile_text()), |(first, second)| {
            runtime.block_on(async {
                let options = cache.options().ttl(Duration::from_secs(60));
                let stored_first = cache.set(&first, &first, &options).await;
                let stored_second = cache.set(&second, &second, &options).await;
                match stored_first {
                    Ok(()) => {
                        let expected = if stored_second.is_ok() && second == first {
                            second.clone()
                        } else {
                            first.clone()
                        };
                        let read: Option<String> = cache.get(&first).await.unwrap();
                        prop_assert_eq!(read, Some(expected));
                    }
                    Err(error) => {
                        let error = error.to_string();
                        prop_assert!(error.contains("expected"), "{first:?}: {error}");
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn corrupt_stored_bytes_are_a_miss_never_an_error_or_a_panic() {
    let runtime = runtime();
    let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
    let (cache, l2_key) = runtime.block_on(async {
        // L1 off, so every read decodes what is stored.
        let cache = Cache::builder(store.clone(), "corrupt")
            .l1(false)
            .build()
            .await
            .unwrap();
        let options = cache.options().ttl(Duration::from_secs(60));
        cache
            .set("victim", &vec![1u32, 2, 3], &options)
            .await
            .unwrap();
        let keys = scan_all(&store, "*victim*", 100).await.unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        (cache, keys[0].clone())
    });
    let mut runner = TestRunner::new(cases(3000));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
            runtime.block_on(async {
                store.set(&l2_key, &bytes, None).await.unwrap();
                let read = cache.get::<Vec<u32>>("victim").await;
                prop_assert!(read.is_ok(), "{bytes:?}: {read:?}");
                Ok(())
            })
        })
        .unwrap();
}

/// Glob patterns built from the characters that mean something to Redis.
fn glob_pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("*"),
            Just("?"),
            Just("["),
            Just("]"),
            Just("^"),
            Just("-"),
            Just("\\"),
            Just("a"),
            Just("b"),
            Just("c"),
            Just(":"),
            Just("é"),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

#[test]
fn embedded_glob_matching_equals_redis_on_the_same_patterns() {
    let runtime = runtime();
    let server = RedisServer::new();
    let keys: Vec<String> = [
        "", "a", "b", "c", "ab", "ba", "abc", "cab", "a:b", "a*", "a?", "[a]", "a\\", "\\a", "^a",
        "a-c", "-", "é", "aé", "]", "[", "a]b", "**", "abcabc", "a[b", "b]a", "c^", "a\\*",
    ]
    .iter()
    .map(|key| format!("g:{key}"))
    .collect();
    let (redis, embedded) = runtime.block_on(async {
        let redis = RedisStore::new(connected(&server).await);
        let embedded = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
        for key in &keys {
            redis.set(key, b"1", None).await.unwrap();
            embedded.set(key, b"1", None).await.unwrap();
        }
        (redis, embedded)
    });
    let mut runner = TestRunner::new(cases(2000));
    runner
        .run(&glob_pattern(), |pattern| {
            runtime.block_on(async {
                let pattern = format!("g:{pattern}");
                let from_redis = scan_all(&redis, &pattern, 1000).await.unwrap();
                let from_embedded = scan_all(&embedded, &pattern, 1000).await.unwrap();
                prop_assert_eq!(from_embedded, from_redis, "pattern {:?}", pattern);
                Ok(())
            })
        })
        .unwrap();
    // An escaped key matches itself and nothing else, on both.
    for key in &keys {
        let pattern = escape_glob(key);
        let (from_redis, from_embedded) = runtime.block_on(async {
            (
                scan_all(&redis, &pattern, 1000).await.unwrap(),
                scan_all(&embedded, &pattern, 1000).await.unwrap(),
            )
        });
        assert_eq!(from_redis, vec![key.clone()], "{pattern:?}");
        assert_eq!(from_embedded, vec![key.clone()], "{pattern:?}");
    }
}
