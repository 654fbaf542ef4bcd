//! The locked view a native script runs in.

use std::time::Duration;

use bytes::Bytes;
use parking_lot::MutexGuard;

use super::shard::Shard;
use crate::clock::millis;
use crate::error::{Error, Result};
use crate::store::{KeyTtl, ScriptContext, StreamFields, StreamId, ttl_millis};

/// Holds the locks of every shard a script's keys live in.
pub(super) struct NativeContext<'a> {
    keys: Vec<String>,
    /// For each key, the index of its shard's guard in `guards`.
    slots: Vec<usize>,
    guards: Vec<MutexGuard<'a, Shard>>,
    /// The script's one instant (ms since the epoch), as Redis scripts see one `TIME`.
    now_ms: u64,
    now: Duration,
}

impl<'a> NativeContext<'a> {
    pub(super) fn new(
        keys: &[&str],
        slots: Vec<usize>,
        guards: Vec<MutexGuard<'a, Shard>>,
        now: Duration,
    ) -> Self {
        NativeContext {
            keys: keys.iter().map(|key| (*key).to_owned()).collect(),
            slots,
            guards,
            now_ms: millis(now),
            now,
        }
    }

    fn slot(&mut self, key: usize) -> Result<(&str, &mut Shard)> {
        let slot = *self.slots.get(key).ok_or_else(|| {
            Error::invalid_input(
                "script key",
                format!(
                    "KEYS[{}] was not declared ({} keys given)",
                    key + 1,
                    self.keys.len()
                ),
            )
        })?;
        Ok((&self.keys[key], &mut self.guards[slot]))
    }
}

impl ScriptContext for NativeContext<'_> {
    fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn get(&mut self, key: usize) -> Result<Option<Bytes>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.get(name, now)
    }

    fn set(&mut self, key: usize, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let now = self.now_ms;
        let expires_at = ttl
            .map(|ttl| ttl_millis(ttl).map(|ms| now.saturating_add(ms)))
            .transpose()?;
        let (name, shard) = self.slot(key)?;
        shard.set(name, value, expires_at);
        Ok(())
    }

    fn delete(&mut self, key: usize) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard.delete(name, now))
    }

    fn incr_by(&mut self, key: usize, delta: i64) -> Result<i64> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.incr_by(name, delta, now)
    }

    fn ttl(&mut self, key: usize) -> Result<KeyTtl> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard.ttl(name, now))
    }

    fn expire(&mut self, key: usize, ttl: Duration) -> Result<bool> {
        let now = self.now_ms;
        let at = now.saturating_add(ttl_millis(ttl)?);
        let (name, shard) = self.slot(key)?;
        Ok(shard.expire(name, at, now))
    }

    fn set_add(&mut self, key: usize, members: &[&str]) -> Result<u64> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.set_add(name, members, now)
    }

    fn set_remove(&mut self, key: usize, members: &[&str]) -> Result<u64> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.set_remove(name, members, now)
    }

    fn now(&self) -> Duration {
        self.now
    }
    fn zadd(&mut self, key: usize, score: i64, member: &str) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.zadd(name, score, member, now)
    }

    fn zrem(&mut self, key: usize, member: &str) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.zrem(name, member, now)
    }

    fn zscore(&mut self, key: usize, member: &str) -> Result<Option<i64>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.zscore(name, member, now)
    }

    fn zrange_by_score(
        &mut self,
        key: usize,
        min: i64,
        max: i64,
        offset: usize,
        count: usize,
    ) -> Result<Vec<(String, i64)>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.zrange_by_score(name, (min, max), (offset, count), now)
    }

    fn zcount(&mut self, key: usize, min: i64, max: i64) -> Result<u64> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.zcount(name, min, max, now)
    }

    fn hset(&mut self, key: usize, field: &str, value: Bytes) -> Result<()> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.hset(name, field, value, now)
    }

    fn hget(&mut self, key: usize, field: &str) -> Result<Option<Bytes>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.hget(name, field, now)
    }

    fn hdel(&mut self, key: usize, field: &str) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.hdel(name, field, now)
    }

    fn xadd(&mut self, key: usize, value: Bytes, max_len: usize) -> Result<StreamId> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.xadd(name, value, max_len, now)
    }

    fn xrange(
        &mut self,
        key: usize,
        start: StreamId,
        count: usize,
    ) -> Result<Vec<(StreamId, Bytes)>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        shard.xrange(name, start, count, now)
    }

    fn xadd_fields(&mut self, key: usize, fields: StreamFields) -> Result<StreamId> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard
            .with_stream(name, now, true, |stream| stream.add(fields, now))?
            .unwrap_or_default())
    }

    fn xget(&mut self, key: usize, id: StreamId) -> Result<Option<StreamFields>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard
            .with_stream(name, now, false, |stream| stream.get(id))?
            .flatten())
    }

    fn xdel(&mut self, key: usize, id: StreamId) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard.with_stream(name, now, false, |stream| stream.delete(id))? == Some(true))
    }

    fn xlen(&mut self, key: usize) -> Result<u64> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard
            .with_stream(name, now, false, |stream| stream.len() as u64)?
            .unwrap_or(0))
    }

    fn xread_group(
        &mut self,
        key: usize,
        group: &str,
        count: usize,
    ) -> Result<Vec<(StreamId, StreamFields)>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard
            .with_stream(name, now, true, |stream| {
                stream.read_group(group, count, now)
            })?
            .unwrap_or_default())
    }

    fn xack(&mut self, key: usize, group: &str, id: StreamId) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard.with_stream(name, now, false, |stream| stream.ack(group, id))? == Some(true))
    }

    fn xclaim_touch(&mut self, key: usize, group: &str, id: StreamId) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(
            shard.with_stream(name, now, false, |stream| stream.touch(group, id, now))?
                == Some(true),
        )
    }

    fn xautoclaim(
        &mut self,
        key: usize,
        group: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<(StreamId, StreamFields)>> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard
            .with_stream(name, now, false, |stream| {
                stream.auto_claim(group, millis(min_idle), count, now)
            })?
            .unwrap_or_default())
    }

    fn xis_pending(&mut self, key: usize, group: &str, id: StreamId) -> Result<bool> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(
            shard.with_stream(name, now, false, |stream| stream.is_pending(group, id))?
                == Some(true),
        )
    }

    fn xbacklog(&mut self, key: usize, group: &str) -> Result<(u64, Option<StreamId>)> {
        let now = self.now_ms;
        let (name, shard) = self.slot(key)?;
        Ok(shard
            .with_stream(name, now, false, |stream| {
                let (pending, first) = stream.group_backlog(group);
                (pending as u64, first)
            })?
            .unwrap_or((0, None)))
    }
}
