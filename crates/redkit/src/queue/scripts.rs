//! Every state change of a job, as a Lua script and its native twin.
//!
//! A job is always in exactly one of four places, each a sorted set of job
//! ids sharing the queue's hash tag: `waiting` (score: when it is due, so
//! delayed jobs wait there too), `running` (score: when its lease expires),
//! `dead` (score: when it died) — or nowhere, once completed. Its payload,
//! attempt count and last error live in three hashes. Each script moves a job
//! between places in one atomic step, so a crash between two steps cannot
//! lose or duplicate a job; the attempt count doubles as the lease token, so a
//! worker whose lease was taken over can no longer finish the job.
//!
//! Times come from the store's clock (Redis' `TIME`, the embedded store's
//! clock), in milliseconds, so instances with skewed clocks agree.

use std::sync::LazyLock;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::store::{Script, ScriptArg, ScriptContext, ScriptValue};

// Key indexes (Lua's KEYS[i + 1]); see `QueueKeys::all`.
const WAITING: usize = 0;
const RUNNING: usize = 1;
const DEAD: usize = 2;
const JOBS: usize = 3;
const ATTEMPTS: usize = 4;
const ERRORS: usize = 5;
const SEQ: usize = 6;

/// Lua prelude: the store's clock in milliseconds.
macro_rules! lua {
    ($body:literal) => {
        concat!(
            "local t = redis.call('TIME')\n",
            "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
            $body
        )
    };
}

/// ARGV: id ('' = generated), payload, delay ms. Returns `{added, id}`;
/// an id still waiting or running is left alone (`added` 0).
pub(super) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_enqueue",
        lua!(
            r"
local id = ARGV[1]
if id == '' then
  id = string.format('#%015d', redis.call('INCR', KEYS[7]))
else
  if redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id) then
    return {0, id}
  end
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
end
redis.call('HSET', KEYS[4], id, ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
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
        id = generated_id(ctx.incr_by(SEQ, 1)?);
    } else {
        if ctx.zscore(WAITING, &id)?.is_some() || ctx.zscore(RUNNING, &id)?.is_some() {
            return Ok(ScriptValue::Array(vec![ScriptValue::Int(0), bytes(&id)]));
        }
        ctx.zrem(DEAD, &id)?;
        ctx.hdel(ATTEMPTS, &id)?;
        ctx.hdel(ERRORS, &id)?;
    }
    ctx.hset(JOBS, &id, raw(args, 1)?)?;
    ctx.zadd(WAITING, now + int(args, 2)?, &id)?;
    Ok(ScriptValue::Array(vec![ScriptValue::Int(1), bytes(&id)]))
}

/// The id given to a job enqueued without one: `#` and a zero-padded
/// sequence number, so such jobs sort in enqueue order.
fn generated_id(sequence: i64) -> String {
    format!("#{sequence:015}")
}

/// ARGV: limit, visibility ms, max attempts, lost-lease error. First returns
/// expired leases to `waiting` (or `dead` when out of attempts), then leases
/// up to `limit` due jobs. Returns `{reclaimed, dead, [id, payload|nil,
/// attempt, waited ms]…}`.
pub(super) static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_fetch",
        lua!(
            r"
local limit = tonumber(ARGV[1])
local visibility = tonumber(ARGV[2])
local max_attempts = tonumber(ARGV[3])
local reclaimed, dead = 0, 0
local lost = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(lost) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HSET', KEYS[6], id, ARGV[4])
  if tonumber(redis.call('HGET', KEYS[5], id) or '0') >= max_attempts then
    redis.call('ZADD', KEYS[3], now, id)
    dead = dead + 1
  else
    redis.call('ZADD', KEYS[1], now, id)
    reclaimed = reclaimed + 1
  end
end
local out = {reclaimed, dead}
if limit > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do
    local id = due[i]
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], now + visibility, id)
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', KEYS[4], id)
    out[#out + 1] = redis.call('HINCRBY', KEYS[5], id, 1)
    out[#out + 1] = now - tonumber(due[i + 1])
  end
end
return out
"
        ),
        fetch_native,
    )
});

