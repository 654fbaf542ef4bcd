//! The event log's appends and reads, as Lua scripts with native twins.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::store::{Script, ScriptArg, ScriptContext, ScriptValue};

/// KEYS: log. ARGV: payload, max len, ttl ms. Returns the new id.
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_events_append",
        r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'd', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return id
",
        append_native,
    )
});

fn append_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let (payload, max_len, ttl) = append_args(args)?;
    let id = ctx.xadd(0, payload, max_len)?;
    ctx.expire(0, ttl)?;
    Ok(ScriptValue::Bytes(Bytes::from(id.to_string())))
}

/// KEYS: log, dedupe marker. ARGV: payload, max len, ttl ms. Returns the
/// new id, or nil when the marker exists (appended before).
pub(super) static APPEND_ONCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_events_append_once",
        r"
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return false
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'd', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return id
",
        append_once_native,
    )
});

fn append_once_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let (_, _, ttl) = append_args(args)?;
    if ctx.get(1)?.is_some() {
        return Ok(ScriptValue::Nil);
    }
    ctx.set(1, Bytes::from_static(b"1"), Some(ttl))?;
    append_native(ctx, args)
}

/// KEYS: log. ARGV: start id (included), count. Returns `{id, payload, …}`.
pub(super) static RANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redkit_events_range",
        r"
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local out = {}
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
",
        range_native,
    )
});

fn range_native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
    let start = text(args, 0)?.parse()?;
    let count = usize::try_from(int(args, 1)?).unwrap_or(0);
    let mut out = Vec::new();
    for (id, payload) in ctx.xrange(0, start, count)? {
        out.push(ScriptValue::Bytes(Bytes::from(id.to_string())));
        out.push(ScriptValue::Bytes(payload));
    }
    Ok(ScriptValue::Array(out))
}

fn append_args(args: &[ScriptArg]) -> Result<(Bytes, usize, Duration)> {
    let payload = match args.first() {
        Some(ScriptArg::Bytes(bytes)) => bytes.clone(),
        _ => return Err(bad("ARGV[1] must be the payload")),
    };
    let max_len = usize::try_from(int(args, 1)?).map_err(|_| bad("ARGV[2] must be positive"))?;
    let ttl = Duration::from_millis(u64::try_from(int(args, 2)?).unwrap_or(1).max(1));
    Ok((payload, max_len, ttl))
}

fn int(args: &[ScriptArg], index: usize) -> Result<i64> {
    args.get(index)
        .and_then(ScriptArg::as_i64)
        .ok_or_else(|| bad(&format!("ARGV[{}] must be an integer", index + 1)))
}

fn text(args: &[ScriptArg], index: usize) -> Result<String> {
    args.get(index)
        .map(|arg| String::from_utf8_lossy(&arg.to_bytes()).into_owned())
        .ok_or_else(|| bad(&format!("ARGV[{}] is missing", index + 1)))
}

fn bad(message: &str) -> Error {
    Error::Script {
        script: "redkit_events",
        message: message.to_owned(),
    }
}
