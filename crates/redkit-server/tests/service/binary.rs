//! The `redkit` binary: configuration errors, serving, graceful shutdown.

use std::process::Command;
use std::time::Duration;

use crate::support::{ServiceOutput, metric_value, start_service};

/// Environment variables, and fragments the error message must contain.
type Case = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

fn redkit() -> Command {
    crate::support::redkit_binary()
}

#[test]
fn each_bad_configuration_value_is_named_and_exits_non_zero() {
    let cases: &[Case] = &[
        (
            &[("REDIS_HOST", "h"), ("REDIS_PORT", "abc")],
            &["REDIS_PORT", "not a number"],
        ),
        (
            &[("REDIS_HOST", "h"), ("REDIS_PORT", "70000")],
            &["REDIS_PORT", "out of range"],
        ),
        (
            &[("REDIS_HOST", "h"), ("REDIS_DB", "-1")],
            &["REDIS_DB", "negative"],
        ),
        (
            &[("REDIS_URL", "::not a url::")],
            &["REDIS_URL", "not a valid URL"],
        ),
        (
            &[("REDIS_URL", "memcached://h:1")],
            &["REDIS_URL", "unknown scheme"],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_COMMAND_TIMEOUT_MS", "0"),
            ],
            &["REDIS_COMMAND_TIMEOUT_MS", "greater than zero"],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_CONNECT_TIMEOUT_MS", "-1"),
            ],
            &["REDIS_CONNECT_TIMEOUT_MS", "negative"],
        ),
        (
            &[
                ("REDIS_URL", "redis://:hunter2@h"),
                ("REDIS_TLS", "perhaps"),
            ],
            &["REDIS_TLS", "boolean"],
        ),
        (
            &[("REDIS_SENTINELS", "127.0.0.1:26379")],
            &["REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"],
        ),
        (
            &[("REDIS_CLUSTER_NODES", "127.0.0.1:7000"), ("REDIS_DB", "1")],
            &["REDIS_DB", "database 0"],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
            ],
            &["REDIS_CLUSTER_NODES", "REDIS_URL"],
        ),
        (
            &[("REDIS_URL", "redis+sentinel://:hunter2@h:26379")],
            &["REDIS_URL", "master_name"],
        ),
        (
            &[("REDIS_CLUSTER_NODES", "127.0.0.1:7000,nowhere")],
            &["REDIS_CLUSTER_NODES", "host:port"],
        ),
    ];
    for (vars, fragments) in cases {
        let output = redkit()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{vars:?} was accepted");
        assert_eq!(output.status.code(), Some(2), "{vars:?}: {stderr}");
        for fragment in *fragments {
            assert!(
                stderr.contains(fragment),
                "{vars:?}: {stderr:?} lacks {fragment:?}"
            );
        }
        assert!(stderr.contains("expected"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    }
}

#[test]
fn a_bad_listen_address_is_refused() {
    let output = redkit()
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
    let output = redkit()
        .env("REDKIT_LISTEN", "127.0.0.1:99999")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_service_options_are_named_and_exit_non_zero() {
    /// Arguments, environment, and the option the error must name.
    type OptionCase = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: &[OptionCase] = &[
        (&["--api-rate-limit", "100"], &[], "--api-rate-limit"),
        (
            &[],
            &[("REDKIT_AUTH_RATE_LIMIT", "5/5d")],
            "--auth-rate-limit",
        ),
        (&["--max-body-bytes", "0"], &[], "--max-body-bytes"),
        (&["--session-ttl", "forever"], &[], "--session-ttl"),
        (&["--cookie-secure", "maybe"], &[], "--cookie-secure"),
        (&[], &[("REDKIT_SESSION_CACHE", "soon")], "--session-cache"),
        (&["--redis-wait", "0"], &[], "--redis-wait"),
        (&[], &[("REDKIT_REDIS_WAIT", "a while")], "--redis-wait"),
        (
            &["--rate-limit-leases", "sometimes"],
            &[],
            "--rate-limit-leases",
        ),
    ];
    for (args, vars, named) in cases {
        let output = redkit()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(*args)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {vars:?}: {stderr}");
        assert!(stderr.contains(named), "{stderr}");
    }
    let output = redkit()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--trusted-proxies", "10.0.0.0/99"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("10.0.0.0/99"), "{stderr}");
}

#[test]
fn a_database_that_cannot_be_opened_stops_the_service_before_it_listens() {
    let output = redkit()
        .args(["--listen", "127.0.0.1:0"])
        .env("REDKIT_DB", "/nonexistent-dir/sub/redkit.db")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot open the database /nonexistent-dir/sub/redkit.db"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
}

#[test]
fn help_documents_the_options_and_redis_variables() {
    let output = redkit().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for fragment in [
        "--listen",
        "REDKIT_LISTEN",
        "--db",
        "REDKIT_DB",
        "./redkit.db",
        "--cookie-secure",
        "--max-body-bytes",
        "--auth-rate-limit",
        "--api-rate-limit",
        "--trusted-proxies",
        "--session-ttl",
        "--session-cache",
        "--rate-limit-leases",
        "--redis-wait",
        "--max-accounts",
        "REDIS_URL",
        "REDIS_PASSWORD",
        "REDIS_FALLBACK",
        "redis+sentinel://",
        "redis+cluster://",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_MASTER",
        "REDIS_SENTINEL_PASSWORD",
        "REDIS_CLUSTER_NODES",
    ] {
        assert!(help.contains(fragment), "help lacks {fragment}:\n{help}");
    }
}

/// Sends SIGTERM to `child` and waits (at most 10 s) until it exits; asserts
/// it exited by itself with success and said it shut down cleanly.
fn terminate_cleanly(mut child: std::process::Child, lines: ServiceOutput) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|line| line.contains("shut down cleanly")),
        "{rest:?}"
    );
}

