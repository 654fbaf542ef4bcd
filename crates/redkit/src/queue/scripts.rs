//! Every state change of a job, as Lua and its native twin.
//!
//! A job due now is an entry of the queue's Stream, read by the consumer
//! group `workers`; once read it is *pending* (leased) until acknowledged.
//! A job not due yet (delayed, or waiting for a retry) is a member of the
//! sorted set `delayed` (score: due time), and a dead one of `dead` (score:
//! time of death); those two keep the payload, attempts so far and last
//! error in the hashes `jobs`, `attempts` and `errors`. An entry's fields:
//! `p` the payload, `j` the job id (absent: the id is `#` and the entry id)
//! and `a` the attempts made before this entry (absent: 0).
//!
//! The hot path is plain commands: a job due now without an id is one
//! `XADD` ([`ADD`]), a worker's read one `XREADGROUP` ([`READ`]), a success
//! `XACK` + `XDEL` ([`ACK`]) and a heartbeat `XCLAIM … JUSTID` ([`TOUCH`]).
//! On Redis they are sent as those commands, not as scripts; each one's Lua
//! here is that same command, and its native twin does it on the embedded
//! store. Every other change is one script, so it is atomic.
//!
//! **The entry id is the lease.** A lease that expires is taken back by
//! [`MAINTAIN`] (`XAUTOCLAIM`): the job moves to a *new* entry with one more
//! attempt counted (or to `dead` when attempts are used up, crashes
//! included), and the old entry is acknowledged and deleted. So the old
//! holder's `XACK` (success), [`FINISH`] (retry, dead letter) and heartbeat
//! all find their entry gone and change nothing.
//!
//! Times come from the store's clock (Redis' `TIME`, the embedded store's
//! clock), in milliseconds, so instances with skewed clocks agree.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::store::{Script, ScriptArg, ScriptContext, ScriptValue, StreamFields, StreamId};

// Key indexes (Lua's KEYS[i + 1]); see `QueueKeys::all`.
const STREAM: usize = 0;
const DELAYED: usize = 1;
const DEAD: usize = 2;
const JOBS: usize = 3;
const ATTEMPTS: usize = 4;
const ERRORS: usize = 5;
const IDS: usize = 6;
const SEQ: usize = 7;

/// The consumer group every worker of a queue reads through.
pub(super) const GROUP: &str = "workers";
/// The one consumer name workers use: leases are told apart by entry id,
/// so the group never accumulates consumers of processes long gone.
pub(super) const CONSUMER: &str = "worker";

/// Lua prelude: the store's clock in milliseconds, and `entry_of(id)` /
/// `pending(entry)` (see [`entry_of`] and [`is_pending`]).
macro_rules! lua {
    ($body:literal) => {
        concat!(
            r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function entry_of(id)
  local entry = redis.call('HGET', KEYS[7], id)
  if not entry and string.match(id, '^#%d+%-%d+$') then entry = string.sub(id, 2) end
  if not entry then return false end
  local found = redis.pcall('XRANGE', KEYS[1], entry, entry)
  if type(found) ~= 'table' or found.err or #found == 0 then return false end
  local fields = {}
  local list = found[1][2]
  for i = 1, #list, 2 do fields[list[i]] = list[i + 1] end
  if (fields['j'] or ('#' .. entry)) ~= id then return false end
  return entry, fields
end
local function pending(entry)
  local found = redis.pcall('XPENDING', KEYS[1], 'workers', entry, entry, 1)
  return type(found) == 'table' and not found.err and #found > 0
end
",
            $body
        )
    };
}

/// ARGV: payload. A job due now without an id: `XADD stream * p payload`;
/// returns the entry id (the job id is `#` and it).
pub(super) static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_add",
        "return redis.call('XADD', KEYS[1], '*', 'p', ARGV[1])",
        add_native,
    )
});

fn add_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let entry = ctx.xadd_fields(STREAM, vec![(field(b"p"), raw(args, 0)?)])?;
    Ok(bytes(&entry.to_string()))
}

