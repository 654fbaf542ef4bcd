//! One independently locked part of the embedded keyspace.
//!
//! Entries live in an `IndexMap` so that eviction and active expiry can pick
//! random entries in O(1), as Redis samples its dictionaries. Every method
//! takes the current time in milliseconds and treats an expired entry as
//! absent (removing it on the way: lazy expiry). Memory use is tracked in a
//! counter shared by all shards.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use indexmap::IndexMap;

use super::collections::{Hash, SortedSet, Stream};
use crate::error::{Error, Result};
use crate::store::{KeyTtl, StreamId, glob_matches};

/// Bytes counted for each entry on top of its key and value.
pub(super) const ENTRY_OVERHEAD: usize = 64;
/// Bytes counted for each set member on top of its text.
const MEMBER_OVERHEAD: usize = 32;
/// Entries looked at to choose one to evict (Redis' `maxmemory-samples`).
const EVICTION_SAMPLES: usize = 5;

/// What a key holds. The collections are boxed: strings are most of the
/// entries, and each entry is as large as the largest variant.
#[derive(Debug)]
pub(super) enum Value {
    Bytes(Bytes),
    Set(BTreeSet<String>),
    SortedSet(Box<SortedSet>),
    Hash(Box<Hash>),
    Stream(Box<Stream>),
}

impl Value {
    /// Queue and event-log data: never evicted to make room (like Redis'
    /// `volatile-*` policies, which leave keys without a TTL alone).
    fn is_durable(&self) -> bool {
        matches!(
            self,
            Value::SortedSet(_) | Value::Hash(_) | Value::Stream(_)
        )
    }

    fn is_empty_collection(&self) -> bool {
        match self {
            Value::Set(members) => members.is_empty(),
            Value::SortedSet(set) => set.is_empty(),
            Value::Hash(hash) => hash.is_empty(),
            Value::Bytes(_) | Value::Stream(_) => false,
        }
    }
}

#[derive(Debug)]
pub(super) struct Entry {
    value: Value,
    /// Expiry time, milliseconds since the UNIX epoch (never zero, so the
    /// option takes no extra word).
    expires_at: Option<NonZeroU64>,
    /// The shard's access counter at the last read or write: a logical
    /// clock, so the order is exact even within one millisecond.
    last_access: u64,
    size: usize,
}

impl Entry {
    fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at.get() <= now)
    }
}

/// An expiry time as stored: time 0 (long past, like any time before now)
/// is kept as 1 ms.
fn expiry(at: u64) -> NonZeroU64 {
    NonZeroU64::new(at).unwrap_or(NonZeroU64::MIN)
}

pub(super) fn entry_size(key: &str, value_len: usize) -> usize {
    key.len() + value_len + ENTRY_OVERHEAD
}

fn value_size(key: &str, value: &Value) -> usize {
    match value {
        Value::Bytes(bytes) => entry_size(key, bytes.len()),
        Value::Set(members) => {
            entry_size(key, members.iter().map(|m| m.len() + MEMBER_OVERHEAD).sum())
        }
        Value::SortedSet(set) => entry_size(key, set.bytes),
        Value::Hash(hash) => entry_size(key, hash.bytes),
        Value::Stream(stream) => entry_size(key, stream.bytes),
    }
}

#[derive(Debug)]
pub(super) struct Shard {
    map: IndexMap<String, Entry>,
    used: Arc<AtomicUsize>,
    accesses: u64,
}

