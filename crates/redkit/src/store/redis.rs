//! [`Store`] on Redis, through the shared [`RedisConnection`].
//!
//! The same commands serve every topology; on Redis Cluster three things
//! differ, because a command or pipeline may only touch keys of one hash
//! slot (`CROSSSLOT`) and each master holds only its slots:
//!
//! - `MGET` and `UNLINK` of many keys are split per slot and reassembled in
//!   order by the `redis` crate's cluster routing (not atomic across slots,
//!   as on any Cluster client); `set_many` groups its pipeline per slot
//!   here, since pipelines are not split, and sends the groups at once;
//! - `scan` walks every master in turn (the cursor remembers which);
//! - a script's keys must share a slot (a hash tag): keys that do not are
//!   refused before sending, naming the script. `NOSCRIPT` (a node that
//!   never saw the script: restarted, promoted, flushed) is answered with
//!   `EVAL` of the body, which runs on whichever node the key lives on and
//!   caches the script there.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::{Cmd, Value};
use tokio::sync::mpsc;

use super::pubsub::Subscription;
use super::{
    Backend, CursorPosition, KeyTtl, Message, PubSubEvent, ScanCursor, ScanPage, Script, ScriptArg,
    ScriptValue, SetEntry, Store, escape_glob, set_then_publish_in_turn, ttl_millis,
};
use crate::config::TopologyKind;
use crate::connection::{Backoff, RedisConnection, key_slot};
use crate::error::{Error, Result};

/// The Redis implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct RedisStore {
    connection: RedisConnection,
    prefix: Arc<str>,
}

impl RedisStore {
    /// A store on `connection`, prefixing keys and channels with the
    /// connection's configured `key_prefix`.
    pub fn new(connection: RedisConnection) -> Self {
        let prefix = Arc::from(connection.config().key_prefix.as_str());
        RedisStore { connection, prefix }
    }

    /// The underlying connection.
    pub fn connection(&self) -> &RedisConnection {
        &self.connection
    }

