//! Conformance of the sorted sets, hashes and streams that scripts use.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;

use crate::error::Result;
use crate::store::{KeyTtl, Script, ScriptArg, ScriptContext, ScriptValue, Store, StreamId};

/// One script touching a sorted set, a hash and a stream, returning
/// everything it observed in a flat array, so both stores can be compared.
fn collections_script() -> Script {
    fn native(ctx: &mut dyn ScriptContext, _args: &[ScriptArg]) -> Result<ScriptValue> {
        let mut out = Vec::new();
        let int = |n: i64| ScriptValue::Int(n);
        let text = |t: &str| ScriptValue::Bytes(Bytes::copy_from_slice(t.as_bytes()));
        out.push(int(i64::from(ctx.zadd(0, 20, "b")?)));
        out.push(int(i64::from(ctx.zadd(0, 10, "c")?)));
        out.push(int(i64::from(ctx.zadd(0, 10, "a")?)));
        out.push(int(i64::from(ctx.zadd(0, 30, "b")?)));
        for (member, score) in ctx.zrange_by_score(0, i64::MIN, 25, 0, 10)? {
            out.push(text(&member));
            out.push(int(score));
        }
        for (member, _) in ctx.zrange_by_score(0, i64::MIN, i64::MAX, 1, 1)? {
            out.push(text(&member));
        }
        out.push(int(ctx.zcount(0, 10, 10)? as i64));
        out.push(ctx.zscore(0, "b")?.map_or(ScriptValue::Nil, int));
        out.push(ctx.zscore(0, "zz")?.map_or(ScriptValue::Nil, int));
        out.push(int(i64::from(ctx.zrem(0, "a")?)));
        out.push(int(i64::from(ctx.zrem(0, "a")?)));
        ctx.hset(1, "f", Bytes::from_static(b"v1"))?;
        ctx.hset(1, "f", Bytes::from_static(b"v2"))?;
        out.push(
            ctx.hget(1, "f")?
                .map_or(ScriptValue::Nil, ScriptValue::Bytes),
        );
        out.push(
            ctx.hget(1, "g")?
                .map_or(ScriptValue::Nil, ScriptValue::Bytes),
        );
        out.push(int(i64::from(ctx.hdel(1, "f")?)));
        out.push(int(i64::from(ctx.hdel(1, "f")?)));
        let first = ctx.xadd(2, Bytes::from_static(b"e1"), 2)?;
        ctx.xadd(2, Bytes::from_static(b"e2"), 2)?;
        ctx.xadd(2, Bytes::from_static(b"e3"), 2)?;
        out.push(int(ctx.xrange(2, first, 10)?.len() as i64));
        for (_, payload) in ctx.xrange(2, StreamId::default(), 10)? {
            out.push(ScriptValue::Bytes(payload));
        }
        Ok(ScriptValue::Array(out))
    }
    Script::new(
        "conformance_collections",
        r"
local out = {}
out[#out + 1] = redis.call('ZADD', KEYS[1], 20, 'b')
out[#out + 1] = redis.call('ZADD', KEYS[1], 10, 'c')
out[#out + 1] = redis.call('ZADD', KEYS[1], 10, 'a')
out[#out + 1] = redis.call('ZADD', KEYS[1], 30, 'b')
local r = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', 25, 'WITHSCORES', 'LIMIT', 0, 10)
for i = 1, #r, 2 do out[#out + 1] = r[i]; out[#out + 1] = tonumber(r[i + 1]) end
local second = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '+inf', 'LIMIT', 1, 1)
out[#out + 1] = second[1]
out[#out + 1] = redis.call('ZCOUNT', KEYS[1], 10, 10)
local s = redis.call('ZSCORE', KEYS[1], 'b')
out[#out + 1] = s and tonumber(s) or false
local z = redis.call('ZSCORE', KEYS[1], 'zz')
out[#out + 1] = z and tonumber(z) or false
out[#out + 1] = redis.call('ZREM', KEYS[1], 'a')
out[#out + 1] = redis.call('ZREM', KEYS[1], 'a')
redis.call('HSET', KEYS[2], 'f', 'v1')
redis.call('HSET', KEYS[2], 'f', 'v2')
out[#out + 1] = redis.call('HGET', KEYS[2], 'f')
out[#out + 1] = redis.call('HGET', KEYS[2], 'g')
out[#out + 1] = redis.call('HDEL', KEYS[2], 'f')
out[#out + 1] = redis.call('HDEL', KEYS[2], 'f')
local first = redis.call('XADD', KEYS[3], 'MAXLEN', 2, '*', 'd', 'e1')
redis.call('XADD', KEYS[3], 'MAXLEN', 2, '*', 'd', 'e2')
redis.call('XADD', KEYS[3], 'MAXLEN', 2, '*', 'd', 'e3')
out[#out + 1] = #redis.call('XRANGE', KEYS[3], first, '+', 'COUNT', 10)
for _, e in ipairs(redis.call('XRANGE', KEYS[3], '0-0', '+', 'COUNT', 10)) do out[#out + 1] = e[2][2] end
return out
",
        native,
    )
}

/// Sorted sets, hashes and streams inside scripts (what the job queue and
/// the event log are built on) behave the same on every store: order by
/// score then member, ranges with offsets, deletion of emptied hashes,
/// exact stream trimming.
pub async fn collections_in_scripts_follow_redis<S: Store>(store: &S) {
    let keys = ["coll:{t}:z", "coll:{t}:h", "coll:{t}:x"];
    let reply = store
        .run_script(&collections_script(), &keys, &[])
        .await
        .unwrap();
    let int = ScriptValue::Int;
    let text = |t: &'static str| ScriptValue::Bytes(Bytes::from_static(t.as_bytes()));
    assert_eq!(
        reply,
        ScriptValue::Array(vec![
            int(1),
            int(1),
            int(1),
            int(0),
            text("a"),
            int(10),
            text("c"),
            int(10),
            text("c"),
            int(2),
            int(30),
            ScriptValue::Nil,
            int(1),
            int(0),
            text("v2"),
            ScriptValue::Nil,
            int(1),
            int(0),
            int(2),
            text("e2"),
            text("e3"),
        ])
    );
    // The emptied hash is gone; the others hold their values.
    assert_eq!(store.ttl("coll:{t}:h").await.unwrap(), KeyTtl::Missing);
    assert_eq!(store.ttl("coll:{t}:z").await.unwrap(), KeyTtl::Persistent);
    // Other commands on these keys are type errors, as in Redis.
    assert!(store.get("coll:{t}:z").await.is_err());
}
