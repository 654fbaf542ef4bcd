//! Bounded resources under hostile load: idle and slowloris sockets, the
//! connection cap, the request deadline under Redis latency, the password
//! hashing pool, registration during an outage, policies turned off.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use redkit_testkit::{Fault, FaultProxy, RedisServer};
use serde_json::json;

use crate::support::{Client, TestDb, fast_redis_config, start_with, test_config};

/// Whether the server closed `stream` (EOF or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream
        .set_read_timeout(Some(within))
        .expect("set a read timeout");
    let mut byte = [0u8; 256];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            // A 408 or similar before closing is fine: keep reading to the end.
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_are_closed_and_the_cap_holds() {
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.connections.header_read_timeout = Duration::from_secs(1);
    config.connections.max_connections = 8;
    let server = start_with(None, db, config).await;
    let address = server.server.address;

    let outcome = tokio::task::spawn_blocking(move || {
        // Idle: connects and says nothing.
        let mut idle = TcpStream::connect(address).unwrap();
        // Slowloris: a header byte every 300 ms, never finishing.
        let mut slow = TcpStream::connect(address).unwrap();
        let slow_writer = {
            let mut slow = slow.try_clone().unwrap();
            std::thread::spawn(move || {
                for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaa" {
                    if slow.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        let started = Instant::now();
        let idle_closed = closed_within(&mut idle, Duration::from_secs(4));
        let slow_closed = closed_within(&mut slow, Duration::from_secs(4));
        let took = started.elapsed();
        slow_writer.join().unwrap();

        // The cap: 8 idle sockets hold every slot; a 9th is closed at once,
        // and once the idle ones time out the service answers again.
        let mut holders: Vec<TcpStream> = (0..8)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = TcpStream::connect(address).unwrap();
        let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let extra_closed = closed_within(&mut extra, Duration::from_millis(500));
        for holder in &mut holders {
            assert!(closed_within(holder, Duration::from_secs(4)));
        }
        (idle_closed, slow_closed, took, extra_closed)
    })
    .await
    .unwrap();
    let (idle_closed, slow_closed, took, extra_closed) = outcome;
    assert!(idle_closed, "an idle socket stayed open");
    assert!(slow_closed, "a slowloris socket stayed open");
    assert!(took < Duration::from_secs(4), "closing took {took:?}");
    assert!(extra_closed, "a connection past the cap was kept waiting");
    let client = Client::new(&server);
    assert!(
        client
            .answers_within("/health", 200, Duration::from_secs(3))
            .await,
        "the service did not answer after the idle sockets were closed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_comes_within_the_request_deadline_under_redis_latency() {
    let redis = RedisServer::new();
    let proxy = FaultProxy::start(redis.port());
    let db = TestDb::new();
    let mut config = test_config(&db.path());
    config.request_timeout = Duration::from_millis(800);
    let server = start_with(Some(fast_redis_config(&proxy.url())), db, config).await;
    let mut alice = Client::registered(&server, "alice").await;
    assert_eq!(
        alice
            .post("/tasks", json!({"title": "before"}))
            .await
            .status,
        201
    );

    // 50 ms per leg is slow; 300 ms makes every Redis call take 600 ms, so
    // a request of several calls must be cut at its deadline.
    for latency in [50, 300] {
        proxy.set(Fault::Latency(Duration::from_millis(latency)));
        for round in 0..3 {
            for (method, path) in [
                ("GET", "/tasks"),
                ("POST", "/tasks"),
                ("GET", "/auth/me"),
                ("POST", "/auth/register"),
            ] {
                let body = match path {
                    "/tasks" if method == "POST" => Some(json!({"title": "during"})),
                    "/auth/register" => Some(json!({
                        "username": format!("u{latency}x{round}"),
                        "password": "long enough password",
                    })),
                    _ => None,
                };
                // Registering is a new visitor's request, without Alice's
                // cookie (registering with it would end her session).
                let mut visitor = Client::new(&server);
                let client = if path == "/auth/register" {
                    &mut visitor
                } else {
                    &mut alice
                };
                let started = Instant::now();
                let reply = client.send(method, path, body).await;
                let took = started.elapsed();
                assert!(
                    took < Duration::from_millis(800 + 700),
                    "{method} {path} at {latency} ms took {took:?}"
                );
                assert!(
                    matches!(reply.status, 200 | 201 | 503),
                    "{method} {path}: {reply:?}"
                );
                if reply.status == 503 {
                    assert!(reply.headers.contains_key("retry-after"), "{reply:?}");
                    assert!(reply.body["error"]["code"].is_string(), "{reply:?}");
                }
            }
        }
    }
    proxy.heal();
    assert!(
        alice
            .answers_within("/tasks", 200, Duration::from_secs(5))
            .await
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_cannot_start_a_session_is_undone() {
    let redis = RedisServer::new();
    let db = TestDb::new();
    let config = test_config(&db.path());
    let server = start_with(Some(fast_redis_config(&redis.url())), db, config).await;
    let mut client = Client::new(&server);
    assert_eq!(
        client
            .register("warmup", "long enough password")
            .await
            .status,
        201
    );

    redis.pause();
    let mut during = Client::new(&server);
    let carol = json!({"username": "carol", "password": "long enough password"});
    let reply = during.post("/auth/register", carol.clone()).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(during.cookie.is_none());
    redis.resume();

    let mut retry = Client::new(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        let reply = retry.post("/auth/register", carol.clone()).await;
        if reply.status != 503 || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        reply.status, 201,
        "the retry found the name taken: {reply:?}"
    );
    assert_eq!(retry.get("/auth/me").await.status, 200);
    server.stop().await;
}

/// The `redkit` binary started with `args` on a fresh database; its address.
fn spawn_service(args: &[&str], db: &std::path::Path) -> (Child, String) {
    let (child, lines, address) = crate::support::start_service(args, db);
    // Keep draining stdout so the service never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, address)
}

/// Peak resident memory of process `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn concurrent_password_hashing_is_bounded_in_memory_and_answers_busy_past_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = spawn_service(
        &[
            "--auth-rate-limit",
            "off",
            "--hash-threads",
            "2",
            "--hash-queue",
            "16",
        ],
        &dir.path().join("redkit.db"),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<(u16, bool)> = runtime.block_on(async {
        let http = reqwest::Client::new();
        let requests = (0..100).map(|n| {
            let http = http.clone();
            let url = format!("http://{address}/auth/register");
            async move {
                let response = http
                    .post(url)
                    .json(&json!({"username": format!("user{n}"), "password": "long enough password"}))
                    .send()
                    .await
                    .unwrap();
                (
                    response.status().as_u16(),
                    response.headers().contains_key("retry-after"),
                )
            }
        });
        futures_util::future::join_all(requests).await
    });
    let peak = peak_rss(child.id());
    // Refused registrations changed nothing: each can be retried.
    let refused: Vec<usize> = statuses
        .iter()
        .enumerate()
        .filter(|(_, (status, _))| *status == 503)
        .map(|(n, _)| n)
        .collect();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        for n in refused.iter().take(5) {
            let response = http
                .post(format!("http://{address}/auth/register"))
                .json(&json!({"username": format!("user{n}"), "password": "long enough password"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201, "retry of user{n}");
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    let created = statuses.iter().filter(|(status, _)| *status == 201).count();
    let busy = statuses
        .iter()
        .filter(|(status, retry_after)| *status == 503 && *retry_after)
        .count();
    assert_eq!(created + busy, 100, "{statuses:?}");
    // How many fit depends on arrival timing; at least the threads' and the
    // queue's worth is never refused while they are free.
    assert!(created >= 1, "none was hashed: {statuses:?}");
    assert!(busy > 0, "a queue of 16 took 100 requests at once");
    eprintln!(
        "100 concurrent registrations: {created} created, {busy} busy, peak RSS {} MiB",
        peak / (1024 * 1024)
    );
    assert!(
        peak < 200 * 1024 * 1024,
        "peak RSS {} MiB for 100 concurrent registrations",
        peak / (1024 * 1024)
    );
}

#[test]
fn policies_turned_off_start_and_run_no_limiter() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = spawn_service(
        &["--auth-rate-limit", "off", "--api-rate-limit", "off"],
        &dir.path().join("redkit.db"),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let headers = runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut seen = Vec::new();
        for n in 0..8 {
            let response = http
                .post(format!("http://{address}/auth/login"))
                .json(
                    &json!({"username": format!("nobody{n}"), "password": "long enough password"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 401);
            seen.push(response.headers().clone());
        }
        seen
    });
    let _ = child.kill();
    let _ = child.wait();
    for headers in headers {
        assert!(!headers.contains_key("ratelimit-policy"), "{headers:?}");
        assert!(!headers.contains_key("ratelimit"), "{headers:?}");
    }
}
