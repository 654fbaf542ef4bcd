//! The session scripts, each with its native twin for the embedded store
//! (like `ratelimit/algorithm.rs`): a session and its user's index change
//! together, atomically, or not at all; a rolling read only ever lengthens
//! a record's life, in one round trip.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;

use super::model::version_prefix;
use crate::error::Result;
use crate::store::{KeyTtl, Script, ScriptArg, ScriptContext, ScriptValue};

/// Creates the session (SET NX) and adds it to the user's index, atomically.
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        if ctx.get(0)?.is_some() {
            return Ok(ScriptValue::Int(0));
        }
        let value = bytes_arg(args, 0);
        ctx.set(0, value, Some(millis_arg(args, 1)))?;
        let id = String::from_utf8_lossy(&bytes_arg(args, 2)).into_owned();
        ctx.set_add(1, &[&id])?;
        ctx.expire(1, millis_arg(args, 3))?;
        Ok(ScriptValue::Int(1))
    }
    Script::new(
        "redkit_session_create",
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 1
end
return 0
",
        native,
    )
});

/// Writes the session only if its version is still the expected one.
/// Returns 1 when written, 0 on a version conflict, -1 when it is gone.
pub(super) static SAVE_IF_VERSION: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        let Some(current) = ctx.get(0)? else {
            return Ok(ScriptValue::Int(-1));
        };
        let expected = bytes_arg(args, 0);
        if version_prefix(&current) != Some(&expected[..]) {
            return Ok(ScriptValue::Int(0));
        }
        let ttl = match args.get(2).and_then(ScriptArg::as_i64) {
            Some(ms) if ms > 0 => Some(Duration::from_millis(ms.unsigned_abs())),
            _ => match ctx.ttl(0)? {
                KeyTtl::ExpiresIn(left) => Some(left.max(Duration::from_millis(1))),
                _ => None,
            },
        };
        ctx.set(0, bytes_arg(args, 1), ttl)?;
        Ok(ScriptValue::Int(1))
    }
    Script::new(
        "redkit_session_save_if_version",
        r"
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
if string.match(current, '^(%d+)|') ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
",
        native,
    )
});

/// Deletes the session and removes it from the user's index.
pub(super) static DESTROY: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        let existed = ctx.delete(0)?;
        let id = String::from_utf8_lossy(&bytes_arg(args, 0)).into_owned();
        ctx.set_remove(1, &[&id])?;
        Ok(ScriptValue::Int(i64::from(existed)))
    }
    Script::new(
        "redkit_session_destroy",
        "local n = redis.call('DEL', KEYS[1]); redis.call('SREM', KEYS[2], ARGV[1]); return n",
        native,
    )
});

/// Reads the record and extends its life to at least `ARGV[1]` ms from
/// now — never shortens it (a record expiring in a day keeps its day). One
/// round trip, where `GET` + `PTTL` + `PEXPIRE` would be three and racy.
pub(super) static ROLLING_GET: LazyLock<Script> = LazyLock::new(|| {
    fn native(ctx: &mut dyn ScriptContext, args: &[ScriptArg]) -> Result<ScriptValue> {
        let Some(value) = ctx.get(0)? else {
            return Ok(ScriptValue::Nil);
        };
        let inactivity = millis_arg(args, 0);
        if let KeyTtl::ExpiresIn(left) = ctx.ttl(0)?
            && left < inactivity
        {
            ctx.expire(0, inactivity)?;
        }
        Ok(ScriptValue::Bytes(value))
    }
    Script::new(
        "redkit_tower_session_rolling_get",
        r"
local value = redis.call('GET', KEYS[1])
if not value then return false end
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return value
",
        native,
    )
});

fn bytes_arg(args: &[ScriptArg], index: usize) -> Bytes {
    match args.get(index) {
        Some(ScriptArg::Bytes(bytes)) => bytes.clone(),
        Some(ScriptArg::Int(value)) => Bytes::from(value.to_string()),
        None => Bytes::new(),
    }
}

fn millis_arg(args: &[ScriptArg], index: usize) -> Duration {
    Duration::from_millis(
        args.get(index)
            .and_then(ScriptArg::as_i64)
            .unwrap_or(1)
            .max(1)
            .unsigned_abs(),
    )
}