#[test]
fn serves_on_the_embedded_store_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines, address) = start_service(&[], &dir.path().join("redkit.db"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let body: serde_json::Value = runtime.block_on(async {
        reqwest::get(format!("http://{address}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["backend"], "embedded");
    terminate_cleanly(child, lines);
}

/// The signal handlers are in place before the service says it listens: a
/// SIGTERM sent the moment `listening on` is read still shuts it down
/// cleanly (it was once registered only when the server first polled it,
/// and a signal in between killed the process).
#[test]
fn a_sigterm_right_after_listening_still_shuts_down_cleanly() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (child, lines, _) = start_service(&[], &dir.path().join("redkit.db"));
        terminate_cleanly(child, lines);
    }
}

/// The `serving` backend of `/health` and the status of a registration, the
/// moment the service listens at `address`.
fn first_answers(address: &str) -> (String, u16) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let health: serde_json::Value = http
            .get(format!("http://{address}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let register = http
            .post(format!("http://{address}/auth/register"))
            .json(&serde_json::json!({ "username": "early", "password": "early-password" }))
            .send()
            .await
            .unwrap();
        (
            health["serving"].as_str().unwrap_or_default().to_owned(),
            register.status().as_u16(),
        )
    })
}

/// A service started before its Redis listens only once Redis is ready:
/// its first requests are served from Redis (a registration needs it),
/// not from the embedded fallback where instances count limits apart.
#[test]
fn the_service_listens_once_its_redis_is_ready() {
    let mut redis = redkit_testkit::RedisServer::builder().prepare();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let late_start = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        redis.start();
        redis
    });
    let (child, lines, address, _) = crate::support::start_service_logged(
        &["--redis-wait", "20s"],
        &dir.path().join("redkit.db"),
        &[("REDIS_URL", &url)],
    );
    let listened_after = started.elapsed();
    let _redis = late_start.join().unwrap();
    assert!(
        listened_after >= Duration::from_millis(800),
        "listened after {listened_after:?}, before Redis was started"
    );
    assert_eq!(first_answers(&address), ("redis".to_owned(), 201));
    terminate_cleanly(child, lines);
}

/// Without Redis the wait is bounded: the service starts degraded after it,
/// says why, and serves what needs no Redis.
#[test]
fn without_redis_the_service_starts_degraded_after_its_wait() {
    let never_started = redkit_testkit::RedisServer::builder().prepare();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (mut child, _lines, address, before_listening) = crate::support::start_service_logged(
        &["--redis-wait", "1s"],
        &dir.path().join("redkit.db"),
        &[("REDIS_URL", &never_started.url())],
    );
    let listened_after = started.elapsed();
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(10)).contains(&listened_after),
        "listened after {listened_after:?}; expected just after the 1 s wait"
    );
    assert!(
        before_listening
            .iter()
            .any(|line| line.contains("redis is not ready; starting degraded")),
        "{before_listening:?}"
    );
    let (serving, register) = first_answers(&address);
    assert_eq!(serving, "embedded");
    assert_eq!(register, 503, "no sessions without Redis");
    let _ = child.kill();
    let _ = child.wait();
}

/// A registration that cannot succeed — a taken name (in any case), a
/// full service — is refused before its password is hashed: the service's
/// count of hashes moves only for the registrations that create an account.
#[test]
fn refused_registrations_spend_no_password_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines, address) =
        start_service(&["--max-accounts", "2"], &dir.path().join("redkit.db"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let register = |username: &'static str| {
            let http = http.clone();
            let url = format!("http://{address}/auth/register");
            async move {
                let response = http
                    .post(url)
                    .json(&serde_json::json!({ "username": username, "password": "a-password-1" }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                (
                    status,
                    body["error"]["code"].as_str().unwrap_or("").to_owned(),
                )
            }
        };
        let hashes = || {
            let http = http.clone();
            let url = format!("http://{address}/metrics");
            async move {
                let text = http.get(url).send().await.unwrap().text().await.unwrap();
                metric_value(&text, "redkit_password_hashes_total ")
            }
        };
        assert_eq!(register("alice").await, (201, String::new()));
        assert_eq!(hashes().await, 1.0);
        assert_eq!(register("ALICE").await, (409, "username_taken".to_owned()));
        assert_eq!(hashes().await, 1.0, "a taken name costs no hash");
        assert_eq!(register("bob").await, (201, String::new()));
        assert_eq!(register("carol").await, (409, "account_limit".to_owned()));
        assert_eq!(register("dave").await, (409, "account_limit".to_owned()));
        assert_eq!(hashes().await, 2.0, "a full service hashes nothing");
    });
    terminate_cleanly(child, lines);
}