/// ARGV: count. `XREADGROUP GROUP workers worker COUNT count STREAMS stream >`:
/// leases up to `count` new entries. The reply has `XREADGROUP`'s shape.
pub(super) static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_read",
        "return redis.call('XREADGROUP', 'GROUP', 'workers', 'worker', 'COUNT', ARGV[1], 'STREAMS', KEYS[1], '>')",
        read_native,
    )
});

fn read_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let count = usize::try_from(int(args, 0)?).unwrap_or(0);
    let read = ctx.xread_group(STREAM, GROUP, count)?;
    if read.is_empty() {
        return Ok(ScriptValue::Nil);
    }
    let entries = read
        .into_iter()
        .map(|(entry, fields)| {
            let fields = fields
                .into_iter()
                .flat_map(|(name, value)| [ScriptValue::Bytes(name), ScriptValue::Bytes(value)])
                .collect();
            ScriptValue::Array(vec![bytes(&entry.to_string()), ScriptValue::Array(fields)])
        })
        .collect();
    Ok(ScriptValue::Array(vec![ScriptValue::Array(vec![
        bytes("stream"),
        ScriptValue::Array(entries),
    ])]))
}

/// ARGV: entries. Successes: `XACK` and `XDEL` of the leased entries;
/// returns `XACK`'s count (short of the entries: some leases were taken
/// over, and nothing changed for those).
pub(super) static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_ack",
        r"
local acked = redis.call('XACK', KEYS[1], 'workers', unpack(ARGV))
redis.call('XDEL', KEYS[1], unpack(ARGV))
return acked
",
        ack_native,
    )
});

fn ack_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let mut acked = 0;
    for index in 0..args.len() {
        let entry = entry_arg(args, index)?;
        acked += i64::from(ctx.xack(STREAM, GROUP, entry)?);
        ctx.xdel(STREAM, entry)?;
    }
    Ok(ScriptValue::Int(acked))
}

/// ARGV: entries. The heartbeat of every lease a worker holds: `XCLAIM
/// stream workers worker 0 entry… JUSTID` resets their idle time; returns
/// the ids still held (a missing one: that lease is lost).
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_touch",
        "local args = {'XCLAIM', KEYS[1], 'workers', 'worker', 0}
for _, entry in ipairs(ARGV) do args[#args + 1] = entry end
args[#args + 1] = 'JUSTID'
return redis.call(unpack(args))",
        touch_native,
    )
});

fn touch_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let mut held = Vec::new();
    for index in 0..args.len() {
        let entry = entry_arg(args, index)?;
        if ctx.xclaim_touch(STREAM, GROUP, entry)? {
            held.push(bytes(&entry.to_string()));
        }
    }
    Ok(ScriptValue::Array(held))
}

/// ARGV: id ('' = generated), payload, delay ms. A job with an id or a
/// delay. Returns `{added, id}`; an id still waiting, delayed or running is
/// left alone (`added` 0).
pub(super) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_enqueue",
        lua!(
            r"
local id = ARGV[1]
if id == '' then
  id = string.format('#%015d', redis.call('INCR', KEYS[8]))
else
  if redis.call('ZSCORE', KEYS[2], id) or entry_of(id) then
    return {0, id}
  end
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
end
local delay = tonumber(ARGV[3])
if delay > 0 then
  redis.call('HSET', KEYS[4], id, ARGV[2])
  redis.call('ZADD', KEYS[2], now + delay, id)
else
  redis.call('HSET', KEYS[7], id, redis.call('XADD', KEYS[1], '*', 'p', ARGV[2], 'j', id))
end
return {1, id}
"
        ),
        enqueue_native,
    )
});

fn enqueue_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let mut id = text(args, 0)?;
    if id.is_empty() {
        id = format!("#{:015}", ctx.incr_by(SEQ, 1)?);
    } else {
        if ctx.zscore(DELAYED, &id)?.is_some() || entry_of(ctx, &id)?.is_some() {
            return Ok(ScriptValue::Array(vec![ScriptValue::Int(0), bytes(&id)]));
        }
        ctx.zrem(DEAD, &id)?;
        ctx.hdel(JOBS, &id)?;
        ctx.hdel(ATTEMPTS, &id)?;
        ctx.hdel(ERRORS, &id)?;
    }
    let delay = int(args, 2)?;
    if delay > 0 {
        ctx.hset(JOBS, &id, raw(args, 1)?)?;
        ctx.zadd(DELAYED, now + delay, &id)?;
    } else {
        let fields = vec![(field(b"p"), raw(args, 1)?), (field(b"j"), text_bytes(&id))];
        let entry = ctx.xadd_fields(STREAM, fields)?;
        ctx.hset(IDS, &id, text_bytes(&entry.to_string()))?;
    }
    Ok(ScriptValue::Array(vec![ScriptValue::Int(1), bytes(&id)]))
}