    /// `key` as Redis names it: with the configured `key_prefix`.
    pub(crate) fn key<'a>(&self, key: &'a str) -> Cow<'a, str> {
        if self.prefix.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{}{key}", self.prefix))
        }
    }

    fn strip<'a>(&self, key: &'a str) -> &'a str {
        key.strip_prefix(&*self.prefix).unwrap_or(key)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd, key: &str) -> Result<T> {
        self.connection
            .query(cmd)
            .await
            .map_err(|error| wrong_type(error, key))
    }

    /// Subscribes and forwards to `sender`: at once when Redis is ready,
    /// otherwise in the background, retrying with backoff until it is.
    pub(crate) async fn subscribe_forwarding(
        &self,
        channels: &[&str],
        sender: mpsc::Sender<PubSubEvent>,
    ) -> tokio::task::AbortHandle {
        let channels = self.channel_keys(channels);
        let connected = if self.connection.state() == crate::connection::ConnectionState::Ready {
            subscribed(&self.connection, &channels).await.ok()
        } else {
            None
        };
        self.spawn_pump(channels, sender, connected)
    }

    /// Every entry in one pipeline (one round trip; on Cluster, the
    /// entries of one slot).
    async fn set_pipelined(&self, entries: &[SetEntry<'_>]) -> Result<()> {
        let mut pipeline = redis::pipe();
        for entry in entries {
            pipeline
                .add_command(self.set_command(entry.key, entry.value, entry.ttl)?)
                .ignore();
        }
        self.connection.query_pipeline::<()>(&pipeline).await
    }

    /// `name key`, with room for `more_args` arguments of `more_bytes` in
    /// all: the command's buffers are allocated once, not grown argument by
    /// argument (the hot single-key commands).
    fn keyed(&self, name: &str, key: &str, more_args: usize, more_bytes: usize) -> redis::Cmd {
        let bytes = name.len() + self.prefix.len() + key.len() + more_bytes;
        let mut cmd = redis::Cmd::with_capacity(2 + more_args, bytes);
        cmd.arg(name).arg(&*self.key(key));
        cmd
    }

    /// `SET key value [PX ttl]`: the one place a write's command is built.
    fn set_command(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<redis::Cmd> {
        // "PX" and at most 20 digits of milliseconds.
        let mut cmd = self.keyed("SET", key, 3, value.len() + 22);
        cmd.arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_millis(ttl)?);
        }
        Ok(cmd)
    }

    /// One SCAN step on `node` (`None`: the connection's one node); returns
    /// the keys (with prefix) and the next position, `Done` at the end.
    async fn scan_node(
        &self,
        node: Option<&str>,
        position: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(Vec<String>, CursorPosition)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(position)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count.max(1));
        let (next, keys): (u64, Vec<String>) = match node {
            None => self.query(&cmd, pattern).await?,
            Some(node) => self
                .connection
                .query_on(node, &cmd)
                .await
                .map_err(|error| wrong_type(error, pattern))?,
        };
        Ok((
            keys,
            if next == 0 {
                CursorPosition::Done
            } else {
                CursorPosition::Redis(next)
            },
        ))
    }

    /// One SCAN step of a Cluster scan: on master `node` of `masters`,
    /// moving to the next master when that one is done.
    async fn scan_masters(
        &self,
        masters: Arc<[String]>,
        node: usize,
        position: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(Vec<String>, CursorPosition)> {
        let Some(address) = masters.get(node) else {
            return Ok((Vec::new(), CursorPosition::Done));
        };
        let (keys, next) = self
            .scan_node(Some(address), position, pattern, count)
            .await?;
        let next = match next {
            CursorPosition::Redis(position) => CursorPosition::Cluster {
                masters,
                node,
                position,
            },
            _ if node + 1 < masters.len() => CursorPosition::Cluster {
                masters,
                node: node + 1,
                position: 0,
            },
            _ => CursorPosition::Done,
        };
        Ok((keys, next))
    }

    fn channel_keys(&self, channels: &[&str]) -> Vec<String> {
        channels.iter().map(|c| self.key(c).into_owned()).collect()
    }

    /// Starts the task that forwards (and resubscribes) for `channels`.
    fn spawn_pump(
        &self,
        channels: Vec<String>,
        sender: mpsc::Sender<PubSubEvent>,
        connected: Option<redis::aio::PubSub>,
    ) -> tokio::task::AbortHandle {
        let pump = Pump {
            store: self.clone(),
            channels,
            sender,
        };
        tokio::spawn(pump.run(connected)).abort_handle()
    }
}

impl Store for RedisStore {
    fn backend(&self) -> Backend {
        Backend::Redis
    }

    fn is_cluster(&self) -> bool {
        self.connection.topology_kind() == TopologyKind::Cluster
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let value: Option<Vec<u8>> = self.query(&self.keyed("GET", key, 0, 0), key).await?;
        Ok(value.map(Bytes::from))
    }

    async fn get_and_expire(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let mut cmd = self.keyed("GETEX", key, 2, 22);
        cmd.arg("PX").arg(ttl_millis(ttl)?);
        let value: Option<Vec<u8>> = self.query(&cmd, key).await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.query::<()>(&self.set_command(key, value, ttl)?, key)
            .await
    }

