//! The two algorithms, each as a Lua script and its native twin.
//!
//! Both run atomically in one round trip and read the clock of the store that
//! runs them (Redis' `TIME`, the embedded store's clock), so instances with
//! skewed clocks still share one limit. All arithmetic is on integers in
//! microseconds, written the same way in Lua and Rust so that both stores give
//! the same answers (the shared suite checks it at window edges).
//!
//! The scripts are written to be cheap on Redis' one thread: three
//! `redis.call`s each (`TIME`, `GET`, `SET`), integer arithmetic with `%`
//! instead of `math.floor` / `math.ceil` calls, numbers handed to
//! `redis.call` as they are (Redis writes integers below 2^53 exactly)
//! instead of through `string.format`.
//!
//! Every script returns `{allowed, remaining, retry_after_us, reset_after_us}`.
//! A negative cost gives capacity back (reward) and is always admitted.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;

use super::policy::{Algorithm, Policy};
use crate::error::{Error, Result};
use crate::store::{Script, ScriptArg, ScriptContext, ScriptValue};

/// GCRA: ARGV = burst, emission interval (µs per request), cost.
pub(crate) static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_ratelimit_gcra",
        r"
local emission = tonumber(ARGV[2])
local tolerance = emission * ARGV[1]
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local ahead = tat - now + emission * cost
if ahead < 0 then ahead = 0 end
if cost > 0 and ahead > tolerance then
  local left = tolerance - (tat - now)
  if left < 0 then left = 0 end
  return {0, (left - left % emission) / emission, ahead - tolerance, tat - now}
end
if ahead > 0 then
  local ms = ahead + 999
  redis.call('SET', KEYS[1], now + ahead, 'PX', (ms - ms % 1000) / 1000)
else
  redis.call('DEL', KEYS[1])
end
local left = tolerance - ahead
return {1, (left - left % emission) / emission, 0, ahead}
",
        gcra_native,
    )
});

fn gcra_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let burst = arg(args, 0)?;
    let emission = arg(args, 1)?.max(1);
    let cost = arg(args, 2)?;
    let now = micros(ctx.now());
    let tolerance = emission * burst;
    let stored = ctx.get(0)?.and_then(|bytes| parse_i64(&bytes));
    let tat = stored.unwrap_or(now).max(now);
    let new_tat = (tat + emission * cost).max(now);
    let allow_at = new_tat - tolerance;
    if cost > 0 && allow_at > now {
        let remaining = ((now + tolerance - tat) / emission).max(0);
        return Ok(reply(false, remaining, allow_at - now, tat - now));
    }
    if new_tat > now {
        let ttl_ms = ceil_div(new_tat - now, 1000);
        ctx.set(
            0,
            Bytes::from(new_tat.to_string()),
            Some(Duration::from_millis(ttl_ms.unsigned_abs())),
        )?;
    } else {
        ctx.delete(0)?;
    }
    Ok(reply(
        true,
        (now + tolerance - new_tat) / emission,
        0,
        new_tat - now,
    ))
}

/// Sliding window: ARGV = limit, window (µs), cost. The key holds
/// `window_index:previous_count:current_count`.
pub(crate) static SLIDING_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_ratelimit_sliding_window",
        r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local elapsed = now % window
local index = (now - elapsed) / window
local prev, cur = 0, 0
local raw = redis.call('GET', KEYS[1])
if raw then
  local i, p, c = string.match(raw, '^(%d+):(%d+):(%d+)$')
  if i then
    i = tonumber(i)
    if i == index then prev = tonumber(p); cur = tonumber(c)
    elseif i == index - 1 then prev = tonumber(c) end
  end
end
local share = prev * (window - elapsed)
local weighted = (share - share % window) / window
local used = weighted + cur
if cost > 0 and used + cost > limit then
  local retry = window - elapsed
  if cur + cost <= limit and prev > 0 then
    local spare = (limit - cur - cost) * window
    retry = retry - (spare - spare % prev) / prev
    if retry < 1 then retry = 1 end
  end
  local remaining = limit - used
  if remaining < 0 then remaining = 0 end
  return {0, remaining, retry, window - elapsed}