/// ARGV: visibility ms, max attempts, lost-lease error, batch. Creates the
/// group if missing, moves due delayed jobs to the Stream, then takes back
/// leases idle for the visibility timeout (`XAUTOCLAIM`): each job moves to
/// a new entry with the lost attempt counted, or to `dead` when it has no
/// attempts left. At most `batch` of each. Returns `{moved, reclaimed,
/// dead}`.
pub(super) static MAINTAIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_maintain",
        lua!(
            r"
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'workers', '0', 'MKSTREAM')
local max_attempts = tonumber(ARGV[2])
local batch = tonumber(ARGV[4])
local moved, reclaimed, dead = 0, 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)) do
  local fields = {'j', id}
  local payload = redis.call('HGET', KEYS[4], id)
  if payload then fields[#fields + 1] = 'p'; fields[#fields + 1] = payload end
  local attempts = redis.call('HGET', KEYS[5], id)
  if attempts then fields[#fields + 1] = 'a'; fields[#fields + 1] = attempts end
  redis.call('HSET', KEYS[7], id, redis.call('XADD', KEYS[1], '*', unpack(fields)))
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  moved = moved + 1
end
local claimed = redis.call('XAUTOCLAIM', KEYS[1], 'workers', 'worker', ARGV[1], '0-0', 'COUNT', batch)[2]
for _, item in ipairs(claimed) do
  local entry, list = item[1], item[2]
  redis.call('XACK', KEYS[1], 'workers', entry)
  redis.call('XDEL', KEYS[1], entry)
  if type(list) == 'table' then
    local f = {}
    for i = 1, #list, 2 do f[list[i]] = list[i + 1] end
    local id = f['j'] or ('#' .. entry)
    local lost = (tonumber(f['a'] or '0') or 0) + 1
    if redis.call('HGET', KEYS[7], id) == entry then redis.call('HDEL', KEYS[7], id) end
    redis.call('HSET', KEYS[6], id, ARGV[3])
    if lost >= max_attempts then
      redis.call('HSET', KEYS[4], id, f['p'] or '')
      redis.call('HSET', KEYS[5], id, lost)
      redis.call('ZADD', KEYS[3], now, id)
      dead = dead + 1
    else
      local fields = {'j', id, 'a', lost}
      if f['p'] then fields[#fields + 1] = 'p'; fields[#fields + 1] = f['p'] end
      redis.call('HSET', KEYS[7], id, redis.call('XADD', KEYS[1], '*', unpack(fields)))
      reclaimed = reclaimed + 1
    end
  end
end
return {moved, reclaimed, dead}
"
        ),
        maintain_native,
    )
});

