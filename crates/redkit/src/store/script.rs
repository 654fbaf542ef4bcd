//! Server-side scripts with a native twin for the embedded store.
//!
//! Rate limiting and locks need read-modify-write steps that are atomic and
//! take one round trip. On Redis that is a Lua script run with `EVALSHA`. The
//! embedded store cannot run Lua, so every [`Script`] carries a native Rust
//! function with the same semantics, run while the script's keys are locked.
//! The conformance suite checks that both give the same results.
//!
//! As in Redis, a script may only touch the keys it declares (`KEYS[i]`,
//! here `ScriptContext` key index `i - 1`).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::{KeyTtl, StreamId};
use crate::error::Result;

/// The native twin of a Lua script.
pub type NativeScript = fn(&mut dyn ScriptContext, &[ScriptArg]) -> Result<ScriptValue>;

/// A server-side script: Lua for Redis, a native function for the embedded
/// store. Create it once (for example in a `static` `LazyLock`) and reuse it.
pub struct Script {
    name: &'static str,
    lua: &'static str,
    sha1: String,
    native: NativeScript,
}

impl Script {
    /// A script named `name` (for errors and logs).
    pub fn new(name: &'static str, lua: &'static str, native: NativeScript) -> Self {
        let sha1 = redis::Script::new(lua).get_hash().to_owned();
        Script {
            name,
            lua,
            sha1,
            native,
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Lua source.
    pub fn lua(&self) -> &'static str {
        self.lua
    }

    /// The SHA1 of the Lua source, as `EVALSHA` wants it.
    pub fn sha1(&self) -> &str {
        &self.sha1
    }

    pub(crate) fn native(&self) -> NativeScript {
        self.native
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("name", &self.name)
            .field("sha1", &self.sha1)
            .finish()
    }
}

/// An argument (`ARGV[i]`) of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptArg {
    /// An integer (sent as its decimal text, as Redis does).
    Int(i64),
    /// Bytes.
    Bytes(Bytes),
}

impl ScriptArg {
    /// A TTL argument in milliseconds, at least 1 (a script setting `PX 0`
    /// would fail).
    pub(crate) fn millis(ttl: std::time::Duration) -> Self {
        ScriptArg::Int(i64::try_from(crate::clock::millis(ttl).max(1)).unwrap_or(i64::MAX))
    }

    /// The argument as an integer, parsing text like Lua's `tonumber`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ScriptArg::Int(value) => Some(*value),
            ScriptArg::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
        }
    }

    /// The argument as Redis receives it.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ScriptArg::Int(value) => value.to_string().into_bytes(),
            ScriptArg::Bytes(bytes) => bytes.to_vec(),
        }
    }
}

impl From<i64> for ScriptArg {
    fn from(value: i64) -> Self {
        ScriptArg::Int(value)
    }
}