impl Shard {
    pub(super) fn new(used: Arc<AtomicUsize>) -> Self {
        Shard {
            map: IndexMap::new(),
            used,
            accesses: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The live entry at `key`, touched for LRU; expired entries are removed.
    fn live(&mut self, key: &str, now: u64) -> Option<&mut Entry> {
        let index = self.map.get_index_of(key)?;
        if self.map[index].is_expired(now) {
            self.remove_index(index);
            return None;
        }
        self.accesses += 1;
        let entry = &mut self.map[index];
        entry.last_access = self.accesses;
        Some(entry)
    }

    fn remove_index(&mut self, index: usize) {
        if let Some((_, entry)) = self.map.swap_remove_index(index) {
            self.used.fetch_sub(entry.size, Ordering::Relaxed);
        }
    }

    fn insert(&mut self, key: &str, value: Value, expires_at: Option<u64>) {
        let size = value_size(key, &value);
        self.used.fetch_add(size, Ordering::Relaxed);
        self.accesses += 1;
        let entry = Entry {
            value,
            expires_at: expires_at.map(expiry),
            last_access: self.accesses,
            size,
        };
        if let Some(old) = self.map.insert(key.to_owned(), entry) {
            self.used.fetch_sub(old.size, Ordering::Relaxed);
        }
    }

    /// Recomputes the size of `key` after its set changed; deletes an empty set.
    fn resize(&mut self, key: &str) {
        let Some(index) = self.map.get_index_of(key) else {
            return;
        };
        if self.map[index].value.is_empty_collection() {
            self.remove_index(index);
            return;
        }
        let entry = &mut self.map[index];
        let size = value_size(key, &entry.value);
        self.used.fetch_add(size, Ordering::Relaxed);
        self.used.fetch_sub(entry.size, Ordering::Relaxed);
        entry.size = size;
    }

    pub(super) fn get(&mut self, key: &str, now: u64) -> Result<Option<Bytes>> {
        match self.live(key, now).map(|entry| &entry.value) {
            None => Ok(None),
            Some(Value::Bytes(bytes)) => Ok(Some(bytes.clone())),
            Some(_) => Err(wrong_type(key, "string")),
        }
    }

    pub(super) fn contains(&mut self, key: &str, now: u64) -> bool {
        self.live(key, now).is_some()
    }

    pub(super) fn set(&mut self, key: &str, value: Bytes, expires_at: Option<u64>) {
        self.insert(key, Value::Bytes(value), expires_at);
    }

    pub(super) fn delete(&mut self, key: &str, now: u64) -> bool {
        let existed = self.live(key, now).is_some();
        if let Some(index) = self.map.get_index_of(key) {
            self.remove_index(index);
        }
        existed
    }

    pub(super) fn expire(&mut self, key: &str, expires_at: u64, now: u64) -> bool {
        match self.live(key, now) {
            Some(entry) => {
                entry.expires_at = Some(expiry(expires_at));
                true
            }
            None => false,
        }
    }

    pub(super) fn ttl(&mut self, key: &str, now: u64) -> KeyTtl {
        match self.live(key, now) {
            None => KeyTtl::Missing,
            Some(Entry {
                expires_at: None, ..
            }) => KeyTtl::Persistent,
            Some(Entry {
                expires_at: Some(at),
                ..
            }) => KeyTtl::ExpiresIn(std::time::Duration::from_millis(
                at.get().saturating_sub(now),
            )),
        }
    }

    pub(super) fn incr_by(&mut self, key: &str, delta: i64, now: u64) -> Result<i64> {
        let (current, expires_at) = match self.live(key, now) {
            None => (0, None),
            Some(entry) => match &entry.value {
                Value::Bytes(bytes) => (
                    std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok())
                        .ok_or_else(|| wrong_type(key, "integer"))?,
                    entry.expires_at.map(NonZeroU64::get),
                ),
                _ => return Err(wrong_type(key, "integer")),
            },
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| wrong_type(key, "integer"))?;
        self.insert(key, Value::Bytes(Bytes::from(next.to_string())), expires_at);
        Ok(next)
    }

    pub(super) fn set_add(&mut self, key: &str, members: &[&str], now: u64) -> Result<u64> {
        let added = match self.live(key, now) {
            Some(Entry {
                value: Value::Set(set),
                ..
            }) => members
                .iter()
                .filter(|m| set.insert((**m).to_owned()))
                .count(),
            Some(_) => return Err(wrong_type(key, "set")),
            None => {
                let set: BTreeSet<String> = members.iter().map(|m| (*m).to_owned()).collect();
                let added = set.len();
                self.insert(key, Value::Set(set), None);
                return Ok(added as u64);
            }
        };
        self.resize(key);
        Ok(added as u64)
    }

    pub(super) fn set_remove(&mut self, key: &str, members: &[&str], now: u64) -> Result<u64> {
        let removed = match self.live(key, now) {
            Some(Entry {
                value: Value::Set(set),
                ..
            }) => members.iter().filter(|m| set.remove(**m)).count(),
            Some(_) => return Err(wrong_type(key, "set")),
            None => return Ok(0),
        };
        self.resize(key);
        Ok(removed as u64)
    }

    pub(super) fn set_members(&mut self, key: &str, now: u64) -> Result<Vec<String>> {
        match self.live(key, now).map(|entry| &entry.value) {
            None => Ok(Vec::new()),
            Some(Value::Set(set)) => Ok(set.iter().cloned().collect()),
            Some(_) => Err(wrong_type(key, "set")),
        }
    }

    /// Up to `count` live keys after `after` (in key order) matching `pattern`,
    /// and whether more remain in this shard.
    pub(super) fn scan(
        &self,
        after: Option<&str>,
        pattern: &str,
        count: usize,
        now: u64,
    ) -> (Vec<String>, bool) {
        let mut keys: Vec<&String> = self
            .map
            .iter()
            .filter(|(key, entry)| {
                after.is_none_or(|after| key.as_str() > after)
                    && !entry.is_expired(now)
                    && glob_matches(pattern, key)
            })
            .map(|(key, _)| key)
            .collect();
        let more = keys.len() > count;
        if more {
            keys.select_nth_unstable(count);
            keys.truncate(count);
        }
        keys.sort_unstable();
        (keys.into_iter().cloned().collect(), more)
    }

    /// Evicts one entry: an expired one among the samples if any, otherwise
    /// the least recently used sample. False when the shard is empty.
    pub(super) fn evict_one(&mut self, now: u64) -> bool {
        let len = self.map.len();
        if len == 0 {
            return false;
        }
        let mut victim: Option<usize> = None;
        for _ in 0..EVICTION_SAMPLES.min(len) {
            let candidate = fastrand::usize(0..len);
            let other = &self.map[candidate];
            if other.value.is_durable() && !other.is_expired(now) {
                continue;
            }
            let Some(best) = victim.map(|index| &self.map[index]) else {
                victim = Some(candidate);
                continue;
            };
            if best.is_expired(now) {
                break;
            }
            if other.is_expired(now) || other.last_access < best.last_access {
                victim = Some(candidate);
            }
        }
        // All samples durable: look for any evictable entry before giving up.
        let victim = victim.or_else(|| {
            self.map
                .values()
                .position(|entry| !entry.value.is_durable() || entry.is_expired(now))
        });
        match victim {
            Some(index) => {
                self.remove_index(index);
                true
            }
            None => false,
        }
    }

    /// Active expiry, as Redis does it: sample random entries and remove the
    /// expired ones; repeat while more than a quarter of a sample was expired.
    /// Returns how many were removed.
    pub(super) fn expire_sample(&mut self, now: u64) -> usize {
        const SAMPLE: usize = 20;
        const MAX_ROUNDS: usize = 16;
        let mut removed = 0;
        for _ in 0..MAX_ROUNDS {
            let len = self.map.len();
            if len == 0 {
                break;
            }
            let mut expired_in_round = 0;
            for _ in 0..SAMPLE.min(len) {
                let len = self.map.len();
                if len == 0 {
                    break;
                }
                let index = fastrand::usize(0..len);
                if self.map[index].is_expired(now) {
                    self.remove_index(index);
                    expired_in_round += 1;
                }
            }
            removed += expired_in_round;
            if expired_in_round * 4 <= SAMPLE.min(len) {
                break;
            }
        }
        removed
    }

    pub(super) fn clear(&mut self) {
        let freed: usize = self.map.values().map(|entry| entry.size).sum();
        self.used.fetch_sub(freed, Ordering::Relaxed);
        self.map.clear();
    }
}

/// Sorted sets, hashes and streams (for scripts). Each mutation re-measures
/// the entry and deletes emptied sets and hashes, as Redis does.
impl Shard {
    fn collection<T>(
        &mut self,
        key: &str,
        now: u64,
        create: Option<fn() -> Value>,
        view: fn(&mut Value) -> Option<&mut T>,
        expected: &'static str,
    ) -> Result<Option<&mut T>> {
        if self.live(key, now).is_none() {
            match create {
                Some(make) => self.insert(key, make(), None),
                None => return Ok(None),
            }
        }
        let Some(entry) = self.map.get_mut(key) else {
            return Ok(None);
        };
        view(&mut entry.value)
            .map(Some)
            .ok_or_else(|| wrong_type(key, expected))
    }

