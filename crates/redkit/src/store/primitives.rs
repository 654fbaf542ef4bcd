//! The [`Store`] trait and the types of its signatures: what every store
//! implements and every module above builds on.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{KeyTtl, Replay, Script, ScriptArg, ScriptValue, Subscription};
use crate::error::Result;

/// Which store serves the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Redis only.
    Redis,
    /// The embedded in-memory store only.
    Embedded,
    /// Redis, with the embedded store while Redis is unavailable.
    Fallback,
}

impl Backend {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Embedded => "embedded",
            Backend::Fallback => "fallback",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of [`Store::set_many`].
#[derive(Debug, Clone, Copy)]
pub struct SetEntry<'a> {
    /// The key.
    pub key: &'a str,
    /// The value.
    pub value: &'a [u8],
    /// Time to live; `None` keeps the key until deleted.
    pub ttl: Option<Duration>,
}

/// Where a [`Store::scan`] continues; start with [`ScanCursor::START`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanCursor(pub(crate) CursorPosition);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum CursorPosition {
    #[default]
    Start,
    Redis(u64),
    /// A Cluster scan: `position` on master `node` of `masters` (the
    /// masters when the scan started, sorted).
    Cluster {
        masters: std::sync::Arc<[String]>,
        node: usize,
        position: u64,
    },
    Embedded {
        shard: usize,
        after: Option<String>,
    },
    Done,
}

impl ScanCursor {
    /// The beginning of a scan.
    pub const START: ScanCursor = ScanCursor(CursorPosition::Start);

    /// Whether the scan is complete.
    pub fn is_done(&self) -> bool {
        self.0 == CursorPosition::Done
    }
}

/// One step of a [`Store::scan`].
#[derive(Debug, Clone)]
pub struct ScanPage {
    /// Keys matching the pattern found in this step (possibly none).
    pub keys: Vec<String>,
    /// Where to continue; [`ScanCursor::is_done`] when finished.
    pub cursor: ScanCursor,
}

