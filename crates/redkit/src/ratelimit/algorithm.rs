//! The two algorithms, as one Lua script and its native twin.
//!
//! A script call checks any number of keys, each with its own algorithm and
//! policy: the limiter sends the checks that arrive while an earlier call is
//! in flight together (`batch.rs`), so the script's fixed price on
//! Redis' one thread (the call itself, `TIME`) is paid once per batch. Every
//! check in a call reads the same clock reading: the clock of the store that
//! runs it (Redis' `TIME`, the embedded store's clock), so instances with
//! skewed clocks still share one limit. All arithmetic is on integers in
//! microseconds, written the same way in Lua and Rust so that both stores
//! give the same answers (the shared suite checks it at window edges).
//!
//! The script is written to be cheap: one `MGET` for all the keys of a call,
//! then per key one `SET` (or `DEL`) — each `redis.call` costs Redis far
//! more than the command it runs — integer arithmetic with `%` instead of `math.floor` /
//! `math.ceil` calls, and the numbers of the `SET` turned into text by
//! `string.format('%d', …)` in Lua: handed to `redis.call` as numbers,
//! Redis formats them with `%.17g`, which measured slower (see
//! docs/BENCHMARKS.md).
//!
//! `ARGV` names each distinct check of the call once — a group: the
//! algorithm (`GCRA` = 1, `SLIDING_WINDOW` = 2) and its three numbers — and
//! then, when there is more than one group, one group number per key:
//! `G, (algorithm, x, y, cost) × G [, group × N]`. A call of many keys of
//! one policy (the usual batch) sends and parses its four numbers once and
//! nothing per key: each argument per key costs Redis a Lua string and the
//! script a number, and four of each measured 20 % more of the script's
//! time (see docs/BENCHMARKS.md). The reply holds four
//! integers per key, `allowed, remaining, retry_after_us, reset_after_us`;
//! `allowed` is `WRONG_TYPE` for a key that holds a value of another type
//! (the other keys of the call are checked as usual). A negative cost gives
//! capacity back (reward) and is always admitted.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;

use super::policy::{Algorithm, Policy};
use crate::error::{Error, Result};
use crate::store::{Script, ScriptArg, ScriptContext, ScriptValue};

/// `ARGV` code of GCRA: then burst, emission interval (µs per request), cost.
const GCRA: i64 = 1;
/// `ARGV` code of the sliding window: then limit, window (µs), cost. The key
/// holds `window_index:previous_count:current_count`.
const SLIDING_WINDOW: i64 = 2;
/// `allowed` of a key holding a value of another type than a string.
pub(crate) const WRONG_TYPE: i64 = -1;
/// Numbers per check, in `ARGV` and in the reply.
pub(crate) const WIDTH: usize = 4;

/// Checks any number of keys (see the module docs).
pub(crate) static CHECKS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_ratelimit",
        r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
-- One read for all the keys of the call. MGET reads a key of another type
-- as nil (where GET fails): nil means absent or of another type, and the
-- write that follows tells the two apart.
local stored = redis.call('MGET', unpack(KEYS))
-- What this call wrote, for a key checked twice in it.
local written = {}

-- Stores `value` for `px` ms; false for a key of another type, which is
-- left as it is: a key read as nil is only written while absent (NX).
local function save(key, raw, value, px)
  if raw then
    redis.call('SET', key, value, 'PX', px)
  elseif not redis.call('SET', key, value, 'PX', px, 'NX') then
    return false
  end
  written[key] = value
  return true
end

-- Whether a key read as nil holds another type (for answers that write
-- nothing).
local function foreign(key, raw)
  return not raw and redis.call('EXISTS', key) == 1
end

