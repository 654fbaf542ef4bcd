//! A local Redis Sentinel topology of real processes: a master, a replica and
//! three sentinels watching them with a quorum of two.
//!
//! `down-after-milliseconds` is one second so a killed master is replaced in
//! a few seconds; the master's `repl-diskless-sync-delay` is zero so the
//! replica is in sync before a test kills anything. Restarting a killed
//! master brings it back as an empty master (no persistence), which is what
//! a client must never write to: the sentinels demote it once they see it.
//!
//! Tests share one topology per test binary and give each test its own key
//! prefix.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{RedisServer, free_port, redis_cli, wait_until};

/// The name the sentinels monitor the master under.
const MASTER_NAME: &str = "redkit";

/// How long the topology may take to settle before the test fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A master, its replica and three sentinels; all stopped on drop.
#[derive(Debug)]
pub struct RedisSentinel {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

impl RedisSentinel {
    /// Starts the topology and waits until the sentinels agree on the master
    /// and know the replica and each other, and the replica is in sync.
    ///
    /// # Panics
    /// When redis-server, redis-sentinel or redis-cli is missing, or the
    /// topology does not settle within 30 s.
    pub fn start() -> Self {
        let master = RedisServer::builder()
            .arg("repl-diskless-sync-delay", "0")
            .start();
        let replica = RedisServer::builder()
            .arg("repl-diskless-sync-delay", "0")
            .start();
        let master_port = master.port().to_string();
        let reply = replica.cli(&["REPLICAOF", "127.0.0.1", &master_port]);
        assert_eq!(reply.trim(), "OK", "REPLICAOF failed: {reply}");
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(master.port()))
            .collect();
        let topology = RedisSentinel {
            servers: vec![master, replica],
            sentinels,
        };
        topology.wait_ready();
        topology
    }

    /// The monitored master's name.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// `127.0.0.1:port` of every sentinel, comma-separated (for `REDIS_SENTINELS`).
    pub fn sentinel_addresses(&self) -> String {
        self.sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis+sentinel://127.0.0.1:p1,…/redkit`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://{}/{MASTER_NAME}",
            self.sentinel_addresses()
        )
    }

    /// The data servers: index 0 started as master, index 1 as its replica.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Mutable access to a data server, to kill, pause or restart it.
    pub fn server_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.servers[index]
    }

    /// The index of the server the sentinels name as master now.
    ///
    /// # Panics
    /// When no sentinel answers, or it names an address that is not one of the servers.
    pub fn master(&self) -> usize {
        let port = self
            .master_port_by_sentinels()
            .unwrap_or_else(|| panic!("no sentinel named a master for {MASTER_NAME}"));
        self.servers
            .iter()
            .position(|server| server.port() == port)
            .unwrap_or_else(|| panic!("the sentinels name an unknown master port {port}"))
    }

    /// Waits until the sentinels name a master other than `old` and that
    /// server answers as a master; returns its index.
    ///
    /// # Panics
    /// When no failover completes within 30 s.
    pub fn wait_failover_from(&self, old: usize) -> usize {
        let mut promoted = old;
        wait_until(SETTLE_TIMEOUT, "a sentinel failover", || {
            let Some(port) = self.master_port_by_sentinels() else {
                return false;
            };
            match self.servers.iter().position(|server| server.port() == port) {
                Some(index) if index != old && role(&self.servers[index]) == "master" => {
                    promoted = index;
                    true
                }
                _ => false,
            }
        });
        promoted
    }

    /// Waits until every sentinel names the same running master, knows one
    /// replica and two other sentinels, and running replicas are in sync.
    ///
    /// # Panics
    /// When that does not happen within 30 s.
    pub fn wait_ready(&self) {
        wait_until(SETTLE_TIMEOUT, "sentinels agreeing on the topology", || {
            let masters: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|sentinel| sentinel.master_port())
                .collect();
            let agreed = masters.first().copied().flatten().is_some()
                && masters.windows(2).all(|pair| pair[0] == pair[1]);
            agreed
                && self.sentinels.iter().all(|sentinel| {
                    sentinel.count(&["SENTINEL", "REPLICAS", MASTER_NAME]) >= 1
                        && sentinel.count(&["SENTINEL", "SENTINELS", MASTER_NAME]) >= 2
                })
        });
        wait_until(SETTLE_TIMEOUT, "the replica in sync", || {
            let running = || self.servers.iter().filter(|server| server.is_running());
            running().all(|server| crate::replica_in_sync(server, running()))
        });
    }

    fn master_port_by_sentinels(&self) -> Option<u16> {
        self.sentinels.iter().find_map(SentinelProcess::master_port)
    }
}

fn role(server: &RedisServer) -> String {
    server
        .cli(&["ROLE"])
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// One `redis-sentinel` process with its own writable config file.
#[derive(Debug)]
struct SentinelProcess {
    port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl SentinelProcess {
    fn start(master_port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&crate::process_marker("sentinel"))
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temp dir for redis-sentinel: {err}"));
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        let log = dir.path().join("sentinel.log");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\nset-proc-title no\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 3000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.path().display(),
            log = log.display(),
        );
        std::fs::write(&config, text)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", config.display()));
        crate::reap_when_this_process_ends();
        let child = Command::new(sentinel_binary())
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start redis-sentinel: {err}"));
        let sentinel = SentinelProcess {
            port,
            _dir: dir,
            child,
        };
        wait_until(Duration::from_secs(15), "redis-sentinel to answer", || {
            redis_cli(port, None, &["PING"]).trim() == "PONG"
        });
        sentinel
    }

    fn master_port(&self) -> Option<u16> {
        let reply = redis_cli(
            self.port,
            None,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        reply.lines().nth(1)?.trim().parse().ok()
    }

    /// How many entries a `SENTINEL REPLICAS|SENTINELS` listing has.
    fn count(&self, args: &[&str]) -> usize {
        redis_cli(self.port, None, args)
            .lines()
            .filter(|line| line.trim() == "name")
            .count()
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of `redis-sentinel`, or a panic that says how to install it.
fn sentinel_binary() -> PathBuf {
    ["/usr/bin/redis-sentinel", "/usr/local/bin/redis-sentinel"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "redis-sentinel is not installed, and redkit's Sentinel tests need a real one. \
                 Install it with `sudo apt-get install -y redis-sentinel` \
                 (or run ./scripts/test.sh, which installs it)."
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_promote_the_replica_when_the_master_is_killed() {
        let mut topology = RedisSentinel::start();
        let master = topology.master();
        assert_eq!(master, 0);
        assert_eq!(
            topology.servers()[0].cli(&["SET", "testkit:s", "v"]).trim(),
            "OK"
        );
        topology.wait_ready();
        topology.server_mut(master).kill();
        let promoted = topology.wait_failover_from(master);
        assert_eq!(promoted, 1);
        assert_eq!(topology.servers()[1].cli(&["GET", "testkit:s"]).trim(), "v");
        // The old master comes back empty, as a master, until the sentinels
        // demote it. A sentinel does so only after the node has reported
        // its role for a while (8 s in Redis 7), and on a loaded CI machine
        // this passed 30 s twice in seven runs: the failover above stays
        // bounded at 30 s, this convergence gets 60 s.
        topology.server_mut(master).start();
        wait_until(Duration::from_secs(60), "the old master demoted", || {
            role(&topology.servers()[master]) == "slave"
        });
    }
}
