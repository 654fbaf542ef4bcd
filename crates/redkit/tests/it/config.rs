//! Configuration from URLs and environment variables: every bad value gets a
//! message naming the variable, the problem and the expected form.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::Duration;

use redkit::config::RedisConfig;

/// Environment variables, and fragments the error message must contain.
type Case = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

fn from_env(vars: &[(&str, &str)]) -> redkit::Result<RedisConfig> {
    let vars: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    RedisConfig::from_lookup(|name| vars.get(name).cloned())
}

fn error_of(vars: &[(&str, &str)]) -> String {
    from_env(vars).unwrap_err().to_string()
}

#[test]
fn no_address_selects_the_embedded_store() {
    assert!(!from_env(&[]).unwrap().enabled);
    assert!(!from_env(&[("REDIS_PASSWORD", "x")]).unwrap().enabled);
    let disabled = from_env(&[("REDIS_URL", "redis://h"), ("REDIS_ENABLED", "false")]).unwrap();
    assert!(!disabled.enabled);
}

#[test]
fn host_and_port_variables() {
    let config = from_env(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PORT", "6380"),
        ("REDIS_USERNAME", "app"),
        ("REDIS_PASSWORD", "pw"),
        ("REDIS_DB", "2"),
        ("REDIS_TLS", "true"),
        ("REDIS_KEY_PREFIX", "svc:"),
        ("REDIS_COMMAND_TIMEOUT_MS", "250"),
        ("REDIS_CONNECT_TIMEOUT_MS", "750"),
        ("REDIS_KEEPALIVE_SECS", "0"),
        ("REDIS_POOL_SIZE", "4"),
        ("REDIS_RETRY_MAX_ATTEMPTS", "7"),
        ("REDIS_FALLBACK", "off"),
    ])
    .unwrap();
    assert!(config.enabled);
    assert_eq!(config.host, "cache.internal");
    assert_eq!(config.port, 6380);
    assert_eq!(config.username.as_deref(), Some("app"));
    assert_eq!(config.password.as_ref().unwrap().expose(), "pw");
    assert_eq!(config.db, 2);
    assert!(config.tls);
    assert_eq!(config.key_prefix, "svc:");
    assert_eq!(config.command_timeout, Duration::from_millis(250));
    assert_eq!(config.connect_timeout, Duration::from_millis(750));
    assert_eq!(config.keep_alive, None);
    assert_eq!(config.pool_size, 4);
    assert_eq!(config.retry.max_attempts, 7);
    assert!(!config.fallback);
}

#[test]
fn urls_with_credentials_database_and_tls() {
    let config = RedisConfig::from_url("rediss://user:p%40ss@redis.example:7000/5").unwrap();
    assert!(config.tls);
    assert_eq!(config.host, "redis.example");
    assert_eq!(config.port, 7000);
    assert_eq!(config.username.as_deref(), Some("user"));
    assert_eq!(config.password.as_ref().unwrap().expose(), "p@ss");
    assert_eq!(config.db, 5);
    let plain = RedisConfig::from_url("redis://localhost").unwrap();
    assert_eq!((plain.port, plain.db, plain.tls), (6379, 0, false));
    // REDIS_PASSWORD can fill in what the URL leaves out.
    let filled = from_env(&[("REDIS_URL", "redis://h:1/1"), ("REDIS_PASSWORD", "pw")]).unwrap();
    assert_eq!(filled.password.unwrap().expose(), "pw");
}