fn maintain_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let visibility = Duration::from_millis(u64::try_from(int(args, 0)?).unwrap_or(0));
    let max_attempts = int(args, 1)?;
    let lost_error = raw(args, 2)?;
    let batch = usize::try_from(int(args, 3)?).unwrap_or(0);
    let (mut moved, mut reclaimed, mut dead) = (0, 0, 0);
    for (id, _) in ctx.zrange_by_score(DELAYED, i64::MIN, now, 0, batch)? {
        let mut fields = vec![(field(b"j"), text_bytes(&id))];
        if let Some(payload) = ctx.hget(JOBS, &id)? {
            fields.push((field(b"p"), payload));
        }
        if let Some(attempts) = ctx.hget(ATTEMPTS, &id)? {
            fields.push((field(b"a"), attempts));
        }
        let entry = ctx.xadd_fields(STREAM, fields)?;
        ctx.hset(IDS, &id, text_bytes(&entry.to_string()))?;
        ctx.zrem(DELAYED, &id)?;
        ctx.hdel(JOBS, &id)?;
        ctx.hdel(ATTEMPTS, &id)?;
        moved += 1;
    }
    for (entry, list) in ctx.xautoclaim(STREAM, GROUP, visibility, batch)? {
        ctx.xack(STREAM, GROUP, entry)?;
        ctx.xdel(STREAM, entry)?;
        let parsed = EntryFields::parse(entry, &list);
        let id = parsed.id.clone();
        let lost = i64::from(parsed.attempts) + 1;
        if ctx.hget(IDS, &id)?.as_deref() == Some(entry.to_string().as_bytes()) {
            ctx.hdel(IDS, &id)?;
        }
        ctx.hset(ERRORS, &id, lost_error.clone())?;
        if lost >= max_attempts {
            ctx.hset(JOBS, &id, parsed.payload.unwrap_or_default())?;
            ctx.hset(ATTEMPTS, &id, text_bytes(&lost.to_string()))?;
            ctx.zadd(DEAD, now, &id)?;
            dead += 1;
        } else {
            let mut fields = vec![
                (field(b"j"), text_bytes(&id)),
                (field(b"a"), text_bytes(&lost.to_string())),
            ];
            if let Some(payload) = parsed.payload {
                fields.push((field(b"p"), payload));
            }
            let again = ctx.xadd_fields(STREAM, fields)?;
            ctx.hset(IDS, &id, text_bytes(&again.to_string()))?;
            reclaimed += 1;
        }
    }
    Ok(ScriptValue::Array(vec![
        ScriptValue::Int(moved),
        ScriptValue::Int(reclaimed),
        ScriptValue::Int(dead),
    ]))
}

/// ARGV: entry, id, outcome (`done`, `retry`, `dead`), retry delay ms,
/// error, payload, attempt. Ends the lease `entry`: acknowledges and
/// deletes it, then forgets the job, schedules its retry or dead-letters it
/// with its error. 0 when the lease was taken over (nothing changes).
pub(super) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_finish",
        lua!(
            r"
if redis.call('XACK', KEYS[1], 'workers', ARGV[1]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[1])
local id = ARGV[2]
if redis.call('HGET', KEYS[7], id) == ARGV[1] then redis.call('HDEL', KEYS[7], id) end
if ARGV[3] == 'done' then
  redis.call('HDEL', KEYS[6], id)
  return 1
end
redis.call('HSET', KEYS[4], id, ARGV[6])
redis.call('HSET', KEYS[5], id, ARGV[7])
redis.call('HSET', KEYS[6], id, ARGV[5])
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), id)
else
  redis.call('ZADD', KEYS[3], now, id)
end
return 1
"
        ),
        finish_native,
    )
});

fn finish_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let entry = entry_arg(args, 0)?;
    if !ctx.xack(STREAM, GROUP, entry)? {
        return Ok(ScriptValue::Int(0));
    }
    ctx.xdel(STREAM, entry)?;
    let id = text(args, 1)?;
    if ctx.hget(IDS, &id)?.as_deref() == Some(entry.to_string().as_bytes()) {
        ctx.hdel(IDS, &id)?;
    }
    let outcome = text(args, 2)?;
    if outcome == "done" {
        ctx.hdel(ERRORS, &id)?;
        return Ok(ScriptValue::Int(1));
    }
    ctx.hset(JOBS, &id, raw(args, 5)?)?;
    ctx.hset(ATTEMPTS, &id, raw(args, 6)?)?;
    ctx.hset(ERRORS, &id, raw(args, 4)?)?;
    if outcome == "retry" {
        ctx.zadd(DELAYED, now + int(args, 3)?, &id)?;
    } else {
        ctx.zadd(DEAD, now, &id)?;
    }
    Ok(ScriptValue::Int(1))
}

/// ARGV: id. Removes a job that is waiting or delayed; 0 when it is not
/// (unknown, running, dead or done).
pub(super) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_cancel",
        lua!(
            r"
local id = ARGV[1]
if redis.call('ZREM', KEYS[2], id) == 1 then
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  return 1
end
local entry = entry_of(id)
if not entry or pending(entry) then
  return 0
end
redis.call('XDEL', KEYS[1], entry)
redis.call('HDEL', KEYS[7], id)
redis.call('HDEL', KEYS[6], id)
return 1
"
        ),
        cancel_native,
    )
});