local function gcra(key, raw, burst, emission, cost)
  local tolerance = emission * burst
  local tat = tonumber(raw) or now
  if tat < now then tat = now end
  local ahead = tat - now + emission * cost
  if ahead < 0 then ahead = 0 end
  if cost > 0 and ahead > tolerance then
    if foreign(key, raw) then return -1, 0, 0, 0 end
    local left = tolerance - (tat - now)
    if left < 0 then left = 0 end
    return 0, (left - left % emission) / emission, ahead - tolerance, tat - now
  end
  if ahead > 0 then
    local ms = ahead + 999
    if not save(key, raw, string.format('%d', now + ahead), string.format('%d', (ms - ms % 1000) / 1000)) then
      return -1, 0, 0, 0
    end
  elseif raw then
    redis.call('DEL', key)
    written[key] = false
  elseif foreign(key, raw) then
    return -1, 0, 0, 0
  end
  local left = tolerance - ahead
  return 1, (left - left % emission) / emission, 0, ahead
end

local function sliding(key, raw, limit, window, cost)
  local elapsed = now % window
  local index = (now - elapsed) / window
  local prev, cur = 0, 0
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
    if foreign(key, raw) then return -1, 0, 0, 0 end
    local retry = window - elapsed
    if cur + cost <= limit and prev > 0 then
      local spare = (limit - cur - cost) * window
      retry = retry - (spare - spare % prev) / prev
      if retry < 1 then retry = 1 end
    end
    local remaining = limit - used
    if remaining < 0 then remaining = 0 end
    return 0, remaining, retry, window - elapsed
  end
  cur = cur + cost
  if cur < 0 then cur = 0 end
  local ms = 2 * window + 999
  if not save(key, raw, string.format('%d:%d:%d', index, prev, cur), string.format('%d', (ms - ms % 1000) / 1000)) then
    return -1, 0, 0, 0
  end
  local remaining = limit - weighted - cur
  if remaining < 0 then remaining = 0 end
  return 1, remaining, 0, window - elapsed
end

-- The groups (module docs), read once per call.
local groups = tonumber(ARGV[1])
local kind, xs, ys, costs = {}, {}, {}, {}
for g = 1, groups do
  local at = 4 * g - 2
  kind[g] = ARGV[at]
  xs[g], ys[g], costs[g] = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
end
local first = 4 * groups + 1

local out = {}
for i = 1, #KEYS do
  local g = 1
  if groups > 1 then g = tonumber(ARGV[first + i]) end
  local key = KEYS[i]
  local raw = written[key]
  if raw == nil then raw = stored[i] end
  local a, b, c, d
  if kind[g] == '1' then
    a, b, c, d = gcra(key, raw, xs[g], ys[g], costs[g])
  else
    a, b, c, d = sliding(key, raw, xs[g], ys[g], costs[g])
  end
  local at = 4 * i - 3
  out[at], out[at + 1], out[at + 2], out[at + 3] = a, b, c, d
end
return out
",
        checks_native,
    )
});

fn checks_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let keys = ctx.key_count();
    let groups = usize::try_from(arg(args, 0)?).unwrap_or(usize::MAX);
    let per_key = if groups == 1 { 0 } else { keys };
    if groups
        .checked_mul(WIDTH)
        .and_then(|numbers| numbers.checked_add(1 + per_key))
        != Some(args.len())
    {
        return Err(script_error(format!(
            "{} arguments for {keys} keys and {groups} groups; expected 1 + {WIDTH} per group, \
             then (with more than one group) 1 per key",
            args.len()
        )));
    }
    let now = micros(ctx.now());
    let first = 1 + groups * WIDTH;
    let mut out = Vec::with_capacity(keys * WIDTH);
    for key in 0..keys {
        let group = if groups == 1 {
            1
        } else {
            arg(args, first + key)?
        };
        let at = usize::try_from(group)
            .ok()
            .filter(|group| (1..=groups).contains(group))
            .map(|group| 1 + (group - 1) * WIDTH)
            .ok_or_else(|| {
                script_error(format!("key {} names group {group} of {groups}", key + 1))
            })?;
        let [algorithm, x, y, cost] = [at, at + 1, at + 2, at + 3].map(|index| arg(args, index));
        let (x, y, cost) = (x?, y?, cost?);
        let stored = match ctx.get(key) {
            Ok(stored) => stored,
            Err(Error::WrongType { .. }) => {
                out.extend(reply(WRONG_TYPE, 0, 0, 0));
                continue;
            }
            Err(error) => return Err(error),
        };
        let result = match algorithm? {
            GCRA => gcra(ctx, key, stored.as_deref(), now, x, y, cost)?,
            _ => sliding(ctx, key, stored.as_deref(), now, x, y, cost)?,
        };
        out.extend(result);
    }
    Ok(ScriptValue::Array(out))
}