    fn sorted_set(&mut self, key: &str, now: u64, create: bool) -> Result<Option<&mut SortedSet>> {
        let make: fn() -> Value = || Value::SortedSet(Box::default());
        self.collection(
            key,
            now,
            create.then_some(make),
            |value| match value {
                Value::SortedSet(set) => Some(set),
                _ => None,
            },
            "sorted set",
        )
    }

    fn hash(&mut self, key: &str, now: u64, create: bool) -> Result<Option<&mut Hash>> {
        let make: fn() -> Value = || Value::Hash(Box::default());
        self.collection(
            key,
            now,
            create.then_some(make),
            |value| match value {
                Value::Hash(hash) => Some(hash),
                _ => None,
            },
            "hash",
        )
    }

    fn stream(&mut self, key: &str, now: u64, create: bool) -> Result<Option<&mut Stream>> {
        let make: fn() -> Value = || Value::Stream(Box::default());
        self.collection(
            key,
            now,
            create.then_some(make),
            |value| match value {
                Value::Stream(stream) => Some(stream),
                _ => None,
            },
            "stream",
        )
    }

    pub(super) fn zadd(&mut self, key: &str, score: i64, member: &str, now: u64) -> Result<bool> {
        let added = self
            .sorted_set(key, now, true)?
            .is_some_and(|set| set.add(member, score));
        self.resize(key);
        Ok(added)
    }

