//! Rate-limit and session scenarios.

use std::sync::Arc;
use std::time::Duration;

use redkit::ratelimit::{Policy, RateLimiter, script_invocation};
use redkit::session::{SessionConfig, SessionId, Sessions};

use super::cache::per_task;
use super::{progress, ratio_report};
use crate::env::Env;
use crate::measure::{self, Measurement};
use crate::report::Report;

pub(super) async fn ratelimit_check(env: &Env) -> Report {
    const NAME: &str = "ratelimit_check";
    let kit = env.redkit().await;
    // A limit nobody reaches: every check runs the script and is admitted.
    let policy = Arc::new(
        Policy::new("bench", 1_000_000, Duration::from_secs(3600))
            .unwrap_or_else(|err| panic!("policy: {err}")),
    );
    let limiter =
        RateLimiter::new(kit.store().clone()).unwrap_or_else(|err| panic!("limiter: {err}"));
    let keys = Arc::new(env.key_names("ip:"));
    let (script, args) = script_invocation(&policy, 1);
    let raw_args: Arc<Vec<Vec<u8>>> = Arc::new(args.iter().map(|arg| arg.to_bytes()).collect());
    let sha = Arc::new(script.sha1().to_owned());
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw redis-rs EVALSHA of the same script");
            let (keys, raw_args, sha) = (keys.clone(), raw_args.clone(), sha.clone());
            async move {
                let mut connection = env.raw_client().await;
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script.lua())
                    .query_async(&mut connection)
                    .await
                    .unwrap_or_else(|err| panic!("SCRIPT LOAD: {err}"));
                measure::measure_with(
                    env.load,
                    per_task(env, (connection, keys, raw_args, sha)),
                    |(mut connection, keys, raw_args, sha), i| async move {
                        let mut cmd = redis::cmd("EVALSHA");
                        cmd.arg(sha.as_str())
                            .arg(1)
                            .arg(format!("rl:raw:{}", keys[i as usize % keys.len()]));
                        for arg in raw_args.iter() {
                            cmd.arg(arg.as_slice());
                        }
                        let reply: Vec<i64> = cmd
                            .query_async(&mut connection)
                            .await
                            .unwrap_or_else(|err| panic!("EVALSHA: {err}"));
                        assert_eq!(reply.first(), Some(&1));
                        (connection, keys, raw_args, sha)
                    },
                )
                .await
            }
        },
        || {
            progress(NAME, "RateLimiter::check");
            checks(env, &limiter, &policy, &keys)
        },
    )
    .await;
    ratio_report(
        NAME,
        "raw redis-rs EVALSHA (same script)",
        paired,
        Some(0.95),
    )
}

/// `limiter.check` of `policy` over `keys`, every check admitted.
fn checks(
    env: &Env,
    limiter: &RateLimiter,
    policy: &Arc<Policy>,
    keys: &Arc<Vec<String>>,
) -> impl std::future::Future<Output = Measurement> {
    measure::measure_with(
        env.load,
        per_task(env, (limiter.clone(), policy.clone(), keys.clone())),
        |(limiter, policy, keys), i| async move {
            let decision = limiter
                .check(&policy, &keys[i as usize % keys.len()], 1)
                .await
                .unwrap_or_else(|err| panic!("check: {err}"));
            assert!(decision.allowed);
            (limiter, policy, keys)
        },
    )
}

/// What one check of each algorithm costs next to a raw GET, in the same
/// run: the server-side price of the script (TIME, GET, SET and the Lua
/// around them) plus the limiter's own work.
pub(super) async fn ratelimit_cost(env: &Env, algorithm: &str) -> Report {
    let (name, policy, target) = match algorithm {
        "gcra" => (
            "ratelimit_gcra_cost",
            Policy::gcra(
                "bench_gcra",
                1_000_000,
                Duration::from_secs(3600),
                1_000_000,
            ),
            Some(0.55),
        ),
        _ => (
            "ratelimit_sliding_cost",
            Policy::new("bench_sliding", 1_000_000, Duration::from_secs(3600)),
            None,
        ),
    };
    let policy = Arc::new(policy.unwrap_or_else(|err| panic!("policy: {err}")));
    let kit = env.redkit().await;
    let limiter =
        RateLimiter::new(kit.store().clone()).unwrap_or_else(|err| panic!("limiter: {err}"));
    let keys = Arc::new(env.key_names("ip:"));
    let paired = measure::paired(
        env.rounds,
        || {
            progress(name, "raw redis-rs GET");
            super::cache::raw_get(env)
        },
        || {
            progress(name, "RateLimiter::check");
            checks(env, &limiter, &policy, &keys)
        },
    )
    .await;
    ratio_report(name, "raw redis-rs GET", paired, target)
}

pub(super) async fn session_load(env: &Env) -> Report {
    const NAME: &str = "session_load";
    let kit = env.redkit().await;
    let sessions = Sessions::new(kit.store().clone(), SessionConfig::default())
        .unwrap_or_else(|err| panic!("sessions: {err}"));
    progress(NAME, "creating 10k sessions");
    let mut ids = Vec::with_capacity(env.keys);
    for i in 0..env.keys {
        let mut data = serde_json::Map::new();
        data.insert("theme".to_owned(), serde_json::Value::from("dark"));
        let session = sessions
            .create(&format!("user{}", i % 1000), data)
            .await
            .unwrap_or_else(|err| panic!("create: {err}"));
        ids.push(session.id);
    }
    let ids: Arc<Vec<SessionId>> = Arc::new(ids);
    let raw_keys: Arc<Vec<String>> =
        Arc::new(ids.iter().map(redkit::session::session_key).collect());
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw redis-rs GET of the session keys");
            let raw_keys = raw_keys.clone();
            async move {
                let connection = env.raw_client().await;
                measure::measure_with(
                    env.load,
                    per_task(env, (connection, raw_keys)),
                    |(mut connection, raw_keys), i| async move {
                        let value: Option<Vec<u8>> = redis::cmd("GET")
                            .arg(&raw_keys[i as usize % raw_keys.len()])
                            .query_async(&mut connection)
                            .await
                            .unwrap_or_else(|err| panic!("GET: {err}"));
                        assert!(value.is_some());
                        (connection, raw_keys)
                    },
                )
                .await
            }
        },
        || {
            progress(NAME, "Sessions::get (rolling: GETEX)");
            measure::measure_with(
                env.load,
                per_task(env, (sessions.clone(), ids.clone())),
                |(sessions, ids), i| async move {
                    let session = sessions
                        .get(&ids[i as usize % ids.len()])
                        .await
                        .unwrap_or_else(|err| panic!("get: {err}"));
                    assert!(session.is_some());
                    (sessions, ids)
                },
            )
        },
    )
    .await;
    ratio_report(NAME, "raw redis-rs GET", paired, Some(0.92))
}
