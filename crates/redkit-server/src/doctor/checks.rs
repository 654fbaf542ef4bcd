//! The checks, in the order they are reported.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redkit::config::{NodeAddress, RedisConfig, TopologyKind};
use redkit::connection::RedisConnection;
use redkit::connection::redis::{self, Value};
use redkit::store::{KeyTtl, RedisStore, SetEntry, Store, scan_all};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{DoctorOptions, Finding, ms};
use crate::api_error::error_chain as chain;

/// Redis' `INFO`, as field → value.
type Info = HashMap<String, String>;

/// Every command redkit sends, with the part of redkit that needs it.
const NEEDED: &[(&str, &[&str], &str)] = &[
    ("GET", &["GET", "k"], "store, cache, sessions"),
    ("GETEX", &["GETEX", "k", "PX", "1000"], "rolling sessions"),
    ("SET", &["SET", "k", "v"], "store, cache, sessions"),
    ("MGET", &["MGET", "k"], "cache get_many"),
    (
        "UNLINK",
        &["UNLINK", "k"],
        "store deletes, cache invalidation",
    ),
    ("PEXPIRE", &["PEXPIRE", "k", "1000"], "store expire"),
    ("PTTL", &["PTTL", "k"], "store ttl"),
    (
        "INCRBY",
        &["INCRBY", "k", "1"],
        "counters, cache tag versions",
    ),
    ("SADD", &["SADD", "k", "m"], "session index"),
    ("SREM", &["SREM", "k", "m"], "session index"),
    ("SMEMBERS", &["SMEMBERS", "k"], "session index"),
    ("SCAN", &["SCAN", "0"], "prefix invalidation"),
    (
        "PUBLISH",
        &["PUBLISH", "c", "m"],
        "cache backplane, session and task events",
    ),
    (
        "SUBSCRIBE",
        &["SUBSCRIBE", "c"],
        "cache backplane, session and task events",
    ),
    (
        "EVALSHA",
        &[
            "EVALSHA",
            "0000000000000000000000000000000000000000",
            "1",
            "k",
        ],
        "rate limits, sessions",
    ),
    (
        "SCRIPT LOAD",
        &["SCRIPT", "LOAD", "return 1"],
        "rate limits, sessions",
    ),
    ("PING", &["PING"], "connection health"),
    ("INFO", &["INFO"], "health report"),
    ("DBSIZE", &["DBSIZE"], "health report"),
    (
        "XADD",
        &["XADD", "k", "*", "f", "v"],
        "job queues (Streams)",
    ),
    (
        "XREADGROUP",
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "k", ">"],
        "job queues (Streams)",
    ),
    ("XACK", &["XACK", "k", "g", "0-1"], "job queues (Streams)"),
    (
        "XAUTOCLAIM",
        &["XAUTOCLAIM", "k", "g", "c", "0", "0"],
        "job queues (Streams)",
    ),
];

/// Commands an application's user should not be allowed.
const DANGEROUS: &[(&str, &[&str])] = &[
    ("FLUSHALL", &["FLUSHALL"]),
    ("FLUSHDB", &["FLUSHDB"]),
    ("KEYS", &["KEYS", "*"]),
    ("CONFIG SET", &["CONFIG", "SET", "maxmemory", "0"]),
];

