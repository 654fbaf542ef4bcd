//! The embedded store's sorted sets, hashes and streams.
//!
//! They exist for the job queue and the event log, which reach them only
//! through scripts ([`ScriptContext`](crate::store::ScriptContext)). Each
//! keeps its own byte count up to date so the shard can account memory in
//! O(1) per change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::store::{StreamFields, StreamId};

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

/// A stream: entries of field-value pairs, with the consumer groups the job
/// queue needs. Like Redis, it remembers its last id even when emptied, so
/// ids never repeat.
#[derive(Debug, Default)]
pub(super) struct Stream {
    entries: BTreeMap<StreamId, StreamFields>,
    last: StreamId,
    groups: HashMap<String, ConsumerGroup>,
    pub(super) bytes: usize,
}

/// A consumer group: what it has delivered, and its pending entries
/// (delivered, not acknowledged) with their last delivery time and count.
/// Consumer names are not kept: the queue tells leases apart by entry id.
#[derive(Debug, Default)]
struct ConsumerGroup {
    last_delivered: StreamId,
    pending: BTreeMap<StreamId, Delivery>,
}

#[derive(Debug, Clone, Copy)]
struct Delivery {
    at_ms: u64,
    count: u64,
}

fn fields_size(fields: &StreamFields) -> usize {
    fields
        .iter()
        .map(|(field, value)| field.len() + value.len())
        .sum::<usize>()
        + ITEM_OVERHEAD
}

impl Stream {
    /// Appends a single-value entry (field `d`) at the store time `now_ms`,
    /// then trims to `max_len` entries.
    pub(super) fn append(&mut self, value: Bytes, now_ms: u64, max_len: usize) -> StreamId {
        let id = self.add(vec![(Bytes::from_static(b"d"), value)], now_ms);
        while self.entries.len() > max_len {
            if let Some((_, old)) = self.entries.pop_first() {
                self.bytes -= fields_size(&old);
            }
        }
        id
    }

    /// `XADD key * field value …` at the store time `now_ms` (no trimming).
    pub(super) fn add(&mut self, fields: StreamFields, now_ms: u64) -> StreamId {
        let id = if now_ms > self.last.ms {
            StreamId { ms: now_ms, seq: 0 }
        } else {
            self.last.next()
        };
        self.last = id;
        self.bytes += fields_size(&fields);
        self.entries.insert(id, fields);
        id
    }

    /// Up to `count` entries from `start` (inclusive), each as its first
    /// field's value.
    pub(super) fn range(&self, start: StreamId, count: usize) -> Vec<(StreamId, Bytes)> {
        self.entries
            .range(start..)
            .take(count)
            .map(|(id, fields)| {
                let value = fields.first().map(|(_, value)| value.clone());
                (*id, value.unwrap_or_default())
            })
            .collect()
    }

    /// `XRANGE key id id`.
    pub(super) fn get(&self, id: StreamId) -> Option<StreamFields> {
        self.entries.get(&id).cloned()
    }

    /// `XDEL key id`.
    pub(super) fn delete(&mut self, id: StreamId) -> bool {
        match self.entries.remove(&id) {
            Some(old) => {
                self.bytes -= fields_size(&old);
                true
            }
            None => false,
        }
    }

    /// `XLEN key`.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The group, created at id 0 when missing (`XGROUP CREATE … 0`).
    fn group(&mut self, name: &str) -> &mut ConsumerGroup {
        self.groups.entry(name.to_owned()).or_default()
    }

    /// `XREADGROUP GROUP name consumer COUNT count STREAMS key >`.
    pub(super) fn read_group(
        &mut self,
        name: &str,
        count: usize,
        now_ms: u64,
    ) -> Vec<(StreamId, StreamFields)> {
        let group = self.groups.entry(name.to_owned()).or_default();
        let read: Vec<(StreamId, StreamFields)> = self
            .entries
            .range(group.last_delivered.next()..)
            .take(count)
            .map(|(id, fields)| (*id, fields.clone()))
            .collect();
        for (id, _) in &read {
            group.last_delivered = *id;
            group.pending.insert(
                *id,
                Delivery {
                    at_ms: now_ms,
                    count: 1,
                },
            );
        }
        read
    }

    /// `XACK key name id`: whether the entry was pending.
    pub(super) fn ack(&mut self, name: &str, id: StreamId) -> bool {
        self.group(name).pending.remove(&id).is_some()
    }

    /// `XCLAIM key name consumer 0 id JUSTID`: resets a pending entry's idle
    /// time (its delivery count stays); whether it was pending.
    pub(super) fn touch(&mut self, name: &str, id: StreamId, now_ms: u64) -> bool {
        match self.group(name).pending.get_mut(&id) {
            Some(delivery) => {
                delivery.at_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// `XAUTOCLAIM key name consumer min_idle 0-0 COUNT count`: claims up to
    /// `count` entries pending for at least `min_idle_ms` (idle reset,
    /// delivery count + 1). Pending entries whose data was deleted leave
    /// the pending list, as in Redis 7.
    pub(super) fn auto_claim(
        &mut self,
        name: &str,
        min_idle_ms: u64,
        count: usize,
        now_ms: u64,
    ) -> Vec<(StreamId, StreamFields)> {
        let group = self.groups.entry(name.to_owned()).or_default();
        let expired: Vec<StreamId> = group
            .pending
            .iter()
            .filter(|(_, delivery)| now_ms.saturating_sub(delivery.at_ms) >= min_idle_ms)
            .map(|(id, _)| *id)
            .take(count)
            .collect();
        let mut claimed = Vec::new();
        for id in expired {
            match self.entries.get(&id) {
                Some(fields) => {
                    if let Some(delivery) = group.pending.get_mut(&id) {
                        delivery.at_ms = now_ms;
                        delivery.count += 1;
                    }
                    claimed.push((id, fields.clone()));
                }
                None => {
                    group.pending.remove(&id);
                }
            }
        }
        claimed
    }

    /// `XPENDING key name id id 1`: whether the entry is pending.
    pub(super) fn is_pending(&self, name: &str, id: StreamId) -> bool {
        self.groups
            .get(name)
            .is_some_and(|group| group.pending.contains_key(&id))
    }

    /// The group's pending count (`XPENDING key name`) and the first entry it
    /// has not delivered yet (`XRANGE key (last-delivered-id + COUNT 1`).
    pub(super) fn group_backlog(&self, name: &str) -> (usize, Option<StreamId>) {
        let (pending, after) = self.groups.get(name).map_or((0, None), |group| {
            (group.pending.len(), Some(group.last_delivered.next()))
        });
        let first = self
            .entries
            .range(after.unwrap_or_default()..)
            .next()
            .map(|(id, _)| *id);
        (pending, first)
    }
}