fn fetch_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let limit = int(args, 0)?;
    let visibility = int(args, 1)?;
    let max_attempts = int(args, 2)?;
    let lost_error = raw(args, 3)?;
    let (mut reclaimed, mut dead) = (0, 0);
    for (id, _) in ctx.zrange_by_score(RUNNING, i64::MIN, now, 0, 100)? {
        ctx.zrem(RUNNING, &id)?;
        ctx.hset(ERRORS, &id, lost_error.clone())?;
        if attempts(ctx, &id)? >= max_attempts {
            ctx.zadd(DEAD, now, &id)?;
            dead += 1;
        } else {
            ctx.zadd(WAITING, now, &id)?;
            reclaimed += 1;
        }
    }
    let mut out = vec![ScriptValue::Int(reclaimed), ScriptValue::Int(dead)];
    if limit > 0 {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        for (id, due) in ctx.zrange_by_score(WAITING, i64::MIN, now, 0, limit)? {
            ctx.zrem(WAITING, &id)?;
            ctx.zadd(RUNNING, now + visibility, &id)?;
            let attempt = attempts(ctx, &id)? + 1;
            ctx.hset(ATTEMPTS, &id, Bytes::from(attempt.to_string()))?;
            let payload = ctx.hget(JOBS, &id)?;
            out.push(bytes(&id));
            out.push(payload.map_or(ScriptValue::Nil, ScriptValue::Bytes));
            out.push(ScriptValue::Int(attempt));
            out.push(ScriptValue::Int(now - due));
        }
    }
    Ok(ScriptValue::Array(out))
}

/// ARGV: id, attempt, visibility ms. Extends the lease of the holder of
/// `attempt`; 0 when the lease is no longer its own.
pub(super) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_heartbeat",
        lua!(
            r"
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) or redis.call('HGET', KEYS[5], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
"
        ),
        heartbeat_native,
    )
});

fn heartbeat_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let id = text(args, 0)?;
    if !holds_lease(ctx, &id, int(args, 1)?)? {
        return Ok(ScriptValue::Int(0));
    }
    ctx.zadd(RUNNING, now + int(args, 2)?, &id)?;
    Ok(ScriptValue::Int(1))
}

/// ARGV: id, attempt, outcome (`done`, `retry`, `dead`), retry delay ms,
/// error. Ends the lease held by `attempt`: deletes the job, schedules its
/// retry, or moves it to `dead`, keeping the error. 0 when the lease is no
/// longer its own (the job was reclaimed meanwhile).
pub(super) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_finish",
        lua!(
            r"
local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[2], id) or redis.call('HGET', KEYS[5], id) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[2], id)
if ARGV[3] == 'done' then
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
elseif ARGV[3] == 'retry' then
  redis.call('HSET', KEYS[6], id, ARGV[5])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), id)
else
  redis.call('HSET', KEYS[6], id, ARGV[5])
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
    let id = text(args, 0)?;
    if !holds_lease(ctx, &id, int(args, 1)?)? {
        return Ok(ScriptValue::Int(0));
    }
    ctx.zrem(RUNNING, &id)?;
    match text(args, 2)?.as_str() {
        "done" => {
            ctx.hdel(JOBS, &id)?;
            ctx.hdel(ATTEMPTS, &id)?;
            ctx.hdel(ERRORS, &id)?;
        }
        "retry" => {
            ctx.hset(ERRORS, &id, raw(args, 4)?)?;
            ctx.zadd(WAITING, now + int(args, 3)?, &id)?;
        }
        _ => {
            ctx.hset(ERRORS, &id, raw(args, 4)?)?;
            ctx.zadd(DEAD, now, &id)?;
        }
    }
    Ok(ScriptValue::Int(1))
}

/// ARGV: id. Removes a job that is waiting or delayed; 0 when it is not
/// (unknown, running, dead or done).
pub(super) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_cancel",
        r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