    pub(super) fn zrem(&mut self, key: &str, member: &str, now: u64) -> Result<bool> {
        let removed = self
            .sorted_set(key, now, false)?
            .is_some_and(|set| set.remove(member));
        self.resize(key);
        Ok(removed)
    }

    pub(super) fn zscore(&mut self, key: &str, member: &str, now: u64) -> Result<Option<i64>> {
        Ok(self
            .sorted_set(key, now, false)?
            .and_then(|set| set.score(member)))
    }

    pub(super) fn zrange_by_score(
        &mut self,
        key: &str,
        (min, max): (i64, i64),
        (offset, count): (usize, usize),
        now: u64,
    ) -> Result<Vec<(String, i64)>> {
        Ok(self
            .sorted_set(key, now, false)?
            .map(|set| set.range(min, max, offset, count))
            .unwrap_or_default())
    }

    pub(super) fn zcount(&mut self, key: &str, min: i64, max: i64, now: u64) -> Result<u64> {
        Ok(self
            .sorted_set(key, now, false)?
            .map_or(0, |set| set.count(min, max)))
    }

    pub(super) fn hset(&mut self, key: &str, field: &str, value: Bytes, now: u64) -> Result<()> {
        if let Some(hash) = self.hash(key, now, true)? {
            hash.set(field, value);
        }
        self.resize(key);
        Ok(())
    }

    pub(super) fn hget(&mut self, key: &str, field: &str, now: u64) -> Result<Option<Bytes>> {
        Ok(self.hash(key, now, false)?.and_then(|hash| hash.get(field)))
    }

    pub(super) fn hdel(&mut self, key: &str, field: &str, now: u64) -> Result<bool> {
        let removed = self
            .hash(key, now, false)?
            .is_some_and(|hash| hash.remove(field));
        self.resize(key);
        Ok(removed)
    }

    pub(super) fn xadd(
        &mut self,
        key: &str,
        value: Bytes,
        max_len: usize,
        now: u64,
    ) -> Result<StreamId> {
        let id = self
            .stream(key, now, true)?
            .map(|stream| stream.append(value, now, max_len))
            .unwrap_or_default();
        self.resize(key);
        Ok(id)
    }

    /// Runs `op` on the stream at `key` (created when `create`), then
    /// re-accounts its memory; `None` when there is no such stream.
    pub(super) fn with_stream<R>(
        &mut self,
        key: &str,
        now: u64,
        create: bool,
        op: impl FnOnce(&mut Stream) -> R,
    ) -> Result<Option<R>> {
        let result = self.stream(key, now, create)?.map(op);
        self.resize(key);
        Ok(result)
    }

    pub(super) fn xrange(
        &mut self,
        key: &str,
        start: StreamId,
        count: usize,
        now: u64,
    ) -> Result<Vec<(StreamId, Bytes)>> {
        Ok(self
            .stream(key, now, false)?
            .map(|stream| stream.range(start, count))
            .unwrap_or_default())
    }
}

fn wrong_type(key: &str, expected: &'static str) -> Error {
    Error::WrongType {
        key: key.to_owned(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_as_small_as_a_string_value_needs() {
        // Every key pays this in the map beside its key and value bytes: a
        // collection variant inline would make every string entry pay for it.
        assert!(
            std::mem::size_of::<Entry>() <= 64,
            "an entry takes {} bytes",
            std::mem::size_of::<Entry>()
        );
    }
}