#[test]
fn bad_values_name_the_variable_the_problem_and_the_expected_form() {
    let cases: &[Case] = &[
        (
            &[("REDIS_HOST", "h"), ("REDIS_PORT", "abc")],
            &["REDIS_PORT", "`abc` is not a number", "1 to 65535"],
        ),
        (
            &[("REDIS_HOST", "h"), ("REDIS_PORT", "70000")],
            &["REDIS_PORT", "`70000` is out of range", "1 to 65535"],
        ),
        (
            &[("REDIS_HOST", "h"), ("REDIS_PORT", "0")],
            &["REDIS_PORT", "out of range"],
        ),
        (
            &[("REDIS_HOST", "h"), ("REDIS_DB", "-1")],
            &["REDIS_DB", "`-1` is negative", "0 or more"],
        ),
        (
            &[("REDIS_URL", "not a url")],
            &["REDIS_URL", "not a valid URL", "redis://"],
        ),
        (
            &[("REDIS_URL", "http://localhost:6379")],
            &["REDIS_URL", "unknown scheme `http://`", "rediss://"],
        ),
        (
            &[("REDIS_URL", "redis://localhost/abc")],
            &["REDIS_URL", "not a database number"],
        ),
        (
            // An unencoded `/` or `?` in a password moves its tail into the
            // path or the query; neither is echoed.
            &[("REDIS_URL", "redis://:hunt/er2@h")],
            &["REDIS_URL"],
        ),
        (
            &[("REDIS_URL", "redis://h/0/er2@x")],
            &["REDIS_URL", "not a database number", "percent-encoded"],
        ),
        (
            &[("REDIS_URL", "redis://h?er2@x")],
            &["REDIS_URL", "parameters", "percent-encoded"],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_RETRY_INITIAL_DELAY_MS", "5000"),
            ],
            &[
                "REDIS_RETRY_MAX_DELAY_MS",
                "shorter than REDIS_RETRY_INITIAL_DELAY_MS",
            ],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_COMMAND_TIMEOUT_MS", "0"),
            ],
            &[
                "REDIS_COMMAND_TIMEOUT_MS",
                "`0` is not allowed",
                "greater than zero",
            ],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_COMMAND_TIMEOUT_MS", "-5"),
            ],
            &["REDIS_COMMAND_TIMEOUT_MS", "`-5` is negative"],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_CONNECT_TIMEOUT_MS", "soon"),
            ],
            &["REDIS_CONNECT_TIMEOUT_MS", "not a number"],
        ),
        (
            &[("REDIS_URL", "redis://h"), ("REDIS_TLS", "maybe")],
            &["REDIS_TLS", "not a boolean"],
        ),
        (
            &[("REDIS_URL", "redis://h"), ("REDIS_HOST", "h")],
            &["REDIS_HOST", "together with REDIS_URL"],
        ),
        (
            &[("REDIS_URL", "redis://h"), ("REDIS_POOL_SIZE", "0")],
            &["REDIS_POOL_SIZE", "out of range"],
        ),
        (
            &[("REDIS_ENABLED", "true")],
            &["REDIS_ENABLED", "no Redis address"],
        ),
        (
            &[
                ("REDIS_URL", "redis://h"),
                ("REDIS_RETRY_MAX_ATTEMPTS", "0"),
            ],
            &["REDIS_RETRY_MAX_ATTEMPTS"],
        ),
    ];
    for (vars, expected) in cases {
        let message = error_of(vars);
        for fragment in *expected {
            assert!(
                message.contains(fragment),
                "{vars:?}: {message:?} lacks {fragment:?}"
            );
        }
        assert!(message.contains("expected"), "{message}");
        assert!(!message.contains("er2"), "{message}");
    }
}

#[test]
fn passwords_never_show_in_debug_display_or_errors() {
    let config = RedisConfig::from_url("redis://u:hunter2@h:1/0").unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(!config.address().contains("hunter2"));
    assert_eq!(config.password.as_ref().unwrap().to_string(), "***");
    // An invalid URL with a password is not echoed back.
    let message = RedisConfig::from_url("redis://u:hunter2@h:99999")
        .unwrap_err()
        .to_string();
    assert!(!message.contains("hunter2"), "{message}");
    let message = error_of(&[("REDIS_URL", "ftp://u:hunter2@h")]);
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn builder_validates() {
    let error = RedisConfig::builder()
        .command_timeout(Duration::ZERO)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("command_timeout") && error.contains("greater than zero"),
        "{error}"
    );
    let error = RedisConfig::builder()
        .host("bad host")
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("host"), "{error}");
    let config = RedisConfig::builder()
        .host("h")
        .port(1)
        .db(3)
        .build()
        .unwrap();
    assert_eq!(config.address(), "h:1/3");
}

#[test]
fn sentinel_and_cluster_urls() {
    use redkit::config::{NodeAddress, Topology, TopologyKind};

    let config = RedisConfig::from_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26379,10.0.0.2:26380/mymaster/2",
    )
    .unwrap();
    let Topology::Sentinel(sentinel) = &config.topology else {
        panic!("not a sentinel topology: {:?}", config.topology);
    };
    assert_eq!(
        sentinel.sentinels,
        [
            NodeAddress::new("10.0.0.1", 26379),
            NodeAddress::new("10.0.0.2", 26380)
        ]
    );
    assert_eq!(sentinel.master_name, "mymaster");
    assert_eq!(config.db, 2);
    assert_eq!(config.username.as_deref(), Some("app"));
    assert_eq!(config.password.as_ref().unwrap().expose(), "p@ss");
    assert!(!config.tls);
    assert_eq!(config.address(), "sentinel:mymaster/2");

    let tls = RedisConfig::from_url("rediss+sentinel://h:26379/m").unwrap();
    assert!(tls.tls);
    assert_eq!(tls.topology.kind(), TopologyKind::Sentinel);

    let cluster = RedisConfig::from_url("redis+cluster://:pw@[::1]:7000,b:7001").unwrap();
    let Topology::Cluster(nodes) = &cluster.topology else {
        panic!("not a cluster topology");
    };
    assert_eq!(nodes.nodes[0], NodeAddress::new("::1", 7000));
    assert_eq!(nodes.nodes.len(), 2);
    assert_eq!(cluster.password.as_ref().unwrap().expose(), "pw");
    assert!(RedisConfig::from_url("rediss+cluster://a:1").unwrap().tls);
    // A plain URL after a topology goes back to Standalone.
    let builder = RedisConfig::builder()
        .url("redis+cluster://a:1")
        .unwrap()
        .url("redis://b:2")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(builder.topology.kind(), TopologyKind::Standalone);
}