fn cancel_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let id = text(args, 0)?;
    if ctx.zrem(DELAYED, &id)? {
        ctx.hdel(JOBS, &id)?;
        ctx.hdel(ATTEMPTS, &id)?;
        ctx.hdel(ERRORS, &id)?;
        return Ok(ScriptValue::Int(1));
    }
    let Some((entry, _)) = entry_of(ctx, &id)? else {
        return Ok(ScriptValue::Int(0));
    };
    if ctx.xis_pending(STREAM, GROUP, entry)? {
        return Ok(ScriptValue::Int(0));
    }
    ctx.xdel(STREAM, entry)?;
    ctx.hdel(IDS, &id)?;
    ctx.hdel(ERRORS, &id)?;
    Ok(ScriptValue::Int(1))
}

/// ARGV: id. Returns `{state, attempts, last error|nil}` with state one of
/// `waiting`, `delayed`, `running`, `dead` or `` (not pending).
pub(super) static STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_state",
        lua!(
            r"
local id = ARGV[1]
local state, attempts = '', 0
local due = redis.call('ZSCORE', KEYS[2], id)
if due then
  if tonumber(due) <= now then state = 'waiting' else state = 'delayed' end
  attempts = tonumber(redis.call('HGET', KEYS[5], id) or '0') or 0
else
  local entry, fields = entry_of(id)
  if entry then
    attempts = tonumber(fields['a'] or '0') or 0
    if pending(entry) then
      state = 'running'
      attempts = attempts + 1
    else
      state = 'waiting'
    end
  elseif redis.call('ZSCORE', KEYS[3], id) then
    state = 'dead'
    attempts = tonumber(redis.call('HGET', KEYS[5], id) or '0') or 0
  end
end
return {state, attempts, redis.call('HGET', KEYS[6], id)}
"
        ),
        state_native,
    )
});

fn state_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let id = text(args, 0)?;
    let (state, attempts) = match ctx.zscore(DELAYED, &id)? {
        Some(due) => (
            if due <= now { "waiting" } else { "delayed" },
            attempts(ctx, &id)?,
        ),
        None => match entry_of(ctx, &id)? {
            Some((entry, fields)) => {
                let before = i64::from(fields.attempts);
                if ctx.xis_pending(STREAM, GROUP, entry)? {
                    ("running", before + 1)
                } else {
                    ("waiting", before)
                }
            }
            None if ctx.zscore(DEAD, &id)?.is_some() => ("dead", attempts(ctx, &id)?),
            None => ("", 0),
        },
    };
    let error = ctx.hget(ERRORS, &id)?;
    Ok(ScriptValue::Array(vec![
        bytes(state),
        ScriptValue::Int(attempts),
        error.map_or(ScriptValue::Nil, ScriptValue::Bytes),
    ]))
}

/// No ARGV. Returns `{waiting (due), delayed, running, dead, oldest waiting
/// age ms or -1}`: waiting counts the Stream's undelivered entries and the
/// delayed jobs already due; running the group's pending entries.
pub(super) static COUNTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_counts",
        lua!(
            r"
local length, running, first = 0, 0, nil
if redis.call('EXISTS', KEYS[1]) == 1 then
  length = redis.call('XLEN', KEYS[1])
  local last = '0-0'
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == 'workers' then
      running = info['pending']
      last = info['last-delivered-id']
    end
  end
  local next = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
  if #next > 0 then first = next[1][1] end
end
local age = -1
if first then age = math.max(0, now - tonumber(string.match(first, '^(%d+)'))) end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
if #due > 0 then age = math.max(age, now - tonumber(due[2])) end
return {
  math.max(0, length - running) + redis.call('ZCOUNT', KEYS[2], '-inf', now),
  redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  running,
  redis.call('ZCARD', KEYS[3]),
  age
}
"
        ),
        counts_native,
    )
});

