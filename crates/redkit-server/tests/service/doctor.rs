//! `redkit doctor` against real redis-servers configured each way.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redkit_testkit::RedisServer;

/// Runs `redkit doctor` against `url`; returns the exit code and stdout.
fn doctor(url: &str, extra: &[&str]) -> (i32, String) {
    let mut command = crate::support::redkit_binary();
    let output = command
        .arg("doctor")
        .args(["--pings", "20"])
        .args(extra)
        .env("REDIS_URL", url)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.is_empty() || !stderr.contains("panicked"),
        "{stderr}"
    );
    (output.status.code().unwrap(), stdout)
}

/// DBSIZE over a raw connection, authenticating with `password` if given.
fn dbsize(port: u16, password: Option<&str>) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if let Some(password) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        stream.write_all(auth.as_bytes()).unwrap();
        let mut ok = [0u8; 5];
        stream.read_exact(&mut ok).unwrap();
    }
    stream.write_all(b"*1\r\n$6\r\nDBSIZE\r\n").unwrap();
    let mut buffer = [0u8; 64];
    let read = stream.read(&mut buffer).unwrap();
    String::from_utf8_lossy(&buffer[..read]).trim().to_owned()
}

#[test]
fn no_password_warns_and_the_scratch_keys_are_removed() {
    let redis = RedisServer::new();
    let (code, out) = doctor(&redis.url(), &[]);
    assert_eq!(code, 1, "warnings, no failures:\n{out}");
    assert!(out.contains("WARN security"), "{out}");
    assert!(out.contains("without a password"), "{out}");
    assert!(out.contains("no maxmemory"), "{out}");
    assert!(out.contains("PASS round_trip"), "{out}");
    assert!(out.contains("PASS version"), "{out}");
    assert!(out.contains("standalone"), "{out}");
    assert!(out.contains("p50"), "{out}");
    assert_eq!(dbsize(redis.port(), None), ":0", "scratch keys left behind");
}

#[test]
fn a_hardened_server_passes() {
    let password = "doctor-pass-not-in-output";
    let redis = RedisServer::builder()
        .requirepass(password)
        .arg("maxmemory", "64mb")
        .arg("maxmemory-policy", "noeviction")
        .arg("appendonly", "yes")
        .config_line("rename-command FLUSHALL \"\"")
        .config_line("rename-command FLUSHDB \"\"")
        .config_line("rename-command KEYS \"\"")
        .config_line("rename-command CONFIG \"\"")
        .start();
    let (code, out) = doctor(&redis.url(), &[]);
    assert_eq!(code, 0, "all pass:\n{out}");
    assert!(out.contains("AOF is on"), "{out}");
    assert!(out.contains("noeviction"), "{out}");
    assert!(!out.contains(password), "the password leaked:\n{out}");
    assert_eq!(dbsize(redis.port(), Some(password)), ":0");
}

#[test]
fn allkeys_eviction_warns_naming_sessions_in_json() {
    let redis = RedisServer::builder()
        .arg("maxmemory", "64mb")
        .arg("maxmemory-policy", "allkeys-lru")
        .start();
    let (code, out) = doctor(&redis.url(), &["--json"]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["grade"], "warn");
    let eviction = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|finding| finding["check"] == "eviction")
        .unwrap();
    assert_eq!(eviction["grade"], "warn");
    let message = eviction["message"].as_str().unwrap();
    assert!(
        message.contains("allkeys-lru") && message.contains("sessions"),
        "{message}"
    );
    assert!(eviction["fix"].as_str().unwrap().contains("noeviction"));
}

#[test]
fn a_user_without_script_permission_fails_naming_the_commands() {
    let redis = RedisServer::builder()
        .config_line("user app on >app-password ~* &* +@all -@scripting")
        .start();
    let url = format!("redis://app:app-password@127.0.0.1:{}", redis.port());
    let (code, out) = doctor(&url, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL permissions"), "{out}");
    assert!(out.contains("FAIL round_trip"), "{out}");
    for command in ["EVALSHA", "SCRIPT LOAD"] {
        assert!(out.contains(command), "{command} not named:\n{out}");
    }
    assert!(
        out.contains("+evalsha"),
        "the fix names the ACL rule:\n{out}"
    );
    assert!(!out.contains("app-password"), "{out}");
}

#[test]
fn unreachable_redis_fails_quickly_naming_the_address() {
    let port = redkit_testkit::free_port();
    let started = Instant::now();
    let (code, out) = doctor(&format!("redis://127.0.0.1:{port}"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    assert!(out.contains("FAIL connection"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_replica_fails_and_says_to_use_the_master() {
    let master = RedisServer::new();
    let replica = RedisServer::builder()
        .config_line(format!("replicaof 127.0.0.1 {}", master.port()))
        .start();
    let (code, out) = doctor(&replica.url(), &[]);
    assert_eq!(code, 2, "{out}");
    // redkit never uses a replica (writes would fail): the doctor says so
    // and names the way to the master.
    assert!(out.contains("FAIL connection"), "{out}");
    assert!(out.contains("is a slave, not a master"), "{out}");
    assert!(out.contains("redis+sentinel://"), "{out}");
}

#[test]
fn a_cluster_node_under_a_standalone_config_fails_naming_the_cluster_settings() {
    let cluster = redkit_testkit::RedisCluster::start_with(3, 0);
    let (code, out) = doctor(&cluster.nodes()[0].url(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL topology"), "{out}");
    assert!(out.contains("Cluster mode"), "{out}");
    assert!(out.contains("redis+cluster://"), "{out}");
    // Configured as a cluster, the topology check passes.
    let (_, out) = doctor(&cluster.url(), &[]);
    assert!(out.contains("PASS topology"), "{out}");
    assert!(out.contains("cluster_state:ok, 3 masters"), "{out}");
}