#[test]
fn bad_topology_urls_are_named_without_echoing_secrets() {
    let cases: &[(&str, &[&str])] = &[
        (
            "redis+sentinel://h:26379",
            &["names no master", "master_name"],
        ),
        ("redis+sentinel://h/m", &["host:port"]),
        ("redis+sentinel://h:26379/m/x", &["not a database number"]),
        ("redis+sentinel://h:26379/m/1/extra", &["more parts"]),
        ("redis+cluster://h:7000/3", &["only database 0"]),
        ("redis+cluster://h:0", &["host:port"]),
        ("redis+cluster://", &["host:port"]),
        ("redis+cluster://h:1?x=secret", &["parameters"]),
    ];
    for (url, fragments) in cases {
        let error = RedisConfig::from_url(url).unwrap_err().to_string();
        for fragment in *fragments {
            assert!(error.contains(fragment), "{url}: {error}");
        }
        assert!(
            !error.contains("secret") && !error.contains("cret@"),
            "{url}: {error}"
        );
    }
}

#[test]
fn sentinel_and_cluster_variables() {
    use redkit::config::Topology;

    let sentinel = from_env(&[
        ("REDIS_SENTINELS", "10.0.0.1:26379, 10.0.0.2:26379"),
        ("REDIS_SENTINEL_MASTER", "mymaster"),
        ("REDIS_SENTINEL_PASSWORD", "sentinel-secret"),
        ("REDIS_PASSWORD", "data-secret"),
        ("REDIS_DB", "1"),
    ])
    .unwrap();
    assert!(sentinel.enabled);
    let Topology::Sentinel(topology) = &sentinel.topology else {
        panic!("not sentinel");
    };
    assert_eq!(topology.sentinels.len(), 2);
    assert_eq!(
        topology.password.as_ref().unwrap().expose(),
        "sentinel-secret"
    );
    assert_eq!(sentinel.password.as_ref().unwrap().expose(), "data-secret");
    assert_eq!(sentinel.db, 1);
    let debug = format!("{sentinel:?}");
    assert!(!debug.contains("secret"), "{debug}");

    let cluster = from_env(&[("REDIS_CLUSTER_NODES", "a:7000,b:7001,c:7002")]).unwrap();
    let Topology::Cluster(nodes) = &cluster.topology else {
        panic!("not cluster");
    };
    assert_eq!(nodes.nodes.len(), 3);

    let url_sentinel = from_env(&[
        ("REDIS_URL", "redis+sentinel://h:26379/m"),
        ("REDIS_SENTINEL_USERNAME", "watcher"),
    ])
    .unwrap();
    let Topology::Sentinel(topology) = &url_sentinel.topology else {
        panic!("not sentinel");
    };
    assert_eq!(topology.username.as_deref(), Some("watcher"));
}

#[test]
fn bad_topology_combinations_name_the_variables() {
    let cases: &[Case] = &[
        (
            &[("REDIS_SENTINELS", "h:26379")],
            &["REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"],
        ),
        (
            &[("REDIS_SENTINEL_MASTER", "m")],
            &["REDIS_SENTINEL_MASTER", "REDIS_SENTINELS"],
        ),
        (
            &[("REDIS_SENTINELS", "h"), ("REDIS_SENTINEL_MASTER", "m")],
            &["REDIS_SENTINELS", "has no port", "host:port"],
        ),
        (
            &[("REDIS_CLUSTER_NODES", "a:1"), ("REDIS_DB", "3")],
            &["REDIS_DB", "database 0"],
        ),
        (
            &[("REDIS_URL", "redis://h"), ("REDIS_CLUSTER_NODES", "a:1")],
            &["REDIS_CLUSTER_NODES", "REDIS_URL", "not both"],
        ),
        (
            &[
                ("REDIS_HOST", "h"),
                ("REDIS_SENTINELS", "a:1"),
                ("REDIS_SENTINEL_MASTER", "m"),
            ],
            &["REDIS_SENTINELS", "REDIS_HOST"],
        ),
        (
            &[
                ("REDIS_SENTINELS", "a:1"),
                ("REDIS_SENTINEL_MASTER", "m"),
                ("REDIS_CLUSTER_NODES", "b:2"),
            ],
            &["REDIS_CLUSTER_NODES", "REDIS_SENTINELS", "one topology"],
        ),
        (
            &[("REDIS_URL", "redis://h"), ("REDIS_SENTINEL_PASSWORD", "x")],
            &["REDIS_SENTINEL_PASSWORD", "no Sentinel"],
        ),
        (
            &[
                ("REDIS_URL", "redis+sentinel://h:1/m"),
                ("REDIS_SENTINEL_MASTER", "m"),
            ],
            &["REDIS_SENTINEL_MASTER", "REDIS_URL"],
        ),
        (
            &[("REDIS_URL", "redis+cluster://a:1"), ("REDIS_DB", "2")],
            &["REDIS_DB", "database 0"],
        ),
        (
            &[
                ("REDIS_SENTINELS", "a:1"),
                ("REDIS_SENTINEL_MASTER", "bad name"),
            ],
            &["master name", "without spaces"],
        ),
    ];
    for (vars, fragments) in cases {
        let error = error_of(vars);
        for fragment in *fragments {
            assert!(error.contains(fragment), "{vars:?}: {error}");
        }
    }
}