pub(super) async fn run(config: RedisConfig, options: &DoctorOptions) -> Vec<Finding> {
    let mut findings = Vec::new();
    let address = config.address();
    // One node: a plain TCP connect first tells "nothing listens" from a
    // failed handshake. Sentinel and Cluster find their nodes themselves.
    if config.topology.kind() == TopologyKind::Standalone
        && let Err(problem) = reach(&config).await
    {
        findings.push(Finding::fail(
            "connection",
            format!("cannot reach {address}: {problem}"),
            "check REDIS_URL / REDIS_HOST / REDIS_PORT, that redis-server runs and that a firewall lets this host in",
        ));
        return findings;
    }
    // A hash tag keeps every scratch key in one Cluster slot (multi-key
    // checks run as they would for one node); harmless elsewhere.
    let scratch = format!("{{redkit-doctor:{}}}:", scratch_id());
    let mut scratch_config = config.clone();
    scratch_config.key_prefix = format!("{}{scratch}", config.key_prefix);
    scratch_config.retry = scratch_config.retry.max_attempts(1);
    let connection = match RedisConnection::connect(scratch_config) {
        Ok(connection) => connection,
        Err(error) => {
            findings.push(Finding::fail(
                "connection",
                chain(&error),
                "fix the REDIS_* settings",
            ));
            return findings;
        }
    };
    if connection
        .wait_ready(config.connect_timeout + Duration::from_secs(1))
        .await
        .is_err()
    {
        let why = connection.last_failure().unwrap_or_default();
        let finding = if why.contains("not a master") {
            Finding::fail(
                "connection",
                format!("{why}: redkit only uses a master"),
                "point REDIS_URL at the master, or let Sentinel find it (redis+sentinel://)",
            )
        } else {
            Finding::fail(
                "connection",
                format!(
                    "{address}: no usable connection (TLS, AUTH, SELECT {} or topology): {why}",
                    config.db
                ),
                "check REDIS_USERNAME / REDIS_PASSWORD, REDIS_TLS (rediss://), REDIS_DB and the topology settings against the server",
            )
        };
        findings.push(finding);
        connection.shutdown().await;
        return findings;
    }
    let user = connection
        .query::<String>(redis::cmd("ACL").arg("WHOAMI"))
        .await
        .unwrap_or_else(|_| {
            config
                .username
                .clone()
                .unwrap_or_else(|| "default".to_owned())
        });
    findings.push(Finding::pass(
        "connection",
        format!(
            "connected to {address} as user `{user}`{}",
            if config.tls {
                " over TLS"
            } else {
                " without TLS"
            }
        ),
    ));
    let info = match one_node_info(&connection).await {
        Ok(text) => parse_info(&text),
        Err(error) => {
            findings.push(Finding::fail(
                "permissions",
                format!("INFO failed: {}", chain(&error)),
                format!("allow INFO for `{user}` (ACL SETUSER {user} +info): redkit's health report needs it"),
            ));
            Info::new()
        }
    };
    findings.push(version(&info));
    findings.push(permissions(&connection, &user).await);
    findings.push(round_trip(&connection, &user).await);
    findings.extend(security(&connection, &config, &user).await);
    findings.extend(memory(&info));
    findings.push(clients(&info));
    findings.push(persistence(&connection, &info).await);
    findings.push(replication(&info));
    findings.push(topology(&connection, &info).await);
    findings.push(latency(&connection, options.pings).await);
    findings.push(slowlog(&connection).await);
    connection.shutdown().await;
    findings
}

/// TCP reachability within the connect timeout, for a quick, precise
/// failure before the connection's own retries.
/// `INFO` of the node the checks read: the master on Standalone and
/// Sentinel, the first master on Cluster (where a plain `INFO` is answered
/// by every node at once).
async fn one_node_info(connection: &RedisConnection) -> redkit::Result<String> {
    if connection.topology_kind() != TopologyKind::Cluster {
        return connection.query(&redis::cmd("INFO")).await;
    }
    let masters = connection.masters().await?;
    let first = masters.first().ok_or(redkit::Error::Unavailable {
        state: connection.state(),
    })?;
    connection.query_on(first, &redis::cmd("INFO")).await
}

async fn reach(config: &RedisConfig) -> Result<(), String> {
    let target = (config.host.as_str(), config.port);
    match tokio::time::timeout(
        config.connect_timeout,
        tokio::net::TcpStream::connect(target),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {}", ms(config.connect_timeout))),
    }
}

fn scratch_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos)
}

fn parse_info(text: &str) -> Info {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
        .collect()
}

fn number(info: &Info, field: &str) -> Option<f64> {
    info.get(field)?.parse().ok()
}

fn version(info: &Info) -> Finding {
    let Some(text) = info.get("redis_version") else {
        return Finding::warn(
            "version",
            "the server's version is unknown (INFO did not answer)",
            "allow INFO so the version can be checked",
        );
    };
    let parts: Vec<u32> = text
        .split('.')
        .filter_map(|part| part.parse().ok())
        .collect();
    let (major, minor) = (
        parts.first().copied().unwrap_or(0),
        parts.get(1).copied().unwrap_or(0),
    );
    if (major, minor) < (6, 2) {
        Finding::fail(
            "version",
            format!(
                "Redis {text}: redkit needs 6.2 or newer (GETEX for rolling sessions, XAUTOCLAIM for queues)"
            ),
            "upgrade Redis to 6.2+ (7.x recommended)",
        )
    } else {
        Finding::pass(
            "version",
            format!(
                "Redis {text} has every command redkit uses (GETEX, scripts, pub/sub, Streams)"
            ),
        )
    }
}

