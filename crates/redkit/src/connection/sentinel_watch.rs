//! Following a Sentinel failover as soon as it is announced.
//!
//! Sentinels publish `+switch-master <name> <old-ip> <old-port> <new-ip>
//! <new-port>` when they promote a replica. The supervisor waits on
//! [`switch_announced`] during its watch phase: a switch of our master ends
//! the phase, and the next connect phase asks the sentinels for the master
//! again. Without it, a failover would only be noticed when the old master's
//! connection fails or it answers `ROLE` as a replica — and an old master
//! that restarts empty before Sentinel demotes it would still be written to.

use std::time::Duration;

use super::shared::Shared;
use crate::config::Topology;

/// How long to wait before trying the sentinels again when none answers.
const RETRY: Duration = Duration::from_secs(1);

/// Resolves with the new master's `host:port` when a sentinel announces a
/// switch of the configured master; never resolves on other topologies.
pub(super) async fn switch_announced(shared: &Shared) -> String {
    let Topology::Sentinel(sentinel) = &shared.config().topology else {
        return std::future::pending().await;
    };
    loop {
        match shared.connector().sentinel_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(error) = pubsub.subscribe("+switch-master").await {
                    tracing::debug!(error = %error, "sentinel subscription failed; retrying");
                } else {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        if let Some(new_master) = switched_to(&text, &sentinel.master_name) {
                            return new_master;
                        }
                    }
                    tracing::debug!("sentinel subscription ended; subscribing again");
                }
            }
            Err(error) => {
                tracing::debug!(error = %error, "no sentinel answered; retrying");
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The new `host:port` in a `+switch-master` payload for `master_name`.
fn switched_to(payload: &str, master_name: &str) -> Option<String> {
    let fields: Vec<&str> = payload.split_whitespace().collect();
    match fields.as_slice() {
        [name, _, _, host, port] if *name == master_name => Some(format!("{host}:{port}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::switched_to;

    #[test]
    fn only_our_master_counts() {
        let payload = "mymaster 127.0.0.1 6379 127.0.0.1 6380";
        assert_eq!(
            switched_to(payload, "mymaster").as_deref(),
            Some("127.0.0.1:6380")
        );
        assert_eq!(switched_to(payload, "other"), None);
        assert_eq!(switched_to("garbage", "mymaster"), None);
    }
}