    async fn set_then_publish(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        channel: &str,
        payload: &[u8],
    ) -> Result<()> {
        if self.is_cluster() {
            // The PUBLISH would go to another node than the SET's: no order.
            return set_then_publish_in_turn(self, key, value, ttl, channel, payload).await;
        }
        let mut pipeline = redis::pipe();
        pipeline
            .add_command(self.set_command(key, value, ttl)?)
            .ignore();
        pipeline
            .cmd("PUBLISH")
            .arg(&*self.key(channel))
            .arg(payload)
            .ignore();
        self.connection
            .query_pipeline::<()>(&pipeline)
            .await
            .map_err(|error| wrong_type(error, key))
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        let mut cmd = self.set_command(key, value, ttl)?;
        cmd.arg("NX");
        let reply: Option<String> = self.query(&cmd, key).await?;
        Ok(reply.is_some())
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(&*self.key(key));
        }
        let values: Vec<Option<Vec<u8>>> = self.query(&cmd, keys[0]).await?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    async fn set_many(&self, entries: &[SetEntry<'_>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if !self.is_cluster() {
            return self.set_pipelined(entries).await;
        }
        let entries: Vec<SetEntry<'_>> = entries.to_vec();
        let groups = group_by_slot(&entries, |entry| slot_of(&self.key(entry.key)));
        let sends = groups.iter().map(|group| self.set_pipelined(group));
        futures_util::future::try_join_all(sends).await?;
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("UNLINK");
        for key in keys {
            cmd.arg(&*self.key(key));
        }
        self.query(&cmd, keys[0]).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let cmd = redis::cmd("PEXPIRE")
            .arg(&*self.key(key))
            .arg(ttl_millis(ttl)?)
            .to_owned();
        self.query(&cmd, key).await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let millis: i64 = self
            .query(redis::cmd("PTTL").arg(&*self.key(key)), key)
            .await?;
        Ok(match millis {
            -2 => KeyTtl::Missing,
            -1 => KeyTtl::Persistent,
            ms => KeyTtl::ExpiresIn(Duration::from_millis(ms.max(0).unsigned_abs())),
        })
    }

    async fn incr_by(&self, key: &str, delta: i64) -> Result<i64> {
        self.query(redis::cmd("INCRBY").arg(&*self.key(key)).arg(delta), key)
            .await
    }

    async fn set_add(&self, key: &str, members: &[&str]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("SADD").arg(&*self.key(key)).arg(members), key)
            .await
    }

    async fn set_remove(&self, key: &str, members: &[&str]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("SREM").arg(&*self.key(key)).arg(members), key)
            .await
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>> {
        let mut members: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(&*self.key(key)), key)
            .await?;
        members.sort();
        Ok(members)
    }

    async fn scan(&self, cursor: &ScanCursor, pattern: &str, count: usize) -> Result<ScanPage> {
        let pattern = format!("{}{pattern}", escape_glob(&self.prefix));
        let (keys, next) = match (&cursor.0, self.is_cluster()) {
            (CursorPosition::Done, _) => {
                return Ok(ScanPage {
                    keys: Vec::new(),
                    cursor: cursor.clone(),
                });
            }
            (CursorPosition::Start, false) => self.scan_node(None, 0, &pattern, count).await?,
            (CursorPosition::Redis(position), false) => {
                self.scan_node(None, *position, &pattern, count).await?
            }
            (CursorPosition::Start, true) => {
                let mut masters = self.connection.masters().await?;
                masters.sort();
                let masters: Arc<[String]> = masters.into();
                self.scan_masters(masters, 0, 0, &pattern, count).await?
            }
            (
                CursorPosition::Cluster {
                    masters,
                    node,
                    position,
                },
                true,
            ) => {
                self.scan_masters(masters.clone(), *node, *position, &pattern, count)
                    .await?
            }
            (CursorPosition::Embedded { .. }, _) => {
                return Err(Error::invalid_input(
                    "scan cursor",
                    "it belongs to a scan of the embedded store; start a new scan",
                ));
            }
            (CursorPosition::Redis(_) | CursorPosition::Cluster { .. }, _) => {
                return Err(Error::invalid_input(
                    "scan cursor",
                    "it belongs to a scan of another Redis topology; start a new scan",
                ));
            }
        };
        Ok(ScanPage {
            keys: keys.iter().map(|key| self.strip(key).to_owned()).collect(),
            cursor: ScanCursor(next),
        })
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64> {
        self.query(
            redis::cmd("PUBLISH").arg(&*self.key(channel)).arg(payload),
            channel,
        )
        .await
    }

    async fn subscribe(&self, channels: &[&str]) -> Result<Subscription> {
        let channels = self.channel_keys(channels);
        let pubsub = subscribed(&self.connection, &channels).await?;
        let (sender, receiver) = Subscription::channel();
        let pump = self.spawn_pump(channels, sender, Some(pubsub));
        Ok(Subscription::new(receiver, vec![pump]))
    }

    async fn run_script(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[ScriptArg],
    ) -> Result<ScriptValue> {
        let keys: Vec<Cow<'_, str>> = keys.iter().map(|key| self.key(key)).collect();
        if self.is_cluster() {
            check_one_slot(script, &keys)?;
        }
        let invocation = |command: &str, script_ref: &[u8]| {
            let mut cmd = redis::cmd(command);
            cmd.arg(script_ref).arg(keys.len());
            for key in &keys {
                cmd.arg(&**key);
            }
            for arg in args {
                cmd.arg(arg.to_bytes());
            }
            cmd
        };
        let evalsha = invocation("EVALSHA", script.sha1().as_bytes());
        let value = match self.connection.query::<Value>(&evalsha).await {
            // The node serving these keys does not have the script (it was
            // restarted, promoted or flushed): one EVAL runs it there and
            // caches it for the next EVALSHA.
            Err(error) if is_noscript(&error) => {
                self.connection
                    .query::<Value>(&invocation("EVAL", script.lua().as_bytes()))
                    .await
            }
            other => other,
        }
        .map_err(|error| script_error(script, error))?;
        Ok(ScriptValue::from_redis(value))
    }
}