fn counts_native(ctx: &mut dyn ScriptContext, _args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let length = ctx.xlen(STREAM)?;
    let (running, first) = ctx.xbacklog(STREAM, GROUP)?;
    let mut age = first.map_or(-1, |entry| {
        (now - i64::try_from(entry.ms).unwrap_or(i64::MAX)).max(0)
    });
    if let Some((_, due)) = ctx.zrange_by_score(DELAYED, i64::MIN, now, 0, 1)?.first() {
        age = age.max(now - due);
    }
    let count = |n: u64| ScriptValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(ScriptValue::Array(vec![
        count(length.saturating_sub(running) + ctx.zcount(DELAYED, i64::MIN, now)?),
        count(ctx.zcount(DELAYED, now.saturating_add(1), i64::MAX)?),
        count(running),
        count(ctx.zcount(DEAD, i64::MIN, i64::MAX)?),
        ScriptValue::Int(age),
    ]))
}

/// ARGV: offset, count. Dead jobs, oldest death first: `{[id, payload|nil,
/// attempts, error|nil, died at ms]…}`.
pub(super) static DEAD_LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_dead_list",
        r"
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '+inf', 'WITHSCORES', 'LIMIT', tonumber(ARGV[1]), tonumber(ARGV[2]))
local out = {}
for i = 1, #dead, 2 do
  local id = dead[i]
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[4], id)
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[5], id) or '0') or 0
  out[#out + 1] = redis.call('HGET', KEYS[6], id)
  out[#out + 1] = tonumber(dead[i + 1])
end
return out
",
        dead_list_native,
    )
});

fn dead_list_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let offset = usize::try_from(int(args, 0)?).unwrap_or(0);
    let count = usize::try_from(int(args, 1)?).unwrap_or(0);
    let mut out = Vec::new();
    for (id, died) in ctx.zrange_by_score(DEAD, i64::MIN, i64::MAX, offset, count)? {
        let payload = ctx.hget(JOBS, &id)?;
        let attempts = attempts(ctx, &id)?;
        let error = ctx.hget(ERRORS, &id)?;
        out.push(bytes(&id));
        out.push(payload.map_or(ScriptValue::Nil, ScriptValue::Bytes));
        out.push(ScriptValue::Int(attempts));
        out.push(error.map_or(ScriptValue::Nil, ScriptValue::Bytes));
        out.push(ScriptValue::Int(died));
    }
    Ok(ScriptValue::Array(out))
}

/// ARGV: action (`retry` or `purge`), id ('' = the oldest `limit`), limit.
/// Retry puts dead jobs back on the Stream with a fresh attempt count (the
/// last error stays until they succeed); purge deletes them. Returns how
/// many were affected.
pub(super) static DEAD_ACTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_dead_action",
        r"
local ids
if ARGV[2] ~= '' then
  ids = {ARGV[2]}
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '+inf', 'LIMIT', 0, tonumber(ARGV[3]))
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    n = n + 1
    if ARGV[1] == 'retry' then
      local fields = {'j', id}
      local payload = redis.call('HGET', KEYS[4], id)
      if payload then fields[#fields + 1] = 'p'; fields[#fields + 1] = payload end
      redis.call('HSET', KEYS[7], id, redis.call('XADD', KEYS[1], '*', unpack(fields)))
    else
      redis.call('HDEL', KEYS[6], id)
    end
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
  end
end
return n
",
        dead_action_native,
    )
});

fn dead_action_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let retry = text(args, 0)? == "retry";
    let id = text(args, 1)?;
    let ids = if id.is_empty() {
        let limit = usize::try_from(int(args, 2)?).unwrap_or(0);
        ctx.zrange_by_score(DEAD, i64::MIN, i64::MAX, 0, limit)?
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    } else {
        vec![id]
    };
    let mut affected = 0;
    for id in ids {
        if !ctx.zrem(DEAD, &id)? {
            continue;
        }
        affected += 1;
        if retry {
            let mut fields = vec![(field(b"j"), text_bytes(&id))];
            if let Some(payload) = ctx.hget(JOBS, &id)? {
                fields.push((field(b"p"), payload));
            }
            let entry = ctx.xadd_fields(STREAM, fields)?;
            ctx.hset(IDS, &id, text_bytes(&entry.to_string()))?;
        } else {
            ctx.hdel(ERRORS, &id)?;
        }
        ctx.hdel(JOBS, &id)?;
        ctx.hdel(ATTEMPTS, &id)?;
    }
    Ok(ScriptValue::Int(affected))
}