fn gcra(
    ctx: &mut dyn ScriptContext,
    key: usize,
    stored: Option<&[u8]>,
    now: i64,
    burst: i64,
    emission: i64,
    cost: i64,
) -> Result<[ScriptValue; WIDTH]> {
    let emission = emission.max(1);
    let tolerance = emission * burst;
    let tat = stored.and_then(parse_i64).unwrap_or(now).max(now);
    let new_tat = (tat + emission * cost).max(now);
    let allow_at = new_tat - tolerance;
    if cost > 0 && allow_at > now {
        let remaining = ((now + tolerance - tat) / emission).max(0);
        return Ok(reply(0, remaining, allow_at - now, tat - now));
    }
    if new_tat > now {
        let ttl_ms = ceil_div(new_tat - now, 1000);
        ctx.set(
            key,
            Bytes::from(new_tat.to_string()),
            Some(Duration::from_millis(ttl_ms.unsigned_abs())),
        )?;
    } else {
        ctx.delete(key)?;
    }
    Ok(reply(
        1,
        (now + tolerance - new_tat) / emission,
        0,
        new_tat - now,
    ))
}

fn sliding(
    ctx: &mut dyn ScriptContext,
    key: usize,
    stored: Option<&[u8]>,
    now: i64,
    limit: i64,
    window: i64,
    cost: i64,
) -> Result<[ScriptValue; WIDTH]> {
    let window = window.max(1);
    let index = now / window;
    let elapsed = now - index * window;
    let (mut prev, mut cur) = (0i64, 0i64);
    if let Some((i, p, c)) = stored.and_then(parse_state) {
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
        return Ok(reply(0, (limit - used).max(0), retry, window - elapsed));
    }
    cur = (cur + cost).max(0);
    let ttl_ms = ceil_div(2 * window, 1000);
    ctx.set(
        key,
        Bytes::from(format!("{index}:{prev}:{cur}")),
        Some(Duration::from_millis(ttl_ms.unsigned_abs())),
    )?;
    Ok(reply(
        1,
        (limit - weighted - cur).max(0),
        0,
        window - elapsed,
    ))
}

/// The script a check of `policy` runs and its arguments (`ARGV`) for one
/// key, for benchmarks and audits: the key is `rl:<policy>:<key>` under the
/// store's prefix. Public with the `test-util` feature.
#[cfg(feature = "test-util")]
pub fn script_invocation(policy: &Policy, cost: i64) -> (&'static Script, Vec<ScriptArg>) {
    (&CHECKS, call_args([&check_args(policy, cost)]))
}

/// What one check asks: the algorithm's code and its three numbers
/// (module docs).
pub(crate) type CheckArgs = [i64; WIDTH];

/// The four numbers of one check of `policy`.
pub(crate) fn check_args(policy: &Policy, cost: i64) -> CheckArgs {
    let window_us = i64::try_from(policy.window().as_micros()).unwrap_or(i64::MAX);
    let limit = i64::try_from(policy.limit()).unwrap_or(i64::MAX);
    match policy.algorithm() {
        Algorithm::Gcra { burst } => [
            GCRA,
            i64::try_from(burst).unwrap_or(i64::MAX),
            (window_us / limit).max(1),
            cost,
        ],
        Algorithm::SlidingWindow => [SLIDING_WINDOW, limit, window_us, cost],
    }
}