/// Opens a pub/sub connection and subscribes to `channels`.
async fn subscribed(
    connection: &RedisConnection,
    channels: &[String],
) -> Result<redis::aio::PubSub> {
    let mut pubsub = connection.pubsub().await?;
    let timeout = connection.config().command_timeout;
    for channel in channels {
        match tokio::time::timeout(timeout, pubsub.subscribe(channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return Err(Error::Command {
                    command: "SUBSCRIBE".to_owned(),
                    source: Box::new(error),
                });
            }
            Err(_) => {
                return Err(Error::Timeout {
                    command: "SUBSCRIBE".to_owned(),
                    after: timeout,
                });
            }
        }
    }
    Ok(pubsub)
}

/// Forwards messages from a dedicated pub/sub connection, reconnecting and
/// resubscribing (with backoff) whenever the connection drops.
struct Pump {
    store: RedisStore,
    channels: Vec<String>,
    sender: mpsc::Sender<PubSubEvent>,
}

impl Pump {
    async fn run(self, mut connected: Option<redis::aio::PubSub>) {
        use futures_util::StreamExt;
        let backoff = Backoff::new(self.store.connection.config().retry.clone());
        let mut failures = 0u32;
        let mut first = connected.is_none();
        loop {
            let pubsub = match connected.take() {
                Some(pubsub) => pubsub,
                None => match subscribed(&self.store.connection, &self.channels).await {
                    Ok(pubsub) => {
                        failures = 0;
                        if !first && self.sender.send(PubSubEvent::Resubscribed).await.is_err() {
                            return;
                        }
                        pubsub
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        let delay = backoff.delay(failures);
                        tracing::debug!(error = %error, retry_in = ?delay, "redis pub/sub resubscribe failed");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => continue,
                            _ = self.sender.closed() => return,
                        }
                    }
                },
            };
            first = false;
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            let event = PubSubEvent::Message(Message {
                                channel: self.store.strip(message.get_channel_name()).to_owned(),
                                payload: Bytes::copy_from_slice(message.get_payload_bytes()),
                            });
                            // A full queue drops the message rather than stall.
                            if let Err(mpsc::error::TrySendError::Closed(_)) = self.sender.try_send(event) {
                                return;
                            }
                        }
                        None => break,
                    },
                    _ = self.sender.closed() => return,
                }
            }
            tracing::warn!("redis pub/sub connection lost; resubscribing");
        }
    }
}

fn slot_of(key: &str) -> u16 {
    key_slot(key.as_bytes())
}