/// The primitives redkit's modules need, implemented by Redis and by the
/// embedded store with the same behaviour.
///
/// Keys and channels are given without the configured key prefix; stores add
/// it. TTLs have millisecond precision and must be greater than zero.
pub trait Store: Clone + Send + Sync + 'static {
    /// Which backend this store uses right now.
    fn backend(&self) -> Backend;

    /// Whether the store is a Redis Cluster, where the keys of one call
    /// (a multi-key command, a script) must share a hash slot.
    fn is_cluster(&self) -> bool {
        false
    }

    /// The value of `key`, or `None`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// The value of `key`, setting its TTL to `ttl` in the same step when it
    /// exists (`GETEX … PX`; Redis 6.2+): a read that extends a lifetime.
    fn get_and_expire(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Whether calls are being served by a stand-in for the configured
    /// backend (the embedded store while Redis is down, in fallback mode).
    fn is_degraded(&self) -> bool {
        false
    }

    /// Records how to re-apply a change just made that recovery must not
    /// undo (an invalidation, a session destroy, a penalty), under `id`
    /// (recording the same id again replaces it). Only a fallback
    /// [`AnyStore`](super::AnyStore) serving from the embedded store keeps
    /// it, to run on Redis before Redis serves again; other stores have
    /// nothing to do. Fails with [`Error::JournalFull`](crate::Error::JournalFull)
    /// when the journal is full (see [`journal`](super::journal)).
    fn record_for_recovery(&self, id: String, replay: Replay) -> Result<()> {
        let _ = (id, replay);
        Ok(())
    }

    /// Like [`Store::record_for_recovery`], for the coarse replay a module
    /// falls back to when the journal refused a change.
    fn record_fail_safe_for_recovery(&self, id: String, replay: Replay) -> Result<()> {
        let _ = (id, replay);
        Ok(())
    }

    /// Sets `key`, replacing any value and TTL.
    fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets `key` (as [`set`](Store::set)), then publishes `payload` on
    /// `channel` — on one connection in one round trip where the backend
    /// allows it (a `SET` and `PUBLISH` pipeline on standalone Redis and
    /// Sentinel; commands on one connection run in order, so a subscriber
    /// never hears of the value before it is stored). On Cluster, and by
    /// default, the `PUBLISH` waits for the `SET`'s reply. An error means
    /// the value may or may not be stored and the message may or may not
    /// have gone out; both are safe to send again.
    fn set_then_publish(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        channel: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<()>> + Send {
        set_then_publish_in_turn(self, key, value, ttl, channel, payload)
    }

    /// Sets `key` only when it does not exist (`SET NX`); true when set.
    fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Values of `keys`, in order (`MGET`).
    fn get_many(&self, keys: &[&str]) -> impl Future<Output = Result<Vec<Option<Bytes>>>> + Send;

    /// Sets every entry in one round trip (pipelined `SET … PX`).
    fn set_many(&self, entries: &[SetEntry<'_>]) -> impl Future<Output = Result<()>> + Send;

    /// Deletes `keys` (`UNLINK`); returns how many existed.
    fn delete(&self, keys: &[&str]) -> impl Future<Output = Result<u64>> + Send;

    /// Sets the TTL of an existing key; false when the key does not exist.
    fn expire(&self, key: &str, ttl: Duration) -> impl Future<Output = Result<bool>> + Send;

    /// The remaining life of `key`.
    fn ttl(&self, key: &str) -> impl Future<Output = Result<KeyTtl>> + Send;

    /// Adds `delta` to the integer at `key` (0 when missing) and returns the
    /// result; keeps the key's TTL (`INCRBY`).
    fn incr_by(&self, key: &str, delta: i64) -> impl Future<Output = Result<i64>> + Send;

    /// Adds members to the set at `key`; returns how many were new (`SADD`).
    fn set_add(&self, key: &str, members: &[&str]) -> impl Future<Output = Result<u64>> + Send;

    /// Removes members; returns how many were there (`SREM`). An emptied set
    /// is deleted.
    fn set_remove(&self, key: &str, members: &[&str]) -> impl Future<Output = Result<u64>> + Send;

    /// Every member of the set at `key` (empty when missing), sorted.
    fn set_members(&self, key: &str) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// One step of an incremental scan over keys matching the glob `pattern`
    /// (Redis `MATCH` syntax; use [`escape_glob`](super::escape_glob) for literal parts), looking
    /// at about `count` keys. Keys present for the whole scan are returned at
    /// least once; keys added or removed meanwhile may or may not be.
    fn scan(
        &self,
        cursor: &ScanCursor,
        pattern: &str,
        count: usize,
    ) -> impl Future<Output = Result<ScanPage>> + Send;

    /// Publishes `payload` on `channel`; returns how many subscribers got it.
    ///
    /// On Redis Cluster the message reaches subscribers on every node, but
    /// the count is only of those connected to the node that ran `PUBLISH`
    /// (Redis' own rule), so it may be 0 while others receive it.
    fn publish(&self, channel: &str, payload: &[u8]) -> impl Future<Output = Result<u64>> + Send;

    /// Subscribes to `channels`; the subscription is active when this returns.
    fn subscribe(&self, channels: &[&str]) -> impl Future<Output = Result<Subscription>> + Send;

    /// Runs `script` atomically on `keys` with `args`: `EVALSHA` (loading the
    /// script on `NOSCRIPT`) on Redis, the script's native twin in the
    /// embedded store.
    fn run_script(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[ScriptArg],
    ) -> impl Future<Output = Result<ScriptValue>> + Send;
}

/// Deletes every key matching `pattern`, one SCAN page (of `page` keys) at
/// a time, so memory stays bounded whatever the keyspace; returns how many
/// were deleted. On Cluster the scan visits every master.
pub async fn delete_matching<S: Store>(store: &S, pattern: &str, page: usize) -> Result<u64> {
    let mut cursor = ScanCursor::START;
    let mut deleted = 0;
    loop {
        let scanned = store.scan(&cursor, pattern, page).await?;
        if !scanned.keys.is_empty() {
            let keys: Vec<&str> = scanned.keys.iter().map(String::as_str).collect();
            deleted += store.delete(&keys).await?;
        }
        if scanned.cursor.is_done() {
            return Ok(deleted);
        }
        cursor = scanned.cursor;
    }
}

/// Every key matching `pattern`, by scanning to the end. For tests and small
/// keyspaces; large ones should process [`Store::scan`] pages as they come.
pub async fn scan_all<S: Store>(store: &S, pattern: &str, count: usize) -> Result<Vec<String>> {
    let mut cursor = ScanCursor::START;
    let mut keys = Vec::new();
    loop {
        let page = store.scan(&cursor, pattern, count).await?;
        keys.extend(page.keys);
        if page.cursor.is_done() {
            keys.sort();
            keys.dedup();
            return Ok(keys);
        }
        cursor = page.cursor;
    }
}

/// `set_then_publish` for a store that cannot pipeline the two: the
/// `PUBLISH` is sent once the `SET` is acknowledged.
pub(crate) async fn set_then_publish_in_turn<S: Store>(
    store: &S,
    key: &str,
    value: &[u8],
    ttl: Option<Duration>,
    channel: &str,
    payload: &[u8],
) -> Result<()> {
    store.set(key, value, ttl).await?;
    store.publish(channel, payload).await.map(drop)
}
