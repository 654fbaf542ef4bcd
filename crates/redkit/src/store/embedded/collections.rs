//! The embedded store's sorted sets, hashes and streams.
//!
//! They exist for the job queue and the event log, which reach them only
//! through scripts ([`ScriptContext`](crate::store::ScriptContext)). Each
//! keeps its own byte count up to date so the shard can account memory in
//! O(1) per change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::store::StreamId;

/// Bytes counted for each member or field on top of its text.
pub(super) const ITEM_OVERHEAD: usize = 48;

/// A sorted set: members ordered by integer score, then by member (as Redis
/// orders equal scores lexicographically).
#[derive(Debug, Default)]
pub(super) struct SortedSet {
    scores: HashMap<String, i64>,
    order: BTreeSet<(i64, String)>,
    pub(super) bytes: usize,
}

impl SortedSet {
    pub(super) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Adds or moves `member`; true when it is new.
    pub(super) fn add(&mut self, member: &str, score: i64) -> bool {
        match self.scores.insert(member.to_owned(), score) {
            Some(old) => {
                self.order.remove(&(old, member.to_owned()));
                self.order.insert((score, member.to_owned()));
                false
            }
            None => {
                self.order.insert((score, member.to_owned()));
                self.bytes += 2 * member.len() + ITEM_OVERHEAD;
                true
            }
        }
    }

    pub(super) fn remove(&mut self, member: &str) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.order.remove(&(score, member.to_owned()));
                self.bytes -= 2 * member.len() + ITEM_OVERHEAD;
                true
            }
            None => false,
        }
    }

    pub(super) fn score(&self, member: &str) -> Option<i64> {
        self.scores.get(member).copied()
    }

    /// Members with `min <= score <= max`, skipping `offset`, at most `count`.
    pub(super) fn range(
        &self,
        min: i64,
        max: i64,
        offset: usize,
        count: usize,
    ) -> Vec<(String, i64)> {
        if min > max {
            return Vec::new();
        }
        self.order
            .range((min, String::new())..)
            .take_while(|(score, _)| *score <= max)
            .skip(offset)
            .take(count)
            .map(|(score, member)| (member.clone(), *score))
            .collect()
    }

    pub(super) fn count(&self, min: i64, max: i64) -> u64 {
        if min > max {
            return 0;
        }
        self.order
            .range((min, String::new())..)
            .take_while(|(score, _)| *score <= max)
            .count() as u64
    }
}

/// A hash: fields to byte values.
#[derive(Debug, Default)]
pub(super) struct Hash {
    fields: HashMap<String, Bytes>,
    pub(super) bytes: usize,
}

impl Hash {
    pub(super) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(super) fn set(&mut self, field: &str, value: Bytes) {
        self.bytes += value.len();
        match self.fields.insert(field.to_owned(), value) {
            Some(old) => self.bytes -= old.len(),
            None => self.bytes += field.len() + ITEM_OVERHEAD,
        }
    }

    pub(super) fn get(&self, field: &str) -> Option<Bytes> {
        self.fields.get(field).cloned()
    }

    pub(super) fn remove(&mut self, field: &str) -> bool {
        match self.fields.remove(field) {
            Some(old) => {
                self.bytes -= old.len() + field.len() + ITEM_OVERHEAD;
                true
            }
            None => false,
        }
    }
}

/// A stream of single-payload entries, trimmed to a maximum length. Like
/// Redis, it remembers its last id even when emptied, so ids never repeat.
#[derive(Debug, Default)]
pub(super) struct Stream {
    entries: BTreeMap<StreamId, Bytes>,
    last: StreamId,
    pub(super) bytes: usize,
}

impl Stream {
    /// Appends at the store time `now_ms`, then trims to `max_len` entries.
    pub(super) fn append(&mut self, value: Bytes, now_ms: u64, max_len: usize) -> StreamId {
        let id = if now_ms > self.last.ms {
            StreamId { ms: now_ms, seq: 0 }
        } else {
            self.last.next()
        };
        self.last = id;
        self.bytes += value.len() + ITEM_OVERHEAD;
        self.entries.insert(id, value);
        while self.entries.len() > max_len {
            if let Some((_, old)) = self.entries.pop_first() {
                self.bytes -= old.len() + ITEM_OVERHEAD;
            }
        }
        id
    }

    /// Up to `count` entries from `start` (inclusive).
    pub(super) fn range(&self, start: StreamId, count: usize) -> Vec<(StreamId, Bytes)> {
        self.entries
            .range(start..)
            .take(count)
            .map(|(id, value)| (*id, value.clone()))
            .collect()
    }
}