return 1
",
        cancel_native,
    )
});

fn cancel_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let id = text(args, 0)?;
    if !ctx.zrem(WAITING, &id)? {
        return Ok(ScriptValue::Int(0));
    }
    ctx.hdel(JOBS, &id)?;
    ctx.hdel(ATTEMPTS, &id)?;
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
local state = ''
local due = redis.call('ZSCORE', KEYS[1], id)
if due then
  if tonumber(due) <= now then state = 'waiting' else state = 'delayed' end
elseif redis.call('ZSCORE', KEYS[2], id) then
  state = 'running'
elseif redis.call('ZSCORE', KEYS[3], id) then
  state = 'dead'
end
return {state, tonumber(redis.call('HGET', KEYS[5], id) or '0'), redis.call('HGET', KEYS[6], id)}
"
        ),
        state_native,
    )
});

fn state_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
    let id = text(args, 0)?;
    let state = match ctx.zscore(WAITING, &id)? {
        Some(due) if due <= now => "waiting",
        Some(_) => "delayed",
        None if ctx.zscore(RUNNING, &id)?.is_some() => "running",
        None if ctx.zscore(DEAD, &id)?.is_some() => "dead",
        None => "",
    };
    let attempts = attempts(ctx, &id)?;
    let error = ctx.hget(ERRORS, &id)?;
    Ok(ScriptValue::Array(vec![
        bytes(state),
        ScriptValue::Int(attempts),
        error.map_or(ScriptValue::Nil, ScriptValue::Bytes),
    ]))
}

/// No ARGV. Returns `{waiting (due), delayed, running, dead, oldest waiting
/// age ms or -1}`.
pub(super) static COUNTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_counts",
        lua!(
            r"
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
local age = -1
if #oldest > 0 then age = now - tonumber(oldest[2]) end
return {
  redis.call('ZCOUNT', KEYS[1], '-inf', now),
  redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'),
  redis.call('ZCARD', KEYS[2]),
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
    let age = ctx
        .zrange_by_score(WAITING, i64::MIN, now, 0, 1)?
        .first()
        .map_or(-1, |(_, due)| now - due);
    let count = |n: u64| ScriptValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(ScriptValue::Array(vec![
        count(ctx.zcount(WAITING, i64::MIN, now)?),
        count(ctx.zcount(WAITING, now.saturating_add(1), i64::MAX)?),
        count(ctx.zcount(RUNNING, i64::MIN, i64::MAX)?),
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
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[5], id) or '0')
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
/// Retry puts dead jobs back to `waiting` with a fresh attempt count; purge
/// deletes them. Returns how many were affected.
pub(super) static DEAD_ACTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_queue_dead_action",
        lua!(
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
    redis.call('HDEL', KEYS[5], id)
    if ARGV[1] == 'retry' then
      redis.call('ZADD', KEYS[1], now, id)
    else
      redis.call('HDEL', KEYS[4], id)
      redis.call('HDEL', KEYS[6], id)
    end
  end
end
return n
"
        ),
        dead_action_native,
    )
});

fn dead_action_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let now = now_ms(ctx);
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
        ctx.hdel(ATTEMPTS, &id)?;
        if retry {
            ctx.zadd(WAITING, now, &id)?;
        } else {
            ctx.hdel(JOBS, &id)?;
            ctx.hdel(ERRORS, &id)?;
        }
    }
    Ok(ScriptValue::Int(affected))
}

fn holds_lease(ctx: &mut dyn ScriptContext, id: &str, attempt: i64) -> Result<bool> {
    Ok(ctx.zscore(RUNNING, id)?.is_some()
        && ctx.hget(ATTEMPTS, id)?.as_deref() == Some(attempt.to_string().as_bytes()))
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

fn bytes(text: &str) -> ScriptValue {
    ScriptValue::Bytes(Bytes::copy_from_slice(text.as_bytes()))
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