/// `items` in groups of one hash slot each (by `slot`), in order of first
/// appearance, each group keeping the items' order.
fn group_by_slot<T: Clone>(items: &[T], slot: impl Fn(&T) -> u16) -> Vec<Vec<T>> {
    let mut groups: Vec<(u16, Vec<T>)> = Vec::new();
    let mut index_of_slot = std::collections::HashMap::new();
    for item in items {
        let slot = slot(item);
        let index = *index_of_slot.entry(slot).or_insert_with(|| {
            groups.push((slot, Vec::new()));
            groups.len() - 1
        });
        groups[index].1.push(item.clone());
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// On Cluster, a script may only touch keys of one slot: refuse others
/// before sending, naming the script and the fix.
fn check_one_slot(script: &Script, keys: &[Cow<'_, str>]) -> Result<()> {
    let mut slots = keys.iter().map(|key| slot_of(key));
    let Some(first) = slots.next() else {
        return Ok(());
    };
    if slots.all(|slot| slot == first) {
        return Ok(());
    }
    Err(Error::invalid_input(
        "script keys",
        format!(
            "script {} was given keys in different Redis Cluster hash slots; \
             expected keys sharing a hash tag, such as `{{user:42}}:a` and `{{user:42}}:b`",
            script.name()
        ),
    ))
}

fn redis_error(error: &Error) -> Option<&redis::RedisError> {
    match error {
        Error::Command { source, .. } => source.downcast_ref::<redis::RedisError>(),
        _ => None,
    }
}

fn is_noscript(error: &Error) -> bool {
    redis_error(error).is_some_and(|e| e.code() == Some("NOSCRIPT"))
}

/// Maps Redis' WRONGTYPE and "not an integer" replies to [`Error::WrongType`].
fn wrong_type(error: Error, key: &str) -> Error {
    let Some(redis_error) = redis_error(&error) else {
        return error;
    };
    let detail = redis_error.detail().unwrap_or_default();
    if redis_error.code() == Some("WRONGTYPE") {
        let expected = match &error {
            Error::Command { command, .. } if command.starts_with('S') && command != "SET" => "set",
            Error::Command { command, .. } if command == "INCRBY" => "integer",
            _ => "string",
        };
        Error::WrongType {
            key: key.to_owned(),
            expected,
        }
    } else if detail.contains("not an integer") || detail.contains("overflow") {
        Error::WrongType {
            key: key.to_owned(),
            expected: "integer",
        }
    } else {
        error
    }
}

/// A script's own failure becomes [`Error::Script`]; an outage or a
/// "cannot do it now" reply (OOM, LOADING…) keeps its redis error, so
/// callers can tell them apart ([`Error::is_refused_for_now`]).
fn script_error(script: &Script, error: Error) -> Error {
    match redis_error(&error) {
        Some(redis_error) if !error.is_unavailable() && !error.is_refused_for_now() => {
            Error::Script {
                script: script.name(),
                message: redis_error.to_string(),
            }
        }
        _ => error,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_one_slot_each_and_the_order_within() {
        let keys = ["{a}1", "b", "{a}2", "c", "{a}3", "b"];
        let groups = group_by_slot(&keys, |key| slot_of(key));
        assert_eq!(groups[0], ["{a}1", "{a}2", "{a}3"]);
        for group in &groups {
            assert!(group.iter().all(|key| slot_of(key) == slot_of(group[0])));
        }
        let regrouped: usize = groups.iter().map(Vec::len).sum();
        assert_eq!(regrouped, keys.len());
        assert!(group_by_slot(&[] as &[&str], |key| slot_of(key)).is_empty());
    }

    #[test]
    fn scripts_on_keys_of_several_slots_are_refused_by_name() {
        fn native(_: &mut dyn crate::store::ScriptContext, _: &[ScriptArg]) -> Result<ScriptValue> {
            Ok(ScriptValue::Nil)
        }
        let script = Script::new("two_keys", "return 1", native);
        let same: Vec<Cow<'_, str>> = vec!["p:{u}:s".into(), "p:{u}:i".into()];
        assert!(check_one_slot(&script, &same).is_ok());
        assert!(check_one_slot(&script, &[]).is_ok());
        let apart: Vec<Cow<'_, str>> = vec!["foo".into(), "bar".into()];
        let error = check_one_slot(&script, &apart).unwrap_err().to_string();
        assert!(
            error.contains("two_keys") && error.contains("hash tag"),
            "{error}"
        );
    }
}
