//! The shared connection against real redis-server processes: lazy start,
//! healing, SIGKILL, a hung server, authentication and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redkit::Error;
use redkit::connection::{ConnectionState, RedisConnection};
use redkit_testkit::RedisServer;

use crate::support::{connected, fast_redis_config, wait_for_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_redis_is_down_and_heals_when_it_starts() {
    let mut server = RedisServer::builder().prepare();
    let connection = RedisConnection::connect(fast_redis_config(&server.url())).unwrap();
    // Lazy: the handle exists, commands fail fast, nothing hangs.
    let started = Instant::now();
    let error = connection.ping().await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(50));
    // After max_attempts (5) it is degraded, and keeps probing.
    wait_for_state(
        &connection,
        ConnectionState::Degraded,
        Duration::from_secs(5),
    )
    .await;
    server.start();
    wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(3)).await;
    connection.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_sigkill_during_a_stream_of_commands() {
    let mut server = RedisServer::new();
    let connection = connected(&server).await;
    let timeout = connection.config().command_timeout;
    let mut states = connection.state_changes();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let recorder = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(state) = states.next().await {
                seen.lock().push(state);
            }
        })
    };
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (connection, ok, failed) = (connection.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                let mut i = 0u64;
                while Instant::now() < stop {
                    i += 1;
                    let started = Instant::now();
                    let result: redkit::Result<()> = connection
                        .query(redis::cmd("SET").arg(format!("k{worker}:{i}")).arg(i))
                        .await;
                    slowest = slowest.max(started.elapsed());
                    match result {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    if result_is_pause_worthy(&failed) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                slowest
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.start();
    let mut slowest = Duration::ZERO;
    for worker in workers {
        slowest = slowest.max(worker.await.expect("no worker panicked"));
    }
    wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(3)).await;
    connection.ping().await.unwrap();
    assert!(
        slowest <= timeout + Duration::from_millis(200),
        "a call took {slowest:?}, more than the {timeout:?} command timeout"
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
    assert!(
        failed.load(Ordering::Relaxed) > 0,
        "the kill went unnoticed"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    recorder.abort();
    let seen = seen.lock().clone();
    assert!(
        seen.iter()
            .any(|s| matches!(s, ConnectionState::Reconnecting | ConnectionState::Degraded)),
        "states seen: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&ConnectionState::Ready),
        "states seen: {seen:?}"
    );
}

fn result_is_pause_worthy(failed: &AtomicUsize) -> bool {
    // While Redis is down every call fails in microseconds; yield a little so
    // the loop does not spin the CPU the restarted server needs.
    failed.load(Ordering::Relaxed) > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_never_blocks_a_call_past_the_command_timeout() {
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let timeout = connection.config().command_timeout;
    server.pause();
    let started = Instant::now();
    let error = connection.ping().await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited <= timeout + Duration::from_millis(200),
        "waited {waited:?}"
    );
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    // The health check notices and stops sending to the hung server.
    wait_for_state(
        &connection,
        ConnectionState::Reconnecting,
        Duration::from_secs(3),
    )
    .await;
    server.resume();
    wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(5)).await;
    connection.ping().await.unwrap();
}

#[tokio::test]
async fn the_right_password_connects() {
    let server = RedisServer::builder().requirepass("s3cret pass").start();
    let url = format!("redis://:{}@127.0.0.1:{}", "s3cret%20pass", server.port());
    let connection = RedisConnection::connect(fast_redis_config(&url)).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    connection.ping().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_not_a_hang() {
    let server = RedisServer::builder().requirepass("right").start();
    let url = format!("redis://:wrong-password@127.0.0.1:{}", server.port());
    let connection = RedisConnection::connect(fast_redis_config(&url)).unwrap();
    let error = connection.dedicated().await.unwrap_err();
    assert!(matches!(error, Error::Authentication { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("authentication failed"), "{message}");
    assert!(
        !format!("{error:?}").contains("wrong-password"),
        "{error:?}"
    );
    assert!(!format!("{:?}", connection.config()).contains("wrong-password"));
    // The shared handle does not hang either: it reports unavailability,
    // and waiting for it to be ready ends as soon as it is rejected.
    let started = Instant::now();
    assert!(connection.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_ne!(connection.state(), ConnectionState::Ready);
    let started = Instant::now();
    let waited = connection.wait_ready(Duration::from_secs(30)).await;
    assert!(
        matches!(
            waited,
            Err(Error::Unavailable {
                state: ConnectionState::Rejected
            })
        ),
        "{waited:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        connection
            .rejection()
            .is_some_and(|reason| !reason.contains("wrong-password"))
    );
}

#[tokio::test]
async fn acl_users_authenticate_with_username_and_password() {
    let server = RedisServer::new();
    let admin = connected(&server).await;
    let _: String = admin
        .query(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("app")
                .arg("on")
                .arg(">app-pass")
                .arg("~*")
                .arg("+@all"),
        )
        .await
        .unwrap();
    let url = format!("redis://app:app-pass@127.0.0.1:{}", server.port());
    let connection = RedisConnection::connect(fast_redis_config(&url)).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    let who: String = connection
        .query(&redis::cmd("ACL").arg("WHOAMI").to_owned())
        .await
        .unwrap();
    assert_eq!(who, "app");
}

#[tokio::test]
async fn selects_the_configured_database() {
    let server = RedisServer::new();
    let connection =
        RedisConnection::connect(fast_redis_config(&format!("{}/3", server.url()))).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    let _: () = connection
        .query(redis::cmd("SET").arg("k").arg("v"))
        .await
        .unwrap();
    let db0 = connected(&server).await;
    let in_db0: Option<String> = db0.query(redis::cmd("GET").arg("k")).await.unwrap();
    assert_eq!(in_db0, None);
    let size: u64 = connection.query(&redis::cmd("DBSIZE")).await.unwrap();
    assert_eq!(size, 1);
}

#[tokio::test]
async fn pool_of_connections_spreads_commands() {
    let server = RedisServer::new();
    let mut config = fast_redis_config(&server.url());
    config.pool_size = 3;
    let connection = RedisConnection::connect(config).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    // Each command picks a pooled connection at random: 300 commands
    // leave one of three unused with a probability of about 1e-52.
    let mut ids = std::collections::HashSet::new();
    for _ in 0..300 {
        let id: i64 = connection
            .query(&redis::cmd("CLIENT").arg("ID").to_owned())
            .await
            .unwrap();
        ids.insert(id);
        if ids.len() == 3 {
            break;
        }
    }
    assert_eq!(
        ids.len(),
        3,
        "commands went to {} connections of 3",
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_commands_finish_then_closes() {
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let blocked = {
        let connection = connection.clone();
        tokio::spawn(async move {
            // A 300 ms server-side wait, shorter than the command timeout.
            connection
                .query::<Option<(String, String)>>(redis::cmd("BLPOP").arg("nothing").arg(0.3))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    connection.shutdown().await;
    assert_eq!(blocked.await.unwrap().unwrap(), None);
    assert_eq!(connection.state(), ConnectionState::Closed);
    assert!(matches!(
        connection.ping().await.unwrap_err(),
        Error::Closed
    ));
    // The server sees no redkit client any more (it notices a closed
    // socket on its next event-loop turn: poll briefly).
    let observer = connected(&server).await;
    let mut clients = String::new();
    for _ in 0..100 {
        clients = observer
            .query(&redis::cmd("CLIENT").arg("LIST").to_owned())
            .await
            .unwrap();
        if clients.lines().count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(clients.lines().count(), 1, "{clients}");
}

#[tokio::test]
async fn dedicated_connections_do_not_block_the_shared_one() {
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let mut dedicated = connection.dedicated().await.unwrap();
    let blocking = tokio::spawn(async move {
        redis::cmd("BLPOP")
            .arg("queue")
            .arg(0.4)
            .query_async::<Option<(String, String)>>(&mut dedicated)
            .await
    });
    let started = Instant::now();
    connection.ping().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    let _ = blocking.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_retry_settings_recover_within_a_second_of_redis_returning() {
    let mut server = RedisServer::new();
    // Default retry policy; short timeouts only so that the test is quick.
    let config = redkit::config::RedisConfig::builder()
        .url(&server.url())
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .command_timeout(Duration::from_millis(500))
        .health_check_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let connection = RedisConnection::connect(config).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    server.kill();
    // Long enough to exhaust the retries: degraded, probing every second.
    wait_for_state(
        &connection,
        ConnectionState::Degraded,
        Duration::from_secs(15),
    )
    .await;
    server.start();
    let back = Instant::now();
    wait_for_state(&connection, ConnectionState::Ready, Duration::from_secs(3)).await;
    let took = back.elapsed();
    assert!(
        took <= Duration::from_millis(1300),
        "recovered {took:?} after redis returned"
    );
    connection.ping().await.unwrap();
}

#[tokio::test]
async fn a_reply_of_an_unexpected_type_is_an_error_not_a_broken_connection() {
    let server = RedisServer::new();
    let connection = connected(&server).await;
    let _: () = connection
        .query(redis::cmd("SET").arg("typed").arg("not a number"))
        .await
        .unwrap();
    let error = connection
        .query::<u64>(redis::cmd("GET").arg("typed"))
        .await
        .unwrap_err();
    assert!(!error.is_unavailable(), "{error:?}");
    assert_eq!(connection.state(), ConnectionState::Ready);
    let value: String = connection
        .query(redis::cmd("GET").arg("typed"))
        .await
        .unwrap();
    assert_eq!(value, "not a number");
}