/// What a Stream entry of the queue says about its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntryFields {
    /// The job id: field `j`, or `#` and the entry id.
    pub(super) id: String,
    /// Whether the id came from field `j` (the job is tracked in `ids`).
    pub(super) named: bool,
    /// Field `p`; `None` when missing.
    pub(super) payload: Option<Bytes>,
    /// Attempts made before this entry: field `a`, 0 when absent or not a
    /// number.
    pub(super) attempts: u32,
}

impl EntryFields {
    /// Reads an entry's fields; unknown fields are ignored, so an entry
    /// written by something else is still read (and dead-lettered when its
    /// payload is missing).
    pub(super) fn parse<'a>(
        entry: StreamId,
        fields: impl IntoIterator<Item = &'a (Bytes, Bytes)>,
    ) -> Self {
        let (mut id, mut payload, mut attempts) = (None, None, 0);
        for (name, value) in fields {
            match &name[..] {
                b"j" => id = Some(String::from_utf8_lossy(value).into_owned()),
                b"p" => payload = Some(value.clone()),
                b"a" => {
                    attempts = std::str::from_utf8(value)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .unwrap_or(0);
                }
                _ => {}
            }
        }
        EntryFields {
            named: id.is_some(),
            id: id.unwrap_or_else(|| format!("#{entry}")),
            payload,
            attempts,
        }
    }
}

/// The entry holding job `id` (found through `ids`, or `#<entry id>` for a
/// generated id), if it is still in the Stream and carries that id.
fn entry_of(ctx: &mut dyn ScriptContext, id: &str) -> Result<Option<(StreamId, EntryFields)>> {
    let entry = match ctx.hget(IDS, id)? {
        Some(entry) => std::str::from_utf8(&entry)
            .ok()
            .and_then(|e| e.parse().ok()),
        None => id.strip_prefix('#').and_then(|e| e.parse().ok()),
    };
    let Some(entry) = entry else {
        return Ok(None);
    };
    let Some(fields): Option<StreamFields> = ctx.xget(STREAM, entry)? else {
        return Ok(None);
    };
    let parsed = EntryFields::parse(entry, &fields);
    Ok((parsed.id == id).then_some((entry, parsed)))
}

fn attempts(ctx: &mut dyn ScriptContext, id: &str) -> Result<i64> {
    Ok(ctx
        .hget(ATTEMPTS, id)?
        .and_then(|value| std::str::from_utf8(&value).ok()?.parse().ok())
        .unwrap_or(0))
}

fn now_ms(ctx: &dyn ScriptContext) -> i64 {
    i64::try_from(ctx.now().as_millis()).unwrap_or(i64::MAX)
}

fn field(name: &'static [u8]) -> Bytes {
    Bytes::from_static(name)
}

fn text_bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn bytes(text: &str) -> ScriptValue {
    ScriptValue::Bytes(text_bytes(text))
}

fn arg(args: &[ScriptArg], index: usize) -> Result<&ScriptArg> {
    args.get(index).ok_or_else(|| Error::Script {
        script: "redkit_queue",
        message: format!("missing ARGV[{}]", index + 1),
    })
}

fn int(args: &[ScriptArg], index: usize) -> Result<i64> {
    arg(args, index)?.as_i64().ok_or_else(|| Error::Script {
        script: "redkit_queue",
        message: format!("ARGV[{}] is not an integer", index + 1),
    })
}

fn raw(args: &[ScriptArg], index: usize) -> Result<Bytes> {
    Ok(match arg(args, index)? {
        ScriptArg::Bytes(bytes) => bytes.clone(),
        ScriptArg::Int(value) => Bytes::from(value.to_string()),
    })
}

fn text(args: &[ScriptArg], index: usize) -> Result<String> {
    String::from_utf8(raw(args, index)?.to_vec()).map_err(|_| Error::Script {
        script: "redkit_queue",
        message: format!("ARGV[{}] is not UTF-8", index + 1),
    })
}

fn entry_arg(args: &[ScriptArg], index: usize) -> Result<StreamId> {
    text(args, index)?.parse()
}