end
cur = cur + cost
if cur < 0 then cur = 0 end
local ms = 2 * window + 999
redis.call('SET', KEYS[1], index .. ':' .. prev .. ':' .. cur, 'PX', (ms - ms % 1000) / 1000)
local remaining = limit - weighted - cur
if remaining < 0 then remaining = 0 end
return {1, remaining, 0, window - elapsed}
",
        sliding_native,
    )
});

fn sliding_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let limit = arg(args, 0)?;
    let window = arg(args, 1)?.max(1);
    let cost = arg(args, 2)?;
    let now = micros(ctx.now());
    let index = now / window;
    let elapsed = now - index * window;
    let (mut prev, mut cur) = (0i64, 0i64);
    if let Some(raw) = ctx.get(0)?
        && let Some((i, p, c)) = parse_state(&raw)
    {
        if i == index {
            (prev, cur) = (p, c);
        } else if i == index - 1 {
            prev = c;
        }
    }
    // Policies keep limit × window below 2^53, where Lua's doubles are exact.
    let weighted =
        i64::try_from(i128::from(prev) * i128::from(window - elapsed) / i128::from(window))
            .unwrap_or(i64::MAX);
    let used = weighted + cur;
    if cost > 0 && used + cost > limit {
        let retry = if cur + cost > limit || prev == 0 {
            window - elapsed
        } else {
            let share = i128::from(limit - cur - cost) * i128::from(window) / i128::from(prev);
            (window - i64::try_from(share).unwrap_or(i64::MAX) - elapsed).max(1)
        };
        return Ok(reply(false, (limit - used).max(0), retry, window - elapsed));
    }
    cur = (cur + cost).max(0);
    let ttl_ms = ceil_div(2 * window, 1000);
    ctx.set(
        0,
        Bytes::from(format!("{index}:{prev}:{cur}")),
        Some(Duration::from_millis(ttl_ms.unsigned_abs())),
    )?;
    Ok(reply(
        true,
        (limit - weighted - cur).max(0),
        0,
        window - elapsed,
    ))
}

/// The script a check of `policy` runs and its arguments (`ARGV`), for
/// benchmarks and audits: the key is `rl:<policy>:<key>` under the store's
/// prefix. Public with the `test-util` feature.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
pub fn script_invocation(policy: &Policy, cost: i64) -> (&'static Script, [ScriptArg; 3]) {
    let window_us = i64::try_from(policy.window().as_micros()).unwrap_or(i64::MAX);
    let limit = i64::try_from(policy.limit()).unwrap_or(i64::MAX);
    match policy.algorithm() {
        Algorithm::Gcra { burst } => (
            &GCRA,
            [
                ScriptArg::Int(i64::try_from(burst).unwrap_or(i64::MAX)),
                ScriptArg::Int((window_us / limit).max(1)),
                ScriptArg::Int(cost),
            ],
        ),
        Algorithm::SlidingWindow => (
            &SLIDING_WINDOW,
            [
                ScriptArg::Int(limit),
                ScriptArg::Int(window_us),
                ScriptArg::Int(cost),
            ],
        ),
    }
}

fn reply(allowed: bool, remaining: i64, retry_after: i64, reset_after: i64) -> ScriptValue {
    ScriptValue::Array(vec![
        ScriptValue::Int(i64::from(allowed)),
        ScriptValue::Int(remaining),
        ScriptValue::Int(retry_after),
        ScriptValue::Int(reset_after),
    ])
}

fn arg(args: &[ScriptArg], index: usize) -> Result<i64> {
    args.get(index)
        .and_then(ScriptArg::as_i64)
        .ok_or_else(|| Error::Script {
            script: "ratelimit",
            message: format!("ARGV[{}] is missing or not an integer", index + 1),
        })
}

fn micros(now: Duration) -> i64 {
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

fn ceil_div(value: i64, by: i64) -> i64 {
    (value + by - 1) / by
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

fn parse_state(bytes: &[u8]) -> Option<(i64, i64, i64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split(':');
    let state = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    parts.next().is_none().then_some(state)
}