/// `ACL DRYRUN` answers: `Ok(true)` allowed, `Ok(false)` denied,
/// `Err` when DRYRUN itself cannot run (Redis < 7, or not permitted).
async fn dry_run(connection: &RedisConnection, user: &str, args: &[&str]) -> Result<bool, String> {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("DRYRUN").arg(user);
    for arg in args {
        cmd.arg(*arg);
    }
    match connection.query::<Value>(&cmd).await {
        Ok(Value::Okay) => Ok(true),
        Ok(Value::SimpleString(text)) if text == "OK" => Ok(true),
        Ok(_) => Ok(false),
        Err(error) => {
            let text = chain(&error);
            // A command renamed or absent: not allowed to anyone.
            if text.contains("not found") || text.contains("unknown command") {
                Ok(false)
            } else {
                Err(text)
            }
        }
    }
}

async fn permissions(connection: &RedisConnection, user: &str) -> Finding {
    let mut denied = Vec::new();
    for (name, args, used_by) in NEEDED {
        match dry_run(connection, user, args).await {
            Ok(true) => {}
            Ok(false) => denied.push(format!("{name} ({used_by})")),
            Err(_) => {
                return Finding::pass(
                    "permissions",
                    format!(
                        "ACL DRYRUN is not available to `{user}` (Redis < 7 or a restricted user); the round trip below tries each operation instead"
                    ),
                );
            }
        }
    }
    if denied.is_empty() {
        Finding::pass(
            "permissions",
            format!("`{user}` may run every command redkit uses (checked with ACL DRYRUN)"),
        )
    } else {
        Finding::fail(
            "permissions",
            format!("`{user}` may not run: {}", denied.join(", ")),
            format!(
                "ACL SETUSER {user} {} (and `&*` or the channels redkit uses for pub/sub)",
                denied
                    .iter()
                    .filter_map(|entry| entry.split(" (").next())
                    .map(|name| format!("+{}", name.to_lowercase().replace(' ', "|")))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )
    }
}

/// One failed operation of the round trip.
struct Failed {
    command: &'static str,
    used_by: &'static str,
    error: String,
}

/// Runs every store operation on the scratch prefix, then removes the keys.
async fn round_trip(connection: &RedisConnection, user: &str) -> Finding {
    let store = RedisStore::new(connection.clone());
    let prefix = connection.config().key_prefix.clone();
    let mut failed = Vec::new();
    let mut check = |command: &'static str, used_by: &'static str, result: Result<(), String>| {
        if let Err(error) = result {
            failed.push(Failed {
                command,
                used_by,
                error,
            });
        }
    };
    let minute = Some(Duration::from_secs(60));
    let text = |error: redkit::Error| chain(&error);
    check(
        "SET",
        "store, cache, sessions",
        store.set("value", b"v", minute).await.map_err(text),
    );
    let got = store.get("value").await.map_err(text);
    check(
        "GET",
        "store, cache, sessions",
        match got {
            Ok(Some(value)) if value.as_ref() == b"v" => Ok(()),
            Ok(other) => Err(format!("read back {other:?} instead of the value written")),
            Err(error) => Err(error),
        },
    );
    check(
        "GETEX",
        "rolling sessions",
        store
            .get_and_expire("value", Duration::from_secs(60))
            .await
            .map(drop)
            .map_err(text),
    );
    check(
        "SET NX",
        "cache stampede lock",
        store
            .set_if_absent("lock", b"1", minute)
            .await
            .map(drop)
            .map_err(text),
    );
    check(
        "MGET",
        "cache get_many",
        store
            .get_many(&["value", "lock"])
            .await
            .map(drop)
            .map_err(text),
    );
    let entries = [SetEntry {
        key: "many",
        value: b"m",
        ttl: minute,
    }];
    check(
        "SET (pipelined)",
        "cache set_many",
        store.set_many(&entries).await.map_err(text),
    );
    check(
        "PEXPIRE",
        "store expire",
        store
            .expire("value", Duration::from_secs(30))
            .await
            .map(drop)
            .map_err(text),
    );
    check(
        "PTTL",
        "store ttl",
        match store.ttl("value").await {
            Ok(KeyTtl::ExpiresIn(_)) => Ok(()),
            Ok(other) => Err(format!("PTTL said {other:?} for a key with a TTL")),
            Err(error) => Err(text(error)),
        },
    );
    check(
        "INCRBY",
        "counters, cache tag versions",
        store.incr_by("counter", 2).await.map(drop).map_err(text),
    );
    check(
        "SADD",
        "session index",
        store
            .set_add("set", &["a", "b"])
            .await
            .map(drop)
            .map_err(text),
    );
    check(
        "SREM",
        "session index",
        store
            .set_remove("set", &["a"])
            .await
            .map(drop)
            .map_err(text),
    );
    check(
        "SMEMBERS",
        "session index",
        store.set_members("set").await.map(drop).map_err(text),
    );
    check(
        "SCAN",
        "prefix invalidation",
        scan_all(&store, "*", 100).await.map(drop).map_err(text),
    );
    check(
        "PUBLISH",
        "cache backplane, events",
        store
            .publish("channel", b"hello")
            .await
            .map(drop)
            .map_err(text),
    );
    check(
        "SUBSCRIBE",
        "cache backplane, events",
        subscribe(connection, &format!("{prefix}channel")).await,
    );
    let (load, eval) = scripts(connection, &format!("{prefix}value")).await;
    check("SCRIPT LOAD", "rate limits, sessions", load);
    check("EVALSHA", "rate limits, sessions", eval);
    for (command, result) in streams(connection, &format!("{prefix}stream")).await {
        check(command, "job queues (Streams)", result);
    }
    let keys = ["value", "lock", "many", "counter", "set", "stream"];
    let cleaned = store.delete(&keys).await.map_err(text);
    check(
        "UNLINK",
        "store deletes, cache invalidation",
        cleaned.as_ref().map(drop).map_err(Clone::clone),
    );
    let left = scan_all(&store, "*", 100).await.unwrap_or_default();
    if !left.is_empty() {
        let left: Vec<&str> = left.iter().map(String::as_str).collect();
        let _ = store.delete(&left).await;
    }
    if failed.is_empty() {
        return Finding::pass(
            "round_trip",
            format!(
                "every store operation works on the scratch prefix `{prefix}` (removed afterwards)"
            ),
        );
    }
    let names: Vec<String> = failed
        .iter()
        .map(|failure| failure.command.to_owned())
        .collect();
    let details: Vec<String> = failed
        .iter()
        .map(|failure| {
            format!(
                "{} ({}): {}",
                failure.command, failure.used_by, failure.error
            )
        })
        .collect();
    Finding::fail(
        "round_trip",
        format!("failed for `{user}`: {}", details.join("; ")),
        format!(
            "let `{user}` run {} (e.g. ACL SETUSER {user} {})",
            names.join(", "),
            names
                .iter()
                .map(|name| format!("+{}", acl_name(name)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
}

/// The ACL rule name of a command as the round trip names it.
fn acl_name(command: &str) -> String {
    let base = command.split(" (").next().unwrap_or(command);
    match base {
        "SET NX" => "set".to_owned(),
        other => other.to_lowercase().replace(' ', "|"),
    }
}

async fn subscribe(connection: &RedisConnection, channel: &str) -> Result<(), String> {
    let mut pubsub = connection.pubsub().await.map_err(|error| chain(&error))?;
    pubsub
        .subscribe(channel)
        .await
        .map_err(|error| error.to_string())
}

async fn scripts(
    connection: &RedisConnection,
    key: &str,
) -> (Result<(), String>, Result<(), String>) {
    let lua = "return redis.call('EXISTS', KEYS[1])";
    let load = connection
        .query::<String>(redis::cmd("SCRIPT").arg("LOAD").arg(lua))
        .await
        .map_err(|error| chain(&error));
    let sha = redis::Script::new(lua).get_hash().to_owned();
    let eval = connection
        .query::<i64>(redis::cmd("EVALSHA").arg(&sha).arg(1).arg(key))
        .await
        .map(drop)
        .map_err(|error| chain(&error));
    (load.map(drop), eval)
}

async fn streams(
    connection: &RedisConnection,
    key: &str,
) -> Vec<(&'static str, Result<(), String>)> {
    let run = |cmd: redis::Cmd| async move {
        connection
            .query::<Value>(&cmd)
            .await
            .map(drop)
            .map_err(|error| chain(&error))
    };
    let mut results = Vec::new();
    results.push((
        "XADD",
        run(redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("f")
            .arg("v")
            .clone())
        .await,
    ));
    results.push((
        "XGROUP CREATE",
        run(redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg("doctor")
            .arg("0")
            .clone())
        .await,
    ));
    results.push((
        "XREADGROUP",
        run(redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("doctor")
            .arg("c")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(key)
            .arg(">")
            .clone())
        .await,
    ));
    results.push((
        "XAUTOCLAIM",
        run(redis::cmd("XAUTOCLAIM")
            .arg(key)
            .arg("doctor")
            .arg("c")
            .arg(0)
            .arg("0")
            .clone())
        .await,
    ));
    results.push((
        "XACK",
        run(redis::cmd("XACK").arg(key).arg("doctor").arg("0-1").clone()).await,
    ));
    results
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the server answers a client that did not authenticate.
async fn open_without_password(config: &RedisConfig, node: &NodeAddress) -> Option<bool> {
    if config.tls {
        return None;
    }
    let target = (node.host.as_str(), node.port);
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(target).await.ok()?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut buffer = [0u8; 128];
        let read = stream.read(&mut buffer).await.ok()?;
        Some(buffer[..read].starts_with(b"+PONG"))
    };
    tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .ok()
        .flatten()
}

async fn config_get(connection: &RedisConnection, name: &str) -> Option<String> {
    let pairs: Vec<String> = connection
        .query(redis::cmd("CONFIG").arg("GET").arg(name))
        .await
        .ok()?;
    pairs.get(1).cloned()
}

/// The data node the doctor probes directly: the configured host on
/// Standalone, the master the sentinels named, the first Cluster master.
async fn probed_node(connection: &RedisConnection, config: &RedisConfig) -> NodeAddress {
    let current = match connection.topology_kind() {
        TopologyKind::Cluster => connection
            .masters()
            .await
            .ok()
            .and_then(|masters| masters.into_iter().next()),
        _ => connection.master(),
    };
    current
        .and_then(|address| NodeAddress::parse(&address, "node").ok())
        .unwrap_or_else(|| NodeAddress::new(config.host.clone(), config.port))
}

async fn security(connection: &RedisConnection, config: &RedisConfig, user: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let node = probed_node(connection, config).await;
    let loopback = is_loopback(&node.host);
    match open_without_password(config, &node).await {
        Some(true) if loopback => findings.push(Finding::warn(
            "security",
            "Redis answers clients without a password (no requirepass, or a `nopass` default user); only this host can reach it now",
            "set `requirepass` (or `ACL SETUSER default off` and an app user with a password) before exposing Redis",
        )),
        Some(true) => findings.push(Finding::fail(
            "security",
            format!("Redis at {node} answers clients without a password (no requirepass, or a `nopass` default user)"),
            "set `requirepass` (or disable the default user and create an ACL user with a password) and REDIS_PASSWORD",
        )),
        Some(false) => findings.push(Finding::pass(
            "security",
            "clients must authenticate (an unauthenticated PING is refused)",
        )),
        None if config.tls => findings.push(Finding::pass(
            "security",
            "TLS connection; authentication is checked through it",
        )),
        None => findings.push(Finding::warn(
            "security",
            format!("{node} could not be probed without a password (no answer to a plain PING)"),
            "check that the node is reachable from here",
        )),
    }
    if let Some(mode) = config_get(connection, "protected-mode").await
        && mode == "no"
        && config.password.is_none()
    {
        findings.push(Finding::warn(
            "security",
            "protected-mode is off and this connection uses no password",
            "set `protected-mode yes` or require a password",
        ));
    }
    if !loopback && !config.tls {
        findings.push(Finding::warn(
            "security",
            format!("Redis is reached over the network at {} without TLS: passwords and data cross it in clear text", config.host),
            "enable TLS on Redis (tls-port) and use rediss:// (REDIS_TLS=true)",
        ));
    }
    let mut allowed = Vec::new();
    let mut unknown = false;
    for (name, args) in DANGEROUS {
        match dry_run(connection, user, args).await {
            Ok(true) => allowed.push(*name),
            Ok(false) => {}
            Err(_) => unknown = true,
        }
    }
    if !allowed.is_empty() {
        findings.push(Finding::warn(
            "security",
            format!("`{user}` may run {} — one mistaken or injected call wipes or stalls every instance's data", allowed.join(", ")),
            format!(
                "give the app an ACL user without them (ACL SETUSER {user} -flushall -flushdb -keys -config), or `rename-command` them in redis.conf"
            ),
        ));
    } else if unknown {
        findings.push(Finding::pass(
            "security",
            format!("`{user}` may not run ACL DRYRUN, so it is a restricted user; FLUSHALL / KEYS / CONFIG could not be checked from here"),
        ));
    } else {
        findings.push(Finding::pass(
            "security",
            format!("`{user}` may not run FLUSHALL, FLUSHDB, KEYS or CONFIG SET"),
        ));
    }
    findings
}

fn memory(info: &Info) -> Vec<Finding> {
    let mut findings = Vec::new();
    let maxmemory = number(info, "maxmemory").unwrap_or(0.0);
    let used = number(info, "used_memory").unwrap_or(0.0);
    if info.is_empty() {
        return findings;
    }
    if maxmemory == 0.0 {
        findings.push(Finding::warn(
            "memory",
            "no maxmemory: Redis grows until the operating system kills it",
            "set `maxmemory` (e.g. 75 % of the host's memory) with `maxmemory-policy noeviction`",
        ));
    } else {
        let share = used / maxmemory;
        let text = format!(
            "{:.0} MiB used of a {:.0} MiB maxmemory ({:.0} %)",
            used / 1048576.0,
            maxmemory / 1048576.0,
            share * 100.0
        );
        findings.push(if share > 0.9 {
            Finding::warn("memory", text, "raise maxmemory or reduce cache TTLs")
        } else {
            Finding::pass("memory", text)
        });
    }
    let policy = info
        .get("maxmemory_policy")
        .map(String::as_str)
        .unwrap_or("unknown");
    const SESSIONS: &str = "sessions (`sess:s:*`: users logged out)";
    const INDEX: &str = "session indexes (`sess:u:*`: logout-all misses sessions)";
    const LIMITS: &str = "rate-limit counters (`rl:*`: limits reset, abusers get through)";
    const TAGS: &str = "cache tag versions (`<cache>:t:*`: invalidated entries come back)";
    const QUEUES: &str = "job queues (Streams: jobs lost)";
    let at_risk: Option<Vec<&str>> = match policy {
        "noeviction" => None,
        policy if policy.starts_with("allkeys-") => {
            Some(vec![SESSIONS, INDEX, LIMITS, TAGS, QUEUES])
        }
        policy if policy.starts_with("volatile-") => Some(vec![SESSIONS, INDEX, LIMITS]),
        _ => Some(Vec::new()),
    };
    findings.push(match at_risk {
        None => Finding::pass(
            "eviction",
            "maxmemory-policy noeviction: nothing of redkit's is evicted (at the limit writes fail and the cache degrades to misses)",
        ),
        Some(families) if families.is_empty() => Finding::warn(
            "eviction",
            format!("maxmemory-policy is `{policy}`"),
            "set `maxmemory-policy noeviction`",
        ),
        Some(families) => Finding::warn(
            "eviction",
            format!("maxmemory-policy `{policy}` may evict {}", families.join(", ")),
            "set `maxmemory-policy noeviction`, or keep the cache in a separate Redis whose policy may evict",
        ),
    });
    let fragmentation = number(info, "mem_fragmentation_ratio").unwrap_or(1.0);
    if fragmentation > 1.5 && used >= 64.0 * 1048576.0 {
        findings.push(Finding::warn(
            "memory",
            format!(
                "mem_fragmentation_ratio {fragmentation:.2} on {:.0} MiB",
                used / 1048576.0
            ),
            "enable `activedefrag yes` or restart Redis during a quiet period",
        ));
    }
    findings
}

fn clients(info: &Info) -> Finding {
    let connected = number(info, "connected_clients");
    let max = number(info, "maxclients");
    match (connected, max) {
        (Some(connected), Some(max)) if max > 0.0 && connected / max > 0.8 => Finding::warn(
            "clients",
            format!("{connected:.0} clients connected of maxclients {max:.0}"),
            "raise `maxclients` (and the file descriptor limit) or find the client leaking connections",
        ),
        (Some(connected), Some(max)) => Finding::pass(
            "clients",
            format!("{connected:.0} clients connected of maxclients {max:.0}"),
        ),
        (Some(connected), None) => {
            Finding::pass("clients", format!("{connected:.0} clients connected"))
        }
        _ => Finding::warn(
            "clients",
            "client counts unknown (INFO did not answer)",
            "allow INFO",
        ),
    }
}

async fn persistence(connection: &RedisConnection, info: &Info) -> Finding {
    if info
        .get("rdb_last_bgsave_status")
        .is_some_and(|status| status != "ok")
        || info
            .get("aof_last_write_status")
            .is_some_and(|status| status != "ok")
    {
        return Finding::fail(
            "persistence",
            "the last RDB save or AOF write failed",
            "check the Redis log and the disk (space, permissions) of `dir`",
        );
    }
    if info
        .get("aof_enabled")
        .is_some_and(|enabled| enabled == "1")
    {
        return Finding::pass(
            "persistence",
            "AOF is on: sessions and queued jobs survive a restart",
        );
    }
    match config_get(connection, "save").await {
        Some(save) if !save.trim().is_empty() => Finding::warn(
            "persistence",
            format!(
                "RDB snapshots only (`save {save}`): a crash loses the writes since the last snapshot (sessions, queued jobs)"
            ),
            "enable `appendonly yes` (appendfsync everysec)",
        ),
        Some(_) => Finding::warn(
            "persistence",
            "no persistence (AOF off, no RDB save points): a restart loses every session, limit and queued job",
            "enable `appendonly yes` (appendfsync everysec)",
        ),
        None => Finding::warn(
            "persistence",
            "AOF is off and the RDB schedule cannot be read (CONFIG not permitted): a restart may lose sessions and queued jobs",
            "enable `appendonly yes` (appendfsync everysec)",
        ),
    }
}

fn replication(info: &Info) -> Finding {
    match info.get("role").map(String::as_str) {
        Some("slave") => {
            if info
                .get("master_link_status")
                .is_some_and(|status| status != "up")
            {
                return Finding::fail(
                    "replication",
                    "this is a replica whose link to its master is down",
                    "point REDIS_URL at the master; check the master and the replication link",
                );
            }
            Finding::fail(
                "replication",
                "this is a read-only replica: redkit's writes fail (READONLY)",
                "point REDIS_URL at the master",
            )
        }
        Some(_) => {
            let lags: Vec<f64> = (0..16)
                .filter_map(|index| info.get(&format!("slave{index}")))
                .filter_map(|line| line.split(',').find_map(|part| part.strip_prefix("lag=")))
                .filter_map(|lag| lag.parse().ok())
                .collect();
            let worst = lags.iter().copied().fold(0.0_f64, f64::max);
            if worst > 10.0 {
                Finding::warn(
                    "replication",
                    format!("{} replicas, the slowest {worst:.0} s behind", lags.len()),
                    "check the replicas' network and load; a failover now would lose those writes",
                )
            } else {
                Finding::pass(
                    "replication",
                    format!(
                        "master with {} replicas{}",
                        lags.len(),
                        if lags.is_empty() {
                            String::new()
                        } else {
                            format!(", lag at most {worst:.0} s")
                        }
                    ),
                )
            }
        }
        None => Finding::warn(
            "replication",
            "role unknown (INFO did not answer)",
            "allow INFO",
        ),
    }
}

/// How redkit reaches its data, and whether that matches the server.
async fn topology(connection: &RedisConnection, info: &Info) -> Finding {
    let cluster_node = info
        .get("cluster_enabled")
        .is_some_and(|enabled| enabled == "1");
    match connection.topology_kind() {
        TopologyKind::Cluster => {
            let state: Result<String, _> =
                connection.query(redis::cmd("CLUSTER").arg("INFO")).await;
            let masters = connection.masters().await.map(|masters| masters.len());
            match (state, masters) {
                (Ok(text), Ok(masters)) if text.contains("cluster_state:ok") => Finding::pass(
                    "topology",
                    format!(
                        "Redis Cluster, cluster_state:ok, {masters} masters serving slots (the \
                         checks above ran on one node; /health/redis shows every master)"
                    ),
                ),
                (Err(error), _) | (_, Err(error)) => Finding::fail(
                    "topology",
                    format!("CLUSTER INFO / CLUSTER NODES failed: {}", chain(&error)),
                    "allow CLUSTER INFO and CLUSTER NODES for redkit's user",
                ),
                (Ok(_), Ok(_)) => Finding::fail(
                    "topology",
                    "Redis Cluster whose cluster_state is not ok: writes to some slots fail",
                    "check CLUSTER INFO / CLUSTER NODES: a master down without a replica, or uncovered slots",
                ),
            }
        }
        TopologyKind::Sentinel => {
            let sentinels = connection.ping_sentinels().await;
            let answering = sentinels.iter().filter(|(_, ping)| ping.is_ok()).count();
            let master = connection.master().unwrap_or_else(|| "unknown".to_owned());
            let summary = format!(
                "Sentinel: master {master}; {answering} of {} sentinels answer",
                sentinels.len()
            );
            if answering * 2 > sentinels.len() {
                Finding::pass("topology", summary)
            } else {
                Finding::warn(
                    "topology",
                    format!("{summary}: a failover needs a majority of them"),
                    "check the sentinels in REDIS_SENTINELS (addresses, REDIS_SENTINEL_PASSWORD)",
                )
            }
        }
        _ if cluster_node => Finding::fail(
            "topology",
            "this node runs in Cluster mode but redkit is configured for one node, so keys on other slots answer MOVED",
            "configure the cluster: REDIS_URL=redis+cluster://host:port,… or REDIS_CLUSTER_NODES",
        ),
        _ => Finding::pass("topology", "standalone Redis (a master), checked fully"),
    }
}

async fn latency(connection: &RedisConnection, pings: u32) -> Finding {
    let mut samples = Vec::new();
    for _ in 0..pings.max(1) {
        match connection.ping().await {
            Ok(round_trip) => samples.push(round_trip),
            Err(error) => {
                return Finding::fail(
                    "latency",
                    format!("PING failed during the sample: {}", chain(&error)),
                    "check the server's load and the network",
                );
            }
        }
    }
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples[index.min(samples.len() - 1)]
    };
    let (p50, p99, max) = (at(0.5), at(0.99), at(1.0));
    let text = format!(
        "PING over {} samples: p50 {}, p99 {}, max {}",
        samples.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    if p50 > Duration::from_millis(10) {
        Finding::warn(
            "latency",
            text,
            "a median above 10 ms: move Redis closer to the service or find what loads it (SLOWLOG, INFO commandstats)",
        )
    } else {
        Finding::pass("latency", text)
    }
}

async fn slowlog(connection: &RedisConnection) -> Finding {
    let entries: Vec<Value> = match connection
        .query(redis::cmd("SLOWLOG").arg("GET").arg(10))
        .await
    {
        Ok(entries) => entries,
        Err(_) => {
            return Finding::pass(
                "slowlog",
                "SLOWLOG is not permitted to this user (restricted); read it as an admin with SLOWLOG GET",
            );
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    // Entry: [id, unix time, microseconds, [command, args...], ...]. Only
    // the command name is shown: arguments may hold data or secrets.
    let recent: Vec<String> = entries
        .iter()
        .filter_map(|entry| match entry {
            Value::Array(fields) => Some(fields),
            _ => None,
        })
        .filter_map(|fields| {
            let time = match fields.get(1)? {
                Value::Int(time) => u64::try_from(*time).ok()?,
                _ => return None,
            };
            let micros = match fields.get(2)? {
                Value::Int(micros) => *micros,
                _ => return None,
            };
            let command = match fields.get(3)? {
                Value::Array(args) => match args.first()? {
                    Value::BulkString(name) => String::from_utf8_lossy(name).to_uppercase(),
                    _ => return None,
                },
                _ => return None,
            };
            (now.saturating_sub(time) < 3600)
                .then(|| format!("{command} {:.1} ms", micros as f64 / 1000.0))
        })
        .collect();
    if recent.is_empty() {
        Finding::pass("slowlog", "no slow commands in the last hour")
    } else {
        Finding::warn(
            "slowlog",
            format!(
                "{} slow commands in the last hour: {}",
                recent.len(),
                recent.join(", ")
            ),
            "find their callers (KEYS, large MGET/SMEMBERS, long scripts) and bound them; SLOWLOG RESET after fixing",
        )
    }
}