/// The `ARGV` of one call for `checks`, one per key in order: each distinct
/// check once, then each key's group (module docs).
pub(crate) fn call_args<'a>(checks: impl IntoIterator<Item = &'a CheckArgs>) -> Vec<ScriptArg> {
    let mut groups: Vec<&CheckArgs> = Vec::new();
    let mut of_key = Vec::new();
    for check in checks {
        let group = match groups.iter().position(|known| *known == check) {
            Some(index) => index,
            None => {
                groups.push(check);
                groups.len() - 1
            }
        };
        of_key.push(group + 1);
    }
    let mut args = Vec::with_capacity(1 + groups.len() * WIDTH + of_key.len());
    args.push(ScriptArg::Int(groups.len() as i64));
    args.extend(groups.iter().flat_map(|check| check.map(ScriptArg::Int)));
    // One group (the usual batch): every key is in it, nothing to say per key.
    if groups.len() > 1 {
        args.extend(of_key.into_iter().map(|group| ScriptArg::Int(group as i64)));
    }
    args
}

fn reply(allowed: i64, remaining: i64, retry_after: i64, reset_after: i64) -> [ScriptValue; WIDTH] {
    [allowed, remaining, retry_after, reset_after].map(ScriptValue::Int)
}

fn script_error(message: String) -> Error {
    Error::Script {
        script: "redkit_ratelimit",
        message,
    }
}

fn arg(args: &[ScriptArg], index: usize) -> Result<i64> {
    args.get(index)
        .and_then(ScriptArg::as_i64)
        .ok_or_else(|| script_error(format!("ARGV[{}] is missing or not an integer", index + 1)))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::EmbeddedConfig;
    use crate::store::{EmbeddedStore, Store};

    #[test]
    fn a_call_names_each_distinct_check_once() {
        let sliding = [SLIDING_WINDOW, 10, 60_000_000, 1];
        let gcra = [GCRA, 5, 1_000, 1];
        let gcra_reward = [GCRA, 5, 1_000, -2];
        let args = call_args([&sliding, &gcra, &sliding, &gcra_reward, &gcra]);
        let numbers: Vec<i64> = args.iter().map(|arg| arg.as_i64().unwrap()).collect();
        assert_eq!(
            numbers,
            [
                vec![3],
                sliding.to_vec(),
                gcra.to_vec(),
                gcra_reward.to_vec(),
                vec![1, 2, 1, 3, 2]
            ]
            .concat()
        );
        assert_eq!(call_args([]).len(), 1, "no checks: no groups");
        assert_eq!(
            call_args([&gcra, &gcra, &gcra]).len(),
            1 + WIDTH,
            "one group: nothing per key"
        );
    }

    #[tokio::test]
    async fn the_native_twin_names_a_malformed_call() {
        let store = EmbeddedStore::new(EmbeddedConfig::default()).unwrap();
        let gcra = [GCRA, 5, 1_000, 1];
        let sliding = [SLIDING_WINDOW, 10, 60_000_000, 1];
        let one_group = call_args([&gcra, &gcra]);
        let reply = store
            .run_script(&CHECKS, &["a", "b"], &one_group)
            .await
            .unwrap();
        assert_eq!(reply.as_array().map(<[ScriptValue]>::len), Some(2 * WIDTH));
        let good = call_args([&gcra, &sliding]);
        let reply = store.run_script(&CHECKS, &["c", "d"], &good).await.unwrap();
        assert_eq!(reply.as_array().map(<[ScriptValue]>::len), Some(2 * WIDTH));

        let short = &good[..good.len() - 1];
        let error = store
            .run_script(&CHECKS, &["c", "d"], short)
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected 1 + 4 per group, then (with more than one group) 1 per key"),
            "{error}"
        );

        for group in [0, 3, -1] {
            let mut wrong = good.clone();
            wrong[1 + 2 * WIDTH] = ScriptArg::Int(group);
            let error = store
                .run_script(&CHECKS, &["c", "d"], &wrong)
                .await
                .unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains(&format!("names group {group} of 2")),
                "{error}"
            );
        }
        let huge = [ScriptArg::Int(i64::MAX)];
        let error = store.run_script(&CHECKS, &["a"], &huge).await.unwrap_err();
        assert!(error.to_string().contains("arguments"), "{error}");
    }
}
