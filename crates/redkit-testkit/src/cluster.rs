//! A local Redis Cluster of real `redis-server` processes.
//!
//! Three masters with one replica each, on loopback ports whose cluster bus
//! port (+10000) is free too, created with `redis-cli --cluster create`. The
//! fixture returns only when the cluster can be used for failover tests:
//! `cluster_state:ok` on every node, every slot covered, and every replica's
//! link up and in sync — with 7.0's default `repl-diskless-sync-delay 5`, a
//! master killed before its replica synced never fails over, so the delay is
//! zero here, and a short `cluster-node-timeout` makes failovers take about a
//! second.
//!
//! Tests share one cluster per test binary (it takes a few seconds to form)
//! and give each test its own key prefix.

use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use crate::{RedisServer, info_field, wait_until};

/// How long forming or healing the cluster may take before the test fails.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Node timeout: how long a master may be silent before its replica takes over.
const NODE_TIMEOUT_MS: u64 = 1000;

/// A running Redis Cluster; every process is stopped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters and three replicas and waits until the cluster is
    /// ready for failover tests.
    ///
    /// # Panics
    /// When redis-server or redis-cli is missing, or the cluster does not form
    /// within 30 s.
    pub fn start() -> Self {
        Self::start_with(3, 1)
    }

    /// Starts `masters` masters with `replicas` replicas each.
    ///
    /// # Panics
    /// As [`RedisCluster::start`].
    pub fn start_with(masters: usize, replicas: usize) -> Self {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters"
        );
        let count = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::builder()
                    .port(port_with_free_bus_port())
                    .arg("cluster-enabled", "yes")
                    .arg("cluster-config-file", "nodes.conf")
                    .arg("cluster-node-timeout", NODE_TIMEOUT_MS.to_string())
                    .arg("cluster-replica-validity-factor", "0")
                    .arg("repl-diskless-sync-delay", "0")
                    .arg("appendonly", "no")
                    .start()
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        let replicas = replicas.to_string();
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        let created = nodes[0].cli(&args);
        assert!(
            created.contains("[OK] All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{created}"
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ready();
        cluster
    }

    /// The one cluster of this test binary, started on first use: tests
    /// share it (forming one takes seconds) and give each test its own key
    /// prefix. Never kill its nodes — a failover test starts its own.
    ///
    /// A static is never dropped, so a watchdog process stops the nodes
    /// once the test binary has exited.
    ///
    /// # Panics
    /// As [`RedisCluster::start`].
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            // Never dropped: the servers' reaper stops it after the run.
            RedisCluster::start()
        })
    }

    /// Every node, masters and replicas, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Mutable access to a node, to kill, pause or restart it.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// `127.0.0.1:port` of every node, comma-separated (for `REDIS_CLUSTER_NODES`).
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…`.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.seeds())
    }

    /// Indexes of the running nodes that are masters now.
    pub fn masters(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.is_running() && role(node) == "master")
            .map(|(index, _)| index)
            .collect()
    }

    /// The index of the node serving `key`'s slot as master now.
    ///
    /// # Panics
    /// When no running master answers for the slot.
    pub fn master_of(&self, key: &str) -> usize {
        let slot = self
            .nodes
            .iter()
            .find(|node| node.is_running())
            .map(|node| node.cli(&["CLUSTER", "KEYSLOT", key]))
            .and_then(|reply| reply.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no node told the slot of {key:?}"));
        self.masters()
            .into_iter()
            .find(|&index| serves_slot(&self.nodes[index], slot))
            .unwrap_or_else(|| panic!("no running master serves slot {slot}"))
    }

    /// Waits until every running node reports `cluster_state:ok` and every
    /// running replica's link to its master is up and caught up.
    ///
    /// # Panics
    /// When that does not happen within 30 s.
    pub fn wait_ready(&self) {
        wait_until(FORM_TIMEOUT, "cluster_state:ok on every node", || {
            self.running().all(|node| {
                info_field(&node.cli(&["CLUSTER", "INFO"]), "cluster_state") == Some("ok")
            })
        });
        wait_until(FORM_TIMEOUT, "replicas linked and in sync", || {
            self.running()
                .all(|node| crate::replica_in_sync(node, self.running()))
        });
    }

    fn running(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|node| node.is_running())
    }
}

fn role(node: &RedisServer) -> String {
    node.cli(&["ROLE"])
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn serves_slot(node: &RedisServer, slot: u16) -> bool {
    node.cli(&["CLUSTER", "NODES"])
        .lines()
        .find(|line| line.contains("myself"))
        .is_some_and(|line| owns_slot(line, slot))
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges.
fn owns_slot(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| {
        let mut bounds = range.splitn(2, '-');
        let start = bounds.next().and_then(|s| s.parse::<u16>().ok());
        let end = bounds.next().and_then(|s| s.parse::<u16>().ok()).or(start);
        matches!((start, end), (Some(start), Some(end)) if (start..=end).contains(&slot))
    })
}

/// A free port whose cluster bus port (+10000) is free as well.
fn port_with_free_bus_port() -> u16 {
    loop {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = listener.local_addr().map(|addr| addr.port()) else {
            continue;
        };
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owns_slot_reads_ranges_and_single_slots() {
        let line = "id 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 6000 7000-7001";
        assert!(owns_slot(line, 0));
        assert!(owns_slot(line, 5460));
        assert!(!owns_slot(line, 5461));
        assert!(owns_slot(line, 6000));
        assert!(owns_slot(line, 7001));
        assert!(!owns_slot(line, 7002));
    }

    #[test]
    fn a_cluster_forms_and_a_replica_takes_over_a_killed_master() {
        let mut cluster = RedisCluster::start();
        assert_eq!(cluster.masters().len(), 3);
        let key = "testkit:failover";
        let master = cluster.master_of(key);
        let set = cluster.nodes()[master].cli(&["SET", key, "v"]);
        assert_eq!(set.trim(), "OK");
        cluster.wait_ready();
        cluster.node_mut(master).kill();
        wait_until(Duration::from_secs(20), "a replica promoted", || {
            cluster.masters().len() == 3
                && cluster.running().all(|node| {
                    info_field(&node.cli(&["CLUSTER", "INFO"]), "cluster_state") == Some("ok")
                })
        });
        let promoted = cluster.master_of(key);
        assert_ne!(promoted, master);
        assert_eq!(cluster.nodes()[promoted].cli(&["GET", key]).trim(), "v");
    }
}