impl From<&str> for ScriptArg {
    fn from(value: &str) -> Self {
        ScriptArg::Bytes(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl From<&[u8]> for ScriptArg {
    fn from(value: &[u8]) -> Self {
        ScriptArg::Bytes(Bytes::copy_from_slice(value))
    }
}

/// What a script returns, in Lua-to-RESP terms: Lua numbers become integers
/// (truncated), strings bytes, tables arrays, `false`/`nil` nil.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptValue {
    /// `nil` or `false`.
    Nil,
    /// An integer.
    Int(i64),
    /// A string.
    Bytes(Bytes),
    /// A table.
    Array(Vec<ScriptValue>),
}

impl ScriptValue {
    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ScriptValue::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&[ScriptValue]> {
        match self {
            ScriptValue::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn from_redis(value: redis::Value) -> Self {
        match value {
            redis::Value::Int(value) => ScriptValue::Int(value),
            redis::Value::BulkString(bytes) => ScriptValue::Bytes(Bytes::from(bytes)),
            redis::Value::SimpleString(text) => ScriptValue::Bytes(Bytes::from(text)),
            redis::Value::Okay => ScriptValue::Bytes(Bytes::from_static(b"OK")),
            redis::Value::Array(items) | redis::Value::Set(items) => {
                ScriptValue::Array(items.into_iter().map(ScriptValue::from_redis).collect())
            }
            redis::Value::Boolean(true) => ScriptValue::Int(1),
            redis::Value::Double(value) => ScriptValue::Int(value as i64),
            _ => ScriptValue::Nil,
        }
    }
}

/// The field-value pairs of one stream entry, in order.
pub type StreamFields = Vec<(Bytes, Bytes)>;

/// The keys a native script may touch, locked for the script's duration.
/// Index `i` is Lua's `KEYS[i + 1]`.
pub trait ScriptContext {
    /// Number of declared keys.
    fn key_count(&self) -> usize;
    /// `GET KEYS[i+1]`.
    fn get(&mut self, key: usize) -> Result<Option<Bytes>>;
    /// `SET KEYS[i+1] value [PX ttl]`.
    fn set(&mut self, key: usize, value: Bytes, ttl: Option<Duration>) -> Result<()>;
    /// `DEL KEYS[i+1]`; whether it existed.
    fn delete(&mut self, key: usize) -> Result<bool>;
    /// `INCRBY KEYS[i+1] delta`.
    fn incr_by(&mut self, key: usize, delta: i64) -> Result<i64>;
    /// `PTTL KEYS[i+1]`.
    fn ttl(&mut self, key: usize) -> Result<KeyTtl>;
    /// `PEXPIRE KEYS[i+1] ttl`; whether the key exists.
    fn expire(&mut self, key: usize, ttl: Duration) -> Result<bool>;
    /// `SADD KEYS[i+1] members…`; how many were new.
    fn set_add(&mut self, key: usize, members: &[&str]) -> Result<u64>;
    /// `SREM KEYS[i+1] members…`; how many were there.
    fn set_remove(&mut self, key: usize, members: &[&str]) -> Result<u64>;
    /// `TIME`: the store's clock, since the UNIX epoch.
    fn now(&self) -> Duration;
    /// `ZADD KEYS[i+1] score member`; whether the member is new.
    fn zadd(&mut self, key: usize, score: i64, member: &str) -> Result<bool>;
    /// `ZREM KEYS[i+1] member`; whether it was there. An emptied set is deleted.
    fn zrem(&mut self, key: usize, member: &str) -> Result<bool>;
    /// `ZSCORE KEYS[i+1] member`.
    fn zscore(&mut self, key: usize, member: &str) -> Result<Option<i64>>;
    /// `ZRANGEBYSCORE KEYS[i+1] min max WITHSCORES LIMIT offset count`:
    /// members by score, then member.
    fn zrange_by_score(
        &mut self,
        key: usize,
        min: i64,
        max: i64,
        offset: usize,
        count: usize,
    ) -> Result<Vec<(String, i64)>>;
    /// `ZCOUNT KEYS[i+1] min max`.
    fn zcount(&mut self, key: usize, min: i64, max: i64) -> Result<u64>;
    /// `HSET KEYS[i+1] field value`.
    fn hset(&mut self, key: usize, field: &str, value: Bytes) -> Result<()>;
    /// `HGET KEYS[i+1] field`.
    fn hget(&mut self, key: usize, field: &str) -> Result<Option<Bytes>>;
    /// `HDEL KEYS[i+1] field`; whether it was there. An emptied hash is deleted.
    fn hdel(&mut self, key: usize, field: &str) -> Result<bool>;
    /// `XADD KEYS[i+1] MAXLEN max_len * d value`: appends with an id from the
    /// store's clock and trims to the newest `max_len` entries.
    fn xadd(&mut self, key: usize, value: Bytes, max_len: usize) -> Result<StreamId>;
    /// `XRANGE KEYS[i+1] start + COUNT count` (`start` included), each
    /// entry as its first field's value.
    fn xrange(
        &mut self,
        key: usize,
        start: StreamId,
        count: usize,
    ) -> Result<Vec<(StreamId, Bytes)>>;
    /// `XADD KEYS[i+1] * field value …` (no trimming).
    fn xadd_fields(&mut self, key: usize, fields: StreamFields) -> Result<StreamId>;
    /// `XRANGE KEYS[i+1] id id`: the entry's fields.
    fn xget(&mut self, key: usize, id: StreamId) -> Result<Option<StreamFields>>;
    /// `XDEL KEYS[i+1] id`; whether it was there.
    fn xdel(&mut self, key: usize, id: StreamId) -> Result<bool>;
    /// `XLEN KEYS[i+1]`.
    fn xlen(&mut self, key: usize) -> Result<u64>;
    /// `XREADGROUP GROUP group c COUNT count STREAMS KEYS[i+1] >` (the group
    /// is created at id 0 when missing, as `XGROUP CREATE … 0 MKSTREAM`).
    fn xread_group(
        &mut self,
        key: usize,
        group: &str,
        count: usize,
    ) -> Result<Vec<(StreamId, StreamFields)>>;
    /// `XACK KEYS[i+1] group id`; whether the entry was pending.
    fn xack(&mut self, key: usize, group: &str, id: StreamId) -> Result<bool>;
    /// `XCLAIM KEYS[i+1] group c 0 id JUSTID`: resets a pending entry's idle
    /// time without counting a delivery; whether it was pending.
    fn xclaim_touch(&mut self, key: usize, group: &str, id: StreamId) -> Result<bool>;
    /// `XAUTOCLAIM KEYS[i+1] group c min_idle 0-0 COUNT count`: claims
    /// entries pending for at least `min_idle`.
    fn xautoclaim(
        &mut self,
        key: usize,
        group: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<(StreamId, StreamFields)>>;
    /// `XPENDING KEYS[i+1] group id id 1`: whether the entry is pending.
    fn xis_pending(&mut self, key: usize, group: &str, id: StreamId) -> Result<bool>;
    /// The group's pending count (`XPENDING`) and the first entry it has not
    /// delivered (`XINFO GROUPS`' last-delivered-id, then `XRANGE`).
    fn xbacklog(&mut self, key: usize, group: &str) -> Result<(u64, Option<StreamId>)>;
}
